//! The pure push decoders (what wasm uses) against the native C codecs and the corpus: same
//! bytes in any chunking, truncation and corruption refused, concatenated streams decoded,
//! output of well-compressed input bounded per step.

use std::io::{Read, Write};

use nar_tool::compression::{self, Compression, DecodeError, Decoder, PushError};
use nar_tool::host::codec::Encoder;

fn pack(method: Compression, data: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(method, None, data.len() as u64, 1, Vec::new()).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sample(len: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Half compressible, half noise.
            if (i / 4096) % 2 == 0 {
                (i % 7) as u8
            } else {
                seed as u8
            }
        })
        .collect()
}

/// Pushes `packed` in pieces of `chunk` bytes; the largest single output piece is tracked.
fn push(method: Compression, packed: &[u8], chunk: usize) -> Result<(Vec<u8>, usize), DecodeError> {
    let mut out = Vec::new();
    let mut largest = 0;
    let mut sink = |b: &[u8]| -> Result<(), ()> {
        largest = largest.max(b.len());
        out.extend_from_slice(b);
        Ok(())
    };
    let mut d = Decoder::new(method);
    let flat = |r: Result<(), PushError<()>>| match r {
        Ok(()) => Ok(()),
        Err(PushError::Decode(e)) => Err(e),
        Err(PushError::Sink(())) => unreachable!(),
    };
    for piece in packed.chunks(chunk.max(1)) {
        flat(d.update(piece, &mut sink))?;
    }
    flat(d.finish(&mut sink))?;
    Ok((out, largest))
}

#[test]
fn push_decoders_match_native_in_any_chunking() {
    let data = sample(700_000);
    for method in Compression::ALL {
        let packed = pack(method, &data);
        for chunk in [1, 7, 4096, 65_537, packed.len()] {
            if chunk == 1 && packed.len() > 200_000 {
                continue;
            }
            let (out, largest) = push(method, &packed, chunk)
                .unwrap_or_else(|e| panic!("{method} in chunks of {chunk}: {e}"));
            assert!(out == data, "{method} in chunks of {chunk}: wrong bytes");
            assert!(largest <= 64 * 1024, "{method}: output piece of {largest}");
        }
        let mut pulled = Vec::new();
        compression::decoder(method, &packed[..])
            .unwrap()
            .read_to_end(&mut pulled)
            .unwrap();
        assert!(pulled == data, "{method}: pull adapter");
    }
}

#[test]
fn concatenated_streams_decode_in_turn() {
    let (a, b) = (sample(10_000), sample(30_000));
    for method in [Compression::Xz, Compression::Zstd, Compression::Bzip2] {
        let mut packed = pack(method, &a);
        if method == Compression::Xz {
            packed.extend_from_slice(&[0; 8]); // stream padding
        }
        packed.extend(pack(method, &b));
        let (out, _) = push(method, &packed, 1000).unwrap();
        assert_eq!(out.len(), a.len() + b.len(), "{method}");
        assert!(
            out[..a.len()] == a[..] && out[a.len()..] == b[..],
            "{method}"
        );
    }
    // Padding that is not a multiple of four is refused.
    let mut packed = pack(Compression::Xz, &a);
    packed.extend_from_slice(&[0; 3]);
    assert!(push(Compression::Xz, &packed, 100).is_err());
}

