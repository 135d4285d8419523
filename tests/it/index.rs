//! The lookup index (`nar-tool-index/`), end to end on a directory and on the S3 test server:
//! its golden bytes for the corpus, `lookup`, `--referrers` and `why-depends` answered the same
//! with and without it, the index equal to one rebuilt from the narinfos after builds,
//! collections and builds SIGKILLed at random, and hostile indexes refused.

use std::collections::BTreeSet;
use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::gc::{base, build_cmd, build_corpus, corpus_path, synth_store, Cache};

fn golden_dir() -> std::path::PathBuf {
    fixtures().join("index")
}

/// `nar-tool ARGS` on `cache`: (exit code, stdout, stderr).
fn run3(cache: &Cache, args: &[&str]) -> (i32, String, String) {
    let out = cache.run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_corpus_index_is_golden() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let dir = std::path::PathBuf::from(&cache.arg).join("nar-tool-index");
    let manifest = fs::read(dir.join("index.json")).unwrap();
    let golden = golden_dir().join("corpus-index.json");
    if std::env::var_os("NAR_TOOL_BLESS").is_some() {
        fs::create_dir_all(golden_dir()).unwrap();
        fs::write(&golden, &manifest).unwrap();
    }
    assert_eq!(
        String::from_utf8_lossy(&manifest),
        fs::read_to_string(&golden).unwrap(),
        "index.json (NAR_TOOL_BLESS=1 writes it anew)"
    );
    // One shard, its text golden too.
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let name = m["shards"][0]["name"].as_str().unwrap();
    let bytes = fs::read(dir.join(name)).unwrap();
    let text = nar_tool::compression::decode_all(
        nar_tool::compression::Compression::Zstd,
        &bytes,
        1 << 20,
    )
    .unwrap();
    let golden = golden_dir().join("corpus-shard-0.txt");
    if std::env::var_os("NAR_TOOL_BLESS").is_some() {
        fs::write(&golden, &text).unwrap();
    }
    assert_eq!(
        String::from_utf8_lossy(&text),
        fs::read_to_string(&golden).unwrap()
    );
    cache.assert_index_current("after the build");
}

/// `lookup` and `why-depends` answers on the corpus cache.
fn answers(cache: &Cache) -> Vec<(i32, String)> {
    let hello = corpus_path("app-0.9");
    let libdemo = corpus_path("libdemo-1.0");
    let queries: Vec<Vec<String>> = vec![
        vec!["lookup".into(), cache.arg.clone(), hello.clone()],
        vec![
            "lookup".into(),
            cache.arg.clone(),
            base(&hello)[..32].into(),
        ],
        vec!["lookup".into(), cache.arg.clone(), "lib".into()],
        vec![
            "lookup".into(),
            cache.arg.clone(),
            "demo".into(),
            "-l".into(),
        ],
        vec![
            "lookup".into(),
            "--json".into(),
            cache.arg.clone(),
            base(&hello).into(),
        ],
        vec![
            "lookup".into(),
            "--referrers".into(),
            cache.arg.clone(),
            libdemo.clone(),
        ],
        vec!["lookup".into(), cache.arg.clone(), "no-such-name".into()],
        vec![
            "why-depends".into(),
            cache.arg.clone(),
            hello.clone(),
            libdemo.clone(),
        ],
        vec![
            "why-depends".into(),
            "--json".into(),
            cache.arg.clone(),
            hello.clone(),
            libdemo.clone(),
        ],
        vec![
            "why-depends".into(),
            cache.arg.clone(),
            libdemo.clone(),
            hello.clone(),
        ],
    ];
    queries
        .iter()
        .map(|q| {
            let args: Vec<&str> = q.iter().map(String::as_str).collect();
            let (code, out, _) = run3(cache, &args);
            (code, out)
        })
        .collect()
}

fn lookups_with_and_without_the_index(cache: &Cache) {
    let _root = build_corpus(cache);
    let with = answers(cache);
    let hello = corpus_path("app-0.9");
    let libdemo = corpus_path("libdemo-1.0");
    assert_eq!(with[0], (0, format!("{hello}\n")));
    assert_eq!(with[1], (0, format!("{hello}\n")));
    assert!(with[2].1.contains(&libdemo), "{}", with[2].1);
    assert!(with[3].1.contains("NAR size:"), "{}", with[3].1);
    let json: serde_json::Value = serde_json::from_str(&with[4].1).unwrap();
    assert_eq!(json[0]["storePath"], hello);
    assert!(json[0]["references"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == &serde_json::Value::from(libdemo.clone())));
    assert!(with[5].1.lines().any(|l| l == hello), "{}", with[5].1);
    assert_eq!(with[6], (1, String::new()));
    assert!(
        with[7].1.starts_with(&format!("{hello}\n")),
        "{}",
        with[7].1
    );
    assert!(
        with[7].1.trim_end().ends_with(&format!("└───{libdemo}")),
        "{}",
        with[7].1
    );
    let chain: Vec<String> = serde_json::from_str(&with[8].1).unwrap();
    assert_eq!(chain.first(), Some(&hello));
    assert_eq!(chain.last(), Some(&libdemo));
    assert_eq!(with[9].0, 1, "libdemo does not depend on hello");
    // Without the index: the same answers, from the narinfos.
    remove_index(cache);
    let (_, _, err) = run3(cache, &["lookup", &cache.arg, &hello]);
    assert!(err.contains("has no index"), "{err}");
    assert_eq!(answers(cache), with);
}

