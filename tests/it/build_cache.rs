//! `nar-tool build-cache`, end to end: the built binary against the Nix 2.8 corpus (every
//! metadata source), the real Nix client substituting from what it builds (every compression, and
//! from a read-only store), and the engine's promises: closure, skip / --force, NAR
//! deduplication, deterministic output whatever the number of jobs, loud errors that leave the
//! cache valid, --paths-from, and a cache that is valid at every moment even when the build is
//! killed (SIGKILL) and then completed by running it again.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use nar_tool::compression::{self, Compression};
use nar_tool::hash::{to_hex, Hash, HashAlgo};
use nar_tool::host::fs::{dump_path, CaseHack};
use nar_tool::nixbase32;

// ---------------------------------------------------------------------------------------------
// Running the tool

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// `build-cache` arguments: `--to CACHE --store-root ROOT`, then what a test adds, in order.
#[derive(Clone)]
struct Cli(Vec<String>);

impl Cli {
    fn new(cache: impl AsRef<Path>, root: impl AsRef<Path>) -> Cli {
        Cli(Vec::new())
            .opt("--to", cache.as_ref())
            .opt("--store-root", root.as_ref())
    }

    /// Adds arguments written as one string, split at spaces (none of them holds one).
    fn flags(mut self, words: &str) -> Cli {
        self.0.extend(words.split_whitespace().map(str::to_string));
        self
    }

    /// Adds an option and its value (a path, a key: anything that could hold a space).
    fn opt(mut self, name: &str, value: impl AsRef<OsStr>) -> Cli {
        let value = value.as_ref().to_str().expect("test arguments are UTF-8");
        self.0.extend([name.to_string(), value.to_string()]);
        self
    }

    /// Adds arguments as they are.
    fn args(self, more: &[&str]) -> Cli {
        self.extended(more.iter().map(|a| a.to_string()))
    }

    /// Adds arguments already made (a metadata source, a list of paths).
    fn extended(mut self, more: impl IntoIterator<Item = String>) -> Cli {
        self.0.extend(more);
        self
    }

    /// Adds every store path of the corpus.
    fn corpus(self) -> Cli {
        self.extended(store_paths())
    }
}

impl std::ops::Deref for Cli {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

impl std::ops::DerefMut for Cli {
    fn deref_mut(&mut self) -> &mut Vec<String> {
        &mut self.0
    }
}

/// Runs `nar-tool build-cache ARGS` with `stdin`.
fn build_cache_with_stdin(args: &[String], stdin: &[u8]) -> Output {
    run_cmd(Command::new(bin()).arg("build-cache").args(args), stdin)
}

fn build_cache(args: &[String]) -> Output {
    build_cache_with_stdin(args, b"")
}

/// Runs `build-cache ARGS --json`, insists on success, returns the summary.
fn build_ok(args: &[String]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json".into());
    let out = build_cache(&a);
    assert!(
        out.status.success(),
        "build-cache {a:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json summary is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Insists the run failed with an exit code (not a signal, not a panic) and returns stderr.
fn expect_failure(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what}: build-cache succeeded but should have failed"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit status {:?}, stderr: {stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "{what}: the tool panicked: {stderr}"
    );
    assert!(
        stderr.contains("error"),
        "{what}: no error message: {stderr}"
    );
    stderr
}

fn summary_count(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no {key}: {summary}"))
}

fn summary_counts(summary: &serde_json::Value, keys: &[&str]) -> Vec<u64> {
    keys.iter().map(|k| summary_count(summary, k)).collect()
}

// ---------------------------------------------------------------------------------------------
// The corpus

fn base_of(path: &str) -> &str {
    path.strip_prefix("/nix/store/").expect("a /nix/store path")
}

fn hash_part_of(path_or_base: &str) -> &str {
    let base = path_or_base
        .strip_prefix("/nix/store/")
        .unwrap_or(path_or_base);
    &base[..32]
}

/// Parses a registration file (the `nix-store --dump-db` format): path → references.
fn parse_registration(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().peekable();
    while let Some(path) = lines.next() {
        if path.is_empty() {
            continue;
        }
        let _hash = lines.next().unwrap();
        let _size = lines.next().unwrap();
        let _deriver = lines.next().unwrap();
        let n: usize = lines.next().unwrap().parse().unwrap();
        let refs = (0..n).map(|_| lines.next().unwrap().to_string()).collect();
        out.insert(path.to_string(), refs);
    }
    out
}

fn corpus_references() -> BTreeMap<String, Vec<String>> {
    parse_registration(&fs::read_to_string(corpus().join("registration")).unwrap())
}

fn closure_of(roots: &[&str], refs: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    while let Some(p) = todo.pop() {
        if out.insert(p.clone()) {
            todo.extend(refs[&p].iter().cloned());
        }
    }
    out
}

const APP: &str = "/nix/store/swf7rrkcsawh9sa0zhm4bchjhphk6mjv-app-0.9-public";
const LIBDEMO: &str = "/nix/store/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public";
const SINGLE_FILE: &str = "/nix/store/mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public";

// ---------------------------------------------------------------------------------------------
// Reading and checking a cache

/// The lines of a narinfo as (key, value), in order.
fn narinfo_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("narinfo line {l:?} is not `Key: value`"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn read_narinfo(dir: &Path, hash_part: &str) -> Vec<(String, String)> {
    let p = dir.join(format!("{hash_part}.narinfo"));
    narinfo_fields(&fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn sha256_base32(data: &[u8]) -> String {
    nixbase32::encode(Hash::of(HashAlgo::Sha256, data).digest())
}

/// Hash parts of the narinfos in a cache.
fn narinfo_hash_parts(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".narinfo").map(str::to_string))
        .collect()
}

/// Temporary files left in the cache (ours start with a dot).
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for d in [dir.to_path_buf(), dir.join("nar")] {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                // `.nar-tool/` is nar-tool's own state (writers' owner locks), not a leftover.
                if n.starts_with('.') && n != ".nar-tool" {
                    v.push(s(&d.join(n)));
                }
            }
        }
    }
    v
}

/// Checks what must hold of a cache at every moment, whatever happened to the build: every
/// narinfo's NAR file exists, is named by its file hash, has the recorded FileSize and FileHash
/// and decompresses to a NAR of the recorded NarSize and NarHash; with `closed`, every narinfo's
/// references have narinfos (the publish order). Returns the narinfos by hash part.
fn check_cache(dir: &Path, closed: bool) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out = BTreeMap::new();
    let info = fs::read_to_string(dir.join("nix-cache-info")).expect("nix-cache-info exists");
    assert!(
        info.starts_with("StoreDir: /nix/store\n"),
        "nix-cache-info: {info:?}"
    );
    for hp in narinfo_hash_parts(dir) {
        let f = read_narinfo(dir, &hp);
        let ctx = format!("{}/{hp}.narinfo", dir.display());
        let store_path = field(&f, "StorePath").unwrap_or_else(|| panic!("{ctx}: no StorePath"));
        assert_eq!(
            hash_part_of(store_path),
            hp,
            "{ctx}: named after another path"
        );
        let method: Compression = field(&f, "Compression").unwrap_or("bzip2").parse().unwrap();
        let url = field(&f, "URL").unwrap_or_else(|| panic!("{ctx}: no URL"));
        let file_hash = field(&f, "FileHash").unwrap_or_else(|| panic!("{ctx}: no FileHash"));
        let file_hash = file_hash
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{ctx}: FileHash {file_hash}"));
        assert_eq!(
            url,
            format!("nar/{file_hash}.nar{}", method.extension()),
            "{ctx}: URL is not named by the file hash"
        );
        let bytes = fs::read(dir.join(url)).unwrap_or_else(|e| panic!("{ctx}: its NAR {url}: {e}"));
        assert_eq!(
            field(&f, "FileSize"),
            Some(bytes.len().to_string().as_str()),
            "{ctx}: FileSize"
        );
        assert_eq!(sha256_base32(&bytes), file_hash, "{ctx}: FileHash");
        let mut nar = Vec::new();
        compression::decoder(method, &bytes[..])
            .unwrap()
            .read_to_end(&mut nar)
            .unwrap_or_else(|e| panic!("{ctx}: {url} does not decompress: {e}"));
        assert_eq!(
            field(&f, "NarSize"),
            Some(nar.len().to_string().as_str()),
            "{ctx}: NarSize"
        );
        assert_eq!(
            field(&f, "NarHash"),
            Some(format!("sha256:{}", sha256_base32(&nar)).as_str()),
            "{ctx}: NarHash"
        );
        if closed {
            for r in field(&f, "References").unwrap_or("").split_whitespace() {
                assert!(
                    dir.join(format!("{}.narinfo", hash_part_of(r))).is_file(),
                    "{ctx}: published before its reference {r}"
                );
            }
        }
        out.insert(hp, f);
    }
    out
}

