//! Native, C-backed codecs (liblzma, libzstd, libbz2-rs) for speed: multi-threaded encoders for
//! large paths, and fast decoders giving the same bytes as the pure ones in [`crate::compression`].

use std::io::{self, Read, Write};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::xz::{Lzma2, XzWriter};
use crate::compression::Compression;

/// The default xz filter: LZMA2 from preset 6 with a 16 MiB dictionary and a shallower match
/// search (nice length 32, depth 12). On real trees (measured on CPython's 50 MiB library, see
/// benches/README.md) it needs ~22 % less CPU than Nix's preset 6 for output within ~0.7 % of its
/// size: the larger dictionary wins back what the shorter search loses. An explicit `--level N`
/// is preset N (its dictionary, like this one, never larger than the NAR).
const XZ_DEFAULT_DICT: u32 = 16 << 20;
const XZ_DEFAULT_NICE_LEN: u32 = 32;
const XZ_DEFAULT_DEPTH: u32 = 12;

/// NARs below this size are one xz block (splitting them would cost ratio for little speed).
const XZ_SPLIT_FROM: u64 = 16 << 20;
/// Larger NARs are cut into an even number of equal blocks of at most this size, so that two
/// threads (or any even number) finish together; the multi-threaded encoder holds a block per
/// thread in memory.
const XZ_MAX_BLOCK: u64 = 32 << 20;

/// Input each worker of zstd's multi-threaded mode takes at a time, at levels up to 3 (2 MiB
/// window): 4 MiB rather than zstd's default of 4 windows, so that the first job starts and
/// the last one ends sooner (~5 % less wall time on a 50 MiB NAR, ~0.2 % larger). Higher
/// levels keep zstd's default (larger jobs: there, extra threads just wait).
const ZSTD_JOB_SIZE: u64 = 4 << 20;

/// The uncompressed size of one xz block for a NAR of `nar_size` bytes. A function of the size
/// alone (never of the number of threads), so a NAR always compresses to the same bytes.
fn xz_block_size(nar_size: u64) -> u64 {
    if nar_size < XZ_SPLIT_FROM {
        return nar_size.max(1 << 16);
    }
    let blocks = 2 * nar_size.div_ceil(2 * XZ_MAX_BLOCK);
    nar_size.div_ceil(blocks)
}

/// How many threads the encoder can keep busy on a NAR of `nar_size` bytes: one per xz block or
/// zstd job, the pieces the multi-threaded encoders hand out (1 for bzip2 and none).
pub fn parallel_pieces(method: Compression, level: Option<u32>, nar_size: u64) -> u64 {
    match method {
        Compression::Xz => nar_size.div_ceil(xz_block_size(nar_size)),
        // Above level 3, zstd's own job size: 4 windows, at least 8 MiB (an estimate).
        Compression::Zstd => match level.unwrap_or(3) {
            0..=3 => nar_size.div_ceil(ZSTD_JOB_SIZE),
            _ => nar_size.div_ceil(8 << 20),
        },
        Compression::None | Compression::Bzip2 => 1,
    }
    .max(1)
}

/// The memory (bytes) the xz encoder for a NAR of `nar_size` bytes needs with `threads`
/// threads: what liblzma says of its encoder, and our buffers.
pub fn xz_memory(level: Option<u32>, nar_size: u64, threads: u32) -> io::Result<u64> {
    let block_size = xz_block_size(nar_size);
    let blocks = (block_size < nar_size).then_some(block_size);
    let encoder = super::xz::encoder_memory(xz_settings(level, nar_size), blocks, threads)?;
    Ok(encoder + XZ_OWN_BUFFERS)
}

/// The xz writer's output buffer and the builder's around it.
const XZ_OWN_BUFFERS: u64 = 1 << 20;

/// A streaming compressor; call [`Encoder::finish`] to end the stream.
pub struct Encoder<W: Write> {
    codec: Codec<W>,
    /// Where bytes compressed are counted ([`Encoder::report_progress`]), for codecs that
    /// cannot tell: theirs is the count of bytes given to them.
    fed: Option<Arc<AtomicU64>>,
}