/// zstd decoders of small frames are kept for later ones on the same thread: what a decoder
/// left behind (a failure mid-frame, a frame dropped before its end, a large window, other
/// data) never shows in the next stream's output or verdict.
#[test]
fn kept_zstd_decoders_carry_nothing_over() {
    let small: Vec<Vec<u8>> = (0..6).map(|i| sample(3000 + i * 997)).collect();
    let packed: Vec<Vec<u8>> = small.iter().map(|d| pack(Compression::Zstd, d)).collect();
    let large = zstd_raw_frame(&sample(200_000), 27);
    for round in 0..4 {
        for (i, (data, frame)) in small.iter().zip(&packed).enumerate() {
            // Before each good stream, a different kind of leftover.
            match (round + i) % 4 {
                0 => {
                    let mut bad = frame.clone();
                    let mid = bad.len() / 2;
                    bad[mid] ^= 0x55;
                    let _ = push(Compression::Zstd, &bad, 700);
                }
                1 => {
                    // Dropped mid-frame, without an error.
                    let mut d = Decoder::new(Compression::Zstd);
                    d.update(&frame[..frame.len() / 2], &mut |_: &[u8]| Ok::<(), ()>(()))
                        .unwrap();
                }
                2 => assert_eq!(
                    push(Compression::Zstd, &large, 4096).unwrap().0.len(),
                    200_000
                ),
                _ => {
                    let other = &packed[(i + 1) % packed.len()];
                    let mut two = other.clone();
                    two.extend_from_slice(frame);
                    let (out, _) = push(Compression::Zstd, &two, 512).unwrap();
                    assert_eq!(out.len(), small[(i + 1) % small.len()].len() + data.len());
                }
            }
            assert_eq!(
                &push(Compression::Zstd, frame, 1000).unwrap().0,
                data,
                "round {round}, {i}"
            );
            // A frame that is cut is still refused, and one whole after it decodes.
            assert!(push(Compression::Zstd, &frame[..frame.len() - 3], 1000).is_err());
        }
    }
}

#[test]
fn truncation_and_corruption_are_refused_never_panic() {
    let data = sample(200_000);
    for method in [Compression::Xz, Compression::Zstd, Compression::Bzip2] {
        let packed = pack(method, &data);
        for cut in [0, 1, 5, packed.len() / 3, packed.len() - 1] {
            let e = push(method, &packed[..cut], 4096).expect_err("truncated");
            assert!(
                matches!(e, DecodeError::Truncated(m) if m == method)
                    || matches!(e, DecodeError::Corrupt(_)),
                "{method} cut at {cut}: {e:?}"
            );
            if cut > 0 {
                let mut sink = Vec::new();
                let r = compression::decoder(method, &packed[..cut])
                    .unwrap()
                    .read_to_end(&mut sink);
                assert!(
                    r.is_err(),
                    "{method} cut at {cut}: the pull adapter must fail"
                );
            }
        }
        // A flipped byte in the middle: refused (every format here checks its data).
        let mut bad = packed.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        assert!(
            push(method, &bad, 4096)
                .map(|(o, _)| o != data)
                .unwrap_or(true),
            "{method}"
        );
        // Garbage after the stream is refused.
        let mut trailing = packed.clone();
        trailing.extend_from_slice(b"garbage!");
        assert!(
            push(method, &trailing, 4096).is_err(),
            "{method}: trailing garbage"
        );
    }
}

#[test]
fn hostile_headers_are_refused_before_allocating() {
    // xz: a block claiming a 1.5 GiB dictionary.
    let mut packed = pack(Compression::Xz, b"hello");
    // The LZMA2 filter (id 0x21, 1 byte of properties: the dictionary size) in the block
    // header, which follows the 12-byte stream header.
    let header_len = (packed[12] as usize + 1) * 4;
    let filter = packed[12..12 + header_len]
        .windows(2)
        .position(|w| w == [0x21, 0x01])
        .expect("an LZMA2 filter");
    packed[12 + filter + 2] = 39; // the largest dictionary the format can name
                                  // Fix the block header's CRC32 so the decoder gets as far as the dictionary.
    let crc = crc32(&packed[12..12 + header_len - 4]);
    packed[12 + header_len - 4..12 + header_len].copy_from_slice(&crc.to_le_bytes());
    let e = push(Compression::Xz, &packed, 4096).unwrap_err();
    assert!(e.to_string().contains("dictionary larger than"), "{e}");

    // zstd: a frame asking for a window far over ruzstd's cap.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf8];
    frame.extend_from_slice(&[0; 16]);
    assert!(push(Compression::Zstd, &frame, 4096).is_err());
    // zstd: RLE blocks of 128 KiB from 4 bytes each: output is handed out in bounded pieces.
    let mut bomb = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]; // no checksum, 8 MiB window
    let rle = (128 * 1024u32) << 3 | 1 << 1;
    for i in 0..64 {
        let h = rle | u32::from(i == 63);
        bomb.extend_from_slice(&h.to_le_bytes()[..3]);
        bomb.push(b'z');
    }
    let (out, largest) = push(Compression::Zstd, &bomb, 1 << 20).unwrap();
    assert_eq!(out.len(), 64 * 128 * 1024);
    assert!(largest <= 64 * 1024);
}

