//! Fetching paths out of a cache, the pure parts: a path's narinfo read and judged exactly as
//! `verify` judges it (store directory, name, signatures), its NAR read through every check of
//! `verify` (file size and hash, decompression, NarSize cap, NAR structure, size and hash) while
//! the caller consumes the NAR stream (restores it), and which fetched paths may be registered.
//! Nothing here touches the file system: the host restores (`crate::host::store`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use super::metadata::PathInfo;
use super::verify::pull::{Capped, DecoderFn};
use super::verify::{
    judge_compression, judge_contents, judge_narinfo, judge_size, judge_url, missing, unreadable,
    CacheStorage, ContentFindings, Problem, ProblemKind, VerifyOptions,
};
use crate::hash::{HashAlgo, HashingReader};
use crate::nar::{NarError, NarErrorKind};
use crate::narinfo::{NarInfo, MAX_NARINFO_SIZE};
use crate::store_path::StorePath;

/// The narinfo of `path`, read from `storage` and judged as `verify` judges it; also refused
/// when it describes another path than the one asked for.
pub fn read_narinfo(
    storage: &dyn CacheStorage,
    path: &StorePath,
    opts: &VerifyOptions,
) -> Result<NarInfo, Vec<Problem>> {
    let file_name = format!("{}.narinfo", path.hash_part());
    let shown = opts.store_dir.display(path);
    let read = match storage.read_small(&file_name, MAX_NARINFO_SIZE) {
        Ok(None) => {
            return Err(vec![Problem::new(
                ProblemKind::MissingNar,
                &shown,
                format!("the cache has no {file_name}"),
            )])
        }
        other => other,
    };
    let check = judge_narinfo(&file_name, read, opts);
    if !check.problems.is_empty() {
        return Err(check.problems);
    }
    let info = check.narinfo.expect("a narinfo without problems is parsed");
    if info.store_path != *path {
        let found = info.path();
        return Err(vec![Problem::new(
            ProblemKind::HashPartMismatch,
            &shown,
            format!("{file_name} describes {found}, not {shown}"),
        )
        .comparing(&shown, Some(&found))]);
    }
    Ok(info)
}

/// Why the consumer of a NAR stream stopped.
#[derive(Debug)]
pub enum ConsumeError<E> {
    /// The stream is not a valid NAR (or could not be read): the cache's fault, judged.
    Nar(NarError),
    /// The consumer's own failure (a full disk): reported as it is.
    Other(E),
}

/// Why fetching a NAR failed.
#[derive(Debug)]
pub enum NarFetchError<E> {
    /// The cache's file failed a check (as `verify` would report it).
    Cache(Box<Problem>),
    /// The consumer failed.
    Local(E),
}

/// Reads the NAR file `info` names through every check `verify` makes, handing the
/// decompressed NAR (capped at NarSize) to `consume`, which must read it to its end. What
/// `consume` returns is handed back only once the file hash, NAR size and NAR hash are known to
/// be right; otherwise it is dropped (so a consumer that restores cleans up in its `Drop`).
pub fn read_nar<T, E>(
    storage: &dyn CacheStorage,
    info: &NarInfo,
    decoder: DecoderFn,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, ConsumeError<E>>,
) -> Result<T, NarFetchError<E>> {
    let cache = |p: Problem| NarFetchError::Cache(Box::new(p));
    if let Some(p) = judge_url(info) {
        return Err(cache(p));
    }
    if let Some(p) = judge_size(info, &storage.size(&info.url)) {
        return Err(cache(p));
    }
    let method = judge_compression(info).map_err(cache)?;
    let file = match storage.open(&info.url) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(cache(missing(info))),
        Err(e) => return Err(cache(unreadable(info, e))),
    };
    let mut raw = HashingReader::new(HashAlgo::Sha256, file);
    let (consumed, nar) = {
        match decoder(method, Box::new(&mut raw)) {
            Err(e) => (
                None,
                Err(NarError {
                    offset: 0,
                    kind: NarErrorKind::Io(e),
                }),
            ),
            Ok(decoded) => {
                let mut nar =
                    HashingReader::new(HashAlgo::Sha256, Capped::new(decoded, info.nar_size));
                match consume(&mut nar) {
                    Ok(value) => {
                        let (hash, count, _) = nar.finish();
                        (Some(value), Ok((hash, count)))
                    }
                    Err(ConsumeError::Nar(e)) => (None, Err(e)),
                    Err(ConsumeError::Other(e)) => return Err(NarFetchError::Local(e)),
                }
            }
        }
    };
    // The rest of the file counts too (trailing bytes after the compressed stream).
    let drained = io::copy(&mut raw, &mut io::sink());
    let (file_hash, file_bytes, _) = raw.finish();
    let found = ContentFindings::pulled(
        file_hash,
        file_bytes,
        drained.err().map(|e| e.to_string()),
        nar,
    );
    match (judge_contents(info, &found), consumed) {
        (None, Some(value)) => Ok(value),
        (Some(p), _) => Err(cache(p)),
        (None, None) => unreachable!("a NAR that failed is judged a problem"),
    }
}

/// What a fetched path is registered with: the narinfo's metadata.
pub fn path_info(info: &NarInfo) -> PathInfo {
    let mut out = PathInfo::new(info.store_path.clone());
    out.nar_hash = Some(info.nar_hash.clone());
    out.nar_size = Some(info.nar_size);
    out.references = info.references.iter().cloned().collect();
    out.deriver = info.deriver.clone();
    out.sigs = info.sigs.iter().map(|s| s.to_string()).collect();
    out.ca = info.ca.as_ref().map(|c| c.to_string());
    out
}

/// The paths of `closure` that may be registered: those present (`present`) whose references
/// are all present too, transitively (a store keeps the closure property: never a valid path
/// whose reference is missing). Self-references are fine.
pub fn registrable(
    closure: &BTreeMap<StorePath, NarInfo>,
    present: &BTreeSet<StorePath>,
) -> BTreeSet<StorePath> {
    let mut ok: BTreeSet<StorePath> = present
        .iter()
        .filter(|p| closure.contains_key(*p))
        .cloned()
        .collect();
    loop {
        let bad: Vec<StorePath> = ok
            .iter()
            .filter(|p| {
                closure[*p]
                    .references
                    .iter()
                    .any(|r| r != *p && !ok.contains(r))
            })
            .cloned()
            .collect();
        if bad.is_empty() {
            return ok;
        }
        for p in bad {
            ok.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests;
