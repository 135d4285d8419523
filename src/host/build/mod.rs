//! `build-cache`: turns store paths and their closure into a flat-file binary cache.
//!
//! Everything goes through the storage layer ([`StorageWrite`]): a directory here, any backend
//! through [`build_cache_into`].
//!
//! One pass per path, paths in parallel: walk → NAR → NAR hash, size, references (when
//! scanning) and listing → compressor → file hash and size, streamed into a staged object. The
//! worker then stages the path's `.ls` and narinfo too (so a full disk fails the path before its
//! NAR becomes visible, not after), and commits the NAR as `nar/<filehash>.nar.<ext>` (an
//! existing NAR of that name is reused only once its size and hash check out). Where the
//! storage writes in place (a bucket), an uncompressed NAR's key is known ahead (its file hash
//! is its NAR hash) and the NAR is written straight there, not staged (module `ahead`). The
//! calling thread publishes in batches: one durability barrier for the whole batch (NARs, staged
//! narinfos), then the narinfos' commits, each only once all its references are published. So
//! the cache is valid at every moment, durable at the cost of one barrier per batch instead of
//! a sync per file, an interrupted build is completed by running it again, and identical NARs
//! are stored once.
//!
//! A build holds a lease ([`crate::cache::storage::lease`]) on what it publishes: every path
//! before it is looked for in the cache (so a reference found there and skipped stays), and
//! every NAR before it is committed or found there. A collection running meanwhile spares them.
//!
//! A reference policy ([`BuildOptions::policy`]) is checked of the given paths before the cache
//! is touched (in `policy.rs`): a build that breaks it writes nothing.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::metadata::{parse_path_info_json, parse_registration, PathInfo};
use crate::cache::policy::ReferencePolicy;
use crate::cache::refscan::RefScanner;
use crate::cache::storage::{Committed, Put, Staged, StorageWrite};
use crate::cache::upstream::Answer;
use crate::cache::verify::report::human_bytes;
use crate::cache_info::CacheInfo;
use crate::compression::Compression;
use crate::hash::{Hash, HashAlgo, Hasher, HashingWriter};
use crate::host::codec::{parallel_pieces, xz_memory, Encoder};
use crate::host::concurrent::map_concurrently;
use crate::host::db::NixDb;
use crate::host::dir_storage::DirStorage;
use crate::host::fs::{dump_into, nar_size, CaseHack, DumpError};
use crate::host::upstream::Upstreams;
use crate::nar::writer::WriteError;
use crate::nar::NarWriter;
use crate::narinfo::{NarCompression, NarContentAddress, NarInfo, MAX_NARINFO_SIZE};
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
    /// The memory the xz encoders may take together, in bytes ([`DEFAULT_XZ_MEMORY`]).
    pub xz_memory: u64,
    /// Set (by a Ctrl-C handler) to stop: the build ends with [`BuildError::Interrupted`],
    /// leaving no temporary file.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Checked of each of `paths` before anything is published (empty: nothing to check).
    pub policy: ReferencePolicy,
    /// Adds the paths to the cache's lookup index once published (a cache without one gets
    /// one), while the build's lease still holds them, so that a collection cannot delete one
    /// between its index entry and its narinfo.
    pub index: bool,
}

