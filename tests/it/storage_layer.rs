//! The storage layer under every cache operation, attacked as the issue that asked for it found
//! it broken: a symlink swapped in while `serve` answers, FIFOs planted at every kind of key, a
//! `nar` folder that is a symlink out of the cache, two builders into one cache, an existing NAR
//! that is corrupt, a full disk at the narinfo, and a `bogus.narinfo` listed alike everywhere.

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{self, build_options, extract_root_tar, run, TempTree};
use nar_tool::cache::layout::{CacheKey, KeyDir};
use nar_tool::cache::storage::memory::MemoryStorage;
use nar_tool::cache::storage::{ObjectMeta, StorageRead};

const APP: &str = "/nix/store/swf7rrkcsawh9sa0zhm4bchjhphk6mjv-app-0.9-public";
const LIBDEMO: &str = "/nix/store/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a path the test owns.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {path:?}"
    );
}

/// Runs the CLI, killing it if it has not finished within `limit` (a hang is a failure).
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(common::bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "nar-tool {args:?} hung for {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cache of the corpus closure of `paths`, built by us.
fn build(cache: &Path, root: &Path, paths: &[&str], extra: &[&str]) -> Output {
    let mut args = vec!["build-cache", "--to", cache.to_str().unwrap()];
    args.extend(["--store-root", root.to_str().unwrap(), "--quiet"]);
    args.extend(extra);
    args.extend(paths);
    run_within(&args, Duration::from_secs(120))
}

fn build_ok(cache: &Path, root: &Path, paths: &[&str], extra: &[&str]) {
    let out = build(cache, root, paths, extra);
    assert!(
        out.status.success(),
        "build-cache failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify(cache: &Path) -> Output {
    run_within(
        &["verify", cache.to_str().unwrap(), "--jobs", "2"],
        Duration::from_secs(60),
    )
}

fn assert_verifies(cache: &Path, what: &str) {
    let out = verify(cache);
    assert!(
        out.status.success(),
        "{what}: verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nar_files(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cache.join("nar"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn serve(cache: &Path) -> common::ServeProcess {
    common::ServeProcess::start(cache, &[])
}

/// One GET: the status and the body (a connection that fails gives status 0).
fn get(addr: &str, target: &str) -> (u16, Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, Vec::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return (0, Vec::new());
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, raw);
    };
    let status = String::from_utf8_lossy(&raw[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw[split + 4..].to_vec())
}

#[test]
fn a_symlink_swapped_in_while_serving_never_leaks_a_byte() {
    let root = extract_root_tar();
    let dir = TempTree::new();
    let cache = dir.path().join("cache");
    build_ok(&cache, root.path(), &[LIBDEMO], &["--compression", "none"]);
    let secret = dir.path().join("secret");
    fs::write(&secret, "TOP-SECRET-OUTSIDE-THE-CACHE\n".repeat(64)).unwrap();
    let nar = nar_files(&cache).remove(0);
    let real = dir.path().join("real.nar");
    fs::copy(&nar, &real).unwrap();
    let target = format!("/nar/{}", nar.file_name().unwrap().to_string_lossy());
    let server = serve(&cache);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (served, leaked) = std::thread::scope(|scope| {
        let swapper = scope.spawn(|| {
            // Swap the NAR between the real file and a symlink to the secret, atomically by
            // rename, as an attacker with write access to the folder would.
            let link = cache.join("nar/.swap-link");
            let file = cache.join("nar/.swap-file");
            let mut swaps = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = fs::remove_file(&link);
                std::os::unix::fs::symlink(&secret, &link).unwrap();
                fs::rename(&link, &nar).unwrap();
                fs::copy(&real, &file).unwrap();
                fs::rename(&file, &nar).unwrap();
                swaps += 1;
            }
            swaps
        });
        let mut served = 0u32;
        let mut leaked = 0u32;
        let mut asked = 0u32;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            asked += 1;
            let (status, body) = get(&server.addr, &target);
            if status == 200 {
                served += 1;
            }
            if String::from_utf8_lossy(&body).contains("TOP-SECRET") {
                leaked += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(swapper.join().unwrap() > 100, "the swap loop ran");
        assert!(asked > 100, "{asked} requests");
        (served, leaked)
    });
    assert_eq!(leaked, 0, "bytes from outside the cache were served");
    assert!(
        served > 0,
        "the real NAR was still served when it was there"
    );
}

#[test]
fn fifos_at_every_key_are_errors_within_seconds_and_serve_keeps_answering() {
    let root = extract_root_tar();
    let dir = TempTree::new();
    let cache = dir.path().join("cache");
    build_ok(&cache, root.path(), &[APP], &["--nar-listing"]);
    let hash = "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy";
    // Replace one narinfo, one listing and one NAR by FIFOs.
    let narinfo = cache.join(format!("{hash}.narinfo"));
    let text = fs::read_to_string(&narinfo).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap()
        .to_string();
    for rel in [format!("{hash}.ls"), url.clone()] {
        fs::remove_file(cache.join(&rel)).unwrap();
        mkfifo(&cache.join(&rel));
    }
    let server = serve(&cache);
    for target in [format!("/{hash}.ls"), format!("/{url}")] {
        let started = Instant::now();
        let (status, _) = get(&server.addr, &target);
        assert_eq!(status, 404, "{target}");
        assert!(started.elapsed() < Duration::from_secs(5), "{target} hung");
    }
    let out = verify(&cache);
    assert_eq!(out.status.code(), Some(4), "a check that could not run");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("FIFO"), "{report}");

    fs::remove_file(&narinfo).unwrap();
    mkfifo(&narinfo);
    let (status, _) = get(&server.addr, &format!("/{hash}.narinfo"));
    assert_eq!(status, 404);
    for _ in 0..20 {
        assert_eq!(
            get(&server.addr, "/nix-cache-info").0,
            200,
            "still answering"
        );
    }
    let out = verify(&cache);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIFO"));

    fs::remove_file(cache.join("nix-cache-info")).unwrap();
    mkfifo(&cache.join("nix-cache-info"));
    let out = verify(&cache);
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIFO"));
    let out = build(&cache, root.path(), &[APP], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nix-cache-info") && err.contains("FIFO"),
        "{err}"
    );
}

#[test]
fn a_nar_folder_that_links_out_is_never_written_through() {
    let root = extract_root_tar();
    let dir = TempTree::new();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // Temporary-looking files out there must survive the builder's clean-up.
    for name in [".nar-1.tmp", ".nar-tool.1-x.0.tmp", ".x.tmp-1"] {
        fs::write(outside.join(name), b"not yours").unwrap();
    }
    let cache = dir.path().join("cache");
    fs::create_dir(&cache).unwrap();
    std::os::unix::fs::symlink(&outside, cache.join("nar")).unwrap();
    let out = build(&cache, root.path(), &[APP], &[]);
    assert_eq!(out.status.code(), Some(1), "refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nar") && err.contains("not a real directory"),
        "{err}"
    );
    let mut names: Vec<String> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".nar-1.tmp", ".nar-tool.1-x.0.tmp", ".x.tmp-1"]);
}