enum Codec<W: Write> {
    None(W),
    Xz(XzWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

/// Default level per method: Nix's (xz 6, zstd 3, bzip2 9); xz's default filter is preset 6 with
/// changes (a 16 MiB dictionary and a shallower search: `XZ_DEFAULT_DICT` and what follows it).
pub fn default_level(method: Compression) -> u32 {
    match method {
        Compression::None => 0,
        Compression::Xz => 6,
        Compression::Zstd => 3,
        Compression::Bzip2 => 9,
    }
}

/// Checks an explicit level against the method's range, for a message before any work starts.
pub fn check_level(method: Compression, level: u32) -> Result<(), String> {
    let range = match method {
        Compression::None => return Err("--level has no meaning with --compression none".into()),
        Compression::Xz => 0..=9,
        Compression::Zstd => 1..=22,
        Compression::Bzip2 => 1..=9,
    };
    if range.contains(&level) {
        Ok(())
    } else {
        Err(format!(
            "--level {level} is out of range for {method}: expected {} to {}",
            range.start(),
            range.end()
        ))
    }
}

/// The dictionary size of xz preset `level` (liblzma's table; the options have no getter).
fn xz_preset_dict(level: u32) -> u32 {
    const MIB: u32 = 1 << 20;
    match level {
        0 => MIB / 4,
        1 => MIB,
        2 => 2 * MIB,
        3 | 4 => 4 * MIB,
        5 | 6 => 8 * MIB,
        7 => 16 * MIB,
        8 => 32 * MIB,
        _ => 64 * MIB,
    }
}

/// The LZMA2 settings for a NAR of `nar_size` bytes: the dictionary never exceeds the NAR (the
/// output would be no smaller; the match finder's tables, allocated and cleared per path, would).
fn xz_settings(level: Option<u32>, nar_size: u64) -> Lzma2 {
    let needed = nar_size
        .max(4096)
        .checked_next_power_of_two()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(u32::MAX);
    match level {
        None => Lzma2 {
            preset: 6,
            dict_size: XZ_DEFAULT_DICT.min(needed),
            nice_len: Some(XZ_DEFAULT_NICE_LEN),
            depth: Some(XZ_DEFAULT_DEPTH),
        },
        Some(level) => Lzma2 {
            preset: level,
            dict_size: xz_preset_dict(level).min(needed),
            nice_len: None,
            depth: None,
        },
    }
}

impl<W: Write> Encoder<W> {
    /// An encoder for a NAR of (expected) `nar_size` bytes using up to `threads` threads
    /// (≥ 1). The output depends only on the method, the level and `nar_size`, never on
    /// `threads`; a NAR of another size than announced is still compressed correctly.
    pub fn new(
        method: Compression,
        level: Option<u32>,
        nar_size: u64,
        threads: u32,
        out: W,
    ) -> io::Result<Encoder<W>> {
        let threads = threads.max(1);
        let codec = match method {
            Compression::None => Codec::None(out),
            Compression::Xz => {
                // Plain LZMA2 with a CRC64 check and no BCJ filter, as Nix writes: decodable by
                // Nix 2.8 and by pure-Rust decoders. Block layout (and so the bytes) depends on
                // `nar_size` alone, never on `threads`: a NAR of one block gets the
                // single-threaded encoder (no threads to start for each small path), a larger
                // one the multi-threaded encoder even with one thread.
                let block_size = xz_block_size(nar_size);
                let blocks = (block_size < nar_size).then_some(block_size);
                Codec::Xz(XzWriter::new(
                    xz_settings(level, nar_size),
                    blocks,
                    threads,
                    out,
                )?)
            }
            Compression::Zstd => {
                let level = level.unwrap_or_else(|| default_level(method));
                let mut e = zstd::stream::write::Encoder::new(out, level as i32)?;
                // zstd's multi-threaded mode gives the same bytes for any number of workers ≥ 1,
                // but starts its workers anew for every stream: a NAR of one job (most store
                // paths) goes to the single-threaded encoder instead. Which one is used depends
                // on `nar_size` alone, so the bytes still do too.
                if parallel_pieces(method, Some(level), nar_size) > 1 {
                    e.multithread(threads)?;
                    if level <= 3 {
                        e.set_parameter(zstd::zstd_safe::CParameter::JobSize(
                            ZSTD_JOB_SIZE as u32,
                        ))?;
                    }
                }
                e.include_checksum(true)?;
                Codec::Zstd(e)
            }
            Compression::Bzip2 => Codec::Bzip2(bzip2::write::BzEncoder::new(
                out,
                bzip2::Compression::new(level.unwrap_or_else(|| default_level(method)).clamp(1, 9)),
            )),
        };
        Ok(Encoder { codec, fed: None })
    }

    /// Has the encoder add the uncompressed bytes it has compressed, as it does, to `counter`.
    /// xz tells (its multi-threaded encoder takes whole blocks in long before compressing
    /// them); the others take small buffers in, so the bytes given to them are counted.
    pub fn report_progress(&mut self, counter: &Arc<AtomicU64>) {
        match &mut self.codec {
            Codec::Xz(xz) => xz.report_progress(Arc::clone(counter)),
            _ => self.fed = Some(Arc::clone(counter)),
        }
    }

    /// Ends the stream and gives back the sink.
    pub fn finish(self) -> io::Result<W> {
        match self.codec {
            Codec::None(w) => Ok(w),
            Codec::Xz(e) => e.finish(),
            Codec::Zstd(e) => e.finish(),
            Codec::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.codec {
            Codec::None(w) => w.write(buf),
            Codec::Xz(e) => e.write(buf),
            Codec::Zstd(e) => e.write(buf),
            Codec::Bzip2(e) => e.write(buf),
        }?;
        if let Some(fed) = &self.fed {
            fed.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.codec {
            Codec::None(w) => w.flush(),
            Codec::Xz(e) => e.flush(),
            Codec::Zstd(e) => e.flush(),
            Codec::Bzip2(e) => e.flush(),
        }
    }
}

/// A fast native decoder (multi-stream / multi-frame aware), accepting what Nix accepts: zstd
/// windows up to 2^31 bytes (libzstd's own default stops at 2^27), xz dictionaries of any size.
pub fn decoder<'a, R: Read + 'a>(method: Compression, input: R) -> io::Result<Box<dyn Read + 'a>> {
    let input = io::BufReader::with_capacity(256 * 1024, input);
    Ok(match method {
        Compression::None => Box::new(input),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)?;
            d.window_log_max(31)?;
            Box::new(d)
        }
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
    })
}

/// Decodes a whole object held in memory, refusing more than `limit` bytes of output: what
/// [`crate::compression::decode_all`] does, natively (several times faster for zstd).
pub fn decode_all(method: Compression, input: &[u8], limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if method == Compression::Zstd {
        // The frame says its size, usually: one allocation, no copies as the output grows
        // (believed up to a ratio no real text reaches).
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(input) {
            out.reserve(size.min(limit).min(64 * input.len() as u64) as usize);
        }
        zstd::stream::read::Decoder::with_buffer(input)?
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)?;
    } else {
        decoder(method, input)?
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)?;
    }
    if out.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{method}: decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// The lookup index's shards decompressed natively
