//! The sequential pull driver: reads a cache through a [`CacheStorage`] and runs the judgments of
//! [`super::judge`] on what it reads. NARs are pulled through a decoder, capped at NarSize, hashed
//! and parsed — natively in a two-stage thread pipeline when cores would otherwise idle.

use std::io::{self, Read};

use super::judge::{
    cross_check_upstream, judge_cache_info, judge_compression, judge_contents, judge_listing,
    judge_nar_files, judge_narinfo, judge_narinfo_name, judge_policy, judge_size, judge_url,
    missing, unreadable, ContentFindings, NarFailure,
};
use super::report::report;
use super::storage::{CacheStorage, ListedSizes};
use super::{KeptProblems, PathCheck, Problem, Report, VerifyOptions, MAX_CACHE_INFO_SIZE};
use crate::cache::upstream::Answers;
use crate::compression::Compression;
use crate::hash::{HashAlgo, HashingReader};
use crate::nar::{Limits, NarError, NarReader};
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};
use crate::store_path::StorePath;

/// A streaming decompressor factory; the pure one is [`crate::compression::decoder`].
pub type DecoderFn = for<'a> fn(Compression, Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>>;

/// Checks `nix-cache-info`.
pub fn check_cache_info(storage: &dyn CacheStorage, opts: &VerifyOptions) -> Vec<Problem> {
    judge_cache_info(
        storage.read_small("nix-cache-info", MAX_CACHE_INFO_SIZE),
        opts,
    )
}

/// The decompressed stream went past NarSize.
#[derive(Debug, thiserror::Error)]
#[error("decompresses to more than NarSize ({0} bytes)")]
struct NarTooLong(u64);

/// Passes the first `limit` bytes through, then fails if there are more: the decompression-bomb
/// guard. The first `limit` bytes always come through, so the NAR reader judges the structure
/// first (a stream that is no NAR at all is malformed, not merely too long).
pub(crate) struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R> Capped<R> {
    /// At most `limit` bytes of `inner`, then an error if there are more.
    pub(crate) fn new(inner: R, limit: u64) -> Capped<R> {
        Capped {
            inner,
            left: limit,
            limit,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the limit: the stream must end here.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    NarTooLong(self.limit),
                )),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Checks one narinfo file (`<hashpart>.narinfo`) and, unless told not to, its NAR.
pub fn check_path(
    storage: &dyn CacheStorage,
    file_name: &str,
    opts: &VerifyOptions,
    decoder: DecoderFn,
) -> PathCheck {
    if let Some(out) = judge_narinfo_name(file_name) {
        return out;
    }
    let mut out = judge_narinfo(
        file_name,
        storage.read_small(file_name, MAX_NARINFO_SIZE),
        opts,
    );
    if let Some(info) = &out.narinfo {
        let problem = check_file(storage, info, opts, decoder, &mut out.checked_bytes);
        out.problems.extend(problem);
    }
    out
}

/// The file layers, reading through `storage` (natively: pulled, and pipelined when worth it).
fn check_file(
    storage: &dyn CacheStorage,
    info: &NarInfo,
    opts: &VerifyOptions,
    decoder: DecoderFn,
    checked_bytes: &mut u64,
) -> Option<Problem> {
    if let Some(p) = judge_url(info) {
        return Some(p);
    }
    let method = match (opts.check_contents, judge_compression(info)) {
        (true, Ok(m)) => m,
        (true, Err(p)) => return judge_size(info, &storage.size(&info.url)).or(Some(p)),
        (false, _) => return judge_size(info, &storage.size(&info.url)),
    };
    // The size from the response that streams the file: one request, not two.
    let file = match storage.open_sized(&info.url) {
        Ok(Some((f, size))) => match judge_size(info, &Ok(Some(size))) {
            Some(p) => return Some(p),
            None => f,
        },
        Ok(None) => return Some(missing(info)),
        Err(e) => return Some(unreadable(info, e)),
    };
    let mut raw = HashingReader::new(HashAlgo::Sha256, file);
    let nar = (|| -> Result<(crate::hash::Hash, u64), NarFailure> {
        let decoded = decoder(method, Box::new(&mut raw)).map_err(|_| NarFailure::Decompress)?;
        let capped = Capped::new(decoded, info.nar_size);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _checking = pipelined::Checking::start();
            if pipelined::worth_it(info.nar_size) {
                return pipelined::hash_and_parse_pipelined(capped, info.nar_size);
            }
            hash_and_parse(capped, info.nar_size)
        }
        #[cfg(target_arch = "wasm32")]
        hash_and_parse(capped, info.nar_size)
    })();
    // Hash the rest of the file too (trailing bytes after the compressed stream count).
    let drained = io::copy(&mut raw, &mut io::sink());
    let (file_hash, file_bytes, _) = raw.finish();
    *checked_bytes += file_bytes;
    judge_contents(
        info,
        &ContentFindings {
            file_hash,
            file_bytes,
            read_error: drained.err().map(|e| e.to_string()),
            nar,
        },
    )
}