/// The default memory budget of the xz encoders: room for ~4 threads on the largest blocks.
pub const DEFAULT_XZ_MEMORY: u64 = 1 << 30;

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
    /// Paths of the closure left out because an upstream cache serves them.
    pub upstream: u64,
    /// … those paths, sorted.
    pub upstream_paths: Vec<String>,
    /// Paths kept although an upstream was asked, because it could not say: it could not be
    /// asked, or its narinfo was refused (`<path>: <upstream>: <why>`, sorted).
    pub upstream_warnings: Vec<String>,
    /// NARs identical to one already stored (not stored again).
    pub deduplicated: u64,
    pub nar_bytes: u64,
    pub file_bytes: u64,
    pub seconds: f64,
    /// The most memory the xz encoders took at once, as liblzma counts it (0 for other methods).
    pub xz_memory_peak: u64,
    /// The paths of the build now in the cache (published by it or found there), as the
    /// lookup index describes them.
    #[serde(skip)]
    pub in_cache: Vec<(StorePath, crate::cache::index::EntryInfo)>,
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
    #[error("{path}: not a valid path in the given store metadata (is it built and registered? the metadata of the store that has it is needed: --db, --registration or --path-info; or --scan-references)")]
    NotInMetadata { path: String },
    #[error("interrupted")]
    Interrupted,
    /// A given path breaks the reference policy (nothing was published).
    #[error("{0}")]
    Policy(String),
}

