//! Leases and GC roots in a bucket.
//!
//! A lease is a set of objects `.nar-tool/leases/<owner>-<n>.<part>`, one per extension, each
//! holding the names added (one per line): parts never change once written, so a collection
//! reads each once, however often it looks again.
//!
//! An extension does not take the batch lock shared (a marker written, the exclusive marker
//! looked for, the part written, the marker deleted: four requests one after another, which
//! made a build of many small paths wait on its lease). It writes its part, then looks for the
//! exclusive marker `x` of a collection's batch and, if a live owner holds it, waits until it
//! is gone; two requests. That keeps the promise of [`Lease::extend`] (the store is strongly
//! consistent, and a collection reads the leases after it wrote `x` and deletes only before it
//! removes `x`): if the look finds no `x`, a batch that had not ended by then writes its `x`
//! after the look, so after the part, and reads the part; a batch whose `x` is found may have
//! read the leases before the part, and the extension returns only once that batch has ended
//! (an `x` whose owner is gone is removed, as a lock taker does). Writers of
//! the older kind (shared markers) are still waited for by a collection's exclusive take.
//!
//! A lease lives as long as its owner ([`super::owners`]): the owner record is rewritten
//! every minute while the process lives, so a lease of a process that died is recognised by its
//! record (gone, naming a dead process of this machine, or stale by the server's clock) and
//! removed by the next collection. Roots are objects under `gcroots/`, named by store paths'
//! base names (a bucket has no symlinks).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::owners::{owner_is_gone, owner_of, SERVER_TIME_UNKNOWN};
use super::{locks, runtime, Shared};
use crate::cache::storage::lease::{self, Lease};
use crate::cache::storage::{RootEntry, StorageLock};

/// The batch lock's name.
pub const BATCH_LOCK: &str = "gc-batch";

/// A lease's objects, deleted when dropped.
pub struct ObjectLease {
    shared: Arc<Shared>,
    /// `.nar-tool/leases/<owner>-<n>`, relative to the cache.
    name: String,
    parts: Vec<Path>,
}

impl ObjectLease {
    /// A new, empty lease of this process (the storage prepared: its owner registered).
    pub fn new(shared: &Arc<Shared>) -> io::Result<ObjectLease> {
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        let owner = shared.owner()?.to_string();
        Ok(ObjectLease {
            shared: shared.clone(),
            name: format!(".nar-tool/leases/{owner}-{n}"),
            parts: Vec::new(),
        })
    }

    fn write(&mut self, text: Vec<u8>) -> io::Result<()> {
        let path = self
            .shared
            .path(&format!("{}.{}", self.name, self.parts.len()))?;
        self.parts.push(path.clone());
        let shared = self.shared.clone();
        let data = bytes::Bytes::from(text);
        runtime::block_on(async move {
            shared
                .store
                .put(&path, data.into())
                .await
                .map(drop)
                .map_err(|e| shared.error(e, "writing the lease", &path))
        })?
    }
}

impl Lease for ObjectLease {
    /// The part written first, then the collection's exclusive marker looked for, and waited
    /// out if there is one (see the module's doc): two requests one after the other.
    fn extend(&mut self, names: &[String]) -> io::Result<()> {
        self.write(lease::text(names))?;
        locks::wait_while_exclusive(&self.shared, BATCH_LOCK)
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.shared.shown, self.name)
    }
}

impl Drop for ObjectLease {
    fn drop(&mut self) {
        let (shared, parts) = (self.shared.clone(), std::mem::take(&mut self.parts));
        if parts.is_empty() {
            return;
        }
        // All parts in one request where the server deletes in bulk (a thousand a request).
        runtime::cleanup(async move {
            let parts = futures_util::stream::iter(parts.into_iter().map(Ok)).boxed();
            let _ = shared.store.delete_stream(parts).collect::<Vec<_>>().await;
        });
    }
}

/// The batch lock, waited for.
pub fn batch_lock(shared: &Arc<Shared>, exclusive: bool) -> io::Result<StorageLock> {
    locks::lock(shared, BATCH_LOCK, exclusive, true)?
        .ok_or_else(|| io::Error::other("the batch lock was not taken"))
}

/// The text of every lease whose owner lives (each part read once, then remembered); with
/// `tidy` (this process registered as an owner), the others are deleted. Without, nothing is
/// written and the server's clock is unknown: a lease of another machine counts as live.
pub fn live(shared: &Arc<Shared>, tidy: bool) -> io::Result<Vec<Vec<u8>>> {
    let server_now = if tidy {
        shared.server_now()?
    } else {
        SERVER_TIME_UNKNOWN
    };
    let shared = shared.clone();
    runtime::block_on(async move {
        let folder = shared.path(".nar-tool/leases/")?;
        let listed: Vec<object_store::ObjectMeta> = shared
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| shared.error(e, "listing the leases", &folder))?;
        let mut texts = Vec::new();
        for meta in listed {
            let name = meta.location.filename().unwrap_or_default().to_string();
            let owner = owner_of(&name).to_string();
            if owner_is_gone(&shared, &owner, server_now).await? {
                if !tidy {
                    continue;
                }
                match shared.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(shared.error(e, "removing the dead lease", &meta.location))
                    }
                }
                continue;
            }
            let known = shared
                .lease_parts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(meta.location.as_ref())
                .cloned();
            if let Some(text) = known {
                texts.push(text.to_vec());
                continue;
            }
            match shared.store.get(&meta.location).await {
                Ok(got) => {
                    let body = got
                        .bytes()
                        .await
                        .map_err(|e| shared.error(e, "reading the lease", &meta.location))?;
                    texts.push(body.to_vec());
                    shared
                        .lease_parts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(meta.location.to_string(), body);
                }
                // Ended meanwhile.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(shared.error(e, "reading the lease", &meta.location)),
            }
        }
        Ok(texts)
    })?
}

/// The objects under `gcroots/`.
pub fn roots(shared: &Arc<Shared>) -> io::Result<Vec<RootEntry>> {
    let shared = shared.clone();
    runtime::block_on(async move {
        let folder = shared.path("gcroots/")?;
        let listed: Vec<object_store::ObjectMeta> = shared
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| shared.error(e, "listing the roots", &folder))?;
        Ok(listed
            .into_iter()
            .map(|m| {
                let rel = m.location.as_ref();
                let rel = rel.strip_prefix(folder.as_ref()).unwrap_or(rel);
                RootEntry {
                    name: rel.trim_start_matches('/').to_string(),
                    link: None,
                }
            })
            .collect())
    })?
}
