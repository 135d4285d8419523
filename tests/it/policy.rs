//! Reference policies end to end: `build-cache` refuses a closure that breaks one before it
//! writes anything (the cache byte for byte as it was), with Nix's message, every offender and
//! the chain to it; `verify` reports them as `reference-policy` problems (exit bit 8); and the
//! real Nix (2.8), building derivations that declare the same constraints, fails exactly where
//! `build-cache` does (references from Nix's DB or scanned), with the same offending paths, and
//! where `verify` finds the policy broken in a cache of the same outputs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

const STORE: &str = "/nix/store";

/// A small store on disk: `ROOT/nix/store/<base>` for each path, its files naming its
/// references (so `--scan-references` finds them), and `nix path-info --json` of it.
struct Store {
    _tree: TempTree,
    root: PathBuf,
    path_info: PathBuf,
    paths: BTreeMap<&'static str, String>,
}

/// name → references (by name). `app` refers to itself, `lib` and `tool-wrapper`; the wrapper
/// to `bootstrap-tool`; `lib` to `libc`; `other` to `bootstrap-tool`.
const GRAPH: &[(&str, &[&str])] = &[
    ("app", &["app", "lib", "tool-wrapper"]),
    ("lib", &["libc"]),
    ("libc", &[]),
    ("tool-wrapper", &["bootstrap-tool"]),
    ("bootstrap-tool", &[]),
    ("other", &["bootstrap-tool"]),
];

