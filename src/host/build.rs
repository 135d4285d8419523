//! `build-cache`: turns store paths and their closure into a flat-file binary cache.
//!
//! Everything goes through the storage layer ([`StorageWrite`]): a directory here, any backend
//! through [`build_cache_into`].
//!
//! One pass per path, paths in parallel: walk → NAR → NAR hash, size, references (when
//! scanning) and listing → compressor → file hash and size, streamed into a staged object. The
//! worker then stages the path's `.ls` and narinfo too (so a full disk fails the path before its
//! NAR becomes visible, not after), and commits the NAR as `nar/<filehash>.nar.<ext>` (an
//! existing NAR of that name is reused only once its size and hash check out). The calling
//! thread publishes in batches: one durability barrier for the whole batch (NARs, staged
//! narinfos), then the narinfos' commits, each only once all its references are published. So
//! the cache is valid at every moment, durable at the cost of one barrier per batch instead of
//! a sync per file, an interrupted build is completed by running it again, and identical NARs
//! are stored once.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::metadata::{parse_path_info_json, parse_registration, PathInfo};
use crate::cache::order::PublishOrder;
use crate::cache::refscan::RefScanner;
use crate::cache::storage::{Put, Staged, StorageWrite};
use crate::cache_info::CacheInfo;
use crate::compression::Compression;
use crate::hash::{Hash, HashAlgo, Hasher, HashingWriter};
use crate::host::codec::{parallel_pieces, Encoder};
use crate::host::db::NixDb;
use crate::host::dir_storage::DirStorage;
use crate::host::fs::{dump_into, nar_size, CaseHack, DumpError};
use crate::nar::writer::WriteError;
use crate::nar::NarWriter;
use crate::narinfo::{NarCompression, NarInfo, MAX_NARINFO_SIZE};
use crate::nixbase32;
use crate::signing::{SecretKey, Signature};
use crate::store_path::{
    make_fixed_output_path, ContentAddress, FileIngestion, StoreDir, StorePath,
};

/// Where references, derivers, NAR hashes and content addresses come from.
#[derive(Debug, Clone)]
pub enum MetadataSource {
    /// The Nix SQLite DB (default: `ROOT/nix/var/nix/db/db.sqlite`).
    Db(PathBuf),
    /// closureInfo's `registration` / `nix-store --dump-db`.
    Registration(PathBuf),
    /// `nix path-info --json`.
    PathInfoJson(PathBuf),
    /// Scan each NAR for the hash parts of the store paths present.
    Scan,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub to: PathBuf,
    /// Physical root: `/nix/store/x` is read at `ROOT/nix/store/x`.
    pub store_root: PathBuf,
    pub store_dir: StoreDir,
    pub metadata: MetadataSource,
    pub compression: Compression,
    pub level: Option<u32>,
    pub jobs: usize,
    pub keys: Vec<SecretKey>,
    pub nar_listing: bool,
    pub closure: bool,
    pub force: bool,
    pub priority: i64,
    pub want_mass_query: bool,
    pub paths: Vec<StorePath>,
}

