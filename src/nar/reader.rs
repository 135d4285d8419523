//! A strict, streaming NAR reader: a pull parser over any [`Read`] that yields one [`Event`] per
//! node, lets the caller stream each file's contents, and refuses everything Nix would not write.
//!
//! Memory is bounded by the limits, never by what the input claims: strings are length-checked
//! before they are read, file contents are never buffered, and nesting is tracked on a heap
//! stack (no recursion), capped at [`Limits::max_depth`].

use std::io::{self, Read};

use super::wire::{self, show_bytes};
use super::{NarError, NarErrorKind};
use crate::compression::Compression;

/// Limits the reader enforces beyond the grammar.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest directory nesting (the root is depth 0).
    pub max_depth: usize,
    /// Largest regular file.
    pub max_file_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: wire::DEFAULT_MAX_DEPTH,
            max_file_size: u64::MAX,
        }
    }
}

/// One node of the archive, in archive order. `depth` is 0 for the root, whose `name` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A directory starts; its entries follow, then [`Event::EndDirectory`].
    Directory { depth: usize, name: Option<Vec<u8>> },
    /// A regular file: `size` bytes of contents follow at `offset` in the archive; read them with
    /// [`NarReader::contents`] or let the next call to [`NarReader::next`] skip them.
    Regular {
        depth: usize,
        name: Option<Vec<u8>>,
        executable: bool,
        size: u64,
        offset: u64,
    },
    Symlink {
        depth: usize,
        name: Option<Vec<u8>>,
        target: Vec<u8>,
    },
    /// The directory at `depth` ends.
    EndDirectory { depth: usize },
}

impl Event {
    pub fn depth(&self) -> usize {
        match self {
            Event::Directory { depth, .. }
            | Event::Regular { depth, .. }
            | Event::Symlink { depth, .. }
            | Event::EndDirectory { depth } => *depth,
        }
    }

    /// The entry name, for nodes below the root.
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            Event::Directory { name, .. }
            | Event::Regular { name, .. }
            | Event::Symlink { name, .. } => name.as_deref(),
            Event::EndDirectory { .. } => None,
        }
    }
}

#[derive(Debug)]
enum State {
    Magic,
    Node {
        depth: usize,
        name: Option<Vec<u8>>,
    },
    Contents {
        depth: usize,
        remaining: u64,
    },
    AfterNode {
        depth: usize,
    },
    InDirectory,
    Done,
    /// An error was returned; every later call returns one too.
    Failed {
        offset: u64,
    },
}

/// The streaming reader. Wrap unbuffered sources in a `BufReader`: tokens are read 8 bytes at a time.
pub struct NarReader<R> {
    inner: R,
    pos: u64,
    state: State,
    /// Last entry name of each open directory, for the ordering check.
    dirs: Vec<Option<Vec<u8>>>,
    limits: Limits,
}

