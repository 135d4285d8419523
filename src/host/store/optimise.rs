//! Nix's store optimisation: identical files kept once, in `<store>/.links/<name>`, and
//! hard-linked from everywhere else. The rules are Nix 2.8's (`optimise-store.cc`):
//! - only regular files and symlinks are linked (Linux can hard-link a symlink), directories
//!   are walked, entries whose inode is already in `.links` skipped;
//! - a regular file with its owner-write bit set is skipped ("suspicious writable file");
//! - the link name is the nix-base32 SHA-256 of the file's NAR serialisation (so contents and
//!   the executable bit, or a symlink's target);
//! - a `.links` entry whose size differs from the file's is corrupt and removed;
//! - a file is replaced by linking the `.links` entry to `<store>/.tmp-link-<pid>-<random>` and
//!   renaming that over the file (its directory given modification time 1 again afterwards;
//!   made writable meanwhile only when the rename is refused without it, i.e. not as root,
//!   then read-only again);
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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::restore::{set_mtime, STORE_MTIME};
use crate::hash::{Encoding, HashAlgo, HashingWriter};
use crate::host::fs::{dump_path_serial, CaseHack, DumpError};

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
        Ok(Optimiser {
            store: store.to_path_buf(),
            links,
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
        let mut stack = vec![path.to_path_buf()];
        while let Some(p) = stack.pop() {
            let meta = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(at(&p)(e)),
            };
            if meta.is_dir() {
                let rd = match fs::read_dir(&p) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(at(&p)(e)),
                };
                for e in rd {
                    let e = e.map_err(at(&p))?;
                    if !self.known_inode(std::os::unix::fs::DirEntryExt::ino(&e)) {
                        stack.push(e.path());
                    }
                }
                continue;
            }
            self.optimise_file(&p, &meta)?;
        }
        Ok(())
    }

    fn optimise_file(&self, path: &Path, st: &fs::Metadata) -> Result<(), OptimiseError> {
        let ft = st.file_type();
        if !ft.is_file() && !ft.is_symlink() {
            return Ok(());
        }
        if ft.is_file() && st.mode() & 0o200 != 0 {
            (self.warn)(&format!(
                "skipping suspicious writable file '{}'",
                path.display()
            ));
            return Ok(());
        }
        if st.nlink() > 1 && self.known_inode(st.ino()) {
            return Ok(());
        }
        let name = match file_hash_name(path, st) {
            Ok(Some(name)) => name,
            // Gone or changed while read (collected, or replaced by another process): leave it.
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        let link = self.links.join(&name);
        if let Some(dry) = &self.dry {
            self.dry_run_file(dry, &link, name, st);
            return Ok(());
        }
        // Linked first, looked at only when the name is taken (most files are new to `.links`).
        let mut corrupt_removed = false;
        for _ in 0..RETRIES {
            match fs::hard_link(path, &link) {
                Ok(()) => {
                    self.inodes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(st.ino());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    eprintln!(
                        "cannot link '{}' to '{}': {e}",
                        link.display(),
                        path.display()
                    );
                    return Ok(());
                }
                // The file itself went (its path was collected).
                Err(e) if e.kind() == io::ErrorKind::NotFound && !path.exists() => return Ok(()),
                Err(e) => return Err(at(&link)(e)),
            }
            let l = match fs::symlink_metadata(&link) {
                Ok(l) => l,
                // Collected between our link attempt and now: try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(at(&link)(e)),
            };
            if l.ino() == st.ino() {
                return Ok(());
            }
            if l.size() != st.size() && !corrupt_removed {
                (self.warn)(&format!("removing corrupted link '{}'", link.display()));
                match fs::remove_file(&link) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(&link)(e)),
                    _ => {}
                }
                corrupt_removed = true;
                continue;
            }
            if l.size() != st.size() || l.file_type() != ft {
                // Not the same contents after all (being replaced by another process): leave
                // the file as it is.
                return Ok(());
            }
            match self.replace_with_link(path, &link, st)? {
                Replaced::Yes => {
                    self.files_linked.fetch_add(1, Ordering::Relaxed);
                    self.bytes_freed.fetch_add(st.size(), Ordering::Relaxed);
                    self.blocks_freed.fetch_add(st.blocks(), Ordering::Relaxed);
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
        link: &Path,
        name: String,
        st: &fs::Metadata,
    ) {
        let exists = fs::symlink_metadata(link)
            .map(|l| l.ino() != st.ino() && l.size() == st.size())
            .ok();
        let mut seen = dry.lock().unwrap_or_else(|e| e.into_inner());
        let would_link = match exists {
            Some(would) => would,
            None => seen.insert(name, st.size()).is_some(),
        };
        if would_link {
            self.files_linked.fetch_add(1, Ordering::Relaxed);
            self.bytes_freed.fetch_add(st.size(), Ordering::Relaxed);
            self.blocks_freed.fetch_add(st.blocks(), Ordering::Relaxed);
        }
    }

    /// Links `link` to a temporary name and renames that over `path`.
    fn replace_with_link(
        &self,
        path: &Path,
        link: &Path,
        st: &fs::Metadata,
    ) -> Result<Replaced, OptimiseError> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let toggle = parent != self.store;
        let temp = self
            .store
            .join(format!(".tmp-link-{}-{}", self.pid, self.temp_number()));
        match fs::hard_link(link, &temp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                if st.size() > 0 {
                    eprintln!("'{}' has maximum number of links", link.display());
                }
                return Ok(Replaced::No);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replaced::LinkVanished),
            // The temporary name is taken (left by a process that had our id): another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Replaced::TryAgain),
            Err(e) => return Err(at(&temp)(e)),
        }
        // Renaming into a read-only directory needs no write bit where the permission check
        // does not apply (root): try first, make the directory writable only when refused.
        let mut renamed = fs::rename(&temp, path);
        let mut _writable = None;
        if toggle {
            if let Err(e) = &renamed {
                if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
                    _writable = Some(Writable::make(parent).map_err(|e| {
                        let _ = fs::remove_file(&temp);
                        at(parent)(e)
                    })?);
                    renamed = fs::rename(&temp, path);
                } else {
                    _writable = Some(Writable::touched(parent));
                }
            } else {
                // The rename changed the directory's time: Nix's (1) again when done.
                _writable = Some(Writable::touched(parent));
            }
        }
        match renamed {
            // When `path` already was a link to the same inode (another process replaced it
            // meanwhile), rename(2) does nothing and succeeds: the temporary is still there.
            Ok(()) if fs::symlink_metadata(&temp).is_ok() => {
                let _ = fs::remove_file(&temp);
                Ok(Replaced::No)
            }
            Ok(()) => Ok(Replaced::Yes),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                if e.raw_os_error() == Some(libc::EMLINK) {
                    return Ok(Replaced::No);
                }
                // The file itself went (its path was collected).
                if e.kind() == io::ErrorKind::NotFound && !path.exists() {
                    return Ok(Replaced::No);
                }
                Err(at(path)(e))
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

/// A directory changed (and perhaps made writable) for a moment: when dropped, read-only again
/// (0555) if it was made writable, and with modification time 1, as Nix leaves store
/// directories.
struct Writable<'a> {
    dir: &'a Path,
    made_writable: bool,
}

