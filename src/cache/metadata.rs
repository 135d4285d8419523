//! What a cache needs to know of a store path besides its contents — references, deriver, NAR
//! hash and size, content address, signatures — read from closureInfo's `registration`
//! (`nix-store --dump-db`) or `nix path-info --json`. (The Nix SQLite DB is read by the host.)

use std::collections::BTreeSet;

use crate::hash::{Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath};

/// Metadata of one store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Option<Hash>,
    pub nar_size: Option<u64>,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    pub sigs: Vec<String>,
    pub ca: Option<String>,
}

impl PathInfo {
    pub fn new(path: StorePath) -> PathInfo {
        PathInfo {
            path,
            nar_hash: None,
            nar_size: None,
            references: BTreeSet::new(),
            deriver: None,
            sigs: Vec::new(),
            ca: None,
        }
    }
}

/// A source's metadata was unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name} line {line}: {message}")]
pub struct MetadataError {
    pub source_name: &'static str,
    pub line: usize,
    pub message: String,
}

/// Parses a `registration` file: per path, the path, its hex SHA-256 NAR hash, NAR size,
/// deriver (empty line if none), the number of references, then the references.
pub fn parse_registration(
    store_dir: &StoreDir,
    text: &str,
) -> Result<Vec<PathInfo>, MetadataError> {
    let mut lines = text.lines().enumerate().peekable();
    let mut out = Vec::new();
    let fail = |line: usize, message: String| MetadataError {
        source_name: "registration",
        line: line + 1,
        message,
    };
    let mut next = |what: &str, last: usize| {
        lines
            .next()
            .ok_or_else(|| fail(last, format!("file ends where {what} was expected")))
    };
    let mut last = 0;
    while let Ok((i, path_line)) = next("a store path", last) {
        if path_line.is_empty() {
            last = i;
            continue;
        }
        let path = store_dir
            .parse_path(path_line)
            .map_err(|e| fail(i, e.to_string()))?;
        let (i, hash_line) = next("a NAR hash", i)?;
        let nar_hash =
            Hash::parse_as(HashAlgo::Sha256, hash_line).map_err(|e| fail(i, e.to_string()))?;
        let (i, size_line) = next("a NAR size", i)?;
        let nar_size: u64 = size_line
            .parse()
            .map_err(|_| fail(i, format!("expected a NAR size, found {size_line:?}")))?;
        let (i, deriver_line) = next("a deriver line", i)?;
        let deriver = if deriver_line.is_empty() {
            None
        } else {
            Some(
                store_dir
                    .parse_path(deriver_line)
                    .map_err(|e| fail(i, e.to_string()))?,
            )
        };
        let (i, count_line) = next("a reference count", i)?;
        let count: usize = count_line.parse().map_err(|_| {
            fail(
                i,
                format!("expected a reference count, found {count_line:?}"),
            )
        })?;
        let mut info = PathInfo::new(path);
        let mut at = i;
        for _ in 0..count {
            let (i, r) = next("a reference", at)?;
            info.references.insert(
                store_dir
                    .parse_path(r)
                    .map_err(|e| fail(i, e.to_string()))?,
            );
            at = i;
        }
        info.nar_hash = Some(nar_hash);
        info.nar_size = Some(nar_size);
        info.deriver = deriver;
        last = at;
        out.push(info);
    }
    Ok(out)
}

/// Writes a `registration` file (what [`parse_registration`] reads, and `nix-store --load-db`
/// and closureInfo use): per path, the path, its NAR hash in hex, NAR size, deriver (empty line if
/// none), the number of references, then the references, sorted. A path without a NAR hash or
/// size cannot be registered: `Err` names it.
pub fn format_registration(store_dir: &StoreDir, infos: &[PathInfo]) -> Result<String, String> {
    let mut out = String::new();
    for info in infos {
        let shown = store_dir.display(&info.path);
        let (Some(hash), Some(size)) = (&info.nar_hash, info.nar_size) else {
            return Err(format!("{shown}: no NAR hash and size to register"));
        };
        out.push_str(&shown);
        out.push('\n');
        out.push_str(&hash.encode(crate::hash::Encoding::Base16));
        out.push('\n');
        out.push_str(&size.to_string());
        out.push('\n');
        if let Some(d) = &info.deriver {
            out.push_str(&store_dir.display(d));
        }
        out.push('\n');
        out.push_str(&info.references.len().to_string());
        out.push('\n');
        for r in &info.references {
            out.push_str(&store_dir.display(r));
            out.push('\n');
        }
    }
    Ok(out)
}

