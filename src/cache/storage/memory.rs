//! A cache in memory: for tests (the conformance suite runs on it) and for hosts without a file
//! system. Objects are shared byte buffers; a commit swaps one in whole, as a rename would.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Cursor, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::lease::{self, Lease};
use super::{
    check_lock_name, Committed, Object, ObjectMeta, Put, Staged, StorageLock, StorageRead,
    StorageWrite,
};
use crate::cache::layout::{CacheKey, KeyDir};

#[derive(Clone)]
struct Entry {
    data: Arc<Vec<u8>>,
    version: u64,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<CacheKey, Entry>,
    next_version: u64,
    /// Lock name → holders: `-1` exclusive, `n > 0` shared.
    locks: HashMap<String, i64>,
    /// Lease id → its text, while its holder lives.
    leases: BTreeMap<u64, Vec<u8>>,
    next_lease: u64,
}

/// What runs before the next exclusive batch lock is taken (a test's concurrent writer).
type BatchHook = Box<dyn FnOnce(&MemoryStorage) + Send>;

/// An in-memory cache.
#[derive(Default, Clone)]
pub struct MemoryStorage {
    inner: Arc<(Mutex<State>, Condvar)>,
    before_batch: Arc<Mutex<Vec<BatchHook>>>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    /// Runs `f` just before a collection next takes the batch lock exclusively, as a writer
    /// racing it would (hooks queue up: one per batch). For tests of the lease protocol.
    pub fn before_exclusive_batch(&self, f: impl FnOnce(&MemoryStorage) + Send + 'static) {
        self.before_batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }

    /// Whether hooks queued by [`MemoryStorage::before_exclusive_batch`] are left.
    pub fn has_batch_hooks(&self) -> bool {
        !self
            .before_batch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta(entry: &Entry) -> ObjectMeta {
        ObjectMeta {
            size: entry.data.len() as u64,
            modified: None,
            etag: format!("\"m{}\"", entry.version),
        }
    }

    fn install(&self, key: &CacheKey, data: Vec<u8>, how: Put) -> Committed {
        let mut state = self.state();
        if how == Put::IfAbsent && state.objects.contains_key(key) {
            return Committed::AlreadyThere;
        }
        state.next_version += 1;
        let version = state.next_version;
        state.objects.insert(
            key.clone(),
            Entry {
                data: Arc::new(data),
                version,
            },
        );
        Committed::Written
    }
}

/// A read of a shared buffer.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl StorageRead for MemoryStorage {
    fn describe(&self) -> String {
        "memory storage".into()
    }

    fn locate(&self, key: &CacheKey) -> String {
        format!("memory:{key}")
    }

    fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>> {
        Ok(self.state().objects.get(key).map(MemoryStorage::meta))
    }

    fn open(&self, key: &CacheKey) -> io::Result<Option<Object>> {
        Ok(self.state().objects.get(key).map(|entry| Object {
            meta: MemoryStorage::meta(entry),
            body: Box::new(Cursor::new(SharedBytes(entry.data.clone()))),
        }))
    }

    fn list(&self, dir: KeyDir) -> io::Result<Box<dyn Iterator<Item = io::Result<String>> + '_>> {
        let names: Vec<io::Result<String>> = self
            .state()
            .objects
            .keys()
            .filter(|k| k.dir() == dir)
            .map(|k| Ok(k.file_name()))
            .collect();
        Ok(Box::new(names.into_iter()))
    }

    /// Sizes are at hand, as a bucket's listing gives them: the verifier's use of them is
    /// tested on this storage too.
    fn list_sized(&self, dir: KeyDir) -> Option<io::Result<Vec<(String, u64)>>> {
        let state = self.state();
        let listed = state.objects.iter().filter(|(k, _)| k.dir() == dir);
        Some(Ok(listed
            .map(|(k, entry)| (k.file_name(), MemoryStorage::meta(entry).size))
            .collect()))
    }
}

struct MemoryStaged {
    storage: MemoryStorage,
    dir: KeyDir,
    data: Vec<u8>,
}

impl Write for MemoryStaged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Staged for MemoryStaged {
    fn name(&self) -> String {
        format!("a staged object in {}memory", self.dir.prefix())
    }

