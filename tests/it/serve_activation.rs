//! Socket activation: `systemd-socket-activate` (what systemd does for a `.socket` unit) hands
//! `serve` its listening socket as file descriptor 3, and the real Nix substitutes through it;
//! variables naming another process are ignored; a hand-over of something that is not a
//! listening socket is refused with a clear error.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::serve_auth::{cache_copy, has_nix, nix_copy_with_netrc};
use crate::common;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `systemd-socket-activate` is there (says SKIP when not).
fn has_socket_activate() -> bool {
    let there = Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_ok();
    if !there {
        println!("SKIP: systemd-socket-activate is not installed (scripts/setup.sh installs it)");
    }
    there
}

/// `systemd-socket-activate -l LISTEN nar-tool serve ARGS CACHE`, killed when dropped.
fn socket_activated(listen: impl AsRef<OsStr>, args: &[&str], cache: &Path) -> common::Killed {
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(listen)
        .arg(common::bin())
        .arg("serve")
        .args(args)
        .arg(cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::Killed(child)
}

#[test]
fn systemd_socket_activate_hands_serve_its_socket_and_nix_substitutes_through_it() {
    if !has_socket_activate() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // --listen names another port: the socket handed in is used instead.
    let _child = socket_activated(&addr, &["--listen", "127.0.0.1:1", "-q"], &cache);
    // systemd-socket-activate listens at once and starts serve on the first connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://{addr}/nix-cache-info"))
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the activated socket"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("StoreDir: /nix/store"), "{body}");
    if !has_nix() {
        println!("SKIP: nix is not installed");
        return;
    }
    let (ok, err, got) = nix_copy_with_netrc(&format!("http://{addr}"), None);
    assert!(ok, "nix copy through the activated socket failed: {err}");
    assert_eq!(got, 8);
}

#[test]
fn listen_variables_of_another_process_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "none");
    let mut cmd = Command::new(common::bin());
    // PID 1 is never this process: serve binds its --listen address as without the variables.
    cmd.env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(&cache);
    let s = common::ServeProcess::start_args(cmd);
    assert_ne!(s.addr, "", "serve bound an address of its own");
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://{}/nix-cache-info", s.addr))
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn a_hand_over_that_is_not_a_listening_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "none");
    let bin = common::bin();
    for (fds, setup, want) in [
        (
            "1",
            "3</dev/null",
            "file descriptor 3 handed in is not a socket",
        ),
        ("1", "", "file descriptor 3 handed in is not a socket"),
        ("0", "", "LISTEN_FDS=\"0\": expected 1 to 64 sockets"),
        ("many", "", "LISTEN_FDS=\"many\""),
    ] {
        // The shell's own pid is the one serve gets by exec.
        let script = format!(
            "LISTEN_PID=$$ LISTEN_FDS={fds} exec {bin} serve --listen 127.0.0.1:0 '{}' {setup}",
            cache.display()
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{script}: {err}");
        assert!(err.contains(want), "{script}: {err}");
    }
}

/// `curl --unix-socket socket http://localhost/path`: its exit status and body.
fn curl_unix(socket: &std::path::Path, path: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits until `serve` answers on `socket`.
fn wait_for_unix(socket: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, body) = curl_unix(socket, "/nix-cache-info");
        if ok {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no answer on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_listens_on_a_unix_socket_replaces_a_stale_one_and_removes_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let socket = dir.path().join("serve.sock");
    let start = || {
        Command::new(common::bin())
            .args(["serve", "-q", "--listen"])
            .arg(format!("unix:{}", socket.display()))
            .arg(&cache)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Another serve on the same path fails, saying why.
    let refused_there = |why: &str| {
        let out = Command::new(common::bin())
            .args(["serve", "--listen"])
            .arg(format!("unix:{}", socket.display()))
            .arg(&cache)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(why), "{err}");
    };
    // Killed hard, a server leaves its socket file: the next one replaces it.
    let first = common::Killed(start());
    assert!(wait_for_unix(&socket).contains("StoreDir: /nix/store"));
    drop(first);
    assert!(socket.exists(), "SIGKILL leaves the socket file");
    let mut second = start();
    let body = wait_for_unix(&socket);
    assert!(body.contains("StoreDir: /nix/store"), "{body}");
    let narinfo = "/12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo";
    let (ok, body) = curl_unix(&socket, narinfo);
    assert!(ok);
    assert_eq!(
        body,
        std::fs::read_to_string(cache.join(&narinfo[1..])).unwrap()
    );
    // While it listens, a third is refused and leaves the socket alone.
    refused_there("another server listens there");
    assert!(curl_unix(&socket, "/nix-cache-info").0);
    // Stopped by Ctrl-C, it removes its socket file.
    let pid = second.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    assert!(second.wait().unwrap().success());
    assert!(!socket.exists(), "the socket file is left behind");
    // Something that is not a socket is never replaced.
    std::fs::write(&socket, "mine").unwrap();
    refused_there("not a socket is there");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "mine");
}

#[test]
fn systemd_socket_activate_hands_serve_a_unix_socket() {
    if !has_socket_activate() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let auth = dir.path().join("auth");
    super::serve_auth::add_user(&auth, "proxy", "letmein", &[]);
    let socket = dir.path().join("activated.sock");
    let auth_file = auth.to_str().unwrap();
    let _child = socket_activated(&socket, &["-q", "--auth", auth_file], &cache);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Protected: 401 until the credentials come (curl -f fails on it).
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--unix-socket")
        .arg(&socket)
        .arg("http://localhost/nix-cache-info")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", "-u", "proxy:letmein"])
        .arg("--unix-socket")
        .arg(&socket)
        .arg("http://localhost/nix-cache-info")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("StoreDir: /nix/store"));
}
