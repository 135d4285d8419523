//! Copying a staged object too large for one `CopyObject` (AWS S3 copies at most 5 GiB in one
//! request) to its key: a multipart upload at the key, each part read from the staged object by
//! a ranged GET and uploaded, a few at once (memory: part size × parts in flight, whatever the
//! object's size: 48 MiB with the default 8 MiB parts).
//!
//! The object appears whole or not at all (at `CompleteMultipartUpload`). The upload is recorded
//! under `.nar-tool/uploads/` like a staging upload, so a writer that dies midway leaves an
//! upload the next writer aborts. What is not atomic: "if absent" is a look before the upload,
//! not a condition of its completion (`object_store` sends none there), so a writer racing for
//! the same key may be overwritten, by the same bytes (large objects are content-addressed NARs).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStoreExt, PutPayload};

use super::Shared;

/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// Parts copied at once.
const PARTS_IN_FLIGHT: usize = 3;

/// Copies `from` (`size` bytes, not changing) to `to` by parts.
pub async fn copy_by_parts(
    shared: &Arc<Shared>,
    from: &Path,
    to: &Path,
    size: u64,
) -> io::Result<()> {
    let Some(multipart) = shared.multipart.clone() else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} cannot be written to", shared.shown),
        ));
    };
    let owner = shared.owner()?;
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let record = shared.path(&format!(".nar-tool/uploads/{owner}-{n}"))?;
    let id = multipart
        .create_multipart(to)
        .await
        .map_err(|e| shared.error(e, "starting an upload to", to))?;
    shared
        .store
        .put(&record, format!("{to}\n{id}\n").into())
        .await
        .map_err(|e| shared.error(e, "recording the upload at", &record))?;
    let copied = match copy_parts(shared, &multipart, from, to, &id, size).await {
        Ok(parts) => multipart
            .complete_multipart(to, &id, parts)
            .await
            .map(drop)
            .map_err(|e| shared.error(e, "completing the upload of", to)),
        Err(e) => {
            let _ = multipart.abort_multipart(to, &id).await;
            Err(e)
        }
    };
    match shared.store.delete(&record).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) if copied.is_ok() => return Err(shared.error(e, "deleting", &record)),
        Err(_) => {}
    }
    copied
}

/// The part size for an object of `size` bytes: twice the storage's (a copy is of 5 GiB or
/// more: half the requests, each part a GET and a PUT), larger when S3's part count would not
/// do.
fn part_size(shared: &Shared, size: u64) -> u64 {
    (2 * shared.part_size as u64).max(size.div_ceil(MAX_PARTS))
}

async fn copy_parts(
    shared: &Arc<Shared>,
    multipart: &Arc<dyn MultipartStore>,
    from: &Path,
    to: &Path,
    id: &MultipartId,
    size: u64,
) -> io::Result<Vec<PartId>> {
    let part = part_size(shared, size);
    let ranges: Vec<(usize, std::ops::Range<u64>)> = (0..size.div_ceil(part).max(1))
        .map(|i| (i as usize, i * part..((i + 1) * part).min(size)))
        .collect();
    stream::iter(ranges)
        .map(|(index, range)| {
            let (shared, multipart) = (shared.clone(), multipart.clone());
            let (from, to, id) = (from.clone(), to.clone(), id.clone());
            async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(range.clone())),
                    ..Default::default()
                };
                let data = async { shared.store.get_opts(&from, options).await?.bytes().await }
                    .await
                    .map_err(|e| shared.error(e, "reading a part of", &from))?;
                if data.len() as u64 != range.end - range.start {
                    return Err(io::Error::other(format!(
                        "reading bytes {}..{} of {}: {} bytes came",
                        range.start,
                        range.end,
                        shared.locate_path(&from),
                        data.len()
                    )));
                }
                multipart
                    .put_part(&to, &id, index, PutPayload::from(data))
                    .await
                    .map_err(|e| shared.error(e, "uploading a part of", &to))
            }
        })
        .buffered(PARTS_IN_FLIGHT)
        .try_collect()
        .await
}
