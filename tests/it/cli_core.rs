//! The command line: exit codes, `ls`, `cat`, keys and signing, hashing, against the corpus.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;
use nar_tool::hash::{Encoding, Hash, HashAlgo};
use nar_tool::nar::tree::Node;
use nar_tool::narinfo::NarInfo;
use nar_tool::signing::{PublicKey, SecretKey};

const EDGE: &str = "12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public";
const LIBDEMO: &str = "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public";

fn nar_path(base: &str) -> String {
    corpus()
        .join("nar")
        .join(format!("{base}.nar"))
        .to_str()
        .unwrap()
        .to_string()
}

fn code(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let out = run(args, stdin);
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every path in a tree, `/`-joined from the root (the root itself excluded).
fn all_paths(node: &Node) -> Vec<(String, &Node)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), node)];
    while let Some((p, n)) = stack.pop() {
        if let Node::Directory(entries) = n {
            for (name, child) in entries {
                let cp = format!("{p}/{}", String::from_utf8_lossy(name));
                out.push((cp.clone(), child));
                stack.push((cp, child));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn exit_codes() {
    // Usage errors: 2.
    for args in [
        &[][..],
        &["frobnicate"],
        &["hash", "--type", "sha3", "x"],
        &["dump"],
        &["restore"],
        &["ls"],
        &["sign", "x.narinfo"],
        &["hash", "--base32", "--sri", "x"],
        &["key", "generate"],
    ] {
        let (c, _, err) = code(args, b"");
        assert_eq!(c, 2, "{args:?}: {err}");
    }
    // Help and version: 0.
    for args in [&["--help"][..], &["--version"], &["hash", "--help"]] {
        assert_eq!(code(args, b"").0, 0, "{args:?}");
    }
    // Bad input: 1, with a message naming the problem.
    let t = TempTree::new();
    let missing = t.path().join("missing");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["dump", m],
        vec!["hash", m],
        vec!["hash", "--flat", m],
        vec!["store-path", m],
        vec!["ls", m],
        vec!["cat", m, "/x"],
        vec!["key", "public", m],
        vec!["narinfo", "check", m],
        vec!["hash", "convert", "sha256:nothex"],
    ] {
        let (c, _, err) = code(&args, b"");
        assert_eq!(c, 1, "{args:?}: {err}");
        assert!(
            err.contains("error") || err.contains("failed"),
            "{args:?}: {err}"
        );
    }
    // Restoring over an existing path: 1, and it is untouched.
    fs::write(t.path().join("exists"), b"x").unwrap();
    let nar = fs::read(nar_path(LIBDEMO)).unwrap();
    let (c, _, err) = code(
        &["restore", t.path().join("exists").to_str().unwrap()],
        &nar,
    );
    assert_eq!(c, 1);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(fs::read(t.path().join("exists")).unwrap(), b"x");
    // Garbage on stdin: 1.
    assert_eq!(
        code(
            &["restore", t.path().join("new").to_str().unwrap()],
            b"garbage"
        )
        .0,
        1
    );
    assert!(!t.path().join("new").exists());
    assert_eq!(code(&["ls", "-"], b"garbage").0, 1);
    // And success: 0.
    assert_eq!(code(&["ls", &nar_path(LIBDEMO)], b"").0, 0);
}

/// A compressed NAR given to `ls`, `cat` or `restore` is said to be compressed, with which
/// compression (the files of the corpus caches), not read as a string of absurd length.
#[test]
fn compressed_input_is_named() {
    let cache = corpus().join("caches");
    for c in ["xz", "zstd", "bzip2"] {
        let dir = cache.join(c);
        let narinfo = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "narinfo"))
            .unwrap();
        let info = NarInfo::parse(&fs::read_to_string(narinfo).unwrap()).unwrap();
        let file = dir.join(&info.url);
        let want = format!(
            "NAR byte offset 0: not a NAR: the input looks {c}-compressed (it starts with {c}'s \
             magic bytes): decompress it first"
        );
        for args in [
            vec!["ls", file.to_str().unwrap()],
            vec!["cat", file.to_str().unwrap(), "/x"],
        ] {
            let (status, out, err) = code(&args, b"");
            assert_eq!(status, 1, "{args:?}: {err}");
            assert_eq!(out, "");
            assert!(err.contains(&want), "{args:?}: {err}");
            assert!(!err.contains("a string of"), "{err}");
        }
        let (status, _, err) = code(&["ls", "-"], &fs::read(&file).unwrap());
        assert_eq!(status, 1);
        assert!(err.contains(&want), "{err}");
    }
}

