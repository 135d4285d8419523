//! The async push driver (wasm: JS sources over `fetch` or a folder the user picked). Same
//! layers, judgments and report as the pull driver ([`super::pull`]); the files arrive as chunk
//! streams and each NAR is pushed through a [`NarFileCheck`] (pure decoders, bounded memory).
//! A wasm instance has one thread: several paths are in flight on it (their reads proceed while
//! one is checked), and other instances can take a share of the paths ([`super::share`]).

use std::cell::{Cell, RefCell};
use std::io;

use super::judge::{
    cross_check_upstream, judge_cache_info, judge_compression, judge_contents, judge_listing,
    judge_nar_files, judge_narinfo, judge_narinfo_name, judge_policy, judge_size, judge_url,
    unreadable, ContentFindings, NarFailure,
};
use super::report::report;
use super::share::{encode_checks, Alone, Collected, PathShare};
use super::{KeptProblems, PathCheck, Problem, Report, VerifyOptions, MAX_CACHE_INFO_SIZE};
use crate::cache::upstream::Answers;
use crate::compression::Compression;
use crate::hash::{builtin_sha256, Sha256Factory, Sha256Host};
use crate::nar::Limits;
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};

pub use crate::cache::storage::async_read::ChunkStream;

/// Async read access to a cache, by paths relative to its root.
#[allow(async_fn_in_trait)]
pub trait AsyncCacheSource {
    type Stream: ChunkStream;
    /// A whole small file, refused past `limit` bytes; `Ok(None)` if absent.
    async fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>>;
    /// A file's size, `Ok(None)` if absent; `None` if the source cannot tell without reading it.
    async fn size(&self, rel: &str) -> Option<io::Result<Option<u64>>>;
    /// The file's contents, `Ok(None)` if absent.
    async fn open(&self, rel: &str) -> io::Result<Option<Self::Stream>>;
    /// `<hashpart>.narinfo` names at the root.
    async fn list_narinfos(&self) -> io::Result<Vec<String>>;
    /// `nar/<name>` paths; `None` if the source cannot list (then orphans are not looked for).
    async fn list_nar_files(&self) -> Option<io::Result<Vec<String>>>;
    /// A SHA-256 hasher: the built-in one unless the host has a faster one.
    fn sha256(&self) -> Box<dyn Sha256Host> {
        builtin_sha256()
    }
    /// The most memory a NAR's decoder may need (a zstd window, an xz dictionary): what the host
    /// can afford.
    fn decoder_memory_limit(&self) -> u64 {
        crate::compression::DEFAULT_MEMORY_LIMIT
    }
}

/// How far a verification has come: given after each path, and while a large file is read
/// (every [`PROGRESS_BYTES`]), so a large NAR does not look stuck.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Paths checked.
    pub done: usize,
    pub total: usize,
    /// The narinfo file just checked, or being checked while its file is read.
    pub path: &'a str,
    /// File bytes read so far (of the NARs whose contents are checked).
    pub bytes: u64,
}

/// While a file is read, progress is given each time this many more bytes were read.
pub const PROGRESS_BYTES: u64 = 1 << 20;

