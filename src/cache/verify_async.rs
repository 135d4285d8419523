//! The cache verifier for async hosts (wasm: JS sources over `fetch` or a folder the user
//! picked). Same layers, judgments and report as [`super::verify`]; the files arrive as chunk
//! streams and each NAR is pushed through [`NarFileCheck`] (pure decoders, bounded memory).
//! Paths are checked one after another: wasm has one thread.

use std::io;

use super::verify::{
    cross_check, judge_cache_info, judge_compression, judge_contents, judge_listing,
    judge_nar_files, judge_narinfo, judge_size, judge_url, report, FileProblem, NarFileCheck,
    PathCheck, Problem, ProblemKind, Report, VerifyOptions, MAX_CACHE_INFO_SIZE,
};
use crate::hash::{builtin_sha256, Sha256Host};
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};

/// A file arriving in pieces.
#[allow(async_fn_in_trait)] // used by single-threaded hosts only
pub trait ChunkStream {
    /// The next piece; `None` at the end.
    async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>>;
}

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
}

/// How far a verification has come.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    /// The narinfo file just checked.
    pub path: &'a str,
    /// File bytes read so far.
    pub bytes: u64,
}

/// Verifies the cache `source` holds: the narinfos named in `only` (all if `None`), their files,
/// `nix-cache-info`, references and (if the source can list `nar/`) orphans.
pub async fn verify_cache<S: AsyncCacheSource>(
    source: &S,
    opts: &VerifyOptions,
    only: Option<&[String]>,
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
    let mut checks = Vec::with_capacity(names.len());
    let mut bytes = 0;
    for (i, name) in names.iter().enumerate() {
        let check = check_path(source, name, opts).await;
        bytes += check.checked_bytes;
        checks.push(check);
        on_progress(Progress {
            done: i + 1,
            total: names.len(),
            path: name,
            bytes,
        });
    }
    // Orphans only make sense when the whole cache was checked.
    let nar_files = match (only, source.list_nar_files().await) {
        (None, Some(listed)) => judge_nar_files(listed, &mut problems),
        _ => Vec::new(),
    };
    problems.extend(cross_check(&checks, &nar_files));
    report(info_problems, checks, problems)
}

/// Checks one narinfo and its file, as [`super::verify::check_path`] does.
pub async fn check_path<S: AsyncCacheSource>(
    source: &S,
    file_name: &str,
    opts: &VerifyOptions,
) -> PathCheck {
    let read = source.read_small(file_name, MAX_NARINFO_SIZE).await;
    let mut out = judge_narinfo(file_name, read, opts);
    if let Some(info) = &out.narinfo {
        let problem = check_file(source, info, opts, &mut out.checked_bytes).await;
        out.problems.extend(problem.map(|(kind, message)| Problem {
            kind,
            path: info.path(),
            message,
        }));
    }
    out
}

async fn check_file<S: AsyncCacheSource>(
    source: &S,
    info: &NarInfo,
    opts: &VerifyOptions,
    checked_bytes: &mut u64,
) -> Option<FileProblem> {
    if let Some(p) = judge_url(info) {
        return Some(p);
    }
    // A source that can tell the size lets a wrong one stop the check before any reading, as
    // natively. Otherwise the file is read (and counted) in any case, and judged in the same
    // order afterwards: size first, then the rest.
    let known_size = source.size(&info.url).await;
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
    let mut stream = match source.open(&info.url).await {
        Ok(Some(s)) => s,
        Ok(None) => return judge_size(info, &Ok(None)),
        Err(e) => return Some((ProblemKind::CheckFailed, format!("{}: {e}", info.url))),
    };
    let mut check =
        method.map(|m| NarFileCheck::with_sha256(m, info.nar_size, false, &|| source.sha256()));
    let mut counted = 0u64;
    let mut read_error = None;
    loop {
        match stream.next_chunk().await {
            Ok(Some(chunk)) => {
                counted += chunk.len() as u64;
                if let Some(c) = &mut check {
                    c.update(&chunk);
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
            return Some((
                ProblemKind::CheckFailed,
                format!("{}: read error: {e}", info.url),
            ));
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
