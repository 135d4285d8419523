//! The cache verifier: trusts nothing. It reads a cache through [`CacheStorage`] (a directory
//! natively, async sources in wasm) and reports [`Problem`]s — every hash, size, signature,
//! reference, URL and file — with the same kinds and messages on every platform.
//!
//! Per path the checks go layer by layer (narinfo → URL → file size/hash → decompression and NAR
//! structure → NAR size/hash) and report the first layer that fails, so one damage gives one
//! problem. Memory is bounded whatever the NAR size: files are streamed, and decompression stops
//! as soon as it passes the NarSize the narinfo claims.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::io::{self, Read};

use crate::cache_info::CacheInfo;
use crate::compression::Compression;
use crate::hash::{HashAlgo, HashingReader, Sha256Factory, Sha256Host};
use crate::nar::{Limits, NarError, NarReader};
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};
use crate::signing::PublicKey;
use crate::store_path::{StoreDir, StorePath};

/// Read access to a cache, by paths relative to its root (`nix-cache-info`, `nar/…`).
pub trait CacheStorage: Sync {
    /// A whole small file, refused past `limit` bytes; `Ok(None)` if absent.
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>>;
    /// A stream over a file; `Ok(None)` if absent.
    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>>;
    /// A file's size; `Ok(None)` if absent.
    fn size(&self, rel: &str) -> io::Result<Option<u64>>;
    /// File names of the narinfos at the root (`<hashpart>.narinfo`).
    fn list_narinfos(&self) -> io::Result<Vec<String>>;
    /// Paths of the files under `nar/` (`nar/<name>`), for orphan detection.
    fn list_nar_files(&self) -> io::Result<Vec<String>>;
}

/// A streaming decompressor factory; the pure one is [`crate::compression::decoder`].
pub type DecoderFn = for<'a> fn(Compression, Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>>;

/// What kind of problem.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    BadCacheInfo,
    MalformedNarinfo,
    HashPartMismatch,
    UrlOutsideCache,
    MissingNar,
    FileSizeMismatch,
    FileHashMismatch,
    MalformedNar,
    NarSizeMismatch,
    NarHashMismatch,
    MissingReference,
    BadSignature,
    Untrusted,
    OrphanNar,
    /// A check could not run (an I/O error, an unsupported compression).
    CheckFailed,
}

impl ProblemKind {
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::BadCacheInfo => "bad-cache-info",
            ProblemKind::MalformedNarinfo => "malformed-narinfo",
            ProblemKind::HashPartMismatch => "hash-part-mismatch",
            ProblemKind::UrlOutsideCache => "url-outside-cache",
            ProblemKind::MissingNar => "missing-nar",
            ProblemKind::FileSizeMismatch => "file-size-mismatch",
            ProblemKind::FileHashMismatch => "file-hash-mismatch",
            ProblemKind::MalformedNar => "malformed-nar",
            ProblemKind::NarSizeMismatch => "nar-size-mismatch",
            ProblemKind::NarHashMismatch => "nar-hash-mismatch",
            ProblemKind::MissingReference => "missing-reference",
            ProblemKind::BadSignature => "bad-signature",
            ProblemKind::Untrusted => "untrusted",
            ProblemKind::OrphanNar => "orphan-nar",
            ProblemKind::CheckFailed => "check-failed",
        }
    }

    /// The exit-status bit, as `nix store verify`: 1 corrupt or missing, 2 signatures, 4 a check
    /// that could not run; 0 for warnings.
    pub fn exit_bit(self) -> u8 {
        match self {
            ProblemKind::OrphanNar => 0,
            ProblemKind::BadSignature | ProblemKind::Untrusted => 2,
            ProblemKind::CheckFailed => 4,
            _ => 1,
        }
    }

    pub fn is_warning(self) -> bool {
        self.exit_bit() == 0
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One problem: what, about which store path (or file), and expected vs found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub path: String,
    pub message: String,
}

