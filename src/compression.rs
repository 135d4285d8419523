//! Compression methods of binary caches and their pure-Rust decoders (usable in wasm): xz
//! (lzma-rust2), zstd (ruzstd), bzip2 (libbz2-rs); concatenated streams/frames are decoded in turn.
//!
//! Every decoder is push-driven ([`Decoder`]: feed input as it arrives, take output as it is
//! made), so an async host (JS `fetch`, a Web Worker) can stream a multi-GB NAR through without
//! blocking; [`decoder`] wraps the same code as a [`Read`] for synchronous callers. Memory is
//! bounded whatever the input claims, by a limit the caller sets ([`DEFAULT_MEMORY_LIMIT`]
//! accepts what Nix accepts): a stream whose xz dictionary or zstd window needs more is refused
//! before anything is allocated, windows and dictionaries grow with the data rather than being
//! allocated whole, and at most one zstd block is decoded per step.
//! The native host swaps in C-backed codecs for speed; both must give the same bytes.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

/// A compression method a cache may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bzip2,
    ];

    /// The name narinfos use (`Compression: xz`).
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// The NAR file extension after `.nar` (`.xz`; empty for none).
    pub const fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Bzip2 => ".bz2",
        }
    }

    /// Guesses the method from a file's first bytes.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else if head.starts_with(&[13, 0, 0, 0, 0, 0, 0, 0, b'n', b'i', b'x']) {
            Some(Compression::None)
        } else {
            None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compression name this build cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported compression {0:?} (supported: none, xz, zstd, bzip2)")]
pub struct UnsupportedCompression(pub String);

impl FromStr for Compression {
    type Err = UnsupportedCompression;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnsupportedCompression(s.to_string()))
    }
}

/// Why decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The compressed data is not valid (the message names the method and the fault).
    #[error("{0}")]
    Corrupt(String),
    /// The input ended inside a stream.
    #[error("{0}: the compressed data ends early")]
    Truncated(Compression),
}

