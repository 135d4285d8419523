//! `nar-tool verify` against the Nix 2.8 corpus caches and a table of damages.
//!
//! - Every corpus cache verifies clean with the corpus key (the unsigned one: 9 `untrusted`).
//! - The native decoders (DirStorage + native_decoder), the pure-Rust ones (MemoryStorage +
//!   pure_decoder) and the async push verifier (what wasm runs) give the same reports.
//! - Each damage of the table, applied to a fresh copy of a good cache, gives exactly the
//!   expected problems (kind and path, nothing else) and exit status, through the CLI and through
//!   both library paths; the copy is checked clean before it is damaged.
//! - `nix store verify` (Nix 2.8, if installed) over the same damaged caches: wherever Nix
//!   reports a problem, so do we. What Nix misses and we catch is listed in [`NIX_MISSES`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::damage::{
    self, field, nar_file, nar_str, narinfo_name, pseudo_random, remove_field, replace_nar_file,
    set_field, Row,
};
use crate::common::{bin, corpus};
use nar_tool::cache::verify::{
    self as v, CacheStorage, MemoryStorage, ProblemKind, Report, VerifyOptions,
};
use nar_tool::host::dir_storage::DirStorage;
use nar_tool::host::storage::native_decoder;
use nar_tool::signing::PublicKey;

const CACHES: [&str; 6] = ["xz", "zstd", "bzip2", "none", "xz-parallel", "unsigned"];

const LIBDEMO: &str = "/nix/store/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public";
const EXE: &str = "/nix/store/gn07vq3ysff2m4mz8scgjm7nmgaffhih-single-exe-public";
const FILE: &str = "/nix/store/mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public";
const TOP: &str = "/nix/store/z8w6vc8pyk06rr4fm1h99ciaifp1kqdp-closure-top-public";

// ---------------------------------------------------------------------------------------------
// Fixtures

fn corpus_key() -> String {
    fs::read_to_string(corpus().join("keys/public"))
        .unwrap()
        .trim()
        .to_string()
}

/// A copy of a corpus cache at `<tmp>/a/b/cache`, so that `../../x` from the cache root is still
/// inside the temporary directory.
struct Cache {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Cache {
    fn copy(name: &str) -> Cache {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/cache");
        copy_dir(&corpus().join("caches").join(name), &dir);
        Cache { _tmp: tmp, dir }
    }
    fn path(&self) -> &Path {
        &self.dir
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the verifier

/// What a finished process did, with its wall time and, when measured, its peak memory.
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    max_rss_kib: Option<u64>,
    elapsed: Duration,
}

const TIME: &str = "/usr/bin/time";

/// Runs `program ARGS` under `/usr/bin/time` (if there) for its peak RSS. (The child's own
/// ru_maxrss would not do: a child forked from this big test process keeps the high-water mark
/// of its pre-exec copy.)
fn run_rss(program: &str, args: &[&std::ffi::OsStr], timeout: Duration) -> Measured {
    if !Path::new(TIME).exists() {
        return run_measured(Command::new(program).args(args), timeout);
    }
    let rss = tempfile::NamedTempFile::new().unwrap();
    let mut m = run_measured(
        Command::new(TIME)
            .args(["-f", "%M", "-o"])
            .arg(rss.path())
            .arg(program)
            .args(args),
        timeout,
    );
    m.max_rss_kib = fs::read_to_string(rss.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok());
    m
}

/// Runs a command to completion (killing it after `timeout`).
fn run_measured(cmd: &mut Command, timeout: Duration) -> Measured {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child, with a valid pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "wait4: {}", io::Error::last_os_error());
        if r == pid {
            break;
        }
        if start.elapsed() > timeout {
            // SAFETY: the child is ours and not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("{cmd:?} still running after {timeout:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let read_back = |f: &mut fs::File| {
        let mut s = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    Measured {
        code,
        stdout: read_back(&mut out),
        stderr: read_back(&mut err),
        max_rss_kib: None,
        elapsed,
    }
}

/// `nar-tool verify DIR --json -q ARGS`, parsed.
fn cli(dir: &Path, args: &[&str]) -> (Measured, Report) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["verify".as_ref(), dir.as_os_str()];
    all.extend(
        ["--json", "-q"]
            .iter()
            .chain(args)
            .map(|a| std::ffi::OsStr::new(*a)),
    );
    let m = run_rss(bin(), &all, Duration::from_secs(120));
    let report: Report = serde_json::from_str(&m.stdout).unwrap_or_else(|e| {
        panic!(
            "verify {} {args:?}: exit {}, not a JSON report ({e}):\n{}\n{}",
            dir.display(),
            m.code,
            m.stdout,
            m.stderr
        )
    });
    (m, report)
}

fn key_args(key: bool) -> Vec<String> {
    if key {
        vec!["--trusted-key".into(), corpus_key()]
    } else {
        Vec::new()
    }
}

fn options(key: bool, contents: bool) -> VerifyOptions {
    VerifyOptions {
        trusted_keys: if key {
            vec![PublicKey::parse(&corpus_key()).unwrap()]
        } else {
            Vec::new()
        },
        check_contents: contents,
        ..VerifyOptions::default()
    }
}

/// Every regular file under `dir` (symlinks skipped: memory has none), keyed by relative path.
fn memory_storage(dir: &Path) -> MemoryStorage {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                walk(root, &entry.path(), files);
            } else if ty.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().to_owned();
                files.insert(
                    rel.to_str().unwrap().to_string(),
                    fs::read(entry.path()).unwrap(),
                );
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    MemoryStorage { files }
}

