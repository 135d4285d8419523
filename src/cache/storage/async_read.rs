//! The async face of the storage layer: read access for hosts that cannot block (wasm: `fetch`,
//! a folder the user picked) and for backends that are async by nature (object storage). The
//! async verifier reads any [`AsyncStorageRead`]; [`Blocking`] makes any sync storage one.

use std::io::{self, Read};

use super::{key_of, listed_names, ObjectMeta, ReadSeek, StorageRead};
use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::verify::push::AsyncCacheSource;

/// An object arriving in pieces.
#[allow(async_fn_in_trait)] // used by single-threaded hosts only
pub trait ChunkStream {
    /// The next piece; `None` at the end.
    async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>>;
    /// The object's size, when the stream knows it from the start (a file opened on disk): the
    /// verifier then need not ask for it apart.
    fn size(&self) -> Option<u64> {
        None
    }
}

/// Async read access to a cache, by key.
#[allow(async_fn_in_trait)]
pub trait AsyncStorageRead {
    type Body: ChunkStream;

    /// What and where the storage is, for messages.
    fn describe(&self) -> String;

    /// The object's metadata; `Ok(None)` if absent.
    async fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>>;

    /// A whole small object, refused past `limit` bytes; `Ok(None)` if absent.
    async fn read_small(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>>;

    /// The object's contents; `Ok(None)` if absent.
    async fn open(&self, key: &CacheKey) -> io::Result<Option<Self::Body>>;

    /// The names in a folder (as [`StorageRead::list`]); `None` if this storage cannot be
    /// listed (an HTTP cache).
    async fn list(&self, dir: KeyDir) -> Option<io::Result<Vec<String>>>;
}

/// A sync storage as an async one: every call runs to its end when first polled.
pub struct Blocking<S>(pub S);

/// The body of a [`Blocking`] object, read in pieces of 256 KiB.
pub struct BlockingBody(Box<dyn ReadSeek>);

impl ChunkStream for BlockingBody {
    async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut piece = Vec::with_capacity(256 << 10);
        (&mut self.0).take(256 << 10).read_to_end(&mut piece)?;
        Ok((!piece.is_empty()).then_some(piece))
    }
}

impl<S: StorageRead> AsyncStorageRead for Blocking<S> {
    type Body = BlockingBody;

    fn describe(&self) -> String {
        self.0.describe()
    }

    async fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>> {
        self.0.stat(key)
    }

    async fn read_small(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
        self.0.read_small(key, limit)
    }

    async fn open(&self, key: &CacheKey) -> io::Result<Option<BlockingBody>> {
        Ok(self.0.open(key)?.map(|o| BlockingBody(o.body)))
    }

    async fn list(&self, dir: KeyDir) -> Option<io::Result<Vec<String>>> {
        Some(self.0.list(dir).and_then(|names| names.collect()))
    }
}

/// Every async storage is a source for the async verifier: names that are not keys are
/// refused, unread.
impl<T: AsyncStorageRead> AsyncCacheSource for T {
    type Stream = T::Body;

    async fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        AsyncStorageRead::read_small(self, &key_of(rel)?, limit as u64).await
    }

    async fn size(&self, rel: &str) -> Option<io::Result<Option<u64>>> {
        let key = match key_of(rel) {
            Ok(key) => key,
            Err(e) => return Some(Err(e)),
        };
        Some(self.stat(&key).await.map(|m| m.map(|m| m.size)))
    }

    async fn open(&self, rel: &str) -> io::Result<Option<T::Body>> {
        AsyncStorageRead::open(self, &key_of(rel)?).await
    }

    async fn list_narinfos(&self) -> io::Result<Vec<String>> {
        let names = self
            .list(KeyDir::Root)
            .await
            .unwrap_or_else(|| Ok(Vec::new()))?;
        listed_names(KeyDir::Root, names.into_iter().map(Ok))
    }

    async fn list_nar_files(&self) -> Option<io::Result<Vec<String>>> {
        Some(
            self.list(KeyDir::Nar)
                .await?
                .and_then(|names| listed_names(KeyDir::Nar, names.into_iter().map(Ok))),
        )
    }
}
