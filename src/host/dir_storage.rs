//! A binary cache in a local directory, safe by construction.
//!
//! - Every object is opened relative to the cache root's descriptor, never by an absolute path,
//!   and never through a symlink that leads out of the cache: `openat2` with `RESOLVE_BENEATH`
//!   where the kernel has it (symlinks inside the cache still work), otherwise a walk that opens
//!   each component with `O_NOFOLLOW` (then no symlink is followed at all).
//! - Opens are non-blocking and only regular files are read, decided by `fstat` on the opened
//!   descriptor (never a look by name first): a FIFO or a device planted under a key's name is
//!   an error at once, not a hang, and what was checked is what is read.
//! - Writes go into the real folders of the cache (`nar/` as a symlink is refused), through
//!   temporary files owned by this process: named `.nar-tool.<owner>.<n>.tmp`, where the owner
//!   is a lock file under `.nar-tool/owners/` that the process holds (`flock`) while it lives.
//!   [`DirStorage::prepare`] removes only the temporary files of owners that are dead (their
//!   lock can be taken), never another live writer's, and never follows a symlink.
//! - Commits are renames (`RENAME_NOREPLACE` for put-if-absent). The durability barrier makes
//!   the files finished since the last one durable (`fdatasync` each, then `fsync` the folders)
//!   while they are few, and is one `syncfs` once they are many: a batch of thousands of small
//!   paths costs one sync, and a large path does not wait for other writers' data.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustix::fs::{
    fstat, AtFlags, Dir, FileType, FlockOperation, Mode, OFlags, RenameFlags, ResolveFlags,
};
use rustix::io::Errno;

use crate::cache::layout::{CacheKey, KeyDir};
use crate::cache::storage::lease::Lease;
use crate::cache::storage::{
    check_lock_name, is_refused, Committed, Object, ObjectMeta, Put, RootEntry, Staged,
    StorageLock, StorageRead, StorageWrite,
};

#[path = "dir_leases.rs"]
pub mod leases;

/// The folder of nar-tool's own state inside a cache (owners of temporary files, locks).
pub const STATE_DIR: &str = ".nar-tool";
/// Temporary files: `.nar-tool.<owner>.<n>.tmp`.
const TMP_PREFIX: &str = ".nar-tool.";
const TMP_SUFFIX: &str = ".tmp";

/// A directory whose files are opened beneath it and never outside it: the cache's root, and
/// the inspector's static files in `serve`.
pub struct Beneath {
    root: OwnedFd,
    path: PathBuf,
    /// `openat2` is unavailable (an old kernel, a seccomp filter): walk components instead.
    no_openat2: AtomicBool,
}

impl Beneath {
    /// Opens the directory (following symlinks in the path given: it is the caller's choice).
    pub fn open(path: &Path) -> io::Result<Beneath> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno_io(e, path.display()))?;
        // Whether this kernel (and its seccomp filter) has openat2, asked once: a later EPERM
        // is about one file, not the system call.
        let probe = rustix::fs::openat2(
            &root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH,
        );
        let no_openat2 = matches!(probe, Err(Errno::NOSYS) | Err(Errno::PERM));
        Ok(Beneath {
            root,
            path: path.to_path_buf(),
            no_openat2: AtomicBool::new(no_openat2),
        })
    }

    /// The directory, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.path.display())
    }

    /// Opens `rel` beneath the root: never out of it, never blocking.
    fn open_beneath(&self, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let flags = flags | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        if self.no_openat2.load(Ordering::Relaxed) {
            return walk_open(self.root.as_fd(), rel, flags);
        }
        // openat2 asks for a retry when a rename anywhere raced a `..` step of the lookup: a
        // few tries, then the walk (which follows no symlink at all).
        for _ in 0..8 {
            match rustix::fs::openat2(
                &self.root,
                rel,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::AGAIN) => continue,
                other => return other,
            }
        }
        walk_open(self.root.as_fd(), rel, flags)
    }

    /// Opens a regular file for reading, with its metadata from the same descriptor;
    /// `Ok(None)` if absent; an error naming what is there if it is not a regular file or
    /// leads outside.
    pub fn open_regular(&self, rel: &str) -> io::Result<Option<(File, ObjectMeta)>> {
        let fd = match self.open_beneath(rel, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
            Err(Errno::XDEV) | Err(Errno::LOOP) => return Err(no_follow_error(self.display(rel))),
            Err(e) => return Err(errno_io(e, self.display(rel))),
        };
        let stat = fstat(&fd).map_err(|e| errno_io(e, self.display(rel)))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a regular file (found {}); refusing to read it",
                    self.display(rel),
                    file_type_name(kind)
                ),
            ));
        }
        let meta = ObjectMeta {
            size: stat.st_size as u64,
            modified: u64::try_from(stat.st_mtime).ok(),
            etag: format!(
                "\"{:x}-{:x}{:09x}-{:x}\"",
                stat.st_size, stat.st_mtime, stat.st_mtime_nsec, stat.st_ino
            ),
        };
        Ok(Some((File::from(fd), meta)))
    }
}

