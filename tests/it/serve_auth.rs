//! `nar-tool serve --auth`: the auth file written by `nar-tool auth` (no secret in clear), HTTP
//! Basic and bearer tokens, each principal its caches, 401/403 otherwise, hostile headers refused,
//! the real Nix substituting with a netrc-file (and failing without the right one), a wrong name
//! and a wrong secret indistinguishable in time, failures from one address slowed down.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::common;

/// `nar-tool auth add FILE NAME [--cache C]…` with `secret` on stdin.
pub(crate) fn add_user(file: &Path, name: &str, secret: &str, caches: &[&str]) {
    let mut args = vec!["auth", "add", file.to_str().unwrap(), name];
    for c in caches {
        args.extend(["--cache", c]);
    }
    common::run_ok(&args, format!("{secret}\n").as_bytes());
}

pub(crate) fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

/// A copy of a corpus cache in `dir`.
pub(crate) fn cache_copy(dir: &Path, name: &str, corpus_cache: &str) -> PathBuf {
    let to = dir.join(name);
    let ok = Command::new("cp")
        .arg("-r")
        .arg(common::corpus().join("caches").join(corpus_cache))
        .arg(&to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    to
}

/// One request (the connection closed after it), from `from` when given: status, head, body,
/// and how long the answer took.
pub(crate) fn request(
    addr: &str,
    from: Option<Ipv4Addr>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>, Duration) {
    let target: SocketAddr = addr.parse().unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = from {
            socket.bind(SocketAddr::from((ip, 0))).unwrap();
        }
        socket.connect(target).await.unwrap()
    });
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let took = started.elapsed();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, out[split + 4..].to_vec(), took)
}

fn status(addr: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    request(addr, None, path, headers).0
}

#[test]
fn the_auth_file_holds_hashes_and_serve_lets_in_only_its_principals() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "correct horse", &[]);
    let text = std::fs::read_to_string(&auth).unwrap();
    assert!(text.contains("alice:$argon2id$"), "{text}");
    assert!(!text.contains("correct horse"));
    let mode = std::fs::metadata(&auth).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
    // A generated secret is printed once, with its bearer token.
    let out = common::run_ok(
        &["auth", "add", auth.to_str().unwrap(), "ci", "--generate"],
        b"",
    );
    let out = common::stdout_str(&out);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("bearer token: "))
        .unwrap()
        .to_string();
    assert!(token.starts_with("ci."));

    let cache = cache_copy(dir.path(), "cache", "xz");
    let s = common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let (code, head, _, _) = request(&s.addr, None, "/nix-cache-info", &[]);
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"nar-tool\""),
        "{head}"
    );
    let good = basic("alice", "correct horse");
    assert_eq!(
        status(&s.addr, "/nix-cache-info", &[("Authorization", &good)]),
        200
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        status(&s.addr, "/nix-cache-info", &[("Authorization", &bearer)]),
        200
    );
    // A page of the inspector that says so is challenged with Bearer: no browser prompt.
    let (code, head, _, _) = request(
        &s.addr,
        None,
        "/nix-cache-info",
        &[("X-Requested-With", "nar-tool")],
    );
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm"),
        "{head}"
    );
    // The listings are the cache's too; the inspector's own files are not.
    assert_eq!(status(&s.addr, "/_nar-tool/narinfos", &[]), 401);
    assert_eq!(
        status(&s.addr, "/_nar-tool/narinfos", &[("Authorization", &good)]),
        200
    );
    // A preflight carries no credentials and may ask to send them.
    let c = std::process::Command::new("curl")
        .args(["-s", "-X", "OPTIONS", "-D", "-", "-o", "/dev/null"])
        .arg(format!("http://{}/nix-cache-info", s.addr))
        .output();
    if let Ok(c) = c {
        let text = String::from_utf8_lossy(&c.stdout);
        assert!(text.starts_with("HTTP/1.1 204"), "{text}");
        assert!(text.contains("Authorization"), "{text}");
    }
}

