//! NAR (`nix-archive-1`): the grammar ([`wire`]), a strict streaming [`reader`], a streaming
//! [`writer`], an in-memory [`tree`] for tests and small archives, and the `.ls` [`listing`];
//! [`push`] drives the same reader with bytes as they arrive (for async hosts).

pub mod listing;
pub mod push;
pub mod reader;
pub mod tree;
pub mod wire;
pub mod writer;

use std::fmt;
use std::io;

pub use push::{NarPushParser, PushEvent};
pub use reader::{Event, Limits, NarReader};
pub use writer::NarWriter;

/// An archive the reader refused, and where.
#[derive(Debug, thiserror::Error)]
#[error("NAR byte offset {offset}: {kind}")]
pub struct NarError {
    /// Byte offset in the uncompressed archive where the offending item starts.
    pub offset: u64,
    pub kind: NarErrorKind,
}

/// What was wrong with an archive.
#[derive(Debug, thiserror::Error)]
pub enum NarErrorKind {
    #[error("not a NAR: expected the string \"nix-archive-1\", found {found}")]
    NotANar { found: String },
    /// The input starts with a compression's magic bytes: the NAR was not decompressed.
    #[error(
        "not a NAR: the input looks {compression}-compressed (it starts with {compression}'s \
         magic bytes): decompress it first"
    )]
    Compressed { compression: &'static str },
    #[error("unexpected end of archive while reading {while_reading}")]
    UnexpectedEof { while_reading: &'static str },
    #[error("expected {expected:?}, found {found}")]
    UnexpectedToken {
        expected: &'static str,
        found: String,
    },
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("non-zero padding bytes")]
    NonZeroPadding,
    #[error("invalid entry name {name}: {reason}")]
    BadEntryName { name: String, reason: &'static str },
    #[error("entry {name} follows {previous}: names must be in strictly ascending byte order")]
    EntriesOutOfOrder { previous: String, name: String },
    #[error("duplicate entry {name}")]
    DuplicateEntry { name: String },
    #[error("invalid symlink target {target}: {reason}")]
    BadSymlinkTarget {
        target: String,
        reason: &'static str,
    },
    #[error("directories nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("trailing bytes after the end of the archive")]
    TrailingData,
    #[error("the archive was already found invalid here")]
    AfterError,
    #[error("read error: {0}")]
    Io(io::Error),
}

impl NarErrorKind {
    pub(crate) fn from_io(e: io::Error) -> NarErrorKind {
        NarErrorKind::Io(e)
    }
}

impl NarError {
    /// Wraps the error in an `io::Error` (kind `InvalidData`), for `Read` adapters.
    pub fn into_io(self) -> io::Error {
        match self.kind {
            NarErrorKind::Io(e) => e,
            _ => io::Error::new(io::ErrorKind::InvalidData, self),
        }
    }

    /// Recovers a `NarError` from an `io::Error` made by [`NarError::into_io`], if it is one.
    pub fn from_io(e: io::Error) -> Result<NarError, io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<NarError>()) {
            let inner = e.into_inner().expect("checked above");
            Ok(*inner.downcast::<NarError>().expect("checked above"))
        } else {
            Err(e)
        }
    }
}

/// A node's type, for listings and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    Regular,
    Symlink,
    Directory,
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeType::Regular => "regular",
            NodeType::Symlink => "symlink",
            NodeType::Directory => "directory",
        })
    }
}
