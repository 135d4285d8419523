//! Property tests: round trips of every format for generated values.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use crate::common::{self, dir_names, ShortReads, TempTree};
use nar_tool::hash::{Encoding, Hash, HashAlgo};
use nar_tool::host::fs::{dump_path, restore_path, CaseHack, RestoreStats};
use nar_tool::nar::listing::{Listing, ListingNode};
use nar_tool::nar::tree::Node;
use nar_tool::nar::NarWriter;
use nar_tool::narinfo::{NarContentAddress, NarInfo};
use nar_tool::nixbase32;
use nar_tool::signing::SecretKey;
use nar_tool::store_path::{StoreDir, StorePath};

/// nixbase32 as FORMATS.md defines it, bit by bit: character k is 5-bit group n-1-k.
fn reference_nixbase32(bytes: &[u8]) -> String {
    let n = (bytes.len() * 8).div_ceil(5);
    let bit = |i: usize| -> u8 {
        if i / 8 < bytes.len() {
            (bytes[i / 8] >> (i % 8)) & 1
        } else {
            0
        }
    };
    (0..n)
        .map(|k| {
            let g = n - 1 - k;
            let v: u8 = (0..5).map(|b| bit(g * 5 + b) << b).sum();
            nixbase32::ALPHABET[v as usize] as char
        })
        .collect()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn algo() -> impl Strategy<Value = HashAlgo> {
    prop_oneof![
        Just(HashAlgo::Md5),
        Just(HashAlgo::Sha1),
        Just(HashAlgo::Sha256),
        Just(HashAlgo::Sha512)
    ]
}

fn hash_of(algo: impl Strategy<Value = HashAlgo>) -> impl Strategy<Value = Hash> {
    algo.prop_flat_map(|a| {
        vec(any::<u8>(), a.size()).prop_map(move |d| Hash::from_digest(a, &d).unwrap())
    })
}

/// Entry names: sorting edge cases, bytes above 0x7f, 255-byte names.
fn entry_name() -> impl Strategy<Value = Vec<u8>> {
    let edge =
        proptest::sample::select(common::EDGE_NAMES.to_vec()).prop_map(|s| s.as_bytes().to_vec());
    let any_bytes = vec(
        any::<u8>().prop_filter("no NUL or /", |b| *b != 0 && *b != b'/'),
        1..12,
    );
    let long = (200usize..=255, any::<u8>()).prop_map(|(n, c)| vec![b'a' + c % 26; n]);
    let high = vec(0x80u8..=0xff, 1..6);
    prop_oneof![4 => edge, 4 => any_bytes, 1 => long, 1 => high]
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

/// File sizes around the 8-byte padding boundaries.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    let size = prop_oneof![
        4 => 0usize..20,
        3 => (1usize..40).prop_flat_map(|k| (8 * k - 1)..=(8 * k + 1)),
        1 => 0usize..3000,
    ];
    size.prop_flat_map(|n| vec(any::<u8>(), n))
}

fn symlink_target() -> impl Strategy<Value = Vec<u8>> {
    let short = vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..40);
    let max = Just(vec![b't'; 4095]);
    let paths = proptest::sample::select(vec![
        "/nix/store/x",
        "..",
        ".",
        "/",
        "../../etc/passwd",
        "a/b/c",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![6 => short, 3 => paths, 1 => max]
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        (any::<bool>(), contents()).prop_map(|(executable, contents)| Node::Regular {
            executable,
            contents
        }),
        symlink_target().prop_map(|target| Node::Symlink { target }),
        Just(Node::Directory(BTreeMap::new())),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        btree_map(entry_name(), inner, 0..6).prop_map(Node::Directory)
    })
}

/// A deep chain of directories with a leaf at the bottom.
fn deep_tree() -> impl Strategy<Value = Node> {
    (1usize..60, leaf()).prop_map(|(depth, leaf)| {
        let mut node = leaf;
        for i in 0..depth {
            let mut m = BTreeMap::new();
            m.insert(format!("d{}", i % 3).into_bytes(), node);
            node = Node::Directory(m);
        }
        node
    })
}

