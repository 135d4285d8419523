//! A streaming NAR writer. The caller describes the tree in archive order — a node, or a
//! directory's entries one by one — and the writer emits Nix's exact bytes while checking
//! names, their order and file sizes, so it cannot produce an archive the reader would refuse.
//!
//! ```
//! use nar_tool::nar::NarWriter;
//! let mut out = Vec::new();
//! let mut w = NarWriter::new(&mut out).unwrap();
//! w.start_directory().unwrap();
//! w.entry(b"hello").unwrap();
//! w.regular_bytes(false, b"hi\n").unwrap();
//! w.end_directory().unwrap();
//! w.finish().unwrap();
//! ```

use std::io::{self, Read, Write};

use super::listing::{Listing, ListingBuilder};
use super::reader::Event;
use super::wire::{self, show_bytes};

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("write error: {0}")]
    Io(#[from] io::Error),
    #[error("invalid entry name {name}: {reason}")]
    BadEntryName { name: String, reason: &'static str },
    #[error("entry {name} after {previous}: entries must come in strictly ascending byte order")]
    OutOfOrder { previous: String, name: String },
    #[error("invalid symlink target {target}: {reason}")]
    BadSymlinkTarget {
        target: String,
        reason: &'static str,
    },
    #[error("file changed while being archived: expected {expected} bytes, found {found}")]
    SizeMismatch { expected: u64, found: u64 },
    #[error("NAR writer misuse: {0}")]
    Misuse(&'static str),
}

/// Streams one archive into `W`. Writes are small; give it a buffered or hashing sink.
pub struct NarWriter<W: Write> {
    out: W,
    /// Last entry name of each open directory.
    dirs: Vec<Option<Vec<u8>>>,
    /// A node is due (at the root, or after `entry`).
    expecting_node: bool,
    written: u64,
    scratch: Vec<u8>,
    buf: Vec<u8>,
    /// Records the `.ls` listing as the archive is written, when asked to.
    listing: Option<ListingBuilder>,
    /// Name of the entry whose node is due.
    pending_name: Option<Vec<u8>>,
}

impl<W: Write> NarWriter<W> {
    /// Starts an archive (writes the magic); a root node must follow.
    pub fn new(out: W) -> Result<Self, WriteError> {
        let mut w = NarWriter {
            out,
            dirs: Vec::new(),
            expecting_node: true,
            written: 0,
            scratch: Vec::with_capacity(256),
            buf: Vec::new(),
            listing: None,
            pending_name: None,
        };
        w.tokens(&[wire::MAGIC])?;
        Ok(w)
    }

    /// Also records the archive's `.ls` listing, returned by [`NarWriter::finish_with_listing`].
    pub fn record_listing(mut self) -> Self {
        self.listing = Some(ListingBuilder::default());
        self
    }

    fn record(&mut self, event: impl FnOnce(usize, Option<Vec<u8>>) -> Event) {
        if let Some(l) = &mut self.listing {
            let name = self.pending_name.take();
            l.push(event(self.dirs.len(), name));
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn tokens(&mut self, toks: &[&[u8]]) -> Result<(), WriteError> {
        self.scratch.clear();
        for t in toks {
            wire::put_str(&mut self.scratch, t);
        }
        self.out.write_all(&self.scratch)?;
        self.written += self.scratch.len() as u64;
        Ok(())
    }

    fn begin_node(&mut self) -> Result<(), WriteError> {
        if !self.expecting_node {
            return Err(WriteError::Misuse(
                "a node was written where an entry or the end of a directory was due",
            ));
        }
        self.expecting_node = false;
        Ok(())
    }

    /// Closes the entry that held a finished node (nothing at the root).
    fn end_node(&mut self) -> Result<(), WriteError> {
        if !self.dirs.is_empty() {
            self.tokens(&[b")"])?;
        }
        Ok(())
    }

    /// A regular file of exactly `size` bytes read from `contents`.
    pub fn regular(
        &mut self,
        executable: bool,
        size: u64,
        contents: &mut impl Read,
    ) -> Result<(), WriteError> {
        self.regular_start(executable, size)?;
        if self.buf.is_empty() {
            self.buf = vec![0u8; 256 * 1024];
        }
        let mut copied = 0u64;
        loop {
            let want = (size - copied).min(self.buf.len() as u64) as usize;
            // Read one byte past the end to notice a file that grew.
            let want = if want == 0 { 1 } else { want };
            let n = match contents.read(&mut self.buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                break;
            }
            if copied + n as u64 > size {
                return Err(WriteError::SizeMismatch {
                    expected: size,
                    found: copied + n as u64,
                });
            }
            self.out.write_all(&self.buf[..n])?;
            copied += n as u64;
        }
        self.regular_end(size, copied)
    }

    /// A regular file of exactly `size` bytes that `fill` writes into the sink itself, for sinks
    /// that can take the contents without a copy through the writer's buffer (a file read
    /// straight into the sink's own memory). `fill` returns how many bytes it wrote; any count
    /// but `size` is a [`WriteError::SizeMismatch`] (the archive is then unfinished).
    pub fn regular_with(
        &mut self,
        executable: bool,
        size: u64,
        fill: impl FnOnce(&mut W) -> Result<u64, WriteError>,
    ) -> Result<(), WriteError> {
        self.regular_start(executable, size)?;
        let copied = fill(&mut self.out)?;
        self.regular_end(size, copied)
    }

    /// A regular file's node up to its contents.
    fn regular_start(&mut self, executable: bool, size: u64) -> Result<(), WriteError> {
        self.begin_node()?;
        if executable {
            self.tokens(&[b"(", b"type", b"regular", b"executable", b"", b"contents"])?;
        } else {
            self.tokens(&[b"(", b"type", b"regular", b"contents"])?;
        }
        self.out.write_all(&size.to_le_bytes())?;
        self.written += 8;
        let offset = self.written;
        self.record(|depth, name| Event::Regular {
            depth,
            name,
            executable,
            size,
            offset,
        });
        Ok(())
    }

    /// A regular file's node after its `copied` bytes of contents, `size` announced.
    fn regular_end(&mut self, size: u64, copied: u64) -> Result<(), WriteError> {
        if copied != size {
            return Err(WriteError::SizeMismatch {
                expected: size,
                found: copied,
            });
        }
        self.written += size;
        let pad = wire::padding_len(size);
        self.out.write_all(&[0u8; 8][..pad])?;
        self.written += pad as u64;
        self.tokens(&[b")"])?;
        self.end_node()
    }

    /// A regular file from memory.
    pub fn regular_bytes(&mut self, executable: bool, contents: &[u8]) -> Result<(), WriteError> {
        self.regular(executable, contents.len() as u64, &mut &contents[..])
    }

    pub fn symlink(&mut self, target: &[u8]) -> Result<(), WriteError> {
        wire::check_symlink_target(target).map_err(|reason| WriteError::BadSymlinkTarget {
            target: show_bytes(target),
            reason,
        })?;
        self.begin_node()?;
        self.record(|depth, name| Event::Symlink {
            depth,
            name,
            target: target.to_vec(),
        });
        self.tokens(&[b"(", b"type", b"symlink", b"target", target, b")"])?;
        self.end_node()
    }

    /// A directory starts; call [`NarWriter::entry`] then a node for each entry, then
    /// [`NarWriter::end_directory`].
    pub fn start_directory(&mut self) -> Result<(), WriteError> {
        self.begin_node()?;
        self.record(|depth, name| Event::Directory { depth, name });
        self.tokens(&[b"(", b"type", b"directory"])?;
        self.dirs.push(None);
        Ok(())
    }

    /// The next entry of the open directory; its node must follow.
    pub fn entry(&mut self, name: &[u8]) -> Result<(), WriteError> {
        if self.expecting_node {
            return Err(WriteError::Misuse(
                "an entry was started where a node was due",
            ));
        }
        wire::check_entry_name(name).map_err(|reason| WriteError::BadEntryName {
            name: show_bytes(name),
            reason,
        })?;
        let last = self
            .dirs
            .last_mut()
            .ok_or(WriteError::Misuse("an entry outside any directory"))?;
        if let Some(prev) = last.as_deref() {
            if prev >= name {
                return Err(WriteError::OutOfOrder {
                    previous: show_bytes(prev),
                    name: show_bytes(name),
                });
            }
        }
        match last {
            Some(prev) => {
                prev.clear();
                prev.extend_from_slice(name);
            }
            None => *last = Some(name.to_vec()),
        }
        self.tokens(&[b"entry", b"(", b"name", name, b"node"])?;
        if self.listing.is_some() {
            self.pending_name = Some(name.to_vec());
        }
        self.expecting_node = true;
        Ok(())
    }

    pub fn end_directory(&mut self) -> Result<(), WriteError> {
        if self.expecting_node {
            return Err(WriteError::Misuse("a directory ended where a node was due"));
        }
        self.dirs.pop().ok_or(WriteError::Misuse(
            "end_directory without an open directory",
        ))?;
        if let Some(l) = &mut self.listing {
            l.push(Event::EndDirectory {
                depth: self.dirs.len(),
            });
        }
        self.tokens(&[b")"])?;
        self.end_node()
    }

    /// Checks the archive is complete and gives back the sink (flushed).
    pub fn finish(self) -> Result<W, WriteError> {
        self.finish_with_listing().map(|(out, _)| out)
    }

    /// Like [`NarWriter::finish`], also returning the listing if [`NarWriter::record_listing`] asked for it.
    pub fn finish_with_listing(mut self) -> Result<(W, Option<Listing>), WriteError> {
        if self.expecting_node || !self.dirs.is_empty() {
            return Err(WriteError::Misuse(
                "finish before the root node was complete",
            ));
        }
        self.out.flush()?;
        Ok((self.out, self.listing.and_then(ListingBuilder::finish)))
    }
}
