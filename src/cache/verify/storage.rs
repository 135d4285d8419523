//! How the pull driver reads a cache: [`CacheStorage`], by paths relative to the cache root, and
//! an in-memory one. (The native directory is `crate::host::storage::DirStorage`.)

use std::collections::BTreeMap;
use std::io::{self, Read};

/// Read access to a cache, by paths relative to its root (`nix-cache-info`, `nar/…`).
pub trait CacheStorage: Sync {
    /// A whole small file, refused past `limit` bytes; `Ok(None)` if absent.
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>>;
    /// A stream over a file; `Ok(None)` if absent.
    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>>;
    /// A file's size; `Ok(None)` if absent.
    fn size(&self, rel: &str) -> io::Result<Option<u64>>;
    /// A stream over a file and its size, in one request where the storage can (an object's
    /// GET tells its length); `Ok(None)` if absent.
    #[allow(clippy::type_complexity)]
    fn open_sized(&self, rel: &str) -> io::Result<Option<(Box<dyn Read + '_>, u64)>> {
        let Some(size) = self.size(rel)? else {
            return Ok(None);
        };
        Ok(self.open(rel)?.map(|f| (f, size)))
    }
    /// File names of the narinfos at the root (`<hashpart>.narinfo`).
    fn list_narinfos(&self) -> io::Result<Vec<String>>;
    /// Paths of the files under `nar/` (`nar/<name>`), for orphan detection.
    fn list_nar_files(&self) -> io::Result<Vec<String>>;
    /// [`CacheStorage::list_nar_files`] with each file's size, where one listing gives both (a
    /// bucket); `None` where sizes would take a look at each file.
    fn list_nar_files_sized(&self) -> Option<io::Result<Vec<(String, u64)>>> {
        None
    }
}

/// A storage whose NAR files' sizes come from one listing (a bucket's LIST gives a thousand
/// at a time) instead of a look at each: a verification that reads no NAR asks each one's size.
/// A file the listing did not have is looked at (it may have come since); the listing serves
/// as the orphan check's too.
pub struct ListedSizes<'a> {
    inner: &'a dyn CacheStorage,
    sizes: BTreeMap<String, u64>,
    listing: io::Result<Vec<String>>,
}

impl<'a> ListedSizes<'a> {
    /// The storage with its NAR files listed, if its listing gives sizes.
    pub fn of(inner: &'a dyn CacheStorage) -> Option<ListedSizes<'a>> {
        let (sizes, listing) = match inner.list_nar_files_sized()? {
            Ok(listed) => {
                let names = listed.iter().map(|(n, _)| n.clone()).collect();
                (listed.into_iter().collect(), Ok(names))
            }
            Err(e) => (BTreeMap::new(), Err(e)),
        };
        Some(ListedSizes {
            inner,
            sizes,
            listing,
        })
    }
}

impl CacheStorage for ListedSizes<'_> {
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        self.inner.read_small(rel, limit)
    }
    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>> {
        self.inner.open(rel)
    }
    fn size(&self, rel: &str) -> io::Result<Option<u64>> {
        match self.sizes.get(rel) {
            Some(&size) => Ok(Some(size)),
            None => self.inner.size(rel),
        }
    }
    fn open_sized(&self, rel: &str) -> io::Result<Option<(Box<dyn Read + '_>, u64)>> {
        self.inner.open_sized(rel)
    }
    fn list_narinfos(&self) -> io::Result<Vec<String>> {
        self.inner.list_narinfos()
    }
    fn list_nar_files(&self) -> io::Result<Vec<String>> {
        match &self.listing {
            Ok(names) => Ok(names.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// An in-memory cache (file path → bytes), for tests and the wasm layer.
#[derive(Default, Clone)]
pub struct MemoryStorage {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl CacheStorage for MemoryStorage {
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        match self.files.get(rel) {
            Some(b) if b.len() > limit => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{rel} is larger than {limit} bytes (it has {})", b.len()),
            )),
            other => Ok(other.cloned()),
        }
    }
    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>> {
        Ok(self
            .files
            .get(rel)
            .map(|b| Box::new(&b[..]) as Box<dyn Read>))
    }
    fn size(&self, rel: &str) -> io::Result<Option<u64>> {
        Ok(self.files.get(rel).map(|b| b.len() as u64))
    }
    fn list_narinfos(&self) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .keys()
            .filter(|k| !k.contains('/') && k.ends_with(".narinfo"))
            .cloned()
            .collect())
    }
    fn list_nar_files(&self) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .keys()
            .filter(|k| k.starts_with("nar/"))
            .cloned()
            .collect())
    }
}
