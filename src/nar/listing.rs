//! The `.ls` listing of a NAR (`{"version":1,"root":…}`, what `write-nar-listing` puts beside a
//! narinfo), built in one streaming pass, and lookups of one file inside an archive.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::reader::{Event, NarReader};
use super::{NarError, NodeType};

/// One node of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ListingNode {
    Regular {
        size: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        executable: bool,
        /// Offset of the contents in the uncompressed NAR.
        #[serde(rename = "narOffset", default, skip_serializing_if = "Option::is_none")]
        nar_offset: Option<u64>,
    },
    Symlink {
        target: String,
    },
    Directory {
        entries: BTreeMap<String, ListingNode>,
    },
}

impl ListingNode {
    pub fn node_type(&self) -> NodeType {
        match self {
            ListingNode::Regular { .. } => NodeType::Regular,
            ListingNode::Symlink { .. } => NodeType::Symlink,
            ListingNode::Directory { .. } => NodeType::Directory,
        }
    }

    /// The node at a `/`-separated path below this one (`""` or `"/"` is this node).
    /// Symlinks are not followed.
    pub fn get(&self, path: &str) -> Option<&ListingNode> {
        let mut node = self;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            match node {
                ListingNode::Directory { entries } => node = entries.get(part)?,
                _ => return None,
            }
        }
        Some(node)
    }
}

/// A whole `.ls` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub version: u32,
    pub root: ListingNode,
}

impl Listing {
    /// Builds the listing of an archive in one pass, validating it.
    pub fn from_nar(nar: impl Read) -> Result<Listing, NarError> {
        let mut reader = NarReader::new(nar);
        let mut builder = ListingBuilder::default();
        while let Some(event) = reader.next()? {
            builder.push(event);
        }
        Ok(builder.finish().expect("a complete archive has a root"))
    }

    /// The JSON text (keys in Nix's order; compare with other writers as JSON values).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("listings always serialize")
    }
}

