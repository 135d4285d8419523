//! `nar-tool serve`'s many small files in one response (`GET /_nar-tool/files?key=…`), for the
//! inspector's verifier: the records in the order asked, each status told apart (a file, an
//! empty file, absent, not bundled, not a key), the same bytes a plain GET gives; hostile asks
//! (too many keys, traversal, names outside the layout, huge limits, a symlink leading out, a
//! FIFO) refused or answered as a GET would; the headers of the other listings; auth as for any
//! key; and a slow reader holds one piece.

use std::io::{Read, Write};
use std::path::Path;

use super::serve::{get, request, start_with, Reply};
use super::serve_auth::{add_user, basic};
use crate::common::{self, rss_kib};

const MAGIC: &[u8] = b"nar-tool files 1";
const SENT: u8 = 0;
const ABSENT: u8 = 1;
const NOT_BUNDLED: u8 = 2;
const NOT_A_KEY: u8 = 3;
const END: u8 = 0xFF;

/// A chunked body, de-chunked.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + raw[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&raw[at..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        at = line_end + 2;
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

/// The records of a bundle: (status, bytes); checks the framing and the end record's count.
fn records(reply: &Reply) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = if reply.header("Transfer-Encoding") == Some("chunked") {
        dechunk(&reply.body)
    } else {
        reply.body.clone()
    };
    assert_eq!(&body[..16], MAGIC);
    let mut at = 16;
    let mut out = Vec::new();
    loop {
        let status = body[at];
        let len = u64::from_be_bytes(body[at + 1..at + 9].try_into().unwrap()) as usize;
        at += 9;
        if status == END {
            assert_eq!(len, out.len(), "the end record counts the records");
            assert_eq!(at, body.len(), "nothing after the end record");
            return out;
        }
        assert!(status == SENT || len == 0, "only a sent file has bytes");
        out.push((status, body[at..at + len].to_vec()));
        at += len;
    }
}

fn files(addr: &str, prefix: &str, keys: &[&str], extra: &str) -> Reply {
    let mut q: Vec<String> = keys.iter().map(|k| format!("key={k}")).collect();
    if !extra.is_empty() {
        q.push(extra.to_string());
    }
    get(addr, &format!("{prefix}/_nar-tool/files?{}", q.join("&")))
}

/// The NAR files of a cache, the smallest first.
fn nar_keys(cache: &Path) -> Vec<String> {
    let mut v: Vec<(u64, String)> = std::fs::read_dir(cache.join("nar"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = format!("nar/{}", e.file_name().to_string_lossy());
            (e.metadata().unwrap().len(), name)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, name)| name).collect()
}

const ONE_MIB: &str = "max-file=1048576";

#[test]
fn many_files_in_one_response_each_as_a_get_gives_it() {
    let s = start_with("zstd", |_| vec![]);
    let nars = nar_keys(&s.cache);
    std::fs::write(s.cache.join("nar/0000empty.nar"), b"").unwrap();
    let mut keys: Vec<&str> = nars.iter().map(String::as_str).collect();
    keys.extend([
        "nar/0000empty.nar",
        "nar/1111absent.nar.zst",
        "nix-cache-info",
    ]);
    let reply = files(&s.addr, "", &keys, ONE_MIB);
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(
        reply.header("Content-Security-Policy"),
        Some("default-src 'none'; sandbox")
    );
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some("*"));
    let recs = records(&reply);
    assert_eq!(recs.len(), keys.len());
    let mut sent = 0;
    for (key, (status, bytes)) in keys.iter().zip(&recs) {
        let single = get(&s.addr, &format!("/{key}"));
        sent += bytes.len();
        match *status {
            SENT => assert!(
                single.status == 200 && &single.body == bytes,
                "{key}: {} {} {}",
                single.status,
                single.body.len(),
                bytes.len()
            ),
            ABSENT => assert_eq!(single.status, 404, "{key}"),
            // Over max-file, or past the response's 8 MiB.
            NOT_BUNDLED => assert!(
                single.body.len() > 1 << 20 || sent + single.body.len() > 8 << 20,
                "{key}"
            ),
            other => panic!("{key}: status {other}"),
        }
    }
    let empty = &recs[nars.len()];
    assert_eq!(empty, &(SENT, Vec::new()), "an empty file is sent, empty");
    assert_eq!(
        recs[nars.len() + 1].0,
        ABSENT,
        "an absent one is told apart"
    );
    // HEAD: the headers alone.
    let head = request(&s.addr, "HEAD", "/_nar-tool/files?key=nix-cache-info", &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
}

