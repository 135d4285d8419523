//! Upstream caches: `build-cache --upstream` leaves out exactly what an upstream (`nar-tool
//! serve` here) serves, the result verifies with `verify --upstream` (and not without), only
//! signed narinfos count with `--upstream-key`, a hostile upstream never makes a path look
//! served, lookups are remembered, and the real Nix substitutes the closure from both caches.
//!
//! The corpus closure: closure-top → {bare-symlink, single-exe, app}; app → {edge-cases,
//! libdemo, tool, single-file}; bare-symlink → edge-cases; tool → {libdemo, itself}. The
//! upstream holds app's closure (5 paths), so a build of closure-top keeps 3.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nar_tool::signing::SecretKey;

use super::lookups::serve_logged;
use crate::common::{self, extract_root_tar, public_key, report_problems, TempTree};

const TOP: &str = "/nix/store/z8w6vc8pyk06rr4fm1h99ciaifp1kqdp-closure-top-public";
const APP: &str = "/nix/store/swf7rrkcsawh9sa0zhm4bchjhphk6mjv-app-0.9-public";
const BARE_SYMLINK: &str = "/nix/store/8bswc883h867a21h70j0gvrppyavddgp-bare-symlink-public";
const SINGLE_EXE: &str = "/nix/store/gn07vq3ysff2m4mz8scgjm7nmgaffhih-single-exe-public";
const EDGE_CASES: &str = "/nix/store/12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public";
const LIBDEMO: &str = "/nix/store/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public";
const TOOL: &str = "/nix/store/l3x0p6waaizfa1gbn5zzzjdfdkry4czk-tool-2.3-public";
const SINGLE_FILE: &str = "/nix/store/mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public";
const ADDED: &str = "/nix/store/3cpw9v40wr678399d4nz2bv4rzvl3r2d-added-public";

/// App's closure: what the upstream serves.
const UPSTREAM: [&str; 5] = [APP, EDGE_CASES, LIBDEMO, TOOL, SINGLE_FILE];
/// The rest of closure-top's closure.
const KEPT: [&str; 3] = [TOP, BARE_SYMLINK, SINGLE_EXE];

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

fn secret_key_file() -> String {
    s(&common::corpus().join("keys/secret"))
}

