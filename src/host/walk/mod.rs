//! The engine of [`dump_path`](super::fs::dump_path) and its variants: a tree walk that reaches
//! each entry through its directory's open descriptor (one path component per system call, not
//! the whole path again), and the two-thread pipeline that overlaps reading the tree with writing
//! or hashing the archive, in bounded memory.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::fs::{nar_err, CaseHack, DumpError};
use crate::nar::wire::CASE_HACK_SUFFIX;
use crate::nar::writer::{NarWriter, WriteError};

mod pipeline;
mod syscalls;

pub(crate) use pipeline::pipelined;
use syscalls::{lstat_kind, open_at, readlink_at};

/// Bytes in one chunk of archive handed from the reading thread to the writing one.
const CHUNK_SIZE: usize = 1 << 20;
/// Full chunks that may wait between the two threads. With the chunk being filled and the one
/// being written, at most `QUEUE_DEPTH + 2` chunks (8 MiB) ever exist, whatever the tree.
const QUEUE_DEPTH: usize = 6;
/// Directories nested deeper than this are reached by their whole path instead of through an
/// open descriptor, so that a deep tree cannot run the process out of descriptors.
const MAX_OPEN_DIRS: usize = 64;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DumpError + '_ {
    move |source| DumpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a directory entry is, as the listing or `lstat` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Special,
    Unknown,
}

impl Kind {
    fn of(ft: fs::FileType) -> Kind {
        if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Special
        }
    }
}

/// A directory entry still to be archived.
struct Entry {
    /// Its name on disk; the name in the archive is the first `archive_len` bytes.
    name: CString,
    archive_len: usize,
    kind: Kind,
}

impl Entry {
    fn archive_name(&self) -> &[u8] {
        &self.name.as_bytes()[..self.archive_len]
    }
}

/// An open directory of the walk.
struct Frame {
    /// Open while fewer than `MAX_OPEN_DIRS` directories are; else entries are reached by path.
    fd: Option<OwnedFd>,
    path: PathBuf,
    /// The entries not archived yet, the next one last.
    entries: Vec<Entry>,
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

/// A directory's entries, sorted by archive name, the first last.
fn list(dir: &Path, case_hack: CaseHack) -> Result<Vec<Entry>, DumpError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        // The type comes with the listing on most file systems (else from an lstat); it is only
        // a hint: each entry is checked again as it is opened.
        let kind = entry.file_type().map_or(Kind::Unknown, Kind::of);
        let name = entry.file_name().into_vec();
        let archive_len = archive_name(&name, case_hack).len();
        let name = CString::new(name).map_err(|e| io_err(dir)(e.into()))?;
        entries.push(Entry {
            name,
            archive_len,
            kind,
        });
    }
    entries.sort_by(|a, b| a.archive_name().cmp(b.archive_name()));
    if let Some(w) = entries
        .windows(2)
        .find(|w| w[0].archive_name() == w[1].archive_name())
    {
        let name = |e: &Entry| String::from_utf8_lossy(e.name.as_bytes()).into_owned();
        return Err(DumpError::CaseHackCollision {
            dir: dir.to_path_buf(),
            a: name(&w[0]),
            b: name(&w[1]),
        });
    }
    entries.reverse();
    Ok(entries)
}

/// What archives a regular file: given the writer, whether the file is executable, its size, the
/// open file and (for messages) its path.
pub(crate) trait ArchiveRegular<W: Write>:
    FnMut(&mut NarWriter<W>, bool, u64, &mut File, &dyn Fn() -> PathBuf) -> Result<(), WriteError>
{
}

impl<W: Write, F> ArchiveRegular<W> for F where
    F: FnMut(
        &mut NarWriter<W>,
        bool,
        u64,
        &mut File,
        &dyn Fn() -> PathBuf,
    ) -> Result<(), WriteError>
{
}

/// Walks `root` into `w` (whose root node is due), archiving each regular file with `regular`
/// (given the writer, whether the file is executable, its size and the open file).
pub(crate) fn walk<W: Write, F>(
    root: &Path,
    mut w: NarWriter<W>,
    case_hack: CaseHack,
    mut regular: F,
) -> Result<NarWriter<W>, DumpError>
where
    F: ArchiveRegular<W>,
{
    let mut stack: Vec<Frame> = Vec::new();
    let root_name =
        CString::new(root.as_os_str().as_bytes()).map_err(|e| io_err(root)(e.into()))?;
    let node = Node {
        dir: None,
        parent: None,
        name: &root_name,
        hint: Kind::Unknown,
    };
    if let Some(frame) = node.archive(&mut w, 0, case_hack, &mut regular)? {
        stack.push(frame);
    }
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            break;
        };
        match top.entries.pop() {
            Some(entry) => {
                let node = Node {
                    dir: top.fd.as_ref().map(|fd| fd.as_raw_fd()),
                    parent: Some(&top.path),
                    name: &entry.name,
                    hint: entry.kind,
                };
                w.entry(entry.archive_name())
                    .map_err(|e| nar_err(&node.path())(e))?;
                if let Some(frame) = node.archive(&mut w, depth, case_hack, &mut regular)? {
                    stack.push(frame);
                }
            }
            None => {
                let done = stack.pop().expect("the stack has a top");
                w.end_directory().map_err(nar_err(&done.path))?;
            }
        }
    }
    Ok(w)
}

