//! Differential tests against the real Nix (2.8): dumps, hashes, store paths and restores of
//! hundreds of seeded random trees must agree byte for byte, and the real Nix must accept a cache
//! we signed (and refuse it once edited or when our key is not trusted).
//!
//! Skipped, with a SKIP line, when `nix-store` is not on PATH.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use nar_tool::nar::tree::Node;

const TREES: usize = 300;
const SEED: u64 = 0x6e61_722d_746f_6f6c;

fn nix_available(test: &str) -> bool {
    if have("nix-store") && have("nix-hash") {
        return true;
    }
    println!("SKIP {test}: nix-store / nix-hash not on PATH (install nix-bin to run the differential tests)");
    false
}

fn nix(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("NIX_REMOTE", "local");
    c
}

fn ok(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn nix_dump(path: &Path) -> Vec<u8> {
    ok(
        nix("nix-store").arg("--dump").arg(path).output().unwrap(),
        &format!("nix-store --dump {}", path.display()),
    )
}

/// Odd permission bits: only the owner's execute bit makes a file executable in a NAR.
fn scramble_modes(rng: &mut Rng, path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            scramble_modes(rng, &e.unwrap().path());
        }
    } else if meta.is_file() && rng.chance(30) {
        let modes = [
            0o700, 0o711, 0o010, 0o001, 0o444, 0o555, 0o600, 0o764, 0o4755,
        ];
        fs::set_permissions(path, fs::Permissions::from_mode(*rng.pick(&modes))).unwrap();
    }
}

/// The seeded random trees, written under `dir` as `tree-N`.
fn make_trees(dir: &Path) -> Vec<PathBuf> {
    let mut rng = Rng::new(SEED);
    let mut out = Vec::new();
    for i in 0..TREES {
        let mut budget = 4 + rng.below(24) as usize;
        let big = rng.chance(5);
        let utf8_only = rng.chance(70);
        let mut node = random_tree(&mut rng, 5, &mut budget, big, utf8_only);
        // Most roots are directories, as store paths usually are.
        if rng.chance(80) && !matches!(node, Node::Directory(_)) {
            let mut m = std::collections::BTreeMap::new();
            m.insert(random_name(&mut rng, utf8_only), node);
            node = Node::Directory(m);
        }
        let p = dir.join(format!("tree-{i}"));
        write_tree(&node, &p);
        scramble_modes(&mut rng, &p);
        out.push(p);
    }
    out
}

#[test]
fn dumps_hashes_and_restores_agree_with_nix() {
    if !nix_available("dumps_hashes_and_restores_agree_with_nix") {
        return;
    }
    let t = TempTree::new();
    let trees = make_trees(t.path());

    // Dumps: byte for byte.
    let mut nix_nars = Vec::new();
    let (mut files, mut links, mut dirs, mut exes) = (0, 0, 0, 0);
    for p in &trees {
        let ours = run_ok(&["dump", p.to_str().unwrap()], b"");
        let theirs = nix_dump(p);
        assert!(
            ours == theirs,
            "nar-tool dump differs from nix-store --dump for {}",
            p.display()
        );
        let tree = Node::from_nar(&ours[..]).unwrap();
        let mut stack = vec![&tree];
        while let Some(n) = stack.pop() {
            match n {
                Node::Regular { executable, .. } => {
                    files += 1;
                    exes += usize::from(*executable);
                }
                Node::Symlink { .. } => links += 1,
                Node::Directory(e) => {
                    dirs += 1;
                    stack.extend(e.values());
                }
            }
        }
        nix_nars.push(theirs);
    }
    // The trees really exercise every kind of node.
    assert!(
        files > 500 && links > 300 && dirs > 300 && exes > 100,
        "{files} {links} {dirs} {exes}"
    );

    // Hashes: every type, for every tree, in one call each.
    let paths: Vec<&str> = trees.iter().map(|p| p.to_str().unwrap()).collect();
    for ty in ["md5", "sha1", "sha256", "sha512"] {
        for fmt in [None, Some("--base32")] {
            let mut ours = vec!["hash", "--type", ty];
            let mut theirs = nix("nix-hash");
            theirs.args(["--type", ty]);
            if let Some(f) = fmt {
                ours.push(f);
                theirs.arg(f);
            }
            ours.extend(&paths);
            theirs.args(&paths);
            let ours = stdout_str(&run_ok(&ours, b""));
            let theirs = stdout_str(&ok(theirs.output().unwrap(), "nix-hash"));
            assert_eq!(ours.lines().count(), TREES);
            assert_eq!(
                ours, theirs,
                "nar-tool hash --type {ty} {fmt:?} differs from nix-hash"
            );
        }
    }

    // Restores: Nix's NAR restored by us dumps back (by Nix) to the same bytes; and ours
    // restored by Nix dumps back (by us) to the same bytes.
    for (i, nar) in nix_nars.iter().enumerate().step_by(5) {
        let dest = t.path().join(format!("restored-{i}"));
        run_ok(&["restore", dest.to_str().unwrap()], nar);
        assert!(
            nix_dump(&dest) == *nar,
            "tree-{i}: restored by nar-tool, dumped by Nix, differs"
        );
        let dest2 = t.path().join(format!("nix-restored-{i}"));
        let out = run_cmd(nix("nix-store").arg("--restore").arg(&dest2), nar);
        ok(out, "nix-store --restore");
        assert!(
            run_ok(&["dump", dest2.to_str().unwrap()], b"") == *nar,
            "tree-{i}: restored by Nix, dumped by nar-tool, differs"
        );
    }
}

