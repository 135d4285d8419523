//! `nar-tool serve` over loopback: what Nix needs (content types, HEAD, ranges, conditional
//! requests), path-traversal attempts refused, concurrent clients served every byte, the real Nix
//! substituting a closure over HTTP, and a clean stop on Ctrl-C.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

pub(crate) struct Server {
    pub(crate) process: common::ServeProcess,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
    pub(crate) cache: PathBuf,
}

/// Serves a copy of a corpus cache on a free loopback port.
fn start(cache_name: &str) -> Server {
    start_with(cache_name, |_| vec![])
}

/// Serves a copy of a corpus cache with extra arguments, made from the temporary directory.
pub(crate) fn start_with(cache_name: &str, extra: impl FnOnce(&Path) -> Vec<String>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    copy_dir(&common::corpus().join("caches").join(cache_name), &cache);
    let extra = extra(dir.path());
    let process = common::ServeProcess::start(&cache, &extra);
    Server {
        addr: process.addr.clone(),
        process,
        _dir: dir,
        cache,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
    common::make_writable(to);
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One raw HTTP/1.1 request (the target is sent exactly as given, unnormalised).
pub(crate) fn request(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

pub(crate) fn get(addr: &str, target: &str) -> Reply {
    request(addr, "GET", target, &[])
}

fn nar_files(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join("nar"))
        .unwrap()
        .map(|e| format!("nar/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    v.sort();
    v
}

#[test]
fn serves_a_binary_cache_with_the_right_types_and_bytes() {
    let s = start("xz");
    let info = get(&s.addr, "/nix-cache-info");
    assert_eq!(info.status, 200);
    assert_eq!(info.header("Content-Type"), Some("text/x-nix-cache-info"));
    assert_eq!(
        info.body,
        std::fs::read(s.cache.join("nix-cache-info")).unwrap()
    );
    let ni = get(&s.addr, "/12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo");
    assert_eq!(
        (ni.status, ni.header("Content-Type")),
        (200, Some("text/x-nix-narinfo"))
    );
    let nar = &nar_files(&s.cache)[0];
    let r = get(&s.addr, &format!("/{nar}"));
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (200, Some("application/x-nix-nar"))
    );
    assert_eq!(r.body, std::fs::read(s.cache.join(nar)).unwrap());
    let ls = get(&s.addr, "/12221svl9zlcqbffq6hxanhsxsk7wlyr.ls");
    assert_eq!(ls.header("Content-Type"), Some("application/json"));
    assert_eq!(
        get(&s.addr, "/0000000000000000000000000000000a.narinfo").status,
        404
    );
    assert_eq!(request(&s.addr, "POST", "/nix-cache-info", &[]).status, 405);
    let pre = request(
        &s.addr,
        "OPTIONS",
        &format!("/{nar}"),
        &[
            ("Origin", "http://elsewhere.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(pre
        .header("Access-Control-Allow-Headers")
        .is_some_and(|h| h.contains("Range")));
}

#[test]
fn head_ranges_and_conditional_requests() {
    let s = start("xz");
    let nar = nar_files(&s.cache)
        .into_iter()
        .max_by_key(|f| std::fs::metadata(s.cache.join(f)).unwrap().len())
        .unwrap();
    let bytes = std::fs::read(s.cache.join(&nar)).unwrap();
    let target = format!("/{nar}");
    let head = request(&s.addr, "HEAD", &target, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("Content-Length"),
        Some(bytes.len().to_string().as_str())
    );
    let part = request(&s.addr, "GET", &target, &[("Range", "bytes=100-199")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &bytes[100..200]);
    assert_eq!(
        part.header("Content-Range"),
        Some(format!("bytes 100-199/{}", bytes.len()).as_str())
    );
    let tail = request(&s.addr, "GET", &target, &[("Range", "bytes=-10")]);
    assert_eq!(tail.body, &bytes[bytes.len() - 10..]);
    let beyond = request(
        &s.addr,
        "GET",
        &target,
        &[("Range", &format!("bytes={}-", bytes.len()))],
    );
    assert_eq!(beyond.status, 416);
    let etag = head.header("ETag").unwrap().to_string();
    assert_eq!(
        request(&s.addr, "GET", &target, &[("If-None-Match", &etag)]).status,
        304
    );
    let lm = head.header("Last-Modified").unwrap().to_string();
    assert_eq!(
        request(&s.addr, "GET", &target, &[("If-Modified-Since", &lm)]).status,
        304
    );
}

#[test]
fn never_serves_a_byte_from_outside_the_cache() {
    let s = start("xz");
    std::os::unix::fs::symlink("/etc/passwd", s.cache.join("escape.narinfo")).unwrap();
    std::os::unix::fs::symlink("/etc", s.cache.join("nar/etc")).unwrap();
    for target in [
        "/../../../../etc/passwd",
        "/nar/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/nar/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/escape.narinfo",
        "/nar/etc/passwd",
        "/nix-cache-info%00.narinfo",
        "/nar\\..\\..\\etc\\passwd",
    ] {
        let r = get(&s.addr, target);
        assert!(matches!(r.status, 400 | 404), "{target}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{target} leaked /etc/passwd"
        );
    }
}

#[test]
fn many_concurrent_clients_get_every_byte() {
    let s = start("zstd");
    let files: Vec<(String, Vec<u8>)> = nar_files(&s.cache)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(s.cache.join(&f)).unwrap();
            (f, b)
        })
        .collect();
    let files = std::sync::Arc::new(files);
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let (addr, files) = (s.addr.clone(), files.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let (name, bytes) = &files[(t * 7 + i) % files.len()];
                    let r = get(&addr, &format!("/{name}"));
                    assert_eq!(r.status, 200, "{name}");
                    assert!(r.body == *bytes, "{name}: body differs");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a client thread failed");
    }
}

/// A page of one of the inspector's listings.
#[derive(serde::Deserialize)]
pub(crate) struct Page<T> {
    pub(crate) total: usize,
    pub(crate) offset: usize,
    pub(crate) items: Vec<T>,
    pub(crate) next: Option<usize>,
}

/// One page of `/_nar-tool/<what>?<query>`, checked to be a page.
pub(crate) fn page<T: serde::de::DeserializeOwned>(addr: &str, what: &str, query: &str) -> Page<T> {
    let r = get(addr, &format!("/_nar-tool/{what}?{query}"));
    assert_eq!(
        (r.status, r.header("Content-Type")),
        (200, Some("application/json")),
        "{what}?{query}"
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// A whole listing, page after page.
pub(crate) fn listing<T: serde::de::DeserializeOwned>(addr: &str, what: &str) -> Vec<T> {
    let mut items = Vec::new();
    let mut offset = 0;
    loop {
        let p: Page<T> = page(addr, what, &format!("offset={offset}"));
        assert_eq!(p.offset, offset);
        items.extend(p.items);
        match p.next {
            Some(next) => {
                assert!(next > offset, "a page moves on");
                offset = next;
            }
            None => return items,
        }
    }
}

#[test]
fn lists_narinfos_and_nar_files_for_the_inspector() {
    let s = start("xz");
    std::fs::write(s.cache.join("nar/.tmp-partial"), b"x").unwrap();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        s.cache.join("0000000000000000000000000000000a.narinfo"),
    )
    .unwrap();
    let names: Vec<String> = listing(&s.addr, "narinfos");
    let mut want: Vec<String> = std::fs::read_dir(&s.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".narinfo") && !n.starts_with("00000"))
        .collect();
    want.sort();
    assert_eq!(names.len(), 9);
    assert_eq!(
        names, want,
        "narinfos; a symlink out of the cache is not listed"
    );
    let p: Page<String> = page(&s.addr, "narinfos", "offset=2&limit=3");
    assert_eq!((p.total, p.next), (9, Some(5)));
    assert_eq!(p.items, want[2..5]);
    let nars: Vec<String> = listing(&s.addr, "nar-files");
    let mut want = nar_files(&s.cache);
    want.retain(|n| !n.starts_with("nar/."));
    assert_eq!(nars, want);
    assert_eq!(get(&s.addr, "/_nar-tool/other").status, 404);
    assert_eq!(
        request(&s.addr, "HEAD", "/_nar-tool/narinfos", &[]).status,
        200
    );
}

#[test]
fn gives_narinfo_texts_a_page_at_a_time() {
    let s = start("xz");
    let names: Vec<String> = listing(&s.addr, "narinfos");
    let mut seen = Vec::new();
    for offset in (0..names.len()).step_by(4) {
        let p: Page<(String, Option<String>)> = page(
            &s.addr,
            "narinfo-texts",
            &format!("offset={offset}&limit=4"),
        );
        assert_eq!(p.total, 9);
        for (name, text) in p.items {
            assert_eq!(
                text.as_deref().map(str::as_bytes),
                Some(std::fs::read(s.cache.join(&name)).unwrap().as_slice())
            );
            seen.push(name);
        }
    }
    assert_eq!(seen, names, "the pages cover the listing, in order");
    let all: Page<(String, Option<String>)> = page(&s.addr, "narinfo-texts", "");
    assert_eq!(
        (all.items.len(), all.next),
        (9, None),
        "default: all of few"
    );
    let beyond: Page<(String, Option<String>)> = page(&s.addr, "narinfo-texts", "offset=100");
    assert!(beyond.items.is_empty() && beyond.next.is_none());
    assert_eq!(
        get(&s.addr, "/_nar-tool/narinfo-texts?offset=x").status,
        400
    );
}

/// The inspector's folder and the package's (its browser entry and wasm build at `/pkg/`),
/// made in `tmp`; returns the arguments that serve them (`--inspector WWW --pkg PKG`).
fn inspector_args(tmp: &Path) -> Vec<String> {
    let www = tmp.join("www");
    let pkg = tmp.join("pkg");
    std::fs::create_dir_all(www.join("js")).unwrap();
    for dir in ["lib", "wasm", "test", "node_modules/x"] {
        std::fs::create_dir_all(pkg.join(dir)).unwrap();
    }
    std::fs::write(
        www.join("index.html"),
        "<!doctype html><title>inspector</title>",
    )
    .unwrap();
    std::fs::write(www.join("js/app.js"), "export {}").unwrap();
    std::fs::write(www.join("style.css"), "body{}").unwrap();
    std::fs::write(pkg.join("browser.js"), "export {}").unwrap();
    std::fs::write(pkg.join("lib/api.js"), "export {}").unwrap();
    std::fs::write(pkg.join("wasm/nar_tool.js"), "export default 1").unwrap();
    std::fs::write(pkg.join("wasm/nar_tool_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    // What the browser entry does not need is not served.
    for file in [
        "index.js",
        "package.json",
        "test/a.js",
        "node_modules/x/index.js",
    ] {
        std::fs::write(pkg.join(file), "secret").unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", pkg.join("wasm/passwd.js")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", pkg.join("lib/passwd.js")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", www.join("passwd.js")).unwrap();
    vec![
        "--inspector".into(),
        www.display().to_string(),
        "--pkg".into(),
        pkg.display().to_string(),
    ]
}

#[test]
fn serves_the_inspector_and_the_package_never_escaping() {
    let s = start_with("none", inspector_args);
    // `/` leads to the inspector, with its query.
    let root = get(&s.addr, "/?cache=http%3A%2F%2Fx%2F");
    assert_eq!(
        (root.status, root.header("Location")),
        (302, Some("_nar-tool/?cache=http%3A%2F%2Fx%2F"))
    );
    assert_eq!(
        get(&s.addr, "/_nar-tool").header("Location"),
        Some("_nar-tool/")
    );
    let index = get(&s.addr, "/_nar-tool/");
    assert_eq!(
        (index.status, index.header("Content-Type")),
        (200, Some("text/html; charset=utf-8"))
    );
    assert!(String::from_utf8_lossy(&index.body).contains("inspector"));
    for (target, ty) in [
        ("/_nar-tool/js/app.js", "text/javascript; charset=utf-8"),
        ("/_nar-tool/style.css", "text/css; charset=utf-8"),
        (
            "/_nar-tool/pkg/browser.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/_nar-tool/pkg/lib/api.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/_nar-tool/pkg/wasm/nar_tool.js",
            "text/javascript; charset=utf-8",
        ),
        ("/_nar-tool/pkg/wasm/nar_tool_bg.wasm", "application/wasm"),
        ("/_nar-tool/index.html", "text/html; charset=utf-8"),
    ] {
        let r = get(&s.addr, target);
        assert_eq!(
            (r.status, r.header("Content-Type")),
            (200, Some(ty)),
            "{target}"
        );
    }
    assert_eq!(
        get(&s.addr, "/_nar-tool/pkg/wasm/nar_tool_bg.wasm").body,
        b"\0asm\x01\0\0\0"
    );
    // The cache itself is still served beside them.
    assert_eq!(get(&s.addr, "/nix-cache-info").status, 200);
    for target in [
        "/_nar-tool/pkg/wasm/passwd.js",
        "/_nar-tool/pkg/lib/passwd.js",
        "/_nar-tool/passwd.js",
        "/_nar-tool/package.json",
        "/_nar-tool/test/e2e.test.mjs",
        "/_nar-tool/pkg/index.js",
        "/_nar-tool/pkg/package.json",
        "/_nar-tool/pkg/test/a.js",
        "/_nar-tool/pkg/node_modules/x/index.js",
        "/_nar-tool/pkg/",
        "/_nar-tool/pkg/wasm/",
        "/_nar-tool/js/",
        "/_nar-tool/pkg/wasm/../../etc/passwd",
        "/_nar-tool/pkg/wasm/%2e%2e/%2e%2e/etc/passwd",
        "/_nar-tool/pkg/lib/%2e%2e/index.js",
        "/_nar-tool/js/../../../etc/passwd",
        "/_nar-tool/pkg/wasm/missing.js",
        // Where they were before the prefix: nothing there now.
        "/index.html",
        "/js/app.js",
        "/style.css",
        "/pkg/browser.js",
        "/pkg/wasm/nar_tool.js",
    ] {
        let r = get(&s.addr, target);
        assert!(matches!(r.status, 400 | 404), "{target}: {}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("root:") && !body.contains("secret"),
            "{target} leaked"
        );
    }
}

#[test]
fn a_cache_cannot_pose_as_the_inspector() {
    // A cache holding what would run as the inspector, or as a page, were it served.
    let s = start_with("none", |tmp| {
        let args = inspector_args(tmp);
        let cache = tmp.join("cache");
        let script = "window.__pwned = 1; alert(1)";
        let page = "<!doctype html><script>window.__pwned = 1</script>";
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
        for dir in ["js", "_nar-tool/js", "log", "nar", "pkg"] {
            std::fs::create_dir_all(cache.join(dir)).unwrap();
        }
        for (name, text) in [
            ("js/app.js", script),
            ("_nar-tool/js/app.js", script),
            ("_nar-tool/index.html", page),
            ("pkg/browser.js", script),
            ("index.html", page),
            ("logo.svg", svg),
            ("nar/logo.svg", svg),
            ("log/logo.svg", svg),
            ("log/page.html", page),
        ] {
            std::fs::write(cache.join(name), text).unwrap();
        }
        args
    });
    for target in [
        "/js/app.js",
        "/index.html",
        "/logo.svg",
        "/nar/logo.svg",
        "/pkg/browser.js",
    ] {
        let r = get(&s.addr, target);
        assert_eq!(r.status, 404, "{target}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("pwned"),
            "{target}"
        );
    }
    // The inspector's names are the inspector's files, never the cache's.
    for target in [
        "/_nar-tool/js/app.js",
        "/_nar-tool/",
        "/_nar-tool/pkg/browser.js",
    ] {
        let r = get(&s.addr, target);
        assert_eq!(r.status, 200, "{target}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("pwned"),
            "{target}"
        );
    }
    // A build log may be named anything: it is served as the text it is, never as a page.
    for target in ["/log/logo.svg", "/log/page.html"] {
        let r = get(&s.addr, target);
        assert_eq!(
            (r.status, r.header("Content-Type")),
            (200, Some("text/plain; charset=utf-8")),
            "{target}"
        );
    }
}

#[test]
fn every_reply_is_nosniff_and_only_the_servers_own_pages_may_run_script() {
    let s = start_with("xz", inspector_args);
    let nar = &nar_files(&s.cache)[0];
    let data = "default-src 'none'; sandbox";
    for target in [
        "/nix-cache-info".to_string(),
        "/12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo".into(),
        "/12221svl9zlcqbffq6hxanhsxsk7wlyr.ls".into(),
        format!("/{nar}"),
        "/_nar-tool/narinfos".into(),
        "/missing.narinfo".into(),
        "/_nar-tool/pkg/wasm/nar_tool_bg.wasm".into(),
    ] {
        let r = get(&s.addr, &target);
        assert_eq!(
            r.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{target}"
        );
        assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"), "{target}");
        assert_eq!(r.header("Content-Security-Policy"), Some(data), "{target}");
    }
    let page = get(
        &s.addr,
        "/_nar-tool/?cache=http%3A%2F%2Fcache.example%3A8080%2Fx%2F&allow=javascript%3Aalert(1)&allow=https://other.example",
    );
    let csp = page.header("Content-Security-Policy").unwrap();
    assert!(
        csp.contains("connect-src 'self' http://cache.example:8080 https://other.example;"),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("javascript"),
        "{csp}"
    );
    let script = get(
        &s.addr,
        "/_nar-tool/js/app.js?cache=https%3A%2F%2Fc.example%2F",
    );
    assert!(script
        .header("Content-Security-Policy")
        .unwrap()
        .contains("connect-src 'self' https://c.example;"));
}

#[test]
fn a_binary_away_from_its_checkout_serves_its_built_in_inspector_or_says_how_to_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("nar-tool");
    std::fs::copy(common::bin(), &bin).unwrap();
    let cache = dir.path().join("cache");
    copy_dir(&common::corpus().join("caches/xz"), &cache);
    let process = common::ServeProcess::start_cmd(
        std::process::Command::new(&bin),
        &cache.to_string_lossy(),
        &[],
    );
    let root = get(&process.addr, "/");
    let page = get(&process.addr, "/_nar-tool/");
    let wasm = get(&process.addr, "/_nar-tool/pkg/wasm/nar_tool_bg.wasm");
    if cfg!(feature = "embed-inspector") {
        assert_eq!(root.status, 302);
        assert_eq!((page.status, wasm.status), (200, 200));
        assert_eq!(&wasm.body[..4], b"\0asm");
    } else {
        // No checkout beside it, nothing built in: `/` says so and how to have one.
        assert_eq!(root.status, 200);
        let text = String::from_utf8_lossy(&root.body);
        assert!(text.contains("no inspector"), "{text}");
        assert!(text.contains("--features embed-inspector"), "{text}");
        assert!(text.contains("--inspector DIR"), "{text}");
        assert_eq!((page.status, wasm.status), (404, 404));
    }
}

#[test]
fn serves_a_wasm_build_given_apart_at_pkg_wasm() {
    let s = start_with("none", |tmp| {
        let mut args = inspector_args(tmp);
        let wasm = tmp.join("wasm-build");
        std::fs::create_dir_all(&wasm).unwrap();
        std::fs::write(wasm.join("nar_tool.js"), "export default 2").unwrap();
        args.extend(["--wasm".into(), wasm.display().to_string()]);
        args
    });
    assert_eq!(
        get(&s.addr, "/_nar-tool/pkg/wasm/nar_tool.js").body,
        b"export default 2"
    );
    assert_eq!(
        get(&s.addr, "/_nar-tool/pkg/wasm/nar_tool_bg.wasm").status,
        404
    );
    assert_eq!(get(&s.addr, "/_nar-tool/pkg/browser.js").status, 200);
}

/// Reads one response's status line and headers from a kept-alive connection (no body).
fn read_head(r: &mut BufReader<TcpStream>) -> Reply {
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status in {status_line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Reply {
        status,
        headers,
        body: Vec::new(),
    }
}

/// Reads one response (head and Content-Length body) from a kept-alive connection.
fn read_reply(r: &mut BufReader<TcpStream>) -> Reply {
    let mut reply = read_head(r);
    let len: usize = reply
        .header("Content-Length")
        .map(|n| n.parse().unwrap())
        .unwrap_or(0);
    reply.body = vec![0; len];
    r.read_exact(&mut reply.body).unwrap();
    reply
}

#[test]
fn keeps_connections_alive_and_answers_pipelined_requests_in_order() {
    let s = start("xz");
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    let nar = &nar_files(&s.cache)[0];
    let pipelined = format!(
        "GET /nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n\
         HEAD /{nar} HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /{nar} HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /missing.narinfo HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    conn.write_all(pipelined.as_bytes()).unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let info = read_reply(&mut r);
    assert_eq!(info.status, 200);
    assert_eq!(
        info.body,
        std::fs::read(s.cache.join("nix-cache-info")).unwrap()
    );
    // HTTP/1.1 keeps the connection by default: no `Connection: close`.
    assert_ne!(info.header("Connection"), Some("close"));
    // HEAD: the length of the file, no body (the next reply follows at once).
    let head = read_head(&mut r);
    let bytes = std::fs::read(s.cache.join(nar)).unwrap();
    let length = bytes.len().to_string();
    assert_eq!(head.header("Content-Length"), Some(length.as_str()));
    let whole = read_reply(&mut r);
    assert_eq!((whole.status, whole.body == bytes), (200, true));
    assert_eq!(read_reply(&mut r).status, 404);
    // Still open: one more request on the same connection, asking to close.
    conn.write_all(b"GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = read_reply(&mut r);
    assert_eq!(
        (last.status, last.header("Connection")),
        (200, Some("close"))
    );
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closes after Connection: close");
}

#[test]
fn a_new_connection_is_served_while_many_others_sit_idle() {
    // Browsers open several connections at once and keep them open: none of them may hold up
    // another (tiny_http's task pool could leave a new connection unread until one closed).
    let s = start("xz");
    for round in 0..20 {
        let idle: Vec<TcpStream> = (0..12)
            .map(|_| TcpStream::connect(&s.addr).unwrap())
            .collect();
        let t0 = std::time::Instant::now();
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let addr = s.addr.clone();
                std::thread::spawn(move || get(&addr, "/nix-cache-info").status)
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "round {round}: requests waited {:?} behind idle connections",
            t0.elapsed()
        );
        drop(idle);
    }
}

#[test]
fn malformed_requests_get_400_and_http10_closes() {
    let s = start("none");
    for raw in [
        "NONSENSE\r\n\r\n",
        "GET /nix-cache-info HTTP/2.0\r\n\r\n",
        "GET nix-cache-info HTTP/1.1\r\n\r\n",
        "GET /nix-cache-info HTTP/1.1\r\nno colon here\r\n\r\n",
    ] {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{raw:?}: {text}");
    }
    let mut huge = String::from("GET /nix-cache-info HTTP/1.1\r\n");
    for i in 0..2000 {
        huge.push_str(&format!("X-Filler-{i}: {}\r\n", "y".repeat(20)));
    }
    huge.push_str("\r\n");
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let _ = c.write_all(huge.as_bytes());
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    // 400, or 431 (Request Header Fields Too Large), which is what it is.
    assert!(
        text.starts_with("HTTP/1.1 400 ") || text.starts_with("HTTP/1.1 431 "),
        "{text}"
    );
    // HTTP/1.0 without keep-alive: one reply, then the connection closes.
    let mut c = TcpStream::connect(&s.addr).unwrap();
    c.write_all(b"GET /nix-cache-info HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    // An HTTP/1.0 client is answered in HTTP/1.0.
    assert!(
        text.starts_with("HTTP/1.0 200 ") || text.starts_with("HTTP/1.1 200 "),
        "{text}"
    );
}

#[test]
fn nix_substitutes_a_closure_over_http() {
    if Command::new("nix").arg("--version").output().is_err() {
        println!("SKIP: nix is not installed");
        return;
    }
    let s = start("xz");
    let client = tempfile::tempdir().unwrap();
    let key = std::fs::read_to_string(common::corpus().join("keys/public")).unwrap();
    let top = "/nix/store/z8w6vc8pyk06rr4fm1h99ciaifp1kqdp-closure-top-public";
    let out = common::nix_copy_from(&format!("http://{}", s.addr), client.path(), &key, &[top]);
    assert!(
        out.status.success(),
        "nix copy over http failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = std::fs::read_dir(client.path().join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-public"))
        .collect();
    assert_eq!(
        got.len(),
        8,
        "the closure of closure-top has 8 paths: {got:?}"
    );
}

#[test]
fn stops_cleanly_on_ctrl_c() {
    let mut s = start("none");
    assert_eq!(get(&s.addr, "/nix-cache-info").status, 200);
    unsafe_sigint(s.process.pid());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = s.process.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop within 10 s of SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn unsafe_sigint(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}
