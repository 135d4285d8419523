//! Runtime roots in `gc --store-root` against the real Nix's GC (2.8): a running process with a
//! store path in its environment keeps that path (and its closure) alive under both
//! `nix-store --gc --print-dead` and ours, and no longer once it has exited; one holding a file
//! of the root's store open (a real path, `ROOT/nix/store/…`) keeps it alive under ours only
//! (Nix looks for the logical store directory alone); `--no-runtime-roots` ignores them all.
//! Skipped, with a SKIP line, when `nix-store` is not on PATH.

use std::fs::{self, File};
use std::process::{Command, Stdio};

use crate::common::*;
use crate::store_gc::{corpus_store, nix_gc_with, our_gc, s, sorted_lines};

/// A path of its own (unique contents, so no other test's process names it), added by Nix.
fn add_unique(root: &std::path::Path, name: &str) -> String {
    let dir = TempTree::new();
    let file = dir.path().join(name);
    let unique = format!(
        "{name} {:?} {}\n",
        std::time::SystemTime::now(),
        std::process::id()
    );
    fs::write(&file, unique).unwrap();
    let out = run_cmd_ok(
        Command::new("nix-store").env("NIX_REMOTE", "local").args([
            "--store",
            &format!("local?root={}", root.display()),
            "--add",
            &s(&file),
        ]),
        b"",
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `sleep` with `env` in its environment and `stdin` as its standard input.
fn sleeper(env: &str, stdin: Stdio) -> Killed {
    Killed(
        Command::new("sleep")
            .arg("600")
            .env("NAR_TOOL_TEST_HOLD", env)
            .stdin(stdin)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn running_processes_keep_what_they_use_as_nix_gc_finds_it() {
    if !have("nix-store") {
        println!("SKIP running_processes_keep_what_they_use_as_nix_gc_finds_it: no nix-store");
        return;
    }
    let root = corpus_store();
    let r = root.path();
    let in_env = add_unique(r, "in-env");
    let held = add_unique(r, "held-open");
    let (before, _) = nix_gc_with(r, &["--print-dead"]);
    assert!(
        before.contains(&in_env) && before.contains(&held),
        "{before}"
    );

    let env_user = sleeper(&format!("x:{in_env}/bin:y"), Stdio::null());
    let file = File::open(r.join(held.trim_start_matches('/'))).unwrap();
    let file_user = sleeper("", Stdio::from(file));

    let (nix_dead, _) = nix_gc_with(r, &["--print-dead"]);
    let (our_dead, _) = our_gc(r, &["--print-dead"]);
    assert!(!nix_dead.contains(&in_env), "Nix: {nix_dead}");
    assert!(
        !our_dead.contains(&in_env) && !our_dead.contains(&held),
        "ours: {our_dead}"
    );
    // Nix ignores the real path; everything else agrees.
    assert!(nix_dead.contains(&held), "Nix: {nix_dead}");
    let nix_but_held: Vec<String> = sorted_lines(&nix_dead)
        .into_iter()
        .filter(|l| l != &held)
        .collect();
    assert_eq!(sorted_lines(&our_dead), nix_but_held);
    let (roots, _) = our_gc(r, &["--print-roots"]);
    let env_pid = env_user.0.id();
    assert!(
        roots.contains(&format!("/proc/{env_pid}/environ -> {in_env}")),
        "{roots}"
    );
    let file_pid = file_user.0.id();
    assert!(
        roots.contains(&format!("/proc/{file_pid}/fd/0 -> {held}")),
        "{roots}"
    );
    // Opted out: neither is a root.
    let (ignoring, _) = our_gc(r, &["--print-dead", "--no-runtime-roots"]);
    assert!(
        ignoring.contains(&in_env) && ignoring.contains(&held),
        "{ignoring}"
    );

    // Once they have exited, both are dead for both.
    drop(env_user);
    drop(file_user);
    let (nix_dead, _) = nix_gc_with(r, &["--print-dead"]);
    let (our_dead, _) = our_gc(r, &["--print-dead"]);
    assert_eq!(sorted_lines(&our_dead), sorted_lines(&nix_dead));
    assert!(
        our_dead.contains(&in_env) && our_dead.contains(&held),
        "{our_dead}"
    );
}