/// A whole directory tree: relative path → (mode, contents; `None` for directories).
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Option<Vec<u8>>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = s(p.strip_prefix(root).unwrap());
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel, (mode, None));
                walk(root, &p, out);
            } else {
                out.insert(rel, (mode, Some(fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_same_tree(a: &Path, b: &Path, what: &str) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let names =
        |t: &BTreeMap<String, (u32, Option<Vec<u8>>)>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&sa), names(&sb), "{what}: different files");
    for (k, v) in &sa {
        assert!(
            sb[k] == *v,
            "{what}: {k} differs (mode {:o} vs {:o})",
            v.0,
            sb[k].0
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic stores

/// One path of a synthetic store.
struct SynthPath {
    /// `/nix/store/<hash>-<name>`.
    path: String,
    deriver: Option<String>,
    /// Full paths of the references (possibly itself).
    references: Vec<String>,
}

/// A valid-looking store path (the hash part need not match anything: with a registration the
/// tool takes the store's word for it).
fn synth_path(tag: &str, name: &str) -> String {
    let h = Hash::of(
        HashAlgo::Sha256,
        format!("synthetic {tag} {name}").as_bytes(),
    );
    format!("/nix/store/{}-{name}", nixbase32::encode(&h.digest()[..20]))
}

/// Writes the `registration` of `paths` (whose contents are in `root`) with their NAR hashes.
fn registration_text(root: &Path, paths: &[SynthPath]) -> String {
    let mut text = String::new();
    for p in paths {
        let nar = dump_path(
            &root.join(p.path.trim_start_matches('/')),
            Vec::new(),
            CaseHack(false),
        )
        .unwrap();
        let refs: BTreeSet<&String> = p.references.iter().collect();
        text.push_str(&format!(
            "{}\n{}\n{}\n{}\n{}\n",
            p.path,
            to_hex(Hash::of(HashAlgo::Sha256, &nar).digest()),
            nar.len(),
            p.deriver.as_deref().unwrap_or(""),
            refs.len()
        ));
        for r in refs {
            text.push_str(r);
            text.push('\n');
        }
    }
    text
}

/// Bytes that compress well but not trivially: a seeded mix of words and numbers.
fn text_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "store", "path", "nix", "hash", "cache", "closure", "ref", "nar", "lib", "bin",
    ];
    let mut v = Vec::with_capacity(n + 64);
    while v.len() < n {
        let line = format!(
            "{} {} {}\n",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(100_000)
        );
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(n);
    v
}

/// A store of `count` paths with references to earlier ones (a DAG, a few self-references),
/// directories, single files, executables and symlinks, about `bytes_per_path` bytes each (a few
/// 20 times more), written under `root/nix/store`. References appear in the contents as full
/// paths, so scanning finds them too.
fn make_synthetic_store(
    root: &Path,
    tag: &str,
    seed: u64,
    count: usize,
    bytes_per_path: usize,
) -> Vec<SynthPath> {
    let mut rng = Rng::new(seed);
    let store = root.join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let mut paths: Vec<SynthPath> = Vec::new();
    for i in 0..count {
        let name = format!("synth-{i:03}");
        let path = synth_path(tag, &name);
        let mut references: Vec<String> = Vec::new();
        if i > 0 {
            for _ in 0..rng.below(5) {
                references.push(paths[rng.below(i as u64) as usize].path.clone());
            }
        }
        if i % 7 == 0 {
            references.push(path.clone());
        }
        references.sort();
        references.dedup();
        let mut refs_text = references
            .iter()
            .map(|r| format!("{r}/bin\n"))
            .collect::<String>();
        refs_text.push_str(&format!("this is {name}\n"));
        let physical = root.join(path.trim_start_matches('/'));
        let size = if i % 20 == 19 {
            bytes_per_path * 20
        } else {
            bytes_per_path / 2 + rng.below(bytes_per_path as u64) as usize
        };
        if i % 10 == 3 {
            // A store path that is a single file.
            let mut contents = refs_text.into_bytes();
            contents.extend(text_bytes(&mut rng, size));
            fs::write(&physical, contents).unwrap();
        } else {
            fs::create_dir_all(physical.join("bin")).unwrap();
            fs::create_dir_all(physical.join("share/data")).unwrap();
            fs::write(
                physical.join("bin/tool"),
                format!("#!/bin/sh\n# {name}\n{refs_text}"),
            )
            .unwrap();
            fs::set_permissions(physical.join("bin/tool"), fs::Permissions::from_mode(0o755))
                .unwrap();
            fs::write(physical.join("share/refs"), &refs_text).unwrap();
            fs::write(physical.join("share/data/random.bin"), rng.bytes(size / 3)).unwrap();
            fs::write(
                physical.join("share/data/text"),
                text_bytes(&mut rng, size - size / 3),
            )
            .unwrap();
            fs::write(physical.join("share/empty"), b"").unwrap();
            std::os::unix::fs::symlink("../share/refs", physical.join("bin/refs")).unwrap();
        }
        let deriver =
            (i % 3 != 0).then(|| format!("{}.drv", synth_path(tag, &format!("{name}-drv"))));
        paths.push(SynthPath {
            path,
            deriver,
            references,
        });
    }
    paths
}

// ---------------------------------------------------------------------------------------------
// The real Nix

fn nix_installed() -> bool {
    have("nix")
        && Command::new("nix")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn nix(args: &[&str]) -> Output {
    Command::new("nix")
        .env("NIX_REMOTE", "local")
        .args(["--extra-experimental-features", "nix-command"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("nix runs")
}

/// `nix copy` of the 9 corpus paths from the cache into a fresh store, then `nix store verify`.
fn nix_substitutes(cache: &Path, what: &str) {
    let trusted = public_key();
    let dest = TempTree::new();
    let paths = store_paths();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = nix_copy_from(
        &format!("file://{}", cache.display()),
        dest.path(),
        &trusted,
        &paths,
    );
    assert!(
        out.status.success(),
        "{what}: nix copy from our cache failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in store_paths() {
        let restored = dest.path().join(p.trim_start_matches('/'));
        assert!(
            fs::symlink_metadata(&restored).is_ok(),
            "{what}: nix copy did not produce {}",
            restored.display()
        );
        // What Nix restored dumps to the corpus NAR, byte for byte.
        let nar = dump_path(&restored, Vec::new(), CaseHack(false)).unwrap();
        assert!(
            nar == fs::read(corpus().join("nar").join(format!("{}.nar", base_of(&p)))).unwrap(),
            "{what}: {p} restored differently"
        );
    }
    let store = format!("file://{}", cache.display());
    let out = nix(&[
        "store",
        "verify",
        "--store",
        &store,
        "--option",
        "trusted-public-keys",
        &trusted,
        "--all",
    ]);
    assert!(
        out.status.success(),
        "{what}: nix store verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Golden: every metadata source gives Nix's narinfos

/// Compares our narinfos with Nix's cache `golden` (in `caches/`) field by field and in order,
/// except URL, FileHash and FileSize (compressor output) and, when `no_deriver`, Deriver (which
/// must then be absent). Signatures (ed25519 is deterministic) must be Nix's, byte for byte.
fn assert_narinfos_match_nix(ours: &Path, golden: &str, no_deriver: bool, what: &str) {
    let nix_dir = corpus().join("caches").join(golden);
    let expected = narinfo_hash_parts(&nix_dir);
    assert_eq!(
        narinfo_hash_parts(ours),
        expected,
        "{what}: not the same narinfos as Nix's {golden} cache"
    );
    for hp in &expected {
        let skip = |k: &str| {
            matches!(k, "URL" | "FileHash" | "FileSize") || (no_deriver && k == "Deriver")
        };
        let theirs: Vec<_> = read_narinfo(&nix_dir, hp)
            .into_iter()
            .filter(|(k, _)| !skip(k))
            .collect();
        let mine = read_narinfo(ours, hp);
        if no_deriver {
            assert_eq!(
                field(&mine, "Deriver"),
                None,
                "{what}: {hp}: a scan cannot know the deriver"
            );
        }
        let mine: Vec<_> = mine.into_iter().filter(|(k, _)| !skip(k)).collect();
        assert_eq!(mine, theirs, "{what}: {hp}.narinfo differs from Nix's");
    }
}

fn assert_signatures_verify(cache: &Path, what: &str) {
    let mut a = vec![
        "narinfo".to_string(),
        "check".into(),
        "--trusted-key".into(),
        public_key(),
    ];
    a.extend(
        narinfo_hash_parts(cache)
            .iter()
            .map(|hp| s(&cache.join(format!("{hp}.narinfo")))),
    );
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: narinfo check: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("ok ") && l.contains("signed by corpus-public-1"))
            .count(),
        9,
        "{what}: {stdout}"
    );
}

#[test]
fn golden_every_metadata_source_gives_nix_narinfos() {
    let root = extract_root_tar();
    let r = s(root.path());
    let db = s(&root.path().join("nix/var/nix/db/db.sqlite"));
    let registration = s(&corpus().join("registration"));
    let path_info = s(&corpus().join("path-info.json"));
    let sources: [(&str, Vec<String>); 5] = [
        ("default DB via --store-root", vec![]),
        ("--db", args(&["--db", &db])),
        ("--registration", args(&["--registration", &registration])),
        ("--path-info", args(&["--path-info", &path_info])),
        ("--scan-references", args(&["--scan-references"])),
    ];
    let key = secret_key();
    for (what, source) in sources {
        let out = TempTree::new();
        let cache = out.path().join("cache");
        let a = Cli::new(&cache, &r)
            .flags("--compression xz")
            .opt("--sign", &key)
            .flags("--nar-listing --jobs 2")
            .extended(source)
            .corpus();
        let summary = build_ok(&a);
        assert_eq!(
            summary_counts(&summary, &["paths", "written"]),
            [9, 9],
            "{what}: {summary}"
        );

        let scan = what == "--scan-references";
        assert_narinfos_match_nix(&cache, "xz", scan, what);
        assert_signatures_verify(&cache, what);
        let narinfos = check_cache(&cache, true);

        // The NAR files are exactly Nix's NARs, compressed, one per path, named by file hash.
        let mut nar_files = BTreeSet::new();
        for (hp, f) in &narinfos {
            let url = field(f, "URL").unwrap();
            nar_files.insert(url.strip_prefix("nar/").unwrap().to_string());
            let base = base_of(field(f, "StorePath").unwrap());
            let mut nar = Vec::new();
            compression::decoder(Compression::Xz, &fs::read(cache.join(url)).unwrap()[..])
                .unwrap()
                .read_to_end(&mut nar)
                .unwrap();
            assert!(
                nar == fs::read(corpus().join("nar").join(format!("{base}.nar"))).unwrap(),
                "{what}: {hp}: NAR is not Nix's"
            );
            assert_eq!(field(f, "Compression"), Some("xz"));
        }
        assert_eq!(
            dir_names(&cache.join("nar")),
            nar_files.into_iter().collect::<Vec<_>>(),
            "{what}: nar/ holds exactly the narinfos' files"
        );

        // .ls listings equal Nix's as JSON values.
        for hp in narinfos.keys() {
            let json = |p: PathBuf| -> serde_json::Value {
                serde_json::from_str(
                    &fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
                )
                .unwrap()
            };
            assert_eq!(
                json(cache.join(format!("{hp}.ls"))),
                json(corpus().join("caches/xz").join(format!("{hp}.ls"))),
                "{what}: {hp}.ls"
            );
        }

        // nix-cache-info, log/, realisations/ and the lookup index, and nothing else.
        assert_eq!(
            fs::read_to_string(cache.join("nix-cache-info")).unwrap(),
            "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n",
            "{what}"
        );
        assert!(
            cache.join("log").is_dir() && cache.join("realisations").is_dir(),
            "{what}: log/ and realisations/"
        );
        let mut expected: Vec<String> = [
            "log",
            "nar",
            "nar-tool-index",
            "nix-cache-info",
            "realisations",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        for hp in narinfos.keys() {
            expected.push(format!("{hp}.ls"));
            expected.push(format!("{hp}.narinfo"));
        }
        expected.sort();
        assert_eq!(
            dir_names(&cache),
            expected,
            "{what}: the cache holds exactly these files"
        );
        for name in dir_names(&cache)
            .iter()
            .filter(|n| n.ends_with(".narinfo") || n.ends_with(".ls"))
        {
            assert_eq!(
                fs::metadata(cache.join(name)).unwrap().mode() & 0o777,
                0o644,
                "{what}: {name} is world-readable"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The real Nix substitutes from it

#[test]
fn real_nix_copies_and_verifies_every_compression() {
    let root = extract_root_tar();
    let out = TempTree::new();
    let key = secret_key();
    for method in ["xz", "zstd", "bzip2", "none"] {
        let cache = out.path().join(method);
        let a = Cli::new(&cache, root.path())
            .opt("--compression", method)
            .opt("--sign", &key)
            .flags("--jobs 2")
            .corpus();
        build_ok(&a);
        check_cache(&cache, true);
        assert_narinfos_match_nix(&cache, method, false, method);
        if !nix_installed() {
            println!("SKIP: nix is not installed; not substituting from the {method} cache with the real client");
            continue;
        }
        nix_substitutes(&cache, method);
    }
    if nix_installed() {
        // The check is real: with another trusted key, Nix rejects the (input-addressed) paths.
        let other = out.path().join("other");
        run_ok(
            &[
                "key",
                "generate",
                "other-1",
                "--secret",
                &s(&other.with_extension("sec")),
                "--public",
                &s(&other.with_extension("pub")),
            ],
            b"",
        );
        let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
        let store = format!("file://{}", out.path().join("zstd").display());
        let res = nix(&[
            "store",
            "verify",
            "--store",
            &store,
            "--option",
            "trusted-public-keys",
            other_pub.trim(),
            "--all",
        ]);
        assert!(
            !res.status.success(),
            "nix store verify trusted a cache signed by another key"
        );
        assert!(String::from_utf8_lossy(&res.stderr).contains("untrusted"));
    }
}

/// Runs `build-cache ARGS` with `root` mounted read-only (a private mount namespace, so nothing
/// leaks) when the system allows it; returns the output and whether the mount was read-only.
fn build_with_read_only_root(root: &Path, args: &[String]) -> (Output, bool) {
    let script = r#"root="$1"; shift; mount --bind -o ro "$root" "$root" && exec "$@""#;
    // What follows runs with `root` bind-mounted read-only.
    let read_only = || {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(root);
        cmd
    };
    let probe = read_only()
        .args(["sh", "-c", r#"! touch "$0/.probe" 2>/dev/null"#, &s(root)])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!("NOTE: cannot bind-mount read-only here (no unshare/mount privileges); the store is only chmod a-w");
        return (build_cache(args), false);
    }
    let mut cmd = read_only();
    cmd.arg(bin()).arg("build-cache").args(args);
    (run_cmd(&mut cmd, b""), true)
}

#[test]
fn read_only_store_is_read_lock_free_and_untouched() {
    let root = extract_root_tar();
    let db_dir = root.path().join("nix/var/nix/db");
    let db = db_dir.join("db.sqlite");
    let st = Command::new("chmod")
        .arg("-R")
        .arg("a-w")
        .arg(root.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fs::metadata(&db_dir).unwrap().mode() & 0o222,
        0,
        "the db dir is read-only"
    );
    let before_bytes = fs::read(&db).unwrap();
    let before_mtime = fs::metadata(&db).unwrap().modified().unwrap();
    let before_names = dir_names(&db_dir);

    let out = TempTree::new();
    let cache = out.path().join("cache");
    let a = Cli::new(&cache, root.path())
        .opt("--sign", secret_key())
        .flags("--jobs 2 --json")
        .corpus();
    let (res, mounted) = build_with_read_only_root(root.path(), &a);
    assert!(
        res.status.success(),
        "build from a read-only store (ro mount: {mounted}) failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    println!("read-only store: bind-mounted read-only: {mounted}");

    assert!(
        fs::read(&db).unwrap() == before_bytes,
        "the DB's bytes changed"
    );
    assert_eq!(
        fs::metadata(&db).unwrap().modified().unwrap(),
        before_mtime,
        "the DB's mtime changed"
    );
    assert_eq!(
        dir_names(&db_dir),
        before_names,
        "files appeared next to the DB (-wal, -shm, -journal?)"
    );

    check_cache(&cache, true);
    assert_narinfos_match_nix(&cache, "zstd", false, "read-only store");
    if nix_installed() {
        nix_substitutes(&cache, "read-only store");
    } else {
        println!("SKIP: nix is not installed; not substituting from the read-only-store cache");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Behaviour

#[test]
fn closure_by_default_and_no_closure() {
    let root = extract_root_tar();
    let r = s(root.path());
    let out = TempTree::new();
    let refs = corpus_references();

    // Default: the named path and its whole closure.
    let cache = out.path().join("closure");
    let summary = build_ok(&Cli::new(&cache, &r).flags("--jobs 2").args(&[APP]));
    let want: BTreeSet<String> = closure_of(&[APP], &refs)
        .iter()
        .map(|p| hash_part_of(p).to_string())
        .collect();
    assert!(
        want.len() > 2 && want.len() < 9,
        "app's closure is a proper part of the corpus"
    );
    assert_eq!(narinfo_hash_parts(&cache), want, "the closure of {APP}");
    assert_eq!(summary_count(&summary, "written"), want.len() as u64);
    check_cache(&cache, true);

    // --no-closure: just the named path (its references deliberately absent).
    let cache = out.path().join("no-closure");
    let summary = build_ok(&Cli::new(&cache, &r).flags("--no-closure").args(&[APP]));
    assert_eq!(
        narinfo_hash_parts(&cache),
        BTreeSet::from([hash_part_of(APP).to_string()])
    );
    assert_eq!(summary_count(&summary, "paths"), 1);
    let f = &check_cache(&cache, false)[hash_part_of(APP)];
    assert_eq!(
        field(f, "References").unwrap().split(' ').count(),
        refs[APP].len(),
        "references are still recorded"
    );
    assert_eq!(dir_names(&cache.join("nar")).len(), 1);

    // --no-closure of a path and its closure by hand gives the closure's cache.
    let cache2 = out.path().join("by-hand");
    let a = Cli::new(&cache2, &r)
        .flags("--no-closure")
        .extended(closure_of(&[APP], &refs));
    build_ok(&a);
    check_cache(&cache2, true);
    assert_same_tree(
        &cache2,
        &out.path().join("closure"),
        "--no-closure with the closure listed",
    );
}

#[test]
fn rerun_skips_existing_narinfos_and_force_rewrites() {
    let root = extract_root_tar();
    let out = TempTree::new();
    let cache = out.path().join("cache");
    let a = Cli::new(&cache, root.path())
        .flags("--jobs 2 --nar-listing")
        .opt("--sign", secret_key())
        .corpus();
    let first = build_ok(&a);
    assert_eq!(
        summary_counts(&first, &["written", "skipped"]),
        [9, 0],
        "{first}"
    );
    check_cache(&cache, true);
    let clean = snapshot(&cache);

    let again = build_ok(&a);
    assert_eq!(
        summary_counts(&again, &["paths", "written", "skipped"]),
        [9, 0, 9],
        "{again}"
    );
    assert!(snapshot(&cache) == clean, "a rerun changed the cache");

    // An existing narinfo is left alone (even if someone edited it)…
    let edited = cache.join(format!("{}.narinfo", hash_part_of(APP)));
    let mut text = fs::read_to_string(&edited).unwrap();
    text.push_str("X-Edited: 1\n");
    fs::write(&edited, &text).unwrap();
    let again = build_ok(&a);
    assert_eq!(summary_count(&again, "skipped"), 9);
    assert_eq!(
        fs::read_to_string(&edited).unwrap(),
        text,
        "a narinfo was rewritten without --force"
    );

    // …and --force rewrites every path, giving back the clean cache.
    let forced = a.clone().flags("--force");
    let summary = build_ok(&forced);
    assert_eq!(
        summary_counts(&summary, &["written", "skipped"]),
        [9, 0],
        "{summary}"
    );
    check_cache(&cache, true);
    assert!(
        snapshot(&cache) == clean,
        "--force did not give back the clean cache"
    );

    // A narinfo that no longer parses is an error naming it (and --force repairs it).
    fs::write(&edited, "StorePath: garbage\n").unwrap();
    let res = build_cache(&a);
    let err = expect_failure(&res, "corrupt existing narinfo");
    assert!(
        err.contains(&s(&edited)) && err.contains("--force"),
        "{err}"
    );
    build_ok(&forced);
    assert!(
        snapshot(&cache) == clean,
        "--force did not repair the cache"
    );
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
}

#[test]
fn identical_nars_are_stored_once() {
    let root = TempTree::new();
    let store = root.path().join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let twin_a = synth_path("twins", "twin-a");
    let twin_b = synth_path("twins", "twin-b");
    let top = synth_path("twins", "top");
    for twin in [&twin_a, &twin_b] {
        let p = root.path().join(twin.trim_start_matches('/'));
        fs::create_dir_all(p.join("share")).unwrap();
        fs::write(p.join("share/same"), "the same contents\n".repeat(100)).unwrap();
    }
    fs::write(
        root.path().join(top.trim_start_matches('/')),
        format!("{twin_a}\n{twin_b}\n"),
    )
    .unwrap();
    let paths = [
        SynthPath {
            path: twin_a.clone(),
            deriver: None,
            references: vec![],
        },
        SynthPath {
            path: twin_b.clone(),
            deriver: None,
            references: vec![],
        },
        SynthPath {
            path: top.clone(),
            deriver: None,
            references: vec![twin_a.clone(), twin_b.clone()],
        },
    ];
    let registration = root.path().join("registration");
    fs::write(&registration, registration_text(root.path(), &paths)).unwrap();

    for jobs in ["1", "4"] {
        for method in ["zstd", "xz"] {
            let out = TempTree::new();
            let cache = out.path().join("cache");
            let summary = build_ok(
                &Cli::new(&cache, root.path())
                    .opt("--registration", &registration)
                    .opt("--compression", method)
                    .opt("--jobs", jobs)
                    .args(&[&top]),
            );
            let what = format!("{method}, --jobs {jobs}");
            let infos = check_cache(&cache, true);
            assert_eq!(infos.len(), 3, "{what}");
            let url = |p: &str| field(&infos[hash_part_of(p)], "URL").unwrap().to_string();
            assert_eq!(
                url(&twin_a),
                url(&twin_b),
                "{what}: identical NARs share a file"
            );
            assert_eq!(
                dir_names(&cache.join("nar")).len(),
                2,
                "{what}: nar/ holds the twins' NAR once, and top's"
            );
            if jobs == "1" {
                assert_eq!(
                    summary_count(&summary, "deduplicated"),
                    1,
                    "{what}: {summary}"
                );
            }
        }
    }
}

/// The corpus store plus a synthetic part (small paths and one NAR over the 32 MiB at which the
/// tool switches to a multi-threaded compressor), described by one registration file.
fn mixed_store() -> (TempTree, PathBuf, Vec<String>) {
    let root = extract_root_tar();
    let st = Command::new("chmod")
        .arg("u+w")
        .arg(root.path().join("nix/store"))
        .status()
        .unwrap();
    assert!(st.success());
    let mut synth = make_synthetic_store(root.path(), "mixed", 7, 12, 6000);
    // A big path: compressible (a repeated random block, so xz is quick) with some noise.
    let big = synth_path("mixed", "big");
    let physical = root.path().join(big.trim_start_matches('/'));
    fs::create_dir_all(&physical).unwrap();
    let mut rng = Rng::new(99);
    let block = rng.bytes(4096);
    let mut data = Vec::with_capacity(34 << 20);
    while data.len() < (33 << 20) + 12345 {
        data.extend_from_slice(&block);
        if rng.chance(3) {
            data.extend(rng.bytes(100));
        }
    }
    fs::write(physical.join("blob"), &data).unwrap();
    fs::write(physical.join("refs"), format!("{}\n", synth[3].path)).unwrap();
    synth.push(SynthPath {
        path: big.clone(),
        deriver: None,
        references: vec![synth[3].path.clone()],
    });
    let mut text = fs::read_to_string(corpus().join("registration")).unwrap();
    text.push_str(&registration_text(root.path(), &synth));
    let registration = root.path().join("registration");
    fs::write(&registration, text).unwrap();
    let mut paths = store_paths();
    paths.extend(synth.iter().map(|p| p.path.clone()));
    (root, registration, paths)
}

#[test]
fn output_is_byte_identical_across_runs_and_jobs() {
    let (root, registration, paths) = mixed_store();
    let out = TempTree::new();
    for method in ["zstd", "xz"] {
        let build = |name: &str, jobs: &str| -> PathBuf {
            let cache = out.path().join(format!("{method}-{name}"));
            let metadata = match name {
                "scan" => vec!["--scan-references".to_string()],
                _ => vec!["--registration".to_string(), s(&registration)],
            };
            let a = Cli::new(&cache, root.path())
                .opt("--compression", method)
                .opt("--jobs", jobs)
                .opt("--sign", secret_key())
                .flags("--nar-listing")
                .extended(metadata)
                .extended(paths.iter().cloned());
            let summary = build_ok(&a);
            assert_eq!(
                summary_count(&summary, "written"),
                paths.len() as u64,
                "{summary}"
            );
            check_cache(&cache, true);
            cache
        };
        let one = build("jobs1", "1");
        let four = build("jobs4", "4");
        let four_again = build("jobs4-again", "4");
        assert_same_tree(&one, &four, &format!("{method}: --jobs 1 vs --jobs 4"));
        assert_same_tree(
            &four,
            &four_again,
            &format!("{method}: two builds with --jobs 4"),
        );
        // How a NAR is compressed depends on the NAR alone: scanning (sizes from the tree) and
        // the registration (sizes given) store the same files.
        let scan = build("scan", "2");
        assert_same_tree(
            &one.join("nar"),
            &scan.join("nar"),
            &format!("{method}: NAR files with --scan-references vs --registration"),
        );
        let big = check_cache(&one, true)
            .into_values()
            .map(|f| field(&f, "NarSize").unwrap().parse::<u64>().unwrap())
            .max()
            .unwrap();
        assert!(
            big > 32 << 20,
            "a NAR above the multi-threaded compressor's threshold was built"
        );
        for dir in [one, four, four_again, scan] {
            fs::remove_dir_all(dir).unwrap();
        }
    }
}

#[test]
fn errors_name_what_and_where_and_leave_the_cache_valid() {
    let root = extract_root_tar();
    let r = s(root.path());
    let out = TempTree::new();
    let cache = out.path().join("cache");
    // A valid cache to start from: every failure below must leave it valid.
    build_ok(&Cli::new(&cache, &r).args(&[SINGLE_FILE]));
    let start = snapshot(&cache);
    let check = |what: &str| {
        let infos = check_cache(&cache, true);
        assert!(
            infos.contains_key(hash_part_of(SINGLE_FILE)),
            "{what}: the existing narinfo was lost"
        );
    };

    // A store path no metadata knows.
    let missing = "/nix/store/00000000000000000000000000000000-missing";
    for (source, extra) in [
        ("DB", vec![]),
        (
            "registration",
            args(&["--registration", &s(&corpus().join("registration"))]),
        ),
    ] {
        let a = Cli::new(&cache, &r).args(&[APP, missing]).extended(extra);
        let err = expect_failure(&build_cache(&a), "missing path");
        assert!(
            err.contains(missing) && err.contains("not a valid path"),
            "{source}: {err}"
        );
        assert!(
            err.contains(&s(&cache)),
            "{source}: the message names the cache: {err}"
        );
        check(&format!("missing path ({source})"));
        assert!(!cache
            .join(format!("{}.narinfo", hash_part_of(missing)))
            .exists());
    }
    // With scanning, it is the file system that does not have it: the message says where it looked.
    let err = expect_failure(
        &build_cache(
            &Cli::new(&cache, &r)
                .flags("--scan-references")
                .args(&[missing]),
        ),
        "missing path, scan",
    );
    assert!(
        err.contains(missing)
            && err.contains(&format!(
                "{r}/nix/store/00000000000000000000000000000000-missing"
            )),
        "{err}"
    );
    check("missing path (scan)");

    // Valid in the DB but gone from the disk.
    let gone = extract_root_tar();
    fs::remove_file(gone.path().join(SINGLE_FILE.trim_start_matches('/'))).unwrap();
    let gone_cache = out.path().join("gone");
    let a = Cli::new(&gone_cache, gone.path()).corpus();
    let err = expect_failure(&build_cache(&a), "path deleted from the store");
    assert!(
        err.contains(SINGLE_FILE)
            && err.contains(&s(&gone.path().join(SINGLE_FILE.trim_start_matches('/')))),
        "{err}"
    );
    check_cache(&gone_cache, true);
    assert!(!gone_cache
        .join(format!("{}.narinfo", hash_part_of(SINGLE_FILE)))
        .exists());

    // Paths outside the store directory.
    for outside in [
        "/tmp/not-in-store",
        "/nix/storex/00000000000000000000000000000000-x",
        "/nix/store",
        "relative/path",
    ] {
        let err = expect_failure(
            &build_cache(&Cli::new(&cache, &r).args(&[outside])),
            "outside the store",
        );
        assert!(
            err.contains(outside) && err.contains("/nix/store"),
            "{outside}: {err}"
        );
        check(outside);
    }

    // Key files in the wrong format (a public key, garbage, a missing file).
    let garbage = out.path().join("garbage.key");
    fs::write(&garbage, "not a key\n").unwrap();
    let public = s(&corpus().join("keys/public"));
    let nokey = s(&out.path().join("no-such.key"));
    for key in [public.as_str(), &s(&garbage), &nokey] {
        let err = expect_failure(
            &build_cache(&Cli::new(&cache, &r).opt("--sign", key).args(&[APP])),
            "bad key",
        );
        assert!(
            err.contains(key),
            "the message names the key file {key}: {err}"
        );
        check(key);
        assert!(
            !cache
                .join(format!("{}.narinfo", hash_part_of(APP)))
                .exists(),
            "{key}: published unsigned"
        );
    }
    assert!(snapshot(&cache) == start, "failures changed the cache");

    // A missing metadata file.
    let nodb = s(&out.path().join("no.sqlite"));
    let err = expect_failure(
        &build_cache(&Cli::new(&cache, &r).opt("--db", &nodb).args(&[APP])),
        "missing DB",
    );
    assert!(err.contains(&nodb), "{err}");
    let err = expect_failure(
        &build_cache(
            &Cli::new(&cache, &r)
                .opt("--registration", &nodb)
                .args(&[APP]),
        ),
        "missing registration",
    );
    assert!(err.contains(&nodb), "{err}");

    // A cache for another store directory.
    let other = out.path().join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("nix-cache-info"), "StoreDir: /gnu/store\n").unwrap();
    let err = expect_failure(
        &build_cache(&Cli::new(&other, &r).args(&[APP])),
        "other store dir",
    );
    assert!(
        err.contains("/gnu/store") && err.contains(&s(&other)),
        "{err}"
    );
    assert!(narinfo_hash_parts(&other).is_empty());

    // A corrupt store: a file of libdemo changed after registration (same size).
    let corrupt = extract_root_tar();
    let header = corrupt
        .path()
        .join(LIBDEMO.trim_start_matches('/'))
        .join("include/demo.h");
    let mut text = fs::read(&header).unwrap();
    text[0] ^= 0x20;
    fs::set_permissions(&header, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&header, &text).unwrap();
    for (source, extra) in [
        ("DB", vec![]),
        (
            "registration",
            args(&["--registration", &s(&corpus().join("registration"))]),
        ),
        (
            "path-info",
            args(&["--path-info", &s(&corpus().join("path-info.json"))]),
        ),
    ] {
        let c = out.path().join(format!("corrupt-{source}"));
        let a = Cli::new(&c, corrupt.path())
            .flags("--jobs 2")
            .extended(extra)
            .corpus();
        let err = expect_failure(&build_cache(&a), "corrupt store");
        assert!(
            err.contains(LIBDEMO) && err.contains("NAR hash mismatch"),
            "{source}: {err}"
        );
        check_cache(&c, true);
        assert!(
            !c.join(format!("{}.narinfo", hash_part_of(LIBDEMO)))
                .exists(),
            "{source}: the corrupt path was published"
        );
        assert!(
            !c.join(format!("{}.narinfo", hash_part_of(APP))).exists(),
            "{source}: a path referring to the corrupt one was published"
        );
        // Nor were the corrupt contents stored: every NAR file is one of the corpus NARs.
        let good: BTreeSet<String> = corpus_nars()
            .iter()
            .map(|(_, nar)| sha256_base32(nar))
            .collect();
        for name in dir_names(&c.join("nar")) {
            let mut nar = Vec::new();
            compression::decoder(
                Compression::Zstd,
                &fs::read(c.join("nar").join(&name)).unwrap()[..],
            )
            .unwrap()
            .read_to_end(&mut nar)
            .unwrap();
            assert!(
                good.contains(&sha256_base32(&nar)),
                "{source}: nar/{name} holds the corrupt contents"
            );
        }
        assert!(leftovers(&c).is_empty(), "{source}: {:?}", leftovers(&c));
    }

    // A file that cannot be put in a NAR (root reads everything, so a FIFO, not chmod 000).
    let fifo_root = extract_root_tar();
    let include = fifo_root
        .path()
        .join(LIBDEMO.trim_start_matches('/'))
        .join("include");
    fs::set_permissions(&include, fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = include.join("pipe");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    for (source, extra) in [("DB", vec![]), ("scan", args(&["--scan-references"]))] {
        let c = out.path().join(format!("fifo-{source}"));
        let a = Cli::new(&c, fifo_root.path())
            .flags("--jobs 2")
            .extended(extra)
            .corpus();
        let err = expect_failure(&build_cache(&a), "FIFO in the store");
        assert!(
            err.contains(LIBDEMO) && err.contains(&s(&fifo)),
            "{source}: the message names the path and the file: {err}"
        );
        check_cache(&c, true);
        assert!(
            !c.join(format!("{}.narinfo", hash_part_of(LIBDEMO)))
                .exists(),
            "{source}"
        );
    }
}

#[test]
fn paths_from_file_and_stdin() {
    let root = extract_root_tar();
    let r = s(root.path());
    let out = TempTree::new();
    let all = store_paths();
    let (first, rest) = all.split_at(4);
    let tool = "/nix/store/l3x0p6waaizfa1gbn5zzzjdfdkry4czk-tool-2.3-public";
    assert_eq!(rest[1], tool);
    // Blank lines, surrounding spaces, a base name, a path below a store path and a physical path.
    let list = format!(
        "\n  {}  \n{}\n\n{tool}/bin/tool\n{}\n",
        rest[0],
        base_of(&rest[2]),
        s(&root.path().join(APP.trim_start_matches('/')))
    );
    let roots = [rest[0].as_str(), rest[2].as_str(), tool, APP];
    let expected: BTreeSet<String> = roots
        .iter()
        .chain([&first[0].as_str()])
        .map(|p| hash_part_of(p).to_string())
        .collect();
    assert_eq!(expected.len(), 5);

    let file = out.path().join("paths");
    fs::write(&file, &list).unwrap();
    let from_file = out.path().join("from-file");
    build_ok(
        &Cli::new(&from_file, &r)
            .flags("--no-closure")
            .opt("--paths-from", &file)
            .args(&[&first[0]]),
    );
    assert_eq!(
        narinfo_hash_parts(&from_file),
        expected,
        "--paths-from FILE plus an argument"
    );
    check_cache(&from_file, false);

    let from_stdin = out.path().join("from-stdin");
    let mut a = Cli::new(&from_stdin, &r)
        .flags("--no-closure --paths-from -")
        .args(&[&first[0]])
        .flags("--json");
    a.insert(0, "--quiet".into());
    let res = build_cache_with_stdin(&a, list.as_bytes());
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_same_tree(&from_file, &from_stdin, "--paths-from - vs FILE");

    // With the closure, everything the list reaches.
    let closed = out.path().join("closed");
    let summary = build_ok(&Cli::new(&closed, &r).opt("--paths-from", &file));
    let refs = corpus_references();
    let want: BTreeSet<String> = closure_of(&roots, &refs)
        .iter()
        .map(|p| hash_part_of(p).to_string())
        .collect();
    assert_eq!(narinfo_hash_parts(&closed), want);
    assert_eq!(summary_count(&summary, "paths"), want.len() as u64);
    check_cache(&closed, true);

    // Errors in the list name the bad line.
    fs::write(&file, format!("{}\n/etc/passwd\n", rest[0])).unwrap();
    let err = expect_failure(
        &build_cache(&Cli::new(&closed, &r).opt("--paths-from", &file)),
        "bad list",
    );
    assert!(err.contains("/etc/passwd"), "{err}");
    let nolist = s(&out.path().join("no-list"));
    let err = expect_failure(
        &build_cache(&Cli::new(&closed, &r).opt("--paths-from", &nolist)),
        "missing list",
    );
    assert!(err.contains(&nolist), "{err}");
    let err = expect_failure(
        &build_cache_with_stdin(&Cli::new(&closed, &r).flags("--paths-from -"), b"\n\n"),
        "empty list",
    );
    assert!(err.contains("no store paths"), "{err}");
    check_cache(&closed, true);
}

#[test]
fn priority_goes_into_nix_cache_info() {
    let root = extract_root_tar();
    let out = TempTree::new();
    let cache = out.path().join("cache");
    build_ok(
        &Cli::new(&cache, root.path())
            .flags("--priority 40")
            .args(&[SINGLE_FILE]),
    );
    assert_eq!(
        fs::read_to_string(cache.join("nix-cache-info")).unwrap(),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"
    );
    // An existing cache keeps its nix-cache-info.
    build_ok(
        &Cli::new(&cache, root.path())
            .flags("--priority 10")
            .args(&[APP]),
    );
    assert!(fs::read_to_string(cache.join("nix-cache-info"))
        .unwrap()
        .contains("Priority: 40"));
    check_cache(&cache, true);
}

// ---------------------------------------------------------------------------------------------
// 4. Killed at random moments, completed by a rerun

#[test]
fn killed_builds_leave_a_valid_cache_and_a_rerun_completes_it() {
    let root = TempTree::new();
    let synth = make_synthetic_store(root.path(), "kill", 2024, 200, 12_000);
    let registration = root.path().join("registration");
    fs::write(&registration, registration_text(root.path(), &synth)).unwrap();
    // Every path, newest (most referring) first, as a list file.
    let list = root.path().join("paths");
    let text: String = synth
        .iter()
        .rev()
        .map(|p| format!("{}\n", p.path))
        .collect();
    fs::write(&list, text).unwrap();
    let out = TempTree::new();
    let key = secret_key();
    let argv = |cache: &Path| {
        Cli::new(cache, root.path())
            .opt("--registration", &registration)
            .flags("--compression xz --jobs 2")
            .opt("--sign", &key)
            .flags("--nar-listing --quiet")
            .opt("--paths-from", &list)
    };

    let clean = out.path().join("clean");
    let started = Instant::now();
    let summary = build_ok(&argv(&clean));
    let took = started.elapsed();
    let all = check_cache(&clean, true);
    assert_eq!(all.len(), synth.len());
    assert_eq!(summary_count(&summary, "written"), synth.len() as u64);
    println!("clean build: {} paths in {took:?}", synth.len());

    let spawn_and_kill = |cache: &Path, after: Duration| -> bool {
        let mut child = Command::new(bin())
            .arg("build-cache")
            .args(argv(cache).iter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        !finished
    };

    let mut rng = Rng::new(0x5eed);
    let mut interrupted = 0;
    // Independent cuts: a fresh cache killed once, then completed.
    for round in 0..4 {
        let cache = out.path().join(format!("cut-{round}"));
        // Stratified: one cut in each quarter of the clean build's duration.
        let u = rng.below(1000) as f64 / 1000.0;
        let after = took.mul_f64((round as f64 + u) / 4.0 * 0.95);
        let killed = spawn_and_kill(&cache, after);
        if cache.join("nix-cache-info").exists() {
            let partial = check_cache(&cache, true);
            if killed && partial.len() < synth.len() {
                interrupted += 1;
            }
            println!(
                "cut {round}: killed after {after:?}: {} of {} narinfos, {} temporaries",
                partial.len(),
                synth.len(),
                leftovers(&cache).len()
            );
        }
        let summary = build_ok(&argv(&cache));
        assert_eq!(summary_count(&summary, "paths"), synth.len() as u64);
        assert!(
            leftovers(&cache).is_empty(),
            "temporaries left after the rerun: {:?}",
            leftovers(&cache)
        );
        assert_same_tree(&cache, &clean, &format!("cut {round}: completed vs clean"));
        fs::remove_dir_all(&cache).unwrap();
    }
    // Repeated cuts of one cache, each run resuming the last, then completed.
    let cache = out.path().join("repeated");
    for cut in 0..4 {
        let after = took.mul_f64(0.05 + 0.4 * (rng.below(1000) as f64 / 1000.0));
        spawn_and_kill(&cache, after);
        if cache.join("nix-cache-info").exists() {
            let partial = check_cache(&cache, true);
            println!(
                "repeated cut {cut}: after {after:?}: {} narinfos",
                partial.len()
            );
        }
    }
    build_ok(&argv(&cache));
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    assert_same_tree(&cache, &clean, "repeatedly cut, completed vs clean");
    assert!(interrupted >= 1, "no kill landed in the middle of a build (the machine is too slow or too fast for the timing)");
}

// ---------------------------------------------------------------------------------------------
// A live DB in WAL mode

/// Nix keeps its DB in WAL mode, and while a Nix process has it open (the daemon, always), what
/// it commits sits in `db.sqlite-wal` until a checkpoint. `immutable=1` alone would ignore the
/// WAL and read a stale DB (publishing a path a GC just invalidated); src/host/db.rs reads a
/// private copy of DB + WAL instead, never writing or locking the original.
#[test]
fn live_db_with_an_uncheckpointed_wal_is_read_as_committed() {
    let root = extract_root_tar();
    let db_dir = root.path().join("nix/var/nix/db");
    let db = db_dir.join("db.sqlite");
    fs::set_permissions(&db_dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
    // A writer, like the daemon: WAL mode, no automatic checkpoint, the connection kept open.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    // Invalidate single-file (as a GC does), committed to the WAL only.
    let id: i64 = conn
        .query_row(
            "SELECT id FROM ValidPaths WHERE path = ?1",
            [SINGLE_FILE],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "DELETE FROM Refs WHERE referrer = ?1 OR reference = ?1",
        [id],
    )
    .unwrap();
    conn.execute("DELETE FROM ValidPaths WHERE id = ?1", [id])
        .unwrap();
    assert!(
        fs::metadata(db_dir.join("db.sqlite-wal")).unwrap().len() > 0,
        "the change is in the WAL"
    );

    let out = TempTree::new();
    let cache = out.path().join("cache");
    let res = build_cache(
        &Cli::new(&cache, root.path())
            .flags("--no-closure")
            .args(&[SINGLE_FILE]),
    );
    let published = cache
        .join(format!("{}.narinfo", hash_part_of(SINGLE_FILE)))
        .exists();
    drop(conn);
    assert!(
        !published,
        "a path the DB no longer holds (committed, in the WAL) was published from a stale read"
    );
    let err = expect_failure(&res, "path invalidated in the WAL");
    assert!(err.contains(SINGLE_FILE), "{err}");
}

/// A tmpfs of `size` mounted at a new directory, unmounted when dropped; None where this process
/// may not mount (not root, no mount namespace), which only CI must not be.
struct SmallDisk {
    dir: TempTree,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = TempTree::new();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_reported_and_leaves_the_cache_valid() {
    let Some(disk) = SmallDisk::mount("3m") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs for this test"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let root = extract_root_tar();
    let cache = disk.dir.path().join("cache");
    build_ok(&Cli::new(&cache, root.path()).args(&[APP]));
    let before = snapshot(&cache);
    // A store path of 4 MiB that does not compress, found by scanning: more than the disk holds.
    let big = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-incompressible";
    let physical = root.path().join(big.trim_start_matches('/'));
    fs::create_dir_all(&physical).unwrap();
    fs::write(physical.join("noise"), Rng::new(7).bytes(4 << 20)).unwrap();
    let err = expect_failure(
        &build_cache(
            &Cli::new(&cache, root.path())
                .flags("--scan-references --no-closure")
                .args(&[big]),
        ),
        "full disk",
    );
    assert!(
        err.contains("No space left on device")
            && err.contains(big)
            && err.contains(&s(&cache.join("nar"))),
        "the message says what failed, for which path and where: {err}"
    );
    assert_eq!(
        snapshot(&cache),
        before,
        "a failed build leaves the cache as it was (no temporaries either)"
    );
    check_cache(&cache, true);
}

/// Checks a build's progress events: the total first (with the closure's NAR size when the
/// metadata gives it, in one go), a `PathDone` per path, bytes that only grow and end at the
/// total.
fn check_progress(
    events: &[nar_tool::host::build::Progress],
    nar_bytes: u64,
    paths: u64,
    sizes_known: bool,
    what: &str,
) {
    use nar_tool::host::build::Progress;
    assert!(
        matches!(events[0], Progress::Total { .. }),
        "{what}: {:?}",
        events[0]
    );
    let totals: Vec<(u64, Option<u64>)> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Total { paths, nar_bytes } => Some((*paths, *nar_bytes)),
            _ => None,
        })
        .collect();
    let bytes: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Bytes { nar_bytes } => Some(*nar_bytes),
            _ => None,
        })
        .collect();
    let done = events
        .iter()
        .filter(|e| matches!(e, Progress::PathDone { .. }))
        .count();
    assert_eq!(done as u64, paths, "{what}: a PathDone per path");
    assert_eq!(totals.last().unwrap().0, paths, "{what}");
    assert!(
        bytes.windows(2).all(|w| w[0] <= w[1]),
        "{what}: archived bytes only grow: {bytes:?}"
    );
    assert_eq!(
        bytes.last(),
        Some(&nar_bytes),
        "{what}: the bytes end at the total"
    );
    if sizes_known {
        assert_eq!(
            totals,
            vec![(paths, Some(nar_bytes))],
            "{what}: all known up front"
        );
    } else {
        assert!(
            totals.iter().all(|t| t.1.is_none()),
            "{what}: sizes unknown when scanning"
        );
    }
}

#[test]
fn progress_gives_the_closure_size_up_front_then_bytes_as_they_are_archived() {
    use nar_tool::host::build::{build_cache, BuildOptions, MetadataSource, Progress};
    let (root, registration, paths) = mixed_store();
    let out = TempTree::new();
    for scan in [false, true] {
        let cache = out.path().join(format!("scan-{scan}"));
        let metadata = match scan {
            true => MetadataSource::Scan,
            false => MetadataSource::Registration(registration.clone()),
        };
        let opts = BuildOptions {
            compression: Compression::Xz,
            want_mass_query: true,
            ..build_options(cache, root.path(), metadata, &paths)
        };
        let run = || {
            let mut events = Vec::new();
            let summary = build_cache(&opts, |p| events.push(p)).unwrap();
            (events, summary)
        };
        let (events, summary) = run();
        check_progress(
            &events,
            summary.nar_bytes,
            summary.paths,
            !scan,
            &format!("scan {scan}"),
        );
        // Run again: every path is already there, and the total still comes first.
        let (events, again) = run();
        assert_eq!(again.skipped, summary.paths);
        // (The narinfos give every size, even where scanning could not.)
        check_progress(
            &events,
            summary.nar_bytes,
            summary.paths,
            true,
            &format!("scan {scan}, rerun"),
        );
        assert!(events
            .iter()
            .all(|e| !matches!(e, Progress::PathDone { written: true, .. })));
    }
}

/// Ctrl-C (SIGINT) during a build: it stops, says "interrupted; run again to complete it", exits
/// 130 and leaves no temporary file; what it published is a valid cache, and a rerun completes it.
#[test]
fn ctrl_c_stops_a_build_leaving_no_temporary() {
    let root = TempTree::new();
    let synth = make_synthetic_store(root.path(), "intr", 4242, 300, 40_000);
    let registration = root.path().join("registration");
    fs::write(&registration, registration_text(root.path(), &synth)).unwrap();
    let list = root.path().join("paths");
    let text: String = synth.iter().map(|p| format!("{}\n", p.path)).collect();
    fs::write(&list, text).unwrap();
    let out = TempTree::new();
    let cache = out.path().join("cache");
    let argv = Cli::new(&cache, root.path())
        .opt("--registration", &registration)
        .flags("--compression xz --level 9 --jobs 2 --quiet")
        .opt("--paths-from", &list);
    let child = Command::new(bin())
        .arg("build-cache")
        .args(argv.iter())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first NAR is being written, interrupt.
    let started = Instant::now();
    while fs::read_dir(cache.join("nar")).map_or(0, |d| d.count()) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted; run again to complete it"),
        "{err}"
    );
    assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
    assert!(!cache.join(".nar-tool").exists(), "state left behind");
    let partial = check_cache(&cache, true);
    assert!(
        partial.len() < synth.len(),
        "the interrupt landed after the end"
    );
    let summary = build_ok(&argv);
    assert_eq!(
        summary_count(&summary, "written") + summary_count(&summary, "skipped"),
        synth.len() as u64
    );
    assert_eq!(check_cache(&cache, true).len(), synth.len());
}

/// `--xz-memory`: the xz encoders of the paths compressed at once never take more than the
/// budget (as liblzma counts it; the process's peak memory follows): a path too large for two
/// threads in it gets one. With room for two, it takes two, over that budget: the budget is what
/// bounds it. A budget smaller than one thread needs is refused, saying so.
#[test]
fn xz_memory_stays_within_its_budget() {
    use nar_tool::host::codec::xz_memory;
    // One path of 34 MiB: two xz blocks, so up to two threads.
    let root = TempTree::new();
    let path = synth_path("xzmem", "big");
    let dir = root.path().join(path.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(99);
    fs::write(dir.join("data"), text_bytes(&mut rng, 34 << 20)).unwrap();
    let nar_size = dump_path(&dir, Vec::new(), CaseHack(false)).unwrap().len() as u64;
    let (one, two) = (
        xz_memory(None, nar_size, 1).unwrap(),
        xz_memory(None, nar_size, 2).unwrap(),
    );
    println!("xz memory for a {nar_size}-byte NAR: {one} bytes with one thread, {two} with two");
    assert!(two > one + (16 << 20), "two threads need more: {one} {two}");
    let budget_mib = ((one + two) / 2) >> 20;
    let out = TempTree::new();
    let run = |name: &str, budget: u64| {
        let cache = out.path().join(name);
        let argv = Cli::new(&cache, root.path())
            .flags("--scan-references --compression xz --jobs 2")
            .opt("--xz-memory", budget.to_string())
            .args(&[&path]);
        let rss = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%M", "-o"])
            .arg(rss.path())
            .arg(bin())
            .arg("build-cache")
            .args(argv.iter())
            .arg("--json");
        let done = if Path::new("/usr/bin/time").exists() {
            cmd.output().unwrap()
        } else {
            Command::new(bin())
                .arg("build-cache")
                .args(argv.iter())
                .arg("--json")
                .output()
                .unwrap()
        };
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        let kib: Option<u64> = fs::read_to_string(rss.path())
            .ok()
            .and_then(|t| t.lines().last()?.trim().parse().ok());
        (summary_count(&summary, "xz_memory_peak"), kib)
    };
    let (peak, rss_kib) = run("bounded", budget_mib);
    assert_eq!(peak, one, "one thread's worth");
    assert!(peak <= budget_mib << 20);
    if let Some(kib) = rss_kib {
        // liblzma's count and ours, plus the rest of the process.
        assert!(
            kib << 10 <= (budget_mib << 20) + (100 << 20),
            "peak RSS {kib} KiB over a budget of {budget_mib} MiB"
        );
    }
    let (peak, _) = run("roomy", 4096);
    assert_eq!(peak, two, "room for two threads: both taken");
    assert!(peak > budget_mib << 20);
    // Less than one thread needs: refused, naming the budget.
    let cache = out.path().join("tiny");
    let done = build_cache(
        &Cli::new(&cache, root.path())
            .flags("--scan-references --compression xz --xz-memory 8")
            .args(&[&path]),
    );
    let err = expect_failure(&done, "a budget under one thread");
    assert!(
        err.contains("more than the memory budget of 8.0 MiB (--xz-memory"),
        "{err}"
    );
    assert!(!err.contains("run again"), "{err}");
}
