//! Compression methods of binary caches and their pure-Rust streaming decoders (usable in wasm):
//! zstd (ruzstd), xz (lzma-rust2, multi-block and multi-stream), bzip2 (libbz2-rs). The native
//! host swaps in C-backed codecs for speed; both must give the same bytes.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
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

/// A pure-Rust streaming decoder for `method` over `input`.
pub fn decoder<'a, R: Read + 'a>(method: Compression, input: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match method {
        Compression::None => Box::new(input),
        Compression::Zstd => Box::new(ZstdFrames::new(BufReader::with_capacity(64 * 1024, input))),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(
            BufReader::with_capacity(64 * 1024, input),
            true,
        )),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::with_capacity(
            64 * 1024,
            input,
        ))),
    })
}

/// Decodes every zstd frame of a stream in turn (zstd files may hold several frames).
struct ZstdFrames<R: BufRead> {
    decoder: Result<
        Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
        String,
    >,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(input: R) -> Self {
        ZstdFrames {
            decoder: ruzstd::decoding::StreamingDecoder::new(input)
                .map(Some)
                .map_err(|e| format!("zstd: {e}")),
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let d = match &mut self.decoder {
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone())),
                Ok(None) => return Ok(0),
                Ok(Some(d)) => d,
            };
            let n = d
                .read(buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: check its content checksum, if it has one (as libzstd does).
            if let Some(expected) = d.decoder.get_checksum_from_data() {
                if d.decoder.get_calculated_checksum() != Some(expected) {
                    let e = "zstd: frame checksum mismatch (corrupt data)".to_string();
                    self.decoder = Err(e.clone());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            // Another frame may follow.
            let mut input = self
                .decoder
                .as_mut()
                .ok()
                .and_then(Option::take)
                .expect("present")
                .into_inner();
            if input.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map(Some)
                .map_err(|e| format!("zstd: {e}"));
        }
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
