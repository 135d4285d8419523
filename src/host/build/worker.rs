//! The workers: one pass per path (walk → NAR → hashes, references, listing → compressor →
//! staged object), the narinfo and listing staged before the NAR is committed. Two phases:
//! [`compress`] (CPU work) and [`store`] (the NAR leased, looked for and committed: requests),
//! which on remote storage threads of their own run, apart from the compressing ones.

use super::*;

/// Compressor threads, shared by the paths being compressed at once: a path whose NAR the
/// multi-threaded encoders can split (several xz blocks or zstd jobs) gets the threads no other
/// path is using, so one big path keeps every core busy while many paths at once never ask for
/// `jobs²` threads (and their buffers). The bytes written never depend on the number of threads.
pub(super) struct ThreadBudget {
    total: usize,
    in_use: std::sync::Mutex<usize>,
}

/// Threads taken from a [`ThreadBudget`], given back when dropped.
struct ThreadLease<'a> {
    budget: &'a ThreadBudget,
    threads: usize,
}

impl ThreadBudget {
    pub(super) fn new(total: usize) -> ThreadBudget {
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

impl ThreadLease<'_> {
    /// Gives back all but `threads` (≥ 1) of the threads taken.
    fn keep(&mut self, threads: usize) {
        let threads = threads.clamp(1, self.threads);
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|e| e.into_inner());
        *in_use -= self.threads - threads;
        self.threads = threads;
    }
}

/// The memory the xz encoders of the paths compressed at once may take together
/// (`--xz-memory`): a path gets as many threads as fit in what the others leave, and waits
/// while not even one does. liblzma tells what an encoder needs before it is made.
pub(super) struct MemoryBudget {
    total: u64,
    in_use: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
    /// The most ever taken at once, for the summary.
    pub(super) peak: AtomicU64,
}

/// Memory taken from a [`MemoryBudget`], given back when dropped.
struct MemoryLease<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl MemoryBudget {
    pub(super) fn new(total: u64) -> MemoryBudget {
        MemoryBudget {
            total,
            in_use: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            peak: AtomicU64::new(0),
        }
    }
}

impl Drop for MemoryLease<'_> {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|e| e.into_inner());
        *in_use -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// Threads for a path's compressor, `want` at most, and for xz the memory they need: as many
/// threads as fit in the budget, waiting until one does.
fn reserve<'a>(
    workers: &'a Workers,
    want: usize,
    nar_size: u64,
) -> Result<(ThreadLease<'a>, Option<MemoryLease<'a>>), String> {
    let opts = workers.opts;
    if opts.compression != Compression::Xz {
        return Ok((workers.budget.take(want), None));
    }
    let memory = &workers.memory;
    let need = |threads: usize| {
        xz_memory(
            opts.level,
            nar_size,
            u32::try_from(threads).unwrap_or(u32::MAX),
        )
        .map_err(|e| format!("compressor: {e}"))
    };
    let one = need(1)?;
    if one > memory.total {
        return Err(format!(
            "xz needs {} to compress it (one thread), more than the memory budget of {} (--xz-memory; a lower --level needs less)",
            human_bytes(one),
            human_bytes(memory.total)
        ));
    }
    let mut in_use = memory.in_use.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let free = memory.total - *in_use;
        if one <= free {
            let mut lease = workers.budget.take(want);
            let mut threads = lease.threads;
            let mut bytes = need(threads)?;
            while threads > 1 && bytes > free {
                threads -= 1;
                bytes = need(threads)?;
            }
            lease.keep(threads);
            *in_use += bytes;
            memory.peak.fetch_max(*in_use, Ordering::Relaxed);
            let taken = MemoryLease {
                budget: memory,
                bytes,
            };
            return Ok((lease, Some(taken)));
        }
        in_use = memory.freed.wait(in_use).unwrap_or_else(|e| e.into_inner());
    }
}

impl Drop for ThreadLease<'_> {
    fn drop(&mut self) {
        let mut in_use = self.budget.in_use.lock().unwrap_or_else(|e| e.into_inner());
        *in_use -= self.threads;
    }
}

