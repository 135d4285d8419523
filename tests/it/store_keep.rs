//! `nar-tool keep-paths --store-root` against the real Nix's GC (2.8): the paths are Nix
//! temporary roots for exactly the command's life (or until standard input closes), so
//! `nix-store --gc` in that root keeps them meanwhile and deletes them afterwards, after a kill
//! too. Skipped, with a SKIP line, when `nix-store` is not on PATH.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

/// A store under a new root holding the corpus closure (fetched, registered in a DB).
fn corpus_store() -> TempTree {
    let root = TempTree::new();
    let key = std::fs::read_to_string(corpus().join("keys/public")).unwrap();
    let mut args = vec![
        "fetch".to_string(),
        "--from".into(),
        s(&corpus().join("caches/xz")),
        "--store-root".into(),
        s(root.path()),
        "--trusted-key".into(),
        key.trim().into(),
        "--write-db".into(),
        "-q".into(),
    ];
    args.extend(store_paths());
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    root
}

fn nix_gc(root: &Path) -> String {
    let out = Command::new("nix-store")
        .env("NIX_REMOTE", "local")
        .args(["--store", &format!("local?root={}", root.display()), "--gc"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "nix-store --gc failed: {err}");
    err
}

fn present(root: &Path, path: &str) -> bool {
    root.join(path.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok()
}

/// `keep-paths --store-root ROOT PATH` holding until its stdin closes; returns once it says so.
fn keep(root: &Path, path: &str) -> Child {
    let mut child = Command::new(bin())
        .args(["keep-paths", "--store-root", &s(root), path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("keeping 1 paths"), "{line:?}");
    child
}

#[test]
fn nix_gc_keeps_paths_exactly_while_keep_paths_holds_them() {
    if !have("nix-store") {
        println!("SKIP nix_gc_keeps_paths_exactly_while_keep_paths_holds_them: no nix-store");
        return;
    }
    let root = corpus_store();
    let r = root.path();
    let paths = store_paths();
    // closure-top references app, which references libdemo and tool: kept with it.
    let top = paths
        .iter()
        .find(|p| p.ends_with("closure-top-public"))
        .unwrap();
    let app = paths
        .iter()
        .find(|p| p.ends_with("app-0.9-public"))
        .unwrap();
    let added = paths.iter().find(|p| p.ends_with("added-public")).unwrap();

    // Held until stdin closes.
    let mut child = keep(r, top);
    nix_gc(r);
    assert!(
        present(r, top) && present(r, app),
        "Nix's GC took a kept path"
    );
    assert!(
        !present(r, added),
        "an unkept path survived: the GC did not run"
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert!(!r
        .join("nix/var/nix/temproots")
        .join(child.id().to_string())
        .exists());
    nix_gc(r);
    assert!(!present(r, top), "kept after keep-paths ended");

    // Killed: Nix finds the roots file stale and the path goes.
    let root = corpus_store();
    let r = root.path();
    let mut child = keep(r, top);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(r
        .join("nix/var/nix/temproots")
        .join(child.id().to_string())
        .exists());
    nix_gc(r);
    assert!(!present(r, top), "kept after keep-paths was killed");

    // For a command's life: the command itself collects, and the path survives it.
    let root = corpus_store();
    let r = root.path();
    let store = format!("local?root={}", r.display());
    let out = run(
        &[
            "keep-paths",
            "--store-root",
            &s(r),
            top,
            "--",
            "nix-store",
            "--store",
            &store,
            "--gc",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(present(r, top) && !present(r, added));
    // A command's failure is passed through.
    let out = run(
        &["keep-paths", "--store-root", &s(r), top, "--", "false"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    // A path not valid there is refused.
    let out = run(
        &["keep-paths", "--store-root", &s(r), added, "--", "true"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"));
}