impl<R: Read> NarReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> Self {
        NarReader {
            inner,
            pos: 0,
            state: State::Magic,
            dirs: Vec::new(),
            limits,
        }
    }

    /// Bytes of the archive consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Gives back the source (after [`NarReader::next`] returned `None`, positioned at its end).
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn err(&self, kind: NarErrorKind) -> NarError {
        NarError {
            offset: self.pos,
            kind,
        }
    }

    fn err_at(&self, offset: u64, kind: NarErrorKind) -> NarError {
        NarError { offset, kind }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), NarError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(self.err(NarErrorKind::UnexpectedEof {
                        while_reading: what,
                    }))
                }
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(NarErrorKind::from_io(e))),
            }
        }
        Ok(())
    }

    fn read_u64(&mut self, what: &'static str) -> Result<u64, NarError> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_padding(&mut self, len: u64) -> Result<(), NarError> {
        let n = wire::padding_len(len);
        let start = self.pos;
        let mut b = [0u8; 8];
        self.read_exact(&mut b[..n], "padding")?;
        if b[..n].iter().any(|&x| x != 0) {
            return Err(self.err_at(start, NarErrorKind::NonZeroPadding));
        }
        Ok(())
    }

    /// Reads `str(s)` whose length must not exceed `limit` (checked before allocating).
    fn read_str(&mut self, limit: usize, what: &'static str) -> Result<Vec<u8>, NarError> {
        let start = self.pos;
        let len = self.read_u64(what)?;
        if len > limit as u64 {
            return Err(self.err_at(
                start,
                NarErrorKind::TooLong {
                    what,
                    len,
                    limit: limit as u64,
                },
            ));
        }
        let mut s = vec![0u8; len as usize];
        self.read_exact(&mut s, what)?;
        self.read_padding(len)?;
        Ok(s)
    }

    /// Reads a token (a short string of the grammar).
    fn read_token(&mut self, expected: &'static str) -> Result<(u64, Vec<u8>), NarError> {
        let start = self.pos;
        let len = self.read_u64(expected)?;
        self.read_token_body(start, len, expected)
    }

    /// Reads the rest of a token that starts at `start`, whose length `len` was read.
    fn read_token_body(
        &mut self,
        start: u64,
        len: u64,
        expected: &'static str,
    ) -> Result<(u64, Vec<u8>), NarError> {
        const TOKEN_LIMIT: u64 = 16;
        if len > TOKEN_LIMIT {
            return Err(self.err_at(
                start,
                NarErrorKind::UnexpectedToken {
                    expected,
                    found: format!("a string of {len} bytes"),
                },
            ));
        }
        let mut s = vec![0u8; len as usize];
        self.read_exact(&mut s, expected)?;
        self.read_padding(len)?;
        Ok((start, s))
    }

    fn expect(&mut self, token: &'static str) -> Result<(), NarError> {
        let (start, found) = self.read_token(token)?;
        if found != token.as_bytes() {
            return Err(self.err_at(
                start,
                NarErrorKind::UnexpectedToken {
                    expected: token,
                    found: show_bytes(&found),
                },
            ));
        }
        Ok(())
    }

    /// The next node, or `None` once the whole archive has been read (and found to end there).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event>, NarError> {
        let result = self.step();
        if let Err(e) = &result {
            self.state = State::Failed { offset: e.offset };
        }
        result
    }

    fn step(&mut self) -> Result<Option<Event>, NarError> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Magic => {
                    let start = self.pos;
                    let len = self.read_u64("nix-archive-1")?;
                    // The first 8 bytes: a compressed file is told apart by its magic bytes.
                    match Compression::sniff(&len.to_le_bytes()) {
                        Some(Compression::None) | None => {}
                        Some(c) => {
                            let compression = c.name();
                            return Err(
                                self.err_at(start, NarErrorKind::Compressed { compression })
                            );
                        }
                    }
                    let (_, found) =
                        self.read_token_body(start, len, "nix-archive-1")
                            .map_err(|e| match e.kind {
                                NarErrorKind::UnexpectedToken { found, .. } => {
                                    self.err_at(start, NarErrorKind::NotANar { found })
                                }
                                _ => e,
                            })?;
                    if found != wire::MAGIC {
                        return Err(self.err_at(
                            start,
                            NarErrorKind::NotANar {
                                found: show_bytes(&found),
                            },
                        ));
                    }
                    self.state = State::Node {
                        depth: 0,
                        name: None,
                    };
                }
                State::Node { depth, name } => return self.read_node(depth, name).map(Some),
                State::Contents { depth, remaining } => {
                    self.skip(remaining)?;
                    self.finish_contents(depth)?;
                }
                State::AfterNode { depth } => {
                    if depth == 0 {
                        self.check_end()?;
                        return Ok(None);
                    }
                    self.expect(")")?;
                    self.state = State::InDirectory;
                }
                State::InDirectory => return self.read_entry().map(Some),
                State::Done => return Ok(None),
                State::Failed { offset } => {
                    self.state = State::Failed { offset };
                    return Err(self.err_at(offset, NarErrorKind::AfterError));
                }
            }
        }
    }

    fn read_node(&mut self, depth: usize, name: Option<Vec<u8>>) -> Result<Event, NarError> {
        self.expect("(")?;
        self.expect("type")?;
        let (start, kind) = self.read_token("a node type")?;
        match kind.as_slice() {
            b"regular" => {
                let (start, tok) = self.read_token("contents")?;
                let executable = match tok.as_slice() {
                    b"executable" => {
                        self.expect("")?;
                        self.expect("contents")?;
                        true
                    }
                    b"contents" => false,
                    other => {
                        return Err(self.err_at(
                            start,
                            NarErrorKind::UnexpectedToken {
                                expected: "\"executable\" or \"contents\"",
                                found: show_bytes(other),
                            },
                        ))
                    }
                };
                let size_at = self.pos;
                let size = self.read_u64("a file size")?;
                if size > self.limits.max_file_size {
                    return Err(self.err_at(
                        size_at,
                        NarErrorKind::TooLong {
                            what: "file",
                            len: size,
                            limit: self.limits.max_file_size,
                        },
                    ));
                }
                let offset = self.pos;
                self.state = State::Contents {
                    depth,
                    remaining: size,
                };
                Ok(Event::Regular {
                    depth,
                    name,
                    executable,
                    size,
                    offset,
                })
            }
            b"symlink" => {
                self.expect("target")?;
                let at = self.pos;
                let target = self.read_str(wire::MAX_TARGET_LEN, "symlink target")?;
                if let Err(reason) = wire::check_symlink_target(&target) {
                    return Err(self.err_at(
                        at,
                        NarErrorKind::BadSymlinkTarget {
                            target: show_bytes(&target),
                            reason,
                        },
                    ));
                }
                self.expect(")")?;
                self.state = State::AfterNode { depth };
                Ok(Event::Symlink {
                    depth,
                    name,
                    target,
                })
            }
            b"directory" => {
                if depth > self.limits.max_depth {
                    return Err(self.err_at(
                        start,
                        NarErrorKind::TooDeep {
                            limit: self.limits.max_depth,
                        },
                    ));
                }
                self.dirs.push(None);
                self.state = State::InDirectory;
                Ok(Event::Directory { depth, name })
            }
            other => Err(self.err_at(
                start,
                NarErrorKind::UnexpectedToken {
                    expected: "\"regular\", \"symlink\" or \"directory\"",
                    found: show_bytes(other),
                },
            )),
        }
    }

    fn read_entry(&mut self) -> Result<Event, NarError> {
        let (start, tok) = self.read_token("\"entry\" or \")\"")?;
        match tok.as_slice() {
            b"entry" => {
                self.expect("(")?;
                self.expect("name")?;
                let at = self.pos;
                let name = self.read_str(wire::MAX_NAME_LEN, "entry name")?;
                if let Err(reason) = wire::check_entry_name(&name) {
                    return Err(self.err_at(
                        at,
                        NarErrorKind::BadEntryName {
                            name: show_bytes(&name),
                            reason,
                        },
                    ));
                }
                let last = self.dirs.last_mut().expect("inside a directory");
                if let Some(prev) = last.as_deref() {
                    if prev >= name.as_slice() {
                        let kind = if prev == name.as_slice() {
                            NarErrorKind::DuplicateEntry {
                                name: show_bytes(&name),
                            }
                        } else {
                            NarErrorKind::EntriesOutOfOrder {
                                previous: show_bytes(prev),
                                name: show_bytes(&name),
                            }
                        };
                        return Err(self.err_at(at, kind));
                    }
                }
                *last = Some(name.clone());
                self.expect("node")?;
                let depth = self.dirs.len();
                self.read_node(depth, Some(name))
            }
            b")" => {
                self.dirs.pop();
                let depth = self.dirs.len();
                self.state = State::AfterNode { depth };
                Ok(Event::EndDirectory { depth })
            }
            other => Err(self.err_at(
                start,
                NarErrorKind::UnexpectedToken {
                    expected: "\"entry\" or \")\"",
                    found: show_bytes(other),
                },
            )),
        }
    }

    fn skip(&mut self, mut remaining: u64) -> Result<(), NarError> {
        let mut buf = [0u8; 8192];
        while remaining > 0 {
            let n = remaining.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..n], "file contents")?;
            remaining -= n as u64;
        }
        Ok(())
    }

    fn finish_contents(&mut self, depth: usize) -> Result<(), NarError> {
        // Contents start 8-aligned, so the archive position tells how much padding is due.
        let pad = wire::padding_len(self.pos);
        let mut b = [0u8; 8];
        let start = self.pos;
        self.read_exact(&mut b[..pad], "padding")?;
        if b.iter().any(|&x| x != 0) {
            return Err(self.err_at(start, NarErrorKind::NonZeroPadding));
        }
        self.expect(")")?;
        self.state = State::AfterNode { depth };
        Ok(())
    }

    fn check_end(&mut self) -> Result<(), NarError> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => {
                    self.state = State::Done;
                    return Ok(());
                }
                Ok(_) => return Err(self.err(NarErrorKind::TrailingData)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(NarErrorKind::from_io(e))),
            }
        }
    }

    /// A reader over the contents of the regular file just returned by [`NarReader::next`].
    /// Errors it returns carry a [`NarError`] (see [`NarError::from_io`]).
    pub fn contents(&mut self) -> Contents<'_, R> {
        Contents { nar: self }
    }

    /// Reads the current file's remaining contents into `buf`; `Ok(0)` at its end.
    pub fn read_contents(&mut self, buf: &mut [u8]) -> Result<usize, NarError> {
        let State::Contents { remaining, .. } = &mut self.state else {
            return Ok(0);
        };
        if *remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = (*remaining).min(buf.len() as u64) as usize;
        loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(self.err(NarErrorKind::UnexpectedEof {
                        while_reading: "file contents",
                    }))
                }
                Ok(n) => {
                    self.pos += n as u64;
                    if let State::Contents { remaining, .. } = &mut self.state {
                        *remaining -= n as u64;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(NarErrorKind::from_io(e))),
            }
        }
    }

    /// The source, for the push parser to refill.
    pub(super) fn source_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(super) fn source(&self) -> &R {
        &self.inner
    }

    /// Bytes of the current file's contents not yet read (0 outside contents).
    pub(super) fn contents_left(&self) -> u64 {
        match self.state {
            State::Contents { remaining, .. } => remaining,
            _ => 0,
        }
    }

    /// Counts `n` bytes of the current file's contents as read (the push parser takes them from
    /// its buffer itself); `n` ≤ [`Self::contents_left`].
    pub(super) fn skip_contents_taken(&mut self, n: u64) {
        if let State::Contents { remaining, .. } = &mut self.state {
            *remaining -= n;
            self.pos += n;
        }
    }

    /// Reads the whole archive, checking it, and returns the number of bytes.
    pub fn validate_all(mut self) -> Result<u64, NarError> {
        while self.next()?.is_some() {}
        Ok(self.pos)
    }
}

