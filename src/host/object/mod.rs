//! Object storage as a backend of the storage layer: a bucket of an S3-compatible store
//! (`s3://BUCKET[/PREFIX]?…`) read and written, and a cache served over HTTP(S) read.
//!
//! Built on the `object_store` crate (request signing, retries with backoff, multipart uploads,
//! conditional puts); this module maps the storage layer's promises onto it:
//! - keys live under the prefix (`PREFIX/nar/…`), this tool's state under `PREFIX/.nar-tool/`
//!   (never listed as part of the cache);
//! - a staged object is invisible until its commit (module `staged`); put-if-absent is
//!   `If-None-Match: *`, replace-if-unchanged is `If-Match: ETAG`;
//! - a write is durable when its request returns, so the barrier has nothing left to do;
//! - what a killed writer leaves (uploads, staged objects, lock markers) is found through its
//!   owner record (module `owners`) and cleaned up by the next writer's `prepare`.

mod big_copy;
mod cleanup;
mod conditional;
mod config;
mod errors;
mod http_listing;
mod leases;
mod locks;
mod owners;
mod reader;
mod refusals;
pub mod runtime;
mod staged;

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::location::S3Location;
use crate::cache::storage::lease::Lease;
use crate::cache::storage::{
    check_lock_name, Object, ObjectMeta, RootEntry, Staged, StorageLock, StorageRead, StorageWrite,
};

pub use conditional::Fetched;
pub use config::Credentials;
pub use errors::Cause;

/// How to connect to a bucket, beyond its location.
#[derive(Clone)]
pub struct S3Options {
    /// The part size of multipart uploads (at least 5 MiB, S3's smallest).
    pub part_size: usize,
    /// Keys to use instead of those the environment and the credentials file give.
    pub credentials: Option<Credentials>,
    /// Staged objects larger than this are copied to their key by parts, not by one
    /// `CopyObject` (which AWS S3 limits to 5 GiB, [`COPY_LIMIT`]).
    pub copy_limit: u64,
}

impl Default for S3Options {
    fn default() -> S3Options {
        S3Options {
            part_size: DEFAULT_PART_SIZE,
            credentials: None,
            copy_limit: COPY_LIMIT,
        }
    }
}

/// The part size of multipart uploads by default (S3's smallest is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// The largest object one `CopyObject` copies on AWS S3.
pub const COPY_LIMIT: u64 = 5 << 30;
/// Requests worth having in flight at once: each waits on a round trip, and S3 servers answer
/// many at once (the connection pool keeps that many connections).
pub const REQUESTS_IN_FLIGHT: usize = 16;

/// A cache in object storage.
pub struct ObjectStorage {
    shared: Arc<Shared>,
}

/// What the storage, its staged objects, readers and background tasks share.
pub struct Shared {
    store: Arc<dyn object_store::ObjectStore>,
    multipart: Option<Arc<dyn object_store::multipart::MultipartStore>>,
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    /// `a/b/` or empty.
    prefix: String,
    /// `s3://bucket/prefix` or the HTTP base URL.
    shown: String,
    endpoint: String,
    credentials_hint: String,
    part_size: usize,
    /// Larger staged objects are copied by parts.
    copy_limit: u64,
    owner: OnceLock<(owners::Owner, Instant)>,
    counter: AtomicU64,
    http: bool,
    /// Lease parts read so far (they never change once written), by object path.
    lease_parts: std::sync::Mutex<std::collections::HashMap<String, bytes::Bytes>>,
}

impl Shared {
    /// The object path of a name relative to the cache.
    fn path(&self, rel: &str) -> io::Result<Path> {
        Path::parse(format!("{}{rel}", self.prefix)).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel:?} is not an object name: {e}"),
            )
        })
    }

    /// An object path as a user would name it.
    fn locate_path(&self, path: &Path) -> String {
        let rel = path
            .as_ref()
            .strip_prefix(&self.prefix)
            .unwrap_or(path.as_ref());
        format!("{}/{rel}", self.shown)
    }

    fn error(&self, e: object_store::Error, doing: &str, path: &Path) -> io::Error {
        errors::to_io(
            e,
            &format!("{doing} {}", self.locate_path(path)),
            &self.endpoint,
            &self.credentials_hint,
        )
    }

    fn owner_entry(&self) -> io::Result<&(owners::Owner, Instant)> {
        self.owner.get().ok_or_else(|| {
            io::Error::other(format!(
                "{} is not prepared for writing (prepare() first)",
                self.shown
            ))
        })
    }

    fn owner(&self) -> io::Result<&str> {
        Ok(&self.owner_entry()?.0.id)
    }

    /// The server's clock now, as estimated from the owner record's time.
    fn server_now(&self) -> io::Result<i64> {
        let (owner, since) = self.owner_entry()?;
        Ok(owner.server_now + since.elapsed().as_secs() as i64)
    }
}