/// Files finished since the last barrier, kept open so that the barrier can make just them
/// durable; past [`Pending::MAX`] of them the barrier syncs the whole file system instead.
#[derive(Default)]
struct Pending {
    files: Mutex<Vec<File>>,
    overflowed: AtomicBool,
}

impl Pending {
    /// Beyond this many files, one `syncfs` is cheaper than a sync per file.
    const MAX: usize = 32;

    fn add(&self, file: File) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if self.overflowed.load(Ordering::Relaxed) {
            return;
        }
        if files.len() < Pending::MAX {
            files.push(file);
        } else {
            self.overflowed.store(true, Ordering::Relaxed);
            files.clear();
        }
    }

    /// The files to sync, or `None` when there were too many: sync the file system.
    fn take(&self) -> Option<Vec<File>> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let files = std::mem::take(&mut *files);
        (!self.overflowed.swap(false, Ordering::Relaxed)).then_some(files)
    }
}

/// A cache directory.
pub struct DirStorage {
    beneath: Beneath,
    root: OwnedFd,
    path: PathBuf,
    /// Folders opened for writing (real directories, checked once).
    dirs: Mutex<HashMap<KeyDir, Arc<OwnedFd>>>,
    /// This process's ownership of temporary files, taken at the first write.
    owner: OnceLock<Arc<Owner>>,
    /// What the next barrier must make durable.
    pending: Arc<Pending>,
}

/// The lock file that says a writer is alive; its temporary files carry its token.
struct Owner {
    token: String,
    /// `.nar-tool`, `.nar-tool/owners`, and the lock file in it, held while this value lives.
    root: OwnedFd,
    state_dir: OwnedFd,
    owners_dir: OwnedFd,
    _lock: OwnedFd,
    next: AtomicU64,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.owners_dir, self.token.as_str(), AtFlags::empty());
        // Leave the cache as Nix would have it: the state folders go when nothing is in them
        // (removing a folder that is not empty fails, harmlessly).
        let _ = rustix::fs::unlinkat(&self.state_dir, "owners", AtFlags::REMOVEDIR);
        let _ = rustix::fs::unlinkat(&self.root, STATE_DIR, AtFlags::REMOVEDIR);
    }
}

fn errno_io(e: Errno, what: impl std::fmt::Display) -> io::Error {
    let err = io::Error::from(e);
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

fn no_follow_error(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{what} is a symlink or leads outside the cache; not followed"),
    )
}

impl DirStorage {
    /// Opens an existing cache directory for reading (and writing, once [`prepare`d]).
    ///
    /// [`prepare`d]: StorageWrite::prepare
    pub fn open(path: &Path) -> io::Result<DirStorage> {
        let beneath = Beneath::open(path)?;
        let root = rustix::io::dup(&beneath.root).map_err(|e| errno_io(e, path.display()))?;
        Ok(DirStorage {
            beneath,
            root,
            path: path.to_path_buf(),
            dirs: Mutex::new(HashMap::new()),
            owner: OnceLock::new(),
            pending: Arc::default(),
        })
    }

