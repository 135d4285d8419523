//! A store path restored from a NAR the way Nix leaves one: unpacked under a staging name in
//! the store directory itself (`.<name>.fetching-<pid>-<random>`, so that the final rename stays
//! in one directory and needs no write access to a read-only directory), its metadata made
//! canonical as it is made (files 0444, or 0555 when executable; directories 0555; every
//! modification time 1, symlinks' too: each set as the entry is made, not by a second walk),
//! then renamed to its name without replacing anything. Until the rename nothing is visible
//! under the path's name; dropped before it, the staged tree is removed.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use crate::host::fs::STORE_MTIME;
use crate::host::fs::{remove_tree, rename_no_replace, unpack_with, CaseHack, Meta, RestoreError};
use crate::nar::Limits;

/// A restored tree under its staging name.
pub struct Staged {
    path: PathBuf,
    live: bool,
}

impl Staged {
    /// Unpacks `nar` under a new staging name beside `dest` (in the store directory). Entry
    /// names are checked by the reader (no `/`, `.`, `..`, NUL; strictly sorted), everything is
    /// created with `O_EXCL`/`O_NOFOLLOW` beneath the staging root, files are no larger than
    /// `limits` allow. The tree has Nix's permissions and timestamps already.
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
        unpack_with(nar, &staged.path, CaseHack(false), limits, Meta::Store).inspect_err(|_| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::tree::Node;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

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
