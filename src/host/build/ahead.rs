//! A NAR's key learnt before it is written, so that a storage that writes in place (a bucket:
//! [`StorageWrite::writes_in_place`]) uploads it straight to `nar/<file hash>…` instead of
//! staging it and then copying it on the server, which costs as much as the upload.
//!
//! Uncompressed, the file hash is the NAR hash: the store metadata's when it has one (nothing to
//! do ahead; the NAR written is checked against it before its commit, as always), else a pass
//! that hashes the NAR first (constant memory). The upload's own hash is compared with the one
//! learnt ahead before the commit: a tree that changed in between fails the path, and its upload
//! is aborted (nothing shows).
//!
//! Compressed, the file hash is known only by compressing. Compressing twice (once for the hash,
//! the output dropped; once into the upload) was measured against staging and copying for a
//! 1 GiB NAR in zstd on SeaweedFS (benches/README.md, `s3.sh`): no faster beyond the noise, for
//! nearly twice the CPU time, so compressed NARs are staged.

use super::worker::NarSink;
use super::*;

/// Below this NAR size a pass ahead is not worth its time: such a NAR goes up in a few parts,
/// and its copy on the server is as quick.
const PASS_MIN: u64 = 32 << 20;

/// A NAR's key and file hash, known before it is written.
pub(super) struct Ahead {
    pub(super) key: CacheKey,
    pub(super) file_hash: Hash,
}

/// The NAR's key ahead, when the storage writes in place and learning it is worth it; `None`
/// otherwise (the NAR is staged, and named at the end).
pub(super) fn file_key_ahead(
    workers: &Workers,
    info: &PathInfo,
    physical: &Path,
    expected_size: u64,
) -> Result<Option<Ahead>, BuildError> {
    let opts = workers.opts;
    if !workers.storage.writes_in_place() {
        return Ok(None);
    }
    let known = info
        .nar_hash
        .as_ref()
        .filter(|h| h.algo() == HashAlgo::Sha256);
    let file_hash = match (opts.compression, known) {
        (Compression::None, Some(nar_hash)) => nar_hash.clone(),
        (Compression::None, None) if expected_size >= PASS_MIN => {
            first_pass(workers, info, physical, expected_size)?
        }
        _ => return Ok(None),
    };
    let key = CacheKey::nar_file(
        &nixbase32::encode(file_hash.digest()),
        opts.compression.extension(),
    )
    .map_err(|e| BuildError::Path {
        path: opts.store_dir.display(&info.path),
        message: e.to_string(),
    })?;
    Ok(Some(Ahead { key, file_hash }))
}

/// The NAR archived and hashed, the output dropped: uncompressed, the file is the NAR, so its
/// hash (the one the NAR sink makes anyway) is the file's.
fn first_pass(
    workers: &Workers,
    info: &PathInfo,
    physical: &Path,
    expected_size: u64,
) -> Result<Hash, BuildError> {
    let opts = workers.opts;
    let path_err = |message: String| BuildError::Path {
        path: opts.store_dir.display(&info.path),
        message,
    };
    let encoder = Encoder::new(Compression::None, None, expected_size, 1, io::sink())
        .map_err(|e| path_err(format!("compressor: {e}")))?;
    let sink = NarSink::new(opts.interrupt.clone(), None, encoder);
    let writer = NarWriter::new(sink).map_err(|e| path_err(e.to_string()))?;
    let writer =
        dump_into(physical, writer, CaseHack(false)).map_err(|e| path_err(e.to_string()))?;
    let sink = writer.finish().map_err(|e| path_err(e.to_string()))?;
    Ok(sink.into_nar_hash())
}