/// Hashes and parses a decompressed NAR: its SHA-256 and length, or why it is no NAR.
fn hash_and_parse<R: Read>(nar: R, nar_size: u64) -> Result<(crate::hash::Hash, u64), NarFailure> {
    let hashed = HashingReader::new(HashAlgo::Sha256, nar);
    let limits = Limits {
        max_file_size: nar_size,
        ..Limits::default()
    };
    // A small NAR needs no large buffer (zeroing it would cost more than the NAR). Any capacity
    // over NarSize (and over the reader's largest read, 8 KiB) asks the decoder the same reads.
    let capacity = usize::try_from(nar_size.saturating_add(1).next_power_of_two())
        .unwrap_or(NAR_BUFFER)
        .clamp(16 * 1024, NAR_BUFFER);
    let mut reader = NarReader::with_limits(io::BufReader::with_capacity(capacity, hashed), limits);
    while reader.next().map_err(NarFailure::from_reader)?.is_some() {}
    let (hash, count, _) = reader.into_inner().into_inner().finish();
    Ok((hash, count))
}

/// The read size on decompressed data (the reader's buffer, and a pipeline's chunk).
const NAR_BUFFER: usize = 256 * 1024;

/// A two-stage pipeline for large NARs (native only: wasm has no threads). The calling thread
/// reads, hashes and decompresses the file; a scoped thread hashes and parses the NAR. The NAR
/// stage sees exactly the bytes and errors the sequential [`hash_and_parse`] would, in the same
/// order, so the verdict is the same; memory stays bounded (a few chunks in flight).
///
/// Used only when cores would otherwise idle (fewer NARs in flight than half the cores, e.g. a
/// cache with one large path): when every core already checks a path of its own, the hand-over
/// between threads would only cost.
#[cfg(not(target_arch = "wasm32"))]
mod pipelined {
    use super::{NarFailure, NAR_BUFFER};
    use crate::hash::{HashAlgo, Hasher};
    use crate::nar::{Limits, NarReader};
    use std::io::{self, Read};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::OnceLock;

    /// NARs from this size on may be pipelined.
    const MIN_NAR_SIZE: u64 = 1 << 20;

    /// NAR checks in progress in this process (the pipeline's own thread not counted).
    static CHECKING: AtomicUsize = AtomicUsize::new(0);

    /// Counts one NAR check while alive.
    pub(super) struct Checking;

    impl Checking {
        pub(super) fn start() -> Checking {
            CHECKING.fetch_add(1, Ordering::SeqCst);
            Checking
        }
    }