/// What happened, for progress bars and the summary.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The number of paths known so far to be in the cache's closure grew; `nar_bytes` is their
    /// total NAR size when the metadata gives every size up front (not when scanning).
    Total { paths: u64, nar_bytes: Option<u64> },
    /// NAR bytes archived so far (paths already in the cache count whole), a few times a second
    /// while paths are being compressed.
    Bytes { nar_bytes: u64 },
    /// A path is done (`written` false when its narinfo already existed).
    PathDone {
        path: StorePath,
        nar_size: u64,
        written: bool,
    },
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildSummary {
    pub paths: u64,
    pub written: u64,
    pub skipped: u64,
    /// NARs identical to one already stored (not stored again).
    pub deduplicated: u64,
    pub nar_bytes: u64,
    pub file_bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Input(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    #[error("{0}")]
    Metadata(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Metadata lookups, whatever the source.
enum Metadata {
    Known(HashMap<StorePath, PathInfo>),
    Db(NixDb),
    Scan { candidates: Vec<StorePath> },
}

impl Metadata {
    fn open(opts: &BuildOptions) -> Result<Metadata, BuildError> {
        let read = |p: &Path| fs::read_to_string(p).map_err(io_at(p));
        let known = |infos: Vec<PathInfo>| {
            Metadata::Known(infos.into_iter().map(|i| (i.path.clone(), i)).collect())
        };
        Ok(match &opts.metadata {
            MetadataSource::Db(p) => Metadata::Db(
                NixDb::open(p, &opts.store_dir).map_err(|e| BuildError::Metadata(e.to_string()))?,
            ),
            MetadataSource::Registration(p) => known(
                parse_registration(&opts.store_dir, &read(p)?)
                    .map_err(|e| BuildError::Metadata(format!("{}: {e}", p.display())))?,
            ),
            MetadataSource::PathInfoJson(p) => known(
                parse_path_info_json(&opts.store_dir, &read(p)?)
                    .map_err(|e| BuildError::Metadata(format!("{}: {e}", p.display())))?,
            ),
            MetadataSource::Scan => {
                let dir = physical_store(opts);
                let mut candidates = Vec::new();
                for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
                    let entry = entry.map_err(io_at(&dir))?;
                    if let Ok(p) = StorePath::from_base_name(&entry.file_name().to_string_lossy()) {
                        candidates.push(p);
                    }
                }
                Metadata::Scan { candidates }
            }
        })
    }

    /// Metadata of a path (for `Scan`, only its name: the rest comes from the NAR).
    fn lookup(&self, path: &StorePath, store_dir: &StoreDir) -> Result<PathInfo, BuildError> {
        let missing = || BuildError::Path {
            path: store_dir.display(path),
            message: "not a valid path in the given store metadata".into(),
        };
        match self {
            Metadata::Known(map) => map.get(path).cloned().ok_or_else(missing),
            Metadata::Db(db) => db
                .lookup(path)
                .map_err(|e| BuildError::Metadata(e.to_string()))?
                .ok_or_else(missing),
            Metadata::Scan { .. } => Ok(PathInfo::new(path.clone())),
        }
    }
}

fn physical_store(opts: &BuildOptions) -> PathBuf {
    opts.store_root
        .join(opts.store_dir.as_str().trim_start_matches('/'))
}

/// How often progress reports the bytes archived while paths are being compressed.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(150);

/// One path's work, done on a worker thread.
struct Done {
    info: PathInfo,
    nar_size: u64,
    file_size: u64,
    deduplicated: bool,
    /// A NAR that replaces one of its name, waiting for the batch's barrier.
    replacing: Option<(Box<dyn Staged>, CacheKey)>,
    /// The narinfo and the `.ls` listing, written and waiting for their commits.
    narinfo: Box<dyn Staged>,
    listing: Option<Box<dyn Staged>>,
}

/// Narinfos ready to publish wait at most this long for a batch to fill.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// The most narinfos published after one barrier.
const BATCH_MAX: usize = 512;

/// Compressor threads, shared by the paths being compressed at once: a path whose NAR the
/// multi-threaded encoders can split (several xz blocks or zstd jobs) gets the threads no other
/// path is using, so one big path keeps every core busy while many paths at once never ask for
/// `jobs²` threads (and their buffers). The bytes written never depend on the number of threads.
struct ThreadBudget {
    total: usize,
    in_use: std::sync::Mutex<usize>,
}

/// Threads taken from a [`ThreadBudget`], given back when dropped.
struct ThreadLease<'a> {
    budget: &'a ThreadBudget,
    threads: usize,
}

impl ThreadBudget {
    fn new(total: usize) -> ThreadBudget {
        ThreadBudget {
            total: total.max(1),
            in_use: std::sync::Mutex::new(0),
        }
    }

    /// Up to `want` threads, as many as are free, and always at least one.
    fn take(&self, want: usize) -> ThreadLease<'_> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        let threads = want.min(self.total.saturating_sub(*in_use)).max(1);
        *in_use += threads;
        ThreadLease {
            budget: self,
            threads,
        }
    }
}

