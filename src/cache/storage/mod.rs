//! The storage layer under every cache operation: what a backend must do to hold a binary cache,
//! for reading and for writing, by [`CacheKey`] only.
//!
//! - [`StorageRead`]: stat (size, mtime, ETag), whole small objects with a size limit, streams
//!   that seek (for byte ranges), and listing a folder lazily.
//! - [`StorageWrite`]: stage an object and stream into it, then commit it under a key known
//!   only at the end (a NAR is named by its file hash); put-if-absent and replace-if-unchanged
//!   for small objects; delete; a durability [`StorageWrite::barrier`] for a batch; named locks;
//!   and what garbage collection needs: its locks, [`lease`]s held by live processes, the
//!   cache's own roots (`gcroots/`).
//!
//! The crash-safety promise of a cache is built on these: an object becomes visible whole or not
//! at all (commit is atomic), and everything committed or staged before a barrier is durable once
//! it returns. So a writer stages a batch, calls one barrier, then commits what depends on it
//! (a narinfo after its NAR and its references' narinfos), instead of one sync per file.
//!
//! Backends: [`memory::MemoryStorage`] here (tests, wasm); the directory backend is native
//! (`host::dir_storage`). [`conformance`] is the test template every backend passes.

pub mod async_read;
pub mod conformance;
pub mod forward;
pub mod lease;
pub mod memory;

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::layout::{classify, CacheKey, KeyDir, KeyError, Listed};

/// What a backend knows of an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// Last modification, seconds since the Unix epoch, when the backend knows it.
    pub modified: Option<u64>,
    /// Changes whenever the object is replaced (quoted as HTTP sends it).
    pub etag: String,
}

/// A byte range of an object being read ([`StorageRead::read_range`]): the object's metadata,
/// and a stream of the range.
pub type RangeRead = (ObjectMeta, Box<dyn Read + Send>);

/// A stream over an object that can seek (for byte ranges).
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// An opened object: its metadata, taken from the same open (never a second look by name).
pub struct Object {
    pub meta: ObjectMeta,
    pub body: Box<dyn ReadSeek>,
}

/// Read access to a cache.
pub trait StorageRead: Send + Sync {
    /// What and where the storage is, for messages (`directory /srv/cache`).
    fn describe(&self) -> String;

    /// Where a key is, for messages (`/srv/cache/nar/x.nar.xz`).
    fn locate(&self, key: &CacheKey) -> String;

    /// The object's metadata; `Ok(None)` if absent.
    fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>>;

    /// The object, opened; `Ok(None)` if absent. Only whole regular objects are opened: a
    /// directory backend refuses FIFOs, devices and symlinks leading out of the cache.
    fn open(&self, key: &CacheKey) -> io::Result<Option<Object>>;

    /// The names in a folder (file names, without the folder), in no particular order, read
    /// as they are needed. Classify them with [`crate::cache::layout::classify`].
    fn list(&self, dir: KeyDir) -> io::Result<Box<dyn Iterator<Item = io::Result<String>> + '_>>;

    /// The names in a folder with their objects' sizes, where one listing gives both (a
    /// bucket's LIST does); `None` where it would take a look at each object (a directory),
    /// which [`StorageRead::stat`] does as well.
    fn list_sized(&self, dir: KeyDir) -> Option<io::Result<Vec<(String, u64)>>> {
        let _ = dir;
        None
    }