#[test]
fn ls_lists_the_archive() {
    let nar = fs::read(nar_path(EDGE)).unwrap();
    let tree = Node::from_nar(&nar[..]).unwrap();
    let Node::Directory(top) = &tree else {
        panic!()
    };

    // Top level.
    let out = stdout_str(&run_ok(&["ls", &nar_path(EDGE)], b""));
    let expected: Vec<String> = top
        .keys()
        .map(|k| format!("/{}", String::from_utf8_lossy(k)))
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    // From stdin too.
    assert_eq!(stdout_str(&run_ok(&["ls", "-"], &nar)), out);

    // Recursive: every path, in archive (byte) order.
    let out = stdout_str(&run_ok(&["ls", "-R", &nar_path(EDGE)], b""));
    let listed: Vec<&str> = out.lines().collect();
    let paths = all_paths(&tree);
    let expected: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(listed.len(), expected.len());
    assert_eq!(
        listed.iter().copied().collect::<BTreeSet<_>>(),
        expected.iter().copied().collect::<BTreeSet<_>>()
    );
    // Directories come before their contents.
    for (i, p) in listed.iter().enumerate() {
        if let Some((parent, _)) = p.rsplit_once('/') {
            if !parent.is_empty() {
                assert!(listed[..i].contains(&parent), "{p} listed before {parent}");
            }
        }
    }

    // A path inside, long format.
    let out = stdout_str(&run_ok(&["ls", "-l", &nar_path(LIBDEMO), "/lib"], b""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("-r--r--r--")
            && lines[0].contains(" 200000 ")
            && lines[0].ends_with("/lib/libdemo.so")
    );
    assert!(
        lines[1].starts_with("lrwxrwxrwx") && lines[1].ends_with("/lib/libdemo.so.1 -> libdemo.so")
    );

    // A missing path: 1.
    let (c, _, err) = code(&["ls", &nar_path(LIBDEMO), "/nope"], b"");
    assert_eq!(c, 1);
    assert!(err.contains("/nope"), "{err}");
}

#[test]
fn ls_json_equals_the_nix_listing() {
    for base in [
        EDGE,
        LIBDEMO,
        "3cpw9v40wr678399d4nz2bv4rzvl3r2d-added-public",
    ] {
        let out = run_ok(&["ls", "--json", &nar_path(base)], b"");
        let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let ls = corpus()
            .join("caches/xz")
            .join(format!("{}.ls", &base[..32]));
        let nix: serde_json::Value = serde_json::from_slice(&fs::read(ls).unwrap()).unwrap();
        assert_eq!(ours, nix, "{base}");
    }
}

#[test]
fn cat_prints_files() {
    let nar = fs::read(nar_path(EDGE)).unwrap();
    let tree = Node::from_nar(&nar[..]).unwrap();
    let mut checked = 0;
    for (path, node) in all_paths(&tree) {
        if let Node::Regular { contents, .. } = node {
            if path.contains(|c: char| !c.is_ascii()) || checked >= 12 && contents.len() < 100_000 {
                continue;
            }
            let out = run_ok(&["cat", &nar_path(EDGE), &path], b"");
            assert!(out == *contents, "{path}");
            checked += 1;
        }
    }
    assert!(checked >= 12);
    // Through stdin.
    let out = run_ok(
        &["cat", "-", "/lib/libdemo.so"],
        &fs::read(nar_path(LIBDEMO)).unwrap(),
    );
    assert_eq!(out.len(), 200_000);
    // A symlink, a directory, a missing file: 1, naming the path.
    for (p, what) in [
        ("/lib/libdemo.so.1", "symlink"),
        ("/lib", "directory"),
        ("/lib/nope", "no file"),
    ] {
        let (c, _, err) = code(&["cat", &nar_path(LIBDEMO), p], b"");
        assert_eq!(c, 1, "{p}");
        assert!(err.contains(p) && err.contains(what), "{p}: {err}");
    }
}

#[test]
fn cat_of_a_corrupt_nar_names_the_file_and_offset() {
    let nar = fs::read(nar_path(LIBDEMO)).unwrap();
    let t = TempTree::new();
    // Truncated in the middle of the big file: the error comes while copying its contents.
    let cut = t.path().join("cut.nar");
    fs::write(&cut, &nar[..100_000]).unwrap();
    let (c, _, err) = code(&["cat", cut.to_str().unwrap(), "/lib/libdemo.so"], b"");
    assert_eq!(c, 1);
    assert!(err.contains("cut.nar"), "{err}");
    assert!(err.contains("NAR byte offset 100000"), "{err}");
    // A corrupted token before the file: found while looking for it.
    let mut bad = nar.clone();
    let pos = nar.windows(9).position(|w| w == b"directory").unwrap();
    bad[pos] = b'D';
    let corrupt = t.path().join("corrupt.nar");
    fs::write(&corrupt, &bad).unwrap();
    let (c, _, err) = code(&["cat", corrupt.to_str().unwrap(), "/lib/libdemo.so"], b"");
    assert_eq!(c, 1);
    assert!(err.contains("corrupt.nar"), "{err}");
    assert!(
        err.contains(&format!("NAR byte offset {}", pos - 8)),
        "{err}"
    );
    // `ls` reports it the same way.
    let (c, _, err) = code(&["ls", corrupt.to_str().unwrap()], b"");
    assert_eq!(c, 1);
    assert!(
        err.contains("corrupt.nar") && err.contains(&format!("NAR byte offset {}", pos - 8)),
        "{err}"
    );
}

fn copy_cache(name: &str, to: &Path) -> Vec<std::path::PathBuf> {
    fs::create_dir_all(to).unwrap();
    let mut v = Vec::new();
    for e in fs::read_dir(corpus().join("caches").join(name)).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "narinfo") {
            let dst = to.join(p.file_name().unwrap());
            fs::copy(&p, &dst).unwrap();
            v.push(dst);
        }
    }
    v.sort();
    v
}

