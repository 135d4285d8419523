//! Writing an object whose key is known only at the end (a NAR is named by its file hash), or
//! known from the start (a NAR whose file hash was learnt first: [`ObjectStaged::at`]).
//!
//! Small objects (under one part) are kept in memory and put under their key at the commit, in
//! one request: atomic, and create-if-absent (`If-None-Match: *`) for [`Put::IfAbsent`]. Larger
//! ones are streamed as a multipart upload, a few parts in flight at once (memory: part size ×
//! (parts in flight + 1)), recorded under `.nar-tool/uploads/` first so that a rerun can abort
//! it if this process dies. An upload whose key is known from the start goes straight to that
//! key: a multipart upload shows nothing until it is completed, so the commit just completes it
//! (for [`Put::IfAbsent`], after a look: a NAR there already is kept and the upload aborted).
//! Otherwise it goes to a staging key under `.nar-tool/staging/`, and the commit completes it
//! and copies it to its key on the server (by parts past the copy limit, module `big_copy`).
//! Nothing is visible under a cache key before the commit.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, MultipartId, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use tokio::task::JoinHandle;

use super::{runtime, Shared};
use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::storage::{Committed, Put, Staged};

/// Parts uploaded at once per object.
const PARTS_IN_FLIGHT: usize = 3;

pub struct ObjectStaged {
    shared: Arc<Shared>,
    dir: KeyDir,
    /// The key, when it is known from the start: the upload goes there, not to a staging key.
    key: Option<CacheKey>,
    buf: Vec<u8>,
    upload: Option<Upload>,
    /// Bytes written so far (for messages).
    written: u64,
}

struct Upload {
    /// Where the parts go: a staging key, or the object's own key ([`ObjectStaged::at`]).
    temp: Path,
    /// The upload is to the object's own key (never deleted here: it may hold an object).
    direct: bool,
    record: Path,
    id: MultipartId,
    in_flight: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    parts: Vec<PartId>,
}

impl ObjectStaged {
    pub fn new(shared: Arc<Shared>, dir: KeyDir) -> ObjectStaged {
        ObjectStaged {
            shared,
            dir,
            key: None,
            buf: Vec::new(),
            upload: None,
            written: 0,
        }
    }

    /// An object to commit under `key` only, uploaded straight to it (no staging copy).
    pub fn at(shared: Arc<Shared>, key: &CacheKey) -> ObjectStaged {
        let mut staged = ObjectStaged::new(shared, key.dir());
        staged.key = Some(key.clone());
        staged
    }

