//! Remote lookups remembered (`--lookup-cache`): a second `verify` of the same HTTP cache asks
//! for no narinfo within the TTL, only revalidates (304) after it, and sees a changed narinfo
//! after `--refresh` (counted from the request log of `serve`).

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::serve_auth::cache_copy;
use crate::common;

/// `serve` logging its requests to a file.
pub(crate) struct Logged {
    _child: common::Killed,
    pub(crate) addr: String,
    log: std::path::PathBuf,
}

pub(crate) fn serve_logged(cache: &Path, dir: &Path) -> Logged {
    let log = dir.join("serve.log");
    let child = Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(cache)
        .stderr(Stdio::from(fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let child = common::Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let text = fs::read_to_string(&log).unwrap();
        if let Some(addr) = text
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            break addr.to_string();
        }
        assert!(Instant::now() < deadline, "serve did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    Logged {
        _child: child,
        addr,
        log,
    }
}

impl Logged {
    /// The statuses of the narinfo requests logged so far.
    pub(crate) fn narinfo_statuses(&self) -> Vec<u16> {
        let mut text = String::new();
        fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once("\"GET /")?;
                let (target, after) = rest.split_once('"')?;
                target.ends_with(".narinfo").then_some(())?;
                after.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }
}

fn verify(addr: &str, lookups: &Path, extra: &[&str]) -> Output {
    let key = common::corpus().join("keys/public");
    let mut args = vec![
        "verify",
        "--no-contents",
        "-q",
        "--trusted-key-file",
        key.to_str().unwrap(),
        "--lookup-cache",
        lookups.to_str().unwrap(),
    ];
    args.extend(extra);
    let url = format!("http://{addr}");
    args.push(&url);
    common::run(&args, b"")
}

#[test]
fn a_second_verify_asks_again_only_after_the_ttl_and_refresh_sees_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let s = serve_logged(&cache, dir.path());
    let lookups = dir.path().join("lookups");
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(verify(&s.addr, &lookups, &[]));
    let first = s.narinfo_statuses();
    let n = first.len();
    assert!(n >= 9 && first.iter().all(|&c| c == 200), "{first:?}");
    // Within the TTL: not one narinfo asked for.
    ok(verify(&s.addr, &lookups, &[]));
    assert_eq!(s.narinfo_statuses().len(), n, "asked again within the TTL");
    // Past it: each revalidated, and each unchanged (304).
    ok(verify(&s.addr, &lookups, &["--narinfo-ttl", "0"]));
    let after_ttl = s.narinfo_statuses();
    assert_eq!(after_ttl.len(), 2 * n);
    assert!(after_ttl[n..].iter().all(|&c| c == 304), "{after_ttl:?}");
    // A narinfo changes (its signature broken): unseen while remembered, seen with --refresh.
    let narinfo = cache.join("12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo");
    let text = fs::read_to_string(&narinfo).unwrap();
    fs::write(
        &narinfo,
        text.replace("Sig: corpus-public-1:S", "Sig: corpus-public-1:T"),
    )
    .unwrap();
    ok(verify(&s.addr, &lookups, &[]));
    assert_eq!(s.narinfo_statuses().len(), 2 * n);
    let out = verify(&s.addr, &lookups, &["--refresh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the broken signature went unseen"
    );
    let refreshed = s.narinfo_statuses();
    assert_eq!(refreshed.len(), 3 * n);
    assert_eq!(refreshed[2 * n..].iter().filter(|&&c| c == 200).count(), 1);
    // Without remembering, every lookup is a request.
    let out = common::run(
        &[
            "verify",
            "--no-contents",
            "-q",
            "--no-lookup-cache",
            &format!("http://{}", s.addr),
        ],
        b"",
    );
    assert!(out.status.success() || out.status.code() == Some(1));
    assert_eq!(s.narinfo_statuses().len(), 4 * n);
}

#[test]
fn absent_narinfos_are_remembered_for_the_negative_ttl() {
    // A narinfo listed but not there when asked for (here a FIFO, which serve lists but never
    // opens: 404): looked up once, then remembered as absent.
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let gone = cache.join("12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo");
    fs::remove_file(&gone).unwrap();
    let made = Command::new("mkfifo").arg(&gone).status().unwrap();
    assert!(made.success());
    let s = serve_logged(&cache, dir.path());
    let lookups = dir.path().join("lookups");
    let missing = |s: &Logged| s.narinfo_statuses().iter().filter(|&&c| c == 404).count();
    let _ = verify(&s.addr, &lookups, &[]);
    assert_eq!(missing(&s), 1, "{:?}", s.narinfo_statuses());
    let _ = verify(&s.addr, &lookups, &[]);
    assert_eq!(
        missing(&s),
        1,
        "an absent narinfo asked for again within the TTL"
    );
    let _ = verify(&s.addr, &lookups, &["--negative-ttl", "0"]);
    assert_eq!(missing(&s), 2);
}

#[test]
fn a_second_fetch_over_http_asks_for_no_narinfo_within_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let s = serve_logged(&cache, dir.path());
    let lookups = dir.path().join("lookups");
    let key = common::corpus().join("keys/public");
    let top = common::store_paths().pop().unwrap();
    let fetch = |root: &Path, extra: &[&str]| {
        let mut args = vec![
            "fetch",
            "-q",
            "--from",
            &format!("http://{}", s.addr),
            "--store-root",
            root.to_str().unwrap(),
            "--trusted-key-file",
            key.to_str().unwrap(),
            "--lookup-cache",
            lookups.to_str().unwrap(),
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(top.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = common::run(&args, b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let roots = common::TempTree::new();
    fetch(&roots.path().join("a"), &[]);
    let n = s.narinfo_statuses().len();
    assert!(n >= 2, "{:?}", s.narinfo_statuses());
    // Into another store: the closure's narinfos come from the lookup cache.
    fetch(&roots.path().join("b"), &[]);
    assert_eq!(s.narinfo_statuses().len(), n, "asked again within the TTL");
    fetch(&roots.path().join("c"), &["--refresh"]);
    let refreshed = s.narinfo_statuses();
    assert_eq!(refreshed.len(), 2 * n);
    assert!(refreshed[n..].iter().all(|&c| c == 304), "{refreshed:?}");
}