fn strs(paths: &[std::path::PathBuf]) -> Vec<&str> {
    paths.iter().map(|p| p.to_str().unwrap()).collect()
}

#[test]
fn key_generate_sign_and_check() {
    let t = TempTree::new();
    let sk = t.path().join("k.sec");
    let pk = t.path().join("k.pub");
    // `key generate NAME` into k.sec and k.pub, then `more`.
    let generate = |name: &'static str, more: &[&'static str]| {
        let mut a = vec!["key", "generate", name];
        a.extend([
            "--secret",
            sk.to_str().unwrap(),
            "--public",
            pk.to_str().unwrap(),
        ]);
        a.extend(more);
        a
    };
    run_ok(&generate("test-cache-1", &[]), b"");
    assert_eq!(
        fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret = SecretKey::parse(&fs::read_to_string(&sk).unwrap()).unwrap();
    let public_text = fs::read_to_string(&pk).unwrap();
    let public = PublicKey::parse(&public_text).unwrap();
    assert_eq!(secret.public_key(), public);
    assert_eq!(public.name(), "test-cache-1");
    assert_eq!(
        stdout_str(&run_ok(&["key", "public", sk.to_str().unwrap()], b"")).trim_end(),
        public.to_string()
    );
    // Not overwritten without --force; a second key differs.
    let (c, _, err) = code(&generate("x-1", &[]), b"");
    assert_eq!(c, 1, "{err}");
    assert_eq!(fs::read_to_string(&pk).unwrap(), public_text);
    run_ok(&generate("test-cache-1", &["--force"]), b"");
    assert_ne!(fs::read_to_string(&pk).unwrap(), public_text);
    let public_text = fs::read_to_string(&pk).unwrap();
    let public = PublicKey::parse(&public_text).unwrap();
    let trusted = public_text.trim_end().to_string();

    let cache = t.path().join("cache");
    let infos = copy_cache("unsigned", &cache);
    let mut check = vec!["narinfo", "check", "--trusted-key", &trusted];
    check.extend(strs(&infos));
    // Unsigned: no valid signature, 1.
    let (c, out, _) = code(&check, b"");
    assert_eq!(c, 1);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("FAIL")).count(),
        9,
        "{out}"
    );
    // Without trusted keys, parsing alone passes.
    let mut parse_only = vec!["narinfo", "check"];
    parse_only.extend(strs(&infos));
    assert_eq!(code(&parse_only, b"").0, 0);

    // Sign all: in place, one Sig line each, nothing else left in the directory.
    let mut sign = vec!["sign", "--key", sk.to_str().unwrap()];
    sign.extend(strs(&infos));
    let before: Vec<String> = infos
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    run_ok(&sign, b"");
    let mut names = dir_names(&cache);
    names.retain(|n| !n.ends_with(".narinfo"));
    assert!(names.is_empty(), "temporary files left: {names:?}");
    for (p, old) in infos.iter().zip(&before) {
        let new = fs::read_to_string(p).unwrap();
        let added: Vec<&str> = new
            .lines()
            .filter(|l| !old.lines().any(|o| o == *l))
            .collect();
        assert_eq!(added.len(), 1, "{}", p.display());
        assert!(added[0].starts_with("Sig: test-cache-1:"));
        let ni = NarInfo::parse(&new).unwrap();
        assert_eq!(
            ni.check_signatures(std::slice::from_ref(&public))
                .unwrap()
                .valid
                .len(),
            1
        );
    }
    let (c, out, err) = code(&check, b"");
    assert_eq!(c, 0, "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("ok")).count(), 9);
    // Signing again changes nothing.
    let signed: Vec<String> = infos
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    run_ok(&sign, b"");
    let again: Vec<String> = infos
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(again, signed);

    // An untrusted key, or a trusted key of the same name with other bytes: 1.
    let other = SecretKey::from_seed("test-cache-1", &[5; 32])
        .public_key()
        .to_string();
    let mut c2 = vec!["narinfo", "check", "--trusted-key", &other];
    c2.extend(strs(&infos));
    assert_eq!(code(&c2, b"").0, 1);
    let stranger = SecretKey::from_seed("stranger-1", &[5; 32])
        .public_key()
        .to_string();
    let mut c3 = vec!["narinfo", "check", "--trusted-key", &stranger];
    c3.extend(strs(&infos));
    assert_eq!(code(&c3, b"").0, 1);

    // Edit one narinfo after signing: that one fails, naming it.
    let victim = &infos[3];
    let text = fs::read_to_string(victim).unwrap();
    let ni = NarInfo::parse(&text).unwrap();
    let edited = text.replace(
        &format!("NarSize: {}\n", ni.nar_size),
        &format!("NarSize: {}\n", ni.nar_size + 8),
    );
    assert_ne!(edited, text);
    fs::write(victim, edited).unwrap();
    let (c, out, _) = code(&check, b"");
    assert_eq!(c, 1);
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "{out}");
    assert!(
        fails[0].contains(victim.to_str().unwrap()) && fails[0].contains("does not verify"),
        "{out}"
    );
}