impl Drop for ThreadLease<'_> {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|e| e.into_inner());
        *in_use -= self.threads;
    }
}

/// The sink the NAR is written into: hashes and counts it, scans it, compresses it.
struct NarSink<W: Write> {
    nar_hash: Hasher,
    nar_size: u64,
    scanner: Option<RefScanner>,
    encoder: Encoder<W>,
}

impl<W: Write> Write for NarSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder.write_all(buf)?;
        self.nar_hash.update(buf);
        self.nar_size += buf.len() as u64;
        if let Some(s) = &mut self.scanner {
            s.update(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// The NAR file being written, remembering whether a write to it failed (a full disk), so that
/// such a failure is not blamed on the file of the tree being read when it surfaced.
struct WatchedOutput<'a> {
    file: Box<dyn Staged>,
    failed: &'a Cell<bool>,
}

impl WatchedOutput<'_> {
    fn watch<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }
}

impl Write for WatchedOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf);
        self.watch(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.file.flush();
        self.watch(flushed)
    }
}

/// What the workers share.
struct Workers<'a> {
    opts: &'a BuildOptions,
    storage: &'a dyn StorageWrite,
    budget: ThreadBudget,
    /// With `--scan-references`: the store paths a NAR may refer to.
    candidates: Option<&'a [StorePath]>,
    /// NAR bytes compressed so far, all paths together.
    archived: Arc<AtomicU64>,
}

/// [`process`], with a panic turned into an error naming the path: a worker that died silently
/// would leave the publishing thread waiting for it.
fn process_or_report_panic(workers: &Workers, info: PathInfo) -> Result<Done, BuildError> {
    let path = workers.opts.store_dir.display(&info.path);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(workers, info)))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(BuildError::Path {
                path,
                message: format!("internal error (a worker panicked: {why}); please report it"),
            })
        })
}