/// Trees for the disk round trip: names a Linux file system stores as is.
fn disk_tree(case_collisions: bool) -> impl Strategy<Value = Node> {
    let name = if case_collisions {
        proptest::sample::select(vec![
            "a", "A", "b", "B", "Makefile", "makefile", "MAKEFILE", "x", "X", "é", "É",
        ])
        .prop_map(|s| s.as_bytes().to_vec())
        .boxed()
    } else {
        entry_name()
            .prop_filter("no case-hack suffix", |n| !contains(n, b"~nix~case~hack~"))
            .boxed()
    };
    leaf().prop_recursive(4, 32, 6, move |inner| {
        btree_map(name.clone(), inner, 0..6).prop_map(Node::Directory)
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn store_dir() -> impl Strategy<Value = StoreDir> {
    prop_oneof![
        3 => Just(StoreDir::default()),
        1 => "(/[a-z0-9_.-]{1,8}){1,3}".prop_filter_map("valid store dir", |s| StoreDir::new(&s).ok()),
    ]
}

fn store_path_with(name: impl Strategy<Value = String>) -> impl Strategy<Value = StorePath> {
    (any::<[u8; 20]>(), name).prop_map(|(d, n)| StorePath::from_parts(&d, &n).unwrap())
}

fn path_name() -> impl Strategy<Value = String> {
    "[0-9A-Za-z+_?=-][0-9A-Za-z+._?=-]{0,50}"
}

/// A narinfo value: anything printable but line breaks.
fn value() -> impl Strategy<Value = String> {
    "[^\n\r]{1,40}"
}

fn signature() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9.-]{0,20}-[0-9]",
        any::<[u8; 32]>(),
        vec(any::<u8>(), 0..20),
    )
        .prop_map(|(name, seed, msg)| SecretKey::from_seed(&name, &seed).sign(&msg).to_string())
}

/// Content addresses in every form Nix writes, and other values (kept as written).
fn content_address() -> impl Strategy<Value = NarContentAddress> {
    use nar_tool::store_path::{ContentAddress, FileIngestion};
    prop_oneof![
        hash_of(algo()).prop_map(|h| ContentAddress::Fixed(FileIngestion::Recursive, h).into()),
        hash_of(algo()).prop_map(|h| ContentAddress::Fixed(FileIngestion::Flat, h).into()),
        hash_of(Just(HashAlgo::Sha256)).prop_map(|h| ContentAddress::Text(h).into()),
        hash_of(algo()).prop_map(|h| NarContentAddress::parse(&format!(
            "fixed:r:{}",
            h.to_prefixed(Encoding::Base16)
        ))),
        "[^\n\r]{0,40}".prop_map(|s| NarContentAddress::parse(&s)),
    ]
}