    /// A whole small object, refused past `limit` bytes (checked before reading); `Ok(None)` if
    /// absent.
    fn read_small(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(mut object) = self.open(key)? else {
            return Ok(None);
        };
        if object.meta.size > limit {
            return Err(too_large(key, object.meta.size, limit));
        }
        let mut buf = Vec::with_capacity(object.meta.size as usize);
        (&mut object.body).take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(too_large(key, buf.len() as u64, limit));
        }
        Ok(Some(buf))
    }

    /// How many requests are worth having in flight at once: 1 where each is answered at once
    /// (a local directory, memory), more where each waits on a network round trip (a bucket,
    /// an HTTP cache). Drivers that look up or commit many small objects use it.
    fn requests_in_flight(&self) -> usize {
        1
    }

    /// `len` bytes from `start` (fewer at the end of the object); `Ok(None)` if absent.
    fn read_range(&self, key: &CacheKey, start: u64, len: u64) -> io::Result<Option<RangeRead>> {
        let Some(mut object) = self.open(key)? else {
            return Ok(None);
        };
        object.body.seek(SeekFrom::Start(start))?;
        Ok(Some((object.meta, Box::new(object.body.take(len)))))
    }
}

/// A boxed storage (as `host::open` returns one) is a storage.
impl<T: StorageRead + ?Sized> StorageRead for Box<T> {
    crate::forward_storage!(std::ops::Deref::deref =>
        describe, locate, stat, open, list, list_sized, read_small, requests_in_flight, read_range);
}

/// How a staged object is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Replaces an existing object atomically.
    Replace,
    /// Leaves an existing object as it is (the staged one is dropped).
    IfAbsent,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Written,
    /// [`Put::IfAbsent`] found the key taken; nothing was written.
    AlreadyThere,
}

/// An object being written: not visible under any key until committed; dropped without a
/// commit, it disappears.
pub trait Staged: Write + Send {
    /// Where the object is being written, for messages (a temporary file's path).
    fn name(&self) -> String;

    /// Everything is written: the backend may release what it holds for writing (a file
    /// descriptor) while the object waits for its commit.
    fn finish_writing(&mut self) -> io::Result<()> {
        self.flush()
    }

    /// Makes the object visible under `key`, atomically (whole or not at all). Durable after
    /// the next [`StorageWrite::barrier`] (or at once on a backend without one).
    fn commit(self: Box<Self>, key: &CacheKey, how: Put) -> io::Result<Committed>;
}