/// `nar-tool ARGS`, with requests to a failing server not retried (so that errors come at once).
fn nar_tool(args: &[String]) -> Output {
    common::run_cmd(
        Command::new(common::bin())
            .env("NAR_TOOL_S3_RETRY_SECONDS", "0")
            .args(args),
        b"",
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `build-cache --json` of `roots` from the corpus store into `to`, signed, with `extra` flags:
/// the summary.
fn build(root: &Path, to: &Path, extra: &[&str], roots: &[&str]) -> serde_json::Value {
    let mut args: Vec<String> = [
        "build-cache",
        "--json",
        "--to",
        &s(to),
        "--store-root",
        &s(root),
        "--secret-key-file",
        &secret_key_file(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(roots.iter().map(|a| a.to_string()));
    let out = nar_tool(&args);
    assert!(
        out.status.success(),
        "build-cache {args:?}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The store paths a cache has narinfos for.
fn cached(cache: &Path) -> BTreeSet<String> {
    fs::read_dir(cache)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.ends_with(".narinfo").then(|| {
                let text = fs::read_to_string(cache.join(&name)).unwrap();
                text.lines()
                    .find_map(|l| l.strip_prefix("StorePath: "))
                    .unwrap()
                    .to_string()
            })
        })
        .collect()
}

fn left_out(summary: &serde_json::Value) -> BTreeSet<String> {
    summary["upstream_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// `verify --no-contents --json CACHE` with `extra` flags: the exit code and the report.
fn verify(cache: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args: Vec<String> = ["verify", "--no-contents", "-q", "--json", "--trusted-key"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.push(public_key());
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(s(cache));
    let out = nar_tool(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify {args:?}: {e}: {}", stderr(&out)));
    (out.status.code(), report)
}

/// The corpus store, and the upstream cache of app's closure built from it (signed).
struct Fixture {
    root: TempTree,
    dir: tempfile::TempDir,
    upstream: PathBuf,
}

fn fixture() -> Fixture {
    let root = extract_root_tar();
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("upstream");
    build(root.path(), &upstream, &[], &[APP]);
    assert_eq!(cached(&upstream), set(&UPSTREAM));
    Fixture {
        root,
        dir,
        upstream,
    }
}

#[test]
fn build_cache_leaves_out_what_the_upstream_serves_and_verify_counts_it() {
    let f = fixture();
    let server = common::ServeProcess::start(&f.upstream, &[]);
    let url = format!("http://{}", server.addr);
    let lookups = s(&f.dir.path().join("lookups"));
    let up = ["--upstream", &url, "--lookup-cache", &lookups];

    let mine = f.dir.path().join("mine");
    let summary = build(f.root.path(), &mine, &up, &[TOP]);
    assert_eq!(cached(&mine), set(&KEPT), "exactly the paths not served");
    assert_eq!(left_out(&summary), set(&UPSTREAM));
    assert_eq!(summary["upstream"], 5);
    assert_eq!(summary["paths"], 3);
    assert_eq!(summary["written"], 3);
    assert_eq!(summary["upstream_warnings"].as_array().unwrap().len(), 0);
    assert_eq!(
        fs::read_dir(mine.join("nar")).unwrap().count(),
        3,
        "no NAR of a path left out"
    );

    // Without the upstream the cache is incomplete: its two references into app's closure.
    let (code, report) = verify(&mine, &[]);
    assert_eq!(code, Some(1));
    let missing: Vec<(String, String)> = report_problems(&report)
        .into_iter()
        .map(|(kind, path, message)| {
            assert_eq!(kind, "missing-reference", "{message}");
            let target = message
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_end_matches(',');
            (path, target.to_string())
        })
        .collect();
    assert_eq!(
        missing,
        vec![
            (BARE_SYMLINK.to_string(), EDGE_CASES.to_string()),
            (TOP.to_string(), APP.to_string()),
        ]
    );
    assert!(report.get("upstream_references").is_none());
    // With it, clean, saying how many references were found there.
    let (code, report) = verify(&mine, &up);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["upstream_references"], 2);
    let out = nar_tool(&[
        "verify".into(),
        "--no-contents".into(),
        "-q".into(),
        "--upstream".into(),
        url.clone(),
        "--lookup-cache".into(),
        lookups.clone(),
        s(&mine),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 paths, ") && text.contains(", 2 references found upstream, OK"),
        "{text}"
    );

    // A root the upstream serves is left out too; one it does not is kept; the summary and -v
    // say which were left out.
    let roots = f.dir.path().join("roots");
    let args = |to: &Path, flag: &str, roots: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "build-cache",
            flag,
            "--to",
            &s(to),
            "--store-root",
            &s(f.root.path()),
            "--upstream",
            &url,
            "--no-lookup-cache",
            "--secret-key-file",
            &secret_key_file(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(roots.iter().map(|r| r.to_string()));
        args
    };
    let out = nar_tool(&args(&roots, "-v", &[APP, ADDED]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cached(&roots), set(&[ADDED]));
    let err = stderr(&out);
    for p in UPSTREAM {
        assert!(
            err.contains(&format!("left out (served upstream): {p}\n")),
            "{err}"
        );
    }
    assert!(
        err.contains("1 paths (1 written, 0 already there, 5 left out as served upstream"),
        "{err}"
    );
    // --no-closure: only what is given is asked about.
    let nc = f.dir.path().join("no-closure");
    let out = nar_tool(&args(&nc, "--no-closure", &[TOP]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cached(&nc), set(&[TOP]));
    // Built with --no-closure, a cache verifies only with an upstream that has the rest.
    let (code, report) = verify(&nc, &["--upstream", &url, "--no-lookup-cache"]);
    assert_eq!(code, Some(1), "bare-symlink and single-exe are nowhere");
    let kinds: Vec<String> = report_problems(&report)
        .iter()
        .map(|(k, _, m)| format!("{k} {m}"))
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|k| k.starts_with("missing-reference") && k.contains("nor upstream")),
        "{kinds:?}"
    );
    assert_eq!(report["upstream_references"], 1);
    let (code, report) = verify(
        &nc,
        &[
            "--upstream",
            &url,
            "--upstream",
            &s(&mine),
            "--no-lookup-cache",
        ],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["upstream_references"], 3);
}

#[test]
fn only_narinfos_signed_by_an_upstream_key_count() {
    let f = fixture();
    // A directory upstream this time (file://), and an unsigned copy of it.
    let file_url = format!("file://{}", s(&f.upstream));
    let unsigned = f.dir.path().join("unsigned");
    fs::create_dir(&unsigned).unwrap();
    let right = public_key();
    // Same name, another key: a signature by the real key does not verify with it.
    let wrong = SecretKey::from_seed("corpus-public-1", &[9; 32])
        .public_key()
        .to_string();

    let with = |name: &str, extra: &[&str]| {
        let to = f.dir.path().join(name);
        let summary = build(f.root.path(), &to, extra, &[TOP]);
        (cached(&to), summary)
    };
    let (kept, summary) = with(
        "wrong",
        &["--upstream", &file_url, "--upstream-key", &wrong],
    );
    assert_eq!(kept.len(), 8, "nothing left out with the wrong key");
    assert_eq!(summary["upstream"], 0);
    assert_eq!(summary["upstream_warnings"].as_array().unwrap().len(), 0);
    let (kept, _) = with(
        "right",
        &["--upstream", &file_url, "--upstream-key", &right],
    );
    assert_eq!(kept, set(&KEPT));
    let (kept, _) = with(
        "either",
        &[
            "--upstream",
            &file_url,
            "--upstream-key",
            &wrong,
            "--upstream-key",
            &right,
        ],
    );
    assert_eq!(kept, set(&KEPT), "a valid signature by one of the keys");
    // The same narinfos with their signatures stripped.
    for e in fs::read_dir(&f.upstream).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".narinfo") || name == "nix-cache-info" {
            let text = fs::read_to_string(e.path()).unwrap();
            let stripped: String = text
                .lines()
                .filter(|l| !l.starts_with("Sig: "))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(unsigned.join(&name), stripped).unwrap();
        }
    }
    let unsigned_url = s(&unsigned);
    let (kept, _) = with(
        "unsigned-key",
        &["--upstream", &unsigned_url, "--upstream-key", &right],
    );
    assert_eq!(kept.len(), 8, "unsigned narinfos do not count with a key");
    let (kept, _) = with("unsigned-any", &["--upstream", &unsigned_url]);
    assert_eq!(
        kept,
        set(&KEPT),
        "without a key, any narinfo for the path counts"
    );

    // verify takes the same rule.
    let mine = f.dir.path().join("right");
    let (code, _) = verify(&mine, &["--upstream", &file_url, "--upstream-key", &right]);
    assert_eq!(code, Some(0));
    let (code, report) = verify(&mine, &["--upstream", &file_url, "--upstream-key", &wrong]);
    assert_eq!(code, Some(1));
    assert_eq!(report["upstream_references"], 0);
    assert!(
        report_problems(&report)
            .iter()
            .all(|(k, _, m)| k == "missing-reference" && m.contains("no valid signature")),
        "{report}"
    );
}

/// A hostile HTTP cache on a loopback port: `answer` gives the status and body for each path.
fn hostile_server(answer: fn(&str) -> (u16, Vec<u8>)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                let (status, body) = answer(target);
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if method != "HEAD" {
                    let _ = stream.write_all(&body);
                }
            });
        }
    });
    format!("http://{addr}")
}

fn hash_part(path: &str) -> &str {
    &path["/nix/store/".len()..][..32]
}

/// What the hostile upstream answers: a narinfo for another path under app's hash part, garbage
/// for edge-cases, an oversized one for libdemo, 500 for tool and single-exe, nothing else.
fn hostile(target: &str) -> (u16, Vec<u8>) {
    let narinfo = |p: &str| format!("/{}.narinfo", hash_part(p));
    if target == "/nix-cache-info" {
        return (200, b"StoreDir: /nix/store\nWantMassQuery: 1\n".to_vec());
    }
    if target == narinfo(APP) {
        let text = format!(
            "StorePath: /nix/store/{}-evil\nURL: nar/x.nar\nCompression: none\nNarHash: sha256:1mzr0yvnrq0jbs8dmlb0mbgk1y9a0qv7lmkyd50bfdgzyvz46s7h\nNarSize: 1\nReferences: \n",
            hash_part(APP)
        );
        return (200, text.into_bytes());
    }
    if target == narinfo(EDGE_CASES) {
        return (200, b"<html>cache maintenance</html>\n".to_vec());
    }
    if target == narinfo(LIBDEMO) {
        return (200, vec![b'A'; 2 << 20]);
    }
    if target == narinfo(TOOL) || target == narinfo(SINGLE_EXE) {
        return (500, b"internal error".to_vec());
    }
    (404, Vec::new())
}

#[test]
fn a_hostile_upstream_never_makes_a_path_look_served() {
    let root = extract_root_tar();
    let dir = tempfile::tempdir().unwrap();
    let url = hostile_server(hostile);

    // build-cache keeps every path, warning of each it could not tell about.
    let mine = dir.path().join("mine");
    let out = nar_tool(&[
        "build-cache".into(),
        "--to".into(),
        s(&mine),
        "--store-root".into(),
        s(root.path()),
        "--no-lookup-cache".into(),
        "--upstream".into(),
        url.clone(),
        TOP.into(),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(cached(&mine).len(), 8, "every path kept");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("nar-tool: warning: kept "))
        .collect();
    assert_eq!(warnings.len(), 5, "{err}");
    let warned = |p: &str, says: &str| {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("kept {p}: {url}: ")) && w.contains(says)),
            "{p}: {says}: {warnings:?}"
        )
    };
    warned(APP, "another store path");
    warned(EDGE_CASES, "malformed");
    warned(LIBDEMO, "larger than");
    warned(TOOL, "cannot be asked");
    warned(SINGLE_EXE, "cannot be asked");
    assert!(err.contains("0 left out as served upstream"), "{err}");

    // verify: a reference it could not be asked about is a check that could not run (4); the
    // others are missing (1), with the reason the upstream's answer did not count.
    let nc = dir.path().join("no-closure");
    let out = nar_tool(&[
        "build-cache".into(),
        "-q".into(),
        "--no-closure".into(),
        "--to".into(),
        s(&nc),
        "--store-root".into(),
        s(root.path()),
        "--secret-key-file".into(),
        secret_key_file(),
        TOP.into(),
        APP.into(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, report) = verify(&nc, &["--upstream", &url, "--no-lookup-cache"]);
    assert_eq!(code, Some(5), "{report}");
    let got: Vec<(String, String)> = report_problems(&report)
        .into_iter()
        .map(|(k, p, m)| {
            let about = m.split_whitespace().nth(1).unwrap().trim_end_matches(',');
            (k, format!("{p} -> {about}"))
        })
        .collect();
    let want = |k: &str, from: &str, to: &str| (k.to_string(), format!("{from} -> {to}"));
    let mut expected = vec![
        want("missing-reference", APP, EDGE_CASES),
        want("missing-reference", APP, LIBDEMO),
        want("check-failed", APP, TOOL),
        want("missing-reference", APP, SINGLE_FILE),
        want("missing-reference", TOP, BARE_SYMLINK),
        want("check-failed", TOP, SINGLE_EXE),
    ];
    expected.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut got_sorted = got.clone();
    got_sorted.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(got_sorted, expected, "{report}");
    assert_eq!(report["upstream_references"], 0);
}

#[test]
fn an_upstream_that_is_not_a_binary_cache_for_this_store_is_refused_up_front() {
    let root = extract_root_tar();
    let dir = tempfile::tempdir().unwrap();
    let not_a_cache = hostile_server(|_| (404, Vec::new()));
    let other_store = hostile_server(|t| match t {
        "/nix-cache-info" => (200, b"StoreDir: /gnu/store\n".to_vec()),
        _ => (404, Vec::new()),
    });
    let down = hostile_server(|_| (503, b"down".to_vec()));
    for (url, says) in [
        (not_a_cache, "not a binary cache"),
        (other_store, "StoreDir is \"/gnu/store\""),
        (down, "cannot be read"),
    ] {
        let to = dir.path().join("never");
        let out = nar_tool(&[
            "build-cache".into(),
            "--to".into(),
            s(&to),
            "--store-root".into(),
            s(root.path()),
            "--upstream".into(),
            url.clone(),
            "--no-lookup-cache".into(),
            TOP.into(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("upstream cache {url}: nix-cache-info: ")) && err.contains(says),
            "{err}"
        );
        assert!(!to.exists(), "nothing written before the upstream is known");
        let out = nar_tool(&[
            "verify".into(),
            "--upstream".into(),
            url.clone(),
            "--no-lookup-cache".into(),
            s(&common::corpus().join("caches/xz")),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

#[test]
fn upstream_lookups_are_remembered() {
    let f = fixture();
    let server = serve_logged(&f.upstream, f.dir.path());
    let url = format!("http://{}", server.addr);
    let lookups = s(&f.dir.path().join("lookups"));
    let up = [
        "--upstream",
        url.as_str(),
        "--lookup-cache",
        lookups.as_str(),
    ];
    build(f.root.path(), &f.dir.path().join("a"), &up, &[TOP]);
    let first = server.narinfo_statuses();
    // Each path not in the new cache asked once: 5 found, 3 not.
    assert_eq!(first.iter().filter(|&&c| c == 200).count(), 5, "{first:?}");
    assert_eq!(first.iter().filter(|&&c| c == 404).count(), 3, "{first:?}");
    let summary = build(f.root.path(), &f.dir.path().join("b"), &up, &[TOP]);
    assert_eq!(left_out(&summary), set(&UPSTREAM));
    assert_eq!(server.narinfo_statuses().len(), 8, "asked again");
}

#[test]
fn nix_substitutes_the_closure_from_both_caches() {
    if !common::have("nix-store") {
        println!("SKIP: nix is not installed");
        return;
    }
    let f = fixture();
    let server = common::ServeProcess::start(&f.upstream, &[]);
    let url = format!("http://{}", server.addr);
    let mine = f.dir.path().join("mine");
    build(
        f.root.path(),
        &mine,
        &["--upstream", &url, "--no-lookup-cache"],
        &[TOP],
    );
    let mine_url = format!("file://{}", s(&mine));
    let client = TempTree::new();
    let out = Command::new("nix-store")
        .env("NIX_REMOTE", "local")
        // Nix's narinfo cache of its own (it remembers absent paths of a URL for an hour).
        .env("XDG_CACHE_HOME", client.path().join(".xdg-cache"))
        .arg("--store")
        .arg(format!("local?root={}", s(client.path())))
        .args(["--realise", TOP])
        .args(["--option", "substituters", &format!("{url} {mine_url}")])
        .args(["--option", "trusted-public-keys", &public_key()])
        .stdin(Stdio::null())
        .output()
        .expect("nix-store runs");
    let err = stderr(&out);
    assert!(out.status.success(), "nix-store --realise: {err}");
    // Nix says where it took each path from.
    let mut from_upstream = BTreeSet::new();
    let mut from_mine = BTreeSet::new();
    for line in err.lines() {
        let Some(rest) = line.strip_prefix("copying path '") else {
            continue;
        };
        let (path, rest) = rest.split_once("' from '").unwrap();
        let source = rest.trim_end_matches("'...");
        match source {
            s if s == url => from_upstream.insert(path.to_string()),
            s if s == mine_url => from_mine.insert(path.to_string()),
            s => panic!("from {s}?"),
        };
    }
    assert_eq!(from_upstream, set(&UPSTREAM), "{err}");
    assert_eq!(from_mine, set(&KEPT), "{err}");
    for p in UPSTREAM.iter().chain(&KEPT) {
        assert!(
            fs::symlink_metadata(client.path().join(p.trim_start_matches('/'))).is_ok(),
            "{p} not in the client's store"
        );
    }
}