#[test]
fn two_builders_into_one_cache_both_succeed() {
    let root = extract_root_tar();
    let secret = common::corpus().join("keys/secret");
    let public = fs::read_to_string(common::corpus().join("keys/public")).unwrap();
    let paths = common::store_paths();
    let dir = TempTree::new();
    for round in 0..6 {
        let cache = dir.path().join(format!("cache-{round}"));
        let spawn = |jobs: &str| {
            Command::new(common::bin())
                .args(["build-cache", "--quiet", "--jobs", jobs, "--to"])
                .arg(&cache)
                .arg("--store-root")
                .arg(root.path())
                .arg("--sign")
                .arg(&secret)
                .args(&paths)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn("1"), spawn("2"));
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_verifies(&cache, &format!("round {round}"));
        assert!(
            !cache.join(".nar-tool").exists(),
            "round {round}: the builders' state is gone once both are done"
        );
    }
    if !common::have("nix") {
        assert!(std::env::var_os("CI").is_none(), "CI has Nix");
        return;
    }
    // The real Nix substitutes the whole closure from the last cache the two built together.
    let client = TempTree::new();
    let from = format!("file://{}", dir.path().join("cache-5").display());
    let wanted: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = common::nix_copy_from(&from, client.path(), &public, &wanted);
    assert!(
        out.status.success(),
        "nix copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in &wanted {
        let restored = client.path().join(p.trim_start_matches('/'));
        assert!(fs::symlink_metadata(&restored).is_ok(), "{p}");
    }
}