#[test]
fn hostile_or_wrong_credentials_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "pw", &[]);
    let cache = cache_copy(dir.path(), "cache", "none");
    let s = common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let long = format!("Basic {}", "A".repeat(8000));
    let huge = "B".repeat(15_000);
    let wrong = [
        basic("alice", "PW"),
        basic("mallory", "pw"),
        basic("alice", ""),
        basic("al:ice", "pw"),
        "Basic".into(),
        "Basic ####".into(),
        "Bearer alice".into(),
        "Bearer alice.PW".into(),
        "Digest username=alice".into(),
        "basic".into(),
        long,
    ];
    // From distinct addresses each, so that no slow-down is earned.
    for (i, value) in wrong.iter().enumerate() {
        let from = Ipv4Addr::new(127, 0, 1, 1 + i as u8);
        let (code, _, _, _) = request(
            &s.addr,
            Some(from),
            "/nix-cache-info",
            &[("Authorization", value)],
        );
        assert_eq!(code, 401, "{value:.40}");
    }
    // Twice: which one would count is a guess, so neither does.
    let good = basic("alice", "pw");
    let (code, _, _, _) = request(
        &s.addr,
        Some(Ipv4Addr::new(127, 0, 2, 1)),
        "/nix-cache-info",
        &[("Authorization", &good), ("Authorization", &good)],
    );
    assert_eq!(code, 401);
    // A head too large for the server is refused by it, and it goes on.
    let (code, _, _, _) = request(
        &s.addr,
        Some(Ipv4Addr::new(127, 0, 2, 2)),
        "/nix-cache-info",
        &[("Authorization", &huge)],
    );
    assert!(code == 431 || code == 400 || code == 401, "{code}");
    assert_eq!(
        status(&s.addr, "/nix-cache-info", &[("Authorization", &good)]),
        200
    );
}

#[test]
fn bad_auth_files_stop_serve_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "none");
    let auth = dir.path().join("auth");
    for (text, want) in [
        (
            "alice:hunter2\n",
            "line 1: alice: the hash is not a PHC string",
        ),
        ("", "names nobody"),
        ("\u{0}\u{1}:x:y:z\n", "line 1: bad name"),
    ] {
        std::fs::write(&auth, text).unwrap();
        let out = common::run(
            &[
                "serve",
                "--auth",
                auth.to_str().unwrap(),
                cache.to_str().unwrap(),
            ],
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{text:?}: {err}");
    }
    let out = common::run(
        &[
            "serve",
            "--auth",
            "/nonexistent/auth",
            cache.to_str().unwrap(),
        ],
        b"",
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read the auth file /nonexistent/auth"));
    // A principal allowed a cache that is not served: a typo, said before serving.
    std::fs::remove_file(&auth).unwrap();
    add_user(&auth, "bob", "pw", &["main"]);
    let out = common::run(
        &[
            "serve",
            "--auth",
            auth.to_str().unwrap(),
            "--cache",
            &format!("other={}", cache.display()),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allows bob the cache main, which is not served (served: other)"),
        "{err}"
    );
}

#[test]
fn named_caches_each_for_those_allowed_them() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "a", &[]);
    add_user(&auth, "bob", "b", &["public"]);
    let public = cache_copy(dir.path(), "public", "xz");
    let private = cache_copy(dir.path(), "private", "none");
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--auth"])
        .arg(&auth)
        .arg("--cache")
        .arg(format!("public={}", public.display()))
        .arg("--cache")
        .arg(format!("private={}", private.display()));
    let s = common::ServeProcess::start_args(cmd);
    let (a, b) = (basic("alice", "a"), basic("bob", "b"));
    for (path, who, want) in [
        ("/public/nix-cache-info", &a, 200),
        ("/private/nix-cache-info", &a, 200),
        ("/public/nix-cache-info", &b, 200),
        ("/public/_nar-tool/narinfos", &b, 200),
        ("/private/nix-cache-info", &b, 403),
        ("/private/_nar-tool/narinfos", &b, 403),
        ("/elsewhere/nix-cache-info", &a, 404),
        ("/nix-cache-info", &a, 404),
    ] {
        assert_eq!(
            status(&s.addr, path, &[("Authorization", who)]),
            want,
            "{path}"
        );
    }
    assert_eq!(status(&s.addr, "/private/nix-cache-info", &[]), 401);
}

/// `nix copy` from `url` of closure-top with `netrc` (if any), in a fresh store and with a
/// fresh narinfo disk cache.
pub(crate) fn nix_copy_with_netrc(url: &str, netrc: Option<&Path>) -> (bool, String, usize) {
    let client = tempfile::tempdir().unwrap();
    let key = std::fs::read_to_string(common::corpus().join("keys/public")).unwrap();
    let top = "/nix/store/z8w6vc8pyk06rr4fm1h99ciaifp1kqdp-closure-top-public";
    let mut cmd = Command::new("nix");
    cmd.env("NIX_REMOTE", "local")
        .env("XDG_CACHE_HOME", client.path().join("xdg-cache"))
        .args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--from",
            url,
        ])
        .arg("--to")
        .arg(format!(
            "local?root={}",
            client.path().join("root").display()
        ))
        .args(["--option", "trusted-public-keys", key.trim()]);
    match netrc {
        Some(f) => cmd.args(["--option", "netrc-file"]).arg(f),
        None => cmd.args(["--option", "netrc-file", "/dev/null"]),
    };
    let out = cmd
        .arg(top)
        .stdin(Stdio::null())
        .output()
        .expect("nix runs");
    let got = std::fs::read_dir(client.path().join("root/nix/store"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with("-public"))
                .count()
        })
        .unwrap_or(0);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        got,
    )
}

