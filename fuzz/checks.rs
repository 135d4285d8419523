//! What each fuzz target checks, shared with `tests/it/fuzz_regressions.rs` (which includes this
//! file by path), so a saved crash input replays through exactly the same code.
//! Every function must return normally for every input; a panic is a bug.

#![allow(dead_code)]

use std::io::Read;

use nar_tool::hash::Hash;
use nar_tool::nar::listing::{Listing, ListingNode};
use nar_tool::nar::tree::Node;
use nar_tool::nar::{Event, NarReader};
use nar_tool::narinfo::NarInfo;
use nar_tool::nixbase32;
use nar_tool::store_path::StorePath;

/// The streaming reader, the tree builder and the listing builder agree on every input; what
/// they accept is canonical (re-serializes to the same bytes) and its offsets are right.
pub fn nar_reader(data: &[u8]) {
    // Streaming, reading some files' contents and letting the reader skip others.
    let mut r = NarReader::new(data);
    let mut buf = [0u8; 37];
    let streamed = loop {
        match r.next() {
            Ok(None) => break Ok(r.position()),
            Ok(Some(Event::Regular { size, offset, .. })) => {
                if offset % 2 == 0 {
                    let mut got = 0u64;
                    let res = loop {
                        match r.read_contents(&mut buf) {
                            Ok(0) => break Ok(()),
                            Ok(n) => {
                                assert_eq!(
                                    &buf[..n],
                                    &data[(offset + got) as usize..(offset + got) as usize + n]
                                );
                                got += n as u64;
                            }
                            Err(e) => break Err(e),
                        }
                    };
                    match res {
                        Ok(()) => assert_eq!(got, size),
                        Err(e) => break Err(e.to_string()),
                    }
                }
            }
            Ok(Some(_)) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    let tree = Node::from_nar(data).map_err(|e| e.to_string());
    let listing = Listing::from_nar(data).map_err(|e| e.to_string());
    match (&streamed, &tree, &listing) {
        (Ok(len), Ok(node), Ok(listing)) => {
            assert_eq!(
                *len,
                data.len() as u64,
                "an accepted archive is read to its end"
            );
            assert!(node.to_nar() == data, "an accepted archive is canonical");
            check_offsets(data, &listing.root);
            let json = listing.to_json();
            let _: serde_json::Value = serde_json::from_str(&json).expect("listing JSON parses");
        }
        (Err(a), Err(b), Err(c)) => {
            assert_eq!(a, b, "streaming and tree reader disagree");
            assert_eq!(a, c, "streaming and listing reader disagree");
        }
        _ => panic!(
            "readers disagree: stream {streamed:?}, tree {:?}, listing {:?}",
            tree.is_ok(),
            listing.is_ok()
        ),
    }
    // Reading through a reader that hands out one byte at a time changes nothing.
    let one = Node::from_nar(OneByte(data)).map_err(|e| e.to_string());
    assert_eq!(one, tree);
}

struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.0.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

fn check_offsets(data: &[u8], node: &ListingNode) {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match n {
            ListingNode::Regular {
                size, nar_offset, ..
            } => {
                let off = nar_offset.expect("offsets are recorded") as usize;
                assert_eq!(&data[off - 8..off], &size.to_le_bytes());
                assert!(off + *size as usize <= data.len());
            }
            ListingNode::Directory { entries } => stack.extend(entries.values()),
            ListingNode::Symlink { .. } => {}
        }
    }
}

/// What parses, writes back to text that parses to the same value and the same text.
pub fn narinfo(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(info) = NarInfo::parse(text) else {
        return;
    };
    let written = info.to_text();
    let back = NarInfo::parse(&written)
        .unwrap_or_else(|e| panic!("to_text output does not parse: {e}\n{written}"));
    assert_eq!(back, info, "parse(to_text(x)) != x for\n{written}");
    assert_eq!(back.to_text(), written);
    if let Ok(fp) = info.fingerprint() {
        assert!(fp.starts_with("1;"));
    }
    let check = info
        .check_signatures(&[])
        .expect("fingerprint already computed");
    assert!(check.valid.is_empty());
}

/// Decoding is strict (what decodes re-encodes to the same text); encoding always decodes; hash
/// and store path parsers never panic and round trip.
pub fn nixbase32(data: &[u8]) {
    let encoded = nixbase32::encode(data);
    assert_eq!(
        nixbase32::decode(&encoded).expect("encoded text decodes"),
        data
    );
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = nixbase32::decode(s) {
        assert_eq!(nixbase32::encode(&bytes), s);
    }
    if let Ok(h) = Hash::parse_any(s) {
        assert_eq!(Hash::parse_any(&h.to_string()).unwrap(), h);
        assert_eq!(Hash::parse_any(&h.to_sri()).unwrap(), h);
    }
    if let Ok(p) = StorePath::from_base_name(s) {
        assert_eq!(p.base_name(), s);
        assert_eq!(StorePath::from_parts(&p.digest(), p.name()).unwrap(), p);
    }
}

/// The push parser gives the pull reader's events and verdict for any input in any chunking
/// (the first byte picks the chunk size); the push decoders never panic and agree with their
/// own pull adapter.
pub fn push(data: &[u8]) {
    use nar_tool::compression::{self, Compression, Decoder};
    use nar_tool::nar::{NarPushParser, PushEvent};
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;

    // Pull: events, then the verdict.
    let mut r = NarReader::new(data);
    let mut pulled = Vec::new();
    let pull_end = loop {
        match r.next() {
            Ok(Some(e)) => pulled.push(format!("{e:?}")),
            Ok(None) => break Ok(r.position()),
            Err(e) => break Err(e.to_string()),
        }
    };
    // Push, in pieces.
    let mut p = NarPushParser::default();
    let mut pushed = Vec::new();
    let mut on = |e: PushEvent<'_>| {
        if let PushEvent::Node(n) = e {
            pushed.push(format!("{n:?}"));
        }
    };
    let mut push_end = None;
    for piece in data.chunks(chunk) {
        if let Err(e) = p.update(piece, &mut on) {
            push_end = Some(Err(e.to_string()));
            break;
        }
    }
    let push_end = push_end.unwrap_or_else(|| p.finish(&mut on).map_err(|e| e.to_string()));
    assert_eq!(push_end, pull_end);
    if pull_end.is_ok() {
        assert_eq!(pushed, pulled);
    }

    // Decoders: same verdict and bytes pushed in pieces and pulled; never a panic.
    for method in [Compression::Xz, Compression::Zstd, Compression::Bzip2] {
        let mut pushed = Vec::new();
        let mut d = Decoder::new(method);
        let mut sink = |b: &[u8]| -> Result<(), ()> {
            pushed.extend_from_slice(b);
            if pushed.len() > 1 << 24 {
                return Err(());
            }
            Ok(())
        };
        let mut ok = true;
        for piece in data.chunks(chunk) {
            if d.update(piece, &mut sink).is_err() {
                ok = false;
                break;
            }
        }
        let ok = ok && d.finish(&mut sink).is_ok();
        let mut pulled = Vec::new();
        let pull_ok = compression::decoder(method, data)
            .unwrap()
            .take(1 << 24)
            .read_to_end(&mut pulled)
            .is_ok();
        if pushed.len() < 1 << 24 && pulled.len() < 1 << 24 {
            assert_eq!(ok, pull_ok, "{method}");
            if ok {
                assert_eq!(pushed, pulled, "{method}");
            }
        }
    }
}