impl BuildError {
    /// Whether running the same build again may complete it (an interruption or an I/O error),
    /// rather than fail the same way (a path missing from the metadata, bad input).
    pub fn rerun_may_complete(&self) -> bool {
        matches!(
            self,
            BuildError::Io { .. } | BuildError::Path { .. } | BuildError::Interrupted
        )
    }
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
        let missing = || BuildError::NotInMetadata {
            path: store_dir.display(path),
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
/// A bucket is listed before a build when it holds at most this many names (or 20 per path
/// given): beyond, looking each path up costs less than the listing.
const PRESENT_MAX_NAMES: usize = 10_000;
/// Queued paths whose narinfos are looked up together (bounds the narinfos held ahead).
const LOOKUPS_AT_ONCE: usize = 256;

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

mod ahead;
mod group_lease;
mod policy;
mod present;
mod publish;
mod walk;
mod worker;

use present::Present;
use publish::{read_existing, start};
use walk::Walk;
use worker::{compress_or_report_panic, store_or_report_panic, ThreadBudget, Workers};

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
    progress: impl FnMut(Progress),
) -> Result<BuildSummary, BuildError> {
    build_cache_upstream(storage, opts, &Upstreams::none(&opts.store_dir), progress)
}

/// What the cache and the upstreams said of a queued path.
enum Found {
    /// Its narinfo is in the cache.
    Cache(Box<NarInfo>),
    /// An upstream serves it (its narinfo there).
    Upstream(Box<NarInfo>),
    /// Neither: it is built.
    Absent,
}

/// [`build_cache_into`], leaving out the paths an upstream serves (given paths included) and
/// keeping the rest of the closure. A path the upstreams cannot tell about (one could not be
/// asked, or gave a narinfo that is refused) is kept, and said in the summary's warnings.
pub fn build_cache_upstream(
    storage: &dyn StorageWrite,
    opts: &BuildOptions,
    upstream: &Upstreams,
    mut progress: impl FnMut(Progress),
) -> Result<BuildSummary, BuildError> {
    let started = Instant::now();
    if opts.paths.is_empty() {
        return Err(BuildError::Input("no store paths given".into()));
    }
    let metadata = Metadata::open(opts)?;
    policy::check_policy(storage, opts, &metadata, &opts.policy)?;
    // On a bucket, what is there already, from one listing when it is small enough (a cache
    // that cannot be listed is looked up key by key); the given paths leased.
    let begun = start(storage, opts, PRESENT_MAX_NAMES.max(20 * opts.paths.len()))?;
    let present = begun.present;
    let candidates = match &metadata {
        Metadata::Scan { candidates } => Some(candidates.as_slice()),
        _ => None,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("build-cache-{i}"))
        .build()
        .map_err(|e| BuildError::Input(format!("cannot start worker threads: {e}")))?;
    let workers = Workers {
        opts,
        storage,
        budget: ThreadBudget::new(compressor_threads(opts.jobs)),
        candidates,
        archived: Arc::new(AtomicU64::new(0)),
        memory: worker::MemoryBudget::new(opts.xz_memory),
        present: present.as_ref(),
        lease: group_lease::GroupLease::new(begun.lease),
    };
    let mut walk = Walk::new(opts, upstream, &metadata, begun.leased);
    let interrupted = || {
        opts.interrupt
            .as_ref()
            .is_some_and(|i| i.load(Ordering::Relaxed))
    };
    let workers = &workers;
    let (tx, rx) = mpsc::channel::<Result<Done, BuildError>>();
    let mut in_flight = 0usize;
    // The number of paths last given in `Progress::Total`.
    let mut announced = 0u64;
    let mut last_bytes_report = Instant::now();
    let bytes_done = |walk: &Walk| walk.skipped_bytes + workers.archived.load(Ordering::Relaxed);

    // On remote storage, the requests that store a compressed path (its NAR leased, looked for,
    // committed) are made by threads of their own, so that the compressing threads never wait
    // on round trips; a compressed path is handed to a free one (no queue: what waits for its
    // commit is bounded by the committing threads).
    let committers = committers_for(storage);
    let (commit_tx, commit_rx) = mpsc::sync_channel::<worker::Compressed>(0);
    let commit_rx = std::sync::Mutex::new(commit_rx);
    std::thread::scope(|threads| -> Result<(), BuildError> {
        for _ in 0..committers {
            let tx = tx.clone();
            let commit_rx = &commit_rx;
            std::thread::Builder::new()
                .name("build-cache-store".into())
                .spawn_scoped(threads, move || loop {
                    let next = commit_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(compressed) = next else { break };
                    let _ = tx.send(store_or_report_panic(workers, compressed));
                })
                .map_err(|e| BuildError::Input(format!("cannot start threads: {e}")))?;
        }
        let built = pool.in_place_scope(|scope| -> Result<(), BuildError> {
            loop {
                if interrupted() {
                    walk.first_error.get_or_insert(BuildError::Interrupted);
                }
                let taken = walk.take_in(workers)?;
                if walk.kept() != announced {
                    announced = walk.kept();
                    progress(Progress::Total {
                        paths: announced,
                        nar_bytes: walk.total_bytes,
                    });
                }
                taken.already_there.into_iter().for_each(&mut progress);
                for info in taken.to_build {
                    let (tx, commit_tx) = (tx.clone(), commit_tx.clone());
                    in_flight += 1;
                    scope.spawn(move |_| {
                        let done = match compress_or_report_panic(workers, info) {
                            Ok(compressed) if committers > 0 => match commit_tx.send(compressed) {
                                Ok(()) => return,
                                Err(mpsc::SendError(compressed)) => {
                                    store_or_report_panic(workers, compressed)
                                }
                            },
                            Ok(compressed) => store_or_report_panic(workers, compressed),
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(done);
                    });
                }
                if in_flight == 0 {
                    break;
                }
                if walk.batch.due() {
                    publish_batch(storage, &mut walk, &mut progress, opts.force)?;
                }
                let received = rx.recv_timeout(walk.batch.wait(PROGRESS_INTERVAL));
                if last_bytes_report.elapsed() >= PROGRESS_INTERVAL {
                    last_bytes_report = Instant::now();
                    progress(Progress::Bytes {
                        nar_bytes: bytes_done(&walk),
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
                    Err(_) if interrupted() => {
                        walk.first_error = Some(BuildError::Interrupted);
                    }
                    Err(e) => {
                        walk.first_error.get_or_insert(e);
                    }
                    Ok(_) if walk.first_error.is_some() => {}
                    Ok(done) => walk.finish(done),
                }
            }
            Ok(())
        });
        // The committing threads end once the queue is empty and closed.
        drop(commit_tx);
        built
    })?;
    if let Some(e) = walk.first_error.take() {
        return Err(e);
    }
    publish_batch(storage, &mut walk, &mut progress, opts.force)?;
    progress(Progress::Bytes {
        nar_bytes: bytes_done(&walk),
    });
    let mut summary = walk.end()?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.xz_memory_peak = workers.memory.peak.load(Ordering::Relaxed);
    if opts.index {
        crate::cache::index::publish::add(storage, &opts.store_dir, &summary.in_cache, opts.jobs)
            .map_err(|e| {
                BuildError::Input(format!(
                    "updating the lookup index of {} (the paths are published; `nar-tool index` writes it anew): {e}",
                    storage.describe()
                ))
            })?;
    }
    // The lease (in `workers`) is released only as this returns.
    Ok(summary)
}

/// Publishes the walk's batch, then a barrier: the last narinfos' renames durable before the
/// build goes on (or says it is done).
fn publish_batch(
    storage: &dyn StorageWrite,
    walk: &mut Walk,
    progress: &mut impl FnMut(Progress),
    force: bool,
) -> Result<(), BuildError> {
    walk.batch
        .publish(storage, &mut walk.summary, progress, force)?;
    storage
        .barrier()
        .map_err(|e| BuildError::Input(format!("{}: {e}", storage.describe())))
}

/// Asks the upstreams about the paths not in the cache: those served become
/// [`Found::Upstream`]; those an upstream could not tell about stay absent (built), with a warning.
fn ask_upstream(
    upstream: &Upstreams,
    absent: &[StorePath],
    looked_up: &mut HashMap<StorePath, Found>,
    warnings: &mut BTreeSet<String>,
    store_dir: &StoreDir,
) {
    if upstream.is_empty() || absent.is_empty() {
        return;
    }
    let answers = upstream.ask(absent);
    for p in absent {
        match answers.get(p) {
            Some((_, Answer::Served(info))) => {
                looked_up.insert(p.clone(), Found::Upstream(info.clone()));
            }
            Some((name, a @ (Answer::Failed(_) | Answer::Refused(_)))) => {
                let why = a.why_not().unwrap_or_default();
                warnings.insert(format!("{}: {name}: {why}", store_dir.display(p)));
            }
            _ => {}
        }
    }
}

/// Leases `path` and every queued path not leased yet, in one write.
fn lease_queued(
    workers: &Workers,
    path: &StorePath,
    queue: &[StorePath],
    leased: &mut HashSet<StorePath>,
) -> Result<(), BuildError> {
    let mut names = Vec::new();
    for p in std::iter::once(path).chain(queue) {
        if leased.insert(p.clone()) {
            names.push(p.base_name().to_string());
        }
    }
    workers.lease.extend(&names).map_err(|e| {
        BuildError::Input(format!(
            "cannot lease in {}: {e}",
            workers.storage.describe()
        ))
    })
}

fn enqueue(refs: &BTreeSet<StorePath>, seen: &mut HashSet<StorePath>, queue: &mut Vec<StorePath>) {
    for r in refs {
        if seen.insert(r.clone()) {
            queue.push(r.clone());
        }
    }
}

/// How long a build took, for messages.
pub fn human_duration(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The threads that store compressed paths apart from the compressing ones: none where requests
/// are answered at once (a directory), else twice the requests worth having in flight (each
/// waits on its lease, which several share, then on its NAR's request).
fn committers_for(storage: &dyn StorageWrite) -> usize {
    match storage.requests_in_flight() {
        0 | 1 => 0,
        n => 2 * n,
    }
}

/// The compressor threads the paths compressed at once share: `jobs`, but no more than the
/// machine's cores. A bucket's build runs many more paths at once than there are cores (for its
/// requests in flight), and a multi-threaded encoder's buffers grow with its threads (zstd's
/// jobs, xz's blocks): a 530 MB path in zstd to a bucket (16 paths at once) peaked at 256 MiB
/// with 16 threads on 2 cores, 94 MiB with 2, and went up faster.
fn compressor_threads(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    jobs.clamp(1, cores)
}

#[cfg(test)]
mod tests {
    #[test]
    fn compressor_threads_are_bounded_by_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(super::compressor_threads(0), 1);
        assert_eq!(super::compressor_threads(1), 1);
        assert_eq!(super::compressor_threads(cores + 14), cores);
    }
}
