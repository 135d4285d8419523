//! Hostile input: a table of broken or malicious NARs and narinfos, each with the error it must
//! give and where; truncation at every offset; short reads; and restores that must leave nothing.

use std::fs;
use std::io::{self, Read};

use crate::common::*;
use nar_tool::host::fs::{restore_path, CaseHack, RestoreError};
use nar_tool::nar::listing::Listing;
use nar_tool::nar::tree::Node;
use nar_tool::nar::{Limits, NarError, NarErrorKind, NarReader};
use nar_tool::narinfo::NarInfo;

type KindCheck = fn(&NarErrorKind) -> bool;

struct Row {
    name: String,
    nar: Vec<u8>,
    kind: KindCheck,
    /// Where the error must be reported, if the row pins it down.
    offset: Option<u64>,
}

fn row(name: impl Into<String>, nar: NarBytes, kind: KindCheck, offset: Option<u64>) -> Row {
    Row {
        name: name.into(),
        nar: nar.bytes(),
        kind,
        offset,
    }
}

fn is_eof(k: &NarErrorKind) -> bool {
    matches!(k, NarErrorKind::UnexpectedEof { .. })
}
fn is_token(k: &NarErrorKind) -> bool {
    matches!(k, NarErrorKind::UnexpectedToken { .. })
}
fn is_padding(k: &NarErrorKind) -> bool {
    matches!(k, NarErrorKind::NonZeroPadding)
}
fn is_bad_name(k: &NarErrorKind) -> bool {
    matches!(k, NarErrorKind::BadEntryName { .. })
}
fn is_bad_target(k: &NarErrorKind) -> bool {
    matches!(k, NarErrorKind::BadSymlinkTarget { .. })
}
fn is_trailing(k: &NarErrorKind) -> bool {
    matches!(k, NarErrorKind::TrailingData)
}
fn is_any(_: &NarErrorKind) -> bool {
    true
}

/// One item of a hand-written archive: a grammar token, or data (a name, target or contents).
#[derive(Clone)]
enum Item {
    Tok(&'static [u8]),
    Data(Vec<u8>),
}

fn encode(items: &[Item]) -> Vec<u8> {
    let mut b = NarBytes::new();
    for it in items {
        b = match it {
            Item::Tok(t) => b.s(t),
            Item::Data(d) => b.s(d),
        };
    }
    b.bytes()
}

/// A small archive with every kind of node: a directory holding an executable, a symlink and a
/// subdirectory with an empty file.
fn reference_items() -> Vec<Item> {
    use Item::*;
    vec![
        Tok(b"nix-archive-1"),
        Tok(b"("),
        Tok(b"type"),
        Tok(b"directory"),
        Tok(b"entry"),
        Tok(b"("),
        Tok(b"name"),
        Data(b"a".to_vec()),
        Tok(b"node"),
        Tok(b"("),
        Tok(b"type"),
        Tok(b"regular"),
        Tok(b"executable"),
        Tok(b""),
        Tok(b"contents"),
        Data(b"hello".to_vec()),
        Tok(b")"),
        Tok(b")"),
        Tok(b"entry"),
        Tok(b"("),
        Tok(b"name"),
        Data(b"b".to_vec()),
        Tok(b"node"),
        Tok(b"("),
        Tok(b"type"),
        Tok(b"symlink"),
        Tok(b"target"),
        Data(b"a".to_vec()),
        Tok(b")"),
        Tok(b")"),
        Tok(b"entry"),
        Tok(b"("),
        Tok(b"name"),
        Data(b"c".to_vec()),
        Tok(b"node"),
        Tok(b"("),
        Tok(b"type"),
        Tok(b"directory"),
        Tok(b"entry"),
        Tok(b"("),
        Tok(b"name"),
        Data(b"empty".to_vec()),
        Tok(b"node"),
        Tok(b"("),
        Tok(b"type"),
        Tok(b"regular"),
        Tok(b"contents"),
        Data(Vec::new()),
        Tok(b")"),
        Tok(b")"),
        Tok(b")"),
        Tok(b")"),
        Tok(b")"),
    ]
}

fn reference_nar() -> Vec<u8> {
    encode(&reference_items())
}

/// `str(s)` with the given padding bytes instead of zeros.
fn str_with_padding(s: &[u8], pad: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v.extend_from_slice(pad);
    v
}

/// A root directory with one entry named `name` holding a symlink to "x".
fn dir_with_names(names: &[&[u8]]) -> (NarBytes, Vec<u64>) {
    let mut b = NarBytes::magic().words("( type directory");
    let mut offsets = Vec::new();
    for name in names {
        b = b.words("entry ( name");
        offsets.push(b.len());
        b = b.s(name).words("node ( type symlink target x ) )");
    }
    (b.words(")"), offsets)
}

/// 100 000 directories nested, built without recursion.
fn deeply_nested(levels: usize) -> (Vec<u8>, u64) {
    let mut b = NarBytes::magic().words("( type");
    let mut too_deep_at = 0;
    b = b.s(b"directory");
    let step = NarBytes::new().words("entry ( name d node ( type").bytes();
    let dir = NarBytes::new().s(b"directory").bytes();
    let mut v = b.bytes();
    for depth in 1..=levels {
        v.extend_from_slice(&step);
        if depth == nar_tool::nar::wire::DEFAULT_MAX_DEPTH + 1 {
            too_deep_at = v.len() as u64;
        }
        v.extend_from_slice(&dir);
    }
    let close = NarBytes::new().words(") )").bytes();
    for _ in 0..levels {
        v.extend_from_slice(&close);
    }
    v.extend_from_slice(&NarBytes::new().s(b")").bytes());
    (v, too_deep_at)
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let file = |contents: &[u8]| {
        NarBytes::magic()
            .words("( type regular contents")
            .s(contents)
            .words(")")
    };

    // The magic.
    rows.push(row("empty input", NarBytes::new(), is_eof, Some(0)));
    rows.push(row(
        "bad magic",
        NarBytes::new()
            .words("nix-archive-2 ( type regular contents")
            .s(b"")
            .words(")"),
        |k| matches!(k, NarErrorKind::NotANar { .. }),
        Some(0),
    ));
    rows.push(row(
        "huge magic length",
        NarBytes::new().u64(u64::MAX).raw(&[0; 64]),
        |k| matches!(k, NarErrorKind::NotANar { .. }),
        Some(0),
    ));
    rows.push(row(
        "gzip instead of a NAR",
        NarBytes::new().raw(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]),
        |k| matches!(k, NarErrorKind::NotANar { .. }),
        Some(0),
    ));
    rows.push(row("magic only", NarBytes::magic(), is_eof, Some(24)));

