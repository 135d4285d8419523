//! Store paths: `<store dir>/<32 nixbase32 chars>-<name>`, their validation, and how Nix computes
//! the path of content-addressed data (`nix-store --add`, fixed outputs, `builtins.toFile` text).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::hash::{to_hex, Hash, HashAlgo};
use crate::nixbase32;

/// Length of the hash part in characters.
pub const HASH_PART_LEN: usize = 32;
/// Longest name Nix accepts.
pub const MAX_NAME_LEN: usize = 211;

/// Why a store path (or its parts) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    #[error("{path:?} is not in the store directory {store_dir:?}")]
    NotInStore { path: String, store_dir: String },
    #[error(
        "store path base name {0:?} is too short (expected 32 hash characters, a dash and a name)"
    )]
    TooShort(String),
    #[error("store path base name {base:?} has no dash after its 32-character hash part")]
    MissingDash { base: String },
    #[error("store path base name {base:?}: invalid hash part: {reason}")]
    BadHashPart { base: String, reason: String },
    #[error("store path name {name:?} is invalid: {reason}")]
    BadName { name: String, reason: String },
    #[error("store directory {0:?} must be an absolute path without a trailing slash, \"..\" or \".\" components")]
    BadStoreDir(String),
}

/// A store directory such as `/nix/store`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreDir(String);

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir("/nix/store".to_string())
    }
}

