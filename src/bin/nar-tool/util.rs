//! Helpers shared by several commands: reading NARs, keys and narinfos, NAR hashes, sizes, jobs.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::args::UsageError;
use nar_tool::cache::layout::CacheKey;
use nar_tool::cache::location::CacheLocation;
use nar_tool::cache::storage::{StorageRead, StorageWrite};
use nar_tool::cache_info::CacheInfo;
use nar_tool::hash::{Hash, HashAlgo, HashingWriter};
use nar_tool::host::atomic::write_atomic;
use nar_tool::host::dir_storage::{Beneath, DirStorage};
use nar_tool::host::fs::{dump_path, CaseHack};
use nar_tool::host::object::REQUESTS_IN_FLIGHT;
use nar_tool::narinfo::{NarInfo, MAX_NARINFO_SIZE};
use nar_tool::signing::SecretKey;
use nar_tool::store_path::StoreDir;

/// A NAR file, or stdin for `-`, buffered.
pub fn open_nar(name: &str) -> Result<Box<dyn Read>> {
    let inner: Box<dyn Read> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(name).with_context(|| name.to_string())?)
    };
    Ok(Box::new(BufReader::with_capacity(256 * 1024, inner)))
}

/// The hash and size of a path's NAR.
pub fn nar_hash(path: &Path, algo: HashAlgo) -> Result<(Hash, u64)> {
    let sink = HashingWriter::new(algo, io::sink());
    let (h, n, _) = dump_path(path, sink, CaseHack(false))?.finish();
    Ok((h, n))
}

/// A secret key file, as `nix-store --generate-binary-cache-key` writes it.
pub fn read_secret_key(path: &Path) -> Result<SecretKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading secret key {}", path.display()))?;
    SecretKey::parse(&text).with_context(|| format!("secret key file {}", path.display()))
}

/// A narinfo file given on the command line. One named as a cache key (`<hashpart>.narinfo`) is
/// read and replaced through its folder as a directory cache; any other through its folder's
/// safe opener. Either way: regular files only, never blocking on a FIFO, never through a
/// symlink leading out of the folder.
pub struct NarinfoFile {
    pub info: NarInfo,
    /// The cache the file is a key of, its key and the ETag it was read with.
    in_cache: Option<(DirStorage, CacheKey, String)>,
}

impl NarinfoFile {
    pub fn read(path: &Path) -> Result<NarinfoFile> {
        let (dir, name) = split_file(path)?;
        let key = CacheKey::parse(&name)
            .ok()
            .filter(|k| matches!(k, CacheKey::NarInfo(_)));
        let (bytes, in_cache) = match key {
            Some(key) => {
                let storage = DirStorage::open(&dir)
                    .with_context(|| format!("reading {}", path.display()))?;
                let object = storage
                    .open(&key)
                    .with_context(|| format!("reading {}", path.display()))?
                    .with_context(|| format!("reading {}: no such file", path.display()))?;
                let etag = object.meta.etag.clone();
                let bytes = read_limited(object.body, object.meta.size, path)?;
                (bytes, Some((storage, key, etag)))
            }
            None => {
                let beneath =
                    Beneath::open(&dir).with_context(|| format!("reading {}", path.display()))?;
                let (file, meta) = beneath
                    .open_regular(&name)
                    .with_context(|| format!("reading {}", path.display()))?
                    .with_context(|| format!("reading {}: no such file", path.display()))?;
                (read_limited(file, meta.size, path)?, None)
            }
        };
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
        let info = NarInfo::parse(&text).with_context(|| format!("{}", path.display()))?;
        Ok(NarinfoFile { info, in_cache })
    }

    /// Replaces the file with `info`'s text, atomically; in a cache only if nobody changed it
    /// since it was read.
    pub fn replace(&self, path: &Path) -> Result<()> {
        let text = self.info.to_text();
        match &self.in_cache {
            Some((storage, key, etag)) => {
                let replaced = storage
                    .replace_if_unchanged(key, text.as_bytes(), Some(etag))
                    .with_context(|| format!("writing {}", path.display()))?;
                if !replaced {
                    bail!(
                        "{} changed while it was being signed; run again",
                        path.display()
                    );
                }
                Ok(())
            }
            None => write_atomic(path, text.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", path.display())),
        }
    }
}

fn split_file(path: &Path) -> Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a file name", path.display()))?
        .to_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

fn read_limited(body: impl Read, size: u64, path: &Path) -> Result<Vec<u8>> {
    if size > MAX_NARINFO_SIZE as u64 {
        bail!(
            "{}: {size} bytes, more than a narinfo may have ({MAX_NARINFO_SIZE})",
            path.display()
        );
    }
    let mut bytes = Vec::new();
    body.take(MAX_NARINFO_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

/// `--jobs`, or a default for where the cache is: the number of cores for a directory; for a
/// bucket or an HTTP cache, whose paths wait on round trips more than on the CPU, enough to keep
/// [`REQUESTS_IN_FLIGHT`] requests going (four per core at least).
pub fn jobs_for(jobs: Option<usize>, location: &CacheLocation) -> usize {
    match (jobs, location) {
        (Some(jobs), _) => jobs.max(1),
        (None, CacheLocation::Directory(_)) => jobs_or_cores(None),
        (None, _) => (4 * jobs_or_cores(None)).max(REQUESTS_IN_FLIGHT),
    }
}

/// `--jobs`, or the number of cores.
pub fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

/// The store directory: `--store-dir`, else the cache's, else `/nix/store`.
pub fn cache_store_dir<S: StorageRead + ?Sized>(
    storage: &S,
    flag: Option<&str>,
) -> Result<StoreDir> {
    if let Some(dir) = flag {
        return StoreDir::new(dir).map_err(|e| UsageError(format!("--store-dir: {e}")).into());
    }
    let info = storage
        .read_small(&CacheKey::CacheInfo, 64 << 10)
        .with_context(|| format!("{}: reading nix-cache-info", storage.describe()))?;
    let dir = info
        .and_then(|bytes| CacheInfo::parse(&String::from_utf8_lossy(&bytes)).ok())
        .and_then(|info| info.store_dir);
    Ok(match dir {
        Some(dir) => StoreDir::new(&dir)
            .with_context(|| format!("{}: nix-cache-info StoreDir", storage.describe()))?,
        None => StoreDir::default(),
    })
}
