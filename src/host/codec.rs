//! Native, C-backed codecs (liblzma, libzstd, libbz2-rs) for speed: multi-threaded encoders for
//! large paths, and fast decoders giving the same bytes as the pure ones in [`crate::compression`].

use std::io::{self, Read, Write};

use crate::compression::Compression;

/// xz block size for the multi-threaded encoder: preset 6's default (3 × 8 MiB dictionary).
/// Fixed, so the output does not depend on the number of threads.
const XZ_BLOCK_SIZE: u64 = 24 << 20;

/// Input zstd's multi-threaded mode gives each worker at the default level: a job of 4 × the
/// 2 MiB window of level 3 (higher levels have larger jobs: extra threads then just wait).
const ZSTD_JOB_SIZE: u64 = 8 << 20;

/// How many threads the encoder can keep busy on `size` bytes: one per xz block or zstd job,
/// the pieces the multi-threaded encoders hand out (1 for bzip2 and none).
pub fn parallel_pieces(method: Compression, size: u64) -> u64 {
    match method {
        Compression::Xz => size.div_ceil(XZ_BLOCK_SIZE),
        Compression::Zstd => size.div_ceil(ZSTD_JOB_SIZE),
        Compression::None | Compression::Bzip2 => 1,
    }
    .max(1)
}

/// A streaming compressor; call [`Encoder::finish`] to end the stream.
pub enum Encoder<W: Write> {
    None(W),
    Xz(liblzma::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

/// Default level per method: Nix's (xz 6, zstd 3, bzip2 9).
pub fn default_level(method: Compression) -> u32 {
    match method {
        Compression::None => 0,
        Compression::Xz => 6,
        Compression::Zstd => 3,
        Compression::Bzip2 => 9,
    }
}

impl<W: Write> Encoder<W> {
    /// An encoder using up to `threads` threads (≥ 1). The output depends only on the method and
    /// level, never on `threads`.
    pub fn new(
        method: Compression,
        level: Option<u32>,
        threads: u32,
        out: W,
    ) -> io::Result<Encoder<W>> {
        let level = level.unwrap_or_else(|| default_level(method));
        let threads = threads.max(1);
        Ok(match method {
            Compression::None => Encoder::None(out),
            Compression::Xz => {
                // Plain LZMA2 with a CRC64 check and no BCJ filter, as Nix writes: decodable by
                // Nix 2.8 and by pure-Rust decoders. The multi-threaded encoder is used even with
                // one thread so that block layout (and so the bytes) never depend on `threads`.
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .preset(level)
                    .threads(threads)
                    .block_size(XZ_BLOCK_SIZE)
                    .check(liblzma::stream::Check::Crc64)
                    .encoder()
                    .map_err(io::Error::other)?;
                Encoder::Xz(liblzma::write::XzEncoder::new_stream(out, stream))
            }
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level as i32)?;
                // zstd's multi-threaded mode gives the same bytes for any number of workers ≥ 1.
                e.multithread(threads)?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Compression::Bzip2 => Encoder::Bzip2(bzip2::write::BzEncoder::new(
                out,
                bzip2::Compression::new(level.clamp(1, 9)),
            )),
        })
    }

    /// Ends the stream and gives back the sink.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Bzip2(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Bzip2(e) => e.flush(),
        }
    }
}

/// A fast native decoder (multi-stream / multi-frame aware).
pub fn decoder<'a, R: Read + 'a>(method: Compression, input: R) -> io::Result<Box<dyn Read + 'a>> {
    let input = io::BufReader::with_capacity(256 * 1024, input);
    Ok(match method {
        Compression::None => Box::new(input),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_and_pure_codecs_agree() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for method in Compression::ALL {
            let mut e = Encoder::new(method, None, 2, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let packed = e.finish().unwrap();
            let mut one_thread = Encoder::new(method, None, 1, Vec::new()).unwrap();
            one_thread.write_all(&data).unwrap();
            assert_eq!(
                one_thread.finish().unwrap(),
                packed,
                "{method}: output depends on threads"
            );
            let mut native = Vec::new();
            decoder(method, &packed[..])
                .unwrap()
                .read_to_end(&mut native)
                .unwrap();
            let mut pure = Vec::new();
            crate::compression::decoder(method, &packed[..])
                .unwrap()
                .read_to_end(&mut pure)
                .unwrap();
            assert!(native == data && pure == data, "{method}: round trip");
        }
    }
}