#[test]
fn hostile_asks_are_refused_or_answered_as_a_get_would() {
    let s = start_with("xz", |_| vec![]);
    let nars = nar_keys(&s.cache);
    // Too many keys: the request is refused whole.
    let many = vec![nars[0].as_str(); 129];
    assert_eq!(files(&s.addr, "", &many, "").status, 400);
    assert_eq!(records(&files(&s.addr, "", &many[..128], "")).len(), 128);
    assert_eq!(files(&s.addr, "", &many[..1], "max-file=x").status, 400);
    // Names outside the layout, traversal (plain and escaped): not keys, nothing read.
    std::fs::write(s.cache.parent().unwrap().join("secret"), b"secret").unwrap();
    let hostile = [
        "../secret",
        "..%2Fsecret",
        "nar/..%2F..%2Fsecret",
        "nar%2F..%2F..%2Fsecret",
        "%2Fetc%2Fpasswd",
        "nar/x.nar%00",
        "_nar-tool/narinfos",
        "index.html",
        "nar/a/b.nar",
        "",
    ];
    let recs = records(&files(&s.addr, "", &hostile, ""));
    assert!(recs.iter().all(|r| r.0 == NOT_A_KEY), "{recs:?}");
    // A symlink leading out and a FIFO in the cache: absent, as a GET says 404.
    let out_link = "nar/0link0.nar";
    std::os::unix::fs::symlink(
        s.cache.parent().unwrap().join("secret"),
        s.cache.join(out_link),
    )
    .unwrap();
    let fifo = "nar/0fifo0.nar";
    let made = std::process::Command::new("mkfifo")
        .arg(s.cache.join(fifo))
        .status()
        .unwrap();
    assert!(made.success());
    let recs = records(&files(&s.addr, "", &[out_link, fifo, &nars[0]], ONE_MIB));
    let statuses: Vec<u8> = recs.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [ABSENT, ABSENT, SENT]);
    assert_eq!(get(&s.addr, &format!("/{out_link}")).status, 404);
    // Huge limits are capped: a file over the cap (1 MiB) is left to a request of its own.
    let big = "nar/0big0.nar";
    std::fs::write(s.cache.join(big), vec![1u8; (1 << 20) + 1]).unwrap();
    let recs = records(&files(
        &s.addr,
        "",
        &[big, &nars[0]],
        "max-file=18446744073709551615&max-bytes=99999999999999",
    ));
    assert_eq!((recs[0].0, recs[1].0), (NOT_BUNDLED, SENT));
    // max-file is honoured below the cap; max-bytes bounds the whole response.
    let size = std::fs::metadata(s.cache.join(&nars[0])).unwrap().len();
    let recs = records(&files(
        &s.addr,
        "",
        &[&nars[0]],
        &format!("max-file={}", size - 1),
    ));
    assert_eq!(recs[0].0, NOT_BUNDLED);
    let recs = records(&files(
        &s.addr,
        "",
        &[&nars[0], &nars[0]],
        &format!("{ONE_MIB}&max-bytes={size}"),
    ));
    assert_eq!((recs[0].0, recs[1].0), (SENT, NOT_BUNDLED));
    // Only GET and HEAD.
    assert_eq!(
        request(&s.addr, "POST", "/_nar-tool/files", &[]).status,
        405
    );
}

#[test]
fn named_caches_and_auth_guard_it_as_any_key() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "pw", &["a"]);
    let a = super::serve_auth::cache_copy(dir.path(), "a", "xz");
    let b = super::serve_auth::cache_copy(dir.path(), "b", "zstd");
    let s = common::ServeProcess::start_args({
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--auth"])
            .arg(&auth)
            .arg("--cache")
            .arg(format!("a={}", a.display()))
            .arg("--cache")
            .arg(format!("b={}", b.display()));
        cmd
    });
    let key = nar_keys(&a)[0].clone();
    let target = format!("/a/_nar-tool/files?key={key}");
    assert_eq!(get(&s.addr, &target).status, 401, "no credentials");
    let good = basic("alice", "pw");
    let ok = request(&s.addr, "GET", &target, &[("Authorization", &good)]);
    assert_eq!(
        records(&ok)[0],
        (SENT, std::fs::read(a.join(&key)).unwrap())
    );
    let other = format!("/b/_nar-tool/files?key={}", nar_keys(&b)[0]);
    assert_eq!(
        request(&s.addr, "GET", &other, &[("Authorization", &good)]).status,
        403,
        "not this principal's cache"
    );
    // Not at the server's own prefix when the caches are named.
    assert_eq!(
        request(
            &s.addr,
            "GET",
            &format!("/_nar-tool/files?key={key}"),
            &[("Authorization", &good)]
        )
        .status,
        404
    );
}

#[test]
fn a_reader_that_stops_holds_one_piece() {
    let s = start_with("none", |_| vec![]);
    // Files of 512 KiB, 16 of them: 8 MiB asked for, never read.
    let mut keys = Vec::new();
    for i in 0..16 {
        let key = format!("nar/{i:04}big.nar");
        std::fs::write(s.cache.join(&key), vec![i as u8; 512 << 10]).unwrap();
        keys.push(key);
    }
    let q: Vec<String> = keys.iter().map(|k| format!("key={k}")).collect();
    let target = format!("/_nar-tool/files?max-file=1048576&{}", q.join("&"));
    let pid = s.process.pid();
    let before = rss_kib(pid);
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
        write!(c, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        held.push(c);
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let grown = rss_kib(pid).saturating_sub(before);
    // 32 × 8 MiB were asked for; each connection may hold a piece and hyper's buffer.
    assert!(grown < 32 * 1024, "{grown} KiB for 32 stopped readers");
    // They are still served in full when they read.
    let mut c = held.pop().unwrap();
    let mut raw = Vec::new();
    c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        raw.extend_from_slice(&buf[..n]);
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let reply = Reply {
        status: 200,
        headers: vec![("Transfer-Encoding".into(), "chunked".into())],
        body: raw[split + 4..].to_vec(),
    };
    let recs = records(&reply);
    assert_eq!(recs.len(), 16);
    assert!(recs.iter().all(|r| r.0 == SENT && r.1.len() == 512 << 10));
}