    /// Creates the cache directory (and its parents) if needed, then opens it.
    pub fn create(path: &Path) -> io::Result<DirStorage> {
        std::fs::create_dir_all(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        DirStorage::open(path)
    }

    /// The directory, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forces the component walk instead of `openat2` (for tests of the fallback).
    pub fn without_openat2(self) -> DirStorage {
        self.beneath.no_openat2.store(true, Ordering::Relaxed);
        self
    }

    fn display(&self, rel: &str) -> String {
        format!("{}/{rel}", self.path.display())
    }

    /// A folder of the cache, for writing: a real directory (created if missing), never a
    /// symlink.
    fn write_dir(&self, dir: KeyDir) -> io::Result<Arc<OwnedFd>> {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = dirs.get(&dir) {
            return Ok(fd.clone());
        }
        let fd = match dir {
            KeyDir::Root => {
                rustix::io::dup(&self.root).map_err(|e| errno_io(e, self.path.display()))?
            }
            _ => self.real_subdir(self.root.as_fd(), dir.path(), true)?,
        };
        let fd = Arc::new(fd);
        dirs.insert(dir, fd.clone());
        Ok(fd)
    }

    /// `parent/name` as a real directory (not a symlink), created if `create`.
    fn real_subdir(&self, parent: BorrowedFd<'_>, name: &str, create: bool) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(errno_io(e, self.display(name))),
                }
                rustix::fs::openat(parent, name, flags, Mode::empty())
                    .map_err(|e| self.dir_error(e, name))
            }
            Err(e) => Err(self.dir_error(e, name)),
        }
    }

    fn dir_error(&self, e: Errno, name: &str) -> io::Error {
        match e {
            Errno::LOOP | Errno::NOTDIR => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a real directory (a symlink or a file); refusing to write through it",
                    self.display(name)
                ),
            ),
            e => errno_io(e, self.display(name)),
        }
    }

    /// This process's owner token, registered (locked, then made visible) on first use.
    fn owner(&self) -> io::Result<Arc<Owner>> {
        if let Some(owner) = self.owner.get() {
            return Ok(owner.clone());
        }
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
        // Once our file is in, the state folders are not empty and stay.
        let owner = while_state_vanishes(|| self.register_owner(&token))?;
        Ok(self.owner.get_or_init(|| Arc::new(owner)).clone())
    }

    fn register_owner(&self, token: &str) -> io::Result<Owner> {
        let state = self.real_subdir(self.root.as_fd(), STATE_DIR, true)?;
        let owners_dir = self.real_subdir(state.as_fd(), "owners", true)?;
        // Locked under a hidden name first, so that no one sees an unlocked owner.
        let hidden = format!(".{token}");
        let lock = rustix::fs::openat(
            &owners_dir,
            hidden.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| errno_io(e, self.display(&format!("{STATE_DIR}/owners/{hidden}"))))?;
        let registered = rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| errno_io(e, "locking the owner file"))
            .and_then(|()| {
                rustix::fs::renameat(&owners_dir, hidden.as_str(), &owners_dir, token)
                    .map_err(|e| errno_io(e, "registering the owner file"))
            });
        if let Err(e) = registered {
            let _ = rustix::fs::unlinkat(&owners_dir, hidden.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(Owner {
            token: token.to_string(),
            root: rustix::io::dup(&self.root).map_err(io::Error::from)?,
            state_dir: state,
            owners_dir,
            _lock: lock,
            next: AtomicU64::new(0),
        })
    }

    /// Removes the temporary files of writers that died (their owner lock is free), and their
    /// owner files. Live writers' files are left alone.
    fn clean_dead_writers(&self) -> io::Result<()> {
        let own = self.owner.get().map(|o| o.token.clone());
        // Temporary files first, their owners after: a writer registers before it writes, so
        // an owner missing after its file was seen is gone (a cache copied without its
        // `.nar-tool/`, or whose last writer died and the next removed its record).
        let mut temporaries: Vec<(Arc<OwnedFd>, String)> = Vec::new();
        for dir in KeyDir::ALL {
            let fd = match dir {
                KeyDir::Root => rustix::io::dup(&self.root).map_err(io::Error::from)?,
                _ => match rustix::fs::openat(
                    &self.root,
                    dir.path(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                },
            };
            let names: Vec<String> = read_names(&fd)?
                .into_iter()
                .filter(|name| tmp_owner(name).is_some_and(|t| Some(t) != own.as_deref()))
                .collect();
            if !names.is_empty() {
                let fd = Arc::new(fd);
                temporaries.extend(names.into_iter().map(|name| (fd.clone(), name)));
            }
        }
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let owners_dir = rustix::fs::openat(&self.root, STATE_DIR, dir_flags, Mode::empty())
            .and_then(|state| rustix::fs::openat(&state, "owners", dir_flags, Mode::empty()));
        let owners_dir = match owners_dir {
            Ok(fd) => Some(fd),
            Err(Errno::NOENT) => None,
            // Not a folder, or not readable: nothing can be judged.
            Err(_) => return Ok(()),
        };
        for (fd, name) in &temporaries {
            let token = tmp_owner(name).unwrap_or_default();
            if owners_dir.as_ref().is_none_or(|o| owner_is_dead(o, token)) {
                // unlinkat never follows a symlink; a directory by that name stays.
                let _ = rustix::fs::unlinkat(&**fd, name.as_str(), AtFlags::empty());
            }
        }
        let Some(owners_dir) = owners_dir else {
            return Ok(());
        };
        for token in read_names(&owners_dir)? {
            if token.starts_with('.') || Some(&token) == own.as_ref() {
                continue;
            }
            if owner_is_dead(&owners_dir, &token) {
                let _ = rustix::fs::unlinkat(&owners_dir, token.as_str(), AtFlags::empty());
            }
        }
        Ok(())
    }

    /// A lock file under `.nar-tool/locks/`.
    fn lock_file(&self, name: &str) -> io::Result<OwnedFd> {
        while_state_vanishes(|| self.open_lock_file(name))
    }

    fn open_lock_file(&self, name: &str) -> io::Result<OwnedFd> {
        let state = self.real_subdir(self.root.as_fd(), STATE_DIR, true)?;
        let locks = self.real_subdir(state.as_fd(), "locks", true)?;
        rustix::fs::openat(
            &locks,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| errno_io(e, self.display(&format!("{STATE_DIR}/locks/{name}"))))
    }
}

/// Runs `f` again while it fails with "not found": a writer that finishes removes the state
/// folders (`.nar-tool/…`) when they are empty, and they may vanish between their creation and
/// their opening. A few tries.
fn while_state_vanishes<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match f() {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 20 => continue,
            other => return other,
        }
    }
}