/// (`nar_tool::cache::index::reader::IndexReader::with_decompressor`).
pub fn decompress_zstd(input: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    decode_all(Compression::Zstd, input, limit).map_err(|e| e.to_string())
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
            let size = data.len() as u64;
            let mut e = Encoder::new(method, None, size, 2, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let packed = e.finish().unwrap();
            let mut one_thread = Encoder::new(method, None, size, 1, Vec::new()).unwrap();
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

    #[test]
    fn decode_all_gives_what_the_pure_one_does_and_stops_at_its_limit() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for method in Compression::ALL {
            let mut e = Encoder::new(method, None, data.len() as u64, 1, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let packed = e.finish().unwrap();
            let limit = data.len() as u64;
            assert_eq!(
                decode_all(method, &packed, limit).unwrap(),
                data,
                "{method}"
            );
            let pure = crate::compression::decode_all(method, &packed, limit).unwrap();
            assert_eq!(pure, data, "{method}");
            let err = decode_all(method, &packed, limit - 1).unwrap_err();
            assert!(err.to_string().contains("more than"), "{method}: {err}");
        }
        // A shard as the index writes it (ruzstd's encoder), and bytes that are not zstd.
        let shard = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(decompress_zstd(&shard, 1 << 20).unwrap(), data);
        assert!(decompress_zstd(b"not zstd at all", 1 << 20).is_err());
        assert!(decompress_zstd(&shard[..shard.len() / 2], 1 << 20).is_err());
    }

    #[test]
    fn xz_blocks_are_even_and_bounded() {
        const MIB: u64 = 1 << 20;
        assert_eq!(parallel_pieces(Compression::Xz, None, 0), 1);
        assert_eq!(parallel_pieces(Compression::Xz, None, 15 * MIB), 1);
        for size in [
            16 * MIB,
            50 * MIB,
            64 * MIB,
            64 * MIB + 1,
            1000 * MIB,
            10 << 30,
        ] {
            let block = xz_block_size(size);
            let blocks = parallel_pieces(Compression::Xz, None, size);
            assert!(
                blocks % 2 == 0 && block <= XZ_MAX_BLOCK,
                "{size}: {blocks} × {block}"
            );
            assert!(
                block * blocks >= size && block * (blocks - 1) < size,
                "{size}"
            );
        }
        assert_eq!(xz_block_size(50 * MIB), 25 * MIB);
    }

    #[test]
    fn output_depends_on_the_announced_size_only() {
        // xz: two blocks (announced ≥ 16 MiB) or one, and the dictionary shrunk to a small NAR;
        // zstd: the multi-threaded mode (announced over one job) or the calling thread. Either
        // way the stream decodes, and the same announcement gives the same bytes.
        let data: Vec<u8> = (0..(600u32 << 10))
            .map(|i| (i % 253) as u8 ^ (i >> 12) as u8)
            .collect();
        for method in [Compression::Xz, Compression::Zstd] {
            let pack = |announced: u64, threads: u32| {
                let mut e = Encoder::new(method, None, announced, threads, Vec::new()).unwrap();
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            };
            for announced in [data.len() as u64, 4096, 40 << 20] {
                let packed = pack(announced, 2);
                assert_eq!(
                    packed,
                    pack(announced, 1),
                    "{method}: announced {announced}"
                );
                let mut out = Vec::new();
                crate::compression::decoder(method, &packed[..])
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
                assert!(out == data, "{method}: announced {announced}: round trip");
            }
        }
    }

    #[test]
    fn a_zstd_nar_of_one_job_is_compressed_by_the_single_threaded_encoder() {
        // Not by the multi-threaded mode, which starts workers for every stream (and, from
        // ~128 KiB, writes other bytes: ~0.5 % larger).
        for size in [5000usize, 3 << 20] {
            let data: Vec<u8> = (0..size)
                .map(|i| (i % 251) as u8 ^ (i >> 9) as u8 ^ ((i * 7919) >> 13) as u8)
                .collect();
            let mut single = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            single.include_checksum(true).unwrap();
            single.write_all(&data).unwrap();
            let mut ours =
                Encoder::new(Compression::Zstd, None, size as u64, 4, Vec::new()).unwrap();
            ours.write_all(&data).unwrap();
            assert!(ours.finish().unwrap() == single.finish().unwrap(), "{size}");
        }
    }

    #[test]
    fn levels_are_checked() {
        assert!(check_level(Compression::Xz, 9).is_ok());
        assert!(check_level(Compression::Xz, 10)
            .unwrap_err()
            .contains("0 to 9"));
        assert!(check_level(Compression::Zstd, 0).is_err());
        assert!(check_level(Compression::Bzip2, 1).is_ok());
        assert!(check_level(Compression::None, 1).is_err());
    }
}
