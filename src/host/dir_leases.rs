//! Leases, GC locks and GC roots in a cache directory (a child of [`super`], for its folders).
//!
//! - A lease is a file `.nar-tool/leases/<token>` that its holder keeps locked (`flock`,
//!   exclusive) while it lives: created and locked under a hidden name, then renamed into view,
//!   so no one sees an unlocked live lease. Names are appended under the batch lock (shared). A
//!   holder that dies, however, has its lock released by the kernel: a collection that can take
//!   the lock knows the lease is dead and removes it.
//! - The batch lock is a `flock` of the cache's own folder, and the GC lock one of `nar/`: both
//!   exist before a collection starts, so it writes nothing before it can delete (a full disk
//!   can be collected).
//! - `gcroots/` holds regular files named by store paths' base names, or symlinks (read, never
//!   followed).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{fstat, AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::{errno_io, read_names, utf8_name, while_state_vanishes, DirStorage, STATE_DIR};
use crate::cache::storage::lease::{self, Lease};
use crate::cache::storage::{RootEntry, StorageLock};

const LEASES: &str = "leases";

/// A lease file, locked while this value lives.
pub(super) struct DirLease {
    file: File,
    token: String,
    leases_dir: OwnedFd,
    state_dir: OwnedFd,
    root: OwnedFd,
    shown: String,
}

impl Lease for DirLease {
    fn extend(&mut self, names: &[String]) -> io::Result<()> {
        let _batch = flock_dir(&self.root, ".", false, true, &self.shown)?;
        self.file
            .write_all(&lease::text(names))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.shown)))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

impl Drop for DirLease {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.leases_dir, self.token.as_str(), AtFlags::empty());
        // The folders go when nothing is left in them, as the owners' do.
        let _ = rustix::fs::unlinkat(&self.state_dir, LEASES, AtFlags::REMOVEDIR);
        let _ = rustix::fs::unlinkat(&self.root, STATE_DIR, AtFlags::REMOVEDIR);
    }
}

/// Opens `name` beneath `at` as a directory (no symlink) and locks it; `Ok(None)` if `wait` is
/// false and it is held.
fn flock_dir(
    at: &OwnedFd,
    name: &str,
    exclusive: bool,
    wait: bool,
    shown: &str,
) -> io::Result<Option<StorageLock>> {
    let fd = rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno_io(e, shown))?;
    flock_fd(fd, exclusive, wait, &format!("locking {shown}"))
}