impl StoreDir {
    pub fn new(dir: &str) -> Result<StoreDir, StorePathError> {
        let ok = dir.starts_with('/')
            && dir.len() > 1
            && !dir.ends_with('/')
            && dir[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if ok {
            Ok(StoreDir(dir.to_string()))
        } else {
            Err(StorePathError::BadStoreDir(dir.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses an absolute path directly inside this store directory.
    pub fn parse_path(&self, path: &str) -> Result<StorePath, StorePathError> {
        let base = path
            .strip_prefix(self.0.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|b| !b.contains('/'))
            .ok_or_else(|| StorePathError::NotInStore {
                path: path.to_string(),
                store_dir: self.0.clone(),
            })?;
        StorePath::from_base_name(base)
    }

    /// Like [`StoreDir::parse_path`], but also accepts a path *below* a store path
    /// (`/nix/store/…-foo/bin/foo`), returning the store path and the rest.
    pub fn parse_path_prefix<'a>(
        &self,
        path: &'a str,
    ) -> Result<(StorePath, &'a str), StorePathError> {
        let not_in_store = || StorePathError::NotInStore {
            path: path.to_string(),
            store_dir: self.0.clone(),
        };
        let rest = path
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(not_in_store)?;
        let (base, below) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        Ok((StorePath::from_base_name(base)?, below))
    }

    /// The absolute path of a store path in this directory.
    pub fn display(&self, path: &StorePath) -> String {
        format!("{}/{}", self.0, path)
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A store path, as its base name `<hash part>-<name>`; the store directory is kept apart
/// (as in Nix), since one store uses one directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    // Base name first so that the derived ordering is Nix's (by base name).
    base: String,
}

impl StorePath {
    /// Parses `<32 nixbase32 chars>-<name>`.
    pub fn from_base_name(base: &str) -> Result<StorePath, StorePathError> {
        if base.len() < HASH_PART_LEN + 2 {
            if base.len() == HASH_PART_LEN + 1 && base.ends_with('-') {
                return Err(StorePathError::BadName {
                    name: String::new(),
                    reason: "it is empty".into(),
                });
            }
            return Err(StorePathError::TooShort(base.to_string()));
        }
        if !base.is_char_boundary(HASH_PART_LEN) || base.as_bytes()[HASH_PART_LEN] != b'-' {
            return Err(StorePathError::MissingDash {
                base: base.to_string(),
            });
        }
        let (hash, name) = (&base[..HASH_PART_LEN], &base[HASH_PART_LEN + 1..]);
        nixbase32::decode_array::<20>(hash).map_err(|e| StorePathError::BadHashPart {
            base: base.to_string(),
            reason: e.to_string(),
        })?;
        validate_name(name)?;
        Ok(StorePath {
            base: base.to_string(),
        })
    }

    /// Builds a store path from a 20-byte digest and a name.
    pub fn from_parts(digest: &[u8; 20], name: &str) -> Result<StorePath, StorePathError> {
        validate_name(name)?;
        Ok(StorePath {
            base: format!("{}-{}", nixbase32::encode(digest), name),
        })
    }

    /// The 32-character hash part: the key of a binary cache.
    pub fn hash_part(&self) -> &str {
        &self.base[..HASH_PART_LEN]
    }

    /// The 20 bytes the hash part encodes.
    pub fn digest(&self) -> [u8; 20] {
        nixbase32::decode_array(self.hash_part()).expect("validated on construction")
    }

    pub fn name(&self) -> &str {
        &self.base[HASH_PART_LEN + 1..]
    }

    pub fn base_name(&self) -> &str {
        &self.base
    }

    /// The name split like Nix's `DrvName`: the version starts at the first dash followed by a
    /// non-letter (`hello-2.12.1` → `hello`, `2.12.1`).
    pub fn name_and_version(&self) -> (&str, &str) {
        split_name_version(self.name())
    }
}

/// A store path name split like Nix's `DrvName`: the version starts at the first dash followed
/// by a non-letter (`hello-2.12.1` → `hello`, `2.12.1`; no such dash: no version).
pub fn split_name_version(name: &str) -> (&str, &str) {
    let b = name.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && b.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()) {
            return (&name[..i], &name[i + 1..]);
        }
    }
    (name, "")
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.base)
    }
}

/// Checks a store path name: 1–211 characters of `[0-9A-Za-z+-._?=]`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<(), StorePathError> {
    let bad = |reason: String| {
        Err(StorePathError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return bad(format!(
            "it is {} characters long, the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return bad("it starts with a dot".into());
    }
    if let Some((i, c)) = name.char_indices().find(|&(_, c)| {
        !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '='))
    }) {
        return bad(format!(
            "character {c:?} at position {i} is not allowed (allowed: 0-9 A-Z a-z + - . _ ? =)"
        ));
    }
    Ok(())
}

/// The 20-byte compression Nix applies to a SHA-256: byte `i` is XORed into byte `i % 20`.
pub fn fold20(digest: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in digest.iter().enumerate() {
        out[i % 20] ^= b;
    }
    out
}

/// Nix's `makeStorePath`: hashes `<kind>:sha256:<hex inner hash>:<store dir>:<name>`.
pub fn make_store_path(
    kind: &str,
    inner: &Hash,
    store_dir: &StoreDir,
    name: &str,
) -> Result<StorePath, StorePathError> {
    validate_name(name)?;
    let fingerprint = format!(
        "{kind}:{}:{}:{}:{name}",
        inner.algo(),
        to_hex(inner.digest()),
        store_dir.as_str()
    );
    StorePath::from_parts(&fold20(&Sha256::digest(fingerprint.as_bytes())), name)
}

/// The type string with references: `kind:/nix/store/ref…[:self]`.
fn kind_with_references(
    kind: &str,
    store_dir: &StoreDir,
    references: &[StorePath],
    self_reference: bool,
) -> String {
    let mut refs: Vec<&StorePath> = references.iter().collect();
    refs.sort();
    refs.dedup();
    let mut s = kind.to_string();
    for r in refs {
        s.push(':');
        s.push_str(&store_dir.display(r));
    }
    if self_reference {
        s.push_str(":self");
    }
    s
}

/// The path `nix-store --add` gives a tree whose NAR has SHA-256 `nar_hash` (`source` type),
/// optionally with references and a self-reference.
pub fn make_source_path(
    store_dir: &StoreDir,
    name: &str,
    nar_hash: &Hash,
    references: &[StorePath],
    self_reference: bool,
) -> Result<StorePath, StorePathError> {
    let kind = kind_with_references("source", store_dir, references, self_reference);
    make_store_path(&kind, nar_hash, store_dir, name)
}

/// The path of a `builtins.toFile` / text path: `text` type, SHA-256 of the contents.
pub fn make_text_path(
    store_dir: &StoreDir,
    name: &str,
    contents_hash: &Hash,
    references: &[StorePath],
) -> Result<StorePath, StorePathError> {
    let kind = kind_with_references("text", store_dir, references, false);
    make_store_path(&kind, contents_hash, store_dir, name)
}

/// How fixed-output contents were hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileIngestion {
    /// The bytes of a single file.
    Flat,
    /// The NAR of a tree (`r:`).
    Recursive,
}