/// The owner token of a temporary file name `.nar-tool.<owner>.<n>.tmp`.
fn tmp_owner(name: &str) -> Option<&str> {
    let inner = name.strip_prefix(TMP_PREFIX)?.strip_suffix(TMP_SUFFIX)?;
    let (token, n) = inner.rsplit_once('.')?;
    (!token.is_empty()
        && !token.starts_with('.')
        && !token.contains('/')
        && n.bytes().all(|b| b.is_ascii_digit()))
    .then_some(token)
}

/// An owner is dead when its lock file is gone or its lock can be taken.
fn owner_is_dead(owners_dir: &OwnedFd, token: &str) -> bool {
    // Read-write where we may (an exclusive lock over NFS needs it), else read-only.
    let open = |access: OFlags| {
        rustix::fs::openat(
            owners_dir,
            token,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match open(OFlags::RDWR).or_else(|e| match e {
        Errno::ACCESS | Errno::ROFS => open(OFlags::RDONLY),
        e => Err(e),
    }) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return true,
        Err(_) => return false,
    };
    let regular =
        fstat(&fd).is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile);
    regular && rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
}

/// The names in a directory (not `.` and `..`; not subdirectories).
fn read_names(dir: &OwnedFd) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(io::Error::from)? {
        let entry = entry.map_err(io::Error::from)?;
        if entry.file_type() == FileType::Directory {
            continue;
        }
        if let Some(name) = utf8_name(entry.file_name()) {
            names.push(name);
        }
    }
    Ok(names)
}

fn utf8_name(name: &CStr) -> Option<String> {
    let bytes = name.to_bytes();
    if bytes == b"." || bytes == b".." {
        return None;
    }
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

/// Opens `rel` component by component, refusing every symlink (`O_NOFOLLOW`).
fn walk_open(root: BorrowedFd<'_>, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut parts = rel.split('/').peekable();
    let mut dir: Option<OwnedFd> = None;
    while let Some(part) = parts.next() {
        if part.is_empty() || part == "." || part == ".." {
            return Err(Errno::XDEV);
        }
        let at = dir.as_ref().map_or(root, |d| d.as_fd());
        if parts.peek().is_none() {
            return rustix::fs::openat(at, part, flags | OFlags::NOFOLLOW, Mode::empty());
        }
        let opened = rustix::fs::openat(
            at,
            part,
            OFlags::RDONLY
                | OFlags::DIRECTORY
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NONBLOCK,
            Mode::empty(),
        );
        dir = Some(match opened {
            // O_DIRECTORY with O_NOFOLLOW says "not a directory" of a symlink: tell them apart.
            Err(Errno::NOTDIR) => {
                let stat = rustix::fs::statat(at, part, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                    return Err(Errno::LOOP);
                }
                return Err(Errno::NOTDIR);
            }
            other => other?,
        });
    }
    Err(Errno::INVAL)
}

fn file_type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "an unknown file type",
    }
}

impl StorageRead for DirStorage {
    fn describe(&self) -> String {
        format!("directory {}", self.path.display())
    }