/// Assembles a listing from reader events; usable alongside other work on the same pass.
#[derive(Default)]
pub struct ListingBuilder {
    stack: Vec<(Option<String>, BTreeMap<String, ListingNode>)>,
    root: Option<ListingNode>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl ListingBuilder {
    pub fn push(&mut self, event: Event) {
        let (name, node) = match event {
            Event::Directory { name, .. } => {
                self.stack
                    .push((name.as_deref().map(lossy), BTreeMap::new()));
                return;
            }
            Event::Regular {
                name,
                executable,
                size,
                offset,
                ..
            } => (
                name.as_deref().map(lossy),
                ListingNode::Regular {
                    size,
                    executable,
                    nar_offset: Some(offset),
                },
            ),
            Event::Symlink { name, target, .. } => (
                name.as_deref().map(lossy),
                ListingNode::Symlink {
                    target: lossy(&target),
                },
            ),
            Event::EndDirectory { .. } => {
                let (name, entries) = self.stack.pop().expect("reader balances directories");
                (name, ListingNode::Directory { entries })
            }
        };
        match (self.stack.last_mut(), name) {
            (Some((_, entries)), Some(name)) => {
                entries.insert(name, node);
            }
            _ => self.root = Some(node),
        }
    }

    pub fn finish(self) -> Option<Listing> {
        self.root.map(|root| Listing { version: 1, root })
    }
}

/// How many symlinks [`Listing::resolve`] follows before giving up (as Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Where a path leads in a listing ([`Listing::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// A node of the archive, at this path (`bin/hello`, no symlink in it; empty for the root).
    Inside(String, &'a ListingNode),
    /// Out of the archive through a symlink (or `..` past its root): the absolute path it leads
    /// to, normalised, with the rest of the path appended (`/nix/store/…-bar/lib/x.so`).
    Outside(String),
}

/// `/`-separated components, `.` and empty ones dropped, `..` taking one back: `/a/b`.
fn normalise(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

impl Listing {
    /// Finds the node at `path` (`bin/hello`; empty for the root), following symlinks inside the
    /// archive, including in the last component; loops are refused. An absolute link into
    /// `root_path` (the archive's own store path, as Nix outputs often have:
    /// `/nix/store/…-foo/lib/x`) stays inside. A link that leaves the archive gives where it
    /// leads ([`Resolved::Outside`]): an absolute one; `..` past the root and a relative link at
    /// the root (an archive that is a symlink) when `root_path` tells the store directory, else
    /// they are refused.
    pub fn resolve(&self, path: &str, root_path: Option<&str>) -> Result<Resolved<'_>, String> {
        let root_path = root_path.map(|r| r.trim_end_matches('/'));
        let store_dir = root_path
            .and_then(|r| r.rsplit_once('/'))
            .map(|(dir, _)| dir);
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_string)
            .collect();
        let rest = |todo: &[String]| {
            todo.iter()
                .rev()
                .fold(String::new(), |out, c| format!("{out}/{c}"))
        };
        if let ListingNode::Symlink { target } = &self.root {
            // The archive is a symlink: a relative target is relative to the store directory.
            let base = match (target.starts_with('/'), store_dir) {
                (true, _) => "",
                (false, Some(dir)) => dir,
                (false, None) => {
                    return Err(format!(
                        "the archive is a symlink to {target:?}, outside it"
                    ))
                }
            };
            return Ok(Resolved::Outside(normalise(&format!(
                "{base}/{target}{}",
                rest(&todo)
            ))));
        }
        let mut at: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                if at.pop().is_none() {
                    return match store_dir {
                        Some(dir) => Ok(Resolved::Outside(normalise(&format!(
                            "{dir}{}",
                            rest(&todo)
                        )))),
                        None => Err(format!("{path:?} leads out of the archive")),
                    };
                }
                continue;
            }
            let mut node = &self.root;
            for name in &at {
                node = match node {
                    ListingNode::Directory { entries } => &entries[name],
                    _ => unreachable!("only directories are entered"),
                };
            }
            let ListingNode::Directory { entries } = node else {
                return Err(format!("{:?} is not a directory", at.join("/")));
            };
            let Some(child) = entries.get(&part) else {
                at.push(part);
                return Err(format!("no file {:?} in the archive", at.join("/")));
            };
            if let ListingNode::Symlink { target } = child {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(format!("{path:?}: too many levels of symbolic links"));
                }
                let inside = root_path
                    .and_then(|r| target.strip_prefix(r))
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'));
                let relative = match inside {
                    // From the root again.
                    Some(rest) => {
                        at.clear();
                        rest
                    }
                    None if target.starts_with('/') => {
                        return Ok(Resolved::Outside(normalise(&format!(
                            "{target}{}",
                            rest(&todo)
                        ))))
                    }
                    None => target.as_str(),
                };
                todo.extend(
                    relative
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                        .map(str::to_string),
                );
                continue;
            }
            at.push(part);
        }
        let mut node = &self.root;
        for name in &at {
            if let ListingNode::Directory { entries } = node {
                node = &entries[name];
            }
        }
        Ok(Resolved::Inside(at.join("/"), node))
    }
}

/// Splits an in-archive path into components; `..` and empty components are refused.
pub fn split_path(path: &str) -> Result<Vec<&[u8]>, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path {path:?} contains \"..\"")),
            p => parts.push(p.as_bytes()),
        }
    }
    Ok(parts)
}

/// What [`find`] found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file; the reader is positioned at its contents.
    Regular {
        executable: bool,
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Directory,
}