impl Store {
    fn new() -> Store {
        let tree = TempTree::new();
        let root = tree.path().join("root");
        let store = root.join("nix/store");
        fs::create_dir_all(&store).unwrap();
        let paths: BTreeMap<&str, String> = GRAPH
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (*name, format!("{}{i}-{name}", "1".repeat(31))))
            .collect();
        let mut infos = Vec::new();
        for (name, refs) in GRAPH {
            let dir = store.join(&paths[name]);
            fs::create_dir_all(dir.join("bin")).unwrap();
            let mut text = format!("#!/bin/sh\n# {name}\n");
            for r in *refs {
                text += &format!("exec {STORE}/{}/bin/{r}\n", paths[r]);
            }
            fs::write(dir.join("bin").join(name), text).unwrap();
            infos.push(serde_json::json!({
                "path": format!("{STORE}/{}", paths[name]),
                "references": refs.iter().map(|r| format!("{STORE}/{}", paths[r])).collect::<Vec<_>>(),
            }));
        }
        let path_info = tree.path().join("path-info.json");
        fs::write(&path_info, serde_json::to_string(&infos).unwrap()).unwrap();
        Store {
            _tree: tree,
            root,
            path_info,
            paths,
        }
    }

    /// The full store path of `name`.
    fn p(&self, name: &str) -> String {
        format!("{STORE}/{}", self.paths[name])
    }

    /// `build-cache --to CACHE` from this store (metadata from `nix path-info --json`, or
    /// scanned), then `extra`.
    fn build(&self, cache: &Path, scan: bool, extra: &[String]) -> Output {
        let mut c = Command::new(bin());
        c.arg("build-cache")
            .arg("--to")
            .arg(cache)
            .arg("--store-root")
            .arg(&self.root)
            .arg("--quiet");
        if scan {
            c.arg("--scan-references");
        } else {
            c.arg("--path-info").arg(&self.path_info);
        }
        run_cmd(c.args(extra), b"")
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every file and symlink under `dir`, by relative path, with its contents (or target).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                todo.push(p);
            } else if meta.is_symlink() {
                out.insert(
                    rel,
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Nix's message for `output` and its offenders (in store path order, as given).
fn nix_message(output: &str, offenders: &[String]) -> String {
    let mut m = format!("output '{output}' is not allowed to refer to the following paths:");
    for o in offenders {
        m += &format!("\n  {o}");
    }
    m
}

#[test]
fn build_cache_refuses_before_writing_anything() {
    let store = Store::new();
    let t = TempTree::new();
    let cache = t.path().join("cache");
    // A cache holding something already.
    let out = store.build(&cache, false, &[store.p("libc")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = snapshot(&cache);
    assert!(before.keys().any(|k| k.ends_with(".narinfo")));
    for scan in [false, true] {
        // One list broken, two offenders, each with its chain.
        let out = store.build(
            &cache,
            scan,
            &[
                "--disallowed-requisites".into(),
                format!("{} {}", store.p("libc"), store.p("bootstrap-tool")),
                store.p("app"),
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "scan {scan}: {err}");
        assert!(err.contains("nothing was written to the cache"), "{err}");
        let nix = nix_message(
            &store.p("app"),
            &[store.p("libc"), store.p("bootstrap-tool")],
        );
        assert!(err.contains(&format!("{nix}\n")), "scan {scan}: {err}");
        let (app, lib, libc, wrapper, boot) = (
            store.p("app"),
            store.p("lib"),
            store.p("libc"),
            store.p("tool-wrapper"),
            store.p("bootstrap-tool"),
        );
        assert!(
            err.contains(&format!(
                "in disallowedRequisites; the chains of references:\n  {app} → {lib} → {libc}\n  {app} → {wrapper} → {boot}"
            )),
            "{err}"
        );
        assert_eq!(snapshot(&cache), before, "scan {scan}: the cache changed");
    }
    // Every list broken is reported, not only the first; a self-reference is a reference.
    let out = store.build(
        &cache,
        false,
        &[
            "--allowed-references".into(),
            String::new(),
            "--disallowed-references".into(),
            store.p("tool-wrapper"),
            "--allowed-requisites".into(),
            store.p("lib"),
            store.p("app"),
            store.p("other"),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let app_refs = [store.p("app"), store.p("lib"), store.p("tool-wrapper")];
    for expected in [
        nix_message(&store.p("app"), &app_refs),
        nix_message(
            &store.p("app"),
            &[
                store.p("libc"),
                store.p("tool-wrapper"),
                store.p("bootstrap-tool"),
            ],
        ),
        nix_message(&store.p("app"), &[store.p("tool-wrapper")]),
        nix_message(&store.p("other"), &[store.p("bootstrap-tool")]),
        nix_message(&store.p("other"), &[store.p("bootstrap-tool")]),
    ] {
        assert!(err.contains(&expected), "missing:\n{expected}\nin:\n{err}");
    }
    assert_eq!(
        err.matches("is not allowed to refer to").count(),
        5,
        "{err}"
    );
    assert_eq!(snapshot(&cache), before);
    // A new cache directory: nothing in it.
    let fresh = t.path().join("fresh");
    let out = store.build(
        &fresh,
        false,
        &["--allowed-references=".into(), store.p("lib")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!fresh.exists() || snapshot(&fresh).is_empty());
}

#[test]
fn build_cache_passes_a_policy_kept() {
    let store = Store::new();
    let t = TempTree::new();
    let cache = t.path().join("cache");
    // Repeated flags and comma lists; the path itself is not one of its requisites; a
    // disallowed path only in another path's closure does not matter.
    let out = store.build(
        &cache,
        true,
        &[
            "--allowed-references".into(),
            format!("{},{}", store.p("lib"), store.p("tool-wrapper")),
            "--allowed-references".into(),
            store.paths["app"].clone(),
            "--allowed-requisites".into(),
            format!(
                "{} {} {},{}",
                store.p("lib"),
                store.p("libc"),
                store.p("tool-wrapper"),
                store.p("bootstrap-tool")
            ),
            "--disallowed-requisites".into(),
            store.p("other"),
            store.p("app"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let names = snapshot(&cache);
    assert_eq!(names.keys().filter(|k| k.ends_with(".narinfo")).count(), 5);
    // Flags that do not name store paths are usage errors (exit 2), before anything is done.
    for bad in ["/tmp/not-a-store-path", "nonsense"] {
        let out = store.build(
            &t.path().join("never"),
            false,
            &["--disallowed-references".into(), bad.into(), store.p("app")],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--disallowed-references"),
            "{}",
            stderr(&out)
        );
        assert!(!t.path().join("never").exists());
    }
}

fn verify(cache: &Path, extra: &[String]) -> (Option<i32>, serde_json::Value) {
    let out = run_cmd(
        Command::new(bin())
            .arg("verify")
            .arg(cache)
            .arg("--json")
            .arg("--quiet")
            .args(extra),
        b"",
    );
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code(), report)
}

#[test]
fn verify_reports_policy_findings() {
    let store = Store::new();
    let t = TempTree::new();
    let cache = t.path().join("cache");
    let out = store.build(&cache, false, &[store.p("app"), store.p("other")]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Without a policy: a clean cache.
    assert_eq!(verify(&cache, &[]).0, Some(0));
    // Default paths: the cache's roots (app and other; not the paths they refer to).
    let (code, report) = verify(
        &cache,
        &strings(&["--disallowed-requisites", &store.p("bootstrap-tool")]),
    );
    assert_eq!(code, Some(8));
    let (app, wrapper, boot, other) = (
        store.p("app"),
        store.p("tool-wrapper"),
        store.p("bootstrap-tool"),
        store.p("other"),
    );
    assert_eq!(
        report_problems(&report),
        [
            (
                "reference-policy".into(),
                app.clone(),
                format!("is not allowed to refer to {boot} (in disallowedRequisites: {app} → {wrapper} → {boot})")
            ),
            (
                "reference-policy".into(),
                other.clone(),
                format!("is not allowed to refer to {boot} (in disallowedRequisites: {other} → {boot})")
            ),
        ]
    );
    assert_eq!(report["ok"], false);
    // Named paths only; the path itself is left out of its requisites.
    let (code, report) = verify(
        &cache,
        &strings(&[
            "--allowed-requisites",
            "",
            "--policy-path",
            &store.p("libc"),
            "--policy-path",
            &store.paths["lib"],
        ]),
    );
    assert_eq!(code, Some(8));
    assert_eq!(
        report_problems(&report),
        [(
            "reference-policy".into(),
            store.p("lib"),
            format!(
                "is not allowed to refer to {} (not in allowedRequisites: {} → {})",
                store.p("libc"),
                store.p("lib"),
                store.p("libc")
            )
        )]
    );
    // A self-reference breaks an empty allowedReferences.
    let (code, report) = verify(
        &cache,
        &strings(&[
            "--allowed-references",
            &format!("{},{}", store.p("lib"), store.p("tool-wrapper")),
            "--policy-path",
            &app,
        ]),
    );
    assert_eq!(code, Some(8));
    assert_eq!(report_problems(&report).len(), 1);
    assert!(report_problems(&report)[0]
        .2
        .starts_with(&format!("is not allowed to refer to {app} ")));
    // A path named that the cache lacks: the check cannot run (4); policy broken too (8).
    let missing = format!("{STORE}/{}-gone", "2".repeat(32));
    let (code, report) = verify(
        &cache,
        &strings(&[
            "--disallowed-references",
            &boot,
            "--policy-path",
            &missing,
            "--policy-path",
            &other,
        ]),
    );
    assert_eq!(code, Some(12));
    let kinds: Vec<(String, String)> = report_problems(&report)
        .into_iter()
        .map(|(k, p, _)| (k, p))
        .collect();
    assert_eq!(
        kinds,
        [
            ("reference-policy".to_string(), other.clone()),
            ("check-failed".to_string(), missing.clone()),
        ]
    );
    // The text report: one line each.
    let out = run_cmd(
        Command::new(bin()).arg("verify").arg(&cache).args([
            "--quiet",
            "--disallowed-references",
            &boot,
            "--policy-path",
            &other,
        ]),
        b"",
    );
    assert_eq!(out.status.code(), Some(8));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "reference-policy {other}: is not allowed to refer to {boot} (in disallowedReferences: {other} → {boot})\n"
        )),
        "{text}"
    );
    // --policy-path without a policy is a usage error.
    let out = run_cmd(
        Command::new(bin())
            .arg("verify")
            .arg(&cache)
            .args(["--policy-path", &other]),
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Against the real Nix

/// A derivation's output and the constraints it declares: `refers` are what its output links to
/// (`self` its own output, else one of the shared dependencies); each list names shared
/// dependencies or `out` (the output itself), as Nix's attributes do.
struct Case {
    refers: &'static [&'static str],
    lists: &'static [(&'static str, &'static [&'static str])],
}

/// Nix's own check-refs.nix and check-reqs.nix cases, and what they leave out: self-references
/// under each list, requisites that are not references, several lists at once.
const CASES: &[Case] = &[
    // check-refs
    Case {
        refers: &["deps"],
        lists: &[("allowedReferences", &[])],
    },
    Case {
        refers: &["deps"],
        lists: &[("allowedReferences", &["deps"])],
    },
    Case {
        refers: &[],
        lists: &[("allowedReferences", &[])],
    },
    Case {
        refers: &["self"],
        lists: &[("allowedReferences", &[])],
    },
    Case {
        refers: &["self"],
        lists: &[("allowedReferences", &["out"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("disallowedReferences", &["deps"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("disallowedReferences", &["unrelated"])],
    },
    // check-reqs
    Case {
        refers: &["deps"],
        lists: &[("allowedRequisites", &["out", "dep1", "dep2", "deps"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("allowedRequisites", &["dep2", "deps"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("allowedRequisites", &["dep1", "deps"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("allowedRequisites", &["deps"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("allowedRequisites", &[])],
    },
    Case {
        refers: &["deps"],
        lists: &[("disallowedRequisites", &["dep1"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("disallowedRequisites", &["unrelated"])],
    },
    // Beyond: a requisite that is not a reference; the path itself and its requisites.
    Case {
        refers: &["deps"],
        lists: &[("disallowedReferences", &["dep1"])],
    },
    Case {
        refers: &["deps"],
        lists: &[("allowedReferences", &["deps", "dep1", "dep2"])],
    },
    Case {
        refers: &["self", "deps"],
        lists: &[("allowedRequisites", &["dep1", "dep2", "deps"])],
    },
    Case {
        refers: &["self"],
        lists: &[("allowedRequisites", &[])],
    },
    Case {
        refers: &["self"],
        lists: &[("disallowedRequisites", &["out"])],
    },
    Case {
        refers: &["self"],
        lists: &[("disallowedReferences", &["out"])],
    },
    Case {
        refers: &["self", "dep1"],
        lists: &[("disallowedRequisites", &["dep2"])],
    },
    // Several lists: Nix stops at the first broken, in its order.
    Case {
        refers: &["self", "deps"],
        lists: &[
            ("disallowedRequisites", &["dep1"]),
            ("allowedReferences", &["deps"]),
        ],
    },
    Case {
        refers: &["self", "deps"],
        lists: &[
            ("allowedReferences", &["out", "deps"]),
            ("allowedRequisites", &["out"]),
        ],
    },
    Case {
        refers: &["dep2"],
        lists: &[
            ("disallowedReferences", &["dep1"]),
            ("disallowedRequisites", &["dep2"]),
        ],
    },
];

/// The shared dependencies: `deps` links to `dep1` and `dep2`; `unrelated` to nothing.
const DEPS: &[&str] = &["dep1", "dep2", "deps", "unrelated"];

/// The expression: for case `i`, `checked-i` declares its lists and `free-i` does not; both
/// build the same tree (their outputs differ only by their own path).
fn expression() -> String {
    let mut nix = String::from(
        "let\n  mk = name: attrs: derivation ({ inherit name; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; PATH = \"/usr/bin:/bin\"; } // attrs);\n\
         dep1 = mk \"dep1\" { args = [\"-c\" \"mkdir $out; echo 1 > $out/file1\"]; };\n\
         dep2 = mk \"dep2\" { args = [\"-c\" \"mkdir $out; echo 2 > $out/file2\"]; };\n\
         deps = mk \"deps\" { inherit dep1 dep2; args = [\"-c\" \"mkdir $out; ln -s $dep1/file1 $out/file1; ln -s $dep2/file2 $out/file2\"]; };\n\
         unrelated = mk \"unrelated\" { args = [\"-c\" \"mkdir $out\"]; };\n\
         in {\n  inherit dep1 dep2 deps unrelated;\n",
    );
    for (i, case) in CASES.iter().enumerate() {
        let mut script = String::from("mkdir $out");
        for r in case.refers {
            let target = if *r == "self" {
                "$out".to_string()
            } else {
                format!("${r}")
            };
            script += &format!("; ln -s {target} $out/{r}");
        }
        let common = format!("inherit dep1 dep2 deps unrelated; args = [\"-c\" \"{script}\"];");
        let mut lists = String::new();
        for (attr, names) in case.lists {
            let items: Vec<String> = names
                .iter()
                .map(|n| {
                    if *n == "out" {
                        "\"out\"".to_string()
                    } else {
                        n.to_string()
                    }
                })
                .collect();
            lists += &format!(" {attr} = [ {} ];", items.join(" "));
        }
        nix += &format!("  free-{i} = mk \"case-{i}\" {{ {common} }};\n");
        nix += &format!("  checked-{i} = mk \"case-{i}\" {{ {common}{lists} }};\n");
    }
    nix + "}\n"
}

/// `nix-build` into the store at `root`, run as root without a daemon or substituters; the
/// builder is the host's /bin/sh (Nix builds a chroot store's paths in a sandbox: the host's
/// /bin, /usr and libraries are mounted into it).
fn nix_build(root: &Path, file: &Path, attrs: &[String]) -> Output {
    let mut c = Command::new("nix-build");
    c.env("NIX_REMOTE", "local")
        .arg("--store")
        .arg(root)
        .args(["--option", "substituters", ""])
        .args(["--option", "sandbox", "false"])
        .args(["--option", "build-users-group", ""]);
    let host: Vec<&str> = ["/bin", "/usr", "/lib", "/lib64", "/lib32"]
        .into_iter()
        .filter(|d| Path::new(d).exists())
        .collect();
    c.args(["--option", "extra-sandbox-paths", &host.join(" ")])
        .args(["--no-out-link", "--keep-going", "-j", "4"])
        .arg(file);
    for a in attrs {
        c.arg("-A").arg(a);
    }
    c.output().unwrap()
}

/// The output path of attribute `attr` (evaluated, not built).
fn out_path(root: &Path, file: &Path, attr: &str) -> String {
    let out = Command::new("nix-instantiate")
        .env("NIX_REMOTE", "local")
        .arg("--store")
        .arg(root)
        .args(["--eval", "-A"])
        .arg(format!("{attr}.outPath"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-instantiate {attr}: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_string()
}

/// Whether Nix registered `path` as valid (a failed output may be left in the store, invalid).
fn valid(root: &Path, path: &str) -> bool {
    let out = Command::new("nix-store")
        .env("NIX_REMOTE", "local")
        .arg("--store")
        .arg(root)
        .arg("--check-validity")
        .arg(path)
        .output()
        .unwrap();
    out.status.success()
}

/// The offending paths of the first violation message about `output` in `text`: the lines
/// after `output '…' is not allowed to refer to the following paths:` that are store paths
/// (Nix indents them by its log's margin, nar-tool by two spaces). `None` without one.
fn offenders_in(text: &str, output: &str) -> Option<Vec<String>> {
    let head = format!("output '{output}' is not allowed to refer to the following paths:");
    let at = text.find(&head)? + head.len();
    Some(
        text[at..]
            .lines()
            .skip(1)
            .map(str::trim)
            .take_while(|l| l.starts_with(&format!("{STORE}/")))
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn policies_fail_where_nix_fails() {
    if !(have("nix-build") && have("nix-instantiate")) {
        println!("SKIP policies_fail_where_nix_fails: nix-build not on PATH (install nix-bin)");
        return;
    }
    let t = TempTree::new();
    let root = t.path().join("nix-root");
    let file = t.path().join("cases.nix");
    fs::write(&file, expression()).unwrap();
    // The shared dependencies and every unconstrained output, which must build.
    let free: Vec<String> = (0..CASES.len()).map(|i| format!("free-{i}")).collect();
    let out = nix_build(&root, &file, &free);
    assert!(
        out.status.success(),
        "nix-build of the unconstrained outputs: {}",
        stderr(&out)
    );
    // Every constrained one, in one run: each fails or passes on its own.
    let checked: Vec<String> = (0..CASES.len()).map(|i| format!("checked-{i}")).collect();
    let nix = nix_build(&root, &file, &checked);
    let nix_log = stderr(&nix);
    let deps: BTreeMap<&str, String> = DEPS
        .iter()
        .map(|d| (*d, out_path(&root, &file, d)))
        .collect();
    // A cache of every unconstrained output, for verify.
    let all = t.path().join("all");
    let mut c = Command::new(bin());
    c.arg("build-cache")
        .arg("--to")
        .arg(&all)
        .arg("--store-root")
        .arg(&root)
        .arg("--quiet");
    for i in 0..CASES.len() {
        c.arg(out_path(&root, &file, &format!("free-{i}")));
    }
    let out = run_cmd(&mut c, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let (mut failed, mut passed) = (0, 0);
    for (i, case) in CASES.iter().enumerate() {
        let checked_path = out_path(&root, &file, &format!("checked-{i}"));
        let free_path = out_path(&root, &file, &format!("free-{i}"));
        let nix_built = valid(&root, &checked_path);
        let nix_offenders = offenders_in(&nix_log, &checked_path);
        assert_eq!(
            nix_built,
            nix_offenders.is_none(),
            "case {i}: Nix built it but reported a violation, or neither: {nix_log}"
        );
        // The same lists for build-cache, of the unconstrained output ("out" is that path).
        let mut flags = Vec::new();
        for (attr, names) in case.lists {
            let flag = match *attr {
                "allowedReferences" => "--allowed-references",
                "allowedRequisites" => "--allowed-requisites",
                "disallowedReferences" => "--disallowed-references",
                _ => "--disallowed-requisites",
            };
            let paths: Vec<&str> = names
                .iter()
                .map(|n| {
                    if *n == "out" {
                        free_path.as_str()
                    } else {
                        deps[n].as_str()
                    }
                })
                .collect();
            flags.push(flag.to_string());
            flags.push(paths.join(","));
        }
        // Metadata from Nix's DB, and found by scanning the NARs (as Nix found them).
        for scan in [false, true] {
            let cache = t.path().join(format!("cache-{i}-{scan}"));
            let mut c = Command::new(bin());
            c.arg("build-cache")
                .arg("--to")
                .arg(&cache)
                .arg("--store-root")
                .arg(&root)
                .arg("--quiet")
                .args(scan.then_some("--scan-references"))
                .args(&flags)
                .arg(&free_path);
            let ours = run_cmd(&mut c, b"");
            let our_log = stderr(&ours).replace(&free_path, &checked_path);
            let our_offenders = offenders_in(&our_log, &checked_path);
            assert_eq!(
                ours.status.success(),
                nix_built,
                "case {i} ({:?}, scan {scan}): Nix {} but build-cache {}:\nNix: {nix_log}\nours: {our_log}",
                case.lists,
                if nix_built { "built it" } else { "refused it" },
                if ours.status.success() {
                    "published it"
                } else {
                    "refused it"
                },
            );
            // The first list broken (Nix stops there) has the same offenders, in the same order.
            assert_eq!(
                our_offenders, nix_offenders,
                "case {i}, scan {scan}: {our_log}"
            );
            if nix_built {
                assert!(cache
                    .join(format!("{}.narinfo", &free_path[STORE.len() + 1..][..32]))
                    .exists());
            } else {
                assert_eq!(ours.status.code(), Some(1), "{our_log}");
                assert!(
                    !cache.exists() || snapshot(&cache).is_empty(),
                    "case {i}: wrote to the cache"
                );
            }
        }
        // verify, of a cache of every unconstrained output: the same verdict, and every path
        // Nix names among its findings.
        let (code, report) = verify(
            &all,
            &[
                flags.clone(),
                vec!["--policy-path".into(), free_path.clone()],
            ]
            .concat(),
        );
        assert_eq!(
            code,
            Some(if nix_built { 0 } else { 8 }),
            "case {i}: {report}"
        );
        let found: Vec<String> = report_problems(&report)
            .into_iter()
            .map(|(kind, path, message)| {
                assert_eq!(
                    (kind.as_str(), path.as_str()),
                    ("reference-policy", free_path.as_str())
                );
                message.replace(&free_path, &checked_path)
            })
            .collect();
        for o in nix_offenders.iter().flatten() {
            let said = format!("is not allowed to refer to {o} (");
            assert!(
                found.iter().any(|m| m.starts_with(&said)),
                "case {i}: {o} not in {found:?}"
            );
        }
        if nix_built {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    // Both outcomes are exercised (the table is not all one way).
    assert!(
        failed >= 10 && passed >= 8,
        "{failed} failed, {passed} passed"
    );
    println!("policies_fail_where_nix_fails: {failed} cases refused and {passed} passed, as Nix");
}
