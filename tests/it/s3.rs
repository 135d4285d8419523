//! Object storage against a real S3 server (SeaweedFS, started by `scripts/s3-server.sh`; no
//! mocks): the storage conformance suite on a bucket, multipart uploads and what a killed writer
//! leaves, `build-cache --to s3://…` in every compression with the real Nix substituting from
//! the bucket (over plain HTTP and through `nar-tool serve s3://…`), `verify` and `sign` on a
//! bucket, kill-at-random and concurrent builders, and the errors a user gets for bad
//! credentials, a missing bucket and a server that goes away mid-build.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::damage;
use crate::common::s3::{server, S3Server};
use crate::common::*;
use crate::verify::copy_dir;
use nar_tool::cache::layout::{CacheKey, KeyDir};
use nar_tool::cache::storage::{conformance, Put, StorageRead, StorageWrite};
use nar_tool::hash::{to_hex, Hash, HashAlgo};
use nar_tool::host::fs::{dump_path, CaseHack};
use nar_tool::nixbase32;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("nar-tool runs")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}:\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `verify URL --trusted-key K`, expecting a clean report.
fn verify_clean(srv: &S3Server, url: &str, what: &str) -> String {
    ok(
        output(
            srv.command()
                .args(["verify", url, "--quiet", "--trusted-key", &public_key()]),
        ),
        &format!("verify after {what}"),
    )
}

#[test]
fn conformance_on_a_real_bucket() {
    let srv = server();
    let storage = srv.storage(&srv.fresh_prefix("conformance"));
    conformance::run(&storage);
}