fn check_store_path(p: &Path) {
    let ours = stdout_str(&run_ok(&["store-path", p.to_str().unwrap()], b""));
    let theirs = stdout_str(&ok(
        nix("nix-store").arg("--add").arg(p).output().unwrap(),
        "nix-store --add",
    ));
    assert_eq!(
        ours.trim_end(),
        theirs.trim_end(),
        "store path of {}",
        p.display()
    );
    let name = p.file_name().unwrap().to_str().unwrap();
    assert!(ours.starts_with("/nix/store/") && ours.trim_end().ends_with(&format!("-{name}")));
}

#[test]
fn store_paths_agree_with_nix_store_add() {
    if !nix_available("store_paths_agree_with_nix_store_add") {
        return;
    }
    let t = TempTree::new();
    let mut rng = Rng::new(SEED ^ 0xadd);
    for i in 0..3 {
        let mut budget = 10;
        let mut node = random_tree(&mut rng, 3, &mut budget, false, true);
        if !matches!(node, Node::Directory(_)) {
            node = Node::Directory([(b"only".to_vec(), node)].into_iter().collect());
        }
        let p = t.path().join(format!("nar-tool-diff-{i}"));
        write_tree(&node, &p);
        check_store_path(&p);
    }
    // A single file, too.
    let f = t.path().join("nar-tool-diff-file");
    fs::write(&f, b"a single file\n").unwrap();
    check_store_path(&f);
}

/// `nix-store --add LINK` archives the link itself and names the path after the link, not its
/// target (and a dangling link is fine).
#[test]
fn store_path_of_a_symlink_root_is_named_after_the_link() {
    if !nix_available("store_path_of_a_symlink_root_is_named_after_the_link") {
        return;
    }
    let t = TempTree::new();
    let target = t.path().join("the-target");
    fs::write(&target, b"x").unwrap();
    let link = t.path().join("nar-tool-diff-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    check_store_path(&link);
    let dangling = t.path().join("nar-tool-diff-dangling");
    std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
    check_store_path(&dangling);
}

/// The corpus xz cache with our signatures instead of Nix's.
fn our_signed_cache(t: &Path) -> (PathBuf, String) {
    let cache = t.join("cache");
    let status = Command::new("cp")
        .arg("-r")
        .arg(corpus().join("caches/xz"))
        .arg(&cache)
        .status()
        .unwrap();
    assert!(status.success());
    let mut infos = Vec::new();
    for e in fs::read_dir(&cache).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "narinfo") {
            let text = fs::read_to_string(&p).unwrap();
            let stripped: String = text
                .lines()
                .filter(|l| !l.starts_with("Sig: "))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_ne!(stripped, text);
            fs::write(&p, stripped).unwrap();
            infos.push(p.to_str().unwrap().to_string());
        }
    }
    assert_eq!(infos.len(), 9);
    let (sk, pk) = (t.join("key.sec"), t.join("key.pub"));
    run_ok(
        &[
            "key",
            "generate",
            "nar-tool-diff-1",
            "--secret",
            sk.to_str().unwrap(),
            "--public",
            pk.to_str().unwrap(),
        ],
        b"",
    );
    let mut sign = vec!["sign", "--key", sk.to_str().unwrap()];
    sign.extend(infos.iter().map(String::as_str));
    run_ok(&sign, b"");
    (
        cache,
        fs::read_to_string(pk).unwrap().trim_end().to_string(),
    )
}

fn nix_copy(cache: &Path, root: &Path, trusted: &str) -> Output {
    nix("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--from",
        ])
        .arg(format!("file://{}", cache.display()))
        .arg("--to")
        .arg(format!("local?root={}", root.display()))
        .args(["--option", "trusted-public-keys", trusted])
        .args(["--option", "substituters", ""])
        .args(store_paths())
        .output()
        .unwrap()
}

#[test]
fn nix_accepts_our_signatures_and_refuses_tampering() {
    if !nix_available("nix_accepts_our_signatures_and_refuses_tampering") || !have("nix") {
        println!("SKIP nix_accepts_our_signatures_and_refuses_tampering: nix not on PATH");
        return;
    }
    let t = TempTree::new();
    let (cache, public) = our_signed_cache(t.path());

    // Trusted: every path is copied, and the copies are the corpus store paths.
    let root = t.path().join("root-ok");
    let out = nix_copy(&cache, &root, &public);
    assert!(
        out.status.success(),
        "nix copy refused our signatures: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in store_paths() {
        let copied = root.join(p.trim_start_matches('/'));
        let base = p.strip_prefix("/nix/store/").unwrap();
        let expected = fs::read(corpus().join("nar").join(format!("{base}.nar"))).unwrap();
        assert!(
            run_ok(&["dump", copied.to_str().unwrap()], b"") == expected,
            "{p}"
        );
    }

    // Not trusted (Nix's corpus key instead of ours): refused.
    let corpus_key = fs::read_to_string(corpus().join("keys/public")).unwrap();
    let out = nix_copy(
        &cache,
        &t.path().join("root-untrusted"),
        corpus_key.trim_end(),
    );
    assert!(
        !out.status.success(),
        "nix copy accepted signatures by an untrusted key"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lacks a valid signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Edited after signing (a reference dropped from a narinfo): refused.
    let victim = cache.join("8bswc883h867a21h70j0gvrppyavddgp.narinfo");
    let text = fs::read_to_string(&victim).unwrap();
    let edited = text.replace(
        "References: 12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public\n",
        "References: \n",
    );
    assert_ne!(edited, text);
    fs::write(&victim, edited).unwrap();
    let out = nix_copy(&cache, &t.path().join("root-edited"), &public);
    assert!(
        !out.status.success(),
        "nix copy accepted a narinfo edited after signing"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lacks a valid signature") && err.contains("8bswc883h867a21h70j0gvrppyavddgp"),
        "{err}"
    );
}