/// A node to archive: an entry of an open directory, or a path (the root, and the entries of
/// directories too deep to hold open).
struct Node<'a> {
    dir: Option<RawFd>,
    parent: Option<&'a Path>,
    /// The entry's name in `parent`, or the whole path when there is no parent.
    name: &'a CStr,
    hint: Kind,
}

impl Node<'_> {
    /// The node's path, for messages (and for reaching it when its directory is not open).
    fn path(&self) -> PathBuf {
        let name = Path::new(OsStr::from_bytes(self.name.to_bytes()));
        match self.parent {
            Some(parent) => parent.join(name),
            None => name.to_path_buf(),
        }
    }

    /// Archives the node; a directory is started and returned, for its entries to follow.
    fn archive<W: Write, F>(
        &self,
        w: &mut NarWriter<W>,
        depth: usize,
        case_hack: CaseHack,
        regular: &mut F,
    ) -> Result<Option<Frame>, DumpError>
    where
        F: ArchiveRegular<W>,
    {
        // Where the *at calls look: the open directory and the name, or the whole path.
        let by_path;
        let (dir, name) = match (self.dir, self.parent) {
            (Some(fd), _) => (fd, self.name),
            (None, None) => (libc::AT_FDCWD, self.name),
            (None, Some(_)) => {
                let path = self.path();
                by_path = CString::new(path.into_os_string().into_vec()).expect("no NUL in a path");
                (libc::AT_FDCWD, by_path.as_c_str())
            }
        };
        let mut kind = self.hint;
        // The listing's type may be stale (the tree changed since): when the call for that type
        // says the entry is something else, ask lstat and try once more.
        let mut checked = kind == Kind::Unknown;
        loop {
            if kind == Kind::Unknown {
                kind = lstat_kind(dir, name).map_err(|e| io_err(&self.path())(e))?;
            }
            let wrong_kind = |e: &io::Error, errnos: &[i32]| {
                !checked && e.raw_os_error().is_some_and(|n| errnos.contains(&n))
            };
            match kind {
                Kind::File => {
                    let flags =
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
                    let fd = match open_at(dir, name, flags) {
                        Ok(fd) => fd,
                        Err(e) if wrong_kind(&e, &[libc::ELOOP]) => {
                            (kind, checked) = (Kind::Unknown, true);
                            continue;
                        }
                        Err(e) => return Err(io_err(&self.path())(e)),
                    };
                    let mut file = File::from(fd);
                    let meta = file.metadata().map_err(|e| io_err(&self.path())(e))?;
                    let ft = meta.file_type();
                    if ft.is_file() {
                        let executable = meta.permissions().mode() & 0o100 != 0;
                        regular(w, executable, meta.len(), &mut file, &|| self.path())
                            .map_err(|e| nar_err(&self.path())(e))?;
                        return Ok(None);
                    } else if ft.is_dir() {
                        return self.directory(w, file.into(), depth, case_hack).map(Some);
                    }
                    return Err(self.unsupported());
                }
                Kind::Dir => {
                    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                    match open_at(dir, name, flags) {
                        Ok(fd) => return self.directory(w, fd, depth, case_hack).map(Some),
                        Err(e) if wrong_kind(&e, &[libc::ENOTDIR, libc::ELOOP]) => {
                            (kind, checked) = (Kind::Unknown, true);
                        }
                        Err(e) => return Err(io_err(&self.path())(e)),
                    }
                }
                Kind::Symlink => match readlink_at(dir, name) {
                    Ok(target) => {
                        w.symlink(&target).map_err(|e| nar_err(&self.path())(e))?;
                        return Ok(None);
                    }
                    Err(e) if wrong_kind(&e, &[libc::EINVAL]) => {
                        (kind, checked) = (Kind::Unknown, true);
                    }
                    Err(e) => return Err(io_err(&self.path())(e)),
                },
                Kind::Special => return Err(self.unsupported()),
                Kind::Unknown => unreachable!("the kind was just found"),
            }
        }
    }

    fn unsupported(&self) -> DumpError {
        DumpError::Unsupported {
            path: self.path(),
            what: "a special file (device, socket or FIFO)",
        }
    }

    /// Starts a directory (open as `fd`) and lists it.
    fn directory<W: Write>(
        &self,
        w: &mut NarWriter<W>,
        fd: OwnedFd,
        depth: usize,
        case_hack: CaseHack,
    ) -> Result<Frame, DumpError> {
        let path = self.path();
        w.start_directory().map_err(nar_err(&path))?;
        let entries = list(&path, case_hack)?;
        Ok(Frame {
            fd: (depth < MAX_OPEN_DIRS).then_some(fd),
            path,
            entries,
        })
    }
}
