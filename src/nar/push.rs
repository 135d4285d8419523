//! A push-driven NAR parser for hosts that receive bytes asynchronously (JS streams, `fetch`):
//! [`NarPushParser::update`] with each chunk, [`NarPushParser::finish`] at the end. It runs the
//! same [`NarReader`] grammar, so it accepts and refuses exactly what the pull reader does, with
//! the same messages and offsets.
//!
//! How: the reader pulls from a buffer that the parser fills. A reader step (one node's tokens,
//! names and symlink target) never needs more than [`MAX_STEP`] bytes, so the parser steps only
//! when that much is buffered (or the input has ended) and the buffer can never run dry inside a
//! step. File contents, the one unbounded part, are handed out straight from the buffer.

use std::io::{self, Read};

use super::reader::{Event, Limits, NarReader};
use super::wire::{MAX_NAME_LEN, MAX_TARGET_LEN};
use super::{NarError, NarErrorKind};

/// The most bytes one reader step can consume outside file contents: a dozen tokens (an
/// 8-byte length and at most 16 bytes each), padding, an entry name and a symlink target.
pub const MAX_STEP: usize = 16 * 24 + 8 + (8 + MAX_NAME_LEN + 8) + (8 + MAX_TARGET_LEN + 8);

/// What the parser found: a node, or a piece of the current regular file's contents.
#[derive(Debug)]
pub enum PushEvent<'a> {
    Node(Event),
    Contents(&'a [u8]),
}

/// The reader's source: the bytes received and not yet parsed.
#[derive(Default)]
struct Buffered {
    data: Vec<u8>,
    start: usize,
    /// No more bytes will come: running out is the end of the input.
    ended: bool,
}

impl Buffered {
    fn available(&self) -> &[u8] {
        &self.data[self.start..]
    }
}

/// A step ran out of buffered bytes: [`MAX_STEP`] is wrong (a bug, reported, never a panic).
#[derive(Debug)]
struct RanDry;

impl std::fmt::Display for RanDry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "internal error: a NAR step needed more than {MAX_STEP} bytes"
        )
    }
}

impl std::error::Error for RanDry {}

impl Read for Buffered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = &self.data[self.start..];
        if avail.is_empty() && !buf.is_empty() && !self.ended {
            return Err(io::Error::other(RanDry));
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.start += n;
        Ok(n)
    }
}

/// The push parser. Errors are sticky: after one, every call returns an error.
pub struct NarPushParser {
    reader: NarReader<Buffered>,
    done: bool,
}

impl Default for NarPushParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl NarPushParser {
    pub fn new(limits: Limits) -> Self {
        NarPushParser {
            reader: NarReader::with_limits(Buffered::default(), limits),
            done: false,
        }
    }