    fn locate(&self, key: &CacheKey) -> String {
        self.display(&key.to_string())
    }

    fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>> {
        Ok(self
            .beneath
            .open_regular(&key.to_string())?
            .map(|(_, meta)| meta))
    }

    fn open(&self, key: &CacheKey) -> io::Result<Option<Object>> {
        Ok(self
            .beneath
            .open_regular(&key.to_string())?
            .map(|(file, meta)| Object {
                meta,
                body: Box::new(file),
            }))
    }

    fn list(&self, dir: KeyDir) -> io::Result<Box<dyn Iterator<Item = io::Result<String>> + '_>> {
        let fd = match dir {
            // A fresh descriptor: a duplicate would share the root's directory offset.
            KeyDir::Root => rustix::fs::openat(
                &self.root,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| errno_io(e, self.path.display()))?,
            _ => match self
                .beneath
                .open_beneath(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY)
            {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(Box::new(std::iter::empty())),
                Err(Errno::XDEV) | Err(Errno::LOOP) => {
                    return Err(no_follow_error(self.display(dir.path())))
                }
                Err(e) => return Err(errno_io(e, self.display(dir.path()))),
            },
        };
        let entries = Dir::new(fd).map_err(|e| errno_io(e, self.display(dir.path())))?;
        let prefix = dir.prefix();
        Ok(Box::new(entries.filter_map(move |entry| match entry {
            Err(e) => Some(Err(io::Error::from(e))),
            Ok(entry) if entry.file_type() == FileType::Directory => None,
            // A symlink is part of the cache only if it leads to a regular file inside it.
            Ok(entry) if matches!(entry.file_type(), FileType::Symlink | FileType::Unknown) => {
                let name = utf8_name(entry.file_name())?;
                match self.beneath.open_regular(&format!("{prefix}{name}")) {
                    Ok(Some(_)) => Some(Ok(name)),
                    // Dangling, leading out, or not a regular file: not part of the cache.
                    Ok(None) => None,
                    Err(e) if is_refused(&e) => None,
                    Err(e) => Some(Err(e)),
                }
            }
            Ok(entry) => utf8_name(entry.file_name()).map(Ok),
        })))
    }
}

/// A temporary file in a cache folder, owned by this process.
struct DirStaged {
    dir: Arc<OwnedFd>,
    key_dir: KeyDir,
    name: String,
    /// Open while being written; closed by [`Staged::finish_writing`].
    file: Option<File>,
    written: u64,
    /// Where the region not yet handed to the kernel's writeback starts.
    flushed_to: u64,
    _owner: Arc<Owner>,
    /// Where the file goes once written, for the next barrier.
    pending: Arc<Pending>,
    committed: bool,
    /// For messages.
    shown: String,
}

impl DirStaged {
    /// Bytes written between two writeback requests.
    const WRITEBACK_STEP: u64 = 2 << 20;

    fn file(&mut self) -> io::Result<&mut File> {
        let shown = &self.shown;
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("{shown}: written after it was finished")))
    }

    /// Starts the kernel's writeback of what was written since the last call, so that the
    /// barrier that makes the batch durable finds little left to wait for.
    fn start_writeback(&mut self) {
        if let Some(file) = &self.file {
            use std::os::fd::AsRawFd;
            let len = self.written - self.flushed_to;
            // SAFETY: a plain system call on a descriptor we own; failure only loses the hint.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.flushed_to as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.flushed_to = self.written;
    }
}

impl Write for DirStaged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file()?.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed_to >= Self::WRITEBACK_STEP {
            self.start_writeback();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for DirStaged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(&*self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

impl Staged for DirStaged {
    fn name(&self) -> String {
        self.shown.clone()
    }

    fn finish_writing(&mut self) -> io::Result<()> {
        if self.file.is_some() && self.written > self.flushed_to {
            self.start_writeback();
        }
        if let Some(file) = self.file.take() {
            self.pending.add(file);
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>, key: &CacheKey, how: Put) -> io::Result<Committed> {
        if key.dir() != self.key_dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{key} is not in the folder it was staged in"),
            ));
        }
        self.finish_writing()?;
        let target = key.file_name();
        let renamed = match how {
            Put::Replace => {
                rustix::fs::renameat(&*self.dir, self.name.as_str(), &*self.dir, target.as_str())
            }
            Put::IfAbsent => match rustix::fs::renameat_with(
                &*self.dir,
                self.name.as_str(),
                &*self.dir,
                target.as_str(),
                RenameFlags::NOREPLACE,
            ) {
                // A file system without RENAME_NOREPLACE: a hard link fails the same way.
                Err(Errno::INVAL) | Err(Errno::NOSYS) => rustix::fs::linkat(
                    &*self.dir,
                    self.name.as_str(),
                    &*self.dir,
                    target.as_str(),
                    AtFlags::empty(),
                ),
                other => other,
            },
        };
        match renamed {
            Ok(()) => {
                // After a link the temporary name is still there: Drop removes it.
                self.committed = how == Put::Replace;
                Ok(Committed::Written)
            }
            Err(Errno::EXIST) => Ok(Committed::AlreadyThere),
            Err(e) => Err(errno_io(
                e,
                format!("{}: renaming {} to {key}", self.shown, self.name),
            )),
        }
    }
}