    // Each token of the reference archive replaced by a wrong one, by a huge one, or removed.
    let items = reference_items();
    let mut offset = 0u64;
    for (i, it) in items.iter().enumerate() {
        let len = 8
            + (match it {
                Item::Tok(t) => t.len(),
                Item::Data(d) => d.len(),
            } as u64)
                .div_ceil(8)
                * 8;
        if let Item::Tok(t) = it {
            let shown = String::from_utf8_lossy(t);
            let expect_kind: KindCheck = if i == 0 {
                |k| matches!(k, NarErrorKind::NotANar { .. })
            } else {
                is_token
            };
            for (what, replacement) in [("wrong", &b"bogus"[..]), ("long", &[b'x'; 1000][..])] {
                let mut v = items.clone();
                v[i] = Item::Data(replacement.to_vec());
                rows.push(Row {
                    name: format!("token #{i} {shown:?} replaced ({what})"),
                    nar: encode(&v),
                    kind: expect_kind,
                    offset: Some(offset),
                });
            }
            let mut v = items.clone();
            v.remove(i);
            rows.push(Row {
                name: format!("token #{i} {shown:?} removed"),
                nar: encode(&v),
                kind: is_any,
                offset: None,
            });
        }
        offset += len;
    }

    // Padding.
    let name_at = NarBytes::magic()
        .words("( type directory entry ( name")
        .len();
    rows.push(row(
        "non-zero padding in a name",
        NarBytes::magic()
            .words("( type directory entry ( name")
            .raw(&str_with_padding(b"a", &[0, 0, 0, 0, 0, 0, 1]))
            .words("node ( type symlink target x ) ) )"),
        is_padding,
        Some(name_at + 9),
    ));
    rows.push(row(
        "non-zero padding in a token",
        NarBytes::magic()
            .raw(&str_with_padding(b"(", &[0, 0, 0, 0, 0, 0, 0x80]))
            .words("type symlink target x )"),
        is_padding,
        Some(24 + 9),
    ));
    rows.push(row(
        "non-zero padding in the magic",
        NarBytes::new()
            .raw(&str_with_padding(b"nix-archive-1", &[0, 0, 1]))
            .words("( type symlink target x )"),
        is_padding,
        Some(21),
    ));
    let contents_at = NarBytes::magic().words("( type regular contents").len();
    rows.push(row(
        "non-zero padding after contents",
        NarBytes::magic()
            .words("( type regular contents")
            .raw(&str_with_padding(b"hello", &[0, 0, 7]))
            .s(b")"),
        is_padding,
        Some(contents_at + 8 + 5),
    ));
    let target_at = NarBytes::magic().words("( type symlink target").len();
    rows.push(row(
        "non-zero padding in a symlink target",
        NarBytes::magic()
            .words("( type symlink target")
            .raw(&str_with_padding(b"abc", &[0, 0, 0, 0, 9]))
            .s(b")"),
        is_padding,
        Some(target_at + 8 + 3),
    ));
    rows.push(row(
        "contents missing their padding",
        NarBytes::magic()
            .words("( type regular contents")
            .u64(5)
            .raw(b"hello")
            .s(b")"),
        |k| is_padding(k) || is_eof(k) || is_token(k),
        None,
    ));