pub(crate) fn has_nix() -> bool {
    Command::new("nix").arg("--version").output().is_ok()
}

#[test]
fn nix_substitutes_with_its_netrc_file_and_not_without() {
    if !has_nix() {
        println!("SKIP: nix is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "nix", "substitute-me", &[]);
    let cache = cache_copy(dir.path(), "cache", "xz");
    let s = common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let url = format!("http://{}", s.addr);
    let netrc = |name: &str, password: &str| {
        let f = dir.path().join(format!("netrc-{password}"));
        std::fs::write(
            &f,
            format!("machine 127.0.0.1 login {name} password {password}\n"),
        )
        .unwrap();
        f
    };
    let (ok, err, got) = nix_copy_with_netrc(&url, Some(&netrc("nix", "substitute-me")));
    assert!(ok, "nix copy with the right netrc failed: {err}");
    assert_eq!(got, 8, "the closure of closure-top has 8 paths");
    for (what, file) in [
        ("a wrong password", Some(netrc("nix", "guess"))),
        ("an unknown user", Some(netrc("eve", "substitute-me"))),
        ("no credentials", None),
    ] {
        let (ok, err, got) = nix_copy_with_netrc(&url, file.as_deref());
        assert!(!ok && got == 0, "nix copy with {what} succeeded: {err}");
    }
}

/// The median of some durations.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_wrong_name_and_a_wrong_secret_take_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "the right one", &[]);
    let cache = cache_copy(dir.path(), "cache", "none");
    let s = common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let (wrong_user, wrong_secret) = (
        basic("mallory", "the right one"),
        basic("alice", "a wrong one"),
    );
    let (mut users, mut secrets, mut nothing) = (Vec::new(), Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    // In pairs, one right after the other and in alternating order (so that load on the machine
    // falls on both alike), each from an address of its own (so that no slow-down is earned:
    // that is tested apart).
    for i in 0..30u8 {
        let from = |k: u8| Some(Ipv4Addr::new(127, 0, 10 + k, 1 + i));
        let timed = |k: u8, value: &str| {
            let (code, _, _, t) = request(
                &s.addr,
                from(k),
                "/nix-cache-info",
                &[("Authorization", value)],
            );
            assert_eq!(code, 401);
            t
        };
        let (u, p) = if i % 2 == 0 {
            let u = timed(0, &wrong_user);
            (u, timed(1, &wrong_secret))
        } else {
            let p = timed(1, &wrong_secret);
            (timed(0, &wrong_user), p)
        };
        users.push(u);
        secrets.push(p);
        ratios.push(u.as_secs_f64() / p.as_secs_f64());
        nothing.push(request(&s.addr, from(2), "/nix-cache-info", &[]).3);
    }
    let (u, p, n) = (median(users), median(secrets), median(nothing));
    // The hash is verified for both: each takes clearly longer than no verification at all (so
    // the comparison below measures something; without the dummy hash, a wrong user would take
    // as long as no credentials), and the median of the paired ratios is near 1.
    assert!(
        u > n * 3 && p > n * 3,
        "wrong user {u:?}, wrong secret {p:?}, no credentials {n:?}"
    );
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    assert!(
        (0.67..1.5).contains(&ratio),
        "wrong user {u:?} vs wrong secret {p:?}: distinguishable (median ratio {ratio:.2})"
    );
}

#[test]
fn failures_from_one_address_slow_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "pw", &[]);
    let cache = cache_copy(dir.path(), "cache", "none");
    let s = common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let wrong = basic("alice", "nope");
    let right = basic("alice", "pw");
    let attacker = Some(Ipv4Addr::new(127, 0, 20, 1));
    let mut took = Vec::new();
    for _ in 0..6 {
        let (code, _, _, t) = request(
            &s.addr,
            attacker,
            "/nix-cache-info",
            &[("Authorization", &wrong)],
        );
        assert_eq!(code, 401);
        took.push(t);
    }
    // Three free (the delays themselves: `penalty.rs`'s unit test), then 250 ms, 500 ms, 1 s
    // on top of the verification; lower bounds only, which no load on the machine can break.
    assert!(took[3] >= Duration::from_millis(250), "{took:?}");
    assert!(took[4] >= Duration::from_millis(500), "{took:?}");
    assert!(took[5] >= Duration::from_millis(1000), "{took:?}");
    assert!(took[5] > took[2] + Duration::from_millis(500), "{took:?}");
    // Another address is not slowed.
    let (code, _, _, t) = request(
        &s.addr,
        Some(Ipv4Addr::new(127, 0, 20, 2)),
        "/nix-cache-info",
        &[("Authorization", &right)],
    );
    assert_eq!(code, 200);
    assert!(
        t + Duration::from_millis(500) < took[5],
        "{t:?} vs {took:?}"
    );
}
