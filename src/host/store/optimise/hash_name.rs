//! The `.links` name of a file: the nix-base32 SHA-256 of its NAR serialisation (so contents
//! and the executable bit, or a symlink's target), a regular file read once through one buffer
//! per thread, reached through its directory's descriptor.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::{at, Entry, OptimiseError};
use crate::hash::{Encoding, HashAlgo, HashingWriter};
use crate::host::fs::{dump_path_serial, CaseHack};
use crate::nar::writer::{NarWriter, WriteError};

thread_local! {
    /// The buffer each thread reads files through when hashing them.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn written(
    hashed: Result<HashingWriter<io::Sink>, WriteError>,
    shown: &Path,
) -> Result<Option<String>, OptimiseError> {
    match hashed {
        Ok(h) => Ok(Some(h.finish().0.encode(Encoding::Nixbase32))),
        Err(WriteError::SizeMismatch { .. }) => Ok(None),
        Err(WriteError::Io(source)) => Err(at(shown)(source)),
        Err(e) => Err(at(shown)(io::Error::other(e.to_string()))),
    }
}

/// The `.links` name of the regular file or symlink `name` in `dir` whose `lstat` is `st`;
/// `None` when it vanished or its size is no longer `st`'s (it changed under us: it is left
/// alone).
pub(super) fn file_hash_name(
    dir: BorrowedFd<'_>,
    name: &CStr,
    st: &Entry,
    shown: &Path,
) -> Result<Option<String>, OptimiseError> {
    let gone = |e: rustix::io::Errno| e == rustix::io::Errno::NOENT;
    if st.is_symlink {
        let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
            Ok(t) => t,
            Err(e) if gone(e) => return Ok(None),
            Err(e) => return Err(at(shown)(e.into())),
        };
        let hashed = NarWriter::new(HashingWriter::new(HashAlgo::Sha256, io::sink()))
            .and_then(|mut w| w.symlink(target.as_bytes()).map(|_| w))
            .and_then(|w| w.finish());
        return written(hashed, shown);
    }
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if gone(e) => return Ok(None),
        Err(e) => return Err(at(shown)(e.into())),
    };
    let mut file = File::from(fd);
    let size = st.size;
    let hashed = READ_BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        let mut w = NarWriter::new(HashingWriter::new(HashAlgo::Sha256, io::sink()))?;
        w.regular_with(st.mode & 0o100 != 0, size, |out| {
            let mut copied = 0u64;
            loop {
                let n = match file.read(buf) {
                    Ok(0) => return Ok(copied),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                copied += n as u64;
                if copied > size {
                    return Err(WriteError::SizeMismatch {
                        expected: size,
                        found: copied,
                    });
                }
                io::Write::write_all(out, &buf[..n])?;
                // A regular file's read returns less than asked only at its end: no second
                // read to see it.
                if n < buf.len() && copied == size {
                    return Ok(copied);
                }
            }
        })?;
        w.finish()
    });
    written(hashed, shown)
}

/// The `.links` name of a file: the nix-base32 SHA-256 of its NAR serialisation.
pub fn nar_hash_name(path: &Path) -> Result<String, OptimiseError> {
    let w = HashingWriter::new(HashAlgo::Sha256, io::sink());
    let w = dump_path_serial(path, w, CaseHack(false))?;
    let (hash, _, _) = w.finish();
    Ok(hash.encode(Encoding::Nixbase32))
}
