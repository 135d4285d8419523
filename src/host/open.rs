//! Opening a cache by where it is ([`CacheLocation`]): a directory, a bucket, an HTTP cache.
//! Every command that takes a cache opens it here, so each takes every kind.

use std::io;

use crate::cache::location::CacheLocation;
use crate::cache::storage::{StorageRead, StorageWrite};
use crate::host::dir_storage::DirStorage;
use crate::host::lookups::Remembering;
use crate::host::object::ObjectStorage;

/// Opens a cache for reading.
pub fn open_read(location: &CacheLocation) -> io::Result<Box<dyn StorageRead>> {
    Ok(match location {
        CacheLocation::Directory(dir) => Box::new(DirStorage::open(dir.as_ref())?),
        CacheLocation::S3(s3) => Box::new(ObjectStorage::s3(s3)?),
        CacheLocation::Http(base) => Remembering::wrap(ObjectStorage::http(base)?, base),
    })
}

/// Opens a cache for writing (a directory is created if missing).
pub fn open_write(location: &CacheLocation) -> io::Result<Box<dyn StorageWrite>> {
    Ok(match location {
        CacheLocation::Directory(dir) => Box::new(DirStorage::create(dir.as_ref())?),
        CacheLocation::S3(s3) => Box::new(ObjectStorage::s3(s3)?),
        CacheLocation::Http(base) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{base} is an HTTP cache: read-only (write to its directory or bucket instead)"
                ),
            ))
        }
    })
}