fn process(workers: &Workers, mut info: PathInfo) -> Result<Done, BuildError> {
    let opts = workers.opts;
    let storage = workers.storage;
    let full = opts.store_dir.display(&info.path);
    let physical = physical_store(opts).join(info.path.base_name());
    let path_err = |message: String| BuildError::Path {
        path: full.clone(),
        message,
    };
    fs::symlink_metadata(&physical)
        .map_err(|e| path_err(format!("cannot read it at {}: {e}", physical.display())))?;

    let staged = storage
        .stage(KeyDir::Nar)
        .map_err(|e| path_err(format!("cannot stage its NAR: {e}")))?;
    let staged_name = staged.name();
    // The NAR's size decides how it is compressed (xz blocks, dictionary): from the metadata,
    // or, when scanning, from the tree's metadata (checked against the NAR written, below).
    let expected_size = match info.nar_size {
        Some(size) => size,
        None => nar_size(&physical, CaseHack(false)).map_err(|e| path_err(e.to_string()))?,
    };
    // As many threads as the encoder can use on this NAR.
    let pieces = parallel_pieces(opts.compression, opts.level, expected_size);
    let lease = workers
        .budget
        .take(usize::try_from(pieces).unwrap_or(usize::MAX).min(opts.jobs));
    let threads = u32::try_from(lease.threads).unwrap_or(u32::MAX);
    let output_failed = Cell::new(false);
    let file = HashingWriter::new(
        HashAlgo::Sha256,
        BufWriter::with_capacity(
            256 * 1024,
            WatchedOutput {
                file: staged,
                failed: &output_failed,
            },
        ),
    );
    let mut encoder = Encoder::new(opts.compression, opts.level, expected_size, threads, file)
        .map_err(|e| path_err(format!("compressor: {e}")))?;
    encoder.report_progress(&workers.archived);
    let scanner = workers.candidates.map(|c| RefScanner::new(c.iter()));
    let sink = NarSink {
        nar_hash: Hasher::new(HashAlgo::Sha256),
        nar_size: 0,
        scanner,
        encoder,
    };
    let mut writer = NarWriter::new(sink).map_err(|e| path_err(e.to_string()))?;
    if opts.nar_listing {
        writer = writer.record_listing();
    }
    // A failed write of the output (a full disk) is told apart from a failed read of the tree:
    // both reach here as I/O errors.
    let write_err = |e: io::Error| path_err(format!("cannot write {staged_name}: {e}"));
    let writer = dump_into(&physical, writer, CaseHack(false)).map_err(|e| match e {
        DumpError::Io { source, .. } if output_failed.get() => write_err(source),
        e => path_err(e.to_string()),
    })?;
    let (sink, listing) = writer.finish_with_listing().map_err(|e| match e {
        WriteError::Io(source) if output_failed.get() => write_err(source),
        e => path_err(e.to_string()),
    })?;
    let NarSink {
        nar_hash,
        nar_size,
        scanner,
        encoder,
    } = sink;
    let nar_hash = nar_hash.finish();
    let file = encoder.finish().map_err(|e| match output_failed.get() {
        true => write_err(e),
        false => path_err(format!("compressor: {e}")),
    })?;
    drop(lease);
    let (file_hash, file_size, buffered) = file.finish();
    let mut staged = buffered
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .file;
    staged.finish_writing().map_err(write_err)?;

    if let Some(expected) = &info.nar_hash {
        if *expected != nar_hash {
            return Err(path_err(format!(
                "NAR hash mismatch: the store metadata records {expected}, the contents hash to {nar_hash} (the store is corrupt or was modified; refusing to publish it)"
            )));
        }
    }
    if let Some(expected) = info.nar_size {
        if expected != nar_size {
            return Err(path_err(format!("NAR size mismatch: the store metadata records {expected} bytes, the contents give {nar_size}")));
        }
    } else if expected_size != nar_size {
        return Err(path_err(format!(
            "the path changed while it was archived ({expected_size} bytes of NAR, then {nar_size})"
        )));
    }
    if let Some(scanner) = scanner {
        info.references = scanner.finish();
    }
    if info.ca.is_none() {
        // A path named by its own NAR hash is content-addressed (what `nix-store --add` makes).
        let source = make_fixed_output_path(
            &opts.store_dir,
            info.path.name(),
            FileIngestion::Recursive,
            &nar_hash,
        );
        let self_only = info.references.iter().all(|r| *r == info.path);
        if self_only && source.as_ref() == Ok(&info.path) {
            info.ca =
                Some(ContentAddress::Fixed(FileIngestion::Recursive, nar_hash.clone()).to_string());
        }
    }
    let nar_key = CacheKey::nar_file(
        &nixbase32::encode(file_hash.digest()),
        opts.compression.extension(),
    )
    .map_err(|e| path_err(e.to_string()))?;
    let hash_part = info.path.hash_part().to_string();
    // The listing and the narinfo are staged before the NAR is committed: a full disk fails
    // here, leaving no NAR without its narinfo.
    let listing = match &listing {
        Some(listing) => Some(stage_small(
            storage,
            listing.to_json().as_bytes(),
            &format!("{hash_part}.ls"),
        )?),
        None => None,
    };
    let narinfo = narinfo_of(
        opts, &info, &nar_key, &nar_hash, nar_size, &file_hash, file_size,
    )?;
    let narinfo = stage_small(
        storage,
        narinfo.to_text().as_bytes(),
        &format!("{hash_part}.narinfo"),
    )?;
    let stored = commit_nar(storage, staged, &nar_key, &file_hash, file_size, opts.force)
        .map_err(|e| path_err(format!("cannot store {nar_key}: {e}")))?;
    let (deduplicated, replacing) = match stored {
        NarStored::New => (false, None),
        NarStored::Reused => (true, None),
        NarStored::Replacing(staged) => (false, Some((staged, nar_key))),
    };
    Ok(Done {
        info,
        nar_size,
        file_size,
        deduplicated,
        replacing,
        narinfo,
        listing,
    })
}

/// A small object written into a staged one, for a commit later.
fn stage_small(
    storage: &dyn StorageWrite,
    data: &[u8],
    what: &str,
) -> Result<Box<dyn Staged>, BuildError> {
    let err = |e: io::Error| {
        BuildError::Input(format!(
            "cannot write {what} into {}: {e}",
            storage.describe()
        ))
    };
    let mut staged = storage.stage(KeyDir::Root).map_err(err)?;
    staged.write_all(data).map_err(err)?;
    staged.finish_writing().map_err(err)?;
    Ok(staged)
}

