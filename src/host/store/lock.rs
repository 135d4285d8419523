//! Nix's per-path locks (`PathLocks`): `<store>/<name>.lock`, created mode 0600 and held with
//! an exclusive `flock`; a lock file found non-empty after locking was deleted by its last
//! holder (who wrote `d` into it after unlinking it), so it is opened again. Holding it keeps a
//! concurrent Nix (or another `nar-tool`) from substituting the same path at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held path lock; released (and, once the path is valid, deleted) when dropped.
pub struct PathLock {
    file: File,
    path: PathBuf,
    delete: bool,
}

impl PathLock {
    /// Locks `real_path` (waiting for another holder), by its `.lock` sibling.
    pub fn lock(real_path: &Path) -> io::Result<PathLock> {
        let mut name = real_path.as_os_str().to_os_string();
        name.push(".lock");
        let path = PathBuf::from(name);
        loop {
            let file = open_lock_file(&path)?;
            loop {
                // SAFETY: a valid descriptor we own.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(with_path(e, &path, "locking"));
                }
            }
            let stale = file
                .metadata()
                .map_err(|e| with_path(e, &path, "statting lock file"))?
                .len()
                != 0;
            if !stale {
                return Ok(PathLock {
                    file,
                    path,
                    delete: false,
                });
            }
        }
    }

    /// Deletes the lock file on release, as Nix does once the path is valid.
    pub fn set_deletion(&mut self) {
        self.delete = true;
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        if self.delete {
            // Unlink first, then mark the file deleted for whoever waits on it.
            let _ = fs::remove_file(&self.path);
            let _ = self.file.write_all(b"d");
        }
    }
}

fn with_path(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Opens (creating it, mode 0600, never truncating) a lock file of the store, as Nix does for
/// its `.lock` files, `temproots/` files and `gc.lock`.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| with_path(e, path, "opening lock file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_second_locker_waits_and_a_deleted_lock_is_reopened() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("aaaa-x");
        let mut first = PathLock::lock(&p).unwrap();
        let lock_file = tmp.path().join("aaaa-x.lock");
        assert!(lock_file.exists());
        let got = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (p, got) = (p.clone(), got.clone());
            std::thread::spawn(move || {
                let l = PathLock::lock(&p).unwrap();
                got.store(true, Ordering::SeqCst);
                l
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!got.load(Ordering::SeqCst), "the lock was taken twice");
        first.set_deletion();
        drop(first);
        let second = waiter.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
        // The waiter's lock is on a fresh (empty) lock file, not the deleted one.
        assert_eq!(fs::metadata(&lock_file).unwrap().len(), 0);
        assert_eq!(second.file.metadata().unwrap().len(), 0);
    }
}
