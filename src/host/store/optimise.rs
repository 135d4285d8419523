//! Nix's store optimisation: identical files kept once, in `<store>/.links/<name>`, and
//! hard-linked from everywhere else. The rules are Nix 2.8's (`optimise-store.cc`):
//! - only regular files and symlinks are linked (Linux can hard-link a symlink), directories
//!   are walked, entries whose inode is already in `.links` skipped;
//! - a regular file with its owner-write bit set is skipped ("suspicious writable file");
//! - the link name is the nix-base32 SHA-256 of the file's NAR serialisation (so contents and
//!   the executable bit, or a symlink's target);
//! - a `.links` entry whose size differs from the file's is corrupt and removed;
//! - a file is replaced by linking the `.links` entry to `<store>/.tmp-link-<pid>-<random>` and
//!   renaming that over the file (its directory made writable meanwhile, then read-only again
//!   with modification time 1);
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
        })
    }

    pub fn stats(&self) -> OptimiseStats {
        OptimiseStats {
            files_linked: self.files_linked.load(Ordering::Relaxed),
            bytes_freed: self.bytes_freed.load(Ordering::Relaxed),
            blocks_freed: self.blocks_freed.load(Ordering::Relaxed),
        }
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
        let name = nar_hash_name(path)?;
        let link = self.links.join(&name);
        if let Some(dry) = &self.dry {
            self.dry_run_file(dry, &link, name, st);
            return Ok(());
        }
        if let Ok(l) = fs::symlink_metadata(&link) {
            if l.size() != st.size() {
                (self.warn)(&format!("removing corrupted link '{}'", link.display()));
                match fs::remove_file(&link) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(&link)(e)),
                    _ => {}
                }
            }
        }
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
                Replaced::LinkVanished => continue,
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
        let temp = self.store.join(format!(
            ".tmp-link-{}-{}",
            std::process::id(),
            super::random_u32()
        ));
        match fs::hard_link(link, &temp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                if st.size() > 0 {
                    eprintln!("'{}' has maximum number of links", link.display());
                }
                return Ok(Replaced::No);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replaced::LinkVanished),
            Err(e) => return Err(at(&temp)(e)),
        }
        let _writable = if toggle {
            Some(Writable::make(parent).map_err(|e| {
                let _ = fs::remove_file(&temp);
                at(parent)(e)
            })?)
        } else {
            None
        };
        match fs::rename(&temp, path) {
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
}

/// A directory made writable for a moment; read-only again (0555) with modification time 1
/// when dropped, as Nix leaves store directories.
struct Writable<'a>(&'a Path);

impl<'a> Writable<'a> {
    fn make(dir: &'a Path) -> io::Result<Writable<'a>> {
        let mode = fs::symlink_metadata(dir)?.mode() & 0o7777;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
        Ok(Writable(dir))
    }
}

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        let _ = fs::set_permissions(self.0, fs::Permissions::from_mode(0o555));
        let _ = set_mtime(self.0, STORE_MTIME);
    }
}

/// The `.links` name of a file: the nix-base32 SHA-256 of its NAR serialisation.
pub fn nar_hash_name(path: &Path) -> Result<String, OptimiseError> {
    let w = HashingWriter::new(HashAlgo::Sha256, io::sink());
    let w = dump_path_serial(path, w, CaseHack(false))?;
    let (hash, _, _) = w.finish();
    Ok(hash.encode(Encoding::Nixbase32))
}
