//! A store path restored from a NAR the way Nix leaves one: unpacked under a staging name in
//! the store directory itself (`.<name>.fetching-<pid>-<random>`, so that the final rename stays
//! in one directory and needs no write access to a read-only directory), its metadata made
//! canonical (files 0444, or 0555 when executable; directories 0555; every modification time 1,
//! symlinks' too), then renamed to its name without replacing anything. Until the rename
//! nothing is visible under the path's name; dropped before it, the staged tree is removed.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::host::fs::{remove_tree, rename_no_replace, unpack_with, CaseHack, RestoreError};
use crate::nar::Limits;

/// The modification time Nix gives everything in the store.
pub const STORE_MTIME: i64 = 1;

/// A restored tree under its staging name.
pub struct Staged {
    path: PathBuf,
    live: bool,
}

impl Staged {
    /// Unpacks `nar` under a new staging name beside `dest` (in the store directory). Entry
    /// names are checked by the reader (no `/`, `.`, `..`, NUL; strictly sorted), everything is
    /// created with `O_EXCL`/`O_NOFOLLOW` beneath the staging root, files are no larger than
    /// `limits` allow.
    pub fn restore(
        nar: &mut dyn Read,
        dest: &Path,
        limits: Limits,
    ) -> Result<Staged, RestoreError> {
        let io_err = |source| RestoreError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let (parent, base) = match (dest.parent(), dest.file_name()) {
            (Some(p), Some(b)) => (p, b.to_string_lossy().into_owned()),
            _ => {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a path in a store directory",
                )))
            }
        };
        let path = parent.join(format!(
            ".{base}.fetching-{}-{}",
            std::process::id(),
            super::random_u32()
        ));
        let mut staged = Staged { path, live: true };
        unpack_with(nar, &staged.path, CaseHack(false), limits).inspect_err(|_| {
            // Nothing was created if the name was taken: do not remove another's tree.
            if fs::symlink_metadata(&staged.path).is_err() {
                staged.live = false;
            }
        })?;
        Ok(staged)
    }

    /// Where the tree is staged.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the staged tree Nix's permissions and timestamps.
    pub fn canonicalise(&self) -> io::Result<()> {
        canonicalise_tree(&self.path)
    }

    /// Renames the tree to `dest`; fails (leaving nothing) if something is there already.
    pub fn commit(mut self, dest: &Path) -> io::Result<()> {
        rename_no_replace(&self.path, dest)?;
        self.live = false;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.live {
            let _ = remove_tree(&self.path);
        }
    }
}

/// Canonicalises a tree's metadata as Nix does for a store path, children before their
/// directory (so that creating nothing changes a directory's time afterwards).
pub fn canonicalise_tree(top: &Path) -> io::Result<()> {
    let mut stack = vec![(top.to_path_buf(), false)];
    while let Some((path, children_done)) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(|e| at(&path, e))?;
        if meta.is_dir() && !children_done {
            stack.push((path.clone(), true));
            for entry in fs::read_dir(&path).map_err(|e| at(&path, e))? {
                stack.push((entry.map_err(|e| at(&path, e))?.path(), false));
            }
            continue;
        }
        canonicalise_one(&path, &meta)?;
    }
    Ok(())
}

/// One file's permissions (not a symlink's) and modification time.
pub(crate) fn canonicalise_one(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if !meta.file_type().is_symlink() {
        let mode = if meta.is_dir() || meta.mode() & 0o100 != 0 {
            0o555
        } else {
            0o444
        };
        if meta.mode() & 0o7777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| at(path, e))?;
        }
    }
    if meta.mtime() != STORE_MTIME || meta.mtime_nsec() != 0 {
        set_mtime(path, STORE_MTIME).map_err(|e| at(path, e))?;
    }
    Ok(())
}

/// Sets the modification time of `path` (of a symlink itself, not its target), keeping the
/// access time.
pub(crate) fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        },
    ];
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

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::tree::Node;
    use std::collections::BTreeMap;

    fn tree() -> Vec<u8> {
        let mut sub = BTreeMap::new();
        sub.insert(
            b"run".to_vec(),
            Node::Regular {
                executable: true,
                contents: b"#!/bin/sh\n".to_vec(),
            },
        );
        let mut top = BTreeMap::new();
        top.insert(b"bin".to_vec(), Node::Directory(sub));
        top.insert(
            b"data".to_vec(),
            Node::Regular {
                executable: false,
                contents: b"x".to_vec(),
            },
        );
        top.insert(
            b"link".to_vec(),
            Node::Symlink {
                target: b"bin/run".to_vec(),
            },
        );
        Node::Directory(top).to_nar()
    }

    #[test]
    fn restored_trees_get_nix_modes_and_times_and_appear_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("00000000000000000000000000000000-t");
        let staged = Staged::restore(&mut &tree()[..], &dest, Limits::default()).unwrap();
        assert!(!dest.exists(), "visible before the commit");
        staged.canonicalise().unwrap();
        staged.commit(&dest).unwrap();
        let mode = |p: &str| {
            let m = fs::symlink_metadata(dest.join(p)).unwrap();
            (m.mode() & 0o7777, m.mtime())
        };
        assert_eq!(mode(""), (0o555, 1));
        assert_eq!(mode("bin"), (0o555, 1));
        assert_eq!(mode("bin/run"), (0o555, 1));
        assert_eq!(mode("data"), (0o444, 1));
        assert_eq!(mode("link").1, 1);
        assert_eq!(
            dir_names(tmp.path()),
            vec![dest.file_name().unwrap().to_owned()]
        );
    }

    #[test]
    fn a_bad_nar_or_an_uncommitted_tree_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("00000000000000000000000000000000-t");
        let mut nar = tree();
        nar.truncate(nar.len() - 20);
        assert!(Staged::restore(&mut &nar[..], &dest, Limits::default()).is_err());
        assert!(dir_names(tmp.path()).is_empty());
        let staged = Staged::restore(&mut &tree()[..], &dest, Limits::default()).unwrap();
        staged.canonicalise().unwrap();
        drop(staged);
        assert!(dir_names(tmp.path()).is_empty());
    }

    fn dir_names(dir: &Path) -> Vec<std::ffi::OsString> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }
}