#[test]
fn a_corrupt_existing_nar_is_repaired_not_trusted_by_name() {
    let root = extract_root_tar();
    let dir = TempTree::new();
    let cache = dir.path().join("cache");
    for force in [false, true] {
        build_ok(&cache, root.path(), &[LIBDEMO], &[]);
        let narinfo = cache.join("5qk0fgkb9sfxmrbqjcs803wd2rjkaigy.narinfo");
        let text = fs::read_to_string(&narinfo).unwrap();
        let url = text.lines().find_map(|l| l.strip_prefix("URL: ")).unwrap();
        let nar = cache.join(url);
        let mut bytes = fs::read(&nar).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&nar, &bytes).unwrap();
        fs::remove_file(&narinfo).unwrap();
        let extra: &[&str] = if force { &["--force"] } else { &[] };
        build_ok(&cache, root.path(), &[LIBDEMO], extra);
        assert_verifies(&cache, if force { "--force" } else { "rerun" });
    }
}

#[test]
fn bogus_narinfo_names_are_listed_and_reported_alike() {
    let root = extract_root_tar();
    let dir = TempTree::new();
    let cache = dir.path().join("cache");
    build_ok(&cache, root.path(), &[LIBDEMO], &[]);
    fs::write(cache.join("bogus.narinfo"), "StorePath: nonsense\n").unwrap();
    let out = verify(&cache);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("malformed-narinfo bogus.narinfo"),
        "{report}"
    );
    let server = serve(&cache);
    let (status, body) = get(&server.addr, "/_nar-tool/narinfos");
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<String> = serde_json::from_value(page["items"].clone()).unwrap();
    assert!(names.contains(&"bogus.narinfo".to_string()), "{names:?}");
    assert_eq!(
        get(&server.addr, "/bogus.narinfo").0,
        404,
        "not a key: never served"
    );
}

/// Bytes free on the file system of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs into a zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn a_full_disk_at_the_narinfo_leaves_no_orphan_and_the_rerun_fits() {
    let dir = TempTree::new();
    let disk = dir.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&disk)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs for this test"
        );
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());

    // An incompressible path found by scanning, its compressed size measured elsewhere first.
    let root = extract_root_tar();
    let big = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-incompressible";
    let physical = root.path().join(big.trim_start_matches('/'));
    fs::create_dir_all(&physical).unwrap();
    fs::write(physical.join("noise"), common::Rng::new(9).bytes(2 << 20)).unwrap();
    let scan = ["--scan-references", "--no-closure"];
    let probe = dir.path().join("probe");
    build_ok(&probe, root.path(), &[big], &scan);
    let nar_len = fs::metadata(&nar_files(&probe)[0]).unwrap().len();
    let pages = nar_len.div_ceil(4096) * 4096;

    let cache = disk.join("cache");
    build_ok(&cache, root.path(), &[LIBDEMO], &[]);
    // Fill the disk, then free exactly the pages the NAR needs: no room for its narinfo.
    let filler = disk.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let chunk = vec![0x5a; 4096];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    let filled = fs::metadata(&filler).unwrap().len() / 4096 * 4096;
    let f = fs::OpenOptions::new().write(true).open(&filler).unwrap();
    f.set_len(filled - pages).unwrap();
    drop(f);
    assert!(free_bytes(&disk) >= pages);
    let before = nar_files(&cache);
    let out = build(&cache, root.path(), &[big], &scan);
    assert_eq!(out.status.code(), Some(1), "the disk is full");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(nar_files(&cache), before, "no NAR without its narinfo");
    assert_verifies(&cache, "after the full disk");

    // A little room (less than a second copy of the NAR) is enough for the rerun.
    let f = fs::OpenOptions::new().write(true).open(&filler).unwrap();
    f.set_len(filled - pages - 16 * 4096).unwrap();
    drop(f);
    assert!(free_bytes(&disk) < 2 * nar_len);
    build_ok(&cache, root.path(), &[big], &scan);
    assert_verifies(&cache, "after the rerun");
    assert_eq!(nar_files(&cache).len(), before.len() + 1);
}