impl ObjectStorage {
    /// The bucket of an `s3://` location; fails early, with a message naming the bucket and
    /// the endpoint, if the bucket is missing, the endpoint unreachable or access denied.
    pub fn s3(loc: &S3Location) -> io::Result<ObjectStorage> {
        ObjectStorage::s3_with(loc, &S3Options::default())
    }

    /// As [`ObjectStorage::s3`], with options.
    pub fn s3_with(loc: &S3Location, options: &S3Options) -> io::Result<ObjectStorage> {
        let part_size = options.part_size;
        let backend = config::s3(loc, options.credentials.as_ref())?;
        let prefix = if loc.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", loc.prefix)
        };
        let storage = ObjectStorage::from_backend(
            backend,
            prefix,
            crate::cache::location::CacheLocation::S3(loc.clone()).to_string(),
            part_size.max(5 << 20),
            options.copy_limit,
            false,
        );
        storage.probe()?;
        Ok(storage)
    }

    /// A cache served over HTTP(S) at `base`, read-only.
    pub fn http(base: &str) -> io::Result<ObjectStorage> {
        let backend = config::http(base)?;
        Ok(ObjectStorage::from_backend(
            backend,
            String::new(),
            base.trim_end_matches('/').to_string(),
            DEFAULT_PART_SIZE,
            COPY_LIMIT,
            true,
        ))
    }

    fn from_backend(
        backend: config::Backend,
        prefix: String,
        shown: String,
        part_size: usize,
        copy_limit: u64,
        http: bool,
    ) -> ObjectStorage {
        ObjectStorage {
            shared: Arc::new(Shared {
                store: backend.store,
                multipart: backend.multipart,
                signer: backend.signer,
                prefix,
                shown,
                endpoint: backend.endpoint,
                credentials_hint: backend.credentials_hint,
                part_size,
                copy_limit,
                owner: OnceLock::new(),
                counter: AtomicU64::new(0),
                http,
                lease_parts: Default::default(),
            }),
        }
    }

    /// One cheap request that fails as every later one would: a listing of a folder that
    /// does not exist (a missing bucket is "not found" here, and only here).
    fn probe(&self) -> io::Result<()> {
        let shared = self.shared.clone();
        let probe = shared.path(".nar-tool/probe/")?;
        runtime::block_on(async move {
            match shared.store.list_with_delimiter(Some(&probe)).await {
                Ok(_) => Ok(()),
                Err(e) if errors::cause(&e) == Cause::NotFound => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the bucket of {} does not exist at {} (create it first)",
                        shared.shown, shared.endpoint
                    ),
                )),
                Err(e) => Err(errors::to_io(
                    e,
                    &format!("opening {}", shared.shown),
                    &shared.endpoint,
                    &shared.credentials_hint,
                )),
            }
        })?
    }

    /// A URL a client may GET `key` from for `seconds`, signed with this storage's
    /// credentials (S3 only; `None` elsewhere).
    pub fn presigned_url(&self, key: &CacheKey, seconds: u64) -> io::Result<Option<String>> {
        let Some(signer) = self.shared.signer.clone() else {
            return Ok(None);
        };
        let path = self.shared.path(&key.to_string())?;
        let shared = self.shared.clone();
        runtime::block_on(async move {
            signer
                .signed_url(
                    http::Method::GET,
                    &path,
                    std::time::Duration::from_secs(seconds),
                )
                .await
                .map(|u| Some(u.to_string()))
                .map_err(|e| shared.error(e, "signing a URL for", &path))
        })?
    }

    /// Every object under the cache's prefix, cache keys or not (this tool's state under
    /// `.nar-tool/` too), relative to the prefix: for diagnostics and tests.
    pub fn list_everything(&self) -> io::Result<Vec<String>> {
        let prefix = self.shared.prefix.clone();
        self.block(move |shared| {
            Box::pin(async move {
                let folder = shared.path("")?;
                let folder = (!prefix.is_empty()).then_some(folder);
                let listed: Vec<object_store::ObjectMeta> = shared
                    .store
                    .list(folder.as_ref())
                    .try_collect()
                    .await
                    .map_err(|e| shared.error(e, "listing", &Path::from(prefix.as_str())))?;
                let mut names: Vec<String> = listed
                    .into_iter()
                    .map(|m| {
                        let p = m.location.as_ref();
                        p.strip_prefix(prefix.as_str()).unwrap_or(p).to_string()
                    })
                    .collect();
                names.sort();
                Ok(names)
            })
        })
    }

    /// The objects of one folder of the cache (one level: the root's listing is not the whole
    /// bucket), by name, with their sizes.
    fn bucket_listing(&self, dir: KeyDir) -> io::Result<Vec<(String, u64)>> {
        let folder = self.shared.path(dir.prefix())?;
        let prefix_len = folder.as_ref().len() + usize::from(!folder.as_ref().is_empty());
        self.block(move |shared| {
            Box::pin(async move {
                let listed = shared
                    .store
                    .list_with_delimiter(Some(&folder))
                    .await
                    .map_err(|e| shared.error(e, "listing", &folder))?;
                Ok(listed
                    .objects
                    .into_iter()
                    .map(|m| {
                        let name =
                            &m.location.as_ref()[prefix_len.min(m.location.as_ref().len())..];
                        (name.to_string(), m.size)
                    })
                    .collect())
            })
        })
    }

    /// Writes an object under any name below the prefix, cache key or not (as a copied
    /// directory would hold it: tests of damaged caches, migrations). Not for cache keys in
    /// normal use: [`StorageWrite`] keeps the cache's promises, this does not.
    pub fn put_raw(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        let path = self.shared.path(rel)?;
        let data = bytes::Bytes::copy_from_slice(data);
        self.block(move |shared| {
            Box::pin(async move {
                shared
                    .store
                    .put(&path, data.into())
                    .await
                    .map(drop)
                    .map_err(|e| shared.error(e, "writing", &path))
            })
        })
    }

    fn key_path(&self, key: &CacheKey) -> io::Result<Path> {
        self.shared.path(&key.to_string())
    }

    fn block<T: Send + 'static>(
        &self,
        f: impl FnOnce(
            Arc<Shared>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<T>> + Send>>,
    ) -> io::Result<T> {
        runtime::block_on(f(self.shared.clone()))?
    }

    /// The names a cache served by `nar-tool serve` publishes, page by page (an HTTP cache
    /// cannot be listed otherwise).
    fn http_listing(&self, dir: KeyDir) -> io::Result<Vec<String>> {
        let what = match dir {
            KeyDir::Root => "narinfos",
            KeyDir::Nar => "nar-files",
            _ => return Ok(Vec::new()),
        };
        let base = self.shared.shown.clone();
        let names = runtime::block_on(http_listing::fetch_all(base, what))??;
        let folder = dir.prefix();
        Ok(names
            .into_iter()
            .map(|n| n.strip_prefix(folder).map(str::to_string).unwrap_or(n))
            .collect())
    }
}

