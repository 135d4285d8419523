//! Object storage at its limits, against the real S3 server: a staged object larger than one
//! `CopyObject` may copy goes to its key by parts (the limit made tiny here), and an endpoint
//! that refuses connections is given up on sooner than one that answers 5xx.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::s3::server;
use nar_tool::cache::layout::{CacheKey, KeyDir};
use nar_tool::cache::storage::{Committed, Put, StorageRead, StorageWrite};
use nar_tool::host::object::{Credentials, ObjectStorage, S3Options};

fn storage_copying_by_parts(prefix: &str, copy_limit: u64) -> ObjectStorage {
    let srv = server();
    ObjectStorage::s3_with(
        &srv.location(prefix),
        &S3Options {
            part_size: 5 << 20,
            credentials: Some(Credentials {
                key: srv.key.clone(),
                secret: srv.secret.clone(),
            }),
            copy_limit,
        },
    )
    .unwrap()
}

/// What is left under the prefix, but owner records.
fn left(storage: &ObjectStorage) -> Vec<String> {
    storage
        .list_everything()
        .unwrap()
        .into_iter()
        .filter(|n| !n.starts_with(".nar-tool/owners/"))
        .collect()
}

#[test]
fn a_staged_object_past_the_copy_limit_goes_to_its_key_by_parts() {
    let srv = server();
    let prefix = srv.fresh_prefix("big-copy");
    let data: Vec<u8> = (0..(16u32 << 20) + 4321)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let put = |storage: &ObjectStorage, key: &CacheKey| {
        let mut staged = storage.stage(KeyDir::Nar).unwrap();
        for piece in data.chunks(1 << 20) {
            staged.write_all(piece).unwrap();
        }
        staged.commit(key, Put::IfAbsent).unwrap()
    };
    // Past the limit (6 MiB): copied by parts; under it (the default, 5 GiB): one CopyObject.
    let by_parts = storage_copying_by_parts(&prefix, 6 << 20);
    by_parts.prepare().unwrap();
    let big = CacheKey::parse("nar/1bycopyparts.nar").unwrap();
    assert_eq!(put(&by_parts, &big), Committed::Written);
    let copied = storage_copying_by_parts(&prefix, nar_tool::host::object::COPY_LIMIT);
    copied.prepare().unwrap();
    let small = CacheKey::parse("nar/1bycopyobject.nar").unwrap();
    assert_eq!(put(&copied, &small), Committed::Written);
    for key in [&big, &small] {
        let mut back = Vec::new();
        let mut object = by_parts.open(key).unwrap().unwrap();
        object.body.read_to_end(&mut back).unwrap();
        assert!(back == data, "{key} read back whole");
    }
    // The copy by parts is an upload of its own, in parts twice the staging's: 16 MiB staged in
    // 5 MiB parts (an ETag of 4 parts, kept by a CopyObject), copied in 10 MiB parts (2).
    let etag = |key: &CacheKey| by_parts.stat(key).unwrap().unwrap().etag;
    assert!(
        etag(&big).trim_matches('"').ends_with("-2"),
        "ETag {}",
        etag(&big)
    );
    assert!(
        etag(&small).trim_matches('"').ends_with("-4"),
        "ETag {}",
        etag(&small)
    );
    // "If absent" holds: the key taken, nothing is written.
    assert_eq!(put(&by_parts, &big), Committed::AlreadyThere);
    let mut names = left(&by_parts);
    names.sort();
    assert_eq!(
        names,
        vec!["nar/1bycopyobject.nar", "nar/1bycopyparts.nar"],
        "no staged object, no upload record left"
    );
}

/// `nar-tool` with the test credentials and `NAR_TOOL_S3_RETRY_SECONDS` as given.
fn command(retry_seconds: u64) -> Command {
    let mut cmd = server().command();
    cmd.env("NAR_TOOL_S3_RETRY_SECONDS", retry_seconds.to_string())
        .stdin(Stdio::null());
    cmd
}

/// A port nobody listens on (bound by the kernel, then closed).
fn refusing_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server answering every request with 503, until dropped.
struct Failing {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Failing {
    fn start() -> Failing {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut head = Vec::new();
                            let mut byte = [0u8];
                            while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
                                match conn.read(&mut byte) {
                                    Ok(1) => head.push(byte[0]),
                                    _ => return,
                                }
                            }
                            let _ = conn.write_all(
                                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Failing { port, stop }
    }
}

impl Drop for Failing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How long `build-cache --to URL` and `verify URL` take to fail (run at once), and their errors.
fn time_to_fail(url: &str, retry_seconds: u64) -> Vec<(Duration, String)> {
    let root = crate::common::extract_root_tar();
    let paths = crate::common::store_paths();
    let mut build = command(retry_seconds);
    build
        .args(["build-cache", "--quiet", "--store-root"])
        .arg(root.path())
        .args(["--to", url])
        .args(&paths[..2]);
    let mut verify = command(retry_seconds);
    verify.args(["verify", "--quiet", url]);
    let started = Instant::now();
    let children: Vec<_> = [build, verify]
        .iter_mut()
        .map(|c| c.stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(!out.status.success(), "{url}: succeeded");
            (
                started.elapsed(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_refused_connection_is_given_up_sooner_than_a_failing_server() {
    let bucket = &server().bucket;
    let url = |port: u16| format!("s3://{bucket}/gone?endpoint=127.0.0.1:{port}&scheme=http");
    // Retried for 20 s: a server answering 503 is asked for all of it; connections refused on
    // every try are given up after 5 s (the next try, after a backoff of at most 5 s).
    let failing = Failing::start();
    let (refused, answered) = std::thread::scope(|s| {
        let refused = s.spawn(|| time_to_fail(&url(refusing_port()), 20));
        let answered = s.spawn(|| time_to_fail(&url(failing.port), 20));
        (refused.join().unwrap(), answered.join().unwrap())
    });
    // (what, the tries, the error's words, the least and the most time to give up)
    let cases = [
        ("refused", &refused, "cannot reach", Duration::ZERO, 15),
        (
            "503",
            &answered,
            "kept failing",
            Duration::from_secs(20),
            60,
        ),
    ];
    for (what, tries, words, least, most) in cases {
        for (took, err) in tries {
            assert!(err.contains(words), "{what}: {err}");
            assert!(
                err.contains(&format!("s3://{bucket}/gone")),
                "{what}: names the bucket: {err}"
            );
            assert!(
                *took >= least && *took < Duration::from_secs(most),
                "{what}: gave up after {took:?}: {err}"
            );
        }
    }
}
