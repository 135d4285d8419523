//! The roots of a store under a root, found as Nix 2.8's `findRoots` finds them: under
//! `nix/var/nix/gcroots` and `nix/var/nix/profiles`, recursively, a symlink into the store
//! directory is a root (its target's store path), a symlink elsewhere is followed once (an
//! indirect root: the link it leads to, if that one points into the store), and a regular file
//! named by a store path's base name is a root; plus the temporary roots of live processes
//! (`temproots/<pid>` files their owners keep locked; an unlocked one is stale and removed, as
//! Nix does). Runtime roots (`/proc` of running processes) are [`super::runtime_roots`]'s.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::StoreRoot;
use crate::store_path::StorePath;

/// Store path → where it is rooted (a file, or `{temp:PID}`).
pub type Roots = BTreeMap<StorePath, Vec<String>>;

/// Every root of the store under `root`.
pub fn find_roots(root: &StoreRoot) -> io::Result<Roots> {
    let state = root.root.join("nix/var/nix");
    let mut roots = Roots::new();
    for dir in ["gcroots", "profiles"] {
        walk(root, &state.join(dir), &mut roots)?;
    }
    temp_roots(root, &state.join("temproots"), &mut roots)?;
    Ok(roots)
}

fn found(roots: &mut Roots, path: StorePath, source: String) {
    roots.entry(path).or_default().push(source);
}

/// The store path a link target names, if it is in the store directory.
fn in_store(root: &StoreRoot, target: &str) -> Option<StorePath> {
    root.store_dir
        .parse_path_prefix(target)
        .ok()
        .map(|(p, _)| p)
}

fn walk(root: &StoreRoot, top: &Path, roots: &mut Roots) -> io::Result<()> {
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let shown = p.display().to_string();
        if meta.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&p)?;
            let t = target.to_string_lossy();
            if let Some(sp) = in_store(root, &t) {
                found(roots, sp, shown);
            } else {
                // An indirect root: a link to a link (outside the store's root, as Nix reads it).
                let abs = p.parent().unwrap_or(Path::new("/")).join(&target);
                if let Ok(t2) = fs::read_link(&abs) {
                    if let Some(sp) = in_store(root, &t2.to_string_lossy()) {
                        found(roots, sp, abs.display().to_string());
                    }
                }
            }
        } else if meta.is_file() {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if let Ok(sp) = StorePath::from_base_name(name) {
                    found(roots, sp, shown);
                }
            }
        }
    }
    Ok(())
}

fn temp_roots(root: &StoreRoot, dir: &Path, roots: &mut Roots) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let path = e?.path();
        let pid = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // SAFETY: a valid descriptor we own.
        let unlocked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if unlocked {
            // Its process is gone: stale (what Nix's collector does with it).
            let _ = fs::remove_file(&path);
            let _ = file.write_all(b"d");
            continue;
        }
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)?;
        // Only NUL-terminated entries count (one being written may be cut short).
        let end = contents.iter().rposition(|b| *b == 0).map_or(0, |i| i + 1);
        for entry in contents[..end].split(|b| *b == 0).filter(|e| !e.is_empty()) {
            if let Some(sp) = in_store(root, &String::from_utf8_lossy(entry)) {
                found(roots, sp, format!("{{temp:{pid}}}"));
            }
        }
    }
    Ok(())
}