/// The sink the NAR is written into: hashes and counts it, scans it, compresses it.
pub(super) struct NarSink<W: Write> {
    /// Set to stop: the next write fails.
    interrupt: Option<Arc<AtomicBool>>,
    nar_hash: Hasher,
    nar_size: u64,
    scanner: Option<RefScanner>,
    pub(super) encoder: Encoder<W>,
}

impl<W: Write> NarSink<W> {
    pub(super) fn new(
        interrupt: Option<Arc<AtomicBool>>,
        scanner: Option<RefScanner>,
        encoder: Encoder<W>,
    ) -> NarSink<W> {
        NarSink {
            interrupt,
            nar_hash: Hasher::new(HashAlgo::Sha256),
            nar_size: 0,
            scanner,
            encoder,
        }
    }

    /// The hash of the NAR written through it.
    pub(super) fn into_nar_hash(self) -> Hash {
        self.nar_hash.finish()
    }
}

impl<W: Write> Write for NarSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .interrupt
            .as_ref()
            .is_some_and(|i| i.load(Ordering::Relaxed))
        {
            // Not ErrorKind::Interrupted, which write_all would retry.
            return Err(io::Error::other("interrupted"));
        }
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

/// The NAR file as it is written: counted, and hashed unless it is the NAR itself.
struct FileOut<W: Write> {
    hasher: Option<Hasher>,
    size: u64,
    inner: W,
}

impl<W: Write> Write for FileOut<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
pub(super) struct Workers<'a> {
    pub(super) opts: &'a BuildOptions,
    pub(super) storage: &'a dyn StorageWrite,
    pub(super) budget: ThreadBudget,
    /// With `--scan-references`: the store paths a NAR may refer to.
    pub(super) candidates: Option<&'a [StorePath]>,
    /// NAR bytes compressed so far, all paths together.
    pub(super) archived: Arc<AtomicU64>,
    pub(super) memory: MemoryBudget,
    /// What the cache held at the start, when it was listed (a bucket).
    pub(super) present: Option<&'a Present>,
    /// What the build is publishing, held against a collection (`nar-tool gc`).
    pub(super) lease: super::group_lease::GroupLease,
}

/// A path compressed, its narinfo and listing staged: what is left is network work (its NAR
/// leased, looked for and committed), done by [`store`].
pub(super) struct Compressed {
    info: PathInfo,
    nar_size: u64,
    file_size: u64,
    nar_key: CacheKey,
    file_hash: Hash,
    /// The NAR, written and not committed.
    staged: Box<dyn Staged>,
    /// Its key was known ahead: leased, and looked at (`Some`), before the upload.
    found_ahead: Option<Option<bool>>,
    narinfo: Box<dyn Staged>,
    listing: Option<Box<dyn Staged>>,
}

/// [`compress`], with a panic turned into an error naming the path: a worker that died silently
/// would leave the publishing thread waiting for it.
pub(super) fn compress_or_report_panic(
    workers: &Workers,
    info: PathInfo,
) -> Result<Compressed, BuildError> {
    let path = workers.opts.store_dir.display(&info.path);
    reporting_panics(path, || compress(workers, info))
}

/// [`store`], with a panic turned into an error naming the path.
pub(super) fn store_or_report_panic(
    workers: &Workers,
    compressed: Compressed,
) -> Result<Done, BuildError> {
    let path = workers.opts.store_dir.display(&compressed.info.path);
    reporting_panics(path, || store(workers, compressed))
}