/// A held lock; dropping it releases it.
pub struct StorageLock(#[allow(dead_code)] Box<dyn Send>);

impl StorageLock {
    pub fn new(guard: impl Send + 'static) -> StorageLock {
        StorageLock(Box::new(guard))
    }
}

/// Write access to a cache.
pub trait StorageWrite: StorageRead {
    /// Gets the storage ready for writing (folders; temporary objects of writers that died).
    fn prepare(&self) -> io::Result<()>;

    /// A new object in `dir`, to stream into and commit under a key chosen at the end.
    fn stage(&self, dir: KeyDir) -> io::Result<Box<dyn Staged>>;

    /// Whether [`StorageWrite::stage_at`] writes in place, saving the copy a commit of a staged
    /// object makes (a bucket: a multipart upload is invisible until completed, and a copy on
    /// the server costs as much as the upload). A writer that could learn an object's key ahead
    /// (by a pass over its bytes first) does so only where this is true.
    fn writes_in_place(&self) -> bool {
        false
    }

    /// A new object to stream into and commit under `key` only, which is known before the first
    /// byte (a NAR whose file hash was learnt first). Where the backend
    /// [writes in place](StorageWrite::writes_in_place), the bytes go straight to the key,
    /// still invisible until the commit; elsewhere this is [`StorageWrite::stage`]. Committing
    /// it under another key fails.
    fn stage_at(&self, key: &CacheKey) -> io::Result<Box<dyn Staged>> {
        self.stage(key.dir())
    }

    /// Writes a small object if the key is free; `false` if it was taken.
    fn put_if_absent(&self, key: &CacheKey, data: &[u8]) -> io::Result<bool> {
        let mut staged = self.stage(key.dir())?;
        staged.write_all(data)?;
        Ok(staged.commit(key, Put::IfAbsent)? == Committed::Written)
    }

    /// Writes a small object, replacing what is there.
    fn put(&self, key: &CacheKey, data: &[u8]) -> io::Result<()> {
        let mut staged = self.stage(key.dir())?;
        staged.write_all(data)?;
        staged.commit(key, Put::Replace).map(drop)
    }

    /// Replaces a small object only if its ETag is still `expected` (`None`: only if absent);
    /// `false` if it changed meanwhile.
    fn replace_if_unchanged(
        &self,
        key: &CacheKey,
        data: &[u8],
        expected: Option<&str>,
    ) -> io::Result<bool>;

    /// Deletes an object; `false` if it was absent.
    fn delete(&self, key: &CacheKey) -> io::Result<bool>;

    /// Makes durable everything committed so far, and every staged object whose writing was
    /// finished ([`Staged::finish_writing`], which a commit does first).
    fn barrier(&self) -> io::Result<()>;

    /// Takes the lock `name` (letters, digits, `-`), shared or exclusive, waiting for it or
    /// not (`Ok(None)`: held elsewhere). Locks are held across processes where the backend can.
    fn lock(&self, name: &str, exclusive: bool, wait: bool) -> io::Result<Option<StorageLock>>;

    /// Takes the GC lock (one collection at a time per cache) without waiting: `Ok(None)` when
    /// another collection holds it. Writes nothing where the backend can (a directory locks a
    /// folder that exists), so that a full disk can be collected.
    fn gc_lock(&self) -> io::Result<Option<StorageLock>> {
        self.lock("gc", true, false)
    }

    /// Takes the batch lock of the [`lease`] protocol, waiting for it: exclusive for a
    /// collection's deletion batch, shared for a lease's write. Writes nothing before it holds
    /// it where the backend can (a directory: a `flock` of the cache's folder).
    fn gc_batch_lock(&self, exclusive: bool) -> io::Result<StorageLock> {
        self.lock("gc-batch", exclusive, true)?
            .ok_or_else(|| io::Error::other("the batch lock was not taken"))
    }

    /// A new lease, naming nothing yet, held by this process until dropped.
    fn lease(&self) -> io::Result<Box<dyn lease::Lease>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} does not support leases", self.describe()),
        ))
    }

    /// The text of every live lease, read while the batch lock is held exclusively; with
    /// `tidy`, the leases of holders that died are removed (a dry run passes `false` and writes
    /// nothing: where a holder's death cannot be judged without writing, its lease counts).
    fn live_leases(&self, tidy: bool) -> io::Result<Vec<Vec<u8>>> {
        let _ = tidy;
        Ok(Vec::new())
    }

    /// The cache's own GC roots (the folder `gcroots/`): each entry's name, and its link text if
    /// it is a symlink (never followed). Empty if there is no such folder.
    fn gc_roots(&self) -> io::Result<Vec<RootEntry>> {
        Ok(Vec::new())
    }

    /// Removes the temporary objects of writers that died, without writing anything first where
    /// the backend can (unlike [`StorageWrite::prepare`], which registers this process).
    fn clean_abandoned(&self) -> io::Result<()> {
        self.prepare()
    }
}

/// An entry of a roots folder: its name, and for a symlink the text it links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootEntry {
    pub name: String,
    pub link: Option<String>,
}

/// A name that claims to be part of the cache but is not a key, and why.
pub type Stray = (String, KeyError);

/// A folder's listing, classified: the keys, and the names that claim to be part of the cache
/// but are not keys (reported, never read). Sorted.
pub fn list_keys<S: StorageRead + ?Sized>(
    storage: &S,
    dir: KeyDir,
) -> io::Result<(Vec<CacheKey>, Vec<Stray>)> {
    let mut keys = Vec::new();
    let mut strays = Vec::new();
    for name in storage.list(dir)? {
        match classify(dir, &name?) {
            Listed::Key(key) => keys.push(key),
            Listed::Stray { name, why } => strays.push((name, why)),
            Listed::Foreign => {}
        }
    }
    keys.sort();
    strays.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((keys, strays))
}