/// What became of a path's NAR.
enum NarStored {
    /// Committed under a free key (durable at the batch's barrier, before its narinfo shows).
    New,
    /// A NAR of that name was there and checks out (size and file hash): reused.
    Reused,
    /// Replaces one of that name (with `--force`, or one that does not check out): committed
    /// only after the batch's barrier, since narinfos already published may point to it.
    Replacing(Box<dyn Staged>),
}

/// Commits a NAR under its key, unless one of that name is there already and checks out; a
/// NAR to replace waits for the batch (see [`NarStored::Replacing`]).
fn commit_nar(
    storage: &dyn StorageWrite,
    staged: Box<dyn Staged>,
    key: &CacheKey,
    file_hash: &Hash,
    file_size: u64,
    force: bool,
) -> io::Result<NarStored> {
    if storage.stat(key)?.is_some() {
        if !force && existing_nar_is(storage, key, file_hash, file_size)? {
            return Ok(NarStored::Reused);
        }
        return Ok(NarStored::Replacing(staged));
    }
    match staged.commit(key, Put::IfAbsent)? {
        crate::cache::storage::Committed::Written => Ok(NarStored::New),
        // Another writer committed one of that name meanwhile: reused only if it checks out.
        crate::cache::storage::Committed::AlreadyThere => {
            if existing_nar_is(storage, key, file_hash, file_size)? {
                Ok(NarStored::Reused)
            } else {
                Err(io::Error::other(
                    "a NAR of that name appeared meanwhile and does not match its name; run again",
                ))
            }
        }
    }
}

/// Whether the stored object has this size and SHA-256.
fn existing_nar_is(
    storage: &dyn StorageWrite,
    key: &CacheKey,
    file_hash: &Hash,
    file_size: u64,
) -> io::Result<bool> {
    let Some(mut object) = storage.open(key)? else {
        return Ok(false);
    };
    if object.meta.size != file_size {
        return Ok(false);
    }
    let mut hasher = HashingWriter::new(file_hash.algo(), io::sink());
    io::copy(&mut object.body, &mut hasher)?;
    let (hash, size, _) = hasher.finish();
    Ok(size == file_size && hash == *file_hash)
}

fn narinfo_of(
    opts: &BuildOptions,
    info: &PathInfo,
    nar_key: &CacheKey,
    nar_hash: &Hash,
    nar_size: u64,
    file_hash: &Hash,
    file_size: u64,
) -> Result<NarInfo, BuildError> {
    let mut narinfo = NarInfo {
        store_dir: opts.store_dir.clone(),
        store_path: info.path.clone(),
        url: nar_key.to_string(),
        compression: NarCompression::Known(opts.compression),
        file_hash: Some(file_hash.clone()),
        file_size: Some(file_size),
        nar_hash: nar_hash.clone(),
        nar_size,
        references: info.references.iter().cloned().collect(),
        deriver: info.deriver.clone(),
        system: None,
        sigs: info
            .sigs
            .iter()
            .map(|s| {
                Signature::parse(s).map_err(|e| BuildError::Path {
                    path: opts.store_dir.display(&info.path),
                    message: format!(
                        "the store metadata has a signature that is not one ({e}); refusing to publish it"
                    ),
                })
            })
            .collect::<Result<_, _>>()?,
        ca: info.ca.clone(),
        extra: Vec::new(),
    };
    for key in &opts.keys {
        narinfo.sign(key).map_err(|e| BuildError::Path {
            path: narinfo.path(),
            message: e.to_string(),
        })?;
    }
    Ok(narinfo)
}

