//! Nix's temporary GC roots (Nix 2.8 `gc.cc`), spoken from outside Nix: a file
//! `ROOT/nix/var/nix/temproots/<pid>` held with an exclusive `flock` for the process's life,
//! holding the store paths, each NUL-terminated. Before a path is written, the GC lock
//! (`ROOT/nix/var/nix/gc.lock`) is taken shared for a moment: when it cannot be (a collection
//! is running), the path is sent to the collector over its socket (`gc-socket/socket`, the
//! path and a newline; it answers `1`) so that the running collection keeps it too.
//!
//! A file found non-empty once locked was deleted by a collector meanwhile (it writes `d`
//! into the files of dead processes after unlinking them): it is created again. After a kill,
//! the file stays until the next collection finds it unlocked and deletes it, as Nix's own.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::lock::open_lock_file;
use super::StoreRoot;
use crate::store_path::StorePath;

/// This process's temporary roots file, held while alive.
pub struct TempRoots {
    file: File,
    path: PathBuf,
    state_dir: PathBuf,
    store: StoreRoot,
}

fn flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: a valid descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}

impl TempRoots {
    /// Creates and locks `temproots/<pid>` of the store under `root`.
    pub fn create(root: &StoreRoot) -> io::Result<TempRoots> {
        let state_dir = root.root.join("nix/var/nix");
        let dir = state_dir.join("temproots");
        fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let path = dir.join(std::process::id().to_string());
        loop {
            // A file of our pid is stale: no two live processes share a pid.
            let _ = fs::remove_file(&path);
            let file = open_lock_file(&path)?;
            flock(&file, libc::LOCK_EX)?;
            if file.metadata()?.len() == 0 {
                return Ok(TempRoots {
                    file,
                    path,
                    state_dir,
                    store: root.clone(),
                });
            }
        }
    }

    /// Adds `path` as a temporary root (told to a running collector too).
    pub fn add(&mut self, path: &StorePath) -> io::Result<()> {
        let full = self.store.store_dir.display(path);
        let gc_lock = open_lock_file(&self.state_dir.join("gc.lock"))?;
        loop {
            if flock(&gc_lock, libc::LOCK_SH | libc::LOCK_NB)? {
                break;
            }
            // A collection is running: it must hear of the root before we go on.
            match self.tell_collector(&full) {
                Ok(()) => break,
                // The collector went away meanwhile: try the lock again.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::NotConnected
                            | io::ErrorKind::NotFound
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
        let mut record = full.into_bytes();
        record.push(0);
        self.file.write_all(&record)?;
        // The shared GC lock is released here, as Nix releases it after writing.
        drop(gc_lock);
        Ok(())
    }

    fn tell_collector(&self, full: &str) -> io::Result<()> {
        let mut socket = UnixStream::connect(self.state_dir.join("gc-socket/socket"))?;
        socket.write_all(format!("{full}\n").as_bytes())?;
        let mut ack = [0u8; 1];
        socket.read_exact(&mut ack)?;
        if ack[0] != b'1' {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the collector answered {:?}, not '1'", ack[0] as char),
            ));
        }
        Ok(())
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempRoots {
    fn drop(&mut self) {
        // As Nix does at exit: unlink it; the lock goes with the descriptor.
        let _ = fs::remove_file(&self.path);
    }
}
