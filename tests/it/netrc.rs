//! Client commands reading a protected cache (`serve --auth`) with the credentials of a netrc
//! file, as Nix's `netrc-file`: `verify`, `fetch`, `lookup`, `why-depends` and `serve` proxying
//! it get in with the right entry; without one, with a wrong password or with an entry for
//! another host they fail with an error that says what to put where (and never the secret).

use std::fs;
use std::path::Path;
use std::process::Output;

use super::serve_auth::{add_user, cache_copy, request};
use crate::common;

fn netrc(dir: &Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// What a command said (a report goes to stdout, an error to stderr).
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each client command on the cache at `url` with `netrc` (`None`: no flag and no default).
fn commands(url: &str, netrc: Option<&str>, root: &Path) -> Vec<(&'static str, Output)> {
    let key = common::corpus().join("keys/public");
    let key = key.to_str().unwrap();
    let paths = common::store_paths();
    let mut flags = vec!["--no-lookup-cache".to_string()];
    // Without a file named, no default is found either (HOME and NIX_CONF_DIR point at an
    // empty folder).
    if let Some(f) = netrc {
        flags.extend(["--netrc-file".to_string(), f.to_string()]);
    }
    let run = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(&args)
            .env("HOME", root)
            .env("NIX_CONF_DIR", root)
            .env_remove("NETRC");
        common::run_cmd(&mut cmd, b"")
    };
    let with = |mut args: Vec<String>| {
        args.extend(flags.iter().cloned());
        args
    };
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let store = root.join("store");
    vec![
        (
            "verify",
            run(with(strs(&[
                "verify",
                "-q",
                "--no-contents",
                "--trusted-key-file",
                key,
                url,
            ]))),
        ),
        (
            "fetch",
            run(with(strs(&[
                "fetch",
                "-q",
                "--from",
                url,
                "--store-root",
                store.to_str().unwrap(),
                "--trusted-key-file",
                key,
                &paths[0],
            ]))),
        ),
        ("lookup", run(with(strs(&["lookup", url, &paths[1]])))),
        (
            "why-depends",
            run(with(strs(&["why-depends", url, &paths[1], &paths[1]]))),
        ),
    ]
}

#[test]
fn client_commands_read_a_protected_cache_with_the_netrc_entry_for_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "ci", "s3cret pass", &[]);
    let cache = cache_copy(dir.path(), "cache", "xz");
    let s = common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let url = format!("http://{}", s.addr);
    let host = s.addr.split(':').next().unwrap();

    let right = netrc(
        dir.path(),
        "right",
        &format!("machine other.example login x password y\nmachine {host} login ci password \"s3cret pass\"\n"),
    );
    let fallback = netrc(
        dir.path(),
        "default",
        "machine other.example login x password y\ndefault login ci password \"s3cret pass\"\n",
    );
    for (file, what) in [
        (&right, "its host's entry"),
        (&fallback, "the default entry"),
    ] {
        let root = common::TempTree::new();
        for (command, out) in commands(&url, Some(file), root.path()) {
            assert!(
                out.status.success(),
                "{command} with {what}: {}",
                said(&out)
            );
        }
    }

    let wrong = netrc(
        dir.path(),
        "wrong",
        &format!("machine {host} login ci password guess\n"),
    );
    let elsewhere = netrc(
        dir.path(),
        "elsewhere",
        "machine localhost login ci password \"s3cret pass\"\n",
    );
    for (file, what, says) in [
        (
            None,
            "no netrc file",
            format!("`machine {host} login USER password SECRET`"),
        ),
        (
            Some(&wrong),
            "a wrong password",
            format!("refused \"ci\"'s credentials for {host} from {wrong}"),
        ),
        (
            Some(&elsewhere),
            "an entry for another host",
            "in a netrc file".to_string(),
        ),
    ] {
        let root = common::TempTree::new();
        for (command, out) in commands(&url, file.map(String::as_str), root.path()) {
            let err = said(&out);
            assert!(!out.status.success(), "{command} with {what} succeeded");
            assert!(err.contains(&says), "{command} with {what}: {err}");
            assert!(!err.contains("s3cret") && !err.contains("guess"), "{err}");
        }
    }

    // A netrc file named but missing is an error of its own.
    let root = common::TempTree::new();
    let missing = dir.path().join("absent").display().to_string();
    for (command, out) in commands(&url, Some(&missing), root.path()) {
        assert!(!out.status.success(), "{command}");
        assert!(
            said(&out).contains(&format!("netrc file {missing}")),
            "{command}: {}",
            said(&out)
        );
    }
}

#[test]
fn serve_proxies_a_protected_cache_with_its_netrc_file() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "proxy", "letmein", &[]);
    let cache = cache_copy(dir.path(), "cache", "xz");
    let origin =
        common::ServeProcess::start(&cache, &["--auth".into(), auth.display().to_string()]);
    let host = origin.addr.split(':').next().unwrap();
    let file = netrc(
        dir.path(),
        "netrc",
        &format!("machine {host} login proxy password letmein\n"),
    );
    let url = format!("http://{}", origin.addr);
    let proxy = common::ServeProcess::start_cmd(
        std::process::Command::new(common::bin()),
        &url,
        &["--netrc-file".into(), file],
    );
    let narinfo = "/12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo";
    let (code, _, body, _) = request(&proxy.addr, None, narinfo, &[]);
    assert_eq!(code, 200);
    assert_eq!(body, fs::read(cache.join(&narinfo[1..])).unwrap());
    assert_eq!(request(&origin.addr, None, narinfo, &[]).0, 401);
}