/// Gets the cache ready: the storage (folders, leftovers of writers that died) and
/// `nix-cache-info`, checked against the store if there is one.
fn prepare(storage: &dyn StorageWrite, opts: &BuildOptions) -> Result<(), BuildError> {
    let where_ = storage.describe();
    storage
        .prepare()
        .map_err(|e| BuildError::Input(format!("cannot write to {where_}: {e}")))?;
    let existing = storage
        .read_small(&CacheKey::CacheInfo, 64 << 10)
        .map_err(|e| BuildError::Input(format!("{where_}: nix-cache-info: {e}")))?;
    match existing {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let existing = CacheInfo::parse(&text)
                .map_err(|e| BuildError::Input(format!("{where_}: nix-cache-info: {e}")))?;
            if let Some(dir) = existing
                .store_dir
                .as_deref()
                .filter(|d| *d != opts.store_dir.as_str())
            {
                return Err(BuildError::Input(format!(
                    "{} is a cache for store {dir}, not {}",
                    opts.to.display(),
                    opts.store_dir
                )));
            }
        }
        None => {
            let mut info = CacheInfo::new(opts.store_dir.as_str());
            info.want_mass_query = opts.want_mass_query.then_some(true);
            info.priority = Some(opts.priority);
            storage
                .put_if_absent(&CacheKey::CacheInfo, info.to_text().as_bytes())
                .and_then(|_| storage.barrier())
                .map_err(|e| BuildError::Input(format!("{where_}: nix-cache-info: {e}")))?;
        }
    }
    Ok(())
}

/// Builds (or completes) the cache in the directory `opts.to`. `progress` is called on the
/// calling thread.
pub fn build_cache(
    opts: &BuildOptions,
    progress: impl FnMut(Progress),
) -> Result<BuildSummary, BuildError> {
    if opts.paths.is_empty() {
        return Err(BuildError::Input("no store paths given".into()));
    }
    let storage = DirStorage::create(&opts.to)
        .map_err(|e| BuildError::Input(format!("cannot open the cache: {e}")))?;
    build_cache_into(&storage, opts, progress)
}

