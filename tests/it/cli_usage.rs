//! What a new user of the CLI trips over (issue 19, "The CLI"): help for every argument, usage
//! mistakes exiting 2, cache locations (`file://`, unsupported schemes), keys given the wrong way round, the
//! messages of common mistakes, `narinfo check`'s warnings, `build-cache ./result`, and the
//! progress of `verify` on a terminal.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, corpus, extract_root_tar, run, TempTree};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

const CORPUS_PATH: &str = "/nix/store/gn07vq3ysff2m4mz8scgjm7nmgaffhih-single-exe-public";

/// Every subcommand, as the words that name it.
const COMMANDS: &[&[&str]] = &[
    &[],
    &["dump"],
    &["restore"],
    &["hash"],
    &["hash", "convert"],
    &["ls"],
    &["cat"],
    &["store-path"],
    &["key"],
    &["key", "generate"],
    &["key", "public"],
    &["sign"],
    &["build-cache"],
    &["verify"],
    &["demo"],
    &["serve"],
    &["narinfo"],
    &["narinfo", "check"],
];

/// Every argument and option in every `--help` says what it is: a description on its line (not
/// just a default) or on the lines under it.
#[test]
fn help_describes_every_argument() {
    let mut undescribed = Vec::new();
    for words in COMMANDS {
        let mut argv = words.to_vec();
        argv.push("--help");
        let out = run(&argv, b"");
        assert_eq!(code(&out), 0, "{argv:?}");
        let help = text(&out.stdout);
        let lines: Vec<&str> = help.lines().collect();
        let mut in_items = false;
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                in_items = matches!(*line, "Arguments:" | "Options:");
                continue;
            }
            let item = line.trim_start();
            let indent = line.len() - item.len();
            if !in_items
                || indent > 6
                || !(item.starts_with('-') || item.starts_with('<') || item.starts_with('['))
            {
                continue;
            }
            let described_here = item
                .split("  ")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .nth(1)
                .is_some_and(|d| !d.starts_with('['));
            let described_below = lines.get(i + 1).is_some_and(|next| {
                let rest = next.trim_start();
                next.len() - rest.len() > indent && !rest.is_empty() && !rest.starts_with('[')
            });
            if !described_here && !described_below {
                undescribed.push(format!("nar-tool {}: {item}", words.join(" ")));
            }
        }
    }
    assert!(
        undescribed.is_empty(),
        "no description:\n{}",
        undescribed.join("\n")
    );
    // The old spellings still work but are not shown.
    let sign = text(&run(&["sign", "--help"], b"").stdout);
    assert!(
        sign.contains("--secret-key-file") && !sign.contains("--key "),
        "{sign}"
    );
    let build = text(&run(&["build-cache", "--help"], b"").stdout);
    assert!(
        build.contains("--secret-key-file") && !build.contains("--sign "),
        "{build}"
    );
    assert!(build.contains("--xz-memory"), "{build}");
}

/// Mistakes in how a command is called exit 2, naming the mistake.
#[test]
fn usage_mistakes_exit_2() {
    let t = TempTree::new();
    let to = s(&t.path().join("cache"));
    let secret = s(&corpus().join("keys/secret"));
    for (argv, says) in [
        (vec!["build-cache", "--to", &to], "STORE-PATH"),
        (
            vec![
                "build-cache",
                "--to",
                &to,
                "--compression",
                "xz",
                "--level",
                "12",
                CORPUS_PATH,
            ],
            "--level 12 is out of range",
        ),
        (
            vec!["build-cache", "--to", &to, "--xz-memory", "0", CORPUS_PATH],
            "--xz-memory",
        ),
        (
            vec!["build-cache", "--to", "ftp://host/cache", CORPUS_PATH],
            "unsupported scheme \"ftp\"",
        ),
        (
            vec!["verify", "ssh+ng://host"],
            "unsupported scheme \"ssh+ng\"",
        ),
        (
            vec!["verify", "file://other-host/cache"],
            "not on \"other-host\"",
        ),
        (vec!["serve", "ssh://host/x"], "unsupported scheme \"ssh\""),
        (
            vec!["sign", "--key", &secret, "--cache", "gopher://x"],
            "unsupported scheme",
        ),
        (vec!["sign", "x.narinfo"], "--secret-key-file"),
        (vec!["narinfo", "check"], "NARINFO"),
    ] {
        let out = run(&argv, b"");
        let err = text(&out.stderr);
        assert_eq!(code(&out), 2, "{argv:?}: {err}");
        assert!(err.contains(says), "{argv:?}: {err}");
    }
    assert!(!t.path().join("cache").exists(), "nothing created");
}