/// Verifies the cache `source` holds: the narinfos named in `only` (all if `None`), their files,
/// `nix-cache-info`, references and (if the source can list `nar/`) orphans. One path at a time:
/// [`verify_cache_concurrently`] keeps several in flight.
pub async fn verify_cache<S: AsyncCacheSource>(
    source: &S,
    opts: &VerifyOptions,
    only: Option<&[String]>,
    on_progress: impl FnMut(Progress<'_>),
) -> Report {
    verify_cache_concurrently(source, opts, only, 1, on_progress).await
}

/// [`verify_cache`] with up to `jobs` paths checked at once on the one thread: while one path's
/// chunks go through the decoder and the hashes, the reads of the others are in flight (the
/// source's I/O runs elsewhere: the host's file system threads, the network). The report is the
/// same whatever `jobs` (paths are judged and collected in their order); `jobs` NARs' decoders
/// and chunks are alive at once, as natively with `--jobs`.
pub async fn verify_cache_concurrently<S: AsyncCacheSource>(
    source: &S,
    opts: &VerifyOptions,
    only: Option<&[String]>,
    jobs: usize,
    on_progress: impl FnMut(Progress<'_>),
) -> Report {
    verify_cache_shared(source, opts, only, jobs, &Alone::new(), on_progress).await
}

/// [`verify_cache_concurrently`] with the paths shared with other threads through `share`
/// (which hands them out and brings their checks back): this thread checks what it claims,
/// takes the others' checks, checks itself any path whose check never came, and judges the
/// whole. The report is the same however the paths were shared.
pub async fn verify_cache_shared<S: AsyncCacheSource, P: PathShare>(
    source: &S,
    opts: &VerifyOptions,
    only: Option<&[String]>,
    jobs: usize,
    share: &P,
    mut on_progress: impl FnMut(Progress<'_>),
) -> Report {
    let info_problems = judge_cache_info(
        source
            .read_small("nix-cache-info", MAX_CACHE_INFO_SIZE)
            .await,
        opts,
    );
    let (mut names, mut problems) = match only {
        Some(names) => judge_listing(Ok(names.to_vec())),
        None => judge_listing(source.list_narinfos().await),
    };
    names.dedup();
    share.begin(&names);
    let run = Run {
        source,
        opts,
        names: &names,
        jobs: jobs.max(1),
        share,
        collected: RefCell::new(Collected::new(names.len())),
        bytes: Cell::new(0),
        progress: RefCell::new(&mut on_progress),
    };
    run.check(ClaimedIndexes::new(share)).await;
    let arrived = share.rest().await;
    let before = run.collected.borrow().filled();
    run.take_shared(arrived);
    // The helpers' last checks counted (a thread alone has none).
    if let Some(last) = names
        .last()
        .filter(|_| run.collected.borrow().filled() > before)
    {
        run.tell(last);
    }
    let missing = run.collected.borrow().missing();
    run.check(missing.into_iter()).await;
    let checks = run.collected.into_inner().into_checks();
    // Orphans only make sense when the whole cache was checked.
    let nar_files = match (only, source.list_nar_files().await) {
        (None, Some(listed)) => judge_nar_files(listed, &mut problems),
        _ => Vec::new(),
    };
    let mut kept = KeptProblems::new(opts.max_problems);
    kept.extend(info_problems);
    kept.extend(problems);
    cross_check_upstream(&checks, &nar_files, &Answers::none(), &mut kept);
    kept.extend(judge_policy(&checks, opts));
    report(checks, kept)
}

/// The paths a thread claims from a [`PathShare`], one at a time.
struct ClaimedIndexes<'a, P: PathShare> {
    share: &'a P,
    claimed: std::ops::Range<usize>,
}

impl<'a, P: PathShare> ClaimedIndexes<'a, P> {
    fn new(share: &'a P) -> Self {
        ClaimedIndexes {
            share,
            claimed: 0..0,
        }
    }
}

impl<P: PathShare> Iterator for ClaimedIndexes<'_, P> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.claimed.is_empty() {
            self.claimed = self.share.claim();
        }
        self.claimed.next()
    }
}

/// One verification's paths being checked: the checks collected (this thread's and the
/// others'), and the progress told.
struct Run<'a, S, P, F> {
    source: &'a S,
    opts: &'a VerifyOptions,
    names: &'a [String],
    jobs: usize,
    share: &'a P,
    collected: RefCell<Collected>,
    /// File bytes read, here and by the others (in any order).
    bytes: Cell<u64>,
    progress: RefCell<&'a mut F>,
}