/// Streams an archive until the node at `path`; for a regular file, `reader.contents()` then
/// gives its bytes. Returns `None` if there is no such node (the archive is read to its end).
pub fn find<R: Read>(
    reader: &mut NarReader<R>,
    path: &str,
) -> Result<Result<Found, String>, NarError> {
    let wanted = match split_path(path) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    // The current path, one name per depth below the root.
    let mut current: Vec<Vec<u8>> = Vec::new();
    while let Some(event) = reader.next()? {
        if let Event::EndDirectory { .. } = event {
            continue;
        }
        let depth = event.depth();
        current.truncate(depth.saturating_sub(1));
        if let Some(name) = event.name() {
            current.push(name.to_vec());
        }
        if current.len() == wanted.len()
            && current.iter().zip(&wanted).all(|(a, b)| a.as_slice() == *b)
        {
            return Ok(Ok(match event {
                Event::Regular {
                    executable, size, ..
                } => Found::Regular { executable, size },
                Event::Symlink { target, .. } => Found::Symlink { target },
                _ => Found::Directory,
            }));
        }
    }
    Ok(Err(format!("no file {path:?} in the archive")))
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    fn listing() -> Listing {
        let json = r#"{"version":1,"root":{"type":"directory","entries":{
            "bin":{"type":"directory","entries":{
                "hello":{"type":"regular","size":5,"executable":true,"narOffset":100},
                "hi":{"type":"symlink","target":"hello"},
                "abs":{"type":"symlink","target":"/nix/store/aaaa-x/bin/hello"},
                "out":{"type":"symlink","target":"/etc/passwd"},
                "up":{"type":"symlink","target":"../../x"},
                "loop":{"type":"symlink","target":"loop"}}},
            "lib":{"type":"symlink","target":"bin"}}}}"#;
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn resolves_inside_and_refuses_loops() {
        let l = listing();
        let ok = |p: &str, root: Option<&str>| match l.resolve(p, root) {
            Ok(Resolved::Inside(p, _)) => Ok(p),
            Ok(Resolved::Outside(to)) => Err(format!("outside: {to}")),
            Err(e) => Err(e),
        };
        assert_eq!(ok("bin/hello", None).unwrap(), "bin/hello");
        assert_eq!(ok("bin/hi", None).unwrap(), "bin/hello");
        assert_eq!(ok("lib/hi", None).unwrap(), "bin/hello");
        assert_eq!(ok("./bin//../bin/hi", None).unwrap(), "bin/hello");
        assert_eq!(
            ok("bin/abs", Some("/nix/store/aaaa-x")).unwrap(),
            "bin/hello"
        );
        assert!(ok("bin/up", None).unwrap_err().contains("leads out"));
        assert!(ok("bin/loop", None)
            .unwrap_err()
            .contains("too many levels"));
        assert!(ok("bin/nope", None).unwrap_err().contains("no file"));
        assert!(ok("bin/hello/x", None)
            .unwrap_err()
            .contains("not a directory"));
    }

    #[test]
    fn tells_where_a_link_out_of_the_archive_leads() {
        let l = listing();
        let out = |p: &str, root: Option<&str>| match l.resolve(p, root) {
            Ok(Resolved::Outside(to)) => to,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(out("bin/abs", None), "/nix/store/aaaa-x/bin/hello");
        assert_eq!(
            out("bin/abs", Some("/nix/store/aaaa")),
            "/nix/store/aaaa-x/bin/hello"
        );
        assert_eq!(out("bin/out", Some("/nix/store/aaaa-x")), "/etc/passwd");
        assert_eq!(out("lib/out", None), "/etc/passwd");
        // `..` past the root, in a link or in the path, leads into the store directory.
        assert_eq!(out("bin/up", Some("/nix/store/aaaa-x")), "/nix/store/x");
        assert_eq!(
            out("../bbbb-y/./lib/../bin", Some("/nix/store/aaaa-x/")),
            "/nix/store/bbbb-y/bin"
        );
        // An archive that is a symlink: a relative target is relative to the store directory.
        let link = |target: &str| Listing {
            version: 1,
            root: ListingNode::Symlink {
                target: target.into(),
            },
        };
        let root = Some("/nix/store/aaaa-x");
        assert_eq!(
            link("bbbb-y/bin").resolve("hello", root),
            Ok(Resolved::Outside("/nix/store/bbbb-y/bin/hello".into()))
        );
        assert_eq!(
            link("/nix/store/bbbb-y").resolve("", None),
            Ok(Resolved::Outside("/nix/store/bbbb-y".into()))
        );
        assert!(link("bbbb-y").resolve("", None).is_err());
    }
}