/// Builds (or completes) the cache in `storage` (`opts.to` only names it in messages).
pub fn build_cache_into(
    storage: &dyn StorageWrite,
    opts: &BuildOptions,
    mut progress: impl FnMut(Progress),
) -> Result<BuildSummary, BuildError> {
    let started = Instant::now();
    if opts.paths.is_empty() {
        return Err(BuildError::Input("no store paths given".into()));
    }
    prepare(storage, opts)?;
    let metadata = Metadata::open(opts)?;
    let candidates = match &metadata {
        Metadata::Scan { candidates } => Some(candidates.as_slice()),
        _ => None,
    };
    let mut summary = BuildSummary::default();
    let mut order = PublishOrder::new([]);
    let mut seen: HashSet<StorePath> = HashSet::new();
    let mut queue: Vec<StorePath> = Vec::new();
    for p in &opts.paths {
        if seen.insert(p.clone()) {
            queue.push(p.clone());
        }
    }
    // The closure's total NAR size, while every size is known (not when scanning).
    let mut total_bytes: Option<u64> = Some(0);
    // NAR bytes of the paths already in the cache.
    let mut skipped_bytes = 0u64;
    // The number of paths last given in `Progress::Total`.
    let mut announced = 0u64;
    let mut last_bytes_report = Instant::now();

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("build-cache-{i}"))
        .build()
        .map_err(|e| BuildError::Input(format!("cannot start worker threads: {e}")))?;
    let workers = Workers {
        opts,
        storage,
        budget: ThreadBudget::new(opts.jobs),
        candidates,
        archived: Arc::new(AtomicU64::new(0)),
    };
    let workers = &workers;
    let (tx, rx) = mpsc::channel::<Result<Done, BuildError>>();
    let mut in_flight = 0usize;
    let mut first_error: Option<BuildError> = None;
    // Finished work waiting to be published (by path).
    let mut finished: HashMap<StorePath, Done> = HashMap::new();
    // Work whose references are published: published at the next barrier.
    let mut batch = Batch::default();

    pool.in_place_scope(|scope| -> Result<(), BuildError> {
        loop {
            // Take in the queued paths: skip those whose narinfo exists, look the others up,
            // and follow references (known up front from metadata, or once a path is scanned).
            let mut to_build: Vec<PathInfo> = Vec::new();
            // Paths already in the cache, reported once the total they belong to is.
            let mut already_there: Vec<Progress> = Vec::new();
            while first_error.is_none() {
                let Some(path) = queue.pop() else { break };
                let existing = if opts.force {
                    None
                } else {
                    read_existing(storage, &path)?
                };
                let references = match &existing {
                    Some(info) => {
                        skipped_bytes = skipped_bytes.saturating_add(info.nar_size);
                        total_bytes = total_bytes.map(|t| t.saturating_add(info.nar_size));
                        info.references.iter().cloned().collect::<BTreeSet<_>>()
                    }
                    None => match metadata.lookup(&path, &opts.store_dir) {
                        Ok(info) => {
                            total_bytes = total_bytes
                                .zip(info.nar_size)
                                .map(|(t, n)| t.saturating_add(n));
                            let refs = match candidates {
                                None => info.references.clone(),
                                Some(_) => BTreeSet::new(),
                            };
                            to_build.push(info);
                            refs
                        }
                        Err(e) => {
                            first_error = Some(e);
                            break;
                        }
                    },
                };
                if let Some(info) = existing {
                    summary.paths += 1;
                    summary.skipped += 1;
                    for p in order.ready(path.clone(), &references) {
                        batch.extend(finished.remove(&p));
                    }
                    already_there.push(Progress::PathDone {
                        path,
                        nar_size: info.nar_size,
                        written: false,
                    });
                }
                if opts.closure {
                    enqueue(&references, &mut seen, &mut queue);
                }
            }
            if seen.len() as u64 != announced {
                announced = seen.len() as u64;
                progress(Progress::Total {
                    paths: seen.len() as u64,
                    nar_bytes: total_bytes,
                });
            }
            already_there.into_iter().for_each(&mut progress);
            // Largest first, so that a big path never starts last and runs alone.
            to_build.sort_by_key(|info| std::cmp::Reverse(info.nar_size));
            for info in to_build {
                let tx = tx.clone();
                in_flight += 1;
                scope.spawn(move |_| {
                    let _ = tx.send(process_or_report_panic(workers, info));
                });
            }
            if in_flight == 0 {
                break;
            }
            if batch.due() {
                batch.publish(storage, &mut summary, &mut progress)?;
                // The last narinfos' renames, durable before the build says it is done.
                storage
                    .barrier()
                    .map_err(|e| BuildError::Input(format!("{}: {e}", storage.describe())))?;
            }
            let received = rx.recv_timeout(batch.wait(PROGRESS_INTERVAL));
            if last_bytes_report.elapsed() >= PROGRESS_INTERVAL {
                last_bytes_report = Instant::now();
                progress(Progress::Bytes {
                    nar_bytes: skipped_bytes + workers.archived.load(Ordering::Relaxed),
                });
            }
            let result = match received {
                Ok(result) => result,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("workers hold a sender while running")
                }
            };
            in_flight -= 1;
            match result {
                Err(e) => {
                    first_error.get_or_insert(e);
                }
                Ok(done) => {
                    if first_error.is_some() {
                        continue;
                    }
                    let path = done.info.path.clone();
                    let references = done.info.references.clone();
                    if opts.closure {
                        enqueue(&references, &mut seen, &mut queue);
                    } else {
                        // Without the closure, references outside the given paths are not waited for.
                        let outside: Vec<StorePath> = references
                            .iter()
                            .filter(|r| !seen.contains(*r))
                            .cloned()
                            .collect();
                        for r in outside {
                            order.ready(r, &BTreeSet::new());
                        }
                    }
                    finished.insert(path.clone(), done);
                    for p in order.ready(path, &references) {
                        batch.extend(finished.remove(&p));
                    }
                }
            }
        }
        Ok(())
    })?;
    if let Some(e) = first_error {
        return Err(e);
    }
    batch.publish(storage, &mut summary, &mut progress)?;
    // The last narinfos' renames, durable before the build says it is done.
    storage
        .barrier()
        .map_err(|e| BuildError::Input(format!("{}: {e}", storage.describe())))?;
    progress(Progress::Bytes {
        nar_bytes: skipped_bytes + workers.archived.load(Ordering::Relaxed),
    });
    if let Some((path, missing)) = order.stuck().next() {
        let missing: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        return Err(BuildError::Path {
            path: opts.store_dir.display(path),
            message: format!(
                "references {} were never published (a reference cycle?)",
                missing.join(", ")
            ),
        });
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn enqueue(refs: &BTreeSet<StorePath>, seen: &mut HashSet<StorePath>, queue: &mut Vec<StorePath>) {
    for r in refs {
        if seen.insert(r.clone()) {
            queue.push(r.clone());
        }
    }
}

fn read_existing(
    storage: &dyn StorageWrite,
    path: &StorePath,
) -> Result<Option<NarInfo>, BuildError> {
    let key = CacheKey::narinfo(path.hash_part()).map_err(|e| BuildError::Input(e.to_string()))?;
    let at = || storage.locate(&key);
    let Some(bytes) = storage
        .read_small(&key, MAX_NARINFO_SIZE as u64)
        .map_err(|e| BuildError::Input(format!("{}: {e}", at())))?
    else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        BuildError::Input(format!(
            "{}: existing narinfo is not UTF-8; rerun with --force",
            at()
        ))
    })?;
    NarInfo::parse(&text).map(Some).map_err(|e| {
        BuildError::Input(format!(
            "{}: existing narinfo is corrupt ({e}); rerun with --force",
            at()
        ))
    })
}