fn meta_of(m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        size: m.size,
        modified: u64::try_from(m.last_modified.timestamp()).ok(),
        etag: m
            .e_tag
            .clone()
            .unwrap_or_else(|| format!("\"{}-{}\"", m.size, m.last_modified.timestamp())),
    }
}

impl StorageRead for ObjectStorage {
    fn describe(&self) -> String {
        if self.shared.http {
            format!("HTTP cache {}", self.shared.shown)
        } else {
            format!("bucket {} at {}", self.shared.shown, self.shared.endpoint)
        }
    }

    fn locate(&self, key: &CacheKey) -> String {
        format!("{}/{key}", self.shared.shown)
    }

    fn requests_in_flight(&self) -> usize {
        REQUESTS_IN_FLIGHT
    }

    fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>> {
        let path = self.key_path(key)?;
        self.block(move |shared| {
            Box::pin(async move {
                match shared.store.head(&path).await {
                    Ok(m) => Ok(Some(meta_of(&m))),
                    Err(e) if errors::cause(&e) == Cause::NotFound => Ok(None),
                    Err(e) => Err(shared.error(e, "looking at", &path)),
                }
            })
        })
    }

    fn open(&self, key: &CacheKey) -> io::Result<Option<Object>> {
        let path = self.key_path(key)?;
        let name = self.locate(key);
        let got = {
            let path = path.clone();
            self.block(move |shared| {
                Box::pin(async move {
                    match shared.store.get(&path).await {
                        Ok(got) => Ok(Some(got)),
                        Err(e) if errors::cause(&e) == Cause::NotFound => Ok(None),
                        Err(e) => Err(shared.error(e, "reading", &path)),
                    }
                })
            })?
        };
        Ok(got.map(|got| Object {
            meta: meta_of(&got.meta),
            body: Box::new(reader::ObjectReader::new(
                self.shared.store.clone(),
                path,
                name,
                got,
            )),
        }))
    }