#[test]
fn large_objects_stream_in_parts_and_leave_nothing_behind() {
    let srv = server();
    let prefix = srv.fresh_prefix("multipart");
    let storage = srv.storage_with(&prefix, 5 << 20);
    storage.prepare().unwrap();
    let data: Vec<u8> = (0..(17u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut staged = storage.stage(KeyDir::Nar).unwrap();
    for piece in data.chunks(64 << 10) {
        staged.write_all(piece).unwrap();
    }
    let during = storage.list_everything().unwrap();
    assert!(
        during.iter().any(|n| n.starts_with(".nar-tool/uploads/")),
        "the upload is recorded while it runs: {during:?}"
    );
    assert!(
        !during.iter().any(|n| n.starts_with("nar/")),
        "nothing under nar/ before the commit: {during:?}"
    );
    let key = CacheKey::parse("nar/1big.nar").unwrap();
    staged.commit(&key, Put::IfAbsent).unwrap();
    let mut back = Vec::new();
    storage
        .open(&key)
        .unwrap()
        .unwrap()
        .body
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "read back whole");
    // A range across the boundary of the first two parts.
    let (_, mut range) = storage
        .read_range(&key, (5 << 20) - 10, 20)
        .unwrap()
        .unwrap();
    let mut piece = Vec::new();
    range.read_to_end(&mut piece).unwrap();
    assert_eq!(piece, data[(5 << 20) - 10..(5 << 20) + 10]);
    let after = storage.list_everything().unwrap();
    let state: Vec<&String> = after
        .iter()
        .filter(|n| !n.starts_with(".nar-tool/owners/"))
        .collect();
    assert_eq!(state, vec!["nar/1big.nar"], "only the object remains");

    // An upload dropped without a commit is aborted and forgotten.
    let mut dropped = storage.stage(KeyDir::Nar).unwrap();
    dropped.write_all(&data[..(11 << 20)]).unwrap();
    drop(dropped);
    // The abort runs in the background: generous on a loaded machine, still bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = storage.list_everything().unwrap();
        if !now
            .iter()
            .any(|n| n.contains("/uploads/") || n.contains("/staging/"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {now:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(storage);
    let storage = srv.storage(&prefix);
    assert_eq!(
        storage.list_everything().unwrap(),
        vec!["nar/1big.nar"],
        "the owner record goes with its writer"
    );
}

#[test]
fn missing_bucket_bad_keys_and_no_server_say_so() {
    let srv = server();
    let prefix = srv.fresh_prefix("errors");
    let root = extract_root_tar();
    let paths = store_paths();
    let build = |url: &str, configure: &dyn Fn(&mut Command)| {
        let mut cmd = srv.command();
        configure(&mut cmd);
        cmd.args(["build-cache", "--quiet", "--store-root", &s(root.path())])
            .args(["--to", url])
            .args(&paths[..2]);
        output(&mut cmd)
    };
    type Configure = Box<dyn Fn(&mut Command)>;
    let cases: Vec<(String, String, Configure, &str)> = vec![
        (
            "a missing bucket".into(),
            srv.url_of("no-such-bucket-here", &prefix),
            Box::new(|_: &mut Command| {}),
            "does not exist",
        ),
        (
            "a wrong secret".into(),
            srv.url(&prefix),
            Box::new(|c: &mut Command| {
                c.env("AWS_SECRET_ACCESS_KEY", "wrong");
            }),
            "access denied",
        ),
        (
            "no credentials at all".into(),
            srv.url(&prefix),
            Box::new(|c: &mut Command| {
                c.env_remove("AWS_ACCESS_KEY_ID")
                    .env_remove("AWS_SECRET_ACCESS_KEY");
            }),
            "no credentials were found",
        ),
        (
            "a port nobody listens on".into(),
            format!(
                "s3://{}/{prefix}?endpoint=127.0.0.1:9&scheme=http",
                srv.bucket
            ),
            Box::new(|c: &mut Command| {
                c.env("NAR_TOOL_S3_RETRY_SECONDS", "1");
            }),
            "cannot reach",
        ),
    ];
    for (what, url, configure, says) in cases {
        let out = build(&url, &*configure);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: succeeded");
        assert!(err.contains(says), "{what}: {err}");
        assert!(
            err.contains("s3://"),
            "{what}: the message names the bucket: {err}"
        );
    }
    let storage = srv.storage(&prefix);
    let left: Vec<String> = storage
        .list_everything()
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with(".nar-tool/"))
        .collect();
    assert!(left.is_empty(), "nothing half-visible: {left:?}");
}

#[test]
fn built_into_a_bucket_in_every_compression_and_nix_substitutes_from_it() {
    let srv = server();
    let root = extract_root_tar();
    let paths = store_paths();
    for method in ["xz", "zstd", "bzip2", "none"] {
        let prefix = srv.fresh_prefix(&format!("build-{method}"));
        let url = srv.url(&prefix);
        let out = output(
            srv.command()
                .args(["build-cache", "--quiet", "--to", &url])
                .args(["--store-root", &s(root.path()), "--compression", method])
                .args(["--sign", &s(&corpus().join("keys/secret"))])
                .args(&paths),
        );
        ok(out, &format!("build-cache --to {url}"));
        let report = verify_clean(srv, &url, method);
        assert!(report.contains("9 paths"), "{method}: {report}");
        if !have("nix") {
            println!("SKIP: nix is not installed; not substituting from the bucket");
            continue;
        }
        let dest = TempTree::new();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let out = nix_copy_from(&srv.anon_base(&prefix), dest.path(), &public_key(), &refs);
        ok(
            out,
            &format!("{method}: nix copy --from the bucket over HTTP"),
        );
        for p in &paths {
            let nar = dump_path(
                &dest.path().join(p.trim_start_matches('/')),
                Vec::new(),
                CaseHack(false),
            )
            .unwrap();
            let base = p.rsplit('/').next().unwrap();
            assert!(
                nar == fs::read(corpus().join("nar").join(format!("{base}.nar"))).unwrap(),
                "{method}: {p} restored differently"
            );
        }
        if method == "zstd" {
            // The same through `nar-tool serve s3://…` (a private bucket's proxy).
            let mut cmd = Command::new(bin());
            srv.credentials_into(&mut cmd);
            let served = ServeProcess::start_cmd(cmd, &url, &[]);
            let dest = TempTree::new();
            let out = nix_copy_from(
                &format!("http://{}", served.addr),
                dest.path(),
                &public_key(),
                &refs,
            );
            ok(out, "nix copy --from nar-tool serve s3://…");
        }
    }
}

#[test]
fn sign_adds_signatures_to_narinfos_in_a_bucket() {
    let srv = server();
    let root = extract_root_tar();
    let paths = store_paths();
    let prefix = srv.fresh_prefix("sign");
    let url = srv.url(&prefix);
    ok(
        output(
            srv.command()
                .args(["build-cache", "--quiet", "--to", &url])
                .args(["--store-root", &s(root.path())])
                .args(&paths),
        ),
        "unsigned build",
    );
    let untrusted =
        output(
            srv.command()
                .args(["verify", &url, "--quiet", "--trusted-key", &public_key()]),
        );
    assert_eq!(untrusted.status.code(), Some(2), "unsigned: untrusted");
    ok(
        output(srv.command().args([
            "sign",
            "--key",
            &s(&corpus().join("keys/secret")),
            "--cache",
            &url,
        ])),
        "sign --cache s3://…",
    );
    verify_clean(srv, &url, "sign");
}

// ---------------------------------------------------------------------------------------------
// A synthetic store, for builds that take long enough to be killed

struct Synthetic {
    root: TempTree,
    registration: std::path::PathBuf,
    paths: Vec<String>,
}

/// `count` paths, each referencing the one before, of about `size` bytes (text and random);
/// metadata as a `registration` file.
fn synthetic_store(tag: &str, count: usize, size: usize) -> Synthetic {
    let root = TempTree::new();
    let store = root.path().join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let mut rng = Rng::new(count as u64 * 7 + size as u64);
    let mut paths: Vec<String> = Vec::new();
    let mut registration = String::new();
    for i in 0..count {
        let h = Hash::of(HashAlgo::Sha256, format!("s3 {tag} {i}").as_bytes());
        let path = format!(
            "/nix/store/{}-s3-{tag}-{i:03}",
            nixbase32::encode(&h.digest()[..20])
        );
        let physical = root.path().join(path.trim_start_matches('/'));
        fs::create_dir_all(physical.join("share")).unwrap();
        let refs: Vec<String> = paths.last().cloned().into_iter().collect();
        let mut text = refs
            .iter()
            .map(|r| format!("{r}/bin\n"))
            .collect::<String>();
        while text.len() < size / 2 {
            text.push_str(&format!("line {} of {tag}\n", rng.below(1_000_000)));
        }
        fs::write(physical.join("share/text"), text).unwrap();
        fs::write(physical.join("share/random"), rng.bytes(size / 2)).unwrap();
        let nar = dump_path(&physical, Vec::new(), CaseHack(false)).unwrap();
        registration.push_str(&format!(
            "{path}\n{}\n{}\n\n{}\n",
            to_hex(Hash::of(HashAlgo::Sha256, &nar).digest()),
            nar.len(),
            refs.len()
        ));
        for r in &refs {
            registration.push_str(r);
            registration.push('\n');
        }
        paths.push(path);
    }
    let reg = root.path().join("registration");
    fs::write(&reg, registration).unwrap();
    Synthetic {
        root,
        registration: reg,
        paths,
    }
}

fn build_cmd(srv: &S3Server, store: &Synthetic, url: &str, compression: &str) -> Command {
    let mut cmd = srv.command();
    cmd.args(["build-cache", "--quiet", "--to", url])
        .args(["--store-root", &s(store.root.path())])
        .args(["--registration", &s(&store.registration)])
        .args(["--compression", compression, "--jobs", "2"])
        .args(["--sign", &s(&corpus().join("keys/secret"))])
        .args(&store.paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn narinfo_count(storage: &dyn StorageRead) -> usize {
    nar_tool::cache::storage::list_narinfo_names(storage)
        .unwrap()
        .len()
}

#[test]
fn killed_at_random_then_rerun_always_a_valid_cache() {
    let srv = server();
    let store = synthetic_store("kill", 24, 3 << 20);
    let prefix = srv.fresh_prefix("kill");
    let url = srv.url(&prefix);
    let storage = srv.storage(&prefix);
    let mut rng = Rng::new(99);
    for round in 0..4 {
        let mut child = build_cmd(srv, &store, &url, "none").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200 + rng.below(1500)));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever was cut, every narinfo there has its NAR and its references.
        verify_clean(srv, &url, &format!("kill round {round}"));
    }
    let before = narinfo_count(&storage);
    let out = build_cmd(srv, &store, &url, "none").output().unwrap();
    ok(out, "the rerun");
    assert_eq!(
        narinfo_count(&storage),
        24,
        "complete after the rerun (had {before})"
    );
    verify_clean(srv, &url, "the rerun");
    let leftovers: Vec<String> = storage
        .list_everything()
        .unwrap()
        .into_iter()
        .filter(|n| n.contains("/uploads/") || n.contains("/staging/"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the killed writers' uploads were aborted by the rerun: {leftovers:?}"
    );
}

#[test]
fn two_builders_into_one_bucket_both_succeed() {
    let srv = server();
    let store = synthetic_store("two", 16, 1 << 20);
    let prefix = srv.fresh_prefix("two");
    let url = srv.url(&prefix);
    let a = build_cmd(srv, &store, &url, "zstd").spawn().unwrap();
    let b = build_cmd(srv, &store, &url, "zstd").spawn().unwrap();
    ok(a.wait_with_output().unwrap(), "builder A");
    ok(b.wait_with_output().unwrap(), "builder B");
    assert_eq!(narinfo_count(&srv.storage(&prefix)), 16);
    verify_clean(srv, &url, "two builders");
}

#[test]
fn the_server_stopped_mid_build_then_a_rerun_completes() {
    let dir = TempTree::new();
    let srv = S3Server::start_in(dir.path(), true);
    // Enough bytes that the build is far from done when the server stops (a build of small
    // paths is now quick enough to finish between two looks at the bucket).
    let store = synthetic_store("stop", 60, 4 << 20);
    let prefix = "stopped";
    let url = srv.url(prefix);
    let child = build_cmd(&srv, &store, &url, "none").spawn().unwrap();
    let storage = srv.storage(prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Stopped once the first NAR is up: its narinfo and most of the others are still to come
    // (narinfos go up in batches after their NARs, so waiting for narinfos could let a fast
    // build finish before the stop).
    let nar_count = || {
        nar_tool::cache::storage::list_nar_file_names(&storage)
            .unwrap()
            .len()
    };
    while nar_count() < 1 {
        assert!(Instant::now() < deadline, "the build never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    srv.stop();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build went on without a server");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it gave up after its retries"
    );
    assert!(
        (err.contains("cannot reach") || err.contains("kept failing")) && err.contains("s3://"),
        "a clear error naming the bucket: {err}"
    );
    assert!(err.lines().count() <= 3, "briefly: {err}");
    // The same data on new ports: valid as it was left, complete after a rerun.
    let srv = S3Server::start_in(dir.path(), true);
    let url = srv.url(prefix);
    verify_clean(&srv, &url, "the stop");
    ok(
        build_cmd(&srv, &store, &url, "none").output().unwrap(),
        "the rerun",
    );
    assert_eq!(narinfo_count(&srv.storage(prefix)), 60);
    verify_clean(&srv, &url, "the rerun");
}

// ---------------------------------------------------------------------------------------------
// HTTP caches, read-only

#[test]
fn an_http_cache_is_verified_as_its_directory_is() {
    let cache = corpus().join("caches/zstd");
    let served = ServeProcess::start(&cache, &["--quiet".to_string()]);
    let over_http = run(
        &["verify", &format!("http://{}", served.addr), "--json"],
        b"",
    );
    let from_dir = run(&["verify", &s(&cache), "--json"], b"");
    assert_eq!(over_http.status.code(), from_dir.status.code());
    let strip = |o: &Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_object_mut().unwrap().remove("cache");
        v
    };
    assert_eq!(strip(&over_http), strip(&from_dir), "the same report");

    // A server that publishes no listing: said so, not an empty cache.
    let srv = server();
    let prefix = srv.fresh_prefix("http");
    srv.storage(&prefix)
        .put(&CacheKey::CacheInfo, b"StoreDir: /nix/store\n")
        .unwrap();
    let out = run(&["verify", &srv.anon_base(&prefix)], b"");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "a check that could not run");
    assert!(said.contains("cannot be listed"), "{said}");
    // And it is read-only.
    let out = run(
        &[
            "sign",
            "--key",
            &s(&corpus().join("keys/secret")),
            "--cache",
            &srv.anon_base(&prefix),
        ],
        b"",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
}

// ---------------------------------------------------------------------------------------------
// The verify damage table, on a bucket

/// Uploads every regular file under `dir` to the bucket, under the same relative names.
fn upload_tree(storage: &nar_tool::host::object::ObjectStorage, dir: &Path, rel: &str) {
    for entry in fs::read_dir(dir.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            upload_tree(storage, dir, &child);
        } else if kind.is_file() {
            storage
                .put_raw(&child, &fs::read(entry.path()).unwrap())
                .unwrap();
        }
    }
}

/// The report without the name of the cache, which differs.
fn report_json(out: &Output) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    if let Some(o) = v.as_object_mut() {
        o.remove("cache");
    }
    v
}

#[test]
fn the_damage_table_on_a_bucket_gives_the_directory_report() {
    let srv = server();
    let mut rows = 0;
    for row in damage::rows() {
        if row.storage || !row.report {
            continue; // a damage only a file system can hold (symlinks, FIFOs), or no report
        }
        let tmp = TempTree::new();
        let dir = tmp.path().join("cache");
        copy_dir(&corpus().join("caches").join(&row.cache), &dir);
        row.apply(&dir);
        let prefix = srv.fresh_prefix("damage");
        upload_tree(&srv.storage(&prefix), &dir, "");
        let mut args = vec!["verify".to_string(), "--json".to_string()];
        if row.key {
            args.extend(["--trusted-key".to_string(), public_key()]);
        }
        args.extend(row.args.iter().cloned());
        let from_dir = output(srv.command().args(&args).arg(&dir));
        let from_bucket = output(srv.command().args(&args).arg(srv.url(&prefix)));
        assert_eq!(
            from_bucket.status.code(),
            from_dir.status.code(),
            "{}: exit status",
            row.name
        );
        assert_eq!(
            report_json(&from_bucket),
            report_json(&from_dir),
            "{}: the bucket's report",
            row.name
        );
        rows += 1;
    }
    assert!(rows > 40, "most rows run on a bucket ({rows})");
}
