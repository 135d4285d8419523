//! Writing the index of a cache so that every reader sees the old index or the new one, on any
//! backend: the new shards are written first (named by their hash, so they never overwrite a
//! shard of the index in use), made durable, and then the manifest is replaced only if it is
//! still the one the new index was computed from. A writer that loses that race computes its
//! index again from the winner's. The shards only the old index named are deleted afterwards.
//! A writer that dies leaves at most unreferenced shards, which [`sweep`] removes.

use std::collections::{BTreeSet, HashSet};
use std::io::{self, Read};

use super::format::{self, Manifest};
use super::reader::{IndexReader, IndexSource};
use super::{EntryInfo, IndexContent, IndexError};
use crate::cache::gc::plan::Inventory;
use crate::cache::gc::run::narinfos_except;
use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::storage::{StorageRead, StorageWrite};
use crate::store_path::{StoreDir, StorePath};

/// The manifest's name in `nar-tool-index/`.
pub const MANIFEST: &str = "index.json";

/// How many times a writer computes its index again after losing a race.
const MAX_TRIES: usize = 64;

/// The key of an object of the index.
pub fn key(name: &str) -> io::Result<CacheKey> {
    CacheKey::parse(&format!("{}{name}", KeyDir::Index.prefix()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// A storage as a source of index objects.
pub struct StorageSource<'a, S: StorageRead + ?Sized>(pub &'a S);

impl<S: StorageRead + ?Sized> IndexSource for StorageSource<'_, S> {
    fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, IndexError> {
        let key = key(name).map_err(|e| IndexError::Read(e.to_string()))?;
        self.0
            .read_small(&key, limit)
            .map_err(|e| IndexError::Read(format!("{}: {e}", self.0.locate(&key))))
    }
}

/// The index a cache has now: its content and manifest.
pub struct Current {
    pub content: IndexContent,
    pub manifest: Manifest,
}

/// The manifest's ETag (`None`: no manifest), and the index it names (`Err`: not a valid one).
struct State {
    etag: Option<String>,
    index: Result<Option<Current>, IndexError>,
}

fn index_error(e: IndexError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Reads the whole index of `storage`; `Ok(None)` if it has none.
pub fn read_current<S: StorageRead + ?Sized>(storage: &S) -> io::Result<Option<Current>> {
    read_state(storage)?.index.map_err(index_error)
}

fn read_state<S: StorageRead + ?Sized>(storage: &S) -> io::Result<State> {
    let key = key(MANIFEST)?;
    let Some(object) = storage.open(&key)? else {
        return Ok(State {
            etag: None,
            index: Ok(None),
        });
    };
    let etag = Some(object.meta.etag.clone());
    let mut bytes = Vec::new();
    object
        .body
        .take(format::MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    let index = (|| {
        let mut reader = IndexReader::new(&bytes)?;
        reader.answer(&StorageSource(storage), IndexReader::all_shards)?;
        let content =
            IndexContent::from_shards(reader.store_dir().clone(), &reader.loaded_shards())?;
        Ok(Some(Current {
            content,
            manifest: reader.manifest().clone(),
        }))
    })();
    Ok(State { etag, index })
}

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Paths with a narinfo in the index now.
    pub paths: u64,
    /// Whether a new manifest was written (`false`: the index already said so).
    pub changed: bool,
}

/// Writes a new index computed by `update` from the current one (`None` if there is none or
/// it is not valid: `update` then computes it whole), again from the winner's if another
/// writer replaces the manifest meanwhile.
pub fn publish<S: StorageWrite + ?Sized>(
    storage: &S,
    mut update: impl FnMut(Option<&IndexContent>) -> io::Result<IndexContent>,
) -> io::Result<Published> {
    let manifest_key = key(MANIFEST)?;
    for _ in 0..MAX_TRIES {
        let state = read_state(storage)?;
        let current = state.index.ok().flatten();
        let content = update(current.as_ref().map(|c| &c.content))?;
        if current.as_ref().is_some_and(|c| c.content == content) {
            return Ok(Published {
                paths: content.paths.len() as u64,
                changed: false,
            });
        }
        let (json, manifest, shards) = format::encode(&content);
        // Written even where the name is taken: what is there may not be those bytes.
        for (name, bytes) in &shards {
            storage.put(&key(name)?, bytes)?;
        }
        storage.barrier()?;
        let expected = state.etag.as_deref();
        if !storage.replace_if_unchanged(&manifest_key, &json, expected)? {
            continue;
        }
        storage.barrier()?;
        // A writer that retired a shard identical to one of ours between our write and our
        // manifest: write it again (same name, same bytes).
        for (name, bytes) in &shards {
            let key = key(name)?;
            if storage.stat(&key)?.is_none() {
                storage.put(&key, bytes)?;
            }
        }
        if let Some(old) = &current {
            let kept: BTreeSet<&str> = manifest.shards.iter().map(|s| s.name.as_str()).collect();
            for s in &old.manifest.shards {
                if !kept.contains(s.name.as_str()) {
                    storage.delete(&key(&s.name)?)?;
                }
            }
        }
        return Ok(Published {
            paths: manifest.paths,
            changed: true,
        });
    }
    Err(io::Error::other(format!(
        "the index of {} was replaced by other writers {MAX_TRIES} times while this one wrote it",
        storage.describe()
    )))
}

/// Deletes the shards that the current index does not name and that are older than
/// `min_age` seconds at `now` (those of writers that died or lost a race; younger ones may be
/// a live writer's). Returns how many were deleted.
pub fn sweep<S: StorageWrite + ?Sized>(storage: &S, now: u64, min_age: u64) -> io::Result<usize> {
    let named: BTreeSet<String> = match read_current(storage)? {
        Some(c) => c.manifest.shards.into_iter().map(|s| s.name).collect(),
        None => BTreeSet::new(),
    };
    let mut deleted = 0;
    let names: Vec<String> = storage.list(KeyDir::Index)?.collect::<io::Result<_>>()?;
    for name in names {
        if !format::is_shard_name(&name) || named.contains(&name) {
            continue;
        }
        let key = key(&name)?;
        let old = storage
            .stat(&key)?
            .and_then(|m| m.modified)
            .is_some_and(|m| now.saturating_sub(m) >= min_age);
        if old && storage.delete(&key)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The content of an index of the narinfos in `inventory` (those that could be read).
pub fn content_of(store_dir: &StoreDir, inventory: &Inventory) -> IndexContent {
    let mut content = IndexContent::new(store_dir.clone());
    for entry in inventory.entries.values() {
        content.paths.insert(
            entry.path.clone(),
            EntryInfo {
                nar_size: entry.nar_size,
                file_size: entry.file_size,
                references: entry.references.iter().cloned().collect(),
            },
        );
    }
    content
}

/// Writes the index of a cache whose narinfos were `listed`, as `nar-tool index` and a
/// collection do: what the listing found, and what other writers added to the index since
/// `base` was read before the listing (their narinfos may be newer than it), less `removed`
/// (the paths a collection deleted since).
pub fn reconcile<S: StorageWrite + ?Sized>(
    storage: &S,
    listed: &IndexContent,
    base: Option<&IndexContent>,
    removed: &BTreeSet<StorePath>,
) -> io::Result<Published> {
    publish(storage, |current| {
        let mut content = listed.clone();
        for p in removed {
            content.paths.remove(p);
        }
        if let Some(current) = current {
            for (path, info) in &current.paths {
                let added_since = base.is_none_or(|b| !b.paths.contains_key(path));
                if added_since && !removed.contains(path) && !content.paths.contains_key(path) {
                    content.paths.insert(path.clone(), info.clone());
                }
            }
        }
        Ok(content)
    })
}

/// Adds what a build published (or found there) to the index; where the cache has no index
/// (or not a valid one), writes it whole from the narinfos, read `jobs` at a time.
pub fn add(
    storage: &dyn StorageWrite,
    store_dir: &StoreDir,
    entries: &[(StorePath, EntryInfo)],
    jobs: usize,
) -> io::Result<Published> {
    // Without an index, the others are read from their narinfos (those of `entries` are known).
    let known: HashSet<String> = entries
        .iter()
        .map(|(p, _)| p.hash_part().to_string())
        .collect();
    let jobs = jobs.max(storage.requests_in_flight());
    publish(storage, |current| {
        let mut content = match current {
            Some(c) => c.clone(),
            None => content_of(store_dir, &narinfos_except(storage, &known, jobs)?),
        };
        for (path, info) in entries {
            content.paths.insert(path.clone(), info.clone());
        }
        Ok(content)
    })
}