/// The library on the native path: the directory, C-backed decoders.
fn native_report(dir: &Path, opts: &VerifyOptions) -> Report {
    let storage = DirStorage::open(dir).unwrap();
    v::verify_cache(&storage, opts, native_decoder, |_| {})
}

/// The library on the pure path (what wasm runs): files in memory, pure-Rust decoders.
fn pure_report(dir: &Path, opts: &VerifyOptions) -> Report {
    v::verify_cache(&memory_storage(dir), opts, v::pure_decoder, |_| {})
}

/// The async verifier (what wasm runs, pushed chunk by chunk) over the files in memory; with
/// `sizes`, the source tells file sizes up front (a directory), else they are counted (`fetch`).
fn async_report(dir: &Path, opts: &VerifyOptions, sizes: bool) -> Report {
    async_report_with_progress(dir, opts, sizes, |_| {})
}

/// [`async_report`], telling `on_progress` how far it has come.
fn async_report_with_progress(
    dir: &Path,
    opts: &VerifyOptions,
    sizes: bool,
    on_progress: impl FnMut(nar_tool::cache::verify::push::Progress<'_>),
) -> Report {
    async_run(dir, opts, sizes, 1, on_progress)
}

/// [`async_report`] with `jobs` paths in flight, every call of the source waiting once (so the
/// paths' reads interleave) and its streams telling their size when `sizes`.
fn async_report_concurrently(dir: &Path, opts: &VerifyOptions, sizes: bool, jobs: usize) -> Report {
    async_run(dir, opts, sizes, jobs, |_| {})
}

fn async_run(
    dir: &Path,
    opts: &VerifyOptions,
    sizes: bool,
    jobs: usize,
    on_progress: impl FnMut(nar_tool::cache::verify::push::Progress<'_>),
) -> Report {
    let source = async_source::Source {
        files: memory_storage(dir),
        sizes,
        wait: jobs > 1,
    };
    block_on(nar_tool::cache::verify::push::verify_cache_concurrently(
        &source,
        opts,
        None,
        jobs,
        on_progress,
    ))
}

/// The async verifier with its paths shared with a helper (as Node's workers share them): the
/// helper checks every other batch of 2 (through [`push::check_claimed`]) when the paths are
/// known, and its checks reach the leading verifier as text, one batch at each look. A hostile
/// helper also drops some batches, sends text that is not a check, indexes out of range, and
/// false checks of the leader's own paths: the report must be the same.
fn async_report_shared(dir: &Path, opts: &VerifyOptions, hostile: bool) -> Report {
    use nar_tool::cache::verify::push;
    use nar_tool::cache::verify::share::{encode_checks, PathShare};
    use nar_tool::cache::verify::PathCheck;
    use std::cell::{Cell, RefCell};
    use std::ops::Range;

    /// Runs the helper on the paths once they are known; gives its texts.
    type RunHelper<'a> = &'a dyn Fn(&[String]) -> Vec<String>;
    /// Hands out batches of 2: even batches to the leader, odd ones to the helper.
    struct Share<'a> {
        helper: bool,
        next: Cell<usize>,
        total: Cell<usize>,
        /// The leader's side: the helper's texts, and how it is run when the paths are known.
        texts: RefCell<Vec<String>>,
        run_helper: Option<RunHelper<'a>>,
    }
    impl PathShare for Share<'_> {
        fn begin(&self, names: &[String]) {
            self.total.set(names.len());
            if let Some(run) = self.run_helper {
                *self.texts.borrow_mut() = run(names);
            }
        }
        fn claim(&self) -> Range<usize> {
            let batch = self.next.get();
            let mine = 2 * batch + usize::from(self.helper);
            self.next.set(batch + 1);
            let start = (2 * mine).min(self.total.get());
            start..(start + 2).min(self.total.get())
        }
        fn arrived(&self) -> Vec<String> {
            let mut texts = self.texts.borrow_mut();
            if texts.is_empty() {
                Vec::new()
            } else {
                vec![texts.remove(0)]
            }
        }
        async fn rest(&self) -> Vec<String> {
            std::mem::take(&mut *self.texts.borrow_mut())
        }
    }

    let source = async_source::Source {
        files: memory_storage(dir),
        sizes: true,
        wait: true,
    };
    let run_helper = |names: &[String]| {
        let helper = Share {
            helper: true,
            next: Cell::new(0),
            total: Cell::new(names.len()),
            texts: RefCell::new(Vec::new()),
            run_helper: None,
        };
        let mut texts = Vec::new();
        block_on(push::check_claimed(
            &source,
            opts,
            names,
            3,
            &helper,
            2,
            |t| texts.push(t),
        ));
        if hostile {
            // A helper that died after some of its batches, or lies: none of it may count.
            texts.retain(|t| t.len() % 3 != 0);
            texts.push("not a check".into());
            texts.push(r#"[{"index": 1, "unparsed": false, "problems": []"#.into());
            let bogus = PathCheck {
                problems: vec![nar_tool::cache::verify::Problem::new(
                    ProblemKind::NarHashMismatch,
                    "/nix/store/forged",
                    "forged",
                )],
                ..PathCheck::default()
            };
            let forged: Vec<(usize, &PathCheck)> =
                vec![(0, &bogus), (1, &bogus), (1 << 40, &bogus)];
            texts.insert(0, encode_checks(forged));
        }
        texts
    };
    let leader = Share {
        helper: false,
        next: Cell::new(0),
        total: Cell::new(0),
        texts: RefCell::new(Vec::new()),
        run_helper: Some(&run_helper),
    };
    block_on(push::verify_cache_shared(
        &source,
        opts,
        None,
        3,
        &leader,
        |_| {},
    ))
}

/// A cache in memory as an async source, whose calls wait once (when `wait`) as reads in flight
/// would, and whose streams deliver odd-sized chunks.
mod async_source {
    use nar_tool::cache::verify::push::{AsyncCacheSource, ChunkStream};
    use nar_tool::cache::verify::{CacheStorage, MemoryStorage};
    use std::task::Poll;

    /// Ready on its second poll (when `wait`), as a read in flight would be.
    async fn once(wait: bool) {
        let mut first = wait;
        std::future::poll_fn(|cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
    pub struct Source {
        pub files: MemoryStorage,
        pub sizes: bool,
        pub wait: bool,
    }
    pub struct Chunks {
        data: Vec<u8>,
        at: usize,
        size: Option<u64>,
        wait: bool,
    }
    impl ChunkStream for Chunks {
        async fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
            once(self.wait).await;
            // Odd-sized chunks, as a network would deliver them.
            let n = (self.data.len() - self.at).min(7919);
            self.at += n;
            Ok((n > 0).then(|| self.data[self.at - n..self.at].to_vec()))
        }
        fn size(&self) -> Option<u64> {
            self.size
        }
    }
    impl AsyncCacheSource for Source {
        type Stream = Chunks;
        async fn read_small(&self, rel: &str, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
            once(self.wait).await;
            self.files.read_small(rel, limit)
        }
        async fn size(&self, rel: &str) -> Option<std::io::Result<Option<u64>>> {
            once(self.wait).await;
            self.sizes.then(|| self.files.size(rel))
        }
        async fn open(&self, rel: &str) -> std::io::Result<Option<Chunks>> {
            once(self.wait).await;
            Ok(self.files.files.get(rel).map(|b| Chunks {
                data: b.clone(),
                at: 0,
                // A stream that knows its size when the source can tell it (as a file on disk).
                size: (self.sizes && self.wait).then_some(b.len() as u64),
                wait: self.wait,
            }))
        }
        async fn list_narinfos(&self) -> std::io::Result<Vec<String>> {
            self.files.list_narinfos()
        }
        async fn list_nar_files(&self) -> Option<std::io::Result<Vec<String>>> {
            Some(self.files.list_nar_files())
        }
    }
}

/// Runs a future to its end, polling it again whenever it waits (the test sources wake at once).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn kinds(r: &Report) -> Vec<(ProblemKind, String)> {
    r.problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Progress

/// A large NAR does not sit at "0 B read": while its file is read, progress is given every MiB
/// (the path not yet counted as done), then once the path is done.
#[test]
fn async_progress_counts_the_bytes_of_a_large_nar_as_they_are_read() {
    use nar_tool::cache::verify::push::PROGRESS_BYTES;
    let c = Cache::copy("none");
    let mut nar = Vec::new();
    for s in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
    ] {
        nar_str(&mut nar, s);
    }
    let contents = pseudo_random(3 * (1 << 20) + 12_345, 7);
    nar_str(&mut nar, &contents);
    nar_str(&mut nar, b")");
    replace_nar_file(c.path(), LIBDEMO, &nar);
    let nar_hash = nar_tool::hash::Hash::of(nar_tool::hash::HashAlgo::Sha256, &nar).to_string();
    set_field(c.path(), LIBDEMO, "NarHash", &nar_hash);
    set_field(c.path(), LIBDEMO, "NarSize", &nar.len().to_string());
    let files: u64 = fs::read_dir(c.path().join("nar"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    let mut events = Vec::new();
    let report = async_report_with_progress(c.path(), &options(false, true), true, |p| {
        events.push((p.done, p.total, p.path.to_string(), p.bytes))
    });
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.checked_bytes, files);
    let names: Vec<String> = {
        let mut n: Vec<String> = fs::read_dir(c.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".narinfo"))
            .collect();
        n.sort();
        n
    };
    let at = names
        .iter()
        .position(|n| *n == narinfo_name(LIBDEMO))
        .unwrap();
    let libdemo = narinfo_name(LIBDEMO);
    // While libdemo's NAR is read: `done` still counts the paths before it, and the bytes grow
    // at each MiB boundary (in chunks of 7 919 bytes).
    // (An event while a path's file is read names that path, not yet counted as done; other
    // large NARs of the corpus give some too.)
    let reading = |e: &&(usize, usize, String, u64)| names.get(e.0) == Some(&e.2);
    let during = |e: &&(usize, usize, String, u64)| e.0 == at && e.2 == libdemo;
    let before = events
        .iter()
        .take_while(|e| !during(e))
        .last()
        .map_or(0, |e| e.3);
    let read: Vec<u64> = events.iter().filter(during).map(|e| e.3 - before).collect();
    assert_eq!(
        read.len(),
        nar.len() / PROGRESS_BYTES as usize,
        "{events:?}"
    );
    for (k, r) in read.iter().enumerate() {
        let boundary = (k as u64 + 1) * PROGRESS_BYTES;
        assert!((boundary..boundary + 7919).contains(r), "{k}: {r}");
    }
    // Then one event per path once it is done, the last with every byte read.
    let done: Vec<&(usize, usize, String, u64)> = events.iter().filter(|e| !reading(e)).collect();
    assert_eq!(
        done.iter().map(|e| (e.0, e.2.as_str())).collect::<Vec<_>>(),
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (i + 1, n.as_str()))
            .collect::<Vec<_>>()
    );
    assert!(events.iter().all(|e| e.1 == names.len()));
    assert_eq!(events.last().unwrap().3, files);
    assert!(
        events.windows(2).all(|w| w[0].3 <= w[1].3),
        "bytes never go back"
    );
}

