//! GC roots: what names a store path to keep, and where each root came from.
//!
//! A roots folder (the cache's `gcroots/`, a `--roots-dir`) holds regular files named by a store
//! path's base name (`<hash>-<name>`: Nix's cheap form, hundreds of thousands of them cost
//! nothing but folder entries), or symlinks whose text is a store path or a path below one
//! (`/nix/store/<hash>-<name>/bin/x`). A link is read, never followed: what it points to need
//! not exist on this machine.

use std::fmt;

use crate::cache::storage::RootEntry;
use crate::store_path::{StoreDir, StorePath};

/// A root, and where it came from (for `--print-roots` and `--why`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Root {
    pub path: StorePath,
    pub source: String,
}

/// A roots folder's entry that names no store path: the collection stops rather than guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {why}")]
pub struct BadRoot {
    pub place: String,
    pub why: String,
}

/// The root an entry of the roots folder `folder` (shown in messages) names.
pub fn parse_entry(folder: &str, entry: &RootEntry, store_dir: &StoreDir) -> Result<Root, BadRoot> {
    let place = format!("{folder}/{}", entry.name);
    let bad = |why: String| BadRoot {
        place: place.clone(),
        why,
    };
    let path = match &entry.link {
        None => StorePath::from_base_name(&entry.name).map_err(|e| {
            bad(format!(
                "a root file is named by a store path's base name (<hash>-<name>): {e}"
            ))
        })?,
        Some(link) => {
            store_dir
                .parse_path_prefix(link)
                .map_err(|e| {
                    bad(format!(
                    "a root symlink leads to a store path ({}/<hash>-<name>), not to {link:?}: {e}",
                    store_dir
                ))
                })?
                .0
        }
    };
    Ok(Root {
        path,
        source: place,
    })
}

/// The root a `--root` argument names: a store path, absolute in `store_dir` or a base name.
pub fn parse_arg(arg: &str, store_dir: &StoreDir) -> Result<StorePath, String> {
    let parsed = if arg.starts_with('/') {
        store_dir.parse_path_prefix(arg).map(|(p, _)| p)
    } else {
        StorePath::from_base_name(arg)
    };
    parsed.map_err(|e| format!("{arg:?} is not a store path: {e}"))
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.path, self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-hello-2.12";

    fn entry(name: &str, link: Option<&str>) -> RootEntry {
        RootEntry {
            name: name.into(),
            link: link.map(str::to_string),
        }
    }

    #[test]
    fn files_and_links() {
        let dir = StoreDir::default();
        let root = parse_entry("gcroots", &entry(B, None), &dir).unwrap();
        assert_eq!(
            (root.path.base_name(), root.source.as_str()),
            (B, &*format!("gcroots/{B}"))
        );
        let link = format!("/nix/store/{B}/bin/hello");
        assert_eq!(
            parse_entry("r", &entry("x", Some(&link)), &dir)
                .unwrap()
                .path
                .base_name(),
            B
        );
        for bad in [
            entry("result", None),
            entry("x", Some("../result")),
            entry("x", Some("/usr/bin/env")),
            entry("x", Some(&format!("/other/store/{B}"))),
        ] {
            let e = parse_entry("gcroots", &bad, &dir).unwrap_err();
            assert!(e.to_string().starts_with("gcroots/"), "{e}");
        }
    }

    #[test]
    fn arguments() {
        let dir = StoreDir::default();
        assert_eq!(parse_arg(B, &dir).unwrap().base_name(), B);
        assert_eq!(
            parse_arg(&format!("/nix/store/{B}"), &dir)
                .unwrap()
                .base_name(),
            B
        );
        assert!(parse_arg("hello", &dir)
            .unwrap_err()
            .contains("not a store path"));
    }
}