    // Entry names and their order: (row, names, the entry the error is at).
    let out_of_order: [(&str, &[&[u8]], usize); 5] = [
        ("entries out of order", &[b"b", b"a"], 1),
        ("entries out of byte order (a before B)", &[b"a", b"B"], 1),
        (
            "entries out of byte order (a.b before a-b)",
            &[b"a.b", b"a-b"],
            1,
        ),
        ("prefix after longer name", &[b"ab", b"a"], 1),
        ("entry repeated later", &[b"a", b"b", b"a"], 2),
    ];
    for (name, names, at) in out_of_order {
        let (nar, offs) = dir_with_names(names);
        rows.push(row(
            name,
            nar,
            |k| matches!(k, NarErrorKind::EntriesOutOfOrder { .. }),
            Some(offs[at]),
        ));
    }
    let (nar, offs) = dir_with_names(&[b"a", b"a"]);
    rows.push(row(
        "duplicate entry",
        nar,
        |k| matches!(k, NarErrorKind::DuplicateEntry { .. }),
        Some(offs[1]),
    ));
    let long256 = vec![b'n'; 256];
    let bad_names: [(&str, &[u8]); 8] = [
        ("empty name", b""),
        ("name .", b"."),
        ("name ..", b".."),
        ("name a/b", b"a/b"),
        ("name /", b"/"),
        ("name ../x", b"../x"),
        ("name a NUL b", b"a\0b"),
        ("name NUL", b"\0"),
    ];
    for (what, name) in bad_names {
        let (nar, offs) = dir_with_names(&[b"0", name]);
        rows.push(row(what, nar, is_bad_name, Some(offs[1])));
    }
    let (nar, offs) = dir_with_names(&[&long256]);
    rows.push(row(
        "256-byte name",
        nar,
        |k| {
            matches!(
                k,
                NarErrorKind::TooLong {
                    len: 256,
                    limit: 255,
                    ..
                }
            )
        },
        Some(offs[0]),
    ));
    rows.push(row(
        "name length 2^40",
        NarBytes::magic()
            .words("( type directory entry ( name")
            .u64(1 << 40)
            .raw(b"abcdefgh"),
        |k| matches!(k, NarErrorKind::TooLong { len, .. } if *len == 1 << 40),
        Some(name_at),
    ));

    // Symlink targets.
    let link = |target: &[u8]| {
        NarBytes::magic()
            .words("( type symlink target")
            .s(target)
            .words(")")
    };
    rows.push(row(
        "empty symlink target",
        link(b""),
        is_bad_target,
        Some(target_at),
    ));
    rows.push(row(
        "symlink target with NUL",
        link(b"a\0b"),
        is_bad_target,
        Some(target_at),
    ));
    rows.push(row(
        "4096-byte symlink target",
        link(&[b't'; 4096]),
        |k| {
            matches!(
                k,
                NarErrorKind::TooLong {
                    len: 4096,
                    limit: 4095,
                    ..
                }
            )
        },
        Some(target_at),
    ));
    rows.push(row(
        "symlink target length 2^63",
        NarBytes::magic()
            .words("( type symlink target")
            .u64(1 << 63),
        |k| matches!(k, NarErrorKind::TooLong { .. }),
        Some(target_at),
    ));

    // Node types and markers.
    let type_at = NarBytes::magic().words("( type").len();
    rows.push(row(
        "unknown node type",
        NarBytes::magic().words("( type fifo )"),
        is_token,
        Some(type_at),
    ));
    rows.push(row(
        "node type in upper case",
        NarBytes::magic()
            .words("( type REGULAR contents")
            .s(b"")
            .words(")"),
        is_token,
        Some(type_at),
    ));
    let marker_at = NarBytes::magic().words("( type regular executable").len();
    rows.push(row(
        "executable without its empty marker value",
        NarBytes::magic().words("( type regular executable contents hi )"),
        is_token,
        Some(marker_at),
    ));
    rows.push(row(
        "executable with a non-empty marker value",
        NarBytes::magic().words("( type regular executable 1 contents hi )"),
        is_token,
        Some(marker_at),
    ));
    rows.push(row(
        "executable twice",
        NarBytes::magic()
            .words("( type regular executable")
            .s(b"")
            .words("executable")
            .s(b"")
            .words("contents")
            .s(b"")
            .words(")"),
        is_token,
        Some(marker_at + 8),
    ));
    rows.push(row(
        "entry at the root",
        NarBytes::magic().words("entry ( name a"),
        is_token,
        Some(24),
    ));
    rows.push(row(
        "directory with contents",
        NarBytes::magic().words("( type directory contents x )"),
        is_token,
        Some(type_at + 24),
    ));

    // Trailing bytes.
    let valid = file(b"hello");
    let end = valid.len();
    rows.push(row(
        "one trailing byte",
        valid.clone().raw(&[0]),
        is_trailing,
        Some(end),
    ));
    rows.push(row(
        "eight trailing zeros",
        valid.clone().u64(0),
        is_trailing,
        Some(end),
    ));
    rows.push(row(
        "a second archive appended",
        valid.clone().raw(&file(b"x").bytes()),
        is_trailing,
        Some(end),
    ));