/// The whole verdict (the `--json` document).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub ok: bool,
    pub paths: u64,
    pub checked_bytes: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    /// 0 when all is well (orphans alone included), else the sum of the problems' bits.
    pub fn exit_code(&self) -> u8 {
        self.problems
            .iter()
            .fold(0, |acc, p| acc | p.kind.exit_bit())
    }
}

#[derive(Clone)]
pub struct VerifyOptions {
    /// Keys whose signatures count; empty: signatures are not checked.
    pub trusted_keys: Vec<PublicKey>,
    /// Read and check every NAR (off: only narinfos, presence, file sizes, signatures, references).
    pub check_contents: bool,
    /// The store directory the cache must be for.
    pub store_dir: StoreDir,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            trusted_keys: Vec::new(),
            check_contents: true,
            store_dir: StoreDir::default(),
        }
    }
}

/// What checking one narinfo found.
#[derive(Debug, Clone, Default)]
pub struct PathCheck {
    pub narinfo: Option<NarInfo>,
    /// Set when the narinfo is malformed: what can still be told about it, so that its referrers
    /// and its NAR are not reported again as missing references and an orphan.
    pub unparsed: Option<Unparsed>,
    pub problems: Vec<Problem>,
    pub checked_bytes: u64,
}

/// What a malformed narinfo still tells: its hash part (from the file name) and the `URL:` line.
#[derive(Debug, Clone, Default)]
pub struct Unparsed {
    pub hash_part: Option<String>,
    pub url: Option<String>,
}

impl Unparsed {
    fn new(file_name: &str, text: Option<&str>) -> Unparsed {
        Unparsed {
            hash_part: file_name.strip_suffix(".narinfo").map(str::to_string),
            url: text.and_then(|t| {
                t.split('\n')
                    .find_map(|l| l.strip_prefix("URL: "))
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
            }),
        }
    }
}

/// The most of `nix-cache-info` that is read.
pub const MAX_CACHE_INFO_SIZE: usize = 64 * 1024;

/// Checks `nix-cache-info`.
pub fn check_cache_info(storage: &dyn CacheStorage, opts: &VerifyOptions) -> Vec<Problem> {
    judge_cache_info(
        storage.read_small("nix-cache-info", MAX_CACHE_INFO_SIZE),
        opts,
    )
}

/// Judges `nix-cache-info`'s bytes (or why they could not be read).
pub fn judge_cache_info(read: io::Result<Option<Vec<u8>>>, opts: &VerifyOptions) -> Vec<Problem> {
    let p = |message: String| {
        vec![Problem {
            kind: ProblemKind::BadCacheInfo,
            path: "nix-cache-info".into(),
            message,
        }]
    };
    match read {
        Err(e) => p(format!("cannot be read: {e}")),
        Ok(None) => {
            p("missing: not a binary cache (expected a nix-cache-info file at the root)".into())
        }
        Ok(Some(bytes)) => match std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| CacheInfo::parse(t).map_err(|e| e.to_string()))
        {
            Err(e) => p(format!("unparsable: {e}")),
            Ok(info) => match info.store_dir {
                Some(d) if d != opts.store_dir.as_str() => p(format!(
                    "StoreDir is {d:?}, expected {:?}",
                    opts.store_dir.as_str()
                )),
                _ => Vec::new(),
            },
        },
    }
}

/// Whether a narinfo URL stays inside the cache: relative, no scheme, no `..`, no oddities.
pub fn url_is_inside(url: &str) -> Result<(), &'static str> {
    if url.is_empty() {
        Err("it is empty")
    } else if url.starts_with('/') || url.starts_with('\\') {
        Err("it is absolute")
    } else if url.contains("://")
        || url
            .split('/')
            .next()
            .is_some_and(|first| first.contains(':'))
    {
        Err("it has a scheme")
    } else if url.contains('\\')
        || url.contains('\0')
        || url.contains('?')
        || url.contains('#')
        || url.contains('%')
    {
        Err("it contains '\\\\', NUL, '?', '#' or '%'")
    } else if url
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        Err("it has \"..\", \".\" or empty components")
    } else {
        Ok(())
    }
}