    fn list(&self, dir: KeyDir) -> io::Result<Box<dyn Iterator<Item = io::Result<String>> + '_>> {
        if self.shared.http {
            return Ok(Box::new(self.http_listing(dir)?.into_iter().map(Ok)));
        }
        let names = self
            .bucket_listing(dir)?
            .into_iter()
            .map(|(name, _)| Ok(name));
        Ok(Box::new(names.collect::<Vec<_>>().into_iter()))
    }

    /// A bucket's listing gives every object's size (an HTTP cache's listing does not).
    fn list_sized(&self, dir: KeyDir) -> Option<io::Result<Vec<(String, u64)>>> {
        (!self.shared.http).then(|| self.bucket_listing(dir))
    }

    fn read_small(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
        match self.read_small_unless(key, limit, None)? {
            Fetched::Found { body, .. } => Ok(Some(body)),
            Fetched::Absent => Ok(None),
            Fetched::NotModified => Err(io::Error::other(format!(
                "{}: 304 Not Modified to an unconditional request",
                self.locate(key)
            ))),
        }
    }

    fn read_range(
        &self,
        key: &CacheKey,
        start: u64,
        len: u64,
    ) -> io::Result<Option<(ObjectMeta, Box<dyn Read + Send>)>> {
        let Some(meta) = self.stat(key)? else {
            return Ok(None);
        };
        let path = self.key_path(key)?;
        let end = start.saturating_add(len).min(meta.size);
        if start >= end {
            return Ok(Some((meta, Box::new(io::empty()))));
        }
        let name = self.locate(key);
        let etag = meta.etag.clone();
        let got = {
            let path = path.clone();
            self.block(move |shared| {
                Box::pin(async move {
                    let options = GetOptions {
                        if_match: Some(etag),
                        range: Some(GetRange::Bounded(start..end)),
                        ..Default::default()
                    };
                    shared
                        .store
                        .get_opts(&path, options)
                        .await
                        .map_err(|e| shared.error(e, "reading a range of", &path))
                })
            })?
        };
        let reader = reader::ObjectReader::new(self.shared.store.clone(), path, name, got);
        Ok(Some((meta, Box::new(reader.take(end - start)))))
    }
}