#[test]
fn sign_reproduces_nix_signatures_and_is_atomic() {
    let t = TempTree::new();
    let cache = t.path().join("cache");
    let infos = copy_cache("unsigned", &cache);
    let key = corpus().join("keys/secret");
    let mut sign = vec!["sign", "--key", key.to_str().unwrap()];
    sign.extend(strs(&infos));
    let inodes: Vec<u64> = infos
        .iter()
        .map(|p| fs::metadata(p).unwrap().ino())
        .collect();
    run_ok(&sign, b"");
    for (p, ino) in infos.iter().zip(inodes) {
        let nix =
            fs::read_to_string(corpus().join("caches/xz").join(p.file_name().unwrap())).unwrap();
        assert_eq!(fs::read_to_string(p).unwrap(), nix, "{}", p.display());
        // Replaced by rename, not rewritten in place.
        assert_ne!(fs::metadata(p).unwrap().ino(), ino);
        assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o644);
    }
    // A broken narinfo is left as it was, and no temporary file stays behind.
    let broken = cache.join("broken.narinfo");
    fs::write(&broken, "StorePath: nonsense\n").unwrap();
    let (c, _, err) = code(
        &[
            "sign",
            "--key",
            key.to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(c, 1);
    assert!(
        err.contains("broken.narinfo") && err.contains("line 1"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&broken).unwrap(),
        "StorePath: nonsense\n"
    );
    assert_eq!(dir_names(&cache).len(), 10);
    // A bad key file: 1, nothing changed.
    let badkey = t.path().join("bad.sec");
    fs::write(&badkey, "name:AAAA").unwrap();
    let before = fs::read_to_string(&infos[0]).unwrap();
    let (c, _, err) = code(
        &[
            "sign",
            "--key",
            badkey.to_str().unwrap(),
            infos[0].to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(c, 1);
    assert!(err.contains("bad.sec"), "{err}");
    assert_eq!(fs::read_to_string(&infos[0]).unwrap(), before);
    // Narinfo check also refuses a file named after another path.
    let wrong = cache.join("00000000000000000000000000000000.narinfo");
    fs::copy(&infos[0], &wrong).unwrap();
    let (c, out, _) = code(&["narinfo", "check", wrong.to_str().unwrap()], b"");
    assert_eq!(c, 1);
    assert!(out.contains("does not match"), "{out}");
}

#[test]
fn hash_flat_and_types() {
    let t = TempTree::new();
    let f = t.path().join("file");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&f, &data).unwrap();
    for (ty, algo) in [
        ("md5", HashAlgo::Md5),
        ("sha1", HashAlgo::Sha1),
        ("sha256", HashAlgo::Sha256),
        ("sha512", HashAlgo::Sha512),
    ] {
        let h = Hash::of(algo, &data);
        let out = stdout_str(&run_ok(
            &["hash", "--flat", "--type", ty, f.to_str().unwrap()],
            b"",
        ));
        assert_eq!(out.trim_end(), h.encode(Encoding::Base16), "{ty}");
        let out = stdout_str(&run_ok(
            &[
                "hash",
                "--flat",
                "--type",
                ty,
                "--base32",
                f.to_str().unwrap(),
            ],
            b"",
        ));
        assert_eq!(out.trim_end(), h.encode(Encoding::Nixbase32), "{ty}");
        let out = stdout_str(&run_ok(
            &["hash", "--flat", "--type", ty, "--sri", f.to_str().unwrap()],
            b"",
        ));
        assert_eq!(out.trim_end(), h.to_sri(), "{ty}");
        let out = stdout_str(&run_ok(
            &[
                "hash",
                "--flat",
                "--type",
                ty,
                "--base64",
                f.to_str().unwrap(),
            ],
            b"",
        ));
        assert_eq!(out.trim_end(), h.encode(Encoding::Base64), "{ty}");
        // The NAR hash of a file is the hash of its NAR, not of its contents.
        let nar = Node::Regular {
            executable: false,
            contents: data.clone(),
        }
        .to_nar();
        let out = stdout_str(&run_ok(&["hash", "--type", ty, f.to_str().unwrap()], b""));
        assert_eq!(
            out.trim_end(),
            Hash::of(algo, &nar).encode(Encoding::Base16),
            "{ty}"
        );
    }
    // The default is sha256 in base16.
    let out = stdout_str(&run_ok(&["hash", "--flat", f.to_str().unwrap()], b""));
    assert_eq!(
        out.trim_end(),
        Hash::of(HashAlgo::Sha256, &data).encode(Encoding::Base16)
    );
}

#[test]
fn hash_types_agree_with_nix_hash() {
    if !have("nix-hash") {
        println!("SKIP hash_types_agree_with_nix_hash: nix-hash is not installed");
        return;
    }
    let root = extract_root_tar();
    let store = root.path().join("nix/store");
    let paths: Vec<String> = store_paths()
        .iter()
        .map(|p| {
            store
                .join(p.strip_prefix("/nix/store/").unwrap())
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let files = [
        "mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public",
        "gn07vq3ysff2m4mz8scgjm7nmgaffhih-single-exe-public",
    ];
    for ty in ["md5", "sha1", "sha256", "sha512"] {
        for fmt in [None, Some("--base32")] {
            let mut ours = vec!["hash", "--type", ty];
            let mut nix = Command::new("nix-hash");
            nix.args(["--type", ty]);
            if let Some(f) = fmt {
                ours.push(f);
                nix.arg(f);
            }
            ours.extend(paths.iter().map(String::as_str));
            nix.args(&paths);
            let nix_out = nix.output().unwrap();
            assert!(
                nix_out.status.success(),
                "{}",
                String::from_utf8_lossy(&nix_out.stderr)
            );
            assert_eq!(
                stdout_str(&run_ok(&ours, b"")),
                stdout_str(&nix_out.stdout),
                "{ty} {fmt:?}"
            );
        }
        for f in files {
            let p = store.join(f);
            let nix_out = Command::new("nix-hash")
                .args(["--flat", "--type", ty])
                .arg(&p)
                .output()
                .unwrap();
            assert!(nix_out.status.success());
            let ours = run_ok(&["hash", "--flat", "--type", ty, p.to_str().unwrap()], b"");
            assert_eq!(
                stdout_str(&ours),
                stdout_str(&nix_out.stdout),
                "{ty} --flat {f}"
            );
        }
    }
}

#[test]
fn dump_and_restore_through_the_cli() {
    let t = TempTree::new();
    for (name, nar) in corpus_nars() {
        let dest = t.path().join(&name);
        run_ok(&["restore", dest.to_str().unwrap()], &nar);
        assert!(
            run_ok(&["dump", dest.to_str().unwrap()], b"") == nar,
            "{name}"
        );
    }
    // Dumping a special file is refused: 1.
    if Path::new("/dev/null").exists() {
        let (c, _, err) = code(&["dump", "/dev/null"], b"");
        assert_eq!(c, 1);
        assert!(err.contains("/dev/null"), "{err}");
    }
}

#[test]
fn store_path_of_files_and_errors() {
    let t = TempTree::new();
    let f = t.path().join("hello.txt");
    fs::write(&f, b"hello\n").unwrap();
    let out = stdout_str(&run_ok(&["store-path", f.to_str().unwrap()], b""));
    let nar = Node::Regular {
        executable: false,
        contents: b"hello\n".to_vec(),
    }
    .to_nar();
    let dir = nar_tool::store_path::StoreDir::default();
    let expected = nar_tool::store_path::make_source_path(
        &dir,
        "hello.txt",
        &Hash::of(HashAlgo::Sha256, &nar),
        &[],
        false,
    )
    .unwrap();
    assert_eq!(out.trim_end(), dir.display(&expected));
    // A name Nix refuses: 1.
    let (c, _, err) = code(
        &["store-path", "--name", ".hidden", f.to_str().unwrap()],
        b"",
    );
    assert_eq!(c, 1, "{err}");
    let (c, _, _) = code(
        &["store-path", "--store-dir", "relative", f.to_str().unwrap()],
        b"",
    );
    assert_eq!(c, 1);
}
