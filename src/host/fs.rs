//! The file system side of NARs: dump a path as `nix-store --dump` does, and restore an archive
//! into a new directory safely (all or nothing, never following a symlink, never outside DEST).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::nar::listing::Listing;
use crate::nar::wire::CASE_HACK_SUFFIX;
use crate::nar::writer::{NarWriter, WriteError};
use crate::nar::{Event, NarError, NarReader};

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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DumpError + '_ {
    move |source| DumpError::Io { path: path.to_path_buf(), source }
}

fn nar_err(path: &Path) -> impl FnOnce(WriteError) -> DumpError + '_ {
    move |source| match source {
        WriteError::Io(source) => DumpError::Io { path: path.to_path_buf(), source },
        source => DumpError::Nar { path: path.to_path_buf(), source },
    }
}

/// The name an entry has in the archive: with the case hack, `x~nix~case~hack~N` is `x`.
fn archive_name(name: &[u8], case_hack: CaseHack) -> &[u8] {
    if case_hack.0 {
        let suffix = CASE_HACK_SUFFIX.as_bytes();
        if let Some(pos) = name.windows(suffix.len()).position(|w| w == suffix) {
            return &name[..pos];
        }
    }
    name
}

/// A directory's entries as (archive name, file name), sorted by archive name.
fn sorted_entries(dir: &Path, case_hack: CaseHack) -> Result<Vec<(Vec<u8>, PathBuf)>, DumpError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let file_name = entry.file_name();
        entries.push((archive_name(file_name.as_bytes(), case_hack).to_vec(), entry.path()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Err(DumpError::CaseHackCollision { dir: dir.to_path_buf(), a: name(&w[0].1), b: name(&w[1].1) });
    }
    Ok(entries)
}

/// Writes the NAR of `path` to `out` (byte-identical to `nix-store --dump`), in constant memory
/// apart from one directory listing per level. Returns the sink.
pub fn dump_path<W: Write>(path: &Path, out: W, case_hack: CaseHack) -> Result<W, DumpError> {
    let w = NarWriter::new(out).map_err(nar_err(path))?;
    dump_into(path, w, case_hack)?.finish().map_err(nar_err(path))
}

/// Like [`dump_path`], also returning the archive's `.ls` listing (recorded on the same pass).
pub fn dump_path_with_listing<W: Write>(path: &Path, out: W, case_hack: CaseHack) -> Result<(W, Listing), DumpError> {
    let w = NarWriter::new(out).map_err(nar_err(path))?.record_listing();
    let (out, listing) = dump_into(path, w, case_hack)?.finish_with_listing().map_err(nar_err(path))?;
    Ok((out, listing.expect("listing was recorded")))
}

/// Walks `path` into a started writer and returns it with the root node complete.
pub fn dump_into<W: Write>(path: &Path, mut w: NarWriter<W>, case_hack: CaseHack) -> Result<NarWriter<W>, DumpError> {
    // One frame per open directory: its remaining entries, in reverse so `pop` yields the next.
    let mut stack: Vec<Vec<(Vec<u8>, PathBuf)>> = Vec::new();
    let mut next: Option<PathBuf> = Some(path.to_path_buf());
    loop {
        if let Some(p) = next.take() {
            let meta = fs::symlink_metadata(&p).map_err(io_err(&p))?;
            let ft = meta.file_type();
            if ft.is_file() {
                let mut f = File::open(&p).map_err(io_err(&p))?;
                let executable = meta.permissions().mode() & 0o100 != 0;
                w.regular(executable, meta.len(), &mut f).map_err(nar_err(&p))?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&p).map_err(io_err(&p))?;
                w.symlink(target.as_os_str().as_bytes()).map_err(nar_err(&p))?;
            } else if ft.is_dir() {
                w.start_directory().map_err(nar_err(&p))?;
                let mut entries = sorted_entries(&p, case_hack)?;
                entries.reverse();
                stack.push(entries);
            } else {
                return Err(DumpError::Unsupported { path: p, what: "a special file (device, socket or FIFO)" });
            }
        }
        let Some(top) = stack.last_mut() else { break };
        match top.pop() {
            Some((name, child)) => {
                w.entry(&name).map_err(nar_err(&child))?;
                next = Some(child);
            }
            None => {
                stack.pop();
                w.end_directory().map_err(nar_err(path))?;
            }
        }
    }
    Ok(w)
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
pub fn restore_path<R: Read>(nar: R, dest: &Path, case_hack: CaseHack) -> Result<RestoreStats, RestoreError> {
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
        .map_err(|source| RestoreError::Io { path: parent.clone(), source })?;
    let root = staging.path().join("root");
    let result = unpack(nar, &root, case_hack).and_then(|stats| {
        fs::rename(&root, dest).map_err(|source| RestoreError::Io { path: dest.to_path_buf(), source })?;
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
fn remove_tree(top: &Path) -> io::Result<()> {
    let mut stack = vec![(top.to_path_buf(), false)];
    while let Some((path, emptied)) = stack.pop() {
        if emptied {
            fs::remove_dir(&path)?;
        } else if fs::symlink_metadata(&path)?.is_dir() {
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
    let mut reader = NarReader::new(io::BufReader::with_capacity(256 * 1024, nar));
    let mut stats = RestoreStats::default();
    // The directory being filled at each depth, and (with the case hack) the names it holds.
    let mut dirs: Vec<(PathBuf, HashMap<Vec<u8>, u32>)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(event) = reader.next().map_err(RestoreError::Nar)? {
        if let Event::EndDirectory { .. } = event {
            dirs.pop();
            continue;
        }
        let target = match event.name() {
            None => root.to_path_buf(),
            Some(name) => {
                let (dir, seen) = dirs.last_mut().expect("entries are inside a directory");
                dir.join(OsStr::from_bytes(&disk_name(name, seen, case_hack)))
            }
        };
        let io = |source| RestoreError::Io { path: target.clone(), source };
        match event {
            Event::Directory { .. } => {
                fs::create_dir(&target).map_err(io)?;
                stats.directories += 1;
                dirs.push((target, HashMap::new()));
            }
            Event::Symlink { target: link, .. } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).map_err(io)?;
                stats.symlinks += 1;
            }
            Event::Regular { executable, size, .. } => {
                let mode = if executable { 0o755 } else { 0o644 };
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
                    f.write_all(&buf[..n]).map_err(|source| RestoreError::Io { path: target.clone(), source })?;
                }
                if executable {
                    // The umask may have taken bits away; Nix sets them explicitly.
                    let perm = f.metadata().map_err(|source| RestoreError::Io { path: target.clone(), source })?.permissions().mode();
                    f.set_permissions(fs::Permissions::from_mode(perm | 0o111))
                        .map_err(|source| RestoreError::Io { path: target.clone(), source })?;
                }
                stats.files += 1;
                stats.bytes += size;
            }
            Event::EndDirectory { .. } => unreachable!(),
        }
    }
    Ok(stats)
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