impl From<DecodeError> for io::Error {
    fn from(e: DecodeError) -> io::Error {
        let kind = match e {
            DecodeError::Truncated(_) => io::ErrorKind::UnexpectedEof,
            DecodeError::Corrupt(_) => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// The most memory a decoder may need by default: a zstd window of 2^31 bytes (`zstd
/// --long=31`, the most libzstd decodes) or an xz dictionary of 2 GiB (Nix accepts 1.5 GiB: `xz
/// --lzma2=dict=1536MiB`), plus a block. What a stream declares is checked against the limit
/// before anything is allocated; what is allocated then grows with the data.
pub const DEFAULT_MEMORY_LIMIT: u64 = (1 << 31) + (1 << 20);

/// What a codec asks for after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Call again (it moved, or changed state).
    Again,
    /// It cannot move without more input (a truncation when no more comes).
    NeedInput,
    /// The input ended at the end of a stream: all decoded.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    consumed: usize,
    produced: usize,
    flow: Flow,
}

const fn step(consumed: usize, produced: usize, flow: Flow) -> Step {
    Step {
        consumed,
        produced,
        flow,
    }
}

/// One method's push decoder. `last`: no input will follow `input`. `output` is never empty.
trait Codec: Send {
    fn method(&self) -> Compression;
    fn step(&mut self, input: &[u8], output: &mut [u8], last: bool) -> Result<Step, DecodeError>;
}

fn new_codec(method: Compression, memory_limit: u64) -> Box<dyn Codec> {
    match method {
        Compression::None => Box::new(Identity),
        Compression::Xz => Box::new(Xz::new(memory_limit)),
        Compression::Zstd => Box::new(Zstd::new(memory_limit)),
        Compression::Bzip2 => Box::new(Bzip2::new()),
    }
}

/// A push-driven decoder: [`Decoder::update`] with each piece of input, then [`Decoder::finish`].
/// Output goes to a sink as it is produced; a sink error stops decoding and is passed back.
pub struct Decoder {
    codec: Box<dyn Codec>,
    /// Input not consumed yet (a codec may need a whole block before it can move).
    pending: Vec<u8>,
    out: Box<[u8]>,
    failed: Option<DecodeError>,
}

/// A decoder's or its sink's failure.
#[derive(Debug)]
pub enum PushError<E> {
    Decode(DecodeError),
    Sink(E),
}

const OUT_CHUNK: usize = 64 * 1024;

impl Decoder {
    /// A decoder within [`DEFAULT_MEMORY_LIMIT`].
    pub fn new(method: Compression) -> Decoder {
        Decoder::with_memory_limit(method, DEFAULT_MEMORY_LIMIT)
    }

    /// A decoder refusing a stream whose window or dictionary needs more than `memory_limit`
    /// bytes.
    pub fn with_memory_limit(method: Compression, memory_limit: u64) -> Decoder {
        Decoder {
            codec: new_codec(method, memory_limit),
            pending: Vec::new(),
            out: vec![0; OUT_CHUNK].into_boxed_slice(),
            failed: None,
        }
    }

    /// The method it decodes.
    pub fn method(&self) -> Compression {
        self.codec.method()
    }

    /// Decodes `chunk` (after what earlier chunks left over), giving the output to `sink`.
    pub fn update<E>(
        &mut self,
        chunk: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        if self.pending.is_empty() {
            // The common case: decode straight from the chunk, keep only what is left over.
            let used = self.run(chunk, false, sink)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            let used = self.run(&pending, false, sink);
            pending.drain(..*used.as_ref().unwrap_or(&0));
            self.pending = pending;
            used?;
        }
        Ok(())
    }

    /// Ends the input: decodes the rest and checks the data ended at the end of a stream.
    pub fn finish<E>(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        let pending = std::mem::take(&mut self.pending);
        self.run(&pending, true, sink).map(|_| ())
    }

    /// Steps the codec over `input` until it needs more; returns the bytes consumed.
    fn run<E>(
        &mut self,
        input: &[u8],
        last: bool,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, PushError<E>> {
        if let Some(e) = &self.failed {
            return Err(PushError::Decode(e.clone()));
        }
        let mut at = 0;
        loop {
            let s = match self.codec.step(&input[at..], &mut self.out, last) {
                Ok(s) if s.flow == Flow::NeedInput && last => {
                    Err(DecodeError::Truncated(self.codec.method()))
                }
                other => other,
            };
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(PushError::Decode(e));
                }
            };
            at += s.consumed;
            if s.produced > 0 {
                sink(&self.out[..s.produced]).map_err(PushError::Sink)?;
            }
            if s.flow != Flow::Again {
                return Ok(at);
            }
        }
    }
}

/// Decodes a whole buffer, refusing more than `limit` bytes of output.
pub fn decode_all(method: Compression, input: &[u8], limit: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut sink = |b: &[u8]| -> Result<(), DecodeError> {
        if out.len() as u64 + b.len() as u64 > limit {
            return Err(DecodeError::Corrupt(format!(
                "{method}: decompresses to more than {limit} bytes"
            )));
        }
        out.extend_from_slice(b);
        Ok(())
    };
    let mut d = Decoder::new(method);
    let flat = |r: Result<(), PushError<DecodeError>>| {
        r.map_err(|e| match e {
            PushError::Decode(e) | PushError::Sink(e) => e,
        })
    };
    flat(d.update(input, &mut sink))?;
    flat(d.finish(&mut sink))?;
    Ok(out)
}

/// A pure-Rust streaming decoder for `method` over `input`: the push decoders as a [`Read`].
pub fn decoder<'a, R: Read + 'a>(method: Compression, input: R) -> io::Result<Box<dyn Read + 'a>> {
    if method == Compression::None {
        return Ok(Box::new(input));
    }
    Ok(Box::new(PullDecoder {
        input,
        codec: new_codec(method, DEFAULT_MEMORY_LIMIT),
        buf: vec![0; PULL_BUFFER],
        start: 0,
        end: 0,
        eof: false,
        done: false,
    }))
}