/// `file://DIR` is the directory; a cache verified without a trusted key says that signatures
/// were not checked, and one verified with a key does not.
#[test]
fn verify_file_url_and_unchecked_signatures() {
    let cache = corpus().join("caches/xz");
    let key_file = corpus().join("keys/public");
    let url = format!("file://{}", s(&cache));
    let out = run(&["verify", &url, "-q"], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("9 paths"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("signatures were not checked"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &["verify", &url, "-q", "--trusted-key-file", &s(&key_file)],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("not checked"),
        "{}",
        text(&out.stderr)
    );
    // An empty key file is a mistake, not "no key".
    let t = TempTree::new();
    let empty = t.path().join("keys");
    fs::write(&empty, "\n").unwrap();
    let out = run(&["verify", &url, "--trusted-key-file", &s(&empty)], b"");
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("holds no key"),
        "{}",
        text(&out.stderr)
    );
}

/// A public key given where a secret one goes, and the other way round, is called what it is.
#[test]
fn keys_given_the_wrong_way_round() {
    let t = TempTree::new();
    let (secret, public) = (t.path().join("k.sec"), t.path().join("k.pub"));
    let out = run(
        &[
            "key",
            "generate",
            "t-1",
            "--secret",
            &s(&secret),
            "--public",
            &s(&public),
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let cache = t.path().join("cache");
    fs::create_dir(&cache).unwrap();
    let narinfo = cache.join("gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo");
    fs::copy(
        corpus().join("caches/unsigned/gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo"),
        &narinfo,
    )
    .unwrap();
    let out = run(
        &["sign", "--secret-key-file", &s(&public), &s(&narinfo)],
        b"",
    );
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("is a public key"),
        "{}",
        text(&out.stderr)
    );
    let secret_text = fs::read_to_string(&secret).unwrap();
    let out = run(
        &[
            "verify",
            &s(&corpus().join("caches/xz")),
            "--trusted-key",
            secret_text.trim(),
        ],
        b"",
    );
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("is a secret key"),
        "{}",
        text(&out.stderr)
    );
    // The old spelling still signs; the new one checks.
    let out = run(&["sign", "--key", &s(&secret), &s(&narinfo)], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = run(
        &[
            "narinfo",
            "check",
            &s(&narinfo),
            "--trusted-key-file",
            &s(&public),
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("signed by t-1"),
        "{}",
        text(&out.stdout)
    );
}

/// `narinfo check` warns of keys Nix does not read, suggesting the one meant, and refuses a
/// compression Nix does not know; without a key it says signatures were not checked.
#[test]
fn narinfo_check_warns_and_refuses() {
    let t = TempTree::new();
    let good =
        fs::read_to_string(corpus().join("caches/xz/gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo"))
            .unwrap();
    let typo = t.path().join("gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo");
    fs::write(
        &typo,
        format!("{good}Referenes: 5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public\n"),
    )
    .unwrap();
    let out = run(&["narinfo", "check", &s(&typo)], b"");
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown key \"Referenes\"") && err.contains("did you mean \"References\"?"),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("signatures not checked"),
        "{}",
        text(&out.stdout)
    );
    let zst = t
        .path()
        .join("zst")
        .join("gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo");
    fs::create_dir(zst.parent().unwrap()).unwrap();
    fs::write(&zst, good.replace("Compression: xz", "Compression: zst")).unwrap();
    let out = run(&["narinfo", "check", &s(&zst)], b"");
    assert_eq!(code(&out), 1);
    let said = text(&out.stdout);
    assert!(
        said.contains("FAIL") && said.contains("did you mean \"zstd\"?"),
        "{said}"
    );
}

/// An OS error is said once, with the path it is about.
#[test]
fn os_errors_are_said_once() {
    for argv in [
        vec!["dump", "/nonexistent/x"],
        vec!["hash", "/nonexistent/x"],
        vec!["store-path", "/nonexistent/x"],
        vec!["restore", "/nonexistent/x"],
        vec!["verify", "/nonexistent/x"],
    ] {
        let out = run(&argv, b"");
        let err = text(&out.stderr);
        assert_eq!(code(&out), 1, "{argv:?}: {err}");
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "{argv:?}: {err}"
        );
        assert!(err.contains("/nonexistent"), "{argv:?}: {err}");
    }
}