/// `flock`s `fd`, shared or exclusive, waiting or not (`Ok(None)`: held elsewhere); the lock
/// lives as long as the returned value. `doing` names it in an error.
pub(crate) fn flock_fd(
    fd: OwnedFd,
    exclusive: bool,
    wait: bool,
    doing: &str,
) -> io::Result<Option<StorageLock>> {
    let op = match (exclusive, wait) {
        (true, true) => FlockOperation::LockExclusive,
        (true, false) => FlockOperation::NonBlockingLockExclusive,
        (false, true) => FlockOperation::LockShared,
        (false, false) => FlockOperation::NonBlockingLockShared,
    };
    match rustix::fs::flock(&fd, op) {
        Ok(()) => Ok(Some(StorageLock::new(fd))),
        Err(Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(errno_io(e, doing)),
    }
}

impl DirStorage {
    /// The GC lock: `nar/` locked exclusively (created if missing).
    pub(super) fn dir_gc_lock(&self) -> io::Result<Option<StorageLock>> {
        let nar = self.write_dir(crate::cache::layout::KeyDir::Nar)?;
        flock_dir(&nar, ".", true, false, &self.display("nar"))
    }

    /// The batch lock: the cache's folder locked.
    pub(super) fn dir_batch_lock(&self, exclusive: bool) -> io::Result<StorageLock> {
        flock_dir(
            &self.root,
            ".",
            exclusive,
            true,
            &self.path.display().to_string(),
        )?
        .ok_or_else(|| io::Error::other("the batch lock was not taken"))
    }

    /// A new lease file, locked, then made visible.
    pub(super) fn dir_lease(&self) -> io::Result<DirLease> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let token = format!(
            "{}-{}",
            std::process::id(),
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        while_state_vanishes(|| self.create_lease(&token))
    }

    fn create_lease(&self, token: &str) -> io::Result<DirLease> {
        let state_dir = self.real_subdir(self.root.as_fd(), STATE_DIR, true)?;
        let leases_dir = self.real_subdir(state_dir.as_fd(), LEASES, true)?;
        let hidden = format!(".{token}");
        let shown = self.display(&format!("{STATE_DIR}/{LEASES}/{token}"));
        let fd = rustix::fs::openat(
            &leases_dir,
            hidden.as_str(),
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| errno_io(e, &shown))?;
        let visible = rustix::fs::flock(&fd, FlockOperation::LockExclusive)
            .and_then(|()| rustix::fs::renameat(&leases_dir, hidden.as_str(), &leases_dir, token))
            .map_err(|e| errno_io(e, &shown));
        if let Err(e) = visible {
            let _ = rustix::fs::unlinkat(&leases_dir, hidden.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(DirLease {
            file: File::from(fd),
            token: token.to_string(),
            leases_dir,
            state_dir,
            root: rustix::io::dup(&self.root).map_err(io::Error::from)?,
            shown,
        })
    }

    /// The text of every live lease; with `tidy`, dead ones (their lock free) are removed.
    pub(super) fn dir_live_leases(&self, tidy: bool) -> io::Result<Vec<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let Ok(state) = rustix::fs::openat(&self.root, STATE_DIR, flags, Mode::empty()) else {
            return Ok(Vec::new());
        };
        let Ok(leases) = rustix::fs::openat(&state, LEASES, flags, Mode::empty()) else {
            return Ok(Vec::new());
        };
        let mut texts = Vec::new();
        for name in read_names(&leases)? {
            if name.starts_with('.') {
                continue; // being created: not visible yet
            }
            let fd = match rustix::fs::openat(
                &leases,
                name.as_str(),
                OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue, // ended meanwhile
                Err(e) => {
                    return Err(errno_io(
                        e,
                        self.display(&format!("{STATE_DIR}/{LEASES}/{name}")),
                    ))
                }
            };
            let regular = fstat(&fd)
                .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile);
            if !regular {
                continue;
            }
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    // Its holder is gone.
                    if tidy {
                        let _ = rustix::fs::unlinkat(&leases, name.as_str(), AtFlags::empty());
                    }
                }
                Err(Errno::WOULDBLOCK) => {
                    let mut text = Vec::new();
                    File::from(fd).take(64 << 20).read_to_end(&mut text)?;
                    texts.push(text);
                }
                Err(e) => return Err(errno_io(e, "locking a lease")),
            }
        }
        if texts.is_empty() && tidy {
            // Leave the cache as Nix would have it (fails harmlessly if a lease just came).
            let _ = rustix::fs::unlinkat(&state, LEASES, AtFlags::REMOVEDIR);
            let _ = rustix::fs::unlinkat(&self.root, STATE_DIR, AtFlags::REMOVEDIR);
        }
        Ok(texts)
    }

    /// The entries of `gcroots/`: regular files, and symlinks with their text.
    pub(super) fn dir_gc_roots(&self) -> io::Result<Vec<RootEntry>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match rustix::fs::openat(&self.root, "gcroots", flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(self.dir_error(e, "gcroots")),
        };
        read_roots(&dir, &self.display("gcroots"))
    }
}

/// The entries of a roots folder: regular files and symlinks (their text, never followed);
/// hidden names, folders and anything else are left out.
pub fn read_roots(dir: &OwnedFd, shown: &str) -> io::Result<Vec<RootEntry>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(|e| errno_io(e, shown))? {
        let entry = entry.map_err(|e| errno_io(e, shown))?;
        let Some(name) = utf8_name(entry.file_name()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => {
                match rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => FileType::from_raw_mode(s.st_mode),
                    Err(_) => continue,
                }
            }
            k => k,
        };
        match kind {
            FileType::RegularFile => out.push(RootEntry { name, link: None }),
            FileType::Symlink => {
                let link = rustix::fs::readlinkat(dir, name.as_str(), Vec::new())
                    .map_err(|e| errno_io(e, format!("{shown}/{name}")))?;
                out.push(RootEntry {
                    name,
                    link: Some(link.to_string_lossy().into_owned()),
                });
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The entries of a roots folder given by path (`--roots-dir`).
pub fn read_roots_at(path: &std::path::Path) -> io::Result<Vec<RootEntry>> {
    let dir = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno_io(e, path.display()))?;
    read_roots(&dir, &path.display().to_string())
}