fn reporting_panics<T>(
    path: String,
    work: impl FnOnce() -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
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

fn compress(workers: &Workers, mut info: PathInfo) -> Result<Compressed, BuildError> {
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

    // The NAR's size decides how it is compressed (xz blocks, dictionary): from the metadata,
    // or, when scanning, from the tree's metadata (checked against the NAR written, below).
    let expected_size = match info.nar_size {
        Some(size) => size,
        None => nar_size(&physical, CaseHack(false)).map_err(|e| path_err(e.to_string()))?,
    };
    // As many threads as the encoder can use on this NAR.
    let pieces = parallel_pieces(opts.compression, opts.level, expected_size);
    let want = usize::try_from(pieces).unwrap_or(usize::MAX).min(opts.jobs);
    // Not worth a rerun: the same budget would refuse it again.
    let (lease, memory) = reserve(workers, want, expected_size)
        .map_err(|m| BuildError::Input(format!("{full}: {m}")))?;
    let threads = u32::try_from(lease.threads).unwrap_or(u32::MAX);
    // Where the storage writes in place, the NAR's key learnt first: the NAR goes straight there.
    let ahead = super::ahead::file_key_ahead(workers, &info, &physical, expected_size)?;
    let listed_absent = |key: &CacheKey| workers.present.is_some_and(|p| !p.may_have(key));
    // With its key known, what is there is looked at before the upload, not after it.
    let mut found_ahead = None;
    let staged = match &ahead {
        None => storage.stage(KeyDir::Nar),
        Some(ahead) => {
            // Leased before it is looked for (see below).
            workers
                .lease
                .extend(&[ahead.key.to_string()])
                .map_err(|e| path_err(format!("cannot lease {}: {e}", ahead.key)))?;
            let existing = look_at_existing(
                storage,
                &ahead.key,
                &ahead.file_hash,
                opts.force,
                listed_absent(&ahead.key),
            )
            .map_err(|e| path_err(format!("cannot look at {}: {e}", ahead.key)))?;
            found_ahead = Some(existing);
            match existing {
                Some(true) => Ok(Box::new(Discarded) as Box<dyn Staged>),
                _ => storage.stage_at(&ahead.key),
            }
        }
    }
    .map_err(|e| path_err(format!("cannot stage its NAR: {e}")))?;
    let staged_name = staged.name();
    let output_failed = Cell::new(false);
    let file = FileOut {
        // Uncompressed, the file is the NAR: its hash is the NAR's, not computed twice.
        hasher: (opts.compression != Compression::None).then(|| Hasher::new(HashAlgo::Sha256)),
        size: 0,
        inner: BufWriter::with_capacity(
            256 * 1024,
            WatchedOutput {
                file: staged,
                failed: &output_failed,
            },
        ),
    };
    let mut encoder = Encoder::new(opts.compression, opts.level, expected_size, threads, file)
        .map_err(|e| path_err(format!("compressor: {e}")))?;
    encoder.report_progress(&workers.archived);
    let scanner = workers.candidates.map(|c| RefScanner::new(c.iter()));
    let sink = NarSink::new(opts.interrupt.clone(), scanner, encoder);
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
        ..
    } = sink;
    let nar_hash = nar_hash.finish();
    let file = encoder.finish().map_err(|e| match output_failed.get() {
        true => write_err(e),
        false => path_err(format!("compressor: {e}")),
    })?;
    drop(lease);
    drop(memory);
    let FileOut {
        hasher,
        size: file_size,
        inner: buffered,
    } = file;
    let file_hash = hasher.map_or_else(|| nar_hash.clone(), Hasher::finish);
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
    if let Some(ahead) = &ahead {
        if ahead.file_hash != file_hash {
            return Err(path_err(format!(
                "the path changed while it was archived (its NAR file hashed to {} before the upload, then to {file_hash}); the upload was abandoned",
                ahead.file_hash
            )));
        }
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
    Ok(Compressed {
        info,
        nar_size,
        file_size,
        nar_key,
        file_hash,
        staged,
        found_ahead,
        narinfo,
        listing,
    })
}

/// The NAR of a compressed path leased, looked for and committed (requests, no CPU work: on a
/// bucket, done apart from the compressing threads so that they never wait on round trips).
fn store(workers: &Workers, compressed: Compressed) -> Result<Done, BuildError> {
    let opts = workers.opts;
    let storage = workers.storage;
    let c = compressed;
    let (nar_key, file_hash, file_size) = (&c.nar_key, &c.file_hash, c.file_size);
    let path_err = |message: String| BuildError::Path {
        path: opts.store_dir.display(&c.info.path),
        message,
    };
    let listed_absent = |key: &CacheKey| workers.present.is_some_and(|p| !p.may_have(key));
    // Leased before it is committed or found there, so a collection leaves it to the narinfo
    // that is about to name it (a key known ahead was leased before the upload).
    if c.found_ahead.is_none() {
        workers
            .lease
            .extend(&[nar_key.to_string()])
            .map_err(|e| path_err(format!("cannot lease {nar_key}: {e}")))?;
    }
    let stored = match c.found_ahead {
        Some(Some(true)) => Ok(NarStored::Reused),
        Some(existing) => commit_nar(
            storage,
            c.staged,
            nar_key,
            file_hash,
            file_size,
            Ok(existing),
        ),
        None => {
            let existing = look_at_existing(
                storage,
                nar_key,
                file_hash,
                opts.force,
                listed_absent(nar_key),
            );
            commit_nar(storage, c.staged, nar_key, file_hash, file_size, existing)
        }
    }
    .map_err(|e| path_err(format!("cannot store {nar_key}: {e}")))?;
    let (deduplicated, replacing) = match stored {
        NarStored::New => (false, None),
        NarStored::Reused => (true, None),
        NarStored::Replacing(staged) => (false, Some((staged, c.nar_key.clone()))),
    };
    Ok(Done {
        info: c.info,
        nar_size: c.nar_size,
        file_size,
        deduplicated,
        replacing,
        narinfo: c.narinfo,
        listing: c.listing,
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

/// One look at what is there under a NAR's key: with `--force` only whether something is
/// (`Some(false)`: to replace), else whether it checks out (size and hash, read once); none when
/// the listing of the start lacks it (the commit will still not overwrite). `None`: nothing.
fn look_at_existing(
    storage: &dyn StorageWrite,
    key: &CacheKey,
    file_hash: &Hash,
    force: bool,
    listed_absent: bool,
) -> io::Result<Option<bool>> {
    match (force, listed_absent) {
        (true, _) => Ok(storage.stat(key)?.map(|_| false)),
        (false, true) => Ok(None),
        (false, false) => existing_nar_is(storage, key, file_hash, None),
    }
}

/// A NAR that is not written: one of its name is in the cache already and checks out. Its
/// bytes are still made (for the NAR's hash, references and listing) and dropped here.
struct Discarded;

impl Write for Discarded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Staged for Discarded {
    fn name(&self) -> String {
        "nothing (the NAR is in the cache already)".into()
    }

    fn commit(self: Box<Self>, key: &CacheKey, _: Put) -> io::Result<Committed> {
        Err(io::Error::other(format!(
            "internal error: {key} was found in the cache, not written, and cannot be committed"
        )))
    }
}

/// Commits a NAR under its key, unless one of that name is there already and checks out
/// (`existing`, from [`look_at_existing`]); a NAR to replace waits for the batch (see
/// [`NarStored::Replacing`]).
fn commit_nar(
    storage: &dyn StorageWrite,
    staged: Box<dyn Staged>,
    key: &CacheKey,
    file_hash: &Hash,
    file_size: u64,
    existing: io::Result<Option<bool>>,
) -> io::Result<NarStored> {
    match existing? {
        Some(true) => return Ok(NarStored::Reused),
        Some(false) => return Ok(NarStored::Replacing(staged)),
        None => {}
    }
    match staged.commit(key, Put::IfAbsent)? {
        crate::cache::storage::Committed::Written => Ok(NarStored::New),
        // Another writer committed one of that name meanwhile: reused only if it checks out.
        crate::cache::storage::Committed::AlreadyThere => {
            match existing_nar_is(storage, key, file_hash, Some(file_size))? {
                Some(true) => Ok(NarStored::Reused),
                _ => Err(io::Error::other(
                    "a NAR of that name appeared meanwhile and does not match its name; run again",
                )),
            }
        }
    }
}

/// Whether the stored object has this SHA-256 (and size, when it is known: a NAR not yet
/// written has none to compare; the hash of its name says it all) (`None`: there is none),
/// read once.
fn existing_nar_is(
    storage: &dyn StorageWrite,
    key: &CacheKey,
    file_hash: &Hash,
    file_size: Option<u64>,
) -> io::Result<Option<bool>> {
    let Some(mut object) = storage.open(key)? else {
        return Ok(None);
    };
    if file_size.is_some_and(|s| s != object.meta.size) {
        return Ok(Some(false));
    }
    let mut hasher = HashingWriter::new(file_hash.algo(), io::sink());
    io::copy(&mut object.body, &mut hasher)?;
    let (hash, size, _) = hasher.finish();
    Ok(Some(
        size == object.meta.size && file_size.is_none_or(|s| s == size) && hash == *file_hash,
    ))
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
        ca: info.ca.as_deref().map(NarContentAddress::parse),
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