impl StorageWrite for DirStorage {
    fn prepare(&self) -> io::Result<()> {
        for dir in KeyDir::ALL {
            self.write_dir(dir)?;
        }
        self.owner()?;
        self.clean_dead_writers()?;
        // And the leases of processes that died (a killed build's).
        self.dir_live_leases(true).map(drop)
    }

    fn stage(&self, dir: KeyDir) -> io::Result<Box<dyn Staged>> {
        let owner = self.owner()?;
        let fd = self.write_dir(dir)?;
        let n = owner.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{TMP_PREFIX}{}.{n}{TMP_SUFFIX}", owner.token);
        let shown = self.display(&format!("{}{name}", dir.prefix()));
        let file = rustix::fs::openat(
            &*fd,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| errno_io(e, &shown))?;
        // The mode a cache file gets, whatever the umask; set while only we can see it.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o644)).map_err(|e| errno_io(e, &shown))?;
        Ok(Box::new(DirStaged {
            dir: fd,
            key_dir: dir,
            name,
            file: Some(File::from(file)),
            written: 0,
            flushed_to: 0,
            _owner: owner,
            pending: self.pending.clone(),
            committed: false,
            shown,
        }))
    }

    fn replace_if_unchanged(
        &self,
        key: &CacheKey,
        data: &[u8],
        expected: Option<&str>,
    ) -> io::Result<bool> {
        // Writers that compare and swap serialise on a lock of the owners' folder, which
        // exists while any writer is registered (as this one now is); the rename is atomic for
        // readers. A descriptor of its own, so that threads exclude each other too.
        let owner = self.owner()?;
        let lock = rustix::fs::openat(
            &owner.owners_dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).map_err(io::Error::from)?;
        let current = self.stat(key)?.map(|m| m.etag);
        if current.as_deref() != expected {
            return Ok(false);
        }
        // The new object is durable before it replaces one that may be referred to.
        let mut staged = self.stage(key.dir())?;
        staged.write_all(data)?;
        staged.finish_writing()?;
        self.barrier()?;
        staged.commit(key, Put::Replace)?;
        Ok(true)
    }

    fn delete(&self, key: &CacheKey) -> io::Result<bool> {
        let fd = self.write_dir(key.dir())?;
        match rustix::fs::unlinkat(&*fd, key.file_name().as_str(), AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(errno_io(e, self.display(&key.to_string()))),
        }
    }

