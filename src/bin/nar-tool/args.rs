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

#[cfg(test)]
mod tests {
    use super::*;

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