/// The contents of one regular file, as a [`Read`].
pub struct Contents<'a, R> {
    nar: &'a mut NarReader<R>,
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.nar.read_contents(buf).map_err(NarError::into_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(nar: &[u8]) -> Result<Vec<Event>, NarError> {
        let mut r = NarReader::new(nar);
        let mut v = Vec::new();
        while let Some(e) = r.next()? {
            v.push(e);
        }
        Ok(v)
    }

    fn tokens(toks: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for t in toks {
            wire::put_str(&mut v, t);
        }
        v
    }

    #[test]
    fn single_file() {
        let nar = tokens(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"hello",
            b")",
        ]);
        let ev = events(&nar).unwrap();
        assert_eq!(
            ev,
            vec![Event::Regular {
                depth: 0,
                name: None,
                executable: false,
                size: 5,
                offset: 96
            }]
        );
    }

    #[test]
    fn contents_are_streamed() {
        let nar = tokens(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"hello world",
            b")",
        ]);
        let mut r = NarReader::new(&nar[..]);
        assert!(matches!(
            r.next().unwrap(),
            Some(Event::Regular {
                executable: true,
                size: 11,
                ..
            })
        ));
        let mut s = String::new();
        r.contents().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
        assert_eq!(r.next().unwrap(), None);
    }

    #[test]
    fn compressed_input_is_named() {
        // The first bytes of files xz, zstd and bzip2 wrote.
        for (c, head) in [
            (Compression::Xz, &b"\xfd7zXZ\0\0\x04\xe6\xd6\xb4\x46"[..]),
            (
                Compression::Zstd,
                &b"\x28\xb5\x2f\xfd\x24\x05\x29\x00\x00"[..],
            ),
            (Compression::Bzip2, &b"BZh91AY&SY\x0f"[..]),
        ] {
            let e = events(head).unwrap_err();
            assert_eq!(e.offset, 0);
            assert_eq!(
                e.to_string(),
                format!(
                    "NAR byte offset 0: not a NAR: the input looks {c}-compressed (it starts \
                     with {c}'s magic bytes): decompress it first"
                )
            );
        }
        // Not a compression's magic: what was found, as before.
        let e = events(&[0xff; 16]).unwrap_err();
        assert!(e.to_string().contains("found a string of"), "{e}");
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut nar = tokens(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"x",
            b")",
        ]);
        nar.push(0);
        let e = events(&nar).unwrap_err();
        assert!(matches!(e.kind, NarErrorKind::TrailingData), "{e}");
    }
}

#[cfg(test)]
mod sticky_error_tests {
    use super::*;

    #[test]
    fn an_error_is_not_followed_by_a_clean_end() {
        let mut nar = Vec::new();
        wire::put_str(&mut nar, b"nix-archive-1");
        wire::put_str(&mut nar, b"(");
        let mut r = NarReader::new(&nar[..]);
        let first = r.next().unwrap_err();
        let again = r.next().unwrap_err();
        assert!(
            matches!(first.kind, NarErrorKind::UnexpectedEof { .. }),
            "{first}"
        );
        assert!(
            matches!(again.kind, NarErrorKind::AfterError) && again.offset == first.offset,
            "{again}"
        );
    }
}