/// The pull adapter's input buffer: more than any codec needs to move (a zstd block: 128 KiB).
const PULL_BUFFER: usize = 256 * 1024;

/// A codec driven by reads: refills its input when the codec asks for more.
struct PullDecoder<R> {
    input: R,
    codec: Box<dyn Codec>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
}

impl<R: Read> Read for PullDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while !self.done && !out.is_empty() {
            let s = self
                .codec
                .step(&self.buf[self.start..self.end], out, self.eof)?;
            self.start += s.consumed;
            match s.flow {
                Flow::Done => self.done = true,
                Flow::NeedInput if self.eof => {
                    return Err(DecodeError::Truncated(self.codec.method()).into())
                }
                Flow::NeedInput => {
                    // Keep the unconsumed tail at the front, then read after it.
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    if self.end == self.buf.len() {
                        return Err(DecodeError::Corrupt(format!(
                            "{}: cannot progress with {PULL_BUFFER} bytes of input",
                            self.codec.method()
                        ))
                        .into());
                    }
                    loop {
                        match self.input.read(&mut self.buf[self.end..]) {
                            Ok(0) => self.eof = true,
                            Ok(n) => self.end += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        }
                        break;
                    }
                }
                Flow::Again => {}
            }
            if s.produced > 0 {
                return Ok(s.produced);
            }
        }
        Ok(0)
    }
}

/// `none`: the input is the output.
struct Identity;

impl Codec for Identity {
    fn method(&self) -> Compression {
        Compression::None
    }
    fn step(&mut self, input: &[u8], output: &mut [u8], last: bool) -> Result<Step, DecodeError> {
        let n = input.len().min(output.len());
        output[..n].copy_from_slice(&input[..n]);
        Ok(match n {
            0 if last => step(0, 0, Flow::Done),
            0 => step(0, 0, Flow::NeedInput),
            n => step(n, n, Flow::Again),
        })
    }
}

/// xz: lzma-rust2's sans-I/O stream decoder (concatenated streams and their padding included),
/// with a memory limit checked before a dictionary is allocated (which then grows with the data).
struct Xz {
    stream: lzma_rust2::XzStream,
    memory_limit: u64,
}

impl Xz {
    fn new(memory_limit: u64) -> Xz {
        // In KiB; u32::MAX would mean no limit at all.
        let limit_kib = u32::try_from(memory_limit / 1024)
            .unwrap_or(u32::MAX)
            .min(u32::MAX - 1);
        Xz {
            stream: lzma_rust2::XzStream::new_mem_limit(true, limit_kib),
            memory_limit,
        }
    }
}

impl Codec for Xz {
    fn method(&self) -> Compression {
        Compression::Xz
    }

    fn step(&mut self, input: &[u8], output: &mut [u8], last: bool) -> Result<Step, DecodeError> {
        use lzma_rust2::{Action, Status};
        let action = if last { Action::Finish } else { Action::Run };
        let r = self.stream.process(input, output, action).map_err(|e| {
            let e = e.to_string();
            if e.contains("mem_limit") || e.contains("memory") {
                DecodeError::Corrupt(format!(
                    "xz: the stream needs a dictionary larger than the memory limit allows ({} bytes)",
                    self.memory_limit
                ))
            } else if e.contains("end of") || e.contains("EOF") || e.contains("truncated") {
                DecodeError::Truncated(Compression::Xz)
            } else {
                DecodeError::Corrupt(format!("xz: {e}"))
            }
        })?;
        let flow = match r.status {
            Status::StreamEnd if last && r.bytes_consumed == input.len() => Flow::Done,
            Status::StreamEnd => Flow::Again,
            Status::Ok if r.bytes_consumed == 0 && r.bytes_produced == 0 => Flow::NeedInput,
            Status::Ok => Flow::Again,
        };
        Ok(step(r.bytes_consumed, r.bytes_produced, flow))
    }
}

