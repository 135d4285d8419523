//! `nar-tool keep-paths --store-root` and `gc --store-root` against the real Nix's GC (2.8):
//! kept paths are Nix temporary roots for exactly the command's life (or until standard input
//! closes), so `nix-store --gc` in that root keeps them meanwhile and deletes them afterwards,
//! after a kill too; our collection finds the roots, live and dead paths Nix finds, deletes what
//! Nix would, leaves a store Nix verifies, and refuses while the GC lock is held. Skipped, with
//! a SKIP line, when `nix-store` is not on PATH.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

pub(crate) fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

/// A store under a new root holding the corpus closure (fetched, registered in a DB).
pub(crate) fn corpus_store() -> TempTree {
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
    nix_gc_with(root, &[]).1
}

/// `nix-store --gc ARGS` in the store under `root`: (stdout, stderr).
pub(crate) fn nix_gc_with(root: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new("nix-store")
        .env("NIX_REMOTE", "local")
        .args(["--store", &format!("local?root={}", root.display()), "--gc"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "nix-store --gc failed: {err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// `nar-tool gc --store-root ROOT ARGS`: (stdout, stderr), insisting on success.
pub(crate) fn our_gc(root: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["gc", "--store-root"];
    let r = s(root);
    all.push(&r);
    all.extend(args);
    let out = run(&all, b"");
    assert_ok(&out, format_args!("gc {args:?}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

pub(crate) fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
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
    assert_ok(&out, "keep-paths -- nix-store --gc");
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

#[test]
fn gc_store_root_finds_and_deletes_what_nix_gc_would() {
    if !have("nix-store") {
        println!("SKIP gc_store_root_finds_and_deletes_what_nix_gc_would: no nix-store");
        return;
    }
    let root = corpus_store();
    let r = root.path();
    let paths = store_paths();
    let by_name = |n: &str| paths.iter().find(|p| p.ends_with(n)).unwrap().clone();
    // Roots of every kind Nix reads: a symlink into the store, a file named by a base name, a
    // profile link, an indirect root (a link to a link, outside the store).
    let gcroots = r.join("nix/var/nix/gcroots");
    let profiles = r.join("nix/var/nix/profiles");
    std::fs::create_dir_all(gcroots.join("auto")).unwrap();
    std::fs::create_dir_all(&profiles).unwrap();
    std::os::unix::fs::symlink(by_name("tool-2.3-public"), gcroots.join("tool")).unwrap();
    let base = |p: &str| p.rsplit('/').next().unwrap().to_string();
    std::fs::write(gcroots.join(base(&by_name("single-exe-public"))), b"").unwrap();
    std::os::unix::fs::symlink(by_name("bare-symlink-public"), profiles.join("p-1-link")).unwrap();
    let indirect = r.join("result");
    std::os::unix::fs::symlink(by_name("single-file-public"), &indirect).unwrap();
    std::os::unix::fs::symlink(&indirect, gcroots.join("auto/x")).unwrap();
    // Some files linked through .links, so that collecting frees some of them.
    run_ok(&["optimise", "--store-root", &s(r)], b"");

    // What each finds, with a path held by keep-paths meanwhile.
    let mut child = keep(r, &by_name("added-public"));
    let (nix_dead, _) = nix_gc_with(r, &["--print-dead"]);
    let (our_dead, _) = our_gc(r, &["--print-dead"]);
    assert_eq!(
        sorted_lines(&our_dead),
        sorted_lines(&nix_dead),
        "--print-dead"
    );
    assert!(
        !nix_dead.is_empty() && !nix_dead.contains("added-public"),
        "{nix_dead}"
    );
    let (nix_live, _) = nix_gc_with(r, &["--print-live"]);
    let (our_live, _) = our_gc(r, &["--print-live"]);
    assert_eq!(
        sorted_lines(&our_live),
        sorted_lines(&nix_live),
        "--print-live"
    );
    let (our_roots, _) = our_gc(r, &["--print-roots"]);
    assert!(
        our_roots.contains("{temp:") && our_roots.contains("p-1-link"),
        "{our_roots}"
    );
    drop(child.stdin.take());
    child.wait().unwrap();

    // Refused while the GC lock is held (as the real Nix holds it while collecting).
    let lock = std::fs::File::open(r.join("nix/var/nix/gc.lock")).unwrap();
    // SAFETY: a valid descriptor.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let out = run(&["gc", "--store-root", &s(r)], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GC lock is held"));
    drop(lock);

    // The same store collected by Nix and by us.
    let theirs = TempTree::new();
    let status = Command::new("cp")
        .args(["-a", &format!("{}/.", r.display()), &s(theirs.path())])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(theirs.path().join("result")).unwrap();
    std::os::unix::fs::symlink(by_name("single-file-public"), theirs.path().join("result"))
        .unwrap();
    std::fs::remove_file(theirs.path().join("nix/var/nix/gcroots/auto/x")).unwrap();
    std::os::unix::fs::symlink(
        theirs.path().join("result"),
        theirs.path().join("nix/var/nix/gcroots/auto/x"),
    )
    .unwrap();
    let (nix_deleted, nix_err) = nix_gc_with(theirs.path(), &[]);
    let (our_deleted, our_err) = our_gc(r, &[]);
    assert_eq!(
        sorted_lines(&our_deleted),
        sorted_lines(&nix_deleted),
        "deleted"
    );
    let summary = |e: &str| {
        e.lines()
            .find(|l| l.contains("store paths deleted"))
            .map(str::to_string)
    };
    assert_eq!(
        summary(&our_err),
        summary(&nix_err),
        "{our_err} / {nix_err}"
    );
    assert_eq!(
        crate::common::dir_names(&r.join("nix/store")),
        crate::common::dir_names(&theirs.path().join("nix/store")),
        "the stores differ after collecting"
    );
    // Nix verifies what is left and finds nothing more to collect.
    run_cmd_ok(
        Command::new("nix-store").env("NIX_REMOTE", "local").args([
            "--store",
            &format!("local?root={}", r.display()),
            "--verify",
            "--check-contents",
        ]),
        b"",
    );
    let (dead, _) = nix_gc_with(r, &["--print-dead"]);
    assert_eq!(dead, "", "Nix finds more to collect");
    // No .links entry is left that nothing links to.
    for e in std::fs::read_dir(r.join("nix/store/.links")).unwrap() {
        use std::os::unix::fs::MetadataExt;
        let m = e.unwrap().metadata().unwrap();
        assert!(m.nlink() > 1);
    }
}