impl StorageWrite for ObjectStorage {
    fn prepare(&self) -> io::Result<()> {
        if self.shared.http {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} is read-only (an HTTP cache)", self.shared.shown),
            ));
        }
        if self.shared.owner.get().is_none() {
            let shared = self.shared.clone();
            let owner = runtime::block_on(async move { owners::register(&shared).await })??;
            let _ = self.shared.owner.set((owner, Instant::now()));
        }
        let shared = self.shared.clone();
        let now = self.shared.server_now()?;
        runtime::block_on(async move { cleanup::abandoned(&shared, now).await })?
    }

    fn stage(&self, dir: KeyDir) -> io::Result<Box<dyn Staged>> {
        Ok(Box::new(staged::ObjectStaged::new(
            self.shared.clone(),
            dir,
        )))
    }

    fn writes_in_place(&self) -> bool {
        !self.shared.http
    }

    fn stage_at(&self, key: &CacheKey) -> io::Result<Box<dyn Staged>> {
        Ok(Box::new(staged::ObjectStaged::at(self.shared.clone(), key)))
    }

    fn put_if_absent(&self, key: &CacheKey, data: &[u8]) -> io::Result<bool> {
        self.replace_if_unchanged(key, data, None)
    }

    fn put(&self, key: &CacheKey, data: &[u8]) -> io::Result<()> {
        self.put_raw(&key.to_string(), data)
    }

    fn replace_if_unchanged(
        &self,
        key: &CacheKey,
        data: &[u8],
        expected: Option<&str>,
    ) -> io::Result<bool> {
        let path = self.key_path(key)?;
        let data = bytes::Bytes::copy_from_slice(data);
        let mode = match expected {
            None => PutMode::Create,
            Some(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.to_string()),
                version: None,
            }),
        };
        self.block(move |shared| {
            Box::pin(async move {
                match shared
                    .store
                    .put_opts(&path, data.into(), PutOptions::from(mode))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e)
                        if matches!(
                            errors::cause(&e),
                            Cause::Precondition | Cause::AlreadyExists
                        ) =>
                    {
                        Ok(false)
                    }
                    // If-Match on a missing object.
                    Err(e) if errors::cause(&e) == Cause::NotFound => Ok(false),
                    Err(e) => Err(shared.error(e, "writing", &path)),
                }
            })
        })
    }

    fn delete(&self, key: &CacheKey) -> io::Result<bool> {
        let path = self.key_path(key)?;
        self.block(move |shared| {
            Box::pin(async move {
                // S3 answers a delete of a missing key as a success: look first.
                match shared.store.head(&path).await {
                    Ok(_) => {}
                    Err(e) if errors::cause(&e) == Cause::NotFound => return Ok(false),
                    Err(e) => return Err(shared.error(e, "looking at", &path)),
                }
                shared
                    .store
                    .delete(&path)
                    .await
                    .map(|()| true)
                    .map_err(|e| shared.error(e, "deleting", &path))
            })
        })
    }

    fn barrier(&self) -> io::Result<()> {
        // Every request that returned is durable on the server.
        Ok(())
    }

    fn lock(&self, name: &str, exclusive: bool, wait: bool) -> io::Result<Option<StorageLock>> {
        check_lock_name(name)?;
        if self.shared.owner.get().is_none() {
            self.prepare()?;
        }
        locks::lock(&self.shared, name, exclusive, wait)
    }

    fn gc_batch_lock(&self, exclusive: bool) -> io::Result<StorageLock> {
        self.ensure_prepared()?;
        leases::batch_lock(&self.shared, exclusive)
    }

    fn lease(&self) -> io::Result<Box<dyn Lease>> {
        self.ensure_prepared()?;
        Ok(Box::new(leases::ObjectLease::new(&self.shared)?))
    }

    fn live_leases(&self, tidy: bool) -> io::Result<Vec<Vec<u8>>> {
        if tidy {
            self.ensure_prepared()?;
        }
        leases::live(&self.shared, tidy)
    }

    fn gc_roots(&self) -> io::Result<Vec<RootEntry>> {
        leases::roots(&self.shared)
    }
}

impl ObjectStorage {
    /// Registers this process as an owner if it is not yet (leases and locks need one).
    fn ensure_prepared(&self) -> io::Result<()> {
        if self.shared.owner.get().is_none() {
            self.prepare()?;
        }
        Ok(())
    }
}

impl Drop for ObjectStorage {
    fn drop(&mut self) {
        // The owner record goes with the last user of the storage (a staged object or a
        // reader may outlive this handle).
        if Arc::strong_count(&self.shared) != 1 {
            return;
        }
        if let Some((owner, _)) = self.shared.owner.get() {
            if let Ok(path) = self.shared.path(&format!(".nar-tool/owners/{}", owner.id)) {
                let shared = self.shared.clone();
                runtime::cleanup(async move { shared.store.delete(&path).await });
            }
        }
    }
}