    // Lengths that claim more than there is.
    let size_at = NarBytes::magic().words("( type regular contents").len();
    for (what, size) in [
        ("2^62", 1u64 << 62),
        ("u64::MAX", u64::MAX),
        ("2^32", 1 << 32),
    ] {
        let nar = NarBytes::magic()
            .words("( type regular contents")
            .u64(size)
            .raw(&[0u8; 1024]);
        rows.push(row(
            format!("contents length {what}"),
            nar,
            is_eof,
            Some(size_at + 8 + 1024),
        ));
    }
    rows.push(row(
        "token length u64::MAX",
        NarBytes::magic().u64(u64::MAX).raw(&[0; 16]),
        is_token,
        Some(24),
    ));

    // Deep nesting: refused at the limit, without recursion.
    let (nar, at) = deeply_nested(100_000);
    rows.push(Row {
        name: "100 000 nested directories".into(),
        nar,
        kind: |k| matches!(k, NarErrorKind::TooDeep { limit: 2048 }),
        offset: Some(at),
    });
    rows
}

fn read_all(r: impl Read) -> Result<u64, NarError> {
    NarReader::new(r).validate_all()
}

/// The archives here are written with `NarBytes::words`: it writes the strings `ss` would.
#[test]
fn words_write_the_strings_ss_does() {
    let tokens: [&[u8]; 6] = [b"(", b"type", b"regular", b"contents", b"x", b")"];
    assert_eq!(
        NarBytes::magic()
            .words(" ( type\tregular  contents x )\n")
            .bytes(),
        NarBytes::magic().ss(&tokens).bytes()
    );
    assert_eq!(NarBytes::new().words(" ").bytes(), Vec::<u8>::new());
}

#[test]
fn hostile_nars_are_refused_with_the_right_error() {
    let rows = rows();
    assert!(rows.len() > 150, "{} rows", rows.len());
    for r in &rows {
        let e = read_all(&r.nar[..]).expect_err(&r.name);
        assert!((r.kind)(&e.kind), "{}: unexpected error {e}", r.name);
        if let Some(off) = r.offset {
            assert_eq!(e.offset, off, "{}: {e}", r.name);
        }
        // The in-memory tree and the listing refuse it the same way.
        let t = Node::from_nar(&r.nar[..]).expect_err(&r.name);
        assert_eq!(t.to_string(), e.to_string(), "{}", r.name);
        let l = Listing::from_nar(&r.nar[..]).expect_err(&r.name);
        assert_eq!(l.to_string(), e.to_string(), "{}", r.name);
        // The message names the byte offset.
        assert!(
            e.to_string()
                .starts_with(&format!("NAR byte offset {}: ", e.offset)),
            "{e}"
        );
    }
}

#[test]
fn the_reference_archive_is_valid() {
    // The rows above break this archive; unbroken it reads.
    let nar = reference_nar();
    let tree = Node::from_nar(&nar[..]).unwrap();
    assert_eq!(tree.to_nar(), nar);
    let Node::Directory(e) = tree else { panic!() };
    assert_eq!(e.len(), 3);
}

#[test]
fn valid_orderings_are_accepted() {
    // Byte order, not locale order; a name sorts after its prefix; nested directories keep
    // their own order.
    for names in [
        &[
            &b"A"[..],
            b"B",
            b"Z",
            b"a",
            b"a+b",
            b"a-b",
            b"a.b",
            b"a=b",
            b"a_b",
            b"b",
            b"z",
            b"~",
        ][..],
        &[b"a", b"ab", b"abc"],
        &["e".as_bytes(), "é".as_bytes(), "日本".as_bytes()],
        &[&[0x7f][..], &[0x80], &[0xff]],
    ] {
        let (nar, _) = dir_with_names(names);
        read_all(&nar.bytes()[..]).unwrap();
    }
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let nar = reference_nar();
    assert!(nar.len() > 500);
    for i in 0..nar.len() {
        let cut = &nar[..i];
        let e = read_all(cut).expect_err("a truncated archive is refused");
        assert!(is_eof(&e.kind), "cut at {i}: {e}");
        assert_eq!(e.offset, i as u64, "cut at {i}: {e}");
        assert!(Node::from_nar(cut).is_err(), "cut at {i}");
        assert!(Listing::from_nar(cut).is_err(), "cut at {i}");
        let s = read_all(ShortReads {
            inner: cut,
            rng: Rng::new(i as u64),
            max: 7,
        })
        .unwrap_err();
        assert_eq!(s.to_string(), e.to_string());
    }
    assert_eq!(read_all(&nar[..]).unwrap(), nar.len() as u64);
    // Every corpus NAR, cut at a spread of offsets.
    for (name, nar) in corpus_nars() {
        let step = (nar.len() / 97).max(1);
        for i in (0..nar.len()).step_by(step).chain([nar.len() - 1]) {
            let e = read_all(&nar[..i]).expect_err(&name);
            assert!(is_eof(&e.kind), "{name} cut at {i}: {e}");
            assert_eq!(e.offset, i as u64);
        }
    }
}

