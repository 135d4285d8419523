use super::*;
use crate::cache::verify::MemoryStorage;
use crate::hash::Hash;
use crate::nar::tree::Node;
use crate::signing::SecretKey;
use crate::store_path::StoreDir;

const A: &str = "/nix/store/00000000000000000000000000000000-a";
const B: &str = "/nix/store/11111111111111111111111111111111-b";

fn key() -> SecretKey {
    SecretKey::from_seed("test-1", &[7; 32])
}

fn nar(text: &[u8]) -> Vec<u8> {
    Node::Regular {
        executable: false,
        contents: text.to_vec(),
    }
    .to_nar()
}

/// A cache (uncompressed NARs) holding `paths` (path, contents, references), signed.
fn cache(paths: &[(&str, &[u8], &[&str])]) -> MemoryStorage {
    let mut storage = MemoryStorage::default();
    for (path, contents, refs) in paths {
        let nar = nar(contents);
        let hash = Hash::of(HashAlgo::Sha256, &nar);
        let url = format!("nar/{}.nar", hash.encode(crate::hash::Encoding::Nixbase32));
        let refs: Vec<&str> = refs.iter().map(|r| &r[11..]).collect();
        let text = format!(
            "StorePath: {path}\nURL: {url}\nCompression: none\nFileHash: {hash}\nFileSize: {}\n\
             NarHash: {hash}\nNarSize: {}\nReferences: {}\n",
            nar.len(),
            nar.len(),
            refs.join(" ")
        );
        let mut info = NarInfo::parse(&text).unwrap();
        info.sign(&key()).unwrap();
        let hash_part = &path[11..43];
        storage
            .files
            .insert(format!("{hash_part}.narinfo"), info.to_text().into_bytes());
        storage.files.insert(url, nar);
    }
    storage
}

fn opts() -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![key().public_key()],
        ..VerifyOptions::default()
    }
}

fn path(p: &str) -> StorePath {
    StoreDir::default().parse_path(p).unwrap()
}

/// Reads the whole stream, as a restorer does, and returns it.
fn read_all(r: &mut dyn Read) -> Result<Vec<u8>, ConsumeError<String>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)
        .map_err(|e| ConsumeError::Other(e.to_string()))?;
    Ok(v)
}

#[test]
fn a_good_path_is_handed_over_whole() {
    let s = cache(&[(A, b"hello", &[])]);
    let info = read_narinfo(&s, &path(A), &opts()).unwrap();
    let got = read_nar(&s, &info, crate::cache::verify::pure_decoder, read_all).unwrap();
    assert_eq!(got, nar(b"hello"));
}

#[test]
fn an_untrusted_or_missing_narinfo_is_refused() {
    let s = cache(&[(A, b"hello", &[])]);
    let other = VerifyOptions {
        trusted_keys: vec![SecretKey::from_seed("other-1", &[8; 32]).public_key()],
        ..VerifyOptions::default()
    };
    let e = read_narinfo(&s, &path(A), &other).unwrap_err();
    assert_eq!(e[0].kind, ProblemKind::Untrusted, "{e:?}");
    let e = read_narinfo(&s, &path(B), &opts()).unwrap_err();
    assert!(
        e[0].message
            .contains("no 11111111111111111111111111111111.narinfo"),
        "{e:?}"
    );
}

#[test]
fn a_narinfo_for_another_name_is_refused() {
    // The same hash part under another name.
    let s = cache(&[(A, b"hello", &[])]);
    let e = read_narinfo(
        &s,
        &path("/nix/store/00000000000000000000000000000000-z"),
        &opts(),
    )
    .unwrap_err();
    assert_eq!(e[0].kind, ProblemKind::HashPartMismatch, "{e:?}");
}

#[test]
fn a_changed_nar_is_judged_and_what_was_consumed_dropped() {
    let mut s = cache(&[(A, b"hello", &[])]);
    let info = read_narinfo(&s, &path(A), &opts()).unwrap();
    // Same size, other contents: the file hash fails first.
    s.files.insert(info.url.clone(), nar(b"jello"));
    let e = read_nar(&s, &info, crate::cache::verify::pure_decoder, read_all).unwrap_err();
    match e {
        NarFetchError::Cache(p) => assert_eq!(p.kind, ProblemKind::FileHashMismatch, "{p:?}"),
        NarFetchError::Local(e) => panic!("{e}"),
    }
    // Without a FileHash, the NAR hash catches it.
    let mut info = info;
    info.file_hash = None;
    let e = read_nar(&s, &info, crate::cache::verify::pure_decoder, read_all).unwrap_err();
    match e {
        NarFetchError::Cache(p) => assert_eq!(p.kind, ProblemKind::NarHashMismatch, "{p:?}"),
        NarFetchError::Local(e) => panic!("{e}"),
    }
}

#[test]
fn a_longer_nar_is_cut_at_nar_size() {
    let mut s = cache(&[(A, b"hello", &[])]);
    let mut info = read_narinfo(&s, &path(A), &opts()).unwrap();
    let long = nar(&vec![b'x'; 1 << 16]);
    info.file_hash = None;
    info.file_size = Some(long.len() as u64);
    s.files.insert(info.url.clone(), long);
    let mut seen = 0;
    let e = read_nar(&s, &info, crate::cache::verify::pure_decoder, |r| {
        let v = read_all(r);
        seen = v.as_ref().map(|v| v.len()).unwrap_or(0);
        v
    })
    .unwrap_err();
    assert!(seen as u64 <= info.nar_size, "{seen} bytes handed over");
    assert!(matches!(
        e,
        NarFetchError::Cache(_) | NarFetchError::Local(_)
    ));
}

#[test]
fn only_paths_with_their_whole_closure_are_registrable() {
    let s = cache(&[(A, b"a", &[A]), (B, b"b", &[A])]);
    let mut closure = BTreeMap::new();
    for p in [A, B] {
        closure.insert(path(p), read_narinfo(&s, &path(p), &opts()).unwrap());
    }
    let both: BTreeSet<_> = [path(A), path(B)].into();
    assert_eq!(registrable(&closure, &both), both);
    let only_b: BTreeSet<_> = [path(B)].into();
    assert!(registrable(&closure, &only_b).is_empty());
    let only_a: BTreeSet<_> = [path(A)].into();
    assert_eq!(
        registrable(&closure, &only_a),
        only_a,
        "a self-reference is fine"
    );
}

#[test]
fn path_info_carries_signatures_and_references() {
    let s = cache(&[(B, b"b", &[A])]);
    let info = read_narinfo(&s, &path(B), &opts()).unwrap();
    let p = path_info(&info);
    assert_eq!(p.references, [path(A)].into());
    assert_eq!(p.sigs.len(), 1);
    assert!(p.sigs[0].starts_with("test-1:"));
    assert_eq!(p.nar_size, Some(info.nar_size));
}
