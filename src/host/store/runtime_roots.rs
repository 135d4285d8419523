//! Runtime roots: store paths running processes use, found as Nix 2.8's `findRuntimeRoots`
//! finds them in `/proc`: for each process (`/proc/<digits>`), the targets of its `exe`, `cwd`
//! and `fd/*` links, the file of each `maps` line (a sixth field that is an absolute path and
//! the last), every store path named in its `environ` (`<store dir>/` then a character of
//! `[0-9a-z]` and any of `[0-9a-zA-Z+-._?=]`), and the contents of
//! `/proc/sys/kernel/{modprobe,fbsplash,poweroff_cmd}`. A target in the store directory names
//! the store path of its first component (a malformed one is ignored), which counts if valid.
//!
//! As in Nix, the store directory is the logical one (`/nix/store`, what a process in a
//! container or chroot of the root sees); unlike Nix, which ignores them, targets under the
//! real store directory (`ROOT/nix/store/…`, a process on the host using the root's paths)
//! count too, so a path in use is never deleted under its user.
//!
//! Bounded: each file read stops at [`MAX_PROC_FILE`] (what lies beyond is not looked at),
//! nothing is followed (links are only read), and a process that vanishes or may not be read
//! (`EACCES`, `ESRCH`, …) is skipped, as Nix skips it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::gc_roots::Roots;
use super::StoreRoot;
use crate::store_path::StorePath;

/// How much of one `/proc` file (`environ`, `maps`) is read.
pub const MAX_PROC_FILE: u64 = 16 << 20;

/// Link targets and file contents found, each with where (`/proc/PID/environ`, …).
type Unchecked = BTreeMap<Vec<u8>, Vec<String>>;

/// Reads at most [`MAX_PROC_FILE`] bytes of a file, not through a symlink; `None` if it cannot.
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut out = Vec::new();
    f.take(MAX_PROC_FILE).read_to_end(&mut out).ok()?;
    Some(out)
}

fn link(path: &Path, unchecked: &mut Unchecked) {
    if let Ok(t) = fs::read_link(path) {
        let t = t.as_os_str().as_bytes();
        if t.first() == Some(&b'/') {
            unchecked
                .entry(t.to_vec())
                .or_default()
                .push(path.display().to_string());
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The file of a `maps` line: six fields, the last an absolute path.
fn map_file(line: &[u8]) -> Option<&[u8]> {
    let mut fields = line.split(|b| is_space(*b)).filter(|f| !f.is_empty());
    let sixth = fields.nth(5)?;
    (fields.next().is_none() && sixth.first() == Some(&b'/')).then_some(sixth)
}

/// Every store path named in `text` as Nix's environment regex finds them.
pub fn store_paths_in(text: &[u8], store_dir: &str) -> Vec<Vec<u8>> {
    let prefix = format!("{store_dir}/");
    let prefix = prefix.as_bytes();
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = find(&text[i..], prefix).map(|k| k + i) {
        let start = at + prefix.len();
        let first = text.get(start).copied();
        if !first.is_some_and(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
            i = at + 1;
            continue;
        }
        let mut end = start + 1;
        while text.get(end).is_some_and(|b| name_char(*b)) {
            end += 1;
        }
        out.push(text[at..end].to_vec());
        i = end;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn process(dir: &Path, store_dir: &str, unchecked: &mut Unchecked) {
    link(&dir.join("exe"), unchecked);
    link(&dir.join("cwd"), unchecked);
    let fd_dir = dir.join("fd");
    if fs::symlink_metadata(&fd_dir).is_ok_and(|m| m.is_dir()) {
        if let Ok(entries) = fs::read_dir(&fd_dir) {
            for e in entries.flatten() {
                if !e.file_name().as_bytes().starts_with(b".") {
                    link(&e.path(), unchecked);
                }
            }
        }
    }
    let maps = dir.join("maps");
    if let Some(text) = read_bounded(&maps) {
        for line in text.split(|b| *b == b'\n') {
            if let Some(f) = map_file(line) {
                let source = maps.display().to_string();
                unchecked.entry(f.to_vec()).or_default().push(source);
            }
        }
    }
    let environ = dir.join("environ");
    if let Some(text) = read_bounded(&environ) {
        for p in store_paths_in(&text, store_dir) {
            let source = environ.display().to_string();
            unchecked.entry(p).or_default().push(source);
        }
    }
}

/// The runtime roots of the store under `root`, from the `/proc` at `proc_dir`.
pub fn find_runtime_roots(root: &StoreRoot, proc_dir: &Path) -> Roots {
    let store_dir = root.store_dir.as_str();
    let mut unchecked = Unchecked::new();
    if let Ok(entries) = fs::read_dir(proc_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let n = name.as_bytes();
            if !n.is_empty() && n.iter().all(u8::is_ascii_digit) {
                process(&e.path(), store_dir, &mut unchecked);
            }
        }
    }
    for f in ["modprobe", "fbsplash", "poweroff_cmd"] {
        let p = proc_dir.join("sys/kernel").join(f);
        if let Some(text) = read_bounded(&p) {
            unchecked
                .entry(text)
                .or_default()
                .push(p.display().to_string());
        }
    }
    let real = root.real_store();
    let real = real.as_os_str().as_bytes();
    let mut roots = Roots::new();
    for (target, sources) in unchecked {
        let Some(path) =
            in_store(&target, store_dir.as_bytes()).or_else(|| in_store(&target, real))
        else {
            continue;
        };
        roots.entry(path).or_default().extend(sources);
    }
    roots
}

/// The store path of the first component after `dir/`, if it is one.
fn in_store(target: &[u8], dir: &[u8]) -> Option<StorePath> {
    let rest = target.strip_prefix(dir)?.strip_prefix(b"/")?;
    let base = rest.split(|b| *b == b'/').next()?;
    StorePath::from_base_name(std::str::from_utf8(base).ok()?).ok()
}

#[cfg(test)]
mod tests;