#[test]
fn short_reads_give_identical_results() {
    let mut inputs: Vec<(String, Vec<u8>)> = corpus_nars();
    inputs.push(("reference".into(), reference_nar()));
    for r in rows() {
        inputs.push((r.name, r.nar));
    }
    for (name, nar) in &inputs {
        let whole = read_all(&nar[..]).map_err(|e| e.to_string());
        let max = if nar.len() > 1 << 20 { 4096 } else { 11 };
        for seed in 0..3 {
            let short = read_all(ShortReads {
                inner: &nar[..],
                rng: Rng::new(seed),
                max,
            })
            .map_err(|e| e.to_string());
            assert_eq!(short, whole, "{name} seed {seed}");
        }
        if nar.len() < 1 << 20 {
            let whole_tree = Node::from_nar(&nar[..]).map_err(|e| e.to_string());
            let short_tree = Node::from_nar(ShortReads {
                inner: &nar[..],
                rng: Rng::new(99),
                max: 3,
            })
            .map_err(|e| e.to_string());
            assert_eq!(short_tree, whole_tree, "{name}");
        }
    }
}

/// An endless source of zeros (what a decompression bomb looks like to the reader).
struct Zeros;
impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        buf.fill(0);
        Ok(buf.len())
    }
}

#[test]
fn huge_claimed_lengths_are_neither_allocated_nor_read() {
    // A file claiming 2^62 bytes from an endless stream: the limit refuses it before any read.
    let head = NarBytes::magic()
        .words("( type regular contents")
        .u64(1 << 62)
        .bytes();
    let limits = Limits {
        max_file_size: 1 << 20,
        ..Limits::default()
    };
    let mut r = NarReader::with_limits(head.as_slice().chain(Zeros), limits);
    let e = r.next().unwrap_err();
    assert!(
        matches!(e.kind, NarErrorKind::TooLong { what: "file", len, limit } if len == 1 << 62 && limit == 1 << 20),
        "{e}"
    );
    assert_eq!(e.offset, head.len() as u64 - 8);
    // Without a limit, the event is announced but nothing is allocated: the tree builder grows
    // with the bytes that actually arrive and fails at the end of input.
    let short = NarBytes::magic()
        .words("( type regular contents")
        .u64(u64::MAX)
        .raw(&[1; 100])
        .bytes();
    let e = Node::from_nar(&short[..]).unwrap_err();
    assert!(is_eof(&e.kind), "{e}");
    // A name length from an endless stream is refused from the length alone.
    let name = NarBytes::magic()
        .words("( type directory entry ( name")
        .u64(u64::MAX)
        .bytes();
    let e = NarReader::new(name.as_slice().chain(Zeros))
        .validate_all()
        .unwrap_err();
    assert!(matches!(e.kind, NarErrorKind::TooLong { .. }), "{e}");
    // A tighter depth limit is honored.
    let (deep, _) = deeply_nested(10);
    let e = NarReader::with_limits(
        &deep[..],
        Limits {
            max_depth: 3,
            ..Limits::default()
        },
    )
    .validate_all()
    .unwrap_err();
    assert!(matches!(e.kind, NarErrorKind::TooDeep { limit: 3 }), "{e}");
    NarReader::with_limits(
        &deep[..],
        Limits {
            max_depth: 10,
            ..Limits::default()
        },
    )
    .validate_all()
    .unwrap();
}

#[test]
fn depth_limit_is_exact() {
    let max = nar_tool::nar::wire::DEFAULT_MAX_DEPTH;
    let (ok, _) = deeply_nested(max);
    read_all(&ok[..]).unwrap();
    let (bad, at) = deeply_nested(max + 1);
    let e = read_all(&bad[..]).unwrap_err();
    assert!(matches!(e.kind, NarErrorKind::TooDeep { .. }));
    assert_eq!(e.offset, at);
}

// ---------------------------------------------------------------------------------------------
// Restore: all or nothing, never outside DEST.

/// Restores `nar` to `parent/dest` (parent holds a file `keep`), expects an error, and checks
/// that nothing was left behind.
fn restore_fails_cleanly(name: &str, nar: &[u8], case_hack: bool) -> RestoreError {
    let t = TempTree::new();
    fs::write(t.path().join("keep"), b"keep").unwrap();
    let dest = t.path().join("dest");
    let e = restore_path(nar, &dest, CaseHack(case_hack)).expect_err(name);
    assert!(
        fs::symlink_metadata(&dest).is_err(),
        "{name}: DEST exists after a failed restore"
    );
    assert_eq!(
        dir_names(t.path()),
        vec!["keep".to_string()],
        "{name}: leftovers in the parent"
    );
    assert_eq!(fs::read(t.path().join("keep")).unwrap(), b"keep");
    e
}