impl<'a> Writable<'a> {
    fn make(dir: &'a Path) -> io::Result<Writable<'a>> {
        let mode = fs::symlink_metadata(dir)?.mode() & 0o7777;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
        Ok(Writable {
            dir,
            made_writable: true,
        })
    }

    /// A directory whose entries changed without a change of its mode.
    fn touched(dir: &'a Path) -> Writable<'a> {
        Writable {
            dir,
            made_writable: false,
        }
    }
}

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        if self.made_writable {
            let _ = fs::set_permissions(self.dir, fs::Permissions::from_mode(0o555));
        }
        let _ = set_mtime(self.dir, STORE_MTIME);
    }
}

thread_local! {
    /// The buffer each thread reads files through when hashing them.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The `.links` name of a regular file or symlink whose `lstat` is `st`, read once without
/// looking its type up again and through one buffer per thread; `None` when it vanished or its
/// size is no longer `st`'s (it changed under us: it is left alone).
fn file_hash_name(path: &Path, st: &fs::Metadata) -> Result<Option<String>, OptimiseError> {
    use crate::nar::writer::{NarWriter, WriteError};
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !st.file_type().is_file() {
        return match nar_hash_name(path) {
            Err(OptimiseError::Dump(DumpError::Io { source, .. }))
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            other => other.map(Some),
        };
    }
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(at(path)(e)),
    };
    let size = st.size();
    let hashed = READ_BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        let mut w = NarWriter::new(HashingWriter::new(HashAlgo::Sha256, io::sink()))?;
        w.regular_with(st.mode() & 0o100 != 0, size, |out| {
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
    match hashed {
        Ok(h) => Ok(Some(h.finish().0.encode(Encoding::Nixbase32))),
        Err(WriteError::SizeMismatch { .. }) => Ok(None),
        Err(WriteError::Io(source)) => Err(at(path)(source)),
        Err(e) => Err(at(path)(io::Error::other(e.to_string()))),
    }
}

/// The `.links` name of a file: the nix-base32 SHA-256 of its NAR serialisation.
pub fn nar_hash_name(path: &Path) -> Result<String, OptimiseError> {
    let w = HashingWriter::new(HashAlgo::Sha256, io::sink());
    let w = dump_path_serial(path, w, CaseHack(false))?;
    let (hash, _, _) = w.finish();
    Ok(hash.encode(Encoding::Nixbase32))
}

#[cfg(test)]
mod tests {
    use super::*;

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
