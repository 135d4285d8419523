//! An object read as a stream that can seek: the body of one GET arrives in pieces through a
//! small bounded channel (read-ahead of a few pieces, never the whole object); a seek drops it
//! and the next read starts a ranged GET at the new offset, on the same version of the object
//! (`If-Match` its ETag), so a replaced object is an error, never a mix of two.

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResult, ObjectStore};
use tokio::sync::mpsc;

use super::runtime;

/// Pieces read ahead of the reader, at most.
const READ_AHEAD: usize = 4;

pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// For messages.
    name: String,
    size: u64,
    etag: Option<String>,
    pos: u64,
    pieces: Option<mpsc::Receiver<io::Result<Bytes>>>,
    current: Bytes,
}

impl ObjectReader {
    /// Reads the body of `first` (a GET of the whole object) as it arrives.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        name: String,
        first: GetResult,
    ) -> ObjectReader {
        let size = first.meta.size;
        let etag = first.meta.e_tag.clone();
        let mut reader = ObjectReader {
            store,
            path,
            name,
            size,
            etag,
            pos: 0,
            pieces: None,
            current: Bytes::new(),
        };
        reader.pieces = Some(pump(first, reader.name.clone()));
        reader
    }

    fn start_at(&mut self, pos: u64) -> io::Result<()> {
        let store = self.store.clone();
        let path = self.path.clone();
        let options = GetOptions {
            if_match: self.etag.clone(),
            range: Some(GetRange::Bounded(pos..self.size)),
            ..Default::default()
        };
        let name = self.name.clone();
        let got = runtime::block_on(async move { store.get_opts(&path, options).await })?.map_err(
            |e| {
                io::Error::other(format!(
                    "reading {name} from byte {pos}: {e} (was it replaced while being read?)"
                ))
            },
        )?;
        self.pieces = Some(pump(got, self.name.clone()));
        Ok(())
    }
}

/// Moves the body's pieces into a bounded channel, from the object runtime.
fn pump(got: GetResult, name: String) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    runtime::handle().spawn(async move {
        let mut stream = got.into_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| io::Error::other(format!("reading {name}: {e}")));
            let failed = piece.is_err();
            if tx.send(piece).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        while self.current.is_empty() {
            if self.pieces.is_none() {
                self.start_at(self.pos)?;
            }
            let pieces = self.pieces.as_mut().expect("started");
            match pieces.blocking_recv() {
                Some(piece) => self.current = piece?,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "reading {}: the body ended at byte {} of {}",
                            self.name, self.pos, self.size
                        ),
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ObjectReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seeking {} before its start", self.name),
            )
        })?;
        if target != self.pos {
            // Within the piece at hand: skip in it; elsewhere: a new ranged request later.
            let ahead = target.checked_sub(self.pos);
            match ahead {
                Some(d) if d < self.current.len() as u64 => {
                    let _ = self.current.split_to(d as usize);
                }
                _ => {
                    self.pieces = None;
                    self.current = Bytes::new();
                }
            }
            self.pos = target;
        }
        Ok(self.pos)
    }
}
