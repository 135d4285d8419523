//! `nar-tool gc` and `nar-tool keep-paths`, end to end, on a directory and on the S3 test
//! server: golden cases (roots from `gcroots/` files and symlinks, `--root`, self-references, a
//! NAR shared by two narinfos, `--keep-since`), `--print-dead` equal to what the collection then
//! deletes, leases held against collections (and gone once their holder is SIGKILLed), and a
//! torture test: builders publishing, `keep-paths` holders (some SIGKILLed), the real Nix
//! substituting leased paths, and collections running again and again, the cache checked after
//! each.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::s3::{server, S3Server};
use crate::common::*;
use nar_tool::cache::layout::{CacheKey, KeyDir};
use nar_tool::cache::storage::{list_keys, StorageRead, StorageWrite};
use nar_tool::hash::{to_hex, Hash, HashAlgo};
use nar_tool::host::dir_storage::DirStorage;
use nar_tool::host::fs::{dump_path, CaseHack};
use nar_tool::narinfo::NarInfo;
use nar_tool::nixbase32;

// ---------------------------------------------------------------------------------------------
// A cache under test: a directory or a prefix of the test bucket.

pub(crate) struct Cache {
    /// What the commands are given.
    pub(crate) arg: String,
    /// What Nix substitutes from.
    nix_url: String,
    pub(crate) storage: Box<dyn StorageWrite>,
    s3: Option<&'static S3Server>,
    dir: Option<PathBuf>,
    _tmp: TempTree,
}

impl Cache {
    pub(crate) fn dir() -> Cache {
        let tmp = TempTree::new();
        let dir = tmp.path().join("cache");
        fs::create_dir(&dir).unwrap();
        Cache {
            _tmp: tmp,
            ..Cache::at(dir)
        }
    }

    /// A cache in an existing directory `dir`.
    pub(crate) fn at(dir: PathBuf) -> Cache {
        Cache {
            arg: dir.display().to_string(),
            nix_url: format!("file://{}", dir.display()),
            storage: Box::new(DirStorage::open(&dir).unwrap()),
            s3: None,
            dir: Some(dir),
            _tmp: TempTree::new(),
        }
    }

    pub(crate) fn s3(name: &str) -> Cache {
        let srv = server();
        let prefix = srv.fresh_prefix(name);
        Cache {
            arg: srv.url(&prefix),
            nix_url: srv.anon_base(&prefix),
            storage: Box::new(srv.storage(&prefix)),
            s3: Some(srv),
            dir: None,
            _tmp: TempTree::new(),
        }
    }

    /// `nar-tool` with what the cache needs in its environment.
    pub(crate) fn cmd(&self) -> Command {
        match self.s3 {
            Some(srv) => srv.command(),
            None => Command::new(bin()),
        }
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        self.ok_for(args, "")
    }