/// The names of a folder's listing that are part of the cache, by the one rule `verify`, `serve`
/// and the inspector use (and the JS directory source, through the wasm layer): keys and strays,
/// never foreign names, with the folder's prefix (`nar/…`); at the root only the narinfos, valid
/// or not (`bogus.narinfo` too: the verifier reports it). Sorted.
pub fn listed_names(
    dir: KeyDir,
    names: impl IntoIterator<Item = io::Result<String>>,
) -> io::Result<Vec<String>> {
    let entries = names.into_iter().map(|n| n.map(|n| (n, ())));
    Ok(listed_entries(dir, entries)?
        .into_iter()
        .map(|(n, ())| n)
        .collect())
}

/// [`listed_names`] of entries that carry something more (a size), kept with their names.
pub fn listed_entries<T>(
    dir: KeyDir,
    entries: impl IntoIterator<Item = io::Result<(String, T)>>,
) -> io::Result<Vec<(String, T)>> {
    let mut listed = Vec::new();
    for entry in entries {
        let (name, more) = entry?;
        let name = match classify(dir, &name) {
            Listed::Key(key) => key.to_string(),
            Listed::Stray { name, .. } => name,
            Listed::Foreign => continue,
        };
        if dir != KeyDir::Root || name.ends_with(".narinfo") {
            listed.push((name, more));
        }
    }
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(listed)
}

/// The names of the narinfos at the root, valid or not (`bogus.narinfo` too), sorted: the one
/// listing of narinfos that `verify`, `serve` and the inspector use.
pub fn list_narinfo_names<S: StorageRead + ?Sized>(storage: &S) -> io::Result<Vec<String>> {
    listed_names(KeyDir::Root, storage.list(KeyDir::Root)?)
}

/// The names under `nar/`: NAR keys, and names there that are not (the verifier reports them),
/// sorted.
pub fn list_nar_file_names<S: StorageRead + ?Sized>(storage: &S) -> io::Result<Vec<String>> {
    listed_names(KeyDir::Nar, storage.list(KeyDir::Nar)?)
}

/// Whether an error from opening a key means that nothing the cache holds is there: a name that
/// leads outside the cache, or something other than a regular object (a FIFO, a directory).
/// Listings leave such names out and `serve` answers 404 for them.
pub fn is_refused(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidData
    )
}

/// Checks a lock name (letters, digits, `-`).
pub fn check_lock_name(name: &str) -> io::Result<()> {
    if !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a lock name (letters, digits, '-')"),
        ))
    }
}

fn too_large(key: &CacheKey, size: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{key} is larger than {limit} bytes (it has {size})"),
    )
}

/// The key a verifier's relative name stands for.
fn key_of(rel: &str) -> io::Result<CacheKey> {
    CacheKey::parse(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Every storage is a source for the verifier: names that are not keys are refused, unread.
impl<T: StorageRead + ?Sized> crate::cache::verify::CacheStorage for T {
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        StorageRead::read_small(self, &key_of(rel)?, limit as u64)
    }

    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>> {
        Ok(StorageRead::open(self, &key_of(rel)?)?.map(|o| Box::new(o.body) as Box<dyn Read>))
    }

    fn size(&self, rel: &str) -> io::Result<Option<u64>> {
        Ok(self.stat(&key_of(rel)?)?.map(|m| m.size))
    }

    fn open_sized(&self, rel: &str) -> io::Result<Option<(Box<dyn Read + '_>, u64)>> {
        Ok(StorageRead::open(self, &key_of(rel)?)?
            .map(|o| (Box::new(o.body) as Box<dyn Read>, o.meta.size)))
    }

    fn list_narinfos(&self) -> io::Result<Vec<String>> {
        list_narinfo_names(self)
    }

    fn list_nar_files(&self) -> io::Result<Vec<String>> {
        list_nar_file_names(self)
    }

    fn list_nar_files_sized(&self) -> Option<io::Result<Vec<(String, u64)>>> {
        let listed = self.list_sized(KeyDir::Nar)?;
        Some(listed.and_then(|l| listed_entries(KeyDir::Nar, l.into_iter().map(Ok))))
    }
}