    fn commit(self: Box<Self>, key: &CacheKey, how: Put) -> io::Result<Committed> {
        if key.dir() != self.dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{key} is not in the folder it was staged in"),
            ));
        }
        Ok(self.storage.install(key, self.data, how))
    }
}

/// Releases a memory lock when dropped.
struct MemoryLockGuard {
    storage: MemoryStorage,
    name: String,
}

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        let mut state = self.storage.state();
        if let Some(holders) = state.locks.get_mut(&self.name) {
            if *holders > 1 {
                *holders -= 1;
            } else {
                state.locks.remove(&self.name);
            }
        }
        drop(state);
        self.storage.inner.1.notify_all();
    }
}

/// A lease in memory, removed when dropped.
struct MemoryLease {
    storage: MemoryStorage,
    id: u64,
}

impl Lease for MemoryLease {
    fn extend(&mut self, names: &[String]) -> io::Result<()> {
        let _batch = self.storage.gc_batch_lock(false)?;
        let mut state = self.storage.state();
        let text = state.leases.entry(self.id).or_default();
        text.extend_from_slice(&lease::text(names));
        Ok(())
    }

    fn describe(&self) -> String {
        format!("memory lease {}", self.id)
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        self.storage.state().leases.remove(&self.id);
    }
}

impl StorageWrite for MemoryStorage {
    fn lease(&self) -> io::Result<Box<dyn Lease>> {
        let mut state = self.state();
        state.next_lease += 1;
        let id = state.next_lease;
        state.leases.insert(id, Vec::new());
        Ok(Box::new(MemoryLease {
            storage: self.clone(),
            id,
        }))
    }

    fn gc_batch_lock(&self, exclusive: bool) -> io::Result<StorageLock> {
        if exclusive {
            let hook = {
                let mut hooks = self.before_batch.lock().unwrap_or_else(|p| p.into_inner());
                (!hooks.is_empty()).then(|| hooks.remove(0))
            };
            if let Some(hook) = hook {
                hook(self);
            }
        }
        self.lock("gc-batch", exclusive, true)?
            .ok_or_else(|| io::Error::other("the batch lock was not taken"))
    }

    fn live_leases(&self, _tidy: bool) -> io::Result<Vec<Vec<u8>>> {
        Ok(self.state().leases.values().cloned().collect())
    }

    fn prepare(&self) -> io::Result<()> {
        Ok(())
    }

    fn stage(&self, dir: KeyDir) -> io::Result<Box<dyn Staged>> {
        Ok(Box::new(MemoryStaged {
            storage: self.clone(),
            dir,
            data: Vec::new(),
        }))
    }

    fn replace_if_unchanged(
        &self,
        key: &CacheKey,
        data: &[u8],
        expected: Option<&str>,
    ) -> io::Result<bool> {
        let mut state = self.state();
        let current = state.objects.get(key).map(|e| MemoryStorage::meta(e).etag);
        if current.as_deref() != expected {
            return Ok(false);
        }
        state.next_version += 1;
        let version = state.next_version;
        state.objects.insert(
            key.clone(),
            Entry {
                data: Arc::new(data.to_vec()),
                version,
            },
        );
        Ok(true)
    }

    fn delete(&self, key: &CacheKey) -> io::Result<bool> {
        Ok(self.state().objects.remove(key).is_some())
    }

    fn barrier(&self) -> io::Result<()> {
        Ok(())
    }

    fn lock(&self, name: &str, exclusive: bool, wait: bool) -> io::Result<Option<StorageLock>> {
        check_lock_name(name)?;
        let mut state = self.state();
        loop {
            let holders = state.locks.get(name).copied().unwrap_or(0);
            let free = if exclusive {
                holders == 0
            } else {
                holders >= 0
            };
            if free {
                state
                    .locks
                    .insert(name.to_string(), if exclusive { -1 } else { holders + 1 });
                return Ok(Some(StorageLock::new(MemoryLockGuard {
                    storage: self.clone(),
                    name: name.to_string(),
                })));
            }
            if !wait {
                return Ok(None);
            }
            state = self.inner.1.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        super::super::conformance::run(&MemoryStorage::new());
    }
}
