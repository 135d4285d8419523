//! Leases: names of a cache (store paths, NAR files) held alive by a running process, and the
//! locks that make a garbage collection race-free against them, with nothing but the storage.
//!
//! # The protocol
//!
//! Two locks, both the backend's (held by live processes only: a `flock` on a directory, marker
//! objects of live owners in a bucket):
//! - the **GC lock** ([`super::StorageWrite::gc_lock`]): one collection at a time per cache;
//! - the **batch lock**: a collection holds it exclusively while it reads the leases and then
//!   deletes one batch; a lease holder holds it shared while it writes names into its lease
//!   ([`Lease::extend`]).
//!
//! So a lease write is never concurrent with a deletion batch: it lands either before a batch
//! starts (the batch reads it, and spares its names) or after a batch ended (and then that batch's
//! deletions are visible to the holder). Hence the rule for a holder: **extend the lease first,
//! then look for the names**. A backend may give the same guarantee without the shared hold: a
//! bucket writes the lease first, then looks for a collection's exclusive hold and waits it out
//! (fewer round trips; `src/host/object/leases.rs` says why it is equivalent). Whatever is
//! present after `extend` returns stays present while the lease lives; whatever a collection
//! deleted just before is found missing, and the holder fails (`keep-paths`: "not in the
//! cache") or writes it again (`build-cache`). This is how Nix's temporary roots work (write
//! the root, then check validity; the collector re-reads the roots before it deletes), without
//! a server: the batch lock plays the part of Nix's GC socket.
//!
//! A lease ends with its holder: dropped, or its process dead however it died (a directory: the
//! lease file's `flock` is released by the kernel; a bucket: the owner record of the holder is
//! gone, by process on the same machine or by age on the server's clock). A collection removes
//! the leases of dead holders and ignores them.
//!
//! The text of a lease: one name per line, a store path's base name (`<hash>-<name>`) or a NAR
//! key (`nar/<file>`); [`parse`] reads it, ignoring what is neither.

use std::io;

use crate::cache::layout::CacheKey;
use crate::store_path::StorePath;

/// A lease held by this process; dropping it ends it.
pub trait Lease: Send {
    /// Adds names to the lease (store path base names, `nar/…` keys). Once this returns, no
    /// deletion batch of a collection that starts later deletes them, and every earlier one has
    /// ended: what is present now stays present while the lease lives.
    fn extend(&mut self, names: &[String]) -> io::Result<()>;

    /// Where the lease is, for messages.
    fn describe(&self) -> String;
}

/// What a lease names, read back from its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseNames {
    pub paths: Vec<StorePath>,
    pub nars: Vec<CacheKey>,
    /// Lines that are neither (a lease cut short, or not ours): ignored.
    pub ignored: usize,
}

/// Reads a lease's text. A line cut short by a holder killed mid-write is ignored (the names
/// before it stand).
pub fn parse(text: &[u8]) -> LeaseNames {
    let mut names = LeaseNames::default();
    let text = String::from_utf8_lossy(text);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    for line in complete.lines().filter(|l| !l.is_empty()) {
        if let Some(file) = line.strip_prefix("nar/") {
            match CacheKey::parse(&format!("nar/{file}")) {
                Ok(key) => names.nars.push(key),
                Err(_) => names.ignored += 1,
            }
        } else {
            match StorePath::from_base_name(line) {
                Ok(path) => names.paths.push(path),
                Err(_) => names.ignored += 1,
            }
        }
    }
    if !text.is_empty() && !text.ends_with('\n') {
        names.ignored += 1;
    }
    names
}

/// The text of names, as a lease holds them (one per line).
pub fn text(names: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-hello-2.12";

    #[test]
    fn names_read_back_and_junk_ignored() {
        let nar = "nar/1l2i7jpllg1rck99i3w4rkpxxxpgjf95gg25c1lcm13hamrrknxx.nar.xz";
        let text = format!("{P}\n{nar}\n\nnot a path\nnar/../x\n5qk0fgkb9sfxmrbqjcs8");
        let names = parse(text.as_bytes());
        assert_eq!(names.paths, vec![StorePath::from_base_name(P).unwrap()]);
        assert_eq!(names.nars, vec![CacheKey::parse(nar).unwrap()]);
        assert_eq!(names.ignored, 3, "two bad lines and one cut short");
        assert_eq!(parse(&text_of(&[P])).paths.len(), 1);
        assert_eq!(
            parse(P.as_bytes()),
            LeaseNames {
                ignored: 1,
                ..Default::default()
            }
        );
        assert_eq!(parse(b""), LeaseNames::default());
    }

    fn text_of(names: &[&str]) -> Vec<u8> {
        text(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }
}