#[test]
fn hostile_nars_restore_nothing() {
    for r in rows() {
        for case_hack in [false, true] {
            let e = restore_fails_cleanly(&r.name, &r.nar, case_hack);
            match &e {
                RestoreError::Nar(n) => {
                    assert!((r.kind)(&n.kind), "{}: {e}", r.name);
                    if let Some(off) = r.offset {
                        assert_eq!(n.offset, off, "{}", r.name);
                    }
                }
                // Only the deep archive may fail on the file system first (paths too long).
                RestoreError::Io { .. } => assert!(r.name.contains("nested"), "{}: {e}", r.name),
                RestoreError::Exists(_) => panic!("{}: {e}", r.name),
            }
        }
    }
}

#[test]
fn truncated_archives_restore_nothing() {
    let nar = reference_nar();
    for i in 0..nar.len() {
        restore_fails_cleanly(&format!("cut at {i}"), &nar[..i], false);
    }
    for (name, nar) in corpus_nars() {
        for i in [
            0,
            8,
            nar.len() / 3,
            nar.len() / 2,
            nar.len() - 8,
            nar.len() - 1,
        ] {
            restore_fails_cleanly(&format!("{name} cut at {i}"), &nar[..i], false);
        }
    }
}

#[test]
fn restore_never_writes_through_a_symlink_or_outside_dest() {
    let outside = TempTree::new();
    let victim = outside.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let victim_str = victim.to_str().unwrap().as_bytes().to_vec();

    // "a" -> VICTIM, then a directory "a" again (a duplicate) holding a file.
    let attack1 = NarBytes::magic()
        .words("( type directory entry ( name a node ( type symlink target")
        .s(&victim_str)
        .words(") ) entry ( name a node ( type directory")
        .words("entry ( name pwned node ( type regular contents x ) )")
        .words(") ) )");
    // "A" -> VICTIM, then "a" (which the case hack renames, and without it is a distinct name).
    let attack2 = NarBytes::magic()
        .words("( type directory entry ( name A node ( type symlink target")
        .s(&victim_str)
        .words(") ) entry ( name a node ( type directory")
        .words("entry ( name pwned node ( type regular contents x ) )")
        .words(") ) )");
    // A name that climbs out, and one with a slash into the link.
    let attack3 = NarBytes::magic()
        .words("( type directory entry ( name a node ( type symlink target")
        .s(&victim_str)
        .words(") ) entry ( name a/pwned node ( type regular contents x")
        .words(") ) )");
    let attack4 = NarBytes::magic().words("( type directory entry ( name .. node ( type directory entry ( name pwned node ( type regular contents x ) ) ) ) )");
    for (name, nar) in [
        ("dup through link", attack1),
        ("dotdot", attack4),
        ("slash", attack3),
    ] {
        for case_hack in [false, true] {
            restore_fails_cleanly(name, &nar.0, case_hack);
            assert!(
                dir_names(&victim).is_empty(),
                "{name}: wrote into the symlink target"
            );
        }
    }
    // attack2 is a valid archive: restored, the file lands in DEST's own "a" directory.
    for case_hack in [false, true] {
        let t = TempTree::new();
        let dest = t.path().join("dest");
        restore_path(&attack2.0[..], &dest, CaseHack(case_hack)).unwrap();
        assert!(
            dir_names(&victim).is_empty(),
            "case hack {case_hack}: wrote into the symlink target"
        );
        let a = if case_hack { "a~nix~case~hack~1" } else { "a" };
        assert_eq!(fs::read(dest.join(a).join("pwned")).unwrap(), b"x");
        assert!(fs::symlink_metadata(dest.join("A"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    // DEST itself must not exist: not even as a symlink or an empty directory.
    let t = TempTree::new();
    let dest = t.path().join("dest");
    std::os::unix::fs::symlink(&victim, &dest).unwrap();
    let ok_nar = NarBytes::magic().words("( type regular contents x )");
    assert!(matches!(
        restore_path(&ok_nar.0[..], &dest, CaseHack(false)),
        Err(RestoreError::Exists(_))
    ));
    assert!(dir_names(&victim).is_empty());
    fs::remove_file(&dest).unwrap();
    fs::create_dir(&dest).unwrap();
    assert!(matches!(
        restore_path(&ok_nar.0[..], &dest, CaseHack(false)),
        Err(RestoreError::Exists(_))
    ));
    assert!(dir_names(&dest).is_empty());
}

#[test]
fn cli_restore_of_hostile_nars_leaves_nothing() {
    let picks = [
        "bad magic",
        "duplicate entry",
        "name ..",
        "contents length 2^62",
        "one trailing byte",
    ];
    let rows = rows();
    for pick in picks {
        let r = rows.iter().find(|r| r.name == pick).unwrap();
        let t = TempTree::new();
        fs::write(t.path().join("keep"), b"keep").unwrap();
        let dest = t.path().join("dest");
        let out = run(&["restore", dest.to_str().unwrap()], &r.nar);
        assert_eq!(out.status.code(), Some(1), "{pick}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NAR byte offset"), "{pick}: {err}");
        assert!(
            !dest.exists() && fs::symlink_metadata(&dest).is_err(),
            "{pick}"
        );
        assert_eq!(dir_names(t.path()), vec!["keep".to_string()], "{pick}");
    }
}

// ---------------------------------------------------------------------------------------------
// Narinfos

const GOOD: &str = "StorePath: /nix/store/8bswc883h867a21h70j0gvrppyavddgp-bare-symlink-public
URL: nar/1qj83lcmrjxpa20i6dlh58w2ny3dqzawh358lwbl511b8rbh1rsx.nar.xz
Compression: xz
FileHash: sha256:1qj83lcmrjxpa20i6dlh58w2ny3dqzawh358lwbl511b8rbh1rsx
FileSize: 188
NarHash: sha256:1049ryx9wl318kgn0nf3mqk272hnb0n2fk38iaip934gl8v3ksim
NarSize: 184
References: 12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public
Deriver: di8iicxwki2y1hny8yh7ghn174wgdnbm-bare-symlink-public.drv
Sig: corpus-public-1:jyqsxxdmjPxVEXoER7fmtFYuD9iX4O2am7wPNBuW/bUq5qVLGmjnJm9gq49w4IxroNCpf7i9hyROr8cototrCQ==
";

fn replace_line(key: &str, new: Option<&str>) -> String {
    GOOD.lines()
        .filter_map(|l| {
            if l.starts_with(&format!("{key}:")) {
                new.map(String::from)
            } else {
                Some(l.to_string())
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn good_narinfo_parses() {
    let ni = NarInfo::parse(GOOD).unwrap();
    assert_eq!(ni.to_text(), GOOD);
    assert_eq!(
        fs::read_to_string(corpus().join("caches/xz/8bswc883h867a21h70j0gvrppyavddgp.narinfo"))
            .unwrap(),
        GOOD
    );
}

#[test]
fn hostile_narinfos_are_refused_naming_the_line() {
    let mut huge = GOOD.to_string();
    while huge.len() <= nar_tool::narinfo::MAX_NARINFO_SIZE {
        huge.push_str(
            "X-Padding: 0123456789012345678901234567890123456789012345678901234567890123456789\n",
        );
    }
    let table: Vec<(String, String, Option<usize>, &str)> = vec![
        (
            "missing StorePath".into(),
            replace_line("StorePath", None),
            None,
            "missing required field StorePath",
        ),
        (
            "missing URL".into(),
            replace_line("URL", None),
            None,
            "missing required field URL",
        ),
        (
            "empty URL".into(),
            replace_line("URL", Some("URL: ")),
            None,
            "missing required field URL",
        ),
        (
            "missing NarHash".into(),
            replace_line("NarHash", None),
            None,
            "missing required field NarHash",
        ),
        (
            "missing NarSize".into(),
            replace_line("NarSize", None),
            None,
            "missing required field NarSize",
        ),
        (
            "empty file".into(),
            String::new(),
            None,
            "missing required field StorePath",
        ),
        (
            "bad NarHash digits".into(),
            replace_line("NarHash", Some("NarHash: sha256:zzz")),
            Some(6),
            "NarHash",
        ),
        (
            "NarHash with e".into(),
            replace_line(
                "NarHash",
                Some("NarHash: sha256:1049ryx9wl318kgn0nf3mqk272hnb0n2fk38iaip934gl8v3ksie"),
            ),
            Some(6),
            "NarHash",
        ),
        (
            "NarHash unknown algo".into(),
            replace_line("NarHash", Some("NarHash: sha257:00")),
            Some(6),
            "NarHash",
        ),
        (
            "NarHash without algo".into(),
            replace_line(
                "NarHash",
                Some("NarHash: 1049ryx9wl318kgn0nf3mqk272hnb0n2fk38iaip934gl8v3ksim"),
            ),
            Some(6),
            "NarHash",
        ),
        (
            "bad FileHash".into(),
            replace_line("FileHash", Some("FileHash: sha256:")),
            Some(4),
            "FileHash",
        ),
        (
            "NarSize 0".into(),
            replace_line("NarSize", Some("NarSize: 0")),
            Some(7),
            "NarSize is 0",
        ),
        (
            "NarSize negative".into(),
            replace_line("NarSize", Some("NarSize: -1")),
            Some(7),
            "NarSize",
        ),
        (
            "NarSize too big".into(),
            replace_line("NarSize", Some("NarSize: 18446744073709551616")),
            Some(7),
            "NarSize",
        ),
        (
            "FileSize text".into(),
            replace_line("FileSize", Some("FileSize: big")),
            Some(5),
            "FileSize",
        ),
        (
            "duplicate key".into(),
            format!("{GOOD}NarSize: 184\n"),
            Some(11),
            "duplicate key \"NarSize\"",
        ),
        (
            "duplicate URL".into(),
            format!("{GOOD}URL: x\n"),
            Some(11),
            "duplicate key \"URL\"",
        ),
        (
            "no final newline".into(),
            GOOD.trim_end_matches('\n').to_string(),
            Some(10),
            "does not end with a newline",
        ),
        (
            "bad StorePath".into(),
            replace_line("StorePath", Some("StorePath: /nix/store/short")),
            Some(1),
            "StorePath",
        ),
        (
            "StorePath with bad hash".into(),
            replace_line(
                "StorePath",
                Some("StorePath: /nix/store/8bswc883h867a21h70j0gvrppyavddge-bare"),
            ),
            Some(1),
            "StorePath",
        ),
        (
            "relative StorePath".into(),
            replace_line(
                "StorePath",
                Some("StorePath: 8bswc883h867a21h70j0gvrppyavddgp-bare-symlink-public"),
            ),
            Some(1),
            "StorePath",
        ),
        (
            "StorePath bad store dir".into(),
            replace_line(
                "StorePath",
                Some("StorePath: /nix/../store/8bswc883h867a21h70j0gvrppyavddgp-bare"),
            ),
            Some(1),
            "StorePath",
        ),
        (
            "bad reference".into(),
            replace_line("References", Some("References: not-a-path")),
            Some(8),
            "References",
        ),
        (
            "reference with absolute path".into(),
            replace_line(
                "References",
                Some("References: /nix/store/12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public"),
            ),
            Some(8),
            "References",
        ),
        (
            "bad deriver".into(),
            replace_line("Deriver", Some("Deriver: x.drv")),
            Some(9),
            "Deriver",
        ),
        (
            "signature without name".into(),
            replace_line("Sig", Some("Sig: nocolon")),
            Some(10),
            "Sig",
        ),
        (
            "signature bad base64".into(),
            replace_line("Sig", Some("Sig: k:!!!!")),
            Some(10),
            "Sig",
        ),
        (
            "signature too short".into(),
            replace_line("Sig", Some("Sig: k:AAAA")),
            Some(10),
            "Sig",
        ),
        (
            "line without colon".into(),
            format!("{GOOD}garbage\n"),
            Some(11),
            "expected \"Key: value\"",
        ),
        (
            "empty key".into(),
            format!("{GOOD}: value\n"),
            Some(11),
            "empty key",
        ),
        (
            "CRLF line ends".into(),
            GOOD.replace('\n', "\r\n"),
            Some(1),
            "StorePath",
        ),
        ("too large".into(), huge, None, "exceeds the limit"),
    ];
    for (name, text, line, message) in table {
        let e = NarInfo::parse(&text).expect_err(&name);
        assert_eq!(e.line, line, "{name}: {e}");
        assert!(e.message.contains(message), "{name}: {e}");
        if let Some(l) = line {
            assert!(
                e.to_string().starts_with(&format!("line {l}: ")),
                "{name}: {e}"
            );
        }
    }
}

#[test]
fn narinfo_leniencies_nix_shares() {
    // Unknown keys are kept; no Compression means bzip2; "Key:" with nothing after is empty.
    let text = replace_line("Compression", None) + "System: x86_64-linux\nX-Unknown: 1\n";
    let ni = NarInfo::parse(&text).unwrap();
    assert_eq!(ni.compression, "bzip2");
    assert_eq!(ni.system.as_deref(), Some("x86_64-linux"));
    assert_eq!(ni.extra, vec![("X-Unknown".to_string(), "1".to_string())]);
    let ni = NarInfo::parse(&replace_line("References", Some("References:"))).unwrap();
    assert!(ni.references.is_empty());
    // Hex and SRI hashes are accepted for NarHash.
    let sri = "sha256-Neo5NqKPjHSjimhMJyxYFoojJq7DWWDfRGFQnrrPiYA=";
    let ni2 = NarInfo::parse(&replace_line("NarHash", Some(&format!("NarHash: {sri}")))).unwrap();
    assert_eq!(ni2.nar_hash, NarInfo::parse(GOOD).unwrap().nar_hash);
}

#[test]
fn restore_into_missing_parent_fails_without_side_effects() {
    let t = TempTree::new();
    let dest = t.path().join("no/such/dir/dest");
    let ok_nar = NarBytes::magic().words("( type regular contents x )");
    let e = restore_path(&ok_nar.0[..], &dest, CaseHack(false)).unwrap_err();
    assert!(matches!(e, RestoreError::Io { .. }), "{e}");
    assert!(dir_names(t.path()).is_empty());
}

#[test]
fn deep_failed_restore_cleans_up_under_a_low_descriptor_limit() {
    // A partial tree ~2000 levels deep must be removed even when the process may only hold a
    // few hundred descriptors (removal that keeps one open per level leaves it behind).
    use std::os::unix::process::CommandExt;
    let (nar, _) = deeply_nested(100_000);
    let t = TempTree::new();
    fs::write(t.path().join("keep"), b"keep").unwrap();
    let dest = t.path().join("dest");
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("restore").arg(&dest);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_cmd(&mut cmd, &nar);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fs::symlink_metadata(&dest).is_err());
    assert_eq!(
        dir_names(t.path()),
        vec!["keep".to_string()],
        "leftovers after a deep failed restore"
    );
}