/// The path of a fixed-output path (`nix-store --add-fixed`, `fetchurl`).
pub fn make_fixed_output_path(
    store_dir: &StoreDir,
    name: &str,
    method: FileIngestion,
    hash: &Hash,
) -> Result<StorePath, StorePathError> {
    if method == FileIngestion::Recursive && hash.algo() == HashAlgo::Sha256 {
        return make_source_path(store_dir, name, hash, &[], false);
    }
    let prefix = if method == FileIngestion::Recursive {
        "r:"
    } else {
        ""
    };
    let inner = format!(
        "fixed:out:{prefix}{}:{}:",
        hash.algo(),
        to_hex(hash.digest())
    );
    make_store_path(
        "output:out",
        &Hash::of(HashAlgo::Sha256, inner.as_bytes()),
        store_dir,
        name,
    )
}

/// A content address as narinfos and the DB write it (`CA:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentAddress {
    /// `text:sha256:<nixbase32>`
    Text(Hash),
    /// `fixed:[r:]<algo>:<nixbase32>`
    Fixed(FileIngestion, Hash),
}

impl ContentAddress {
    pub fn parse(s: &str) -> Result<ContentAddress, String> {
        if let Some(rest) = s.strip_prefix("text:") {
            let h = Hash::parse_any(rest).map_err(|e| format!("content address {s:?}: {e}"))?;
            if h.algo() != HashAlgo::Sha256 {
                return Err(format!(
                    "content address {s:?}: a text content address is a SHA-256 hash, not {}",
                    h.algo()
                ));
            }
            return Ok(ContentAddress::Text(h));
        }
        if let Some(rest) = s.strip_prefix("fixed:") {
            let (method, rest) = match rest.strip_prefix("r:") {
                Some(r) => (FileIngestion::Recursive, r),
                None => (FileIngestion::Flat, rest),
            };
            return Hash::parse_any(rest)
                .map(|h| ContentAddress::Fixed(method, h))
                .map_err(|e| format!("content address {s:?}: {e}"));
        }
        Err(format!(
            "content address {s:?} starts with neither \"text:\" nor \"fixed:\""
        ))
    }

    /// The store path this content address implies for `name` (text paths need their references).
    pub fn store_path(
        &self,
        store_dir: &StoreDir,
        name: &str,
        references: &[StorePath],
    ) -> Result<StorePath, StorePathError> {
        match self {
            ContentAddress::Text(h) => make_text_path(store_dir, name, h, references),
            ContentAddress::Fixed(m, h) => make_fixed_output_path(store_dir, name, *m, h),
        }
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentAddress::Text(h) => write!(f, "text:{h}"),
            ContentAddress::Fixed(FileIngestion::Recursive, h) => write!(f, "fixed:r:{h}"),
            ContentAddress::Fixed(FileIngestion::Flat, h) => write!(f, "fixed:{h}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let dir = StoreDir::default();
        let p = dir
            .parse_path("/nix/store/12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public")
            .unwrap();
        assert_eq!(p.hash_part(), "12221svl9zlcqbffq6hxanhsxsk7wlyr");
        assert_eq!(p.name(), "edge-cases-public");
        assert!(dir
            .parse_path("/nix/store/12221svl9zlcqbffq6hxanhsxsk7wlyr-a/b")
            .is_err());
        assert!(dir
            .parse_path("/nix/storex/12221svl9zlcqbffq6hxanhsxsk7wlyr-a")
            .is_err());
        assert!(matches!(
            StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlye-a"),
            Err(StorePathError::BadHashPart { .. })
        ));
        assert!(matches!(
            StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlyr-.a"),
            Err(StorePathError::BadName { .. })
        ));
        assert!(matches!(
            StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlyr-a/b"),
            Err(StorePathError::BadName { .. })
        ));
        assert!(matches!(
            StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlyr-"),
            Err(StorePathError::BadName { .. })
        ));
        assert!(StorePath::from_base_name(&format!(
            "12221svl9zlcqbffq6hxanhsxsk7wlyr-{}",
            "a".repeat(212)
        ))
        .is_err());
        assert!(StoreDir::new("/nix/store/").is_err());
        assert!(StoreDir::new("nix/store").is_err());
    }

    #[test]
    fn name_and_version() {
        let p = StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlyr-libdemo-1.0-public")
            .unwrap();
        assert_eq!(p.name_and_version(), ("libdemo", "1.0-public"));
        let q = StorePath::from_base_name("12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public")
            .unwrap();
        assert_eq!(q.name_and_version(), ("edge-cases-public", ""));
    }

    #[test]
    fn content_address_round_trip() {
        let s = "fixed:r:sha256:03w5br129k9v835xmdmsf3rf0dqijcqar6g07s6sfqkrh19fbv8b";
        assert_eq!(ContentAddress::parse(s).unwrap().to_string(), s);
    }
}
