//! Golden tests: everything the real Nix 2.8 wrote into the corpus is reproduced byte for byte.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::common::*;
use nar_tool::cache_info::CacheInfo;
use nar_tool::hash::{Encoding, Hash, HashAlgo};
use nar_tool::host::fs::{dump_path, nar_size, CaseHack};
use nar_tool::nar::listing::Listing;
use nar_tool::nar::tree::Node;
use nar_tool::nar::{Event, NarReader, NarWriter};
use nar_tool::narinfo::NarInfo;
use nar_tool::signing::{PublicKey, SecretKey};
use nar_tool::store_path::{ContentAddress, StoreDir};

const CACHES: &[&str] = &["xz", "zstd", "bzip2", "none", "xz-parallel", "unsigned"];

fn path_info() -> Vec<serde_json::Value> {
    let text = fs::read_to_string(corpus().join("path-info.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let arr = v.as_array().unwrap().clone();
    assert_eq!(arr.len(), 9);
    arr
}

fn path_info_by_path() -> BTreeMap<String, serde_json::Value> {
    path_info()
        .into_iter()
        .map(|v| (v["path"].as_str().unwrap().to_string(), v))
        .collect()
}

fn base_of(path: &str) -> &str {
    path.strip_prefix("/nix/store/").unwrap()
}

fn nar_of(base: &str) -> Vec<u8> {
    fs::read(corpus().join("nar").join(format!("{base}.nar"))).unwrap()
}

fn narinfos(cache: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(corpus().join("caches").join(cache))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "narinfo"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 9, "cache {cache} has a narinfo per store path");
    v
}

/// Re-emits an archive event by event through the streaming writer.
fn stream_copy(nar: &[u8]) -> Vec<u8> {
    let mut r = NarReader::new(nar);
    let mut w = NarWriter::new(Vec::new()).unwrap();
    while let Some(ev) = r.next().unwrap() {
        if let Some(name) = ev.name() {
            w.entry(name).unwrap();
        }
        match ev {
            Event::Directory { .. } => w.start_directory().unwrap(),
            Event::EndDirectory { .. } => w.end_directory().unwrap(),
            Event::Symlink { target, .. } => w.symlink(&target).unwrap(),
            Event::Regular {
                executable, size, ..
            } => w.regular(executable, size, &mut r.contents()).unwrap(),
        }
    }
    w.finish().unwrap()
}

#[test]
fn every_corpus_nar_round_trips_through_tree_and_stream() {
    for (name, nar) in corpus_nars() {
        let tree = Node::from_nar(&nar[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(tree.to_nar() == nar, "{name}: tree round trip differs");
        assert!(
            stream_copy(&nar) == nar,
            "{name}: streaming round trip differs"
        );
        assert_eq!(
            NarReader::new(&nar[..]).validate_all().unwrap(),
            nar.len() as u64
        );
    }
}

#[test]
fn corpus_trees_have_the_expected_shape() {
    // A spot check that the reader sees what Nix wrote, not merely something that re-serializes.
    let nars: BTreeMap<String, Vec<u8>> = corpus_nars().into_iter().collect();
    let single =
        Node::from_nar(&nars["mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public"][..]).unwrap();
    assert!(matches!(
        single,
        Node::Regular {
            executable: false,
            ..
        }
    ));
    let exe =
        Node::from_nar(&nars["gn07vq3ysff2m4mz8scgjm7nmgaffhih-single-exe-public"][..]).unwrap();
    assert!(matches!(
        exe,
        Node::Regular {
            executable: true,
            ..
        }
    ));
    let link =
        Node::from_nar(&nars["8bswc883h867a21h70j0gvrppyavddgp-bare-symlink-public"][..]).unwrap();
    assert!(matches!(link, Node::Symlink { .. }));
    let Node::Directory(cc) = Node::from_nar(&nars["case-collision"][..]).unwrap() else {
        panic!("not a directory")
    };
    let names: Vec<&[u8]> = cc.keys().map(Vec::as_slice).collect();
    assert_eq!(names, vec![&b"MAKEFILE"[..], b"Makefile", b"makefile"]);
}

#[test]
fn dump_of_every_store_path_matches_nix() {
    let root = extract_root_tar();
    for path in store_paths() {
        let base = base_of(&path);
        let on_disk = root.path().join("nix/store").join(base);
        let expected = nar_of(base);
        let ours = run_ok(&["dump", on_disk.to_str().unwrap()], b"");
        assert!(
            ours == expected,
            "nar-tool dump {base} differs from nix-store --dump ({} vs {} bytes)",
            ours.len(),
            expected.len()
        );
        let lib = dump_path(&on_disk, Vec::new(), CaseHack(false)).unwrap();
        assert!(lib == expected, "dump_path {base} differs");
        let size = nar_size(&on_disk, CaseHack(false)).unwrap();
        assert_eq!(size, expected.len() as u64, "nar_size of {base}");
    }
}

#[test]
fn nix_hash_values_are_reproduced() {
    let root = extract_root_tar();
    let text = fs::read_to_string(corpus().join("nix-hash.txt")).unwrap();
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        rows.push((
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].to_string(),
        ));
    }
    assert_eq!(rows.len(), 9);
    let paths: Vec<String> = rows
        .iter()
        .map(|(b, _, _)| {
            root.path()
                .join("nix/store")
                .join(b)
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut args32 = vec!["hash", "--type", "sha256", "--base32"];
    args32.extend(paths.iter().map(String::as_str));
    let mut args16 = vec!["hash", "--type", "sha256"];
    args16.extend(paths.iter().map(String::as_str));
    let out32 = stdout_str(&run_ok(&args32, b""));
    let out16 = stdout_str(&run_ok(&args16, b""));
    let got32: Vec<&str> = out32.lines().collect();
    let got16: Vec<&str> = out16.lines().collect();
    assert_eq!(got32.len(), 9);
    assert_eq!(got16.len(), 9);
    for (i, (base, b32, b16)) in rows.iter().enumerate() {
        assert_eq!(got32[i], b32, "{base} base32");
        assert_eq!(got16[i], b16, "{base} base16");
        // And from the corpus NAR bytes, through the library.
        let h = Hash::of(HashAlgo::Sha256, &nar_of(base));
        assert_eq!(&h.encode(Encoding::Nixbase32), b32);
        assert_eq!(&h.encode(Encoding::Base16), b16);
    }
}

#[test]
fn sri_hashes_agree_with_path_info() {
    let root = extract_root_tar();
    for info in path_info() {
        let path = info["path"].as_str().unwrap();
        let sri = info["narHash"].as_str().unwrap();
        let on_disk = root.path().join("nix/store").join(base_of(path));
        let ours = stdout_str(&run_ok(&["hash", "--sri", on_disk.to_str().unwrap()], b""));
        assert_eq!(ours.trim_end(), sri, "{path}");
        assert_eq!(
            info["narSize"].as_u64().unwrap(),
            nar_of(base_of(path)).len() as u64,
            "{path} narSize"
        );

        // convert: SRI -> nixbase32 -> SRI, and hex -> SRI
        let h = Hash::parse_any(sri).unwrap();
        let b32 = stdout_str(&run_ok(&["hash", "convert", "--base32", sri], b""));
        assert_eq!(b32.trim_end(), h.encode(Encoding::Nixbase32));
        let back = stdout_str(&run_ok(
            &[
                "hash",
                "convert",
                "--sri",
                &format!("sha256:{}", b32.trim_end()),
            ],
            b"",
        ));
        assert_eq!(back.trim_end(), sri);
        let from_hex = stdout_str(&run_ok(
            &[
                "hash",
                "convert",
                "--type",
                "sha256",
                "--sri",
                &h.encode(Encoding::Base16),
            ],
            b"",
        ));
        assert_eq!(from_hex.trim_end(), sri);
        let prefixed = stdout_str(&run_ok(
            &["hash", "convert", "--base32", "--prefix", sri],
            b"",
        ));
        assert_eq!(prefixed.trim_end(), h.to_nix_string());
    }
}

#[test]
fn every_narinfo_parses_and_is_rewritten_byte_for_byte() {
    let infos = path_info_by_path();
    let mut count = 0;
    for cache in CACHES {
        for file in narinfos(cache) {
            let text = fs::read_to_string(&file).unwrap();
            let ni = NarInfo::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(ni.to_text(), text, "{}", file.display());
            assert_eq!(NarInfo::parse(&ni.to_text()).unwrap(), ni);
            // The file is named after the store path's hash part.
            assert_eq!(
                file.file_stem().unwrap().to_str().unwrap(),
                ni.store_path.hash_part()
            );
            // Metadata agrees with `nix path-info --json` and the NAR itself.
            let pi = &infos[&ni.path()];
            assert_eq!(
                ni.nar_hash,
                Hash::parse_any(pi["narHash"].as_str().unwrap()).unwrap()
            );
            assert_eq!(ni.nar_size, pi["narSize"].as_u64().unwrap());
            let nar = nar_of(ni.store_path.base_name());
            assert_eq!(ni.nar_size, nar.len() as u64);
            assert_eq!(ni.nar_hash, Hash::of(HashAlgo::Sha256, &nar));
            let refs: Vec<String> = ni
                .references
                .iter()
                .map(|r| format!("/nix/store/{r}"))
                .collect();
            let pi_refs: Vec<String> = pi["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            assert_eq!(refs, pi_refs, "{}", file.display());
            assert_eq!(
                ni.deriver.as_ref().map(|d| format!("/nix/store/{d}")),
                pi.get("deriver").and_then(|d| d.as_str()).map(String::from)
            );
            assert_eq!(
                ni.ca.as_ref().map(ToString::to_string).as_deref(),
                pi.get("ca").and_then(|d| d.as_str())
            );
            // Every CA of the corpus is in a form Nix writes, so it is typed, not kept as text.
            assert!(
                ni.ca.as_ref().is_none_or(|ca| ca.known().is_some()),
                "{}: CA {:?} not understood",
                file.display(),
                ni.ca
            );
            // The compressed file exists with the recorded hash and size, at the URL.
            let ext = ni.compression.extension().unwrap();
            assert!(
                ni.url.ends_with(&format!(".nar{ext}")),
                "{} URL {}",
                file.display(),
                ni.url
            );
            let compressed = fs::read(corpus().join("caches").join(cache).join(&ni.url)).unwrap();
            assert_eq!(ni.file_size, Some(compressed.len() as u64));
            let fh = Hash::of(HashAlgo::Sha256, &compressed);
            assert_eq!(ni.file_hash.as_ref(), Some(&fh));
            assert_eq!(
                ni.url,
                format!("nar/{}.nar{ext}", fh.encode(Encoding::Nixbase32))
            );
            if *cache == "none" {
                assert_eq!(compressed, nar);
            }
            count += 1;
        }
    }
    assert_eq!(count, 54);
}

#[test]
fn signatures_verify_and_are_reproduced() {
    let public =
        PublicKey::parse(&fs::read_to_string(corpus().join("keys/public")).unwrap()).unwrap();
    let secret =
        SecretKey::parse(&fs::read_to_string(corpus().join("keys/secret")).unwrap()).unwrap();
    assert_eq!(public.name(), "corpus-public-1");
    assert_eq!(secret.public_key(), public);
    let other = SecretKey::from_seed("corpus-public-1", &[9; 32]).public_key();
    for cache in CACHES {
        for file in narinfos(cache) {
            let text = fs::read_to_string(&file).unwrap();
            let ni = NarInfo::parse(&text).unwrap();
            // The fingerprint, spelled out.
            let refs: Vec<String> = ni
                .references
                .iter()
                .map(|r| format!("/nix/store/{r}"))
                .collect();
            let fp = format!(
                "1;{};{};{};{}",
                ni.path(),
                ni.nar_hash.to_nix_string(),
                ni.nar_size,
                refs.join(",")
            );
            assert_eq!(ni.fingerprint().unwrap(), fp);
            if *cache == "unsigned" {
                assert!(ni.sigs.is_empty());
                let check = ni.check_signatures(std::slice::from_ref(&public)).unwrap();
                assert!(check.valid.is_empty());
                continue;
            }
            assert_eq!(ni.sigs.len(), 1, "{}", file.display());
            let check = ni.check_signatures(std::slice::from_ref(&public)).unwrap();
            assert_eq!(
                check.valid,
                vec!["corpus-public-1".to_string()],
                "{}",
                file.display()
            );
            assert!(
                check.invalid.is_empty() && check.unknown.is_empty() && check.malformed.is_empty()
            );
            // A key with the same name but other bytes does not verify it.
            let bad = ni.check_signatures(std::slice::from_ref(&other)).unwrap();
            assert_eq!(bad.invalid, vec!["corpus-public-1".to_string()]);
            // ed25519 is deterministic: our signature is Nix's.
            assert_eq!(
                secret.sign(fp.as_bytes()).to_string(),
                ni.sigs[0].to_string(),
                "{}",
                file.display()
            );
            let mut unsigned = ni.clone();
            unsigned.sigs.clear();
            unsigned.sign(&secret).unwrap();
            assert_eq!(unsigned.to_text(), text);
            // Changing anything the fingerprint covers breaks the signature.
            let mut tampered = ni.clone();
            tampered.nar_size += 1;
            assert_eq!(
                tampered
                    .check_signatures(std::slice::from_ref(&public))
                    .unwrap()
                    .invalid
                    .len(),
                1
            );
        }
    }
}

#[test]
fn signed_and_unsigned_caches_differ_only_in_sig_lines() {
    for file in narinfos("unsigned") {
        let unsigned = fs::read_to_string(&file).unwrap();
        let signed =
            fs::read_to_string(corpus().join("caches/xz").join(file.file_name().unwrap())).unwrap();
        let stripped: String = signed
            .lines()
            .filter(|l| !l.starts_with("Sig: "))
            .map(|l| format!("{l}\n"))
            .collect();
        // Same NAR, same compression settings; URLs may differ only if xz output differed.
        let a = NarInfo::parse(&unsigned).unwrap();
        let b = NarInfo::parse(&stripped).unwrap();
        assert_eq!(a.nar_hash, b.nar_hash);
        assert_eq!(a.references, b.references);
        assert_eq!(a.path(), b.path());
    }
}

#[test]
fn store_path_of_added_path() {
    let root = extract_root_tar();
    let base = "3cpw9v40wr678399d4nz2bv4rzvl3r2d-added-public";
    let expected = format!("/nix/store/{base}");
    let on_disk = root.path().join("nix/store").join(base);
    let out = stdout_str(&run_ok(
        &[
            "store-path",
            "--name",
            "added-public",
            on_disk.to_str().unwrap(),
        ],
        b"",
    ));
    assert_eq!(out.trim_end(), expected);
    // Without --name, the name is the directory's own name, as with `nix-store --add DIR`.
    let copy = TempTree::new();
    let named = copy.path().join("added-public");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&on_disk)
        .arg(&named)
        .status()
        .unwrap();
    assert!(status.success());
    let out = stdout_str(&run_ok(&["store-path", named.to_str().unwrap()], b""));
    assert_eq!(out.trim_end(), expected);
    // Another store directory gives another path.
    let out = stdout_str(&run_ok(
        &[
            "store-path",
            "--store-dir",
            "/gnu/store",
            named.to_str().unwrap(),
        ],
        b"",
    ));
    assert!(out.starts_with("/gnu/store/") && out.trim_end().ends_with("-added-public"));
    assert_ne!(&out[11..43], &base[..32]);

    // The CA line implies the same path.
    let text =
        fs::read_to_string(corpus().join(format!("caches/xz/{}.narinfo", &base[..32]))).unwrap();
    let ni = NarInfo::parse(&text).unwrap();
    let ca = ni.ca.as_ref().and_then(|ca| ca.known()).unwrap().clone();
    assert_eq!(ca, ContentAddress::parse(&ca.to_string()).unwrap());
    let dir = StoreDir::default();
    let p = ca.store_path(&dir, "added-public", &[]).unwrap();
    assert_eq!(dir.display(&p), expected);
    // And the CA's hash is the NAR hash.
    assert_eq!(
        ca,
        ContentAddress::Fixed(
            nar_tool::store_path::FileIngestion::Recursive,
            ni.nar_hash.clone()
        )
    );
}

#[test]
fn listings_equal_nix_ls_files() {
    let mut count = 0;
    for cache in ["xz", "zstd", "bzip2", "none"] {
        for file in narinfos(cache) {
            let ni = NarInfo::parse(&fs::read_to_string(&file).unwrap()).unwrap();
            let ls_path = file.with_extension("ls");
            let expected: serde_json::Value =
                serde_json::from_slice(&fs::read(&ls_path).unwrap()).unwrap();
            let nar = nar_of(ni.store_path.base_name());
            let listing = Listing::from_nar(&nar[..]).unwrap();
            let ours: serde_json::Value = serde_json::from_str(&listing.to_json()).unwrap();
            assert_eq!(ours, expected, "{}", ls_path.display());
            // It also deserializes into the same listing.
            let parsed: Listing = serde_json::from_value(expected).unwrap();
            assert_eq!(parsed, listing);
            count += 1;
        }
    }
    assert_eq!(count, 36);
}

#[test]
fn listing_offsets_point_at_contents() {
    for (name, nar) in corpus_nars() {
        let listing = Listing::from_nar(&nar[..]).unwrap();
        let tree = Node::from_nar(&nar[..]).unwrap();
        let mut stack = vec![(&listing.root, &tree)];
        let mut files = 0;
        while let Some((l, n)) = stack.pop() {
            use nar_tool::nar::listing::ListingNode as L;
            match (l, n) {
                (
                    L::Regular {
                        size,
                        executable,
                        nar_offset,
                    },
                    Node::Regular {
                        executable: e,
                        contents,
                    },
                ) => {
                    assert_eq!(*size as usize, contents.len());
                    assert_eq!(executable, e);
                    let off = nar_offset.unwrap() as usize;
                    assert_eq!(
                        &nar[off - 8..off],
                        &(contents.len() as u64).to_le_bytes(),
                        "{name}"
                    );
                    assert!(
                        nar[off..off + contents.len()] == contents[..],
                        "{name}: contents at narOffset"
                    );
                    files += 1;
                }
                (L::Symlink { target }, Node::Symlink { target: t }) => {
                    assert_eq!(target.as_bytes(), &t[..])
                }
                (L::Directory { entries }, Node::Directory(children)) => {
                    assert_eq!(entries.len(), children.len());
                    for ((ln, lc), (nn, nc)) in entries.iter().zip(children) {
                        assert_eq!(ln.as_bytes(), &nn[..]);
                        stack.push((lc, nc));
                    }
                }
                _ => panic!("{name}: listing and tree disagree"),
            }
        }
        assert!(files > 0 || name.contains("symlink"), "{name}");
    }
}

fn restore_cli(nar: &[u8], dest: &Path, case_hack: bool) {
    let mut args = vec!["restore", dest.to_str().unwrap()];
    if case_hack {
        args.push("--case-hack");
    }
    run_ok(&args, nar);
}

#[test]
fn case_hack_restore_and_dump_match_nix() {
    let nar = fs::read(corpus().join("nar/case-collision.nar")).unwrap();
    let expected: Vec<String> = fs::read_to_string(corpus().join("case-hack-restored-names.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let t = TempTree::new();

    let hacked = t.path().join("hacked");
    restore_cli(&nar, &hacked, true);
    let mut names = dir_names(&hacked);
    let mut exp = expected.clone();
    names.sort();
    exp.sort();
    assert_eq!(names, exp);
    // Each restored file holds its own original contents.
    let Node::Directory(entries) = Node::from_nar(&nar[..]).unwrap() else {
        panic!()
    };
    for disk in &expected {
        let original = disk.split("~nix~case~hack~").next().unwrap();
        let Node::Regular { contents, .. } = &entries[original.as_bytes()] else {
            panic!()
        };
        assert_eq!(&fs::read(hacked.join(disk)).unwrap(), contents, "{disk}");
    }
    let dumped = run_ok(&["dump", "--case-hack", hacked.to_str().unwrap()], b"");
    assert!(
        dumped == nar,
        "dump --case-hack of the hacked tree gives the NAR back"
    );
    // Without the flag, the suffixes stay in the names: a different archive.
    let plain_dump = run_ok(&["dump", hacked.to_str().unwrap()], b"");
    assert!(plain_dump != nar);
    let Node::Directory(plain_entries) = Node::from_nar(&plain_dump[..]).unwrap() else {
        panic!()
    };
    let mut plain_names: Vec<String> = plain_entries
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    plain_names.sort();
    assert_eq!(plain_names, exp);

    // Without the flag, restoring on Linux gives the three plain names, and dumps back as is.
    let plain = t.path().join("plain");
    restore_cli(&nar, &plain, false);
    assert_eq!(dir_names(&plain), vec!["MAKEFILE", "Makefile", "makefile"]);
    assert!(run_ok(&["dump", plain.to_str().unwrap()], b"") == nar);
    assert!(run_ok(&["dump", "--case-hack", plain.to_str().unwrap()], b"") == nar);
}

#[test]
fn cache_info_files_parse() {
    for cache in CACHES {
        let text =
            fs::read_to_string(corpus().join("caches").join(cache).join("nix-cache-info")).unwrap();
        let info = CacheInfo::parse(&text).unwrap();
        assert_eq!(info.store_dir.as_deref(), Some("/nix/store"), "{cache}");
        assert_eq!(info.to_text(), text);
    }
    let info = CacheInfo::parse("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\nFoo: bar\n")
        .unwrap();
    assert_eq!(info.want_mass_query, Some(true));
    assert_eq!(info.priority, Some(40));
    assert_eq!(info.extra, vec![("Foo".to_string(), "bar".to_string())]);
}

/// One record of `nix-store --dump-db`.
#[derive(Debug)]
struct Registration {
    path: String,
    hex_hash: String,
    size: u64,
    deriver: Option<String>,
    references: Vec<String>,
}

fn parse_registration(text: &str) -> Vec<Registration> {
    let mut lines = text.lines();
    let mut out = Vec::new();
    while let Some(path) = lines.next() {
        if path.is_empty() {
            break;
        }
        let hex_hash = lines.next().unwrap().to_string();
        let size = lines.next().unwrap().parse().unwrap();
        let deriver = lines.next().unwrap();
        let n: usize = lines.next().unwrap().parse().unwrap();
        let references = (0..n).map(|_| lines.next().unwrap().to_string()).collect();
        out.push(Registration {
            path: path.to_string(),
            hex_hash,
            size,
            deriver: (!deriver.is_empty()).then(|| deriver.to_string()),
            references,
        });
    }
    out
}

#[test]
fn registration_agrees_with_path_info() {
    let regs = parse_registration(&fs::read_to_string(corpus().join("registration")).unwrap());
    let infos = path_info_by_path();
    assert_eq!(regs.len(), 9);
    let store_paths = store_paths();
    for r in &regs {
        assert!(store_paths.contains(&r.path));
        let pi = &infos[&r.path];
        let hex = Hash::parse_as(HashAlgo::Sha256, &r.hex_hash).unwrap();
        assert_eq!(hex.encode(Encoding::Base16), r.hex_hash);
        assert_eq!(hex.to_sri(), pi["narHash"].as_str().unwrap(), "{}", r.path);
        assert_eq!(r.size, pi["narSize"].as_u64().unwrap());
        assert_eq!(
            r.deriver.as_deref(),
            pi.get("deriver").and_then(|d| d.as_str())
        );
        let pi_refs: Vec<&str> = pi["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(r.references, pi_refs);
        // The store paths parse.
        StoreDir::default().parse_path(&r.path).unwrap();
        for reference in &r.references {
            StoreDir::default().parse_path(reference).unwrap();
        }
    }
}

#[test]
fn compressed_none_cache_nars_read_through_short_reads() {
    // The uncompressed cache's NAR files go through the reader with tiny reads too.
    for file in narinfos("none") {
        let ni = NarInfo::parse(&fs::read_to_string(&file).unwrap()).unwrap();
        let bytes = fs::read(corpus().join("caches/none").join(&ni.url)).unwrap();
        let mut short = ShortReads {
            inner: &bytes[..],
            rng: Rng::new(7),
            max: 5,
        };
        let mut all = Vec::new();
        short.read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes);
        let tree = Node::from_nar(ShortReads {
            inner: &bytes[..],
            rng: Rng::new(8),
            max: 13,
        })
        .unwrap();
        assert!(tree.to_nar() == bytes);
    }
}