/// Parses `nix path-info --json` output: an array of objects (Nix ≤ 2.18) or an object keyed by
/// path (newer Nix).
pub fn parse_path_info_json(
    store_dir: &StoreDir,
    text: &str,
) -> Result<Vec<PathInfo>, MetadataError> {
    let fail = |message: String| MetadataError {
        source_name: "path-info JSON",
        line: 0,
        message,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| fail(e.to_string()))?;
    let entries: Vec<(Option<String>, serde_json::Value)> = match value {
        serde_json::Value::Array(items) => items.into_iter().map(|v| (None, v)).collect(),
        serde_json::Value::Object(map) => map.into_iter().map(|(k, v)| (Some(k), v)).collect(),
        _ => return Err(fail("expected a JSON array or object".into())),
    };
    let mut out = Vec::new();
    for (key, v) in entries {
        let path_text = v
            .get("path")
            .and_then(|p| p.as_str())
            .map(str::to_string)
            .or(key)
            .ok_or_else(|| fail("an entry has no \"path\"".into()))?;
        if v.is_null() {
            return Err(fail(format!(
                "{path_text} is not valid in the store it was exported from"
            )));
        }
        let path = store_dir
            .parse_path(&path_text)
            .map_err(|e| fail(e.to_string()))?;
        let mut info = PathInfo::new(path);
        let ctx = |what: &str, e: String| fail(format!("{path_text}: {what}: {e}"));
        if let Some(h) = v.get("narHash").and_then(|h| h.as_str()) {
            info.nar_hash = Some(
                Hash::parse_as(HashAlgo::Sha256, h).map_err(|e| ctx("narHash", e.to_string()))?,
            );
        }
        info.nar_size = v.get("narSize").and_then(|s| s.as_u64());
        if let Some(refs) = v.get("references").and_then(|r| r.as_array()) {
            for r in refs {
                let r = r
                    .as_str()
                    .ok_or_else(|| ctx("references", "not a string".into()))?;
                let parsed = store_dir
                    .parse_path(r)
                    .or_else(|_| StorePath::from_base_name(r))
                    .map_err(|e| ctx("references", e.to_string()))?;
                info.references.insert(parsed);
            }
        }
        if let Some(d) = v.get("deriver").and_then(|d| d.as_str()) {
            info.deriver = Some(
                store_dir
                    .parse_path(d)
                    .or_else(|_| StorePath::from_base_name(d))
                    .map_err(|e| ctx("deriver", e.to_string()))?,
            );
        }
        if let Some(sigs) = v.get("signatures").and_then(|s| s.as_array()) {
            info.sigs = sigs
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
        }
        info.ca = v.get("ca").and_then(|c| c.as_str()).map(str::to_string);
        out.push(info);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nix-store --dump-db` of the corpus, written by Nix 2.8.
    const CORPUS_REGISTRATION: &str = include_str!("../../tests/fixtures/corpus/registration");

    #[test]
    fn registration_written_is_nix_dump_db_byte_for_byte() {
        let dir = StoreDir::default();
        let infos = parse_registration(&dir, CORPUS_REGISTRATION).unwrap();
        assert_eq!(infos.len(), 9);
        assert!(infos.iter().any(|i| i.deriver.is_none()));
        assert!(infos.iter().any(|i| i.references.len() > 1));
        assert_eq!(
            format_registration(&dir, &infos).unwrap(),
            CORPUS_REGISTRATION
        );
    }

    #[test]
    fn a_path_without_nar_hash_is_not_registered() {
        let dir = StoreDir::default();
        let mut infos = parse_registration(&dir, CORPUS_REGISTRATION).unwrap();
        infos[3].nar_hash = None;
        let e = format_registration(&dir, &infos).unwrap_err();
        assert!(e.contains(&dir.display(&infos[3].path)), "{e}");
    }
}
