//! Nix's store optimisation: identical files kept once, in `<store>/.links/<name>`, and
//! hard-linked from everywhere else. The rules are Nix 2.8's (`optimise-store.cc`):
//! - only regular files and symlinks are linked (Linux can hard-link a symlink), directories
//!   are walked, entries whose inode is already in `.links` skipped;
//! - a regular file with its owner-write bit set is skipped ("suspicious writable file");
//! - the link name is the nix-base32 SHA-256 of the file's NAR serialisation (so contents and
//!   the executable bit, or a symlink's target);
//! - a `.links` entry whose size differs from the file's is corrupt and removed;
//! - a file is replaced by linking the `.links` entry to `<store>/.tmp-link-<pid>-<random>` and
//!   renaming that over the file (its directory given modification time 1 again afterwards,
//!   here once after all its files rather than after each; made writable meanwhile only when
//!   the rename is refused without it, i.e. not as root, then read-only again);
//! - "too many links" (`EMLINK`, on the link or on the rename) leaves the file as it is, and a
//!   `.links` directory that is full (`ENOSPC`) only stops deduplicating that file;
//! - the saving reported is the sizes of the files replaced.
//!
//! Unlike Nix, another process's link appearing or vanishing at any moment is not an error, and
//! no `.tmp-link` is left behind when another process replaced the file first (renaming a link
//! over a link to the same inode does nothing, so Nix leaves its temporary there):
//! an entry that vanishes between two steps (a GC deleting links with one link left) is tried
//! again, a bounded number of times. A file is only ever replaced by a rename of a link to the
//! same contents, so nothing is ever lost.
//!
//! Files are reached through their directory's descriptor (`openat`, `linkat`, `renameat`
//! relative to it, `dir.rs`), `.links` and the store directory through theirs.

mod dir;
mod hash_name;

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::host::fs::DumpError;
use hash_name::file_hash_name;
pub use hash_name::nar_hash_name;

/// How many times a file is tried again when `.links` changes under it.
const RETRIES: usize = 16;

/// What an optimisation did (or, dry, would do).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OptimiseStats {
    pub files_linked: u64,
    pub bytes_freed: u64,
    pub blocks_freed: u64,
}

impl OptimiseStats {
    /// Nix's report: `0.01 MiB freed by hard-linking 5 files`.
    pub fn nix_message(&self) -> String {
        format!(
            "{:.2} MiB freed by hard-linking {} files",
            self.bytes_freed as f64 / (1024.0 * 1024.0),
            self.files_linked
        )
    }
}