/// The decompressed stream went past NarSize.
#[derive(Debug, thiserror::Error)]
#[error("decompresses to more than NarSize ({0} bytes)")]
struct NarTooLong(u64);

/// Passes the first `limit` bytes through, then fails if there are more: the decompression-bomb
/// guard. The first `limit` bytes always come through, so the NAR reader judges the structure
/// first (a stream that is no NAR at all is malformed, not merely too long).
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
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
    let mut out = judge_narinfo(
        file_name,
        storage.read_small(file_name, MAX_NARINFO_SIZE),
        opts,
    );
    if let Some(info) = &out.narinfo {
        let problem = check_file(storage, info, opts, decoder, &mut out.checked_bytes);
        out.problems.extend(problem.map(|(kind, message)| Problem {
            kind,
            path: info.path(),
            message,
        }));
    }
    out
}

/// The first layer: a narinfo file's bytes (or why they could not be read) → its problems, and
/// the parsed narinfo if there is one (then its file is to be checked).
pub fn judge_narinfo(
    file_name: &str,
    read: io::Result<Option<Vec<u8>>>,
    opts: &VerifyOptions,
) -> PathCheck {
    let mut out = PathCheck::default();
    let mut problem = |kind: ProblemKind, path: &str, message: String| {
        out.problems.push(Problem {
            kind,
            path: path.to_string(),
            message,
        })
    };
    let text = match read {
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                problem(
                    ProblemKind::MalformedNarinfo,
                    file_name,
                    "not UTF-8 text".into(),
                );
                let text = String::from_utf8_lossy(e.as_bytes());
                out.unparsed = Some(Unparsed::new(file_name, Some(&text)));
                return out;
            }
        },
        Ok(None) => {
            problem(
                ProblemKind::CheckFailed,
                file_name,
                "vanished while verifying".into(),
            );
            return out;
        }
        Err(e) => {
            let kind = if e.kind() == io::ErrorKind::InvalidData {
                ProblemKind::MalformedNarinfo
            } else {
                ProblemKind::CheckFailed
            };
            problem(kind, file_name, format!("cannot be read: {e}"));
            if kind == ProblemKind::MalformedNarinfo {
                out.unparsed = Some(Unparsed::new(file_name, None));
            }
            return out;
        }
    };
    let info = match NarInfo::parse(&text) {
        Ok(i) => i,
        Err(e) => {
            problem(ProblemKind::MalformedNarinfo, file_name, e.to_string());
            out.unparsed = Some(Unparsed::new(file_name, Some(&text)));
            return out;
        }
    };
    let path = info.path();
    if info.store_dir != opts.store_dir {
        problem(
            ProblemKind::MalformedNarinfo,
            &path,
            format!(
                "StorePath is in {}, the cache is for {}",
                info.store_dir, opts.store_dir
            ),
        );
    }
    let expected_name = format!("{}.narinfo", info.store_path.hash_part());
    if file_name != expected_name {
        problem(
            ProblemKind::HashPartMismatch,
            &path,
            format!("file {file_name} holds the narinfo of {path} (expected {expected_name})"),
        );
    }
    if !opts.trusted_keys.is_empty() {
        if let Some((kind, message)) = judge_signatures(&info, &opts.trusted_keys) {
            problem(kind, &path, message);
        }
    }
    out.narinfo = Some(info);
    out
}