fn narinfo() -> impl Strategy<Value = NarInfo> {
    let paths = (
        store_dir(),
        store_path_with(path_name()),
        vec(store_path_with(path_name()), 0..6),
        proptest::option::of(store_path_with("[a-z][a-z0-9.-]{0,20}\\.drv")),
    );
    let file = (
        value(),
        prop_oneof![
            Just("xz".to_string()),
            Just("zstd".to_string()),
            Just("none".to_string()),
            Just("bzip2".to_string()),
            proptest::sample::select(nar_tool::narinfo::OTHER_NIX_COMPRESSIONS.to_vec())
                .prop_map(String::from)
        ],
        proptest::option::of(hash_of(algo())),
        proptest::option::of(any::<u64>()),
        hash_of(algo()),
        1..=u64::MAX,
    );
    let rest = (
        proptest::option::of("[a-z0-9_-]{1,20}"),
        vec(signature(), 0..4),
        proptest::option::of(content_address()),
        btree_map("X-[A-Za-z0-9-]{1,12}", "[^\n\r]{0,30}", 0..3),
    );
    (paths, file, rest).prop_map(
        |(
            (store_dir, store_path, mut references, deriver),
            (url, compression, file_hash, file_size, nar_hash, nar_size),
            (system, mut sigs, ca, extra),
        )| {
            references.sort();
            references.dedup();
            sigs.sort();
            sigs.dedup();
            NarInfo {
                store_dir,
                store_path,
                url,
                compression: nar_tool::narinfo::NarCompression::parse(&compression),
                file_hash,
                file_size,
                nar_hash,
                nar_size,
                references,
                deriver,
                system,
                sigs: sigs
                    .iter()
                    .map(|s| nar_tool::signing::Signature::parse(s).unwrap())
                    .collect(),
                ca,
                extra: extra.into_iter().collect(),
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Every regular file's listing offset points at its contents in the archive.
fn check_listing(nar: &[u8], listing: &ListingNode, node: &Node) {
    match (listing, node) {
        (
            ListingNode::Regular {
                size,
                executable,
                nar_offset,
            },
            Node::Regular {
                executable: e,
                contents,
            },
        ) => {
            assert_eq!(*size, contents.len() as u64);
            assert_eq!(executable, e);
            let off = nar_offset.expect("offsets are recorded") as usize;
            assert_eq!(&nar[off - 8..off], &size.to_le_bytes());
            assert_eq!(&nar[off..off + contents.len()], &contents[..]);
            // Padding after the contents is zero.
            let end = off + contents.len();
            let pad = (8 - end % 8) % 8;
            assert!(nar[end..end + pad].iter().all(|&b| b == 0));
        }
        (ListingNode::Symlink { target }, Node::Symlink { target: t }) => {
            assert_eq!(target, &String::from_utf8_lossy(t))
        }
        (ListingNode::Directory { entries }, Node::Directory(children)) => {
            // Listing keys are lossy UTF-8; walk the tree's children and look each up.
            for (name, child) in children {
                let key = String::from_utf8_lossy(name).into_owned();
                if std::str::from_utf8(name).is_ok() {
                    check_listing(nar, &entries[&key], child);
                } else {
                    assert!(entries.contains_key(&key));
                }
            }
            if children.keys().all(|k| std::str::from_utf8(k).is_ok()) {
                assert_eq!(entries.len(), children.len());
            }
        }
        _ => panic!("listing and tree disagree"),
    }
}

fn count(node: &Node) -> RestoreStats {
    let mut s = RestoreStats::default();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match n {
            Node::Regular { contents, .. } => {
                s.files += 1;
                s.bytes += contents.len() as u64;
            }
            Node::Symlink { .. } => s.symlinks += 1,
            Node::Directory(e) => {
                s.directories += 1;
                stack.extend(e.values());
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn nixbase32_round_trips(bytes in vec(any::<u8>(), 0..100)) {
        let s = nixbase32::encode(&bytes);
        prop_assert_eq!(s.len(), nixbase32::encoded_len(bytes.len()));
        prop_assert_eq!(&s, &reference_nixbase32(&bytes));
        prop_assert_eq!(nixbase32::decoded_len(s.len()), Some(bytes.len()));
        prop_assert_eq!(nixbase32::decode(&s).unwrap(), bytes);
        prop_assert!(s.bytes().all(nixbase32::is_valid_char));
    }

    #[test]
    fn nixbase32_decode_is_strict(s in prop_oneof!["[0-9a-z]{0,60}", "[0-9a-df-np-sv-z]{0,60}"]) {
        // Whatever decodes, encodes back to the same string; the rest is refused, never a panic.
        let legal = s.bytes().all(nixbase32::is_valid_char);
        let expected_ok = match nixbase32::decoded_len(s.len()) {
            Some(_) if !legal => false,
            // The first character holds the top group; bits past the last byte must be zero.
            Some(bytes) if !s.is_empty() => {
                let spare = s.len() * 5 - bytes * 8;
                let top = nixbase32::ALPHABET.iter().position(|&c| c == s.as_bytes()[0]).unwrap();
                top >> (5 - spare) == 0
            }
            Some(_) => true,
            None => false,
        };
        match nixbase32::decode(&s) {
            Ok(bytes) => {
                prop_assert!(expected_ok);
                prop_assert_eq!(nixbase32::encode(&bytes), s);
            }
            Err(_) => prop_assert!(!expected_ok),
        }
    }

    #[test]
    fn hashes_round_trip_in_every_encoding(h in hash_of(algo())) {
        for e in [Encoding::Base16, Encoding::Nixbase32, Encoding::Base64] {
            prop_assert_eq!(Hash::parse_as(h.algo(), &h.encode(e)).unwrap(), h.clone());
            prop_assert_eq!(Hash::parse_any(&h.to_prefixed(e)).unwrap(), h.clone());
            prop_assert_eq!(Hash::parse_as(h.algo(), &h.to_prefixed(e)).unwrap(), h.clone());
        }
        prop_assert_eq!(Hash::parse_any(&h.to_sri()).unwrap(), h.clone());
        prop_assert_eq!(Hash::parse_any(&h.to_string()).unwrap(), h.clone());
        prop_assert_eq!(h.encode(Encoding::Base16).to_uppercase().len(), 2 * h.algo().size());
        prop_assert_eq!(Hash::parse_as(h.algo(), &h.encode(Encoding::Base16).to_uppercase()).unwrap(), h.clone());
        prop_assert_eq!(h.encode(Encoding::Nixbase32), reference_nixbase32(h.digest()));
    }

    #[test]
    fn hashes_of_data_match_streaming(data in vec(any::<u8>(), 0..2000), split in 0usize..2000, a in algo()) {
        let split = split.min(data.len());
        let mut hasher = nar_tool::hash::Hasher::new(a);
        hasher.update(&data[..split]);
        hasher.update(&data[split..]);
        prop_assert_eq!(hasher.finish(), Hash::of(a, &data));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn trees_round_trip_through_nar(node in tree()) {
        let nar = node.to_nar();
        prop_assert_eq!(nar.len() % 8, 0);
        let back = Node::from_nar(&nar[..]).unwrap();
        prop_assert_eq!(&back, &node);
        // Short reads change nothing.
        let short = Node::from_nar(ShortReads { inner: &nar[..], rng: common::Rng::new(nar.len() as u64), max: 9 }).unwrap();
        prop_assert_eq!(&short, &node);
        // The listing's offsets point at the contents.
        let listing = Listing::from_nar(&nar[..]).unwrap();
        prop_assert_eq!(listing.version, 1);
        check_listing(&nar, &listing.root, &node);
        // The listing JSON parses back.
        let json: Listing = serde_json::from_str(&listing.to_json()).unwrap();
        prop_assert_eq!(&json, &listing);
        // The writer's own listing, recorded on the same pass, is the same.
        let mut w = NarWriter::new(Vec::new()).unwrap().record_listing();
        write_events(&mut w, &node);
        let (bytes, recorded) = w.finish_with_listing().unwrap();
        prop_assert_eq!(&bytes, &nar);
        prop_assert_eq!(recorded.unwrap(), listing);
    }

    #[test]
    fn deep_trees_round_trip(node in deep_tree()) {
        let nar = node.to_nar();
        prop_assert_eq!(Node::from_nar(&nar[..]).unwrap(), node);
    }

    #[test]
    fn narinfo_round_trips(info in narinfo()) {
        let text = info.to_text();
        let back = NarInfo::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(&back, &info);
        prop_assert_eq!(back.to_text(), text);
        if info.nar_hash.algo() == HashAlgo::Sha256 {
            let fp = info.fingerprint().unwrap();
            let prefix = format!("1;{};{};{};", info.path(), info.nar_hash, info.nar_size);
            prop_assert!(fp.starts_with(&prefix));
            let key = SecretKey::from_seed("prop-1", &[3; 32]);
            let mut signed = info.clone();
            signed.sign(&key).unwrap();
            let reparsed = NarInfo::parse(&signed.to_text()).unwrap();
            let check = reparsed.check_signatures(&[key.public_key()]).unwrap();
            prop_assert_eq!(check.valid, vec!["prop-1".to_string()]);
        } else {
            prop_assert!(info.fingerprint().is_err());
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Lines in any order, repeated signatures: parsing normalizes, and what it gives round trips.
    #[test]
    fn narinfo_parse_normalizes(
        (info, order) in narinfo().prop_flat_map(|i| {
            let n = i.to_text().lines().count();
            (Just(i), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        }),
        dup_sig in any::<bool>(),
    ) {
        let lines: Vec<String> = info.to_text().lines().map(|l| format!("{l}\n")).collect();
        let mut messy: String = order.iter().map(|&i| lines[i].as_str()).collect();
        if dup_sig {
            if let Some(sig) = lines.iter().find(|l| l.starts_with("Sig: ")) {
                messy.push_str(sig);
            }
        }
        let parsed = NarInfo::parse(&messy).unwrap_or_else(|e| panic!("{e}\n{messy}"));
        prop_assert_eq!(NarInfo::parse(&parsed.to_text()).unwrap(), parsed.clone());
        let text = parsed.to_text();
        let mut a: Vec<&str> = text.lines().collect();
        let mut b: Vec<&str> = lines.iter().map(|l| l.trim_end_matches('\n')).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
}

/// Feeds a tree to a writer event by event (what `Node::write_nar` does, recursively here).
fn write_events<W: std::io::Write>(w: &mut NarWriter<W>, node: &Node) {
    match node {
        Node::Regular {
            executable,
            contents,
        } => w.regular_bytes(*executable, contents).unwrap(),
        Node::Symlink { target } => w.symlink(target).unwrap(),
        Node::Directory(entries) => {
            w.start_directory().unwrap();
            for (name, child) in entries {
                w.entry(name).unwrap();
                write_events(w, child);
            }
            w.end_directory().unwrap();
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn restore_then_dump_on_disk(node in disk_tree(false)) {
        let t = TempTree::new();
        let dest = t.path().join("out");
        let nar = node.to_nar();
        let stats = restore_path(&nar[..], &dest, CaseHack(false)).unwrap();
        prop_assert_eq!(stats, count(&node));
        let dumped = dump_path(&dest, Vec::new(), CaseHack(false)).unwrap();
        prop_assert!(dumped == nar, "dump of the restored tree differs");
        // Nothing besides DEST was left in the parent.
        prop_assert_eq!(dir_names(t.path()), vec!["out".to_string()]);
    }

    #[test]
    fn case_hack_restore_then_dump(node in disk_tree(true)) {
        let t = TempTree::new();
        let dest = t.path().join("out");
        let nar = node.to_nar();
        restore_path(&nar[..], &dest, CaseHack(true)).unwrap();
        // No two names in a restored directory are equal ignoring (ASCII) case.
        let mut stack = vec![dest.clone()];
        while let Some(d) = stack.pop() {
            if !std::fs::symlink_metadata(&d).unwrap().is_dir() {
                continue;
            }
            let names = dir_names(&d);
            let mut folded: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            folded.sort();
            folded.dedup();
            prop_assert_eq!(folded.len(), names.len());
            stack.extend(names.iter().map(|n| d.join(n)));
        }
        let dumped = dump_path(&dest, Vec::new(), CaseHack(true)).unwrap();
        prop_assert!(dumped == nar, "case-hack dump of the case-hack restore differs");
    }
}