/// Why optimising failed.
#[derive(Debug, thiserror::Error)]
pub enum OptimiseError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Dump(#[from] DumpError),
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> OptimiseError + '_ {
    move |source| OptimiseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An optimiser of one store directory; share it between threads.
pub struct Optimiser {
    store: PathBuf,
    links: PathBuf,
    /// The store directory and `.links`, open (files are reached relative to them).
    store_fd: OwnedFd,
    links_fd: OwnedFd,
    /// Inodes of `.links` entries (as when it was opened, plus those linked since).
    inodes: Mutex<HashSet<u64>>,
    /// Dry run: the links that would be made (name → size), nothing is changed.
    dry: Option<Mutex<HashMap<String, u64>>>,
    files_linked: AtomicU64,
    bytes_freed: AtomicU64,
    blocks_freed: AtomicU64,
    /// Warnings (suspicious files, corrupt links), as Nix prints them.
    pub warn: fn(&str),
    /// This process's id, a random number and a count, for temporary names.
    pid: u32,
    temp_base: u32,
    temp_count: AtomicU64,
}

impl Optimiser {
    /// Opens `store` (the real store directory), creating `.links` unless `dry_run`.
    pub fn new(store: &Path, dry_run: bool) -> Result<Optimiser, OptimiseError> {
        let links = store.join(".links");
        if !dry_run {
            fs::create_dir_all(&links).map_err(at(&links))?;
        }
        let mut inodes = HashSet::new();
        match fs::read_dir(&links) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(at(&links))?;
                    inodes.insert(std::os::unix::fs::DirEntryExt::ino(&e));
                }
            }
            Err(e) if dry_run && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&links)(e)),
        }
        let store_fd = open_dir(rustix::fs::CWD, store).map_err(|e| at(store)(e.into()))?;
        let links_fd = match open_dir(&store_fd, ".links") {
            Ok(fd) => fd,
            // Dry, without `.links`: nothing is linked there, the store stands in.
            Err(e) if dry_run && e == Errno::NOENT => {
                open_dir(&store_fd, ".").map_err(|e| at(store)(e.into()))?
            }
            Err(e) => return Err(at(&links)(e.into())),
        };
        Ok(Optimiser {
            store: store.to_path_buf(),
            links,
            store_fd,
            links_fd,
            inodes: Mutex::new(inodes),
            dry: dry_run.then(|| Mutex::new(HashMap::new())),
            files_linked: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            blocks_freed: AtomicU64::new(0),
            warn: |m| eprintln!("warning: {m}"),
            pid: std::process::id(),
            temp_base: super::random_u32(),
            temp_count: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> OptimiseStats {
        OptimiseStats {
            files_linked: self.files_linked.load(Ordering::Relaxed),
            bytes_freed: self.bytes_freed.load(Ordering::Relaxed),
            blocks_freed: self.blocks_freed.load(Ordering::Relaxed),
        }
    }

    /// A number for a temporary name: a random start, counted up (no system call each time).
    fn temp_number(&self) -> u32 {
        let n = self.temp_count.fetch_add(1, Ordering::Relaxed) as u32;
        self.temp_base.wrapping_add(n)
    }

    fn known_inode(&self, ino: u64) -> bool {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ino)
    }

    /// Optimises a whole store path (its real path). A path that vanished meanwhile (collected)
    /// is no error.
    pub fn optimise_path(&self, path: &Path) -> Result<(), OptimiseError> {
        let (Some(parent), Some(base)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let parent_fd = match open_dir(rustix::fs::CWD, parent) {
            Ok(fd) => fd,
            Err(e) if e == Errno::NOENT => return Ok(()),
            Err(e) => return Err(at(parent)(e.into())),
        };
        let base = CString::new(base.as_bytes())
            .map_err(|_| at(path)(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let st = match rustix::fs::statat(&parent_fd, &base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if e == Errno::NOENT => return Ok(()),
            Err(e) => return Err(at(path)(e.into())),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return dir::walk(self, &parent_fd, &base, path);
        }
        let mut top = dir::Changed::new(parent_fd.as_fd(), parent == self.store);
        self.optimise_file(&mut top, &base, &Entry::of(&st), path)
    }

    fn optimise_file(
        &self,
        dir: &mut dir::Changed<'_>,
        name: &CStr,
        st: &Entry,
        shown: &Path,
    ) -> Result<(), OptimiseError> {
        if !st.is_file && !st.is_symlink {
            return Ok(());
        }
        if st.is_file && st.mode & 0o200 != 0 {
            (self.warn)(&format!(
                "skipping suspicious writable file '{}'",
                shown.display()
            ));
            return Ok(());
        }
        if st.nlink > 1 && self.known_inode(st.ino) {
            return Ok(());
        }
        let name_hash = match file_hash_name(dir.fd, name, st, shown)? {
            Some(n) => n,
            // Gone or changed while read (collected, or replaced by another process): leave it.
            None => return Ok(()),
        };
        let link = CString::new(name_hash.as_bytes()).expect("nix-base32 has no NUL");
        let shown_link = || self.links.join(&name_hash);
        if let Some(dry) = &self.dry {
            self.dry_run_file(dry, &link, name_hash.clone(), st);
            return Ok(());
        }
        // Linked first, looked at only when the name is taken (most files are new to `.links`).
        let mut corrupt_removed = false;
        for _ in 0..RETRIES {
            match rustix::fs::linkat(dir.fd, name, &self.links_fd, &link, AtFlags::empty()) {
                Ok(()) => {
                    self.inodes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(st.ino);
                    return Ok(());
                }
                Err(e) if e == Errno::EXIST => {}
                Err(e) if e == Errno::NOSPC => {
                    eprintln!(
                        "cannot link '{}' to '{}': {}",
                        shown_link().display(),
                        shown.display(),
                        io::Error::from(e)
                    );
                    return Ok(());
                }
                // The file itself went (its path was collected).
                Err(e) if e == Errno::NOENT && !exists_at(dir.fd, name) => return Ok(()),
                Err(e) => return Err(at(&shown_link())(e.into())),
            }
            let l = match rustix::fs::statat(&self.links_fd, &link, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(l) => Entry::of(&l),
                // Collected between our link attempt and now: try again.
                Err(e) if e == Errno::NOENT => continue,
                Err(e) => return Err(at(&shown_link())(e.into())),
            };
            if l.ino == st.ino {
                return Ok(());
            }
            if l.size != st.size && !corrupt_removed {
                (self.warn)(&format!(
                    "removing corrupted link '{}'",
                    shown_link().display()
                ));
                match rustix::fs::unlinkat(&self.links_fd, &link, AtFlags::empty()) {
                    Err(e) if e != Errno::NOENT => return Err(at(&shown_link())(e.into())),
                    _ => {}
                }
                corrupt_removed = true;
                continue;
            }
            if l.size != st.size || l.is_symlink != st.is_symlink {
                // Not the same contents after all (being replaced by another process): leave
                // the file as it is.
                return Ok(());
            }
            match self.replace_with_link(dir, name, &link, st, shown)? {
                Replaced::Yes => {
                    self.files_linked.fetch_add(1, Ordering::Relaxed);
                    self.bytes_freed.fetch_add(st.size, Ordering::Relaxed);
                    self.blocks_freed.fetch_add(st.blocks, Ordering::Relaxed);
                    return Ok(());
                }
                Replaced::No => return Ok(()),
                Replaced::LinkVanished | Replaced::TryAgain => continue,
            }
        }
        Ok(())
    }

    fn dry_run_file(
        &self,
        dry: &Mutex<HashMap<String, u64>>,
        link: &CStr,
        name: String,
        st: &Entry,
    ) {
        let exists = rustix::fs::statat(&self.links_fd, link, AtFlags::SYMLINK_NOFOLLOW)
            .map(|l| {
                let l = Entry::of(&l);
                l.ino != st.ino && l.size == st.size
            })
            .ok();
        let mut seen = dry.lock().unwrap_or_else(|e| e.into_inner());
        let would_link = match exists {
            Some(would) => would,
            None => seen.insert(name, st.size).is_some(),
        };
        if would_link {
            self.files_linked.fetch_add(1, Ordering::Relaxed);
            self.bytes_freed.fetch_add(st.size, Ordering::Relaxed);
            self.blocks_freed.fetch_add(st.blocks, Ordering::Relaxed);
        }
    }

    /// Links `link` to a temporary name and renames that over `name` in `dir`.
    fn replace_with_link(
        &self,
        dir: &mut dir::Changed<'_>,
        name: &CStr,
        link: &CStr,
        st: &Entry,
        shown: &Path,
    ) -> Result<Replaced, OptimiseError> {
        let temp_name = format!(".tmp-link-{}-{}", self.pid, self.temp_number());
        let temp = CString::new(temp_name.as_bytes()).expect("no NUL");
        let shown_temp = || self.store.join(&temp_name);
        match rustix::fs::linkat(
            &self.links_fd,
            link,
            &self.store_fd,
            &temp,
            AtFlags::empty(),
        ) {
            Ok(()) => {}
            Err(e) if e == Errno::MLINK => {
                if st.size > 0 {
                    eprintln!(
                        "'{}' has maximum number of links",
                        self.links
                            .join(std::ffi::OsStr::from_bytes(link.to_bytes()))
                            .display()
                    );
                }
                return Ok(Replaced::No);
            }
            Err(e) if e == Errno::NOENT => return Ok(Replaced::LinkVanished),
            // The temporary name is taken (left by a process that had our id): another name.
            Err(e) if e == Errno::EXIST => return Ok(Replaced::TryAgain),
            Err(e) => return Err(at(&shown_temp())(e.into())),
        }
        let remove_temp = || {
            let _ = rustix::fs::unlinkat(&self.store_fd, &temp, AtFlags::empty());
        };
        // Renaming into a read-only directory needs no write bit where the permission check
        // does not apply (root): try first, make the directory writable only when refused.
        let mut renamed = rustix::fs::renameat(&self.store_fd, &temp, dir.fd, name);
        if let Err(e) = renamed {
            if matches!(e, Errno::ACCESS | Errno::PERM) && !dir.is_store {
                if let Err(e) = dir.make_writable() {
                    remove_temp();
                    return Err(at(shown.parent().unwrap_or(shown))(e));
                }
                renamed = rustix::fs::renameat(&self.store_fd, &temp, dir.fd, name);
            }
        }
        // The directory's entries changed: its time is set again once it is done.
        dir.touched();
        match renamed {
            // When `name` already was a link to the same inode (another process replaced it
            // meanwhile), rename(2) does nothing and succeeds: the temporary is still there.
            Ok(()) if exists_at(self.store_fd.as_fd(), &temp) => {
                remove_temp();
                Ok(Replaced::No)
            }
            Ok(()) => Ok(Replaced::Yes),
            Err(e) => {
                remove_temp();
                if e == Errno::MLINK {
                    return Ok(Replaced::No);
                }
                // The file itself went (its path was collected).
                if e == Errno::NOENT && !exists_at(dir.fd, name) {
                    return Ok(Replaced::No);
                }
                Err(at(shown)(e.into()))
            }
        }
    }
}

enum Replaced {
    Yes,
    No,
    LinkVanished,
    TryAgain,
}

/// What the optimiser needs of an entry's `lstat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    ino: u64,
    nlink: u64,
    size: u64,
    blocks: u64,
    mode: u32,
    is_file: bool,
    is_symlink: bool,
}

impl Entry {
    fn of(st: &rustix::fs::Stat) -> Entry {
        let kind = FileType::from_raw_mode(st.st_mode);
        Entry {
            ino: st.st_ino,
            nlink: st.st_nlink,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            mode: st.st_mode & 0o7777,
            is_file: kind == FileType::RegularFile,
            is_symlink: kind == FileType::Symlink,
        }
    }
}

/// Whether `name` is in `dir` (not followed).
fn exists_at(dir: BorrowedFd<'_>, name: &CStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Opens a directory, not through a symlink.
fn open_dir<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::host::fs::{set_mtime, STORE_MTIME};

    /// A read-only file (as in a store path) with `contents`.
    fn store_file(path: &Path, contents: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
    }

    #[test]
    fn a_corrupted_link_is_replaced_and_duplicates_share_one_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("nix/store");
        let a = store.join("00000000000000000000000000000000-a");
        let b = store.join("11111111111111111111111111111111-b");
        store_file(&a.join("sub/f"), b"the same contents");
        store_file(&b.join("sub/f"), b"the same contents");
        for dir in [a.join("sub"), a.clone(), b.join("sub"), b.clone()] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
            set_mtime(&dir, STORE_MTIME).unwrap();
        }
        let name = nar_hash_name(&a.join("sub/f")).unwrap();
        // A `.links` entry of that name but another size: corrupt.
        store_file(&store.join(".links").join(&name), b"short");
        let mut optimiser = Optimiser::new(&store, false).unwrap();
        optimiser.warn = |_| {};
        optimiser.optimise_path(&a).unwrap();
        optimiser.optimise_path(&b).unwrap();
        let link = fs::symlink_metadata(store.join(".links").join(&name)).unwrap();
        for p in [&a, &b] {
            let f = fs::symlink_metadata(p.join("sub/f")).unwrap();
            assert_eq!(f.ino(), link.ino(), "{} is not the link", p.display());
            // The directory of the file replaced (b's) is as Nix leaves it again.
            let dir = fs::symlink_metadata(p.join("sub")).unwrap();
            assert_eq!((dir.mode() & 0o7777, dir.mtime()), (0o555, STORE_MTIME));
        }
        assert_eq!(
            fs::read(store.join(".links").join(&name)).unwrap(),
            b"the same contents"
        );
        let stats = optimiser.stats();
        assert_eq!((stats.files_linked, stats.bytes_freed), (1, 17));
        let temps: Vec<_> = fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp-link"))
            .collect();
        assert!(temps.is_empty(), "left behind: {temps:?}");
    }
}