/// `serve` names a missing cache, and refuses to start with a folder given that is not there.
#[test]
fn serve_refuses_what_is_missing() {
    let cache = s(&corpus().join("caches/xz"));
    for (argv, says) in [
        (
            vec!["serve", "/nonexistent/cache", "--listen", "127.0.0.1:0"],
            "/nonexistent/cache",
        ),
        (
            vec![
                "serve",
                &cache,
                "--listen",
                "127.0.0.1:0",
                "--inspector",
                "/nonexistent/www",
            ],
            "--inspector /nonexistent/www",
        ),
        (
            vec![
                "serve",
                &cache,
                "--listen",
                "127.0.0.1:0",
                "--pkg",
                "/nonexistent/pkg",
            ],
            "--pkg /nonexistent/pkg",
        ),
    ] {
        let mut child = Command::new(bin())
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("{argv:?} started serving");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(code(&out), 1, "{argv:?}: {err}");
        assert!(err.contains(says), "{argv:?}: {err}");
    }
}

/// `build-cache ./result` and `--paths-from` lines that are symlinks into the store are taken as
/// `nix copy` takes them; a symlink leading elsewhere is refused, saying where it leads.
#[test]
fn build_cache_takes_symlinks_into_the_store() {
    let root = extract_root_tar();
    let t = TempTree::new();
    // As nix-build leaves it: ./result → /nix/store/…, and a chain of two links.
    let result = t.path().join("result");
    symlink(CORPUS_PATH, &result).unwrap();
    let chain = t.path().join("result-2");
    symlink("result", &chain).unwrap();
    let physical = root.path().join(CORPUS_PATH.trim_start_matches('/'));
    let to_physical = t.path().join("result-physical");
    symlink(&physical, &to_physical).unwrap();
    let list = t.path().join("paths");
    fs::write(&list, format!("{}\n", s(&chain))).unwrap();
    for (i, argv) in [
        vec![s(&result)],
        vec![s(&to_physical)],
        vec!["--paths-from".to_string(), s(&list)],
    ]
    .into_iter()
    .enumerate()
    {
        let cache = t.path().join(format!("cache-{i}"));
        let mut full = vec![
            "build-cache",
            "--to",
            cache.to_str().unwrap(),
            "--store-root",
            root.path().to_str().unwrap(),
            "--json",
        ];
        full.extend(argv.iter().map(String::as_str));
        let out = run(&full, b"");
        assert_eq!(code(&out), 0, "{argv:?}: {}", text(&out.stderr));
        assert!(
            cache
                .join("gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo")
                .is_file(),
            "{argv:?}"
        );
    }
    // Leading elsewhere: refused, naming where.
    let elsewhere = t.path().join("elsewhere");
    symlink("/etc", &elsewhere).unwrap();
    let not_link = t.path().join("plain");
    fs::write(&not_link, "x").unwrap();
    for (arg, says) in [
        (
            s(&elsewhere),
            "leads to /etc, which is not in the store directory /nix/store",
        ),
        (
            s(&not_link),
            "is not a path in the store directory /nix/store, nor a symlink into it",
        ),
    ] {
        let cache = s(&t.path().join("refused"));
        let out = run(
            &[
                "build-cache",
                "--to",
                &cache,
                "--store-root",
                root.path().to_str().unwrap(),
                &arg,
            ],
            b"",
        );
        assert_eq!(code(&out), 1, "{arg}");
        assert!(
            text(&out.stderr).contains(says),
            "{arg}: {}",
            text(&out.stderr)
        );
    }
}

/// A path the metadata does not have is said so; running again would not help, so that is not
/// suggested.
#[test]
fn a_path_missing_from_the_metadata_is_not_worth_a_rerun() {
    let t = TempTree::new();
    let out = run(
        &[
            "build-cache",
            "--to",
            &s(&t.path().join("cache")),
            "--registration",
            &s(&corpus().join("registration")),
            "/nix/store/00000000000000000000000000000000-missing",
        ],
        b"",
    );
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("not a valid path in the given store metadata"),
        "{err}"
    );
    assert!(!err.contains("run again"), "{err}");
}

/// On a terminal, `verify` shows the bytes it has read (a large NAR does not look stuck).
#[test]
fn verify_shows_bytes_read_on_a_terminal() {
    if !Path::new("/usr/bin/script").exists() {
        println!("SKIP: no script(1) to give verify a terminal");
        return;
    }
    let cache = s(&corpus().join("caches/xz"));
    let command = format!("{} verify {cache} --jobs 1", bin());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("COLUMNS", "80")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = text(&out.stdout);
    assert_eq!(code(&out), 0, "{screen}");
    // The bar shows bytes of the total read ("… KiB/… MiB read").
    assert!(screen.contains("iB read"), "{screen}");
}