    fn start_upload(&mut self) -> io::Result<()> {
        let shared = self.shared.clone();
        let owner = shared.owner()?;
        let n = shared.counter.fetch_add(1, Ordering::Relaxed);
        let temp = match &self.key {
            Some(key) => shared.path(&key.to_string())?,
            None => shared.path(&format!(".nar-tool/staging/{owner}-{n}"))?,
        };
        let record = shared.path(&format!(".nar-tool/uploads/{owner}-{n}"))?;
        let Some(multipart) = shared.multipart.clone() else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{} cannot be written to", shared.shown),
            ));
        };
        let (t, r) = (temp.clone(), record.clone());
        let id = runtime::block_on(async move {
            let id = multipart
                .create_multipart(&t)
                .await
                .map_err(|e| shared.error(e, "starting an upload to", &t))?;
            // The record comes right after the id exists: a death in between leaves an upload
            // no record names (the bucket's lifecycle rule for incomplete uploads covers it).
            shared
                .store
                .put(&r, format!("{t}\n{id}\n").into())
                .await
                .map_err(|e| shared.error(e, "recording the upload at", &r))?;
            Ok::<_, io::Error>(id)
        })??;
        self.upload = Some(Upload {
            temp,
            direct: self.key.is_some(),
            record,
            id,
            in_flight: VecDeque::new(),
            parts: Vec::new(),
        });
        Ok(())
    }

    /// Sends the buffer as the next part, waiting for the oldest part when too many are out.
    fn send_part(&mut self) -> io::Result<()> {
        if self.upload.is_none() {
            self.start_upload()?;
        }
        self.spawn_part();
        while self
            .upload
            .as_ref()
            .is_some_and(|u| u.in_flight.len() >= PARTS_IN_FLIGHT)
        {
            self.wait_oldest()?;
        }
        Ok(())
    }

    /// Starts uploading the buffer as the next part of the upload under way.
    fn spawn_part(&mut self) {
        let data = std::mem::take(&mut self.buf);
        let multipart = self.shared.multipart.clone().expect("checked at start");
        let upload = self.upload.as_mut().expect("started");
        let index = upload.parts.len() + upload.in_flight.len();
        let (temp, id) = (upload.temp.clone(), upload.id.clone());
        upload
            .in_flight
            .push_back(runtime::handle().spawn(async move {
                multipart
                    .put_part(&temp, &id, index, PutPayload::from(data))
                    .await
            }));
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        let upload = self.upload.as_mut().expect("started");
        let Some(handle) = upload.in_flight.pop_front() else {
            return Ok(());
        };
        let part = runtime::block_on(handle)?
            .map_err(|e| io::Error::other(format!("a part's upload task failed: {e}")))?
            .map_err(|e| self.shared.error(e, "uploading a part of", &upload.temp))?;
        upload.parts.push(part);
        Ok(())
    }

    /// Completes the multipart upload: the whole object is then at its upload's key.
    fn complete(&mut self) -> io::Result<()> {
        // An upload starts with a full part, so it has one; the rest of the buffer is the last.
        if !self.buf.is_empty() {
            self.spawn_part(); // the last part may be short
        }
        while self
            .upload
            .as_ref()
            .is_some_and(|u| !u.in_flight.is_empty())
        {
            self.wait_oldest()?;
        }
        let upload = self.upload.as_ref().expect("started");
        let multipart = self.shared.multipart.clone().expect("checked at start");
        let (temp, id, parts) = (upload.temp.clone(), upload.id.clone(), upload.parts.clone());
        let shared = self.shared.clone();
        runtime::block_on(async move {
            multipart
                .complete_multipart(&temp, &id, parts)
                .await
                .map_err(|e| shared.error(e, "completing the upload of", &temp))
        })??;
        Ok(())
    }
}