/// Narinfos whose NARs and references are stored, published together after one barrier.
#[derive(Default)]
struct Batch {
    ready: Vec<Done>,
    since: Option<Instant>,
}

impl Batch {
    fn extend(&mut self, done: Option<Done>) {
        if let Some(done) = done {
            self.since.get_or_insert_with(Instant::now);
            self.ready.push(done);
        }
    }

    /// Full, or waiting long enough.
    fn due(&self) -> bool {
        self.ready.len() >= BATCH_MAX || self.since.is_some_and(|t| t.elapsed() >= BATCH_WINDOW)
    }

    /// How long to wait for a worker before the batch falls due.
    fn wait(&self, at_most: Duration) -> Duration {
        match self.since {
            Some(t) => BATCH_WINDOW.saturating_sub(t.elapsed()).min(at_most),
            None => at_most,
        }
    }

    /// One barrier (every NAR, listing and narinfo of the batch becomes durable), then the
    /// commits, in the order the paths became ready: a narinfo after its references.
    fn publish(
        &mut self,
        storage: &dyn StorageWrite,
        summary: &mut BuildSummary,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(), BuildError> {
        self.since = None;
        if self.ready.is_empty() {
            return Ok(());
        }
        let where_ = storage.describe();
        storage
            .barrier()
            .map_err(|e| BuildError::Input(format!("{where_}: {e}")))?;
        for d in self.ready.drain(..) {
            let hash_part = d.info.path.hash_part().to_string();
            let commit = |staged: Box<dyn Staged>, name: String| {
                let key = CacheKey::parse(&name).map_err(|e| BuildError::Input(e.to_string()))?;
                staged
                    .commit(&key, Put::Replace)
                    .map_err(|e| BuildError::Input(format!("{where_}: {e}")))
            };
            if let Some((nar, key)) = d.replacing {
                nar.commit(&key, Put::Replace)
                    .map_err(|e| BuildError::Input(format!("{where_}: {e}")))?;
            }
            if let Some(listing) = d.listing {
                commit(listing, format!("{hash_part}.ls"))?;
            }
            commit(d.narinfo, format!("{hash_part}.narinfo"))?;
            summary.paths += 1;
            summary.written += 1;
            summary.deduplicated += u64::from(d.deduplicated);
            summary.nar_bytes += d.nar_size;
            summary.file_bytes += if d.deduplicated { 0 } else { d.file_size };
            progress(Progress::PathDone {
                path: d.info.path.clone(),
                nar_size: d.nar_size,
                written: true,
            });
        }
        Ok(())
    }
}

/// How long a build took, for messages.
pub fn human_duration(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}