#[test]
fn verify_through_the_storage_layer_reads_no_symlink_out() {
    let root = extract_root_tar();
    let dir = TempTree::new();
    let cache = dir.path().join("cache");
    build_ok(&cache, root.path(), &[LIBDEMO], &[]);
    let nar = nar_files(&cache).remove(0);
    let moved = dir.path().join("elsewhere.nar");
    fs::rename(&nar, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &nar).unwrap();
    let out = run(&["verify", &s(&cache)], b"");
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("not followed"), "{report}");
    // A narinfo that is a symlink out of the cache is not part of it: not listed, not read.
    let narinfo = cache.join("5qk0fgkb9sfxmrbqjcs803wd2rjkaigy.narinfo");
    fs::rename(&moved, &nar).unwrap();
    let outside = dir.path().join("elsewhere.narinfo");
    fs::rename(&narinfo, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &narinfo).unwrap();
    let out = run(&["verify", "--json", &s(&cache)], b"");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["paths"], 0, "{report}");
}

#[test]
fn sign_and_narinfo_check_refuse_a_fifo_at_once() {
    let dir = TempTree::new();
    let key = dir.path().join("key.sec");
    let public = dir.path().join("key.pub");
    let out = run(
        &[
            "key",
            "generate",
            "t-1",
            "--secret",
            &s(&key),
            "--public",
            &s(&public),
        ],
        b"",
    );
    assert!(out.status.success());
    for name in ["5qk0fgkb9sfxmrbqjcs803wd2rjkaigy.narinfo", "other.narinfo"] {
        let fifo = dir.path().join(name);
        mkfifo(&fifo);
        for args in [
            vec![
                "sign",
                "--key",
                key.to_str().unwrap(),
                fifo.to_str().unwrap(),
            ],
            vec!["narinfo", "check", fifo.to_str().unwrap()],
        ] {
            let out = run_within(&args, Duration::from_secs(10));
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let said = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("FIFO"), "{args:?}: {said}");
        }
    }
}

#[test]
fn the_builder_and_the_verifier_run_on_any_backend() {
    use nar_tool::cache::storage::memory::MemoryStorage;
    use nar_tool::cache::storage::{list_narinfo_names, StorageRead};
    use nar_tool::cache::verify::{pure_decoder, verify_cache, VerifyOptions};
    use nar_tool::host::build::{build_cache, build_cache_into, BuildOptions, MetadataSource};
    use nar_tool::store_path::StoreDir;

    let root = extract_root_tar();
    let store_dir = StoreDir::new("/nix/store").unwrap();
    let dir = TempTree::new();
    let db = MetadataSource::Db(root.path().join("nix/var/nix/db/db.sqlite"));
    let opts = BuildOptions {
        nar_listing: true,
        ..build_options(dir.path().join("cache"), root.path(), db, [APP])
    };
    let memory = MemoryStorage::new();
    let in_memory = build_cache_into(&memory, &opts, |_| {}).unwrap();
    let on_disk = build_cache(&opts, |_| {}).unwrap();
    assert_eq!(in_memory.written, on_disk.written);
    let names = list_narinfo_names(&memory).unwrap();
    assert_eq!(names.len() as u64, in_memory.written);
    // The same objects, byte for byte, in memory and in the directory.
    for name in &names {
        let key = nar_tool::cache::layout::CacheKey::parse(name).unwrap();
        let bytes = StorageRead::read_small(&memory, &key, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(bytes, fs::read(opts.to.join(name)).unwrap(), "{name}");
    }
    let verify_opts = VerifyOptions {
        trusted_keys: Vec::new(),
        check_contents: true,
        store_dir,
        ..VerifyOptions::default()
    };
    let report = verify_cache(&memory, &verify_opts, pure_decoder, |_| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A storage that counts the looks at single objects, and gives sizes with its listings or not.
struct Looks<'a> {
    inner: &'a MemoryStorage,
    sized: bool,
    stats: AtomicUsize,
}

impl Looks<'_> {
    fn inner(&self) -> &MemoryStorage {
        self.inner
    }
}

impl StorageRead for Looks<'_> {
    nar_tool::forward_storage!(Looks::inner =>
        describe, locate, open, list, read_small, requests_in_flight, read_range);
    fn stat(&self, key: &CacheKey) -> io::Result<Option<ObjectMeta>> {
        self.stats.fetch_add(1, Ordering::Relaxed);
        self.inner.stat(key)
    }
    fn list_sized(&self, dir: KeyDir) -> Option<io::Result<Vec<(String, u64)>>> {
        if self.sized {
            self.inner.list_sized(dir)
        } else {
            None
        }
    }
}