fn remove_index(cache: &Cache) {
    let manifest = nar_tool::cache::index::publish::key("index.json").unwrap();
    assert!(cache.storage.delete(&manifest).unwrap());
}

#[test]
fn lookups_with_and_without_the_index_on_a_directory() {
    lookups_with_and_without_the_index(&Cache::dir());
}

#[test]
fn lookups_with_and_without_the_index_on_s3() {
    lookups_with_and_without_the_index(&Cache::s3("index-lookups"));
}

/// Builds, collections, and builds SIGKILLed at random: after each build or collection that
/// completes, the index says what the narinfos say.
fn index_follows_writers(cache: &Cache, seed: u64) {
    let synth = synth_store(&format!("i{seed}"), 40, seed);
    let mut rng = Rng::new(seed);
    let paths: Vec<&String> = synth.paths.iter().collect();
    let out = build_cmd(cache, &synth, &paths[..10]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cache.assert_index_current("the first build");
    for round in 0..4 {
        // A build killed at a random moment, then one that completes.
        let picks: Vec<&String> = (0..3).map(|_| *rng.pick(&paths)).collect();
        let mut child = build_cmd(cache, &synth, &picks)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        let _ = child.kill();
        let _ = child.wait();
        let out = build_cmd(cache, &synth, &picks).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cache.assert_index_current(&format!("round {round}: the rerun of a killed build"));
        // A collection keeping one path's closure.
        let keep = rng.pick(&paths).to_string();
        if round % 2 == 1 {
            let mut child = build_cmd(cache, &synth, &[&keep])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(200)));
            let _ = child.kill();
            let _ = child.wait();
        }
        cache.ok(&["gc", &cache.arg, "--grace", "0", "--root", &keep]);
        cache.assert_index_current(&format!("round {round}: the collection"));
        let listed: BTreeSet<String> = cache.narinfos().into_keys().collect();
        let (code, out, _) = run3(cache, &["lookup", &cache.arg, "gc-"]);
        let found: BTreeSet<String> = out.lines().map(|l| base(l).to_string()).collect();
        assert_eq!(
            (code == 0, found),
            (!listed.is_empty(), listed),
            "round {round}"
        );
    }
}

#[test]
fn the_index_follows_builds_collections_and_killed_builds_on_a_directory() {
    index_follows_writers(&Cache::dir(), 11);
}

#[test]
fn the_index_follows_builds_collections_and_killed_builds_on_s3() {
    index_follows_writers(&Cache::s3("index-writers"), 12);
}

#[test]
fn hostile_indexes_are_not_trusted() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let dir = std::path::PathBuf::from(&cache.arg).join("nar-tool-index");
    let hello = corpus_path("app-0.9");
    let manifest = fs::read_to_string(dir.join("index.json")).unwrap();
    // A manifest that is not one: lookups read the narinfos instead, the next build repairs it.
    fs::write(dir.join("index.json"), "{\"format\": 1}").unwrap();
    let (code, out, err) = run3(&cache, &["lookup", &cache.arg, &hello]);
    assert_eq!((code, out), (0, format!("{hello}\n")));
    assert!(err.contains("is not valid"), "{err}");
    let (code, out, _) = run3(&cache, &["index", "--check", &cache.arg]);
    assert_eq!(code, 1, "{out}");
    cache.ok(&["index", &cache.arg]);
    cache.assert_index_current("after nar-tool index");
    // A shard whose bytes are not the ones the manifest names: refused, saying which.
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let name = m["shards"][0]["name"].as_str().unwrap();
    fs::write(dir.join(name), b"(\xb5/\xfd garbage").unwrap();
    let (code, _, err) = run3(&cache, &["lookup", &cache.arg, &hello]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(name) && err.contains("not the"), "{err}");
    // A shard that is a symlink out of the cache is never read.
    let outside = TempTree::new();
    fs::write(
        outside.path().join("x"),
        fs::read(dir.join("index.json")).unwrap(),
    )
    .unwrap();
    fs::remove_file(dir.join(name)).unwrap();
    std::os::unix::fs::symlink(outside.path().join("x"), dir.join(name)).unwrap();
    let (code, _, err) = run3(&cache, &["lookup", &cache.arg, &hello]);
    assert_eq!(code, 1, "{err}");
    // `nar-tool index` writes it anew; the stray shard of a dead writer goes once old.
    cache.ok(&["index", &cache.arg]);
    cache.assert_index_current("repaired");
    assert_eq!(run3(&cache, &["lookup", &cache.arg, &hello]).0, 0);
}
