//! Arguments several commands share: where a cache is, trusted keys, and the usage mistakes found
//! after parsing (exit 2, like clap's own).

use std::fmt;
use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use nar_tool::cache::location::CacheLocation;
use nar_tool::signing::PublicKey;

/// A mistake in how the command was called, found after clap parsed it: exit status 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The cache an argument names (a directory, `file://DIR`, `s3://…`, `http(s)://…`: see
/// [`CacheLocation::parse`]); one that names none, or in a way not supported, is a usage error.
pub fn cache_location(arg: &str) -> Result<CacheLocation> {
    CacheLocation::parse(arg).map_err(|e| UsageError(e.to_string()).into())
}

/// `--trusted-key` and `--trusted-key-file`.
#[derive(clap::Args, Debug, Default)]
pub struct TrustedKeyArgs {
    /// A trusted public key NAME:BASE64, as nix.conf's trusted-public-keys lists them
    /// (repeatable); with any trusted key, every path needs a valid signature by one
    #[arg(long = "trusted-key", value_name = "KEY")]
    pub trusted_keys: Vec<String>,
    /// A file of trusted public keys (as `nar-tool key generate --public` writes one), one per
    /// line or space-separated (repeatable)
    #[arg(long = "trusted-key-file", value_name = "PUBLIC-KEY-FILE")]
    pub trusted_key_files: Vec<PathBuf>,
}

impl TrustedKeyArgs {
    /// The keys given, parsed.
    pub fn load(&self) -> Result<Vec<PublicKey>> {
        let mut keys = Vec::new();
        for k in &self.trusted_keys {
            keys.push(PublicKey::parse(k).with_context(|| format!("--trusted-key {k:?}"))?);
        }
        for f in &self.trusted_key_files {
            let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            if text.trim().is_empty() {
                bail!("trusted key file {} holds no key", f.display());
            }
            for k in text.split_whitespace() {
                keys.push(PublicKey::parse(k).with_context(|| format!("{}", f.display()))?);
            }
        }
        Ok(keys)
    }
}

/// A duration: a whole number with a unit `s`, `m`, `h`, `d` or `w` (`90m`, `7d`); a bare number
/// is seconds. In seconds; a mistake is a usage error.
pub fn duration(flag: &str, arg: &str) -> Result<u64> {
    let (number, unit) = split_unit(arg);
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if scale > 0 => Ok(n.saturating_mul(scale)),
        _ => Err(UsageError(format!(
            "{flag} {arg:?}: expected a duration such as 30s, 90m, 12h, 7d or 2w"
        ))
        .into()),
    }
}

/// A size: a whole number of bytes, or with a unit `K`, `M`, `G`, `T` (powers of 1024, `KiB`
/// and `KB` alike). A mistake is a usage error.
pub fn size(flag: &str, arg: &str) -> Result<u64> {
    let (number, unit) = split_unit(arg);
    let unit = unit.trim_end_matches("iB").trim_end_matches('B');
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => Some(0),
        "K" => Some(10),
        "M" => Some(20),
        "G" => Some(30),
        "T" => Some(40),
        _ => None,
    };
    match (number.parse::<u64>(), shift) {
        (Ok(n), Some(shift)) => Ok(n.saturating_mul(1 << shift)),
        _ => Err(UsageError(format!(
            "{flag} {arg:?}: expected a size such as 500M, 20G or 1T (or a number of bytes)"
        ))
        .into()),
    }
}

fn split_unit(arg: &str) -> (&str, &str) {
    let at = arg.find(|c: char| !c.is_ascii_digit()).unwrap_or(arg.len());
    arg.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration("--grace", "90").unwrap(), 90);
        assert_eq!(duration("--grace", "90m").unwrap(), 5400);
        assert_eq!(duration("--grace", "2w").unwrap(), 14 * 86400);
        assert_eq!(size("--max-freed", "3").unwrap(), 3);
        assert_eq!(size("--max-freed", "2G").unwrap(), 2 << 30);
        assert_eq!(size("--max-freed", "5MiB").unwrap(), 5 << 20);
        for bad in ["", "m", "1y", "-1", "1.5h"] {
            let e = duration("--grace", bad).unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{bad}");
            assert!(e.to_string().contains("--grace"), "{e}");
        }
        for bad in ["", "1X", "G"] {
            assert!(size("--max-freed", bad)
                .unwrap_err()
                .downcast_ref::<UsageError>()
                .is_some());
        }
    }

    #[test]
    fn cache_locations_refused_are_usage_errors() {
        assert_eq!(
            cache_location("file:///srv/cache").unwrap(),
            CacheLocation::Directory("/srv/cache".into())
        );
        for (arg, says) in [
            ("ssh+ng://host", "unsupported scheme \"ssh+ng\""),
            ("file://other-host/c", "not on \"other-host\""),
            ("", "empty"),
        ] {
            let e = cache_location(arg).unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{arg}");
            assert!(e.to_string().contains(says), "{arg}: {e}");
        }
    }
}