impl Write for ObjectStaged {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let part = self.shared.part_size;
        let room = part - self.buf.len();
        let n = data.len().min(room);
        if self.buf.capacity() == 0 && self.upload.is_some() {
            // A large object's next part is a whole one: no growing by copies. A small one (a
            // narinfo, a small NAR: mostly written at once) gets what is written, grown if need
            // be: it may wait a while for its commit, many at once.
            self.buf.reserve_exact(part);
        }
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == part {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Staged for ObjectStaged {
    fn name(&self) -> String {
        match &self.upload {
            Some(u) => format!(
                "{} (an upload in progress)",
                self.shared.locate_path(&u.temp)
            ),
            None => format!("an object being written to {}", self.shared.shown),
        }
    }

    fn finish_writing(&mut self) -> io::Result<()> {
        // Waiting for its commit, a small object holds only its bytes; a large one's last part
        // goes up now (an upload starts with a full part, so it has one), its buffer with it.
        if self.upload.is_none() {
            self.buf.shrink_to_fit();
        } else if !self.buf.is_empty() {
            self.spawn_part();
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>, key: &CacheKey, how: Put) -> io::Result<Committed> {
        if key.dir() != self.dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{key} is not in the folder {:?} this object was staged in",
                    self.dir.path()
                ),
            ));
        }
        if self.key.as_ref().is_some_and(|k| k != key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{key} is not the key {} this object was uploaded to",
                    self.key.as_ref().expect("checked")
                ),
            ));
        }
        let target = self.shared.path(&key.to_string())?;
        let shared = self.shared.clone();
        if self.upload.is_none() {
            let data = std::mem::take(&mut self.buf);
            let mode = match how {
                Put::Replace => PutMode::Overwrite,
                Put::IfAbsent => PutMode::Create,
            };
            return runtime::block_on(async move {
                match shared
                    .store
                    .put_opts(&target, data.into(), PutOptions::from(mode))
                    .await
                {
                    Ok(_) => Ok(Committed::Written),
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. })
                        if how == Put::IfAbsent =>
                    {
                        Ok(Committed::AlreadyThere)
                    }
                    Err(e) => Err(shared.error(e, "writing", &target)),
                }
            })?;
        }
        if self.upload.as_ref().is_some_and(|u| u.direct) {
            return self.commit_direct(&target, how);
        }
        self.complete()?;
        let upload = self.upload.take().expect("started");
        let written = self.written;
        let result = runtime::block_on(async move {
            let store = &shared.store;
            // Large objects are content-addressed NARs: a racing writer's copy has the same
            // bytes, so "if absent" is a look, then a copy.
            let there = match how {
                Put::Replace => false,
                Put::IfAbsent => match store.head(&target).await {
                    Ok(_) => true,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(shared.error(e, "looking at", &target)),
                },
            };
            if !there {
                let options = CopyOptions {
                    mode: CopyMode::Overwrite,
                    ..Default::default()
                };
                if written > shared.copy_limit {
                    super::big_copy::copy_by_parts(&shared, &upload.temp, &target, written).await?;
                } else {
                    store
                        .copy_opts(&upload.temp, &target, options)
                        .await
                        .map_err(|e| shared.error(e, "copying the upload to", &target))?;
                }
            }
            // Both at once: one round trip's wait.
            let (temp, record) = futures_util::future::join(
                store.delete(&upload.temp),
                store.delete(&upload.record),
            )
            .await;
            for (leftover, deleted) in [(&upload.temp, temp), (&upload.record, record)] {
                match deleted {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(shared.error(e, "deleting", leftover)),
                }
            }
            Ok(if there {
                Committed::AlreadyThere
            } else {
                Committed::Written
            })
        })?;
        result
    }
}

impl ObjectStaged {
    /// Completes an upload made to its key, unless (for [`Put::IfAbsent`]) an object is there
    /// already: then the upload is aborted. As for a copy, "if absent" is a look, not a
    /// condition of the completion: a racing writer's NAR of that name has the same bytes.
    fn commit_direct(mut self: Box<Self>, target: &Path, how: Put) -> io::Result<Committed> {
        let shared = self.shared.clone();
        if how == Put::IfAbsent {
            let t = target.clone();
            let there = runtime::block_on(async move {
                match shared.store.head(&t).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(shared.error(e, "looking at", &t)),
                }
            })??;
            if there {
                // Dropped uncommitted: the upload is aborted, its record deleted.
                return Ok(Committed::AlreadyThere);
            }
        }
        self.complete()?;
        let upload = self.upload.take().expect("started");
        let shared = self.shared.clone();
        runtime::block_on(async move {
            match shared.store.delete(&upload.record).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(Committed::Written),
                Err(e) => Err(shared.error(e, "deleting", &upload.record)),
            }
        })?
    }
}

impl Drop for ObjectStaged {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        // Not committed: abort the upload and forget it, in the background (a process that
        // ends first leaves the record, and the next writer aborts it).
        let shared = self.shared.clone();
        let Some(multipart) = shared.multipart.clone() else {
            return;
        };
        runtime::handle().spawn(async move {
            for part in upload.in_flight {
                part.abort();
            }
            let _ = multipart.abort_multipart(&upload.temp, &upload.id).await;
            if !upload.direct {
                let _ = shared.store.delete(&upload.temp).await;
            }
            let _ = shared.store.delete(&upload.record).await;
        });
    }
}
