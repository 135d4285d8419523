//! Socket activation: `systemd-socket-activate` (what systemd does for a `.socket` unit) hands
//! `serve` its listening socket as file descriptor 3, and the real Nix substitutes through it;
//! variables naming another process are ignored; a hand-over of something that is not a
//! listening socket is refused with a clear error.

use std::net::TcpListener;
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

#[test]
fn systemd_socket_activate_hands_serve_its_socket_and_nix_substitutes_through_it() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIP: systemd-socket-activate is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_copy(dir.path(), "cache", "xz");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // --listen names another port: the socket handed in is used instead.
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &addr])
        .arg(common::bin())
        .args(["serve", "--listen", "127.0.0.1:1", "-q"])
        .arg(&cache)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _child = common::Killed(child);
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