    /// `nar-tool ARGS`, which must succeed (`what` says when, in the message); its stdout.
    pub(crate) fn ok_for(&self, args: &[&str], what: &str) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{what}: nar-tool {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `gc CACHE --grace 0 EXTRA… --json`.
    pub(crate) fn gc(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["gc", &self.arg, "--grace", "0", "--json"];
        args.extend(extra);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// `gc CACHE --print-dead` as base names.
    pub(crate) fn print_dead(&self, extra: &[&str]) -> BTreeSet<String> {
        let mut args = vec!["gc", &self.arg, "--grace", "0", "--print-dead"];
        args.extend(extra);
        self.ok(&args)
            .lines()
            .map(|l| base(l).to_string())
            .collect()
    }

    /// A root in the cache's `gcroots/`, as a file named by the path's base name.
    pub(crate) fn add_root(&self, path: &str) {
        let name = format!("gcroots/{}", base(path));
        match (&self.dir, self.s3) {
            (Some(dir), _) => {
                fs::create_dir_all(dir.join("gcroots")).unwrap();
                fs::write(dir.join(name), b"").unwrap();
            }
            (None, Some(_)) => {
                let s3 = self.object();
                s3.put_raw(&name, b"").unwrap();
            }
            _ => unreachable!(),
        }
    }

    pub(crate) fn object(&self) -> nar_tool::host::object::ObjectStorage {
        let srv = self.s3.unwrap();
        let prefix = self
            .arg
            .split('?')
            .next()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        srv.storage(prefix)
    }

    /// The narinfos, by base name of their store path: (references, NAR key).
    pub(crate) fn narinfos(&self) -> BTreeMap<String, (Vec<String>, CacheKey)> {
        let (keys, _) = list_keys(&*self.storage, KeyDir::Root).unwrap();
        let mut out = BTreeMap::new();
        for key in keys {
            if !matches!(key, CacheKey::NarInfo(_)) {
                continue;
            }
            let Some(bytes) = self.storage.read_small(&key, 1 << 20).unwrap() else {
                continue;
            };
            let info = NarInfo::parse(&String::from_utf8(bytes).unwrap()).unwrap();
            let url = nar_tool::cache::layout::resolve_url(&info.url).unwrap();
            out.insert(
                info.store_path.to_string(),
                (info.references.iter().map(|r| r.to_string()).collect(), url),
            );
        }
        out
    }

    /// Every object or file of the cache, its state folder included.
    pub(crate) fn everything(&self) -> BTreeSet<String> {
        match &self.dir {
            Some(dir) => walk_names(dir, dir),
            None => self
                .object()
                .list_everything()
                .unwrap()
                .into_iter()
                .collect(),
        }
    }

    pub(crate) fn keys(&self, dir: KeyDir) -> BTreeSet<CacheKey> {
        list_keys(&*self.storage, dir)
            .unwrap()
            .0
            .into_iter()
            .collect()
    }

    /// The cache's lookup index says what its narinfos say.
    pub(crate) fn assert_index_current(&self, what: &str) {
        self.ok_for(&["index", "--check", &self.arg], what);
    }

    /// `verify --no-contents` finds nothing missing (orphan NARs are only warnings).
    pub(crate) fn verify(&self, what: &str) {
        let out = self.run(&["verify", &self.arg, "--quiet", "--no-contents"]);
        assert!(
            out.status.success(),
            "{what}: verify failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every path of the closures of `paths` has its narinfo and NAR.
    pub(crate) fn assert_closure_complete(&self, paths: &[String], what: &str) {
        let infos = self.narinfos();
        let mut todo: Vec<String> = paths.iter().map(|p| base(p).to_string()).collect();
        let mut seen = BTreeSet::new();
        while let Some(p) = todo.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            let (refs, nar) = infos
                .get(&p)
                .unwrap_or_else(|| panic!("{what}: {p} lost its narinfo"));
            assert!(
                self.storage.stat(nar).unwrap().is_some(),
                "{what}: {p} lost its NAR {nar}"
            );
            todo.extend(refs.iter().cloned());
        }
    }
}

/// The names of every entry under `dir`, relative to `top`.
fn walk_names(top: &std::path::Path, dir: &std::path::Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        out.insert(path.strip_prefix(top).unwrap().display().to_string());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk_names(top, &path));
        }
    }
    out
}

pub(crate) fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

pub(crate) fn closure(roots: &[String], refs: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|r| base(r).to_string()).collect();
    while let Some(p) = todo.pop() {
        if out.insert(p.clone()) {
            todo.extend(
                refs.get(&p)
                    .into_iter()
                    .flatten()
                    .map(|r| base(r).to_string()),
            );
        }
    }
    out
}

/// The corpus store paths by name (`app-0.9` → `/nix/store/…-app-0.9-public`).
pub(crate) fn corpus_path(name: &str) -> String {
    store_paths()
        .into_iter()
        .find(|p| p.ends_with(&format!("-{name}-public")))
        .unwrap_or_else(|| panic!("no corpus path {name}"))
}

