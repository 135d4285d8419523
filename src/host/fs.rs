//! The file system side of NARs: dump a path as `nix-store --dump` does, and restore an archive
//! into a new directory safely (all or nothing, never following a symlink, never outside DEST).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::walk;
use crate::nar::listing::Listing;
use crate::nar::wire::CASE_HACK_SUFFIX;
use crate::nar::writer::{NarWriter, WriteError};
use crate::nar::{Event, Limits, NarError, NarReader};

/// Why a dump failed, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {what} cannot be put in a NAR (only regular files, directories and symlinks can)", path.display())]
    Unsupported { path: PathBuf, what: &'static str },
    #[error("{}: names {a:?} and {b:?} are the same once the case-hack suffix is removed", dir.display())]
    CaseHackCollision { dir: PathBuf, a: String, b: String },
    #[error("{}: {source}", path.display())]
    Nar { path: PathBuf, source: WriteError },
}

/// Options shared by dump and restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaseHack(pub bool);

pub(crate) fn nar_err(path: &Path) -> impl FnOnce(WriteError) -> DumpError + '_ {
    move |source| match source {
        WriteError::Io(source) => DumpError::Io {
            path: path.to_path_buf(),
            source,
        },
        source => DumpError::Nar {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Writes the NAR of `path` to `out` (byte-identical to `nix-store --dump`), in constant memory
/// apart from one directory listing per level. Returns the sink (flushed).
///
/// A helper thread walks the tree and reads the files straight into chunks of the archive
/// (1 MiB each, at most 8 MiB in flight) while the calling thread writes the chunks to `out`, so
/// reading the tree overlaps hashing or writing the output. When writing to `out` costs less CPU
/// than a copy (a pipe, a file), large files are read by the calling thread itself, from its own
/// cache. `out` stays on the calling thread and need not be `Send`. A write error on `out` is
/// reported with `path`; every other error names the file it concerns. Without a thread to
/// spare, use [`dump_path_serial`].
pub fn dump_path<W: Write>(path: &Path, out: W, case_hack: CaseHack) -> Result<W, DumpError> {
    walk::pipelined(path, out, case_hack, false).map(|(out, _)| out)
}

/// [`dump_path`] on the calling thread alone: the tree is read and `out` written in turn. For
/// callers that already keep every core busy (dumping many paths at once).
pub fn dump_path_serial<W: Write>(
    path: &Path,
    out: W,
    case_hack: CaseHack,
) -> Result<W, DumpError> {
    let w = NarWriter::new(out).map_err(nar_err(path))?;
    dump_into(path, w, case_hack)?
        .finish()
        .map_err(nar_err(path))
}

/// Like [`dump_path`] (with its reading thread), also returning the archive's `.ls` listing,
/// recorded on the same pass.
pub fn dump_path_with_listing<W: Write>(
    path: &Path,
    out: W,
    case_hack: CaseHack,
) -> Result<(W, Listing), DumpError> {
    let (out, listing) = walk::pipelined(path, out, case_hack, true)?;
    Ok((out, listing.expect("the listing was recorded")))
}

/// Walks `path` into a started writer (on the calling thread) and returns it, root node complete.
pub fn dump_into<W: Write>(
    path: &Path,
    w: NarWriter<W>,
    case_hack: CaseHack,
) -> Result<NarWriter<W>, DumpError> {
    walk::walk(path, w, case_hack, |w, executable, size, file, _| {
        w.regular(executable, size, file)
    })
}

/// The size of `path`'s NAR, from the tree's metadata alone (file contents are not read): to
/// plan how a NAR is compressed before it is written.
pub fn nar_size(path: &Path, case_hack: CaseHack) -> Result<u64, DumpError> {
    let w = NarWriter::new(io::sink()).map_err(nar_err(path))?;
    let w = walk::walk(path, w, case_hack, |w, executable, size, _, _| {
        w.regular_with(executable, size, |_| Ok(size))
    })?;
    Ok(w.written())
}

/// Why a restore failed. Nothing is left at DEST when it does.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Nar(NarError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} already exists; restore only creates a new path", .0.display())]
    Exists(PathBuf),
}

/// What a restore created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Unpacks an archive at `dest`, which must not exist. Everything goes into a temporary sibling
/// first, renamed to `dest` only once the whole archive has been read and checked; on any error
/// the temporary is removed. Entry names are checked by the reader (no `/`, `.`, `..`, NUL), files
/// are created with `O_EXCL|O_NOFOLLOW`, so nothing is written outside `dest` or through a link.
pub fn restore_path<R: Read>(
    nar: R,
    dest: &Path,
    case_hack: CaseHack,
) -> Result<RestoreStats, RestoreError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(RestoreError::Exists(dest.to_path_buf()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = dest.file_name().ok_or_else(|| RestoreError::Io {
        path: dest.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name"),
    })?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.restoring-", base.to_string_lossy()))
        .tempdir_in(&parent)
        .map_err(|source| RestoreError::Io {
            path: parent.clone(),
            source,
        })?;
    let root = staging.path().join("root");
    let result = unpack(nar, &root, case_hack).and_then(|stats| {
        rename_no_replace(&root, dest).map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => RestoreError::Exists(dest.to_path_buf()),
            _ => RestoreError::Io {
                path: dest.to_path_buf(),
                source,
            },
        })?;
        Ok(stats)
    });
    if result.is_err() {
        // TempDir's own cleanup keeps a descriptor open per level, so under a low RLIMIT_NOFILE
        // it fails on a deep partial tree and leaves it behind: remove it one level at a time.
        let _ = remove_tree(staging.path());
    }
    result
}