    impl Drop for Checking {
        fn drop(&mut self) {
            CHECKING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether to pipeline a NAR of this size now: it is large, there is a core to spare for
    /// each check in flight, and the machine was not busy with other work when the first NAR
    /// was checked (1-minute load average + 1 ≤ cores, where Linux tells it). On a busy machine
    /// the hand-over only adds work. `NAR_TOOL_VERIFY_PIPELINE=1` (or `0`) overrides the load
    /// test, for benchmarks; the verdicts are the same either way.
    pub(super) fn worth_it(nar_size: u64) -> bool {
        static CORES: OnceLock<(usize, bool)> = OnceLock::new();
        let (cores, idle) = *CORES.get_or_init(|| {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let idle = match std::env::var("NAR_TOOL_VERIFY_PIPELINE").as_deref() {
                Ok("1") => true,
                Ok("0") => false,
                _ => std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
                    .is_none_or(|load| load + 1.0 <= cores as f64),
            };
            (cores, idle)
        });
        idle && nar_size >= MIN_NAR_SIZE && 2 * CHECKING.load(Ordering::SeqCst) <= cores
    }

    /// Chunks in flight between the stages, and their size.
    const DEPTH: usize = 4;
    const CHUNK: usize = 4 * NAR_BUFFER;

    pub(super) fn hash_and_parse_pipelined<R: Read>(
        mut nar: R,
        nar_size: u64,
    ) -> Result<(crate::hash::Hash, u64), NarFailure> {
        // A chunk travels with the length of its data.
        let (full_tx, full_rx) = sync_channel::<io::Result<(Vec<u8>, usize)>>(DEPTH);
        // Emptied chunks go back to be refilled: no allocation per chunk.
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        std::thread::scope(|scope| {
            let parser = scope.spawn(move || {
                let mut chunks = ChunkReader {
                    full: full_rx,
                    empty: empty_tx,
                    chunk: Vec::new(),
                    len: 0,
                    pos: 0,
                    done: false,
                    hasher: Hasher::new(HashAlgo::Sha256),
                    count: 0,
                };
                let limits = Limits {
                    max_file_size: nar_size,
                    ..Limits::default()
                };
                let mut reader = NarReader::with_limits(&mut chunks, limits);
                while reader.next().map_err(NarFailure::from_reader)?.is_some() {}
                drop(reader);
                Ok((chunks.hasher.finish(), chunks.count))
            });
            let mut end = false;
            let mut allocated = 0;
            while !end {
                // At most DEPTH + 2 chunks ever: then wait for the parser to give one back.
                let mut chunk = match empty_rx.try_recv() {
                    Ok(chunk) => chunk,
                    Err(_) if allocated < DEPTH + 2 => {
                        allocated += 1;
                        vec![0; CHUNK]
                    }
                    Err(_) => match empty_rx.recv() {
                        Ok(chunk) => chunk,
                        // The parser is gone.
                        Err(_) => break,
                    },
                };
                // Every read asks for NAR_BUFFER bytes, as the sequential path's buffer does:
                // the decoder is asked the same, so it gives and fails the same.
                let mut filled = 0;
                let mut error = None;
                while CHUNK - filled >= NAR_BUFFER {
                    match nar.read(&mut chunk[filled..filled + NAR_BUFFER]) {
                        Ok(0) => {
                            end = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            error = Some(e);
                            end = true;
                            break;
                        }
                    }
                }
                // A send fails when the parser has stopped (it found the NAR bad):
                // decompressing further is useless.
                if filled > 0 && full_tx.send(Ok((chunk, filled))).is_err() {
                    break;
                }
                if let Some(e) = error {
                    let _ = full_tx.send(Err(e));
                }
            }
            drop(full_tx);
            parser
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The parser's end: the chunks in order, each hashed as a whole when it arrives (on
    /// success the parser reads them all, so the hash is the NAR's); an error is passed on where
    /// it happened in the stream.
    struct ChunkReader {
        full: Receiver<io::Result<(Vec<u8>, usize)>>,
        empty: SyncSender<Vec<u8>>,
        chunk: Vec<u8>,
        len: usize,
        pos: usize,
        done: bool,
        hasher: Hasher,
        count: u64,
    }

    impl Read for ChunkReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            while self.pos == self.len {
                if self.done {
                    return Ok(0);
                }
                match self.full.recv() {
                    Ok(Ok((next, len))) => {
                        self.hasher.update(&next[..len]);
                        self.count += len as u64;
                        let used = std::mem::replace(&mut self.chunk, next);
                        if !used.is_empty() {
                            let _ = self.empty.try_send(used);
                        }
                        self.len = len;
                        self.pos = 0;
                    }
                    Ok(Err(e)) => {
                        self.done = true;
                        return Err(e);
                    }
                    // The sender is gone: the end of the stream.
                    Err(_) => {
                        self.done = true;
                        return Ok(0);
                    }
                }
            }
            let n = buf.len().min(self.len - self.pos);
            buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
}

impl NarFailure {
    /// A pull reader's error: I/O errors below it are the decoder's (or the cap's).
    fn from_reader(e: NarError) -> NarFailure {
        match &e.kind {
            crate::nar::NarErrorKind::Io(io)
                if io.get_ref().is_some_and(|i| i.is::<NarTooLong>()) =>
            {
                NarFailure::TooLong
            }
            crate::nar::NarErrorKind::Io(_) => NarFailure::Decompress,
            _ => NarFailure::Nar(e),
        }
    }
}

impl ContentFindings {
    /// What reading a NAR file found when its decompressed stream (capped at NarSize) was
    /// pulled by a reader of its own (a restorer): `nar` is the NAR's hash and length, or the
    /// reader's error.
    pub fn pulled(
        file_hash: crate::hash::Hash,
        file_bytes: u64,
        read_error: Option<String>,
        nar: Result<(crate::hash::Hash, u64), NarError>,
    ) -> ContentFindings {
        ContentFindings {
            file_hash,
            file_bytes,
            read_error,
            nar: nar.map_err(NarFailure::from_reader),
        }
    }
}

/// Verifies a whole cache sequentially (the native CLI runs [`check_path`] in parallel:
/// `crate::host::verify`).
pub fn verify_cache(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    decoder: DecoderFn,
    mut on_path: impl FnMut(&PathCheck),
) -> Report {
    verify_cache_with(storage, opts, |storage, names| {
        names
            .iter()
            .map(|n| {
                let c = check_path(storage, n, opts, decoder);
                on_path(&c);
                c
            })
            .collect()
    })
}

/// Verifies a whole cache, `check_all` checking the narinfos named (sorted) with [`check_path`]
/// on the storage it is given, in whatever order it likes: `nix-cache-info` first, then the
/// paths, then what is checked across them.
pub fn verify_cache_with(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    check_all: impl FnOnce(&dyn CacheStorage, &[String]) -> Vec<PathCheck>,
) -> Report {
    verify_cache_upstream(storage, opts, check_all, |_| Answers::none())
}

/// [`verify_cache_with`], references missing from the cache counting as present when an upstream
/// serves them: `upstream` is asked about the missing ones ([`super::missing_references`]).
pub fn verify_cache_upstream(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    check_all: impl FnOnce(&dyn CacheStorage, &[String]) -> Vec<PathCheck>,
    upstream: impl FnOnce(&[StorePath]) -> Answers,
) -> Report {
    // Without contents each path asks its NAR file's size: from one listing where that gives
    // sizes (a bucket), not a request per file.
    let listed = (!opts.check_contents)
        .then(|| ListedSizes::of(storage))
        .flatten();
    let storage = listed.as_ref().map_or(storage, |l| l as &dyn CacheStorage);
    let info_problems = check_cache_info(storage, opts);
    let (names, mut listing_problems) = list(storage);
    let checks = check_all(storage, &names);
    let nar_files = judge_nar_files(storage.list_nar_files(), &mut listing_problems);
    let answers = upstream(&super::missing_references(&checks));
    let mut kept = KeptProblems::new(opts.max_problems);
    kept.extend(info_problems);
    kept.extend(listing_problems);
    let found = cross_check_upstream(&checks, &nar_files, &answers, &mut kept);
    kept.extend(judge_policy(&checks, opts));
    let mut report = report(checks, kept);
    report.upstream_references = answers.has_upstreams().then_some(found);
    report
}

/// The narinfo names, sorted, or a problem if they cannot be listed.
pub fn list(storage: &dyn CacheStorage) -> (Vec<String>, Vec<Problem>) {
    judge_listing(storage.list_narinfos())
}

/// Pure-Rust decoders, for callers without a faster one.
pub fn pure_decoder<'a>(
    method: Compression,
    input: Box<dyn Read + 'a>,
) -> io::Result<Box<dyn Read + 'a>> {
    crate::compression::decoder(method, input)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::cache::verify::push::NarFileCheck;

    fn nar_str(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
        out.resize(out.len().next_multiple_of(8), 0);
    }

    /// A NAR: a directory of files of these sizes (pseudo-random contents).
    fn nar(sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in [&b"nix-archive-1"[..], b"(", b"type", b"directory"] {
            nar_str(&mut out, t);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for (i, &size) in sizes.iter().enumerate() {
            for t in [
                &b"entry"[..],
                b"(",
                b"name",
                format!("f{i:04}").as_bytes(),
                b"node",
            ] {
                nar_str(&mut out, t);
            }
            for t in [&b"("[..], b"type", b"regular", b"contents"] {
                nar_str(&mut out, t);
            }
            let data: Vec<u8> = (0..size)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            nar_str(&mut out, &data);
            nar_str(&mut out, b")");
            nar_str(&mut out, b")");
        }
        nar_str(&mut out, b")");
        out
    }

    /// Serves `data` in reads of at most `step` bytes, then fails with `error` (if any).
    struct Source {
        data: Vec<u8>,
        pos: usize,
        step: usize,
        error: Option<&'static str>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return match self.error {
                    Some(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                    None => Ok(0),
                };
            }
            let n = buf.len().min(self.step).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn verdict(
        pipelined: bool,
        data: &[u8],
        nar_size: u64,
        step: usize,
        error: Option<&'static str>,
    ) -> String {
        let source = Source {
            data: data.to_vec(),
            pos: 0,
            step,
            error,
        };
        let capped = Capped {
            inner: source,
            left: nar_size,
            limit: nar_size,
        };
        let result = if pipelined {
            pipelined::hash_and_parse_pipelined(capped, nar_size)
        } else {
            hash_and_parse(capped, nar_size)
        };
        match result {
            Ok((hash, len)) => format!("ok {hash} {len}"),
            Err(NarFailure::Nar(e)) => format!("nar {e}"),
            Err(NarFailure::TooLong) => "nar (too long: true)".to_string(),
            Err(NarFailure::Decompress) => "decompress".to_string(),
        }
    }

    /// The push check's verdict on `data` fed in pieces of `step` bytes.
    fn pushed(data: &[u8], nar_size: u64, step: usize) -> String {
        let mut check = NarFileCheck::new(Compression::None, nar_size, false);
        for piece in data.chunks(step) {
            check.update(piece);
        }
        match check.finish(None).nar {
            Ok((hash, len)) => format!("ok {hash} {len}"),
            Err(NarFailure::Nar(e)) => format!("nar {e}"),
            Err(NarFailure::TooLong) => "nar (too long: true)".to_string(),
            Err(NarFailure::Decompress) => "decompress".to_string(),
        }
    }

    /// The pipeline (and the push check) gives exactly the sequential verdicts: hashes, lengths, errors and their
    /// offsets — whatever the read sizes of the source, and whether the machine is busy or not.
    #[test]
    fn pipelined_and_sequential_agree() {
        let good = nar(&[1 << 20, 10, 0, 300_000, 3 << 20]);
        let len = good.len() as u64;
        // The last token, ")", made "]".
        let mut bad_token = good.clone();
        let at = bad_token.len() - 8;
        bad_token[at] = b']';
        let cases: Vec<(&str, Vec<u8>, u64, Option<&'static str>)> = vec![
            ("good", good.clone(), len, None),
            ("claims less", good.clone(), len - 8, None),
            ("claims more", good.clone(), len + 8, None),
            ("truncated", good[..good.len() / 2].to_vec(), len, None),
            ("error midway", good[..2 << 20].to_vec(), len, Some("boom")),
            ("error at the end", good.clone(), len, Some("late boom")),
            ("damaged", bad_token, len, None),
            ("no NAR", vec![7; 2 << 20], 2 << 20, None),
            (
                "trailing",
                [&good[..], &[0; 4096]].concat(),
                len + 4096,
                None,
            ),
        ];
        for (name, data, nar_size, error) in cases {
            for step in [1 << 20, 256 * 1024, 4096 + 3] {
                let sequential = verdict(false, &data, nar_size, step, error);
                let pipelined = verdict(true, &data, nar_size, step, error);
                assert_eq!(sequential, pipelined, "{name}, reads of {step}");
                if error.is_none() {
                    assert_eq!(sequential, pushed(&data, nar_size, step), "{name}: push");
                }
                if name == "good" || name == "claims more" {
                    // (NarSize is compared with the length by the caller.)
                    assert!(sequential.starts_with("ok "), "{sequential}");
                } else if name.starts_with("error") {
                    assert_eq!(sequential, "decompress", "{name}");
                } else {
                    assert!(sequential.starts_with("nar "), "{name}: {sequential}");
                }
                if name == "claims less" {
                    assert!(sequential.contains("too long: true"), "{sequential}");
                }
            }
        }
    }
}