/// zstd: frames in turn (skippable frames skipped), each block decoded on its own so output
/// stays bounded however well the input compresses, and each frame's checksum checked. The
/// window a frame declares is checked against the memory limit before its decoder is set up.
struct Zstd {
    /// The current frame's decoder (see [`spare_frame_decoder`]).
    frame: ruzstd::decoding::FrameDecoder,
    state: ZstdState,
    /// Frames begun (an empty input is no zstd data).
    frames: u64,
    memory_limit: u64,
    /// The current frame's window, and the bytes it has decoded so far.
    window: u64,
    decoded: u64,
}

/// The largest window of a frame whose decoder is kept for another frame when it is done.
const SPARE_WINDOW: u64 = 1 << 20;
/// Decoders kept per thread.
const SPARES: usize = 8;

thread_local! {
    /// Frame decoders done with frames of small windows. A cache of small NARs is mostly frames
    /// of a few KiB, and a decoder made anew costs more than such a frame: its tables and
    /// buffers are allocated again, where a reset one keeps them (a buffer no larger than its
    /// window allows).
    static SPARE_DECODERS: std::cell::RefCell<Vec<ruzstd::decoding::FrameDecoder>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A decoder for a frame of `window` bytes: a spare one if the window is small, else a new one
/// (whose buffers are not kept beyond the frame: a large window's memory goes with it). The
/// caller has checked the window against its memory limit, so ruzstd's own cap is lifted.
fn spare_frame_decoder(window: u64) -> ruzstd::decoding::FrameDecoder {
    // (`try_with`: a decoder may be made or dropped while the thread is ending.)
    let spare = (window <= SPARE_WINDOW)
        .then(|| SPARE_DECODERS.try_with(|s| s.borrow_mut().pop()).ok())
        .flatten()
        .flatten();
    spare.unwrap_or_else(|| {
        let mut frame = ruzstd::decoding::FrameDecoder::new();
        frame.set_max_window_size(u64::MAX);
        frame
    })
}

/// Keeps a decoder that served a frame of `window` bytes, if that is small and few are kept.
fn keep_frame_decoder(frame: ruzstd::decoding::FrameDecoder, window: u64) {
    if window <= SPARE_WINDOW {
        let _ = SPARE_DECODERS.try_with(|s| {
            let mut spares = s.borrow_mut();
            if spares.len() < SPARES {
                spares.push(frame);
            }
        });
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        let frame = std::mem::take(&mut self.frame);
        keep_frame_decoder(frame, self.window);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZstdState {
    Header,
    /// Inside a frame; `last_block` once its last block has been decoded.
    Blocks {
        last_block: bool,
    },
    Skip {
        left: u64,
    },
}

/// Largest frame header (magic, descriptor, window, dictionary id, content size).
const ZSTD_MAX_HEADER: usize = 18;
const ZSTD_MAX_BLOCK: usize = 128 * 1024;

impl Zstd {
    fn new(memory_limit: u64) -> Zstd {
        Zstd {
            frame: spare_frame_decoder(0),
            state: ZstdState::Header,
            frames: 0,
            memory_limit,
            window: 0,
            decoded: 0,
        }
    }

    /// Refuses a frame whose window needs more memory than allowed (or than this build can
    /// address: ruzstd keeps the window in one buffer of a power of two, which on a 32-bit
    /// target, wasm, must stay under 2 GiB).
    fn check_window(&self, window: u64) -> Result<(), DecodeError> {
        if window.saturating_add(ZSTD_MAX_BLOCK as u64) > self.memory_limit {
            return Err(zstd_error(format!(
                "the frame needs a window of {window} bytes, more than the memory limit allows ({} bytes)",
                self.memory_limit
            )));
        }
        Ok(())
    }

    /// On 32-bit targets, whether the window held so far plus one more block still fits.
    fn block_fits(&self) -> Result<(), DecodeError> {
        const MOST_HELD: u64 = 1 << 30;
        let held = self.window.min(self.decoded) + 2 * ZSTD_MAX_BLOCK as u64;
        if usize::BITS < 64 && held > MOST_HELD {
            return Err(zstd_error(format!(
                "a window of {} bytes cannot be kept past {MOST_HELD} bytes of output by a 32-bit build",
                self.window
            )));
        }
        Ok(())
    }
}

/// The window a zstd frame header declares (`None`: not a zstd frame header, a skippable frame).
fn zstd_window(header: &[u8]) -> Option<u64> {
    if header.get(..4)? != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let descriptor = *header.get(4)?;
    if descriptor & 0x20 == 0 {
        // Not a single segment: a window descriptor.
        let w = *header.get(5)?;
        let base = 1u64 << (10 + (w >> 3));
        return Some(base + (base / 8) * u64::from(w & 7));
    }
    // A single segment: the window is the content size.
    let dict_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let at = 5 + dict_len;
    let size = match descriptor >> 6 {
        0 => u64::from(*header.get(at)?),
        1 => u64::from(u16::from_le_bytes(header.get(at..at + 2)?.try_into().ok()?)) + 256,
        2 => u64::from(u32::from_le_bytes(header.get(at..at + 4)?.try_into().ok()?)),
        _ => u64::from_le_bytes(header.get(at..at + 8)?.try_into().ok()?),
    };
    Some(size)
}

fn zstd_error(e: impl fmt::Display) -> DecodeError {
    DecodeError::Corrupt(format!("zstd: {e}"))
}

impl Codec for Zstd {
    fn method(&self) -> Compression {
        Compression::Zstd
    }

    fn step(&mut self, input: &[u8], output: &mut [u8], last: bool) -> Result<Step, DecodeError> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        match self.state {
            ZstdState::Header => {
                if input.is_empty() {
                    // The end, after at least one frame.
                    let end = last && self.frames > 0;
                    return Ok(step(0, 0, if end { Flow::Done } else { Flow::NeedInput }));
                }
                if input.len() < ZSTD_MAX_HEADER && !last {
                    return Ok(step(0, 0, Flow::NeedInput));
                }
                let window = zstd_window(input);
                if let Some(window) = window {
                    self.check_window(window)?;
                }
                let mut rest = input;
                // Each frame its own decoder (the first one's was taken with this codec, for a
                // small window): nothing of a large window is kept for the next frame.
                let this_window = window.unwrap_or(0);
                if self.frames > 0 || this_window > SPARE_WINDOW {
                    let done = std::mem::replace(&mut self.frame, spare_frame_decoder(this_window));
                    keep_frame_decoder(done, self.window);
                }
                self.window = this_window;
                match self.frame.reset(&mut rest) {
                    Ok(()) => {
                        self.frames += 1;
                        self.window = window.unwrap_or(0);
                        self.decoded = 0;
                        self.state = ZstdState::Blocks { last_block: false };
                        Ok(step(input.len() - rest.len(), 0, Flow::Again))
                    }
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        self.frames += 1;
                        self.state = ZstdState::Skip {
                            left: u64::from(length),
                        };
                        Ok(step(8, 0, Flow::Again))
                    }
                    Err(_) if input.len() < ZSTD_MAX_HEADER && input.len() < 4 => {
                        Ok(step(0, 0, Flow::NeedInput))
                    }
                    Err(e) => Err(zstd_error(e)),
                }
            }
            ZstdState::Skip { left } => {
                let n = left.min(input.len() as u64) as usize;
                self.state = if left == n as u64 {
                    ZstdState::Header
                } else {
                    ZstdState::Skip {
                        left: left - n as u64,
                    }
                };
                Ok(step(
                    n,
                    0,
                    if n == 0 { Flow::NeedInput } else { Flow::Again },
                ))
            }
            ZstdState::Blocks { last_block } => {
                // Drain what is decoded before decoding more.
                if self.frame.can_collect() > 0 {
                    let n = self.frame.read(output).map_err(zstd_error)?;
                    return Ok(step(0, n, Flow::Again));
                }
                if self.frame.is_finished() {
                    if let Some(expected) = self.frame.get_checksum_from_data() {
                        if self.frame.get_calculated_checksum() != Some(expected) {
                            return Err(DecodeError::Corrupt(
                                "zstd: frame checksum mismatch (corrupt data)".into(),
                            ));
                        }
                    }
                    self.state = ZstdState::Header;
                    return Ok(step(0, 0, Flow::Again));
                }
                // The next piece: the frame's checksum after its last block, or one block.
                let piece = if last_block {
                    4
                } else {
                    let Some(header) = input.get(..3) else {
                        return Ok(step(0, 0, Flow::NeedInput));
                    };
                    let header = u32::from_le_bytes([header[0], header[1], header[2], 0]);
                    let size = (header >> 3) as usize;
                    let content = match (header >> 1) & 3 {
                        1 => 1, // RLE: one byte, repeated `size` times
                        3 => return Err(zstd_error("reserved block type (corrupt data)")),
                        _ => size,
                    };
                    if size > ZSTD_MAX_BLOCK {
                        return Err(zstd_error(format!(
                            "a block of {size} bytes, more than the {ZSTD_MAX_BLOCK} allowed"
                        )));
                    }
                    if header & 1 == 1 {
                        self.state = ZstdState::Blocks { last_block: true };
                    }
                    3 + content
                };
                if input.len() < piece {
                    self.state = ZstdState::Blocks { last_block };
                    return Ok(step(0, 0, Flow::NeedInput));
                }
                self.block_fits()?;
                let (read, written) = self
                    .frame
                    .decode_from_to(&input[..piece], output)
                    .map_err(zstd_error)?;
                if read != piece {
                    return Err(zstd_error(format!(
                        "the decoder took {read} of a {piece}-byte block"
                    )));
                }
                self.decoded += ZSTD_MAX_BLOCK as u64;
                Ok(step(read, written, Flow::Again))
            }
        }
    }
}

/// bzip2: streams in turn.
struct Bzip2 {
    stream: Option<bzip2::Decompress>,
}

impl Bzip2 {
    fn new() -> Bzip2 {
        Bzip2 {
            stream: Some(bzip2::Decompress::new(false)),
        }
    }
}

impl Codec for Bzip2 {
    fn method(&self) -> Compression {
        Compression::Bzip2
    }

    fn step(&mut self, input: &[u8], output: &mut [u8], last: bool) -> Result<Step, DecodeError> {
        let Some(stream) = &mut self.stream else {
            // Between streams: the end, or another stream.
            if input.is_empty() {
                return Ok(step(0, 0, if last { Flow::Done } else { Flow::NeedInput }));
            }
            self.stream = Some(bzip2::Decompress::new(false));
            return Ok(step(0, 0, Flow::Again));
        };
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let status = stream
            .decompress(input, output)
            .map_err(|e| DecodeError::Corrupt(format!("bzip2: {e}")))?;
        let consumed = (stream.total_in() - in_before) as usize;
        let produced = (stream.total_out() - out_before) as usize;
        if status == bzip2::Status::StreamEnd {
            self.stream = None;
            return Ok(step(consumed, produced, Flow::Again));
        }
        Ok(step(
            consumed,
            produced,
            if consumed == 0 && produced == 0 {
                Flow::NeedInput
            } else {
                Flow::Again
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sniffing() {
        for c in Compression::ALL {
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
        }
        assert!("br".parse::<Compression>().is_err());
        assert_eq!(Compression::sniff(b"BZh91AY"), Some(Compression::Bzip2));
        assert_eq!(Compression::sniff(b"junk"), None);
    }
}