/// Removes a tree without following symlinks and with one open directory at a time (every path
/// in it was created by full path, so each is short enough to use again).
/// Read-only directories (a canonicalised store path) are made writable first.
pub(crate) fn remove_tree(top: &Path) -> io::Result<()> {
    let mut stack = vec![(top.to_path_buf(), false)];
    while let Some((path, emptied)) = stack.pop() {
        if emptied {
            fs::remove_dir(&path)?;
        } else if fs::symlink_metadata(&path)?.is_dir() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
            stack.push((path.clone(), true));
            for entry in fs::read_dir(&path)? {
                stack.push((entry?.path(), false));
            }
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn unpack<R: Read>(nar: R, root: &Path, case_hack: CaseHack) -> Result<RestoreStats, RestoreError> {
    unpack_with(nar, root, case_hack, Limits::default(), Meta::Restored)
}

/// The metadata an unpacked tree gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meta {
    /// As `nix-store --restore` leaves it: files 0644 (0755 executable), directories 0755 (less
    /// the umask), the times of their creation.
    Restored,
    /// As Nix leaves a store path (canonical): files 0444 (0555 executable), directories 0555,
    /// every modification time [`STORE_MTIME`], symlinks' too. Set as each entry is made (a
    /// file's mode at its creation, its time on its open descriptor; a directory's once its
    /// entries are all there), not by a second walk over the tree.
    Store,
}

/// The modification time Nix gives everything in the store.
pub const STORE_MTIME: i64 = 1;

/// Unpacks an archive at `root` (which must not exist), the reader held to `limits`, with the
/// metadata `meta` says; on error what was created is left for the caller to remove.
pub(crate) fn unpack_with<R: Read>(
    nar: R,
    root: &Path,
    case_hack: CaseHack,
    limits: Limits,
    meta: Meta,
) -> Result<RestoreStats, RestoreError> {
    let store = meta == Meta::Store;
    let mut reader = NarReader::with_limits(io::BufReader::with_capacity(256 * 1024, nar), limits);
    let mut stats = RestoreStats::default();
    // The directory being filled at each depth, and (with the case hack) the names it holds.
    let mut dirs: Vec<(PathBuf, HashMap<Vec<u8>, u32>)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(event) = reader.next().map_err(RestoreError::Nar)? {
        if let Event::EndDirectory { .. } = event {
            if let Some((dir, _)) = dirs.pop() {
                if store {
                    // Its entries are all made: nothing changes its time any more.
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555))
                        .and_then(|()| set_mtime(&dir, STORE_MTIME))
                        .map_err(|source| RestoreError::Io { path: dir, source })?;
                }
            }
            continue;
        }
        let target = match event.name() {
            None => root.to_path_buf(),
            Some(name) => {
                let (dir, seen) = dirs.last_mut().expect("entries are inside a directory");
                dir.join(OsStr::from_bytes(&disk_name(name, seen, case_hack)))
            }
        };
        let io = |source| RestoreError::Io {
            path: target.clone(),
            source,
        };
        match event {
            Event::Directory { .. } => {
                fs::create_dir(&target).map_err(io)?;
                stats.directories += 1;
                dirs.push((target, HashMap::new()));
            }
            Event::Symlink { target: link, .. } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).map_err(io)?;
                if store {
                    set_mtime(&target, STORE_MTIME).map_err(io)?;
                }
                stats.symlinks += 1;
            }
            Event::Regular {
                executable, size, ..
            } => {
                let mode = match (store, executable) {
                    (false, false) => 0o644,
                    (false, true) => 0o755,
                    // Read-only from its creation: the descriptor open for writing still writes.
                    (true, false) => 0o444,
                    (true, true) => 0o555,
                };
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io)?;
                loop {
                    let n = reader.read_contents(&mut buf).map_err(RestoreError::Nar)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).map_err(|source| RestoreError::Io {
                        path: target.clone(),
                        source,
                    })?;
                }
                if store {
                    // The umask may have taken bits away: set the mode explicitly then (a umask
                    // that keeps r-x for all, the usual 022, leaves nothing to do).
                    if umask().is_none_or(|m| m & mode != 0) {
                        f.set_permissions(fs::Permissions::from_mode(mode))
                            .map_err(|source| RestoreError::Io {
                                path: target.clone(),
                                source,
                            })?;
                    }
                    // After the last write, on the open descriptor: no lookup of the path again.
                    set_mtime_fd(&f, STORE_MTIME).map_err(|source| RestoreError::Io {
                        path: target.clone(),
                        source,
                    })?;
                } else if executable {
                    // The umask may have taken bits away; Nix sets them explicitly.
                    let perm = f
                        .metadata()
                        .map_err(|source| RestoreError::Io {
                            path: target.clone(),
                            source,
                        })?
                        .permissions()
                        .mode();
                    f.set_permissions(fs::Permissions::from_mode(perm | 0o111))
                        .map_err(|source| RestoreError::Io {
                            path: target.clone(),
                            source,
                        })?;
                }
                stats.files += 1;
                stats.bytes += size;
            }
            Event::EndDirectory { .. } => unreachable!(),
        }
    }
    Ok(stats)
}