fn judge_signatures(info: &NarInfo, trusted: &[PublicKey]) -> Option<(ProblemKind, String)> {
    match info.check_signatures(trusted) {
        Err(e) => Some((ProblemKind::BadSignature, e.to_string())),
        Ok(check) if !check.invalid.is_empty() => Some((
            ProblemKind::BadSignature,
            format!(
                "signature by {} does not verify: the narinfo was changed after signing",
                check.invalid.join(", ")
            ),
        )),
        Ok(check) if check.valid.is_empty() => {
            let names: Vec<&str> = trusted.iter().map(|k| k.name()).collect();
            let found = if info.sigs.is_empty() {
                "no signatures".to_string()
            } else {
                format!(
                    "signatures by {}",
                    info.sigs
                        .iter()
                        .map(|s| s.split(':').next().unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            Some((
                ProblemKind::Untrusted,
                format!(
                    "no valid signature by a trusted key (expected one of {}, found {found})",
                    names.join(", ")
                ),
            ))
        }
        Ok(_) => None,
    }
}

/// A problem found in a path's file (the path is the narinfo's).
pub type FileProblem = (ProblemKind, String);

/// The second layer: the URL must stay inside the cache (else the file is not even looked at).
pub fn judge_url(info: &NarInfo) -> Option<FileProblem> {
    url_is_inside(&info.url).err().map(|why| {
        (
            ProblemKind::UrlOutsideCache,
            format!(
                "URL {:?} resolves outside the cache ({why}); not read",
                info.url
            ),
        )
    })
}

/// The file's presence and size (`Ok(None)`: absent).
pub fn judge_size(info: &NarInfo, size: &io::Result<Option<u64>>) -> Option<FileProblem> {
    match size {
        Ok(Some(size)) => match info.file_size {
            Some(expected) if expected != *size => Some((
                ProblemKind::FileSizeMismatch,
                format!(
                    "{}: FileSize is {expected}, the file has {size} bytes",
                    info.url
                ),
            )),
            _ => None,
        },
        Ok(None) => Some(missing(info)),
        Err(e) => Some((ProblemKind::CheckFailed, format!("{}: {e}", info.url))),
    }
}

fn missing(info: &NarInfo) -> FileProblem {
    (
        ProblemKind::MissingNar,
        format!("{} does not exist", info.url),
    )
}

/// The compression method a narinfo names, or why it cannot be checked.
pub fn judge_compression(info: &NarInfo) -> Result<Compression, FileProblem> {
    info.compression
        .parse::<Compression>()
        .map_err(|e| (ProblemKind::CheckFailed, format!("{}: {e}", info.url)))
}

/// What reading a NAR file found, however it was read (pulled natively, pushed in wasm).
pub struct ContentFindings {
    pub file_hash: crate::hash::Hash,
    pub file_bytes: u64,
    /// The file could not be read to its end.
    pub read_error: Option<String>,
    nar: Result<(crate::hash::Hash, u64), NarFailure>,
}

/// The last layers: file hash, then decompression and NAR structure, then NAR size and hash.
pub fn judge_contents(info: &NarInfo, found: &ContentFindings) -> Option<FileProblem> {
    let url = &info.url;
    if let Some(e) = &found.read_error {
        return Some((ProblemKind::CheckFailed, format!("{url}: read error: {e}")));
    }
    if let Some(expected) = &info.file_hash {
        if *expected != found.file_hash {
            return Some((
                ProblemKind::FileHashMismatch,
                format!(
                    "{url}: FileHash is {expected}, the file hashes to {}",
                    found
                        .file_hash
                        .to_prefixed(crate::hash::Encoding::Nixbase32)
                ),
            ));
        }
    }
    match &found.nar {
        // The decoders' own words differ between the native and the pure ones: the verdict
        // must not, so it names only the method.
        Err(NarFailure::Decompress) => Some((
            ProblemKind::MalformedNar,
            format!(
                "{url}: does not decompress as {}: the compressed data is corrupt or cut short",
                info.compression
            ),
        )),
        Err(NarFailure::TooLong) => Some((
            ProblemKind::NarSizeMismatch,
            format!("{url}: NarSize is {}, the NAR is longer", info.nar_size),
        )),
        Err(NarFailure::Nar(e)) => Some((
            ProblemKind::MalformedNar,
            format!("{url}: not a valid NAR: {e}"),
        )),
        Ok((_, nar_size)) if *nar_size != info.nar_size => Some((
            ProblemKind::NarSizeMismatch,
            format!(
                "{url}: NarSize is {}, the NAR has {nar_size} bytes",
                info.nar_size
            ),
        )),
        Ok((nar_hash, _)) if nar_hash.algo() != info.nar_hash.algo() => Some((
            ProblemKind::CheckFailed,
            format!(
                "NarHash uses {}, only sha256 is checked",
                info.nar_hash.algo()
            ),
        )),
        Ok((nar_hash, _)) if *nar_hash != info.nar_hash => Some((
            ProblemKind::NarHashMismatch,
            format!(
                "{url}: NarHash is {}, the NAR hashes to {nar_hash}",
                info.nar_hash
            ),
        )),
        Ok(_) => None,
    }
}

/// The file layers, reading through `storage` (natively: pulled, and pipelined when worth it).
fn check_file(
    storage: &dyn CacheStorage,
    info: &NarInfo,
    opts: &VerifyOptions,
    decoder: DecoderFn,
    checked_bytes: &mut u64,
) -> Option<FileProblem> {
    if let Some(p) = judge_url(info) {
        return Some(p);
    }
    if let Some(p) = judge_size(info, &storage.size(&info.url)) {
        return Some(p);
    }
    if !opts.check_contents {
        return None;
    }
    let method = match judge_compression(info) {
        Ok(m) => m,
        Err(p) => return Some(p),
    };
    let file = match storage.open(&info.url) {
        Ok(Some(f)) => f,
        Ok(None) => return Some(missing(info)),
        Err(e) => return Some((ProblemKind::CheckFailed, format!("{}: {e}", info.url))),
    };
    let mut raw = HashingReader::new(HashAlgo::Sha256, file);
    let nar = (|| -> Result<(crate::hash::Hash, u64), NarFailure> {
        let decoded = decoder(method, Box::new(&mut raw)).map_err(|_| NarFailure::Decompress)?;
        let capped = Capped {
            inner: decoded,
            left: info.nar_size,
            limit: info.nar_size,
        };
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

    /// As [`NarFileCheck::new`], hashing with the host's SHA-256.
    pub fn with_sha256(
        method: Compression,
        nar_size_limit: u64,
        listing: bool,
        sha256: Sha256Factory<'_>,
    ) -> NarFileCheck {
        NarFileCheck {
            file: sha256(),
            file_bytes: 0,
            decoder: crate::compression::Decoder::new(method),
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

/// Why a NAR stream failed its check.
#[derive(Debug)]
enum NarFailure {
    /// The file does not decompress.
    Decompress,
    /// It decompresses to more than NarSize.
    TooLong,
    /// It decompresses, but not to a valid NAR.
    Nar(NarError),
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

/// The checks across paths: references without narinfos, and NAR files no narinfo names.
pub fn cross_check(checks: &[PathCheck], nar_files: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let present: HashSet<&StorePath> = checks
        .iter()
        .filter_map(|c| c.narinfo.as_ref())
        .map(|i| &i.store_path)
        .collect();
    // A malformed narinfo is reported as such, not again as missing for its referrers.
    let unparsed: HashSet<&str> = checks
        .iter()
        .filter_map(|c| c.unparsed.as_ref()?.hash_part.as_deref())
        .collect();
    for info in checks.iter().filter_map(|c| c.narinfo.as_ref()) {
        let missing: Vec<&StorePath> = info
            .references
            .iter()
            .filter(|r| !present.contains(r) && !unparsed.contains(r.hash_part()))
            .collect();
        for r in missing {
            problems.push(Problem {
                kind: ProblemKind::MissingReference,
                path: info.path(),
                message: format!(
                    "references {}, which has no narinfo in the cache (the closure is incomplete)",
                    info.store_dir.display(r)
                ),
            });
        }
    }
    let used: BTreeSet<&str> = checks
        .iter()
        .filter_map(|c| c.narinfo.as_ref())
        .map(|i| i.url.as_str())
        .chain(
            checks
                .iter()
                .filter_map(|c| c.unparsed.as_ref()?.url.as_deref()),
        )
        .collect();
    for f in nar_files {
        if !used.contains(f.as_str()) {
            problems.push(Problem {
                kind: ProblemKind::OrphanNar,
                path: f.clone(),
                message: "no narinfo points to this file (a warning)".into(),
            });
        }
    }
    problems
}

/// Assembles the report: problems sorted by path then kind, so every platform prints the same.
pub fn report(cache_info: Vec<Problem>, checks: Vec<PathCheck>, cross: Vec<Problem>) -> Report {
    let paths = checks.len() as u64;
    let checked_bytes = checks.iter().map(|c| c.checked_bytes).sum();
    let mut problems: Vec<Problem> = cache_info
        .into_iter()
        .chain(checks.into_iter().flat_map(|c| c.problems))
        .chain(cross)
        .collect();
    problems.sort_by(|a, b| (&a.path, a.kind, &a.message).cmp(&(&b.path, b.kind, &b.message)));
    problems.dedup();
    let ok = problems.iter().all(|p| p.kind.is_warning());
    Report {
        ok,
        paths,
        checked_bytes,
        problems,
    }
}

/// Verifies a whole cache sequentially (the native CLI runs [`check_path`] in parallel itself).
pub fn verify_cache(
    storage: &dyn CacheStorage,
    opts: &VerifyOptions,
    decoder: DecoderFn,
    mut on_path: impl FnMut(&PathCheck),
) -> Report {
    let info_problems = check_cache_info(storage, opts);
    let (names, mut listing_problems) = list(storage);
    let checks: Vec<PathCheck> = names
        .iter()
        .map(|n| {
            let c = check_path(storage, n, opts, decoder);
            on_path(&c);
            c
        })
        .collect();
    let nar_files = judge_nar_files(storage.list_nar_files(), &mut listing_problems);
    listing_problems.extend(cross_check(&checks, &nar_files));
    report(info_problems, checks, listing_problems)
}

/// The narinfo names, sorted, or a problem if they cannot be listed.
pub fn list(storage: &dyn CacheStorage) -> (Vec<String>, Vec<Problem>) {
    judge_listing(storage.list_narinfos())
}

/// The narinfo names of a listing, sorted, or a problem if there is none.
pub fn judge_listing(listed: io::Result<Vec<String>>) -> (Vec<String>, Vec<Problem>) {
    match listed {
        Ok(mut names) => {
            names.sort();
            (names, Vec::new())
        }
        Err(e) => (
            Vec::new(),
            vec![Problem {
                kind: ProblemKind::CheckFailed,
                path: ".".into(),
                message: format!("cannot list the cache: {e}"),
            }],
        ),
    }
}

/// The files under `nar/`, or a problem if they cannot be listed (then no orphans are found).
pub fn judge_nar_files(
    listed: io::Result<Vec<String>>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    listed.unwrap_or_else(|e| {
        problems.push(Problem {
            kind: ProblemKind::CheckFailed,
            path: "nar".into(),
            message: format!("cannot list nar/: {e}"),
        });
        Vec::new()
    })
}

/// Pure-Rust decoders, for callers without a faster one.
pub fn pure_decoder<'a>(
    method: Compression,
    input: Box<dyn Read + 'a>,
) -> io::Result<Box<dyn Read + 'a>> {
    crate::compression::decoder(method, input)
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
                format!("{rel} is larger than {limit} bytes"),
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

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