// ---------------------------------------------------------------------------------------------
// Clean caches

#[test]
fn corpus_caches_verify_clean() {
    let key = corpus_key();
    let key_file = corpus().join("keys/public");
    for name in CACHES {
        let dir = corpus().join("caches").join(name);
        for args in [
            vec!["--trusted-key", key.as_str()],
            vec!["--trusted-key-file", key_file.to_str().unwrap()],
            vec!["--trusted-key", key.as_str(), "--jobs", "1"],
        ] {
            let (m, r) = cli(&dir, &args);
            assert_eq!(r.paths, 9, "{name}");
            if name == "unsigned" {
                // Nix 2.8 reports 8: it takes the content-addressed path (added-public) as
                // self-validating. We ask a signature of every path.
                assert_eq!(m.code, 2, "{name}: {}", m.stdout);
                assert!(!r.ok);
                assert_eq!(r.problems.len(), 9, "{name}: {:?}", r.problems);
                assert!(r.problems.iter().all(|p| p.kind == ProblemKind::Untrusted));
            } else {
                assert_eq!(m.code, 0, "{name} {args:?}: {}{}", m.stdout, m.stderr);
                assert!(r.ok && r.problems.is_empty(), "{name}: {:?}", r.problems);
            }
            let files: u64 = fs::read_dir(dir.join("nar"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            assert_eq!(r.checked_bytes, files, "{name}: every NAR file read once");
        }
        // Without a trusted key signatures are not checked: every cache is clean.
        let (m, r) = cli(&dir, &[]);
        assert_eq!(m.code, 0, "{name}: {}", m.stdout);
        assert!(r.ok && r.problems.is_empty(), "{name}: {:?}", r.problems);
    }
}

#[test]
fn native_and_pure_decoders_agree_on_the_corpus() {
    for name in CACHES {
        let dir = corpus().join("caches").join(name);
        for key in [true, false] {
            let opts = options(key, true);
            let native = native_report(&dir, &opts);
            let pure = pure_report(&dir, &opts);
            assert_eq!(native, pure, "{name}, key {key}");
            assert_eq!(async_report(&dir, &opts, true), native, "{name}: async");
            assert_eq!(
                async_report(&dir, &opts, false),
                native,
                "{name}: async, sizes counted"
            );
            let (m, cli_report) = cli(
                &dir,
                &key_args(key).iter().map(String::as_str).collect::<Vec<_>>(),
            );
            assert_eq!(
                cli_report, native,
                "{name}: CLI (parallel) = library (sequential)"
            );
            assert_eq!(m.code, i32::from(native.exit_code()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The damage table

/// A fresh damaged copy for a row, checked clean before the damage.
fn damaged(row: &Row) -> Cache {
    let cache = Cache::copy(&row.cache);
    let before = native_report(cache.path(), &options(row.cache != "unsigned", true));
    assert!(
        before.problems.is_empty(),
        "{}: the untouched copy reports {:?}",
        row.name,
        before.problems
    );
    row.apply(cache.path());
    cache
}

/// The library's options for a row (its `args` among `--store-dir DIR`).
fn row_options(row: &Row) -> VerifyOptions {
    let mut opts = options(row.key, true);
    for pair in row.args.chunks(2) {
        match pair {
            [flag, dir] if flag == "--store-dir" => {
                opts.store_dir = nar_tool::store_path::StoreDir::new(dir).unwrap()
            }
            other => panic!("{}: no library option for {other:?}", row.name),
        }
    }
    opts
}

fn row_args(row: &Row) -> Vec<String> {
    let mut args = key_args(row.key);
    args.extend(row.args.iter().cloned());
    args
}

/// Every row of `tests/fixtures/damage-table.json` (also read by pkg/test/differential.test.js):
/// the CLI gives the problems and exit status the row says, in bounded time and memory, and the
/// library gives the same report on the native path and, unless the damage is one only a
/// directory shows, on the pure and async paths.
#[test]
fn damage_table() {
    let rows = damage::rows();
    assert!(rows.len() >= 75, "{} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let cache = damaged(row);
        let args = row_args(row);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut fail = |what: String| failures.push(format!("{}: {what}", row.name));
        if !row.report {
            // Refused before verifying: an error, no report.
            let m = run_measured(
                Command::new(bin())
                    .arg("verify")
                    .arg(cache.path())
                    .args(["--json", "-q"])
                    .args(&args),
                Duration::from_secs(60),
            );
            if Some(m.code) != row.exit
                || !m.stdout.is_empty()
                || !m.stderr.starts_with("nar-tool: error: ")
            {
                fail(format!(
                    "exit {} (expected {:?}) with {:?} {:?}",
                    m.code, row.exit, m.stdout, m.stderr
                ));
            }
            continue;
        }
        let (m, r) = cli(cache.path(), &args);
        if let Some(expected) = row.expected() {
            if kinds(&r) != expected {
                fail(format!("expected {expected:?}, got {:#?}", r.problems));
            }
        }
        if row.exit.is_some_and(|e| e != m.code) {
            fail(format!("exit {} (expected {:?})", m.code, row.exit));
        }
        if r.ok != (m.code == 0) || r.exit_code() as i32 != m.code {
            fail(format!("ok {} with exit {}", r.ok, m.code));
        }
        // Bounded: the bombs included, quick and small even in a debug build.
        if m.elapsed > Duration::from_secs(20) || m.max_rss_kib.unwrap_or(0) > 100 * 1024 {
            fail(format!("took {:?} and {:?} KiB", m.elapsed, m.max_rss_kib));
        }
        let opts = row_options(row);
        let native = native_report(cache.path(), &opts);
        if native != r {
            fail(format!(
                "library (native, sequential) differs from the CLI: {native:#?}"
            ));
        }
        if !row.storage {
            let pure = pure_report(cache.path(), &opts);
            if pure != native {
                fail(format!("pure path differs: {pure:#?}\nnative: {native:#?}"));
            }
            for sizes in [true, false] {
                let pushed = async_report(cache.path(), &opts, sizes);
                if pushed != native {
                    fail(format!("async path (sizes {sizes}) differs: {pushed:#?}"));
                }
                // Several paths in flight, their reads interleaved, streams telling sizes.
                let pushed = async_report_concurrently(cache.path(), &opts, sizes, 4);
                if pushed != native {
                    fail(format!(
                        "async path, 4 jobs (sizes {sizes}) differs: {pushed:#?}"
                    ));
                }
            }
            // The paths shared with a helper, faithful or hostile.
            for hostile in [false, true] {
                let shared = async_report_shared(cache.path(), &opts, hostile);
                if shared != native {
                    fail(format!("shared (hostile {hostile}) differs: {shared:#?}"));
                }
            }
        }
        // VERIFY_TEST_DUMP=FILE: append every full report (to compare builds byte for byte).
        if let Some(dump) = std::env::var_os("VERIFY_TEST_DUMP") {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dump)
                .unwrap();
            writeln!(f, "{}: exit {}\n{}", row.name, m.code, m.stdout).unwrap();
        }
        eprintln!(
            "{:40} exit {} {:?} ({:?}, {:?} KiB)",
            row.name,
            m.code,
            kinds(&r).iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
            m.elapsed,
            m.max_rss_kib
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--max-problems N`: the first N problems in the report's order are listed, the others
/// counted by kind; the verdict and the exit code are the whole report's.
#[test]
fn max_problems_lists_the_first_and_counts_the_rest() {
    let cache = damaged(&damage::row("several-at-once"));
    let key = corpus_key();
    let (every, all) = cli(cache.path(), &["--trusted-key", &key]);
    assert_eq!(all.problems.len(), 4);
    assert!(all.omitted_problems.is_empty());
    for limit in [1usize, 3, 4] {
        let (m, r) = cli(
            cache.path(),
            &["--trusted-key", &key, "--max-problems", &limit.to_string()],
        );
        assert_eq!(m.code, every.code, "limit {limit}");
        assert_eq!(r.problems, all.problems[..limit], "limit {limit}");
        let omitted: BTreeMap<ProblemKind, u64> =
            all.problems[limit..]
                .iter()
                .fold(BTreeMap::new(), |mut by_kind, p| {
                    *by_kind.entry(p.kind).or_default() += 1;
                    by_kind
                });
        assert_eq!(r.omitted_problems, omitted, "limit {limit}");
        assert_eq!((r.ok, r.exit_code()), (all.ok, all.exit_code()));
    }
    let text = Command::new(bin())
        .args(["verify", "-q", "--max-problems", "2", "--trusted-key", &key])
        .arg(cache.path())
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[2].starts_with("omitted 2 more problems (")
            && lines[2].ends_with(
                "): only the first 2 are listed; --max-problems N lists more, 0 every one"
            ),
        "{text}"
    );
    assert!(
        lines[3].ends_with("FAILED: 3 problems, 1 warnings"),
        "{text}"
    );
}

/// `--no-contents` still sees what the directory shows (presence, sizes), not what only reading
/// would (a flipped byte, a swapped NAR).
#[test]
fn no_contents() {
    use ProblemKind::*;
    for (name, expect) in [
        ("nar-deleted", vec![(MissingNar, LIBDEMO.to_string())]),
        (
            "nar-truncated",
            vec![(FileSizeMismatch, LIBDEMO.to_string())],
        ),
        (
            "url-parent-parent",
            vec![(UrlOutsideCache, FILE.to_string())],
        ),
        ("signature-removed", vec![(Untrusted, TOP.to_string())]),
        (
            "reference-removed",
            vec![(MissingReference, TOP.to_string())],
        ),
        ("nar-byte-flipped", vec![]),
        ("nar-other-contents-same-size", vec![]),
        ("zstd-bomb-zeros", vec![]),
    ] {
        let cache = damaged(&damage::row(name));
        let (m, r) = cli(
            cache.path(),
            &["--no-contents", "--trusted-key", &corpus_key()],
        );
        assert_eq!(kinds(&r), expect, "{name}");
        assert_eq!(
            m.code,
            if expect.is_empty() {
                0
            } else {
                r.exit_code() as i32
            }
        );
        assert_eq!(r.checked_bytes, 0, "{name}: no NAR read");
        let opts = options(true, false);
        assert_eq!(pure_report(cache.path(), &opts), r, "{name}: pure");
        assert_eq!(async_report(cache.path(), &opts, true), r, "{name}: async");
    }
}

// ---------------------------------------------------------------------------------------------
// URLs outside the cache are never read

/// Records every file the verifier asks for.
struct Recording<S> {
    inner: S,
    asked: Mutex<Vec<String>>,
}

impl<S: CacheStorage> CacheStorage for Recording<S> {
    fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        self.asked.lock().unwrap().push(rel.to_string());
        self.inner.read_small(rel, limit)
    }
    fn open(&self, rel: &str) -> io::Result<Option<Box<dyn Read + '_>>> {
        self.asked.lock().unwrap().push(rel.to_string());
        self.inner.open(rel)
    }
    fn size(&self, rel: &str) -> io::Result<Option<u64>> {
        self.asked.lock().unwrap().push(rel.to_string());
        self.inner.size(rel)
    }
    fn list_narinfos(&self) -> io::Result<Vec<String>> {
        self.inner.list_narinfos()
    }
    fn list_nar_files(&self) -> io::Result<Vec<String>> {
        self.inner.list_nar_files()
    }
}

#[test]
fn urls_outside_the_cache_are_never_read() {
    for url in [
        "../../etc/passwd",
        "/etc/passwd",
        "http://x/y",
        "nar/../../x",
    ] {
        // The library asks the storage for nothing outside.
        let cache = Cache::copy("xz");
        let nar = field(cache.path(), FILE, "URL");
        set_field(cache.path(), FILE, "URL", url);
        fn run<S: CacheStorage>(storage: S, decoder: v::DecoderFn) -> (Report, Vec<String>) {
            let rec = Recording {
                inner: storage,
                asked: Mutex::new(Vec::new()),
            };
            let r = v::verify_cache(&rec, &options(true, true), decoder, |_| {});
            (r, rec.asked.into_inner().unwrap())
        }
        for (r, asked) in [
            run(DirStorage::open(cache.path()).unwrap(), native_decoder),
            run(memory_storage(cache.path()), v::pure_decoder),
        ] {
            assert!(
                asked
                    .iter()
                    .all(|a| !a.contains("..") && !a.starts_with('/') && !a.contains(':')),
                "{url}: asked for {asked:?}"
            );
            assert_eq!(
                kinds(&r),
                [
                    (ProblemKind::UrlOutsideCache, FILE.to_string()),
                    (ProblemKind::OrphanNar, nar.clone())
                ],
                "{url}"
            );
        }
        // The CLI opens nothing there either: a FIFO where the URL leads would block any reader.
        let target = match url {
            "/etc/passwd" => cache.path().join("etc/passwd"),
            "http://x/y" => cache.path().join("http:/x/y"),
            other => cache.path().join(other),
        };
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        let status = Command::new("mkfifo").arg(&target).status().unwrap();
        assert!(status.success());
        let (m, r) = cli(cache.path(), &["--trusted-key", &corpus_key()]);
        assert_eq!(m.code, 1);
        assert_eq!(r.problems[0].kind, ProblemKind::UrlOutsideCache, "{url}");
        assert!(r.problems[0].message.contains("not read"));
    }
}

// ---------------------------------------------------------------------------------------------
// Output formats and exit codes

#[test]
fn json_schema_and_text_output() {
    // Several damages at once: missing NAR (1), no signature (2), unknown compression (4), an
    // orphan (warning).
    let cache = Cache::copy("xz");
    let d = cache.path();
    fs::remove_file(nar_file(d, LIBDEMO)).unwrap();
    remove_field(d, TOP, "Sig");
    set_field(d, EXE, "Compression", "br");
    fs::write(d.join("nar/stray"), b"x").unwrap();
    let key = corpus_key();
    let run = |extra: &[&str]| {
        run_measured(
            Command::new(bin())
                .arg("verify")
                .arg(d)
                .args(["--trusted-key", &key, "-q"])
                .args(extra),
            Duration::from_secs(60),
        )
    };
    let json = run(&["--json"]);
    assert_eq!(json.code, 7, "1 | 2 | 4");
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let obj = doc.as_object().expect("an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["checked_bytes", "ok", "paths", "problems"]);
    assert_eq!(obj["ok"], serde_json::Value::Bool(false));
    assert_eq!(obj["paths"].as_u64(), Some(9));
    assert!(obj["checked_bytes"].as_u64().unwrap() > 0);
    let known: Vec<&str> = [
        "bad-cache-info",
        "malformed-narinfo",
        "hash-part-mismatch",
        "url-outside-cache",
        "missing-nar",
        "file-size-mismatch",
        "file-hash-mismatch",
        "malformed-nar",
        "nar-size-mismatch",
        "nar-hash-mismatch",
        "missing-reference",
        "bad-signature",
        "untrusted",
        "orphan-nar",
        "check-failed",
    ]
    .to_vec();
    let problems = obj["problems"].as_array().unwrap();
    let mut seen = Vec::new();
    for p in problems {
        let p = p.as_object().unwrap();
        let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["kind", "message", "path"]);
        let kind = p["kind"].as_str().unwrap();
        assert!(known.contains(&kind), "{kind}");
        assert!(!p["message"].as_str().unwrap().is_empty());
        seen.push((kind.to_string(), p["path"].as_str().unwrap().to_string()));
    }
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    assert_eq!(
        seen.iter().map(|s| &s.1).collect::<Vec<_>>(),
        sorted.iter().map(|s| &s.1).collect::<Vec<_>>(),
        "sorted by path"
    );
    let expected: Vec<(String, String)> = [
        ("missing-nar", LIBDEMO),
        ("check-failed", EXE),
        ("untrusted", TOP),
        ("orphan-nar", "nar/stray"),
    ]
    .iter()
    .map(|(k, p)| (k.to_string(), p.to_string()))
    .collect();
    assert_eq!(seen, expected);

    // Text: one line per problem, `<kind> <path>: <message>`, in the same order, then a summary.
    let text = run(&[]);
    assert_eq!(text.code, 7);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), problems.len() + 1);
    for (line, p) in lines.iter().zip(problems) {
        assert_eq!(
            *line,
            format!(
                "{} {}: {}",
                p["kind"].as_str().unwrap(),
                p["path"].as_str().unwrap(),
                p["message"].as_str().unwrap()
            )
        );
    }
    let summary = lines.last().unwrap();
    assert!(
        summary.contains("9 paths") && summary.contains("FAILED: 3 problems, 1 warnings"),
        "{summary}"
    );
    // The jobs count changes nothing.
    let one = run(&["--json", "--jobs", "1"]);
    assert_eq!(one.stdout, json.stdout);

    // An orphan alone is a warning: exit 0, ok.
    let cache = Cache::copy("zstd");
    fs::write(cache.path().join("nar/stray.nar.zst"), b"x").unwrap();
    let (m, r) = cli(cache.path(), &[]);
    assert_eq!((m.code, r.ok, r.problems.len()), (0, true, 1));
    let text = run_measured(
        Command::new(bin()).arg("verify").arg(cache.path()),
        Duration::from_secs(60),
    );
    assert!(text
        .stdout
        .lines()
        .last()
        .unwrap()
        .contains("OK: 0 problems, 1 warnings"));
}

/// Where a judgment compares two values, the problem carries them (`expected`, `found`), the same
/// through the CLI and every library path; elsewhere they are absent from the JSON.
#[test]
fn expected_and_found() {
    let cache = Cache::copy("xz");
    let d = cache.path();
    let size = fs::metadata(nar_file(d, LIBDEMO)).unwrap().len();
    set_field(d, LIBDEMO, "FileSize", "1");
    remove_field(d, TOP, "Sig");
    let key = corpus_key();
    let (m, r) = cli(d, &["--trusted-key", &key]);
    assert_eq!(m.code, 3);
    let compared: Vec<_> = r
        .problems
        .iter()
        .map(|p| (p.kind, p.expected.as_deref(), p.found.as_deref()))
        .collect();
    let size = size.to_string();
    assert_eq!(
        compared,
        [
            (
                ProblemKind::FileSizeMismatch,
                Some("1"),
                Some(size.as_str())
            ),
            (ProblemKind::Untrusted, None, None),
        ]
    );
    let opts = VerifyOptions {
        trusted_keys: vec![PublicKey::parse(&key).unwrap()],
        ..VerifyOptions::default()
    };
    assert_eq!(native_report(d, &opts), r);
    assert_eq!(pure_report(d, &opts), r);
    assert_eq!(async_report(d, &opts, false), r);
    let doc: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
    assert!(doc["problems"][1].get("expected").is_none());
}

// ---------------------------------------------------------------------------------------------
// Differential: Nix 2.8's `nix store verify`

/// The damages Nix 2.8 does not report (exit 0) while we do. Checked by [`nix_differential`]
/// (with Nix 2.8), so this list stays true:
const NIX_MISSES: &[&str] = &[
    // Nix takes content-addressed paths as self-validating: no signature needed. We ask one of
    // every path (the CA is not checked against the contents by either tool).
    "signature-removed-content-addressed",
    // Nix skips a narinfo it cannot read as text or that is too large (we refuse over 1 MiB),
    // and one under a name no store path has.
    "narinfo-not-utf8",
    "narinfo-over-1-MiB",
    "narinfo-bogus-name",
    // Nix's file:// store reads `<cache>/<URL>` whatever the URL: from outside the cache
    // (`../../etc/passwd`, `nar/../../x`) or from inside it under names no NAR has. We refuse
    // the URL and read nothing.
    "url-parent-parent",
    "url-absolute",
    "url-http",
    "url-nar-parent-parent",
    // Nix does not check that references are in the cache (the closure is complete).
    "reference-removed",
    // A missing nix-cache-info is re-created by Nix — it writes into the cache it verifies;
    // unknown lines are ignored, and so is one it cannot read.
    "cache-info-missing",
    "cache-info-garbage",
    "cache-info-not-utf8",
    "cache-info-is-a-directory",
    "cache-info-over-64-KiB",
    // Nix (libarchive) sniffs the format and ignores `Compression:`.
    "zstd-labelled-xz",
    // Nix checks neither FileHash, nor FileSize, nor NarSize: only the NAR hash.
    "filehash-edited",
    "filesize-edited",
    "narsize-edited-unsigned",
    // Nix sniffs the format: a `Compression:` it does not know, or none (bzip2), does not matter
    // to it.
    "compression-unknown",
    "compression-missing-means-bzip2",
    // Nix follows a symlink out of the cache.
    "nar-symlink-outside",
    "nar-dir-symlink-outside",
    // An empty directory is an empty cache to Nix (it writes a nix-cache-info into it).
    "cache-is-empty",
];
// Also: Nix exits 4 ("could not verify") where a NAR file is missing, truncated, flipped or not
// decompressible, or a narinfo is under another hash part's name; we exit 1 (corrupt) for those,
// and tell which layer failed. Neither tool sees a changed Deriver (it is not signed). A stray
// file in nar/ is a warning for us (exit 0) and unseen by Nix.

fn nix_available() -> bool {
    Command::new("nix")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn nix_verify(dir: &Path, extra: &[&str]) -> Measured {
    let xdg = tempfile::tempdir().unwrap();
    run_measured(
        Command::new("nix")
            .args([
                "--extra-experimental-features",
                "nix-command",
                "store",
                "verify",
            ])
            .arg("--store")
            .arg(format!("file://{}", dir.display()))
            .args(["--all", "--option", "substituters", ""])
            .args(extra)
            .env("NIX_REMOTE", "local")
            .env("XDG_CACHE_HOME", xdg.path()),
        Duration::from_secs(300),
    )
}

#[test]
fn nix_differential() {
    if !nix_available() {
        println!("SKIP: nix is not installed");
        return;
    }
    let key = corpus_key();
    let trusted = ["--option", "trusted-public-keys", key.as_str()];
    // The corpus: clean for both (the unsigned cache: untrusted for both).
    for name in CACHES {
        let cache = Cache::copy(name);
        let nix = nix_verify(cache.path(), &trusted);
        let (ours, _) = cli(cache.path(), &["--trusted-key", &key]);
        let expected = if name == "unsigned" { 2 } else { 0 };
        assert_eq!(
            (nix.code, ours.code),
            (expected, expected),
            "{name}: {}",
            nix.stderr
        );
        // `--sigs-needed 1` is the default; 2 cannot be met by a single-key cache.
        let nix = nix_verify(
            cache.path(),
            &[&trusted[..], &["--sigs-needed", "1"]].concat(),
        );
        assert_eq!(nix.code, expected, "{name} -n1");
        let nix = nix_verify(
            cache.path(),
            &[&trusted[..], &["--sigs-needed", "2"]].concat(),
        );
        assert_eq!(nix.code, 2, "{name} -n2");
    }
    let mut misses = Vec::new();
    let mut failures = Vec::new();
    for c in damage::rows() {
        if !c.nix || !c.report || !c.args.is_empty() {
            continue;
        }
        let cache = damaged(&c);
        let args = key_args(c.key);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Ours first: Nix may write into the cache (nix-cache-info).
        let (ours, report) = cli(cache.path(), &args);
        let nix = nix_verify(
            cache.path(),
            if c.key { &trusted[..] } else { &["--no-trust"] },
        );
        eprintln!(
            "{:40} nix exit {} ours {}   {}",
            c.name,
            nix.code,
            ours.code,
            nix.stderr
                .lines()
                .filter(|l| !l.starts_with("checking"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        if nix.code != 0 && ours.code == 0 {
            failures.push(format!(
                "{}: Nix reports it (exit {}), we do not",
                c.name, nix.code
            ));
        }
        // Every store path Nix names in a complaint, we name too.
        for line in nix.stderr.lines().filter(|l| !l.starts_with("checking")) {
            for quoted in line.split("path '").skip(1) {
                let path = quoted.split('\'').next().unwrap();
                if !report.problems.iter().any(|p| p.path == path) {
                    failures.push(format!("{}: Nix names {path}, we do not", c.name));
                }
            }
        }
        if nix.code == 0 && ours.code != 0 {
            misses.push(c.name.clone());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let version = Command::new("nix").arg("--version").output().unwrap();
    if String::from_utf8_lossy(&version.stdout).contains(" 2.8.") {
        assert_eq!(misses, NIX_MISSES, "what Nix 2.8 misses and we catch");
    }
}
