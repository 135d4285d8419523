//! What a remote cache holds, listed once before a build: on a bucket, a listing page names a
//! thousand objects for the price of one request, where looking each key up costs a request of
//! its own (a narinfo that is not there, a NAR that is not there, for every path built). The
//! listing is only a hint: a key it lacks is taken as absent without asking, and every commit
//! is still create-if-absent (a narinfo or NAR another writer put there meanwhile is found at
//! the commit); a key it has is read as before.

use std::collections::HashSet;
use std::io;

use crate::cache::layout::{classify, CacheKey, KeyDir, Listed};
use crate::cache::storage::StorageWrite;
use crate::store_path::StorePath;

/// The narinfos and NARs a cache held when the build started.
pub(super) struct Present {
    keys: HashSet<CacheKey>,
}

impl Present {
    /// The listing, when the storage is remote (more than one request worth having in flight)
    /// and the cache holds at most `max_names` names in its root and `nar/` together; `None`
    /// otherwise (look each key up).
    pub(super) fn list(
        storage: &dyn StorageWrite,
        max_names: usize,
    ) -> io::Result<Option<Present>> {
        if storage.requests_in_flight() <= 1 {
            return Ok(None);
        }
        // Both folders at once (each listing waits on round trips).
        let (root, nar) = std::thread::scope(|s| {
            let nar = s.spawn(|| list_dir(storage, KeyDir::Nar, max_names));
            let root = list_dir(storage, KeyDir::Root, max_names);
            (
                root,
                nar.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            )
        });
        let (Some(mut keys), Some(nar)) = (root?, nar?) else {
            return Ok(None);
        };
        if keys.len() + nar.len() > max_names {
            return Ok(None);
        }
        keys.extend(nar);
        Ok(Some(Present { keys }))
    }

    /// Whether the key may be there: it was listed.
    pub(super) fn may_have(&self, key: &CacheKey) -> bool {
        self.keys.contains(key)
    }

    /// Whether the path's narinfo was listed.
    pub(super) fn lists_narinfo_of(&self, path: &StorePath) -> bool {
        self.may_have(&CacheKey::NarInfo(path.hash_part().to_string()))
    }
}

/// The narinfos or NARs of a folder; `None` past `max_names` names.
fn list_dir(
    storage: &dyn StorageWrite,
    dir: KeyDir,
    max_names: usize,
) -> io::Result<Option<HashSet<CacheKey>>> {
    let mut keys = HashSet::new();
    for (names, name) in storage.list(dir)?.enumerate() {
        if names >= max_names {
            return Ok(None);
        }
        if let Listed::Key(key @ (CacheKey::NarInfo(_) | CacheKey::Nar(_))) = classify(dir, &name?)
        {
            keys.insert(key);
        }
    }
    Ok(Some(keys))
}