impl<S: AsyncCacheSource, P: PathShare, F: FnMut(Progress<'_>)> Run<'_, S, P, F> {
    /// Checks the paths at `indexes` here, `jobs` at once, taking the others' checks as they
    /// arrive.
    async fn check(&self, indexes: impl Iterator<Item = usize>) {
        use futures_util::stream::{self, StreamExt};
        let checked = stream::iter(indexes)
            .filter(|&i| std::future::ready(i < self.names.len()))
            .map(|i| async move {
                let name = &self.names[i];
                let mut told = 0u64;
                let mut reading = |read: u64| {
                    self.bytes.set(self.bytes.get() + (read - told));
                    told = read;
                    self.tell(name);
                };
                let check = check_path_reporting(self.source, name, self.opts, &mut reading).await;
                let rest = check.checked_bytes.saturating_sub(told);
                self.bytes.set(self.bytes.get() + rest);
                (i, check)
            })
            .buffered(self.jobs);
        futures_util::pin_mut!(checked);
        while let Some((i, check)) = checked.next().await {
            self.collected.borrow_mut().put_own(i, check);
            self.take_shared(self.share.arrived());
            self.tell(&self.names[i]);
        }
    }

    fn take_shared(&self, texts: Vec<String>) {
        for text in texts {
            let read = self.collected.borrow_mut().put_shared(&text);
            self.bytes.set(self.bytes.get().saturating_add(read));
        }
    }

    fn tell(&self, path: &str) {
        (self.progress.borrow_mut())(Progress {
            done: self.collected.borrow().filled(),
            total: self.names.len(),
            path,
            bytes: self.bytes.get(),
        })
    }
}

/// Checks the paths of `names` this thread claims from `share` (a helper's side of
/// [`verify_cache_shared`]), `jobs` at once, handing each batch of finished checks to `send`
/// as [`encode_checks`] text (every `batch` paths, and the last ones at the end).
pub async fn check_claimed<S: AsyncCacheSource, P: PathShare>(
    source: &S,
    opts: &VerifyOptions,
    names: &[String],
    jobs: usize,
    share: &P,
    batch: usize,
    mut send: impl FnMut(String),
) {
    use futures_util::stream::{self, StreamExt};
    let checked = stream::iter(ClaimedIndexes::new(share))
        .filter(|&i| std::future::ready(i < names.len()))
        .map(|i| async move { (i, check_path(source, &names[i], opts).await) })
        .buffered(jobs.max(1));
    futures_util::pin_mut!(checked);
    let mut done: Vec<(usize, PathCheck)> = Vec::with_capacity(batch);
    while let Some(item) = checked.next().await {
        done.push(item);
        if done.len() >= batch.max(1) {
            send(encode_checks(done.iter().map(|(i, c)| (*i, c))));
            done.clear();
        }
    }
    if !done.is_empty() {
        send(encode_checks(done.iter().map(|(i, c)| (*i, c))));
    }
}

/// Checks one narinfo and its file, as [`super::pull::check_path`] does.
pub async fn check_path<S: AsyncCacheSource>(
    source: &S,
    file_name: &str,
    opts: &VerifyOptions,
) -> PathCheck {
    check_path_reporting(source, file_name, opts, &mut |_| {}).await
}

/// [`check_path`], calling `reading` with the bytes of the file read so far every
/// [`PROGRESS_BYTES`] while its contents are checked.
async fn check_path_reporting<S: AsyncCacheSource>(
    source: &S,
    file_name: &str,
    opts: &VerifyOptions,
    reading: &mut dyn FnMut(u64),
) -> PathCheck {
    if let Some(out) = judge_narinfo_name(file_name) {
        return out;
    }
    let read = source.read_small(file_name, MAX_NARINFO_SIZE).await;
    let mut out = judge_narinfo(file_name, read, opts);
    if let Some(info) = &out.narinfo {
        let problem = check_file(source, info, opts, &mut out.checked_bytes, reading).await;
        out.problems.extend(problem);
    }
    out
}

async fn check_file<S: AsyncCacheSource>(
    source: &S,
    info: &NarInfo,
    opts: &VerifyOptions,
    checked_bytes: &mut u64,
    reading: &mut dyn FnMut(u64),
) -> Option<Problem> {
    if let Some(p) = judge_url(info) {
        return Some(p);
    }
    // A source that can tell the size lets a wrong one stop the check before any reading, as
    // natively. Otherwise the file is read (and counted) in any case, and judged in the same
    // order afterwards: size first, then the rest. With contents to check, the file is opened
    // first: a stream that knows its size (a file opened on disk) saves asking for it.
    let mut opened = None;
    let mut known_size = None;
    if opts.check_contents && judge_compression(info).is_ok() {
        match source.open(&info.url).await {
            Ok(Some(s)) => {
                known_size = s.size().map(|n| Ok(Some(n)));
                opened = Some(s);
            }
            Ok(None) => return judge_size(info, &Ok(None)),
            Err(e) => {
                // The problem the size gives comes first, as when the size is asked first.
                if let Some(Some(p)) = source.size(&info.url).await.map(|s| judge_size(info, &s)) {
                    return Some(p);
                }
                return Some(unreadable(info, e));
            }
        }
    }
    if known_size.is_none() {
        known_size = source.size(&info.url).await;
    }
    if let Some(size) = &known_size {
        if let Some(p) = judge_size(info, size) {
            return Some(p);
        }
        if !opts.check_contents {
            return None;
        }
        if let Err(p) = judge_compression(info) {
            return Some(p);
        }
    }
    let method = judge_compression(info).ok().filter(|_| opts.check_contents);
    let opened = match opened {
        Some(s) => Ok(Some(s)),
        None => source.open(&info.url).await,
    };
    let mut stream = match opened {
        Ok(Some(s)) => s,
        Ok(None) => return judge_size(info, &Ok(None)),
        Err(e) => return Some(unreadable(info, e)),
    };
    let mut check = method.map(|m| {
        NarFileCheck::with_sha256_and_limit(
            m,
            info.nar_size,
            false,
            &|| source.sha256(),
            source.decoder_memory_limit(),
        )
    });
    let mut counted = 0u64;
    let mut reported = 0u64;
    let mut read_error = None;
    loop {
        match stream.next_chunk().await {
            Ok(Some(chunk)) => {
                counted += chunk.len() as u64;
                if let Some(c) = &mut check {
                    c.update(&chunk);
                    // Each time another PROGRESS_BYTES boundary is passed (only the bytes of
                    // checked contents count, as in the report).
                    if counted / PROGRESS_BYTES > reported / PROGRESS_BYTES {
                        reported = counted;
                        reading(counted);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    if known_size.is_none() {
        if let Some(e) = &read_error {
            return Some(unreadable(info, format_args!("read error: {e}")));
        }
        if let Some(p) = judge_size(info, &Ok(Some(counted))) {
            return Some(p);
        }
        if !opts.check_contents {
            return None;
        }
    }
    let Some(check) = check else {
        // Only when the compression is unknown (and the size was counted).
        return judge_compression(info).err();
    };
    let found = check.finish(read_error);
    *checked_bytes += found.file_bytes;
    judge_contents(info, &found)
}

/// The file layers pushed chunk by chunk (for async hosts: wasm's JS sources). Bounded memory
/// whatever the file: decompression stops at the NarSize the narinfo claims.
pub struct NarFileCheck {
    file: Box<dyn Sha256Host>,
    file_bytes: u64,
    decoder: crate::compression::Decoder,
    nar: NarStream,
    failure: Option<NarFailure>,
}

/// The decompressed side: hashed, counted, capped and parsed (and listed, if asked).
struct NarStream {
    /// `None` for an uncompressed file: then the NAR is the file, hashed once.
    hasher: Option<Box<dyn Sha256Host>>,
    bytes: u64,
    limit: u64,
    parser: crate::nar::NarPushParser,
    listing: Option<crate::nar::listing::ListingBuilder>,
}

impl NarStream {
    /// Takes decompressed bytes: the first `limit` go to the parser, any more is a failure.
    fn take(&mut self, piece: &[u8]) -> Result<(), NarFailure> {
        let room = usize::try_from(self.limit - self.bytes).unwrap_or(usize::MAX);
        let (fits, excess) = piece.split_at(piece.len().min(room));
        if let Some(h) = &mut self.hasher {
            h.update(fits);
        }
        self.bytes += fits.len() as u64;
        self.parser
            .update(fits, &mut list_into(&mut self.listing))
            .map_err(NarFailure::Nar)?;
        if excess.is_empty() {
            return Ok(());
        }
        // More than NarSize. As on the pull path, the first NarSize bytes are judged first: a
        // structural fault in them wins; running out of them means the NAR is longer.
        match self.finish() {
            Err(NarFailure::Nar(e))
                if !matches!(e.kind, crate::nar::NarErrorKind::UnexpectedEof { .. }) =>
            {
                Err(NarFailure::Nar(e))
            }
            _ => Err(NarFailure::TooLong),
        }
    }

    fn finish(&mut self) -> Result<(), NarFailure> {
        self.parser
            .finish(&mut list_into(&mut self.listing))
            .map(|_| ())
            .map_err(NarFailure::Nar)
    }
}

/// The parser's event handler: nodes go into the listing, if one is being built.
fn list_into(
    listing: &mut Option<crate::nar::listing::ListingBuilder>,
) -> impl FnMut(crate::nar::PushEvent<'_>) + '_ {
    move |event| {
        if let (Some(l), crate::nar::PushEvent::Node(node)) = (listing.as_mut(), event) {
            l.push(node);
        }
    }
}

/// What a [`NarFileCheck`] found, for callers outside the cache verifier (wasm's `NarVerifier`).
pub struct NarSummary {
    pub file_hash: crate::hash::Hash,
    pub file_bytes: u64,
    pub nar_hash: crate::hash::Hash,
    pub nar_bytes: u64,
    pub listing: Option<crate::nar::listing::Listing>,
}

impl NarFileCheck {
    /// A check of a file compressed with `method` whose NAR must not exceed `nar_size_limit`
    /// bytes; with `listing`, the NAR's `.ls` listing is built on the way.
    pub fn new(method: Compression, nar_size_limit: u64, listing: bool) -> NarFileCheck {
        Self::with_sha256(
            method,
            nar_size_limit,
            listing,
            &crate::hash::builtin_sha256,
        )
    }

    /// Refuses a file whose decoder would need more than `memory_limit` bytes (the default is
    /// [`crate::compression::DEFAULT_MEMORY_LIMIT`]). Before any [`NarFileCheck::update`].
    pub fn with_memory_limit(mut self, memory_limit: u64) -> NarFileCheck {
        let method = self.decoder.method();
        self.decoder = crate::compression::Decoder::with_memory_limit(method, memory_limit);
        self
    }

    /// As [`NarFileCheck::new`], hashing with the host's SHA-256.
    pub fn with_sha256(
        method: Compression,
        nar_size_limit: u64,
        listing: bool,
        sha256: Sha256Factory<'_>,
    ) -> NarFileCheck {
        Self::with_sha256_and_limit(
            method,
            nar_size_limit,
            listing,
            sha256,
            crate::compression::DEFAULT_MEMORY_LIMIT,
        )
    }

    /// As [`NarFileCheck::with_sha256`] and [`NarFileCheck::with_memory_limit`], the decoder
    /// made once (the verifier makes one check per path: on many small paths this counts).
    pub fn with_sha256_and_limit(
        method: Compression,
        nar_size_limit: u64,
        listing: bool,
        sha256: Sha256Factory<'_>,
        memory_limit: u64,
    ) -> NarFileCheck {
        NarFileCheck {
            file: sha256(),
            file_bytes: 0,
            decoder: crate::compression::Decoder::with_memory_limit(method, memory_limit),
            nar: NarStream {
                hasher: (method != Compression::None).then(sha256),
                bytes: 0,
                limit: nar_size_limit,
                parser: crate::nar::NarPushParser::new(Limits {
                    max_file_size: nar_size_limit,
                    ..Limits::default()
                }),
                listing: listing.then(Default::default),
            },
            failure: None,
        }
    }

    /// Takes the next piece of the file. After a failure the rest is only hashed (FileHash
    /// covers the whole file).
    pub fn update(&mut self, chunk: &[u8]) {
        self.file.update(chunk);
        self.file_bytes += chunk.len() as u64;
        if self.failure.is_none() {
            let nar = &mut self.nar;
            if let Err(e) = self.decoder.update(chunk, &mut |piece| nar.take(piece)) {
                self.failure = Some(e.into());
            }
        }
    }

    fn end(&mut self) {
        if self.failure.is_none() {
            let nar = &mut self.nar;
            if let Err(e) = self.decoder.finish(&mut |piece| nar.take(piece)) {
                self.failure = Some(e.into());
            } else if let Err(e) = self.nar.finish() {
                self.failure = Some(e);
            }
        }
    }

    /// The hashes: of the file, and of the NAR (for an uncompressed file that went through
    /// whole, they are the same bytes).
    fn hashes(self) -> (crate::hash::Hash, Result<crate::hash::Hash, NarFailure>) {
        let file = self.file.finish();
        let nar = match (self.failure, self.nar.hasher) {
            (Some(f), _) => Err(f),
            (None, Some(h)) => Ok(h.finish()),
            (None, None) => Ok(file.clone()),
        };
        (file, nar)
    }

    /// The findings for [`judge_contents`]; `read_error` if the file could not be read to its end.
    pub fn finish(mut self, read_error: Option<String>) -> ContentFindings {
        if read_error.is_none() {
            self.end();
        }
        let (file_bytes, nar_bytes) = (self.file_bytes, self.nar.bytes);
        let (file_hash, nar) = self.hashes();
        ContentFindings {
            file_hash,
            file_bytes,
            read_error,
            nar: nar.map(|h| (h, nar_bytes)),
        }
    }

    /// Ends the input and summarises it, or says (as the CLI would) why it is no valid
    /// (compressed) NAR.
    pub fn summary(mut self, what: &str) -> Result<NarSummary, String> {
        self.end();
        let (file_bytes, nar_bytes, limit) = (self.file_bytes, self.nar.bytes, self.nar.limit);
        let mut listing = self.nar.listing.take();
        let (file_hash, nar) = self.hashes();
        match nar {
            Err(NarFailure::Nar(e)) => Err(format!("{what}: not a valid NAR: {e}")),
            Err(NarFailure::Decompress) => Err(format!(
                "{what}: does not decompress: the compressed data is corrupt or cut short"
            )),
            Err(NarFailure::TooLong) => {
                Err(format!("{what}: the NAR is longer than {limit} bytes"))
            }
            Ok(nar_hash) => Ok(NarSummary {
                file_hash,
                file_bytes,
                nar_hash,
                nar_bytes,
                listing: listing.take().and_then(|l| l.finish()),
            }),
        }
    }
}

impl From<crate::compression::PushError<NarFailure>> for NarFailure {
    fn from(e: crate::compression::PushError<NarFailure>) -> NarFailure {
        match e {
            crate::compression::PushError::Decode(_) => NarFailure::Decompress,
            crate::compression::PushError::Sink(f) => f,
        }
    }
}