    fn barrier(&self) -> io::Result<()> {
        let dirs: Vec<Arc<OwnedFd>> = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        match self.pending.take() {
            // A few files: their data, then the folders' entries (the renames). Other writers'
            // data on the same file system is none of this barrier's business.
            Some(files) => {
                for file in files {
                    file.sync_data()
                        .map_err(|e| io::Error::new(e.kind(), format!("fdatasync: {e}")))?;
                }
                for fd in dirs {
                    rustix::fs::fsync(&*fd).map_err(|e| errno_io(e, "fsync of a folder"))?;
                }
            }
            // Many files: one sync of the file system (and of a folder mounted elsewhere).
            None => {
                rustix::fs::syncfs(&self.root).map_err(|e| errno_io(e, "syncfs"))?;
                let root_dev = fstat(&self.root).map(|s| s.st_dev).ok();
                for fd in dirs {
                    if fstat(&*fd).map(|s| s.st_dev).ok() != root_dev {
                        rustix::fs::syncfs(&*fd).map_err(|e| errno_io(e, "syncfs"))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn lock(&self, name: &str, exclusive: bool, wait: bool) -> io::Result<Option<StorageLock>> {
        check_lock_name(name)?;
        let fd = self.lock_file(name)?;
        leases::flock_fd(fd, exclusive, wait, &format!("lock {name}"))
    }

    fn gc_lock(&self) -> io::Result<Option<StorageLock>> {
        self.dir_gc_lock()
    }

    fn gc_batch_lock(&self, exclusive: bool) -> io::Result<StorageLock> {
        self.dir_batch_lock(exclusive)
    }

    fn lease(&self) -> io::Result<Box<dyn Lease>> {
        Ok(Box::new(self.dir_lease()?))
    }

    fn live_leases(&self, tidy: bool) -> io::Result<Vec<Vec<u8>>> {
        self.dir_live_leases(tidy)
    }

    fn gc_roots(&self) -> io::Result<Vec<RootEntry>> {
        self.dir_gc_roots()
    }

    fn clean_abandoned(&self) -> io::Result<()> {
        self.clean_dead_writers()
    }
}

/// The path of a key inside a directory cache, for messages and for tools that need a file
/// name (never opened by it here).
pub fn key_path(root: &Path, key: &CacheKey) -> PathBuf {
    root.join(OsStr::from_bytes(key.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cache::storage::conformance;

    fn key(name: &str) -> CacheKey {
        CacheKey::parse(name).unwrap()
    }

    #[test]
    fn conformance_with_openat2() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run(&DirStorage::open(dir.path()).unwrap());
    }

    #[test]
    fn conformance_with_the_component_walk() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run(&DirStorage::open(dir.path()).unwrap().without_openat2());
    }

    #[test]
    fn a_nar_folder_that_is_a_symlink_out_is_neither_read_nor_written() {
        for walk in [false, true] {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("x.nar"), b"secret").unwrap();
            std::fs::write(outside.path().join(".nar-tool.1-dead.0.tmp"), b"keep").unwrap();
            let cache = tempfile::tempdir().unwrap();
            symlink(outside.path(), cache.path().join("nar")).unwrap();
            let mut storage = DirStorage::open(cache.path()).unwrap();
            if walk {
                storage = storage.without_openat2();
            }
            let err = match storage.open(&key("nar/x.nar")) {
                Err(e) => e,
                Ok(o) => panic!("walk {walk}: opened {:?}", o.map(|o| o.meta)),
            };
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            assert!(storage.list(KeyDir::Nar).is_err());
            let err = storage.prepare().unwrap_err();
            assert!(err.to_string().contains("not a real directory"), "{err}");
            assert!(storage.stage(KeyDir::Nar).is_err());
            let mut names: Vec<_> = std::fs::read_dir(outside.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(
                names,
                [".nar-tool.1-dead.0.tmp", "x.nar"],
                "nothing written or deleted outside"
            );
        }
    }

    #[test]
    fn symlinks_inside_the_cache_are_followed_only_with_openat2() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(
            cache.path().join("nix-cache-info"),
            b"StoreDir: /nix/store\n",
        )
        .unwrap();
        std::fs::create_dir(cache.path().join("nar")).unwrap();
        symlink("../nix-cache-info", cache.path().join("nar/a.nar")).unwrap();
        let storage = DirStorage::open(cache.path()).unwrap();
        assert_eq!(
            storage.read_small(&key("nar/a.nar"), 100).unwrap().unwrap(),
            b"StoreDir: /nix/store\n"
        );
        let storage = storage.without_openat2();
        assert!(storage.open(&key("nar/a.nar")).is_err());
    }

    #[test]
    fn fifos_and_directories_are_refused_at_once() {
        let cache = tempfile::tempdir().unwrap();
        let fifo = cache.path().join("nix-cache-info");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::fs::create_dir(
            cache
                .path()
                .join("5qk0fgkb9sfxmrbqjcs803wd2rjkaigy.narinfo"),
        )
        .unwrap();
        for walk in [false, true] {
            let mut storage = DirStorage::open(cache.path()).unwrap();
            if walk {
                storage = storage.without_openat2();
            }
            let started = Instant::now();
            let err = storage.read_small(&CacheKey::CacheInfo, 100).unwrap_err();
            assert!(err.to_string().contains("a FIFO"), "{err}");
            let err = storage
                .stat(&key("5qk0fgkb9sfxmrbqjcs803wd2rjkaigy.narinfo"))
                .unwrap_err();
            assert!(err.to_string().contains("a directory"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
    }

    #[test]
    fn only_dead_writers_temporaries_are_cleaned() {
        let cache = tempfile::tempdir().unwrap();
        let live = DirStorage::open(cache.path()).unwrap();
        live.prepare().unwrap();
        let mut staged = live.stage(KeyDir::Nar).unwrap();
        staged.write_all(b"in flight").unwrap();
        // A dead writer: an owner file nobody holds, and its temporaries.
        let owners = cache.path().join(".nar-tool/owners");
        std::fs::write(owners.join("42-dead"), b"").unwrap();
        std::fs::write(cache.path().join("nar/.nar-tool.42-dead.0.tmp"), b"x").unwrap();
        std::fs::write(cache.path().join(".nar-tool.42-dead.1.tmp"), b"x").unwrap();
        // A temporary of an owner that is gone, planted as a symlink to a file outside.
        let outside = tempfile::NamedTempFile::new().unwrap();
        symlink(
            outside.path(),
            cache.path().join("nar/.nar-tool.7-gone.0.tmp"),
        )
        .unwrap();
        // Something else that merely looks temporary.
        std::fs::write(cache.path().join("nar/.nar-1234.tmp"), b"not ours").unwrap();

        let other = DirStorage::open(cache.path()).unwrap();
        other.prepare().unwrap();
        let left: Vec<String> = std::fs::read_dir(cache.path().join("nar"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&".nar-1234.tmp".to_string()));
        assert!(
            left.iter().any(|n| tmp_owner(n).is_some()),
            "the live writer's file stays: {left:?}"
        );
        assert!(!cache.path().join(".nar-tool.42-dead.1.tmp").exists());
        assert!(!owners.join("42-dead").exists());
        assert!(outside.path().exists(), "the symlink went, not its target");
        staged.commit(&key("nar/a.nar"), Put::IfAbsent).unwrap();
        assert_eq!(
            std::fs::read(cache.path().join("nar/a.nar")).unwrap(),
            b"in flight"
        );
    }

    #[test]
    fn a_cleaner_never_takes_a_live_writers_files() {
        // One process writes while another keeps preparing (cleaning) the same cache, in a
        // bounded loop: every commit must find its temporary file.
        let cache = tempfile::tempdir().unwrap();
        let writer = DirStorage::open(cache.path()).unwrap();
        writer.prepare().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let cleaner = DirStorage::open(cache.path()).unwrap();
                    cleaner.prepare().unwrap();
                }
            });
            for i in 0..300 {
                let mut staged = writer.stage(KeyDir::Nar).unwrap();
                staged.write_all(&[i as u8; 100]).unwrap();
                staged.finish_writing().unwrap();
                std::thread::yield_now();
                let k = key(&format!("nar/n{i}.nar"));
                assert_eq!(
                    staged.commit(&k, Put::IfAbsent).unwrap(),
                    Committed::Written
                );
            }
            stop.store(true, Ordering::Relaxed);
        });
        let (keys, _) = crate::cache::storage::list_keys(&writer, KeyDir::Nar).unwrap();
        assert_eq!(keys.len(), 300);
    }

    #[test]
    fn a_barrier_syncs_few_files_each_and_many_by_the_file_system() {
        let cache = tempfile::tempdir().unwrap();
        let storage = DirStorage::open(cache.path()).unwrap();
        storage.prepare().unwrap();
        for count in [3, Pending::MAX + 8] {
            let mut staged = Vec::new();
            for i in 0..count {
                let mut s = storage.stage(KeyDir::Nar).unwrap();
                s.write_all(&[i as u8; 10]).unwrap();
                s.finish_writing().unwrap();
                staged.push(s);
            }
            let few = count <= Pending::MAX;
            assert_eq!(
                storage.pending.files.lock().unwrap().len(),
                if few { count } else { 0 }
            );
            assert_eq!(storage.pending.overflowed.load(Ordering::Relaxed), !few);
            storage.barrier().unwrap();
            assert!(storage.pending.files.lock().unwrap().is_empty());
            assert!(!storage.pending.overflowed.load(Ordering::Relaxed));
            for (i, s) in staged.into_iter().enumerate() {
                s.commit(&key(&format!("nar/c{count}-{i}.nar")), Put::IfAbsent)
                    .unwrap();
            }
        }
        storage.barrier().unwrap();
    }

    #[test]
    fn temporary_names() {
        assert_eq!(tmp_owner(".nar-tool.12-ab.3.tmp"), Some("12-ab"));
        assert_eq!(tmp_owner(".nar-tool..3.tmp"), None);
        assert_eq!(tmp_owner(".nar-tool.x.y.tmp"), None);
        assert_eq!(tmp_owner(".nar-1.tmp"), None);
    }
}