    /// Bytes of the archive parsed so far.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// Parses what `chunk` completes; `on` gets each node and each piece of file contents.
    pub fn update(
        &mut self,
        mut chunk: &[u8],
        on: &mut dyn FnMut(PushEvent<'_>),
    ) -> Result<(), NarError> {
        // File contents arriving with nothing buffered go straight from the chunk (most bytes
        // of a large NAR): no copy.
        while !chunk.is_empty() && self.reader.source().available().is_empty() {
            let left = self.reader.contents_left();
            if left == 0 {
                break;
            }
            let n = left.min(chunk.len() as u64) as usize;
            on(PushEvent::Contents(&chunk[..n]));
            self.reader.skip_contents_taken(n as u64);
            chunk = &chunk[n..];
        }
        if !chunk.is_empty() {
            if self.done {
                return Err(NarError {
                    offset: self.reader.position(),
                    kind: NarErrorKind::TrailingData,
                });
            }
            let source = self.reader.source_mut();
            if source.start > 0 && source.start >= source.data.len() / 2 {
                source.data.drain(..source.start);
                source.start = 0;
            }
            source.data.extend_from_slice(chunk);
        }
        self.run(on)
    }

    /// Ends the input: parses the rest and checks the archive ended exactly here. Returns the
    /// archive's size.
    pub fn finish(&mut self, on: &mut dyn FnMut(PushEvent<'_>)) -> Result<u64, NarError> {
        self.reader.source_mut().ended = true;
        self.run(on)?;
        if !self.done {
            // `run` stops early only for want of input, which has ended: let the reader say
            // what was cut short.
            return Err(self.step_error());
        }
        Ok(self.reader.position())
    }

    fn step_error(&mut self) -> NarError {
        match self.reader.next() {
            Err(e) => e,
            Ok(_) => NarError {
                offset: self.reader.position(),
                kind: NarErrorKind::UnexpectedEof {
                    while_reading: "the archive",
                },
            },
        }
    }

    fn run(&mut self, on: &mut dyn FnMut(PushEvent<'_>)) -> Result<(), NarError> {
        loop {
            let left = self.reader.contents_left();
            let source = self.reader.source();
            let avail = source.available().len();
            if left > 0 {
                if avail == 0 {
                    if source.ended {
                        // Let the reader report the truncated contents.
                        return Err(self.step_error());
                    }
                    return Ok(());
                }
                let n = left.min(avail as u64) as usize;
                let start = source.start;
                on(PushEvent::Contents(&source.data[start..start + n]));
                self.reader.source_mut().start += n;
                self.reader.skip_contents_taken(n as u64);
                continue;
            }
            if self.done || (avail < MAX_STEP && !source.ended) {
                return Ok(());
            }
            match self.reader.next()? {
                Some(event) => on(PushEvent::Node(event)),
                None => {
                    self.done = true;
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nar::tree::Node;

    fn sample() -> Vec<u8> {
        let long_target = "t".repeat(MAX_TARGET_LEN);
        let tree = Node::Directory(
            [
                (
                    b"a".to_vec(),
                    Node::Regular {
                        executable: false,
                        contents: vec![7; 100_000],
                    },
                ),
                (
                    b"b".to_vec(),
                    Node::Regular {
                        executable: true,
                        contents: b"#!/bin/sh\n".to_vec(),
                    },
                ),
                (
                    b"c".to_vec(),
                    Node::Symlink {
                        target: long_target.into_bytes(),
                    },
                ),
                (
                    "n".repeat(MAX_NAME_LEN).into_bytes(),
                    Node::Directory(
                        [(
                            b"e".to_vec(),
                            Node::Regular {
                                executable: false,
                                contents: Vec::new(),
                            },
                        )]
                        .into_iter()
                        .collect(),
                    ),
                ),
            ]
            .into_iter()
            .collect(),
        );
        tree.to_nar()
    }

    fn pull_events(nar: &[u8]) -> (Vec<String>, Result<u64, String>) {
        let mut r = NarReader::new(nar);
        let mut out = Vec::new();
        loop {
            match r.next() {
                Ok(Some(e)) => {
                    out.push(format!("{e:?}"));
                    if let Event::Regular { .. } = e {
                        let mut data = Vec::new();
                        if let Err(e) = r.contents().read_to_end(&mut data) {
                            let e = NarError::from_io(e)
                                .map_or_else(|e| e.to_string(), |e| e.to_string());
                            return (out, Err(e));
                        }
                        out.push(format!("{} bytes", data.len()));
                    }
                }
                Ok(None) => return (out, Ok(r.position())),
                Err(e) => return (out, Err(e.to_string())),
            }
        }
    }

    fn push_events(nar: &[u8], chunk: usize) -> (Vec<String>, Result<u64, String>) {
        let mut p = NarPushParser::default();
        let mut out: Vec<String> = Vec::new();
        let mut contents: Option<usize> = None;
        let mut on = |e: PushEvent<'_>| match e {
            PushEvent::Node(n) => {
                if let Some(len) = contents.take() {
                    out.push(format!("{len} bytes"));
                }
                let regular = matches!(n, Event::Regular { .. });
                out.push(format!("{n:?}"));
                if regular {
                    contents = Some(0);
                }
            }
            PushEvent::Contents(c) => *contents.get_or_insert(0) += c.len(),
        };
        for piece in nar.chunks(chunk) {
            if let Err(e) = p.update(piece, &mut on) {
                return (out, Err(e.to_string()));
            }
        }
        let end = p.finish(&mut on).map_err(|e| e.to_string());
        if let Some(len) = contents.take() {
            out.push(format!("{len} bytes"));
        }
        (out, end)
    }

    #[test]
    fn push_gives_what_pull_gives_in_any_chunking() {
        let nar = sample();
        let expected = pull_events(&nar);
        assert!(expected.1.is_ok());
        for chunk in [1, 3, 8, 100, 4096, 65_536, nar.len()] {
            assert_eq!(push_events(&nar, chunk), expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn push_refuses_what_pull_refuses_with_the_same_error() {
        let nar = sample();
        for cut in [0, 5, 16, 200, 50_000, nar.len() - 8, nar.len() - 1] {
            let (_, pull) = pull_events(&nar[..cut]);
            let (_, push) = push_events(&nar[..cut], 1000);
            assert!(pull.is_err(), "cut {cut}");
            assert_eq!(push.as_ref().err(), pull.as_ref().err(), "cut {cut}");
        }
        let mut trailing = nar.clone();
        trailing.extend_from_slice(&[0; 8]);
        assert!(push_events(&trailing, 100).1.is_err());
        assert!(push_events(&trailing, trailing.len()).1.is_err());
        let mut flipped = nar.clone();
        flipped[30] ^= 1;
        assert_eq!(push_events(&flipped, 7).1, pull_events(&flipped).1);
    }
}
