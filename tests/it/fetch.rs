//! `nar-tool fetch`, `optimise` and `lookup --store-root` against the real Nix (2.8): a closure
//! fetched from a cache Nix made (`nix copy --to file://`) and from one `build-cache` made is
//! what `nix copy --from` gives (file modes and times, `nix path-info` metadata), the real Nix
//! verifies it after `--load-db` of our registration and with our `--write-db` DB; our `.links`
//! are Nix's, with the same saving; hostile caches leave nothing in the store; fetches and
//! optimisations running at once on one root leave a store Nix verifies.
//!
//! Skipped, with a SKIP line, when `nix` is not on PATH.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use nar_tool::hash::{Encoding, Hash, HashAlgo};

// ---------------------------------------------------------------------------------------------
// The real Nix

fn nix_available(test: &str) -> bool {
    if have("nix") && have("nix-store") {
        return true;
    }
    println!("SKIP {test}: nix / nix-store not on PATH");
    false
}

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

fn store_of(root: &Path) -> String {
    format!("local?root={}", root.display())
}

/// Runs a Nix program with the local store, insisting on success; returns (stdout, stderr).
fn nix_ok(program: &str, args: &[&str], stdin: &[u8]) -> (String, String) {
    let mut cmd = Command::new(program);
    cmd.env("NIX_REMOTE", "local");
    if program == "nix" {
        cmd.args(["--extra-experimental-features", "nix-command"]);
    }
    let out = run_cmd(cmd.args(args), stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({:?}): {stderr}",
        out.status.code()
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// `nix-store --verify --check-contents` and `nix path-info -r` of `paths` in the store under
/// `root` succeed; returns the path-info JSON, registration times left out.
fn nix_accepts(root: &Path, paths: &[String], what: &str) -> serde_json::Value {
    let store = store_of(root);
    let (_, err) = nix_ok(
        "nix-store",
        &["--store", &store, "--verify", "--check-contents"],
        b"",
    );
    assert!(
        !err.contains("error") && !err.contains("warning"),
        "{what}: nix-store --verify complained: {err}"
    );
    let mut args = vec!["path-info", "--store", &store, "-r", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let (out, _) = nix_ok("nix", &args, b"");
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for entry in v.as_array_mut().expect("Nix 2.8 prints an array") {
        entry.as_object_mut().unwrap().remove("registrationTime");
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a store with duplicate files, a cache Nix made of it and one build-cache made

/// Directories with the same files in several places (regular, executable, empty, symlinks,
/// a larger file), added to a new store with `nix-store --add`.
struct Source {
    _tmp: TempTree,
    paths: Vec<String>,
    /// `nix copy --to file://…` of the paths, signed with the corpus key.
    nix_cache: PathBuf,
    /// `nar-tool build-cache` of the paths, signed with the corpus key.
    our_cache: PathBuf,
}

fn write_dup_dir(dir: &Path, i: usize) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    let big = pseudo_random(200_000, 42);
    for (name, data) in [
        ("same", &b"the same contents\n"[..]),
        ("same-too", b"the same contents\n"),
        ("sub/same", b"the same contents\n"),
        ("empty", b""),
        ("sub/empty", b""),
        ("big", &big),
        ("sub/deeper/big", &big),
    ] {
        fs::write(dir.join(name), data).unwrap();
    }
    fs::write(dir.join("own"), format!("only in {i}\n")).unwrap();
    fs::write(dir.join("run"), b"#!/bin/sh\necho same\n").unwrap();
    fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
    // Same contents as `run`, not executable: a different NAR, so a different link.
    fs::write(dir.join("run-text"), b"#!/bin/sh\necho same\n").unwrap();
    std::os::unix::fs::symlink("same", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("same", dir.join("sub/link")).unwrap();
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    rng.bytes(n)
}

fn source() -> Source {
    let tmp = TempTree::new();
    let root = tmp.path().join("src-root");
    let mut paths = Vec::new();
    for i in 0..3 {
        let dir = tmp.path().join(format!("dup-{i}"));
        write_dup_dir(&dir, i);
        let (out, _) = nix_ok(
            "nix-store",
            &["--store", &store_of(&root), "--add", &s(&dir)],
            b"",
        );
        paths.push(out.trim().to_string());
    }
    let nix_cache = tmp.path().join("nix-cache");
    let mut args = vec![
        "copy".to_string(),
        "--from".into(),
        store_of(&root),
        "--to".into(),
        format!("file://{}?secret-key={}", nix_cache.display(), secret_key()),
    ];
    args.extend(paths.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    nix_ok("nix", &args, b"");
    let our_cache = tmp.path().join("our-cache");
    let mut args = vec![
        "build-cache".to_string(),
        "--to".into(),
        s(&our_cache),
        "--store-root".into(),
        s(&root),
        "--sign".into(),
        secret_key(),
    ];
    args.extend(paths.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok(&args, b"");
    Source {
        _tmp: tmp,
        paths,
        nix_cache,
        our_cache,
    }
}

// ---------------------------------------------------------------------------------------------
// Running the tool

fn fetch_cmd(cache: &Path, root: &Path, extra: &[&str], paths: &[String]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["fetch", "--from", &s(cache), "--store-root", &s(root)])
        .args(["--trusted-key", &public_key()])
        .args(extra)
        .args(paths);
    cmd
}

fn fetch(cache: &Path, root: &Path, extra: &[&str], paths: &[String]) -> Output {
    run_cmd(&mut fetch_cmd(cache, root, extra, paths), b"")
}

fn fetch_ok(cache: &Path, root: &Path, extra: &[&str], paths: &[String]) -> String {
    let out = fetch(cache, root, extra, paths);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "fetch {extra:?} failed ({:?}): {stderr}",
        out.status.code()
    );
    stderr
}

/// Every file of the store paths under `root`: type, mode, modification time, contents or
/// target (link counts left out: they are what optimising changes).
fn tree_facts(root: &Path, paths: &[String]) -> BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = paths
        .iter()
        .map(|p| root.join(p.trim_start_matches('/')))
        .collect();
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = s(p.strip_prefix(root).unwrap());
        let (kind, data) = if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ('d', Vec::new())
        } else if m.file_type().is_symlink() {
            let t = fs::read_link(&p).unwrap();
            ('l', t.as_os_str().as_encoded_bytes().to_vec())
        } else {
            ('f', fs::read(&p).unwrap())
        };
        let mode = if kind == 'l' { 0 } else { m.mode() & 0o7777 };
        out.insert(rel, (kind, mode, m.mtime(), data));
    }
    out
}

/// The store directory's entries, sorted (what a failed fetch must leave empty).
fn store_entries(root: &Path) -> Vec<String> {
    let store = root.join("nix/store");
    if !store.exists() {
        return Vec::new();
    }
    dir_names(&store)
}

fn links(root: &Path) -> Vec<String> {
    dir_names(&root.join("nix/store/.links"))
}

/// The line Nix's optimiser ends with (`… MiB freed by hard-linking N files`).
fn saving_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("freed by hard-linking"))
        .unwrap_or_else(|| panic!("no saving reported: {stderr}"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn fetched_closures_are_what_nix_copy_gives_and_nix_verifies_them() {
    if !nix_available("fetched_closures_are_what_nix_copy_gives_and_nix_verifies_them") {
        return;
    }
    let src = source();
    let corpus_paths = store_paths();
    // (cache, who made it, the paths to fetch)
    let caches: [(PathBuf, &str, &[String]); 3] = [
        (src.nix_cache.clone(), "nix copy --to file://", &src.paths),
        (src.our_cache.clone(), "build-cache", &src.paths),
        (
            corpus().join("caches/xz"),
            "Nix 2.8's corpus cache",
            &corpus_paths,
        ),
    ];
    for (cache, made_by, paths) in caches {
        // What the real Nix gives: nix copy --from the same cache.
        let theirs = TempTree::new();
        let out = nix_copy_from(
            &format!("file://{}", cache.display()),
            theirs.path(),
            &public_key(),
            &paths.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{made_by}: nix copy failed");
        let nix_info = nix_accepts(theirs.path(), paths, made_by);

        // With our DB.
        let ours = TempTree::new();
        let err = fetch_ok(&cache, ours.path(), &["--write-db"], paths);
        assert!(err.contains("0 failed"), "{made_by}: {err}");
        let our_info = nix_accepts(ours.path(), paths, made_by);
        assert_eq!(our_info, nix_info, "{made_by}: nix path-info differs");
        assert_eq!(
            tree_facts(ours.path(), paths),
            tree_facts(theirs.path(), paths),
            "{made_by}: the restored trees differ (modes, times, contents)"
        );
        assert!(
            !store_entries(ours.path())
                .iter()
                .any(|n| n != ".links" && (n.starts_with('.') || n.ends_with(".lock"))),
            "{made_by}: leftovers {:?}",
            store_entries(ours.path())
        );

        // With our registration loaded by nix-store --load-db.
        let loaded = TempTree::new();
        let reg = loaded.path().join("registration");
        fetch_ok(&cache, loaded.path(), &["--registration", &s(&reg)], paths);
        let text = fs::read(&reg).unwrap();
        nix_ok(
            "nix-store",
            &["--store", &store_of(loaded.path()), "--load-db"],
            &text,
        );
        let mut loaded_info = nix_accepts(loaded.path(), paths, made_by);
        // load-db records no signatures: compare the rest.
        let mut expected = nix_info.clone();
        for v in [&mut loaded_info, &mut expected] {
            for e in v.as_array_mut().unwrap() {
                e.as_object_mut().unwrap().remove("signatures");
                e.as_object_mut().unwrap().remove("ca");
            }
        }
        assert_eq!(loaded_info, expected, "{made_by}: after --load-db");

        // A second fetch finds everything valid and changes nothing.
        let err = fetch_ok(&cache, ours.path(), &["--write-db"], paths);
        assert!(err.contains("0 paths fetched"), "{made_by}: {err}");
    }
}

#[test]
fn registration_and_db_match_nix_for_the_corpus() {
    if !nix_available("registration_and_db_match_nix_for_the_corpus") {
        return;
    }
    let paths = store_paths();
    let ours = TempTree::new();
    let reg = ours.path().join("registration");
    fetch_ok(
        &corpus().join("caches/zstd"),
        ours.path(),
        &["--write-db", "--registration", &s(&reg)],
        &paths,
    );
    // Byte for byte what Nix 2.8's --dump-db wrote for these paths.
    assert_eq!(
        fs::read_to_string(&reg).unwrap(),
        fs::read_to_string(corpus().join("registration")).unwrap()
    );
    let (dumped, _) = nix_ok(
        "nix-store",
        &["--store", &store_of(ours.path()), "--dump-db"],
        b"",
    );
    assert_eq!(dumped, fs::read_to_string(&reg).unwrap());
    // The DB's schema is exactly the one Nix 2.8 created in the corpus's store.
    let schema = |db: &Path| -> Vec<(String, String, Option<String>)> {
        let c = rusqlite_open(db);
        let mut st = c
            .prepare("select type, name, sql from sqlite_master order by type, name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let nix_root = extract_root_tar();
    assert_eq!(
        schema(&ours.path().join("nix/var/nix/db/db.sqlite")),
        schema(&nix_root.path().join("nix/var/nix/db/db.sqlite"))
    );
    assert_eq!(
        fs::read(ours.path().join("nix/var/nix/db/schema")).unwrap(),
        b"10"
    );

    // lookup: hash parts and store paths to paths, one query each.
    let hp = &paths[3][11..43];
    let out = run_ok(
        &["lookup", "--store-root", &s(ours.path()), hp, &paths[5]],
        b"",
    );
    assert_eq!(stdout_str(&out), format!("{}\n{}\n", paths[3], paths[5]));
    let out = run(
        &[
            "lookup",
            "--store-root",
            &s(ours.path()),
            "00000000000000000000000000000000",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let out = run(
        &["lookup", "--store-root", &s(ours.path()), "not-a-hash"],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed hash part is a usage error"
    );
}

fn rusqlite_open(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

#[test]
fn optimise_makes_nix_links_and_reports_nix_saving() {
    if !nix_available("optimise_makes_nix_links_and_reports_nix_saving") {
        return;
    }
    let src = source();
    let paths = &src.paths;
    // Nix: copy, then nix-store --optimise.
    let theirs = TempTree::new();
    let out = nix_copy_from(
        &format!("file://{}", src.nix_cache.display()),
        theirs.path(),
        &public_key(),
        &paths.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success());
    let (_, nix_err) = nix_ok(
        "nix-store",
        &["--store", &store_of(theirs.path()), "--optimise"],
        b"",
    );
    let nix_saving = saving_line(&nix_err);
    assert!(!nix_saving.starts_with("0.00 MiB"), "{nix_saving}");

    // Ours, by `optimise` after the fetch, and by `fetch --optimise`.
    let after = TempTree::new();
    fetch_ok(&src.nix_cache, after.path(), &["--write-db"], paths);
    let dry = run(
        &["optimise", "--store-root", &s(after.path()), "--dry-run"],
        b"",
    );
    assert!(dry.status.success());
    assert!(saving_line(&String::from_utf8_lossy(&dry.stderr)).ends_with(&nix_saving));
    assert!(
        !after.path().join("nix/store/.links").exists(),
        "a dry run changed the store"
    );
    let out = run(&["optimise", "--store-root", &s(after.path())], b"");
    assert!(out.status.success());
    assert_eq!(
        saving_line(&String::from_utf8_lossy(&out.stderr)),
        nix_saving
    );

    let during = TempTree::new();
    let err = fetch_ok(
        &src.our_cache,
        during.path(),
        &["--write-db", "--optimise"],
        paths,
    );
    assert_eq!(saving_line(&err), nix_saving);

    for (root, what) in [
        (after.path(), "optimise"),
        (during.path(), "fetch --optimise"),
    ] {
        assert_eq!(links(root), links(theirs.path()), "{what}: .links names");
        assert_eq!(
            tree_facts(root, paths),
            tree_facts(theirs.path(), paths),
            "{what}: trees differ after optimising"
        );
        // Nix finds nothing left to link, and the store intact.
        let (_, err) = nix_ok(
            "nix-store",
            &["--store", &store_of(root), "--optimise"],
            b"",
        );
        assert_eq!(
            saving_line(&err),
            "0.00 MiB freed by hard-linking 0 files",
            "{what}"
        );
        nix_accepts(root, paths, what);
        // Files share inodes as Nix's do: the same link counts.
        let big = root.join(paths[0].trim_start_matches('/')).join("big");
        assert_eq!(
            fs::metadata(&big).unwrap().nlink(),
            7,
            "{what}: 6 copies + .links"
        );
    }
    // Running again links nothing.
    let out = run(&["optimise", "--store-root", &s(after.path())], b"");
    assert_eq!(
        saving_line(&String::from_utf8_lossy(&out.stderr)),
        "0.00 MiB freed by hard-linking 0 files"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile caches

const EVIL: &str = "/nix/store/00000000000000000000000000000001-evil";

/// A cache (uncompressed) with one path whose NAR is `nar`; the narinfo claims `nar_hash` and
/// `nar_size` (the NAR's own unless given), signed by the corpus key.
fn evil_cache(dir: &Path, nar: &[u8], claimed: Option<(&Hash, u64)>) -> PathBuf {
    let cache = dir.join("evil-cache");
    fs::create_dir_all(cache.join("nar")).unwrap();
    fs::write(cache.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    let hash = Hash::of(HashAlgo::Sha256, nar);
    let file = format!("nar/{}.nar", hash.encode(Encoding::Nixbase32));
    fs::write(cache.join(&file), nar).unwrap();
    let (nar_hash, nar_size) = match claimed {
        Some((h, n)) => (h.clone(), n),
        None => (hash.clone(), nar.len() as u64),
    };
    let narinfo = cache.join(format!("{}.narinfo", &EVIL[11..43]));
    fs::write(
        &narinfo,
        format!(
            "StorePath: {EVIL}\nURL: {file}\nCompression: none\nFileHash: {hash}\n\
             FileSize: {}\nNarHash: {nar_hash}\nNarSize: {nar_size}\nReferences: \n",
            nar.len()
        ),
    )
    .unwrap();
    run_ok(
        &["sign", "--secret-key-file", &secret_key(), &s(&narinfo)],
        b"",
    );
    cache
}

/// What a hostile cache does, its NAR, the NarHash and NarSize its narinfo claims (the NAR's own
/// if none), and what the error must say.
type HostileCase<'a> = (&'a str, Vec<u8>, Option<(&'a Hash, u64)>, &'a str);

fn dir_nar(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut n = NarBytes::magic().ss(&[b"(", b"type", b"directory"]);
    for (name, contents) in entries {
        n = n.ss(&[b"entry", b"(", b"name", name, b"node", b"("]).ss(&[
            b"type",
            b"regular",
            b"contents",
            contents,
            b")",
            b")",
        ]);
    }
    n.s(b")").bytes()
}

#[test]
fn hostile_caches_leave_nothing_in_the_store() {
    let good = dir_nar(&[(b"a", b"fine")]);
    let good_hash = Hash::of(HashAlgo::Sha256, &good);
    let other_hash = Hash::of(HashAlgo::Sha256, b"something else");
    let mut long = good.clone();
    long.extend_from_slice(&[0; 8]);
    let cases: Vec<HostileCase> = vec![
        (
            "a `..` entry",
            dir_nar(&[(b"..", b"x")]),
            None,
            "invalid entry name",
        ),
        (
            "a `.` entry",
            dir_nar(&[(b".", b"x")]),
            None,
            "invalid entry name",
        ),
        (
            "a name with a slash",
            dir_nar(&[(b"a/b", b"x")]),
            None,
            "invalid entry name",
        ),
        (
            "a NUL in a name",
            dir_nar(&[(b"a\0b", b"x")]),
            None,
            "invalid entry name",
        ),
        (
            "names out of order (an overwrite)",
            dir_nar(&[(b"b", b"1"), (b"a", b"2")]),
            None,
            "ascending",
        ),
        (
            "a duplicate name (an overwrite)",
            dir_nar(&[(b"a", b"1"), (b"a", b"2")]),
            None,
            "",
        ),
        (
            "a NAR that is not the one signed",
            good.clone(),
            Some((&other_hash, good.len() as u64)),
            "NarHash",
        ),
        (
            "a NAR longer than NarSize",
            long,
            Some((&good_hash, good.len() as u64)),
            "",
        ),
        (
            "a cut NAR",
            good[..good.len() - 16].to_vec(),
            Some((&good_hash, good.len() as u64)),
            "",
        ),
    ];
    for (what, nar, claimed, says) in cases {
        let dir = TempTree::new();
        let cache = evil_cache(dir.path(), &nar, claimed);
        let root = dir.path().join("root");
        for extra in [&["--write-db"][..], &[]] {
            let out = fetch(&cache, &root, extra, &[EVIL.to_string()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert!(err.contains(says) && err.contains(EVIL), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
            assert_eq!(store_entries(&root), Vec::<String>::new(), "{what}");
        }
    }

    // A bad signature: the narinfo changed after signing.
    let dir = TempTree::new();
    let cache = evil_cache(dir.path(), &good, None);
    let narinfo = cache.join(format!("{}.narinfo", &EVIL[11..43]));
    let tampered = fs::read_to_string(&narinfo).unwrap().replace(
        &format!("NarHash: {good_hash}"),
        &format!("NarHash: {other_hash}"),
    );
    assert!(tampered.contains(&other_hash.to_string()));
    fs::write(&narinfo, tampered).unwrap();
    let root = dir.path().join("root");
    let out = fetch(&cache, &root, &["--write-db"], &[EVIL.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not verify"), "{err}");
    assert_eq!(store_entries(&root), Vec::<String>::new());
    // An untrusted key.
    let out = run_cmd(
        Command::new(bin())
            .args(["fetch", "--from", &s(&cache), "--store-root", &s(&root)])
            .args([
                "--trusted-key",
                "other-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ])
            .arg(EVIL),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid signature by a trusted key"));
    assert_eq!(store_entries(&root), Vec::<String>::new());
    // No trusted key at all is a usage error unless --no-check-sigs.
    let out = run(
        &[
            "fetch",
            "--from",
            &s(&cache),
            "--store-root",
            &s(&root),
            EVIL,
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn fetches_optimisations_and_a_collection_at_once_leave_a_store_nix_verifies() {
    if !nix_available("fetches_optimisations_and_a_collection_at_once_leave_a_store_nix_verifies") {
        return;
    }
    let src = source();
    let corpus_paths = store_paths();
    for round in 0..3 {
        let root = TempTree::new();
        let r = root.path();
        let mut children = Vec::new();
        let spawn = |mut cmd: Command| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        for cache in [&src.nix_cache, &src.our_cache, &src.nix_cache] {
            children.push(spawn(fetch_cmd(
                cache,
                r,
                &["--write-db", "--optimise", "--jobs", "2"],
                &src.paths,
            )));
        }
        children.push(spawn(fetch_cmd(
            &corpus().join("caches/xz"),
            r,
            &["--write-db", "--optimise"],
            &corpus_paths,
        )));
        for _ in 0..2 {
            let mut cmd = Command::new(bin());
            cmd.args(["optimise", "--store-root", &s(r)]);
            children.push(spawn(cmd));
        }
        // A collection too, once a DB is there: the source paths are rooted, the corpus's are
        // not (kept only while their fetch holds them).
        let gcroots = r.join("nix/var/nix/gcroots");
        fs::create_dir_all(&gcroots).unwrap();
        for (i, p) in src.paths.iter().enumerate() {
            std::os::unix::fs::symlink(p, gcroots.join(format!("src-{i}"))).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !r.join("nix/var/nix/db/schema").exists() {
            assert!(Instant::now() < deadline, "round {round}: no DB after 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut cmd = Command::new(bin());
        cmd.args(["gc", "--store-root", &s(r)]);
        children.push(spawn(cmd));
        let deadline = Instant::now() + Duration::from_secs(120);
        for mut child in children {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err)
                        .unwrap();
                    assert!(
                        status.success(),
                        "round {round}: a process failed ({status}): {err}"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: still running after 120 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // (The corpus paths may have been collected; what is there verifies.)
        nix_accepts(r, &src.paths, &format!("round {round}"));
        // Everything linked once: Nix finds nothing left to do.
        let (_, err) = nix_ok("nix-store", &["--store", &store_of(r), "--optimise"], b"");
        assert_eq!(
            saving_line(&err),
            "0.00 MiB freed by hard-linking 0 files",
            "round {round}"
        );
        assert!(
            !store_entries(r).iter().any(|n| n.starts_with(".tmp-link")
                || n.ends_with(".lock")
                || n.contains(".fetching-")),
            "round {round}: leftovers {:?}",
            store_entries(r)
        );
    }
}

#[test]
fn fetched_from_a_bucket_and_over_http_as_from_a_directory() {
    if !nix_available("fetched_from_a_bucket_and_over_http_as_from_a_directory") {
        return;
    }
    let srv = crate::common::s3::server();
    let prefix = srv.fresh_prefix("fetch");
    let url = srv.url(&prefix);
    let root = extract_root_tar();
    let paths = store_paths();
    let out = run_cmd(
        srv.command()
            .args(["build-cache", "--quiet", "--to", &url])
            .args(["--store-root", &s(root.path()), "--sign", &secret_key()])
            .args(&paths),
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_dir = TempTree::new();
    fetch_ok(
        &corpus().join("caches/zstd"),
        from_dir.path(),
        &["--write-db"],
        &paths,
    );
    let expected = tree_facts(from_dir.path(), &paths);
    for (source, what) in [(url.clone(), "s3://"), (srv.anon_base(&prefix), "http://")] {
        let dest = TempTree::new();
        let mut cmd = Command::new(bin());
        srv.credentials_into(&mut cmd);
        cmd.args(["fetch", "--from", &source, "--store-root", &s(dest.path())])
            .args(["--trusted-key", &public_key(), "--write-db"])
            .args(&paths);
        let out = run_cmd(&mut cmd, b"");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        nix_accepts(dest.path(), &paths, what);
        assert_eq!(tree_facts(dest.path(), &paths), expected, "{what}");
    }
}
