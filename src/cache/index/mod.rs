//! The lookup index of a cache: hash part → store path, NAR and file sizes, references and
//! referrers, kept in `nar-tool-index/` beside the narinfos (Nix ignores it). It answers what
//! a cache that cannot be listed cheaply (a bucket, an HTTP cache) would otherwise need a
//! request per narinfo for: a lookup by hash part reads the manifest and one or a few shards.
//!
//! - [`mod@format`]: the manifest and shards, byte for byte (`docs/INDEX.md`).
//! - [`reader`]: [`reader::IndexReader`], loading shards as lookups need them, from any source.
//! - [`publish`]: writing a new index over a [`StorageWrite`](crate::cache::storage::StorageWrite)
//!   so that a reader sees the old index or the new one (shards first, then the manifest
//!   replaced only if no other writer replaced it meanwhile), and the merges `build-cache`,
//!   `gc` and `nar-tool index` make.

pub mod format;
pub mod publish;
pub mod reader;
pub mod table;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::narinfo::NarInfo;
use crate::store_path::{StoreDir, StorePath};

/// What the index says of a path that has a narinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub nar_size: u64,
    /// The NAR file's size, when the narinfo gives it.
    pub file_size: Option<u64>,
    pub references: BTreeSet<StorePath>,
}

impl EntryInfo {
    pub fn of_narinfo(info: &NarInfo) -> EntryInfo {
        EntryInfo {
            nar_size: info.nar_size,
            file_size: info.file_size,
            references: info.references.iter().cloned().collect(),
        }
    }
}

/// The content of an index: the paths that have a narinfo, by store path. The references
/// without a narinfo become entries of their own when it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexContent {
    pub store_dir: StoreDir,
    pub paths: BTreeMap<StorePath, EntryInfo>,
}

impl IndexContent {
    pub fn new(store_dir: StoreDir) -> IndexContent {
        IndexContent {
            store_dir,
            paths: BTreeMap::new(),
        }
    }

    /// The content of a cache whose narinfos are these.
    pub fn from_narinfos<'a>(
        store_dir: StoreDir,
        infos: impl IntoIterator<Item = &'a NarInfo>,
    ) -> IndexContent {
        let mut content = IndexContent::new(store_dir);
        for info in infos {
            content
                .paths
                .insert(info.store_path.clone(), EntryInfo::of_narinfo(info));
        }
        content
    }

    /// Every entry's path: the paths and their references, sorted (by hash part).
    pub fn all_paths(&self) -> Vec<&StorePath> {
        // The paths are sorted already; only the references without an entry are merged in.
        let present: HashSet<&StorePath> = self.paths.keys().collect();
        let absent: BTreeSet<&StorePath> = self
            .paths
            .values()
            .flat_map(|info| &info.references)
            .filter(|r| !present.contains(r))
            .collect();
        let mut all = Vec::with_capacity(self.paths.len() + absent.len());
        let (mut a, mut b) = (self.paths.keys().peekable(), absent.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            all.extend(next);
        }
        all
    }

    /// The content of decoded shards (entries without a narinfo are left out).
    pub fn from_shards(
        store_dir: StoreDir,
        shards: &[&format::Shard],
    ) -> Result<IndexContent, IndexError> {
        let paths: Vec<&StorePath> = shards
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| &e.path))
            .collect();
        let mut content = IndexContent::new(store_dir);
        for entry in shards.iter().flat_map(|s| &s.entries) {
            let Some(nar_size) = entry.nar_size else {
                continue;
            };
            let references = entry
                .references
                .iter()
                .map(|&id| {
                    paths.get(id as usize).map(|p| (*p).clone()).ok_or_else(|| {
                        IndexError::Manifest(format!("reference id {id} has no entry"))
                    })
                })
                .collect::<Result<_, _>>()?;
            content.paths.insert(
                entry.path.clone(),
                EntryInfo {
                    nar_size,
                    file_size: entry.file_size,
                    references,
                },
            );
        }
        Ok(content)
    }
}

/// Why an index could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the index manifest is not valid: {0}")]
    Manifest(String),
    #[error("index shard {name}: {why}")]
    Shard { name: String, why: String },
    #[error("reading the index: {0}")]
    Read(String),
}

/// What a query given to `lookup` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A 32-character hash part, or a store path or base name (its hash part).
    HashPart(String),
    /// Any other text: a name to match, by prefix first, then as a substring.
    Name(String),
}

impl Query {
    /// Reads a query: a store path (`/nix/store/<hash>-<name>[/…]`), a base name, a hash
    /// part, or else a name.
    pub fn parse(store_dir: &StoreDir, text: &str) -> Query {
        let base = text
            .strip_prefix(store_dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| rest.split('/').next().unwrap_or(""))
            .unwrap_or(text);
        if let Ok(path) = StorePath::from_base_name(base) {
            return Query::HashPart(path.hash_part().to_string());
        }
        if base.len() == 32 && crate::nixbase32::decode_array::<20>(base).is_ok() {
            return Query::HashPart(base.to_string());
        }
        Query::Name(text.to_string())
    }
}

#[cfg(test)]
mod tests;
