//! The walk of a store path's directories, each reached through its parent's descriptor and
//! its entries through its own (no path resolved per file); a directory whose entries changed
//! gets Nix's time (1) back once, after all of them (and its mode, 0555, if it had to be made
//! writable for the renames).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, Timespec, Timestamps, UTIME_OMIT};
use rustix::io::Errno;

use super::{at, open_dir, Entry, OptimiseError, Optimiser};
use crate::host::fs::STORE_MTIME;

/// A directory whose entries the optimiser may change; when dropped, if they changed, its
/// modification time is Nix's again (and its mode 0555 if it was made writable). Not for the
/// store directory itself, which keeps its own.
pub(super) struct Changed<'a> {
    pub fd: BorrowedFd<'a>,
    pub is_store: bool,
    touched: bool,
    made_writable: bool,
}

impl<'a> Changed<'a> {
    pub fn new(fd: BorrowedFd<'a>, is_store: bool) -> Changed<'a> {
        Changed {
            fd,
            is_store,
            touched: false,
            made_writable: false,
        }
    }

    pub fn touched(&mut self) {
        self.touched = !self.is_store;
    }

    /// Gives the directory its owner's write bit (until dropped).
    pub fn make_writable(&mut self) -> io::Result<()> {
        if self.made_writable {
            return Ok(());
        }
        let mode = rustix::fs::fstat(self.fd)?.st_mode & 0o7777;
        rustix::fs::fchmod(self.fd, Mode::from_raw_mode(mode | 0o200))?;
        self.made_writable = true;
        self.touched = true;
        Ok(())
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if self.made_writable {
            let _ = rustix::fs::fchmod(self.fd, Mode::from_raw_mode(0o555));
        }
        if self.touched {
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: UTIME_OMIT,
                },
                last_modification: Timespec {
                    tv_sec: STORE_MTIME,
                    tv_nsec: 0,
                },
            };
            let _ = rustix::fs::futimens(self.fd, &times);
        }
    }
}

/// A directory still to walk: its parent (kept open while children wait) and its name.
struct Pending {
    parent: Rc<OwnedFd>,
    name: CString,
    shown: PathBuf,
}

/// Optimises the directory `name` in `parent` and everything under it.
pub(super) fn walk(
    opt: &Optimiser,
    parent: &OwnedFd,
    name: &CStr,
    shown: &Path,
) -> Result<(), OptimiseError> {
    let first = match open_dir(parent, name) {
        Ok(fd) => fd,
        Err(e) if e == Errno::NOENT => return Ok(()),
        Err(e) => return Err(at(shown)(e.into())),
    };
    let mut stack: Vec<Pending> = Vec::new();
    let mut next = Some((first, shown.to_path_buf()));
    loop {
        if let Some((fd, shown)) = next.take() {
            let fd = Rc::new(fd);
            for sub in optimise_entries(opt, &fd, &shown)? {
                stack.push(Pending {
                    parent: fd.clone(),
                    shown: shown.join(std::ffi::OsStr::from_bytes(sub.to_bytes())),
                    name: sub,
                });
            }
        }
        let Some(p) = stack.pop() else {
            return Ok(());
        };
        match open_dir(p.parent.as_fd(), &p.name) {
            Ok(fd) => next = Some((fd, p.shown)),
            // Collected meanwhile.
            Err(e) if e == Errno::NOENT => {}
            Err(e) => return Err(at(&p.shown)(e.into())),
        }
    }
}

/// Optimises the files of one directory; returns its subdirectories' names.
fn optimise_entries(
    opt: &Optimiser,
    fd: &OwnedFd,
    shown: &Path,
) -> Result<Vec<CString>, OptimiseError> {
    // All names first: the renames below must not disturb the reading.
    let mut entries = Vec::new();
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| at(shown)(e.into()))?;
    let mut dir = Dir::new(dup).map_err(|e| at(shown)(e.into()))?;
    while let Some(e) = dir.read() {
        let e = e.map_err(|e| at(shown)(e.into()))?;
        let name = e.file_name();
        if name == c"." || name == c".." || opt.known_inode(e.ino()) {
            continue;
        }
        entries.push((name.to_owned(), e.file_type()));
    }
    drop(dir);
    let mut subdirs = Vec::new();
    let mut changed = Changed::new(fd.as_fd(), false);
    for (name, kind) in entries {
        if kind == FileType::Directory {
            subdirs.push(name);
            continue;
        }
        let shown_entry = shown.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let st = match rustix::fs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if e == Errno::NOENT => continue,
            Err(e) => return Err(at(&shown_entry)(e.into())),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            subdirs.push(name);
            continue;
        }
        opt.optimise_file(&mut changed, &name, &Entry::of(&st), &shown_entry)?;
    }
    Ok(subdirs)
}