/// The corpus references (base names).
fn corpus_refs() -> BTreeMap<String, Vec<String>> {
    let text = fs::read_to_string(corpus().join("registration")).unwrap();
    parse_registration(&text)
}

fn parse_registration(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(path) = lines.next() {
        if path.is_empty() {
            continue;
        }
        let (_, _, _) = (lines.next(), lines.next(), lines.next());
        let n: usize = lines.next().unwrap().parse().unwrap();
        let refs = (0..n)
            .map(|_| base(lines.next().unwrap()).to_string())
            .collect();
        out.insert(base(path).to_string(), refs);
    }
    out
}

/// The 9 corpus paths built into the cache (with listings).
pub(crate) fn build_corpus(cache: &Cache) -> TempTree {
    let root = extract_root_tar();
    let key = secret_key();
    let r = root.path().display().to_string();
    let mut args = vec![
        "build-cache",
        "--to",
        &cache.arg,
        "--store-root",
        &r,
        "--secret-key-file",
        &key,
        "--nar-listing",
        "--quiet",
    ];
    let paths = store_paths();
    args.extend(paths.iter().map(String::as_str));
    cache.ok(&args);
    root
}

fn names(set: &[&str]) -> BTreeSet<String> {
    set.iter()
        .map(|n| base(&corpus_path(n)).to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Golden cases

/// A narinfo for a made-up path `x-shared` naming libdemo's NAR: a NAR shared by two narinfos.
fn add_sharing_narinfo(cache: &Cache) -> String {
    let libdemo = corpus_path("libdemo-1.0");
    let key = CacheKey::narinfo(&base(&libdemo)[..32]).unwrap();
    let text =
        String::from_utf8(cache.storage.read_small(&key, 1 << 20).unwrap().unwrap()).unwrap();
    let fake = format!("{}-x-shared", "1".repeat(32));
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("Sig:") && !l.starts_with("Deriver:"))
        .map(|l| {
            if l.starts_with("StorePath:") {
                format!("StorePath: /nix/store/{fake}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    cache
        .storage
        .put(&CacheKey::narinfo(&fake[..32]).unwrap(), text.as_bytes())
        .unwrap();
    fake
}

fn golden(cache: &Cache) {
    let _root = build_corpus(cache);
    let shared = add_sharing_narinfo(cache);
    let app = corpus_path("app-0.9");
    cache.add_root(&app);
    let mut extra: Vec<String> = Vec::new();
    let mut live = names(&[
        "app-0.9",
        "edge-cases",
        "libdemo-1.0",
        "tool-2.3",
        "single-file",
    ]);
    if let Some(dir) = &cache.dir {
        // A symlink root, to a path below a store path (read, never followed).
        let exe = corpus_path("single-exe");
        std::os::unix::fs::symlink(format!("{exe}/bin/x"), dir.join("gcroots/exe")).unwrap();
        live.insert(base(&exe).to_string());
    } else {
        extra.extend(["--root".to_string(), corpus_path("single-exe")]);
        live.insert(base(&corpus_path("single-exe")).to_string());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let before = cache.narinfos();
    let everything_before = cache.everything();
    let all: BTreeSet<String> = before.keys().cloned().collect();
    let dead: BTreeSet<String> = all.difference(&live).cloned().collect();
    assert_eq!(
        dead,
        names(&["closure-top", "bare-symlink", "added"])
            .into_iter()
            .chain([shared.clone()])
            .collect()
    );

    // What --print-live and --print-dead say, and --dry-run, change nothing.
    let printed_live: BTreeSet<String> = {
        let mut args = vec!["gc", &cache.arg, "--print-live"];
        args.extend(&extra);
        cache
            .ok(&args)
            .lines()
            .map(|l| base(l).to_string())
            .collect()
    };
    assert_eq!(printed_live, live);
    assert_eq!(cache.print_dead(&extra), dead);
    let mut dry = vec!["--dry-run"];
    dry.extend(&extra);
    let planned = cache.gc(&dry);
    assert_eq!(
        planned["summary"]["paths_freed"],
        dead.len() as u64,
        "{planned}"
    );
    assert_eq!(cache.narinfos(), before, "--dry-run deleted something");
    assert_eq!(
        cache.everything(),
        everything_before,
        "--print-live, --print-dead and --dry-run wrote or deleted something"
    );

    // --why: the shortest chain from a root.
    let libdemo = corpus_path("libdemo-1.0");
    let why = {
        let mut args = vec!["gc", &cache.arg, "--why", &libdemo];
        args.extend(&extra);
        cache.ok(&args)
    };
    let lines: Vec<&str> = why.lines().collect();
    assert!(
        lines[0].starts_with("root: ") && lines[0].contains("gcroots/"),
        "{why}"
    );
    let second = format!("→ {}", corpus_path("libdemo-1.0"));
    assert_eq!(lines[1..], [app.as_str(), second.as_str()], "{why}");

    // The collection deletes exactly what --print-dead said.
    let nars_before = cache.keys(KeyDir::Nar);
    let done = cache.gc(&extra);
    let deleted: BTreeSet<String> = done["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| base(p.as_str().unwrap()).to_string())
        .collect();
    assert_eq!(deleted, dead, "{done}");
    let after = cache.narinfos();
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), live);
    // Each dead path's NAR is gone, except libdemo's, which the surviving libdemo still names.
    let libdemo_nar = &after[base(&corpus_path("libdemo-1.0"))].1;
    assert_eq!(&before[&shared].1, libdemo_nar);
    let kept_nars: BTreeSet<CacheKey> = after.values().map(|(_, n)| n.clone()).collect();
    assert_eq!(cache.keys(KeyDir::Nar), kept_nars);
    assert_eq!(
        nars_before.difference(&kept_nars).count() as u64,
        done["summary"]["nars_freed"].as_u64().unwrap()
    );
    // Listings of the dead are gone, the live keep theirs.
    let listings: BTreeSet<String> = cache
        .keys(KeyDir::Root)
        .into_iter()
        .filter_map(|k| match k {
            CacheKey::Listing(h) => Some(h),
            _ => None,
        })
        .collect();
    let live_hashes: BTreeSet<String> = live.iter().map(|b| b[..32].to_string()).collect();
    assert_eq!(listings, live_hashes);
    cache.verify("after the collection");
    // Nothing more to do.
    assert_eq!(cache.gc(&extra)["summary"]["paths_freed"], 0);
}

#[test]
fn golden_roots_shared_nars_and_self_references_on_a_directory() {
    golden(&Cache::dir());
}

#[test]
fn golden_roots_shared_nars_and_self_references_on_s3() {
    golden(&Cache::s3("gc-golden"));
}

#[test]
fn keep_since_keeps_recent_narinfos_with_their_closures() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let dir = cache.dir.clone().unwrap();
    let old = SystemTime::now() - Duration::from_secs(3 * 86400);
    let top = base(&corpus_path("closure-top"))[..32].to_string();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".narinfo") && !name.starts_with(&top) {
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    let refs = corpus_refs();
    let kept = closure(&[corpus_path("closure-top")], &refs);
    assert_eq!(cache.print_dead(&["--keep-since", "1d"]), names(&["added"]));
    cache.gc(&["--keep-since", "1d"]);
    assert_eq!(
        cache.narinfos().keys().cloned().collect::<BTreeSet<_>>(),
        kept
    );
    // Within two weeks: every narinfo left is recent, and stays.
    cache.gc(&["--keep-since", "2w"]);
    assert_eq!(cache.narinfos().len(), kept.len());
    cache.gc(&[]);
    assert!(cache.narinfos().is_empty());
    assert!(cache.keys(KeyDir::Nar).is_empty());
    cache.verify("after collecting everything");
}

#[test]
fn max_freed_stops_early_and_grace_keeps_fresh_nars() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let nars = cache.keys(KeyDir::Nar).len() as u64;
    // With the default --grace (1h), the NARs just written stay while the narinfos go.
    let out: serde_json::Value =
        serde_json::from_str(&cache.ok(&["gc", &cache.arg, "--json", "--max-freed", "0"])).unwrap();
    assert_eq!(out["summary"]["paths_freed"], 0, "{out}");
    let out: serde_json::Value =
        serde_json::from_str(&cache.ok(&["gc", &cache.arg, "--json"])).unwrap();
    assert_eq!(out["summary"]["paths_freed"], 9, "{out}");
    assert_eq!(out["summary"]["nars_freed"], 0, "{out}");
    assert_eq!(cache.keys(KeyDir::Nar).len() as u64, nars);
    // Now without grace: the orphans go.
    assert_eq!(cache.gc(&[])["summary"]["nars_freed"], nars);
}

/// A tmpfs of its own, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
    _tmp: TempTree,
}

impl SmallFs {
    /// `None` when this process may not mount (not root).
    fn mount(size: &str, inodes: u32) -> Option<SmallFs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: the full-disk case is not run");
            return None;
        }
        let tmp = TempTree::new();
        let dir = tmp.path().join("fs");
        fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},nr_inodes={inodes}"))
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {out:?}");
        Some(SmallFs { dir, _tmp: tmp })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_is_collected() {
    let Some(small) = SmallFs::mount("4m", 400) else {
        return;
    };
    let dir = small.dir.join("cache");
    fs::create_dir(&dir).unwrap();
    let cache = Cache::at(dir.clone());
    let _root = build_corpus(&cache);
    // Fill every byte and every inode.
    let mut filled = 0;
    let full = |e: &std::io::Error| e.raw_os_error() == Some(28); // ENOSPC
    for i in 0.. {
        match fs::write(small.dir.join(format!("filler-{i}")), vec![7u8; 64 << 10]) {
            Ok(()) => filled += 1,
            Err(e) if full(&e) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    for i in 0.. {
        match fs::write(small.dir.join(format!("f-{i}")), b"") {
            Ok(()) => {}
            Err(e) if full(&e) => break,
            Err(e) => panic!("filling inodes: {e}"),
        }
    }
    assert!(filled > 0);
    assert!(
        fs::write(dir.join("probe"), b"x").is_err(),
        "the disk is full"
    );
    let done = cache.gc(&["--root", &corpus_path("app-0.9")]);
    assert!(
        done["summary"]["paths_freed"].as_u64().unwrap() > 0,
        "{done}"
    );
    cache.verify("after collecting a full disk");
    cache.assert_closure_complete(&[corpus_path("app-0.9")], "a full disk");
}

#[test]
fn temporary_files_of_dead_writers_are_deleted() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let dir = cache.dir.clone().unwrap();
    // What a writer killed mid-NAR leaves: its owner file (unlocked now) and its temporary file.
    fs::create_dir_all(dir.join(".nar-tool/owners")).unwrap();
    fs::write(dir.join(".nar-tool/owners/4242-deadbeef"), b"").unwrap();
    let tmp = dir.join("nar/.nar-tool.4242-deadbeef.0.tmp");
    fs::write(&tmp, b"half a NAR").unwrap();
    cache.gc(&["--root", &corpus_path("app-0.9")]);
    assert!(!tmp.exists(), "a dead writer's temporary file survived");
    // A cache copied without its state folder: a temporary file has no owner at all.
    fs::remove_dir_all(dir.join(".nar-tool")).ok();
    let orphan = dir.join(".nar-tool.4343-cafe.0.tmp");
    fs::write(&orphan, b"half a narinfo").unwrap();
    cache.gc(&["--root", &corpus_path("app-0.9")]);
    assert!(
        !orphan.exists(),
        "a temporary file without an owner survived"
    );
}

#[test]
fn usage_errors_exit_2() {
    let cache = Cache::dir();
    for args in [
        vec!["gc", &cache.arg, "--grace", "soon"],
        vec!["gc", &cache.arg, "--max-freed", "lots"],
        vec!["gc", &cache.arg, "--print-dead", "--print-live"],
        vec!["gc", &cache.arg, "--root", "not-a-store-path"],
        vec!["gc", &cache.arg, "--why", "hello"],
        vec!["gc", "/nonexistent/cache"],
        vec!["keep-paths", &cache.arg],
        vec!["keep-paths", &cache.arg, "hello"],
    ] {
        let out = cache.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error"),
            "{args:?}"
        );
    }
    // A bad root in gcroots/ stops the collection before it deletes anything.
    let _root = build_corpus(&cache);
    fs::create_dir_all(cache.dir.as_ref().unwrap().join("gcroots")).unwrap();
    fs::write(cache.dir.as_ref().unwrap().join("gcroots/result"), b"").unwrap();
    let out = cache.run(&["gc", &cache.arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gcroots/result"));
    assert_eq!(cache.narinfos().len(), 9);
}

// ---------------------------------------------------------------------------------------------
// Leases

/// A `keep-paths CACHE PATHS` holding its lease until its stdin closes.
struct Holder {
    child: Child,
    paths: Vec<String>,
}

impl Holder {
    /// Starts one; `None` if it failed (a path not in the cache).
    fn start(cache: &Cache, paths: &[String]) -> Option<Holder> {
        let mut child = cache
            .cmd()
            .arg("keep-paths")
            .arg(&cache.arg)
            .args(paths)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.starts_with("keeping ") {
            return Some(Holder {
                child,
                paths: paths.to_vec(),
            });
        }
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(1), "keep-paths: {err}");
        assert!(err.contains("not in the cache"), "{err}");
        None
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "keep-paths ended with {status:?}");
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn leases_hold(cache: &Cache) {
    let _root = build_corpus(cache);
    let refs = corpus_refs();
    let tool = corpus_path("tool-2.3");
    let app = corpus_path("app-0.9");
    let holder = Holder::start(cache, std::slice::from_ref(&app)).expect("app is in the cache");
    let second = Holder::start(cache, std::slice::from_ref(&tool)).expect("tool is in the cache");
    cache.gc(&[]);
    assert_eq!(
        cache.narinfos().keys().cloned().collect::<BTreeSet<_>>(),
        closure(std::slice::from_ref(&app), &refs)
    );
    cache.assert_closure_complete(std::slice::from_ref(&app), "held");
    // A holder killed: its lease is gone at the next collection; the other still holds.
    holder.kill();
    cache.gc(&[]);
    assert_eq!(
        cache.narinfos().keys().cloned().collect::<BTreeSet<_>>(),
        closure(std::slice::from_ref(&tool), &refs)
    );
    second.release();
    cache.gc(&[]);
    assert!(cache.narinfos().is_empty());
    // A path not in the cache (any more): refused.
    assert!(Holder::start(cache, &[tool]).is_none());
}

#[test]
fn keep_paths_holds_against_gc_until_killed_on_a_directory() {
    leases_hold(&Cache::dir());
}

#[test]
fn keep_paths_holds_against_gc_until_killed_on_s3() {
    leases_hold(&Cache::s3("gc-leases"));
}

#[test]
fn keep_paths_runs_a_command_for_its_lifetime() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let tool = corpus_path("tool-2.3");
    // A collection inside the command spares the leased closure.
    let gc = format!("{} gc {} --grace 0", bin(), cache.arg);
    cache.ok(&["keep-paths", &cache.arg, &tool, "--", "sh", "-c", &gc]);
    assert_eq!(
        cache.narinfos().keys().cloned().collect::<BTreeSet<_>>(),
        closure(std::slice::from_ref(&tool), &corpus_refs())
    );
    // Exit codes pass through; a signal N gives 128+N.
    let out = cache.run(&["keep-paths", &cache.arg, &tool, "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = cache.run(&[
        "keep-paths",
        &cache.arg,
        &tool,
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(out.status.code(), Some(128 + 15));
    // After the command, the lease is gone.
    cache.gc(&[]);
    assert!(cache.narinfos().is_empty());
    let out = cache.run(&["keep-paths", &cache.arg, &tool, "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the cache"));
}

// ---------------------------------------------------------------------------------------------
// Torture: builders, holders (some SIGKILLed), the real Nix substituting, collections.

/// A synthetic store: `count` single-file paths, each referring to a few earlier ones (their
/// full paths are in its contents), some to themselves.
pub(crate) struct Synth {
    pub(crate) root: TempTree,
    pub(crate) registration: PathBuf,
    pub(crate) paths: Vec<String>,
    pub(crate) refs: BTreeMap<String, Vec<String>>,
}

pub(crate) fn synth_store(tag: &str, count: usize, seed: u64) -> Synth {
    let root = TempTree::new();
    let store = root.path().join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let mut rng = Rng::new(seed);
    let mut paths: Vec<String> = Vec::new();
    let mut refs = BTreeMap::new();
    let mut registration = String::new();
    for i in 0..count {
        let name = format!("gc-{tag}-{i:03}");
        let digest = Hash::of(HashAlgo::Sha256, name.as_bytes());
        let path = format!(
            "/nix/store/{}-{name}",
            nixbase32::encode(&digest.digest()[..20])
        );
        let mut mine: Vec<String> = (0..rng.below(4).min(i as u64))
            .map(|_| paths[rng.below(i as u64) as usize].clone())
            .collect();
        if i % 5 == 0 {
            mine.push(path.clone());
        }
        mine.sort();
        mine.dedup();
        let mut contents = format!("this is {name}\n");
        for r in &mine {
            contents.push_str(&format!("{r}\n"));
        }
        contents.push_str(&String::from_utf8_lossy(&rng.bytes(512)).replace('\u{fffd}', "x"));
        let physical = root.path().join(path.trim_start_matches('/'));
        fs::write(&physical, contents).unwrap();
        let nar = dump_path(&physical, Vec::new(), CaseHack(false)).unwrap();
        registration.push_str(&format!(
            "{path}\n{}\n{}\n\n{}\n",
            to_hex(Hash::of(HashAlgo::Sha256, &nar).digest()),
            nar.len(),
            mine.len()
        ));
        for r in &mine {
            registration.push_str(&format!("{r}\n"));
        }
        refs.insert(
            base(&path).to_string(),
            mine.iter().map(|r| base(r).to_string()).collect(),
        );
        paths.push(path);
    }
    let reg = root.path().join("registration");
    fs::write(&reg, registration).unwrap();
    Synth {
        root,
        registration: reg,
        paths,
        refs,
    }
}

pub(crate) fn build_cmd(cache: &Cache, synth: &Synth, paths: &[&String]) -> Command {
    let mut cmd = cache.cmd();
    cmd.arg("build-cache")
        .args(["--to", &cache.arg])
        .arg("--store-root")
        .arg(synth.root.path())
        .arg("--registration")
        .arg(&synth.registration)
        .args(["--secret-key-file", &secret_key(), "--quiet", "-j", "1"])
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// `nix copy` of `path` from the cache at `url` into a fresh store.
fn nix_substitutes(url: &str, path: &str) -> Result<(), String> {
    let dest = TempTree::new();
    let out = nix_copy_from(url, dest.path(), &public_key(), &[path]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn reap(builders: &mut Vec<Child>, wait: bool) {
    builders.retain_mut(|b| {
        let status = if wait {
            Some(b.wait().unwrap())
        } else {
            b.try_wait().unwrap()
        };
        match status {
            None => true,
            Some(status) => {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut b.stderr.take().unwrap(), &mut err).unwrap();
                assert!(status.success(), "a builder failed ({status:?}): {err}");
                false
            }
        }
    });
}

fn torture(cache: &Cache, seconds: u64, seed: u64) {
    let nix = have("nix");
    let synth = synth_store(&format!("t{seed}"), 48, seed);
    let rooted = synth.paths[synth.paths.len() - 1].clone();
    cache.ok(&[
        "build-cache",
        "--to",
        &cache.arg,
        "--store-root",
        &synth.root.path().display().to_string(),
        "--registration",
        &synth.registration.display().to_string(),
        "--secret-key-file",
        &secret_key(),
        "--quiet",
        &rooted,
    ]);
    cache.add_root(&rooted);
    let mut rng = Rng::new(seed);
    let mut builders: Vec<Child> = Vec::new();
    let mut holders: Vec<Holder> = Vec::new();
    let (mut steps, mut held, mut killed, mut substituted) = (0, 0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        steps += 1;
        reap(&mut builders, false);
        while builders.len() < 2 {
            let picks: Vec<&String> = (0..1 + rng.below(3))
                .map(|_| rng.pick(&synth.paths))
                .collect();
            builders.push(build_cmd(cache, &synth, &picks).spawn().unwrap());
        }
        // A new holder on a path published now (which a collection may delete first: then
        // keep-paths must fail, never claim it).
        let published: Vec<String> = cache.narinfos().into_keys().collect();
        if !published.is_empty() {
            let pick = format!("/nix/store/{}", rng.pick(&published));
            if let Some(h) = Holder::start(cache, &[pick]) {
                held += 1;
                holders.push(h);
            }
        }
        while holders.len() > 3 {
            let h = holders.remove(rng.below(holders.len() as u64) as usize);
            if rng.chance(50) {
                killed += 1;
                h.kill();
            } else {
                h.release();
            }
        }
        // The real Nix substitutes a leased path while a collection runs.
        let substitute = (nix && !holders.is_empty())
            .then(|| holders[rng.below(holders.len() as u64) as usize].paths[0].clone());
        let nix_thread = substitute.map(|p| {
            let url = cache.nix_url.clone();
            std::thread::spawn(move || {
                let result = nix_substitutes(&url, &p);
                (p, result)
            })
        });
        cache.gc(&[]);
        // The builders finish before the cache is checked (a listing taken while they publish
        // may miss a reference published during it).
        reap(&mut builders, true);
        if let Some(t) = nix_thread {
            let (p, result) = t.join().unwrap();
            if let Err(e) = result {
                panic!("step {steps}: substituting the leased {p} failed: {e}");
            }
            substituted += 1;
        }
        cache.verify(&format!("step {steps}"));
        cache.assert_index_current(&format!("step {steps}"));
        for h in &holders {
            cache.assert_closure_complete(&h.paths, &format!("step {steps}, leased"));
        }
        cache.assert_closure_complete(
            std::slice::from_ref(&rooted),
            &format!("step {steps}, rooted"),
        );
    }
    for h in holders.drain(..) {
        h.kill();
    }
    reap(&mut builders, true);
    cache.gc(&[]);
    cache.verify("the end");
    cache.assert_index_current("the end");
    let left: BTreeSet<String> = cache.narinfos().into_keys().collect();
    assert_eq!(
        left,
        closure(&[rooted], &synth.refs),
        "after the last collection"
    );
    let named: BTreeSet<CacheKey> = cache.narinfos().into_values().map(|(_, n)| n).collect();
    assert_eq!(cache.keys(KeyDir::Nar), named, "NAR files left");
    eprintln!(
        "torture on {}: {steps} steps, {held} leases taken, {killed} holders SIGKILLed, {substituted} substitutions",
        cache.arg
    );
    assert!(steps >= 3 && held >= 2, "the torture test did too little");
}

#[test]
fn torture_builders_holders_nix_and_collections_on_a_directory() {
    torture(&Cache::dir(), 20, 1);
}

#[test]
fn torture_builders_holders_nix_and_collections_on_s3() {
    torture(&Cache::s3("gc-torture"), 20, 2);
}