/// The process's umask, as Linux reports it in `/proc/self/status` (read once; `None` where it
/// cannot be read). Asking `umask(2)` would change it for a moment under other threads.
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Sets the modification time of `path` (of a symlink itself, not its target), keeping the
/// access time.
pub(crate) fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let times = mtime_only(secs);
    // SAFETY: a valid NUL-terminated path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the modification time of an open file, keeping the access time.
fn set_mtime_fd(f: &fs::File, secs: i64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let times = mtime_only(secs);
    // SAFETY: a descriptor we hold open and two timespecs.
    if unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mtime_only(secs: i64) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        },
    ]
}

/// The name to create on disk: with the case hack, the `N`th name that collides
/// case-insensitively with an earlier sibling gets `~nix~case~hack~N`, as Nix does.
fn disk_name(name: &[u8], seen: &mut HashMap<Vec<u8>, u32>, case_hack: CaseHack) -> Vec<u8> {
    if !case_hack.0 {
        return name.to_vec();
    }
    let folded = name.to_ascii_lowercase();
    match seen.get_mut(&folded) {
        Some(count) => {
            *count += 1;
            let mut hacked = name.to_vec();
            hacked.extend_from_slice(format!("{CASE_HACK_SUFFIX}{count}").as_bytes());
            hacked
        }
        None => {
            seen.insert(folded, 0);
            name.to_vec()
        }
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing anything that
/// appeared at `to` meanwhile (Linux `renameat2(RENAME_NOREPLACE)`; elsewhere a checked rename).
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
        };
        let (f, t) = (c(from)?, c(to)?);
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(e);
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "destination appeared during the restore",
        ));
    }
    fs::rename(from, to)
}

#[cfg(test)]
mod rename_tests {
    use super::*;

    #[test]
    fn never_replaces_what_appeared_at_the_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("staged"), tmp.path().join("dest"));
        fs::create_dir(&from).unwrap();
        fs::create_dir(&to).unwrap(); // an empty dir a plain rename(2) would silently replace
        assert_eq!(
            rename_no_replace(&from, &to).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(from.exists());
        fs::remove_dir(&to).unwrap();
        rename_no_replace(&from, &to).unwrap();
        assert!(to.exists() && !from.exists());
    }
}
