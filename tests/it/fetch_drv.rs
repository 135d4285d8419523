//! `fetch --write-db` of closures with derivations, against the real Nix (2.8): each `.drv`
//! gets the `DerivationOutputs` rows Nix gives it (compared with the DB of the store Nix
//! instantiated them in, with `nix copy --derivation` into another root, and with `--load-db`
//! of our registration), and a derivation Nix would refuse (malformed, or an output path it
//! does not imply) is not registered.
//!
//! Skipped, with a SKIP line, when `nix` is not on PATH.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use nar_tool::hash::{Encoding, Hash, HashAlgo};

fn nix_available(test: &str) -> bool {
    if have("nix") && have("nix-store") && have("nix-instantiate") {
        return true;
    }
    println!("SKIP {test}: nix / nix-store / nix-instantiate not on PATH");
    false
}

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

fn store_of(root: &Path) -> String {
    format!("local?root={}", root.display())
}

fn nix(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.env("NIX_REMOTE", "local");
    if program == "nix" {
        cmd.args(["--extra-experimental-features", "nix-command"]);
    }
    let out = run_cmd_ok(cmd.args(args), b"");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tests/fixtures/drv/drv.nix` instantiated in a new store; its derivations (a fixed-output one
/// of each ingestion, one with three outputs and escapes, one on top) copied by Nix to an
/// uncompressed cache.
struct Drvs {
    tmp: TempTree,
    src: PathBuf,
    cache: PathBuf,
    top: String,
}

fn drvs() -> Drvs {
    let tmp = TempTree::new();
    let src = tmp.path().join("src");
    let top = nix(
        "nix-instantiate",
        &[
            "--store",
            &store_of(&src),
            &s(&fixtures().join("drv/drv.nix")),
        ],
    )
    .trim()
    .to_string();
    assert!(top.ends_with("-app.drv"), "{top}");
    let cache = tmp.path().join("cache");
    nix(
        "nix",
        &[
            "copy",
            "--derivation",
            "--from",
            &store_of(&src),
            "--to",
            &format!(
                "file://{}?compression=none&secret-key={}",
                cache.display(),
                secret_key()
            ),
            &top,
        ],
    );
    Drvs {
        tmp,
        src,
        cache,
        top,
    }
}

/// The DerivationOutputs table: (derivation, output, output path), sorted.
fn drv_outputs(root: &Path) -> Vec<(String, String, String)> {
    let c = rusqlite::Connection::open_with_flags(
        root.join("nix/var/nix/db/db.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = c
        .prepare(
            "select v.path, d.id, d.path from DerivationOutputs d \
             join ValidPaths v on v.id = d.drv order by 1, 2",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn fetch(cache: &Path, root: &Path, extra: &[&str], paths: &[&str]) -> std::process::Output {
    run_cmd(
        Command::new(bin())
            .args(["fetch", "--from", &s(cache), "--store-root", &s(root)])
            .args(["--trusted-key", &public_key()])
            .args(extra)
            .args(paths),
        b"",
    )
}

#[test]
fn fetched_derivations_get_the_derivation_outputs_nix_gives_them() {
    if !nix_available("fetched_derivations_get_the_derivation_outputs_nix_gives_them") {
        return;
    }
    let d = drvs();
    let expected = drv_outputs(&d.src);
    assert_eq!(expected.len(), 6, "{expected:?}");

    // Nix substituting the same closure from the cache.
    let theirs = d.tmp.path().join("theirs");
    run_cmd_ok(
        Command::new("nix")
            .env("NIX_REMOTE", "local")
            .env("XDG_CACHE_HOME", d.tmp.path().join("xdg"))
            .args([
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--derivation",
            ])
            .args(["--from", &format!("file://{}", d.cache.display())])
            .args(["--to", &store_of(&theirs)])
            .args(["--option", "trusted-public-keys", &public_key()])
            .arg(&d.top),
        b"",
    );
    assert_eq!(drv_outputs(&theirs), expected);

    // Ours, with our DB.
    let ours = d.tmp.path().join("ours");
    let reg = d.tmp.path().join("registration");
    let out = fetch(
        &d.cache,
        &ours,
        &["--write-db", "--registration", &s(&reg)],
        &[&d.top],
    );
    assert_ok(&out, "fetch --write-db --registration");
    assert_eq!(drv_outputs(&ours), expected);
    // Nix accepts the store.
    nix(
        "nix-store",
        &["--store", &store_of(&ours), "--verify", "--check-contents"],
    );

    // Our registration loaded by Nix: the same rows.
    let loaded = d.tmp.path().join("loaded");
    let out = fetch(&d.cache, &loaded, &["--registration", &s(&reg)], &[&d.top]);
    assert_ok(&out, "fetch --registration");
    let text = fs::read(&reg).unwrap();
    run_cmd_ok(
        Command::new("nix-store").env("NIX_REMOTE", "local").args([
            "--store",
            &store_of(&loaded),
            "--load-db",
        ]),
        &text,
    );
    assert_eq!(drv_outputs(&loaded), expected);
}

/// Adds `path` (a single file `contents`, referring to `refs`) to the cache, signed.
fn add_to_cache(cache: &Path, path: &str, contents: &[u8], refs: &[&str]) {
    let nar = NarBytes::magic()
        .ss(&[b"(", b"type", b"regular", b"contents", contents, b")"])
        .bytes();
    let hash = Hash::of(HashAlgo::Sha256, &nar);
    let file = format!("nar/{}.nar", hash.encode(Encoding::Nixbase32));
    fs::write(cache.join(&file), &nar).unwrap();
    let refs: Vec<&str> = refs.iter().map(|r| &r[11..]).collect();
    let narinfo = cache.join(format!("{}.narinfo", &path[11..43]));
    fs::write(
        &narinfo,
        format!(
            "StorePath: {path}\nURL: {file}\nCompression: none\nFileHash: {hash}\n\
             FileSize: {n}\nNarHash: {hash}\nNarSize: {n}\nReferences: {}\n",
            refs.join(" "),
            n = nar.len()
        ),
    )
    .unwrap();
    run_ok(
        &["sign", "--secret-key-file", &secret_key(), &s(&narinfo)],
        b"",
    );
}

#[test]
fn a_derivation_nix_would_refuse_is_not_registered() {
    if !nix_available("a_derivation_nix_would_refuse_is_not_registered") {
        return;
    }
    let d = drvs();
    let lib_path = drv_outputs(&d.src)
        .into_iter()
        .find(|r| r.1 == "dev")
        .unwrap()
        .0;
    let lib = fs::read_to_string(d.src.join(lib_path.trim_start_matches('/'))).unwrap();
    let inputs: Vec<String> = drv_outputs(&d.src)
        .into_iter()
        .map(|r| r.0)
        .filter(|p| p.contains("-src.drv"))
        .collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let cases = [
        (
            "00000000000000000000000000000002-cut.drv",
            "Derive([(\"out\",".to_string(),
            "malformed derivation",
        ),
        (
            "00000000000000000000000000000003-lib-1.0.drv",
            lib.replace("breaks", "breakz"),
            "has incorrect output",
        ),
    ];
    for (base, text, what) in cases {
        let path = format!("/nix/store/{base}");
        add_to_cache(&d.cache, &path, text.as_bytes(), &inputs);
        let root = d.tmp.path().join(format!("root-{}", &base[..32]));
        let out = fetch(&d.cache, &root, &["--write-db"], &[&path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{base}: {err}");
        assert!(
            err.contains("a derivation Nix would refuse") && err.contains(what),
            "{base}: {err}"
        );
        // Nothing of that transaction is in the DB.
        assert!(drv_outputs(&root).is_empty());
        let c = rusqlite::Connection::open(root.join("nix/var/nix/db/db.sqlite")).unwrap();
        let n: i64 = c
            .query_row("select count(*) from ValidPaths", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{base}");
    }
}