/// A zstd frame of raw blocks declaring a window of 2^`log` bytes (no checksum).
fn zstd_raw_frame(data: &[u8], log: u8) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (log - 10) << 3];
    let blocks: Vec<&[u8]> = data.chunks(128 * 1024).collect();
    for (i, block) in blocks.iter().enumerate() {
        let header = (block.len() as u32) << 3 | u32::from(i + 1 == blocks.len());
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(block);
    }
    frame
}

/// An xz stream of `data` whose LZMA2 dictionary is declared as `dict_byte` (the data is
/// compressed with a small one; a decoder only needs what the data uses).
fn xz_declaring(data: &[u8], dict_byte: u8) -> Vec<u8> {
    let mut packed = pack(Compression::Xz, data);
    let header_len = (packed[12] as usize + 1) * 4;
    let filter = packed[12..12 + header_len]
        .windows(2)
        .position(|w| w == [0x21, 0x01])
        .expect("an LZMA2 filter");
    packed[12 + filter + 2] = dict_byte;
    let crc = crc32(&packed[12..12 + header_len - 4]);
    packed[12 + header_len - 4..12 + header_len].copy_from_slice(&crc.to_le_bytes());
    packed
}

fn decode_within(method: Compression, packed: &[u8], limit: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut d = Decoder::with_memory_limit(method, limit);
    let mut sink = |b: &[u8]| -> Result<(), ()> {
        out.extend_from_slice(b);
        Ok(())
    };
    let r = d
        .update(packed, &mut sink)
        .and_then(|()| d.finish(&mut sink));
    match r {
        Ok(()) => Ok(out),
        Err(PushError::Decode(e)) => Err(e),
        Err(PushError::Sink(())) => unreachable!(),
    }
}

#[test]
fn what_nix_accepts_is_accepted_within_the_memory_limit_the_caller_sets() {
    let data = sample(300_000);
    // zstd: windows of 2^27 (`--long=27`) and 2^31 (the most libzstd decodes) by default.
    for log in [27, 31] {
        let frame = zstd_raw_frame(&data, log);
        assert_eq!(
            push(Compression::Zstd, &frame, 4096).unwrap().0,
            data,
            "2^{log}"
        );
        let e = decode_within(Compression::Zstd, &frame, 1 << (log - 1)).unwrap_err();
        let want = format!("window of {} bytes", 1u64 << log);
        assert!(e.to_string().contains(&want), "{e}");
    }
    // And as natively (libzstd, told to go as far as Nix's does).
    let native = {
        let mut out = Vec::new();
        let frame = zstd_raw_frame(&data, 31);
        nar_tool::host::codec::decoder(Compression::Zstd, &frame[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    assert_eq!(native, data);
    // xz: dictionaries of 256 MiB and 1.5 GiB by default; refused under a smaller limit.
    for (byte, size) in [(32u8, 256u64 << 20), (37, 1536 << 20)] {
        let packed = xz_declaring(&data, byte);
        assert_eq!(
            push(Compression::Xz, &packed, 4096).unwrap().0,
            data,
            "{size}"
        );
        let e = decode_within(Compression::Xz, &packed, size / 2).unwrap_err();
        assert!(e.to_string().contains("dictionary larger than"), "{e}");
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn corpus_nars_decode_in_every_compression() {
    let corpus = crate::common::corpus();
    let mut checked = 0;
    for cache in ["xz", "xz-parallel", "zstd", "bzip2", "none"] {
        let dir = corpus.join("caches").join(cache);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "narinfo") {
                continue;
            }
            let info = nar_tool::narinfo::NarInfo::parse(&std::fs::read_to_string(&path).unwrap())
                .unwrap();
            let method: Compression = info.compression.method().unwrap();
            let packed = std::fs::read(dir.join(&info.url)).unwrap();
            let expected = std::fs::read(
                corpus
                    .join("nar")
                    .join(format!("{}-public.nar", info.store_path.base_name())),
            );
            let (out, _) = push(method, &packed, 333).unwrap();
            assert_eq!(out.len() as u64, info.nar_size, "{cache} {}", info.url);
            if let Ok(expected) = expected {
                assert!(out == expected, "{cache} {}", info.url);
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} NARs found");
}
