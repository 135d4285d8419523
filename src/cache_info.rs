//! `nix-cache-info`: the cache's store directory and its substituter hints.

use std::fmt::Write as _;

/// The parsed file. Unknown keys are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheInfo {
    pub store_dir: Option<String>,
    pub want_mass_query: Option<bool>,
    /// Lower wins; cache.nixos.org uses 40.
    pub priority: Option<i64>,
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nix-cache-info line {line}: {message}")]
pub struct CacheInfoError {
    pub line: usize,
    pub message: String,
}

impl CacheInfo {
    pub fn new(store_dir: &str) -> CacheInfo {
        CacheInfo {
            store_dir: Some(store_dir.to_string()),
            ..Default::default()
        }
    }

    pub fn parse(text: &str) -> Result<CacheInfo, CacheInfoError> {
        let mut info = CacheInfo::default();
        for (i, line) in text.lines().enumerate() {
            let e = |message: String| CacheInfoError {
                line: i + 1,
                message,
            };
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(e(format!(
                    "expected \"Key: value\", found {:?}",
                    line.chars().take(80).collect::<String>()
                )));
            };
            let value = value.trim();
            match key.trim() {
                "StoreDir" => info.store_dir = Some(value.to_string()),
                "WantMassQuery" => {
                    info.want_mass_query = Some(match value {
                        "1" => true,
                        "0" => false,
                        v => return Err(e(format!("WantMassQuery: expected 0 or 1, found {v:?}"))),
                    })
                }
                "Priority" => {
                    info.priority = Some(value.parse().map_err(|_| {
                        e(format!(
                            "Priority: expected a whole number, found {value:?}"
                        ))
                    })?)
                }
                k => info.extra.push((k.to_string(), value.to_string())),
            }
        }
        Ok(info)
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.store_dir {
            let _ = writeln!(s, "StoreDir: {d}");
        }
        if let Some(w) = self.want_mass_query {
            let _ = writeln!(s, "WantMassQuery: {}", u8::from(w));
        }
        if let Some(p) = self.priority {
            let _ = writeln!(s, "Priority: {p}");
        }
        for (k, v) in &self.extra {
            let _ = writeln!(s, "{k}: {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n";
        let info = CacheInfo::parse(text).unwrap();
        assert_eq!(info.priority, Some(30));
        assert_eq!(info.to_text(), text);
        assert!(CacheInfo::parse("Priority: high\n").is_err());
        assert!(CacheInfo::parse("garbage\n").is_err());
    }
}