/// `verify --no-contents` asks every NAR file's size: a storage whose listing gives sizes (a
/// bucket) answers from one listing, not a look at each file, and the report is the same.
#[test]
fn without_contents_nar_sizes_come_from_the_listing() {
    use nar_tool::cache::storage::{list_nar_file_names, StorageWrite};
    use nar_tool::cache::verify::{pure_decoder, verify_cache, VerifyOptions};
    use nar_tool::host::build::{build_cache_into, MetadataSource};

    let root = extract_root_tar();
    let dir = TempTree::new();
    let db = MetadataSource::Db(root.path().join("nix/var/nix/db/db.sqlite"));
    let opts = build_options(dir.path().join("cache"), root.path(), db, [APP]);
    let memory = MemoryStorage::new();
    build_cache_into(&memory, &opts, |_| {}).unwrap();
    // Damage: a NAR gone, one of another size, an orphan.
    let nars = list_nar_file_names(&memory).unwrap();
    assert!(nars.len() >= 3, "{nars:?}");
    let key = |name: &str| CacheKey::parse(name).unwrap();
    assert!(memory.delete(&key(&nars[0])).unwrap());
    memory.put(&key(&nars[1]), b"shorter").unwrap();
    let orphan = format!("nar/{}.nar.zst", "0".repeat(52));
    memory.put(&key(&orphan), b"orphan").unwrap();

    let verify_opts = VerifyOptions {
        check_contents: false,
        ..VerifyOptions::default()
    };
    let run = |sized: bool| {
        let looks = Looks {
            inner: &memory,
            sized,
            stats: Default::default(),
        };
        let report = verify_cache(&looks, &verify_opts, pure_decoder, |_| {});
        (
            serde_json::to_value(&report).unwrap(),
            looks.stats.load(Ordering::Relaxed),
        )
    };
    let (listed, listed_looks) = run(true);
    let (looked, looks) = run(false);
    assert_eq!(listed, looked);
    let kinds: Vec<&str> = listed["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.len() >= 3, "{kinds:?}");
    // One look per narinfo's NAR without sizes; with them, only at the one the listing lacks.
    assert!(looks >= nars.len() - 1, "{looks}");
    assert_eq!(listed_looks, 1);
}

/// Runs a future whose every await is ready at once (the blocking adapter's).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn the_pull_and_push_verifiers_agree_through_the_async_storage_face() {
    use nar_tool::cache::storage::async_read::Blocking;
    use nar_tool::cache::verify::{pull, push, VerifyOptions};
    use nar_tool::host::dir_storage::DirStorage;
    use nar_tool::host::storage::native_decoder;
    use nar_tool::store_path::StoreDir;

    let root = extract_root_tar();
    let dir = TempTree::new();
    let cache = dir.path().join("cache");
    build_ok(&cache, root.path(), &[APP], &["--nar-listing"]);
    // Damage: a bogus narinfo name, a stray in nar/, a corrupt NAR, a missing one, a FIFO.
    fs::write(cache.join("bogus.narinfo"), "StorePath: x\n").unwrap();
    fs::write(cache.join("nar/junk"), b"x").unwrap();
    let mut nars = nar_files(&cache);
    nars.retain(|p| p.extension().is_some_and(|e| e == "zst"));
    let mut bytes = fs::read(&nars[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&nars[0], bytes).unwrap();
    fs::remove_file(&nars[1]).unwrap();
    fs::remove_file(&nars[2]).unwrap();
    mkfifo(&nars[2]);

    let opts = VerifyOptions {
        trusted_keys: Vec::new(),
        check_contents: true,
        store_dir: StoreDir::new("/nix/store").unwrap(),
        ..VerifyOptions::default()
    };
    let storage = DirStorage::open(&cache).unwrap();
    let pulled = pull::verify_cache(&storage, &opts, native_decoder, |_| {});
    let pushed = block_on(push::verify_cache(&Blocking(storage), &opts, None, |_| {}));
    assert!(pulled.problems.len() >= 5, "{:?}", pulled.problems);
    assert_eq!(
        serde_json::to_value(&pulled).unwrap(),
        serde_json::to_value(&pushed).unwrap()
    );
}
