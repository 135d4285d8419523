//! An in-memory archive tree: for tests, property checks and small archives. Large archives
//! should stay streams ([`super::NarReader`], [`super::NarWriter`]).

use std::collections::BTreeMap;
use std::io::Read;

use super::reader::{Event, NarReader};
use super::writer::{NarWriter, WriteError};
use super::NarError;

/// A file system object as a NAR records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Regular {
        executable: bool,
        contents: Vec<u8>,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// Entries sorted by name bytes, as in the archive.
    Directory(BTreeMap<Vec<u8>, Node>),
}

/// A directory being read: the name it will be stored under in its parent (none at the root),
/// and its entries so far.
type OpenDir = (Option<Vec<u8>>, BTreeMap<Vec<u8>, Node>);

impl Node {
    /// Reads a whole archive into memory (checked as strictly as the streaming reader does).
    pub fn from_nar(nar: impl Read) -> Result<Node, NarError> {
        let mut reader = NarReader::new(nar);
        // Open directories: the name each will be stored under in its parent, and its entries.
        let mut stack: Vec<OpenDir> = Vec::new();
        let mut root = None;
        while let Some(event) = reader.next()? {
            let (name, node) = match event {
                Event::Directory { name, .. } => {
                    stack.push((name, BTreeMap::new()));
                    continue;
                }
                Event::Regular {
                    name,
                    executable,
                    size,
                    ..
                } => {
                    // Grows as bytes arrive: a claimed size is never allocated up front.
                    let mut contents = Vec::new();
                    reader.contents().read_to_end(&mut contents).map_err(|e| {
                        NarError::from_io(e).unwrap_or_else(|e| NarError {
                            offset: reader.position(),
                            kind: super::NarErrorKind::Io(e),
                        })
                    })?;
                    debug_assert_eq!(contents.len() as u64, size);
                    (
                        name,
                        Node::Regular {
                            executable,
                            contents,
                        },
                    )
                }
                Event::Symlink { name, target, .. } => (name, Node::Symlink { target }),
                Event::EndDirectory { .. } => {
                    let (name, entries) = stack.pop().expect("reader balances directories");
                    (name, Node::Directory(entries))
                }
            };
            match (stack.last_mut(), name) {
                (Some((_, entries)), Some(name)) => {
                    entries.insert(name, node);
                }
                _ => root = Some(node),
            }
        }
        Ok(root.expect("a complete archive has a root"))
    }

    /// Writes the archive of this tree.
    pub fn write_nar<W: std::io::Write>(&self, out: W) -> Result<W, WriteError> {
        let mut w = NarWriter::new(out)?;
        // Explicit stack of directory iterators: no recursion, whatever the depth.
        let mut stack: Vec<std::collections::btree_map::Iter<'_, Vec<u8>, Node>> = Vec::new();
        let mut next = Some(self);
        loop {
            if let Some(node) = next.take() {
                match node {
                    Node::Regular {
                        executable,
                        contents,
                    } => w.regular_bytes(*executable, contents)?,
                    Node::Symlink { target } => w.symlink(target)?,
                    Node::Directory(entries) => {
                        w.start_directory()?;
                        stack.push(entries.iter());
                    }
                }
            }
            let Some(top) = stack.last_mut() else { break };
            match top.next() {
                Some((name, child)) => {
                    w.entry(name)?;
                    next = Some(child);
                }
                None => {
                    stack.pop();
                    w.end_directory()?;
                }
            }
        }
        w.finish()
    }

    pub fn to_nar(&self) -> Vec<u8> {
        self.write_nar(Vec::new())
            .expect("in-memory trees with valid names always serialize")
    }
}
