//! `serve` answering searches from a cache's lookup index (`GET /_nar-tool/lookup`), on a
//! directory and on the S3 test server: the same records `nar-tool lookup --json` prints, by
//! hash part, store path, name prefix and substring, with referrers, a page at a time; a new
//! index seen by the next search; a cache without an index, hostile queries, and `--auth`.

use serde_json::Value;

use crate::common::*;
use crate::gc::{base, build_cmd, build_corpus, corpus_path, synth_store, Cache};
use crate::serve::get;
use crate::serve_auth::{add_user, basic, request};

/// Serves `cache` (a directory or a bucket prefix) alone, at the root.
fn serve(cache: &Cache) -> ServeProcess {
    ServeProcess::start_cmd(cache.cmd(), &cache.arg, &[])
}

/// `GET /_nar-tool/lookup?<query>`: (status, JSON body).
fn search(addr: &str, query: &str) -> (u16, Value) {
    let r = get(addr, &format!("/_nar-tool/lookup?{query}"));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json"),
        "{query}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let body = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{query}: {e}: {}", String::from_utf8_lossy(&r.body)));
    (r.status, body)
}

/// A search that must succeed: its page.
fn page(addr: &str, query: &str) -> Value {
    let (status, body) = search(addr, query);
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// Every record of a search, page after page of `limit`.
fn all_pages(addr: &str, query: &str, limit: usize) -> Vec<Value> {
    let (mut items, mut offset) = (Vec::new(), 0);
    loop {
        let p = page(addr, &format!("{query}&limit={limit}&offset={offset}"));
        assert_eq!(p["offset"], offset);
        let got = p["items"].as_array().unwrap();
        assert!(got.len() <= limit);
        items.extend(got.iter().cloned());
        match p["next"].as_u64() {
            Some(next) => {
                assert_eq!(next as usize, offset + got.len());
                offset = next as usize;
            }
            None => {
                assert_eq!(p["total"].as_u64().unwrap() as usize, items.len());
                return items;
            }
        }
    }
}

/// What `nar-tool lookup --json [EXTRA] CACHE QUERY` prints.
fn cli(cache: &Cache, extra: &[&str], query: &str) -> Vec<Value> {
    let mut args = vec!["lookup", "--json"];
    args.extend(extra);
    args.extend([cache.arg.as_str(), query]);
    let out = cache.run(&args);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn searches_answer_as_lookup_does(cache: &Cache) {
    let _root = build_corpus(cache);
    let server = serve(cache);
    let addr = &server.addr;
    let hello = corpus_path("app-0.9");
    let libdemo = corpus_path("libdemo-1.0");
    // By hash part, store path and base name: the one record `lookup --json` prints.
    let expected = cli(cache, &[], &hello);
    assert_eq!(expected.len(), 1);
    assert_eq!(expected[0]["storePath"], hello);
    for q in [
        &hello,
        &base(&hello)[..32].to_string(),
        &base(&hello).to_string(),
    ] {
        let p = page(addr, &format!("q={}", percent(q)));
        assert_eq!(
            (&p["total"], &p["items"], &p["next"]),
            (
                &Value::from(1),
                &Value::from(expected.clone()),
                &Value::Null
            ),
            "{q}"
        );
    }
    // A store path below the path (a file in it) is the path too.
    let p = page(addr, &format!("q={}", percent(&format!("{hello}/bin/app"))));
    assert_eq!(p["items"][0]["storePath"], hello);
    // By name: prefix matches first, then substrings, as `lookup` lists them.
    for q in ["lib", "demo", "app-0.9", "e"] {
        let want = cli(cache, &[], q);
        assert!(!want.is_empty(), "{q}");
        assert_eq!(all_pages(addr, &format!("q={q}"), 1000), want, "{q}");
    }
    let e = all_pages(addr, "q=e", 1000);
    let names: Vec<&str> = e.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let prefixed = names.iter().take_while(|n| n.starts_with('e')).count();
    assert!(
        prefixed > 0
            && prefixed < names.len()
            && names[prefixed..].iter().all(|n| !n.starts_with('e')),
        "prefix matches first, then the others: {names:?}"
    );
    // Referrers, as `lookup --referrers --json` gives them, and how many there are.
    let want = cli(cache, &["--referrers"], &libdemo);
    let got = page(addr, &format!("q={}&referrers=1", percent(&libdemo)));
    let mut item = got["items"][0].clone();
    let total = item.as_object_mut().unwrap().remove("referrersTotal");
    assert_eq!(vec![item], want);
    let referrers = want[0]["referrers"].as_array().unwrap();
    assert!(referrers.contains(&Value::from(hello.clone())));
    assert_eq!(total, Some(Value::from(referrers.len())));
    // Pages: every path has a `-` in its name; a page of 2 at a time gives them all, in order.
    let everything = all_pages(addr, "q=-", 1000);
    assert_eq!(everything.len(), 9, "the nine corpus paths");
    assert_eq!(all_pages(addr, "q=-", 2), everything);
    assert_eq!(all_pages(addr, "q=-", 1), everything);
    let past = page(addr, "q=-&offset=100");
    assert_eq!(
        (&past["total"], &past["items"], &past["next"]),
        (
            &Value::from(9),
            &Value::from(Vec::<Value>::new()),
            &Value::Null
        )
    );
    // Nothing found is an empty page, not an error.
    for q in ["no-such-name", &"0".repeat(32)] {
        let p = page(addr, &format!("q={q}"));
        assert_eq!((&p["total"], &p["next"]), (&Value::from(0), &Value::Null));
    }
    // A build adds a path: the next search sees it (a name search, from the index loaded
    // again, and a hash part).
    assert_eq!(page(addr, "q=gc-served")["total"], 0);
    let synth = synth_store("served", 1, 7);
    let new = &synth.paths[0];
    run_cmd_ok(&mut build_cmd(cache, &synth, &[new]), b"");
    let p = page(addr, "q=gc-served");
    assert_eq!(p["total"], 1, "{p}");
    assert_eq!(p["items"][0]["storePath"], *new);
    let p = page(addr, &format!("q={}", &base(new)[..32]));
    assert_eq!(p["items"][0]["storePath"], *new);
    assert_eq!(all_pages(addr, "q=-", 4).len(), 10);
    // No index: 404, saying so.
    let manifest = nar_tool::cache::index::publish::key("index.json").unwrap();
    assert!(cache.storage.delete(&manifest).unwrap());
    for q in ["q=lib", &format!("q={}", &base(&hello)[..32])] {
        let (status, body) = search(addr, q);
        assert_eq!(status, 404, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("no lookup index"),
            "{body}"
        );
    }
}

#[test]
fn searches_answer_as_lookup_does_on_a_directory() {
    searches_answer_as_lookup_does(&Cache::dir());
}

#[test]
fn searches_answer_as_lookup_does_on_s3() {
    searches_answer_as_lookup_does(&Cache::s3("serve-index"));
}

#[test]
fn hostile_queries_get_a_clear_400() {
    let cache = Cache::dir();
    let _root = build_corpus(&cache);
    let server = serve(&cache);
    let long = format!("q={}", "a".repeat(1025));
    let long_encoded = format!("q={}", "%61".repeat(1025));
    for (query, says) in [
        ("", "q (what to look for) is missing"),
        ("q=", "q is empty"),
        ("q=lib&q=app", "q is given twice"),
        (
            "q=lib&limit=0",
            "limit \"0\" is not a number from 1 to 1000",
        ),
        ("q=lib&limit=1001", "from 1 to 1000"),
        ("q=lib&limit=99999999999999999999999", "from 1 to 1000"),
        ("q=lib&offset=-1", "offset \"-1\""),
        ("q=lib&referrers=yes", "expected 1 or 0"),
        ("q=lib&sort=size", "unknown parameter \"sort\""),
        ("q=%4", "not followed by two hex digits"),
        ("q=%GG", "not followed by two hex digits"),
        ("q=%C3%28", "q is not UTF-8"),
        ("q=lib%00", "control character"),
        ("q=lib%1B%5B2J", "control character"),
        (&long, "more than 1024"),
        (&long_encoded, "more than 1024"),
    ] {
        let (status, body) = search(&server.addr, query);
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with("bad query: "), "{query}: {error}");
        assert!(error.contains(says), "{query}: {error}");
    }
    // The longest query allowed is answered.
    let (status, body) = search(&server.addr, &format!("q={}", "a".repeat(1024)));
    assert_eq!((status, &body["total"]), (200, &Value::from(0)));
    // Many name searches at once, the first ones loading the index: each is answered, or told
    // to come back (503 with Retry-After) while another request loads it; never an error.
    let answers: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    let r = get(&server.addr, "/_nar-tool/lookup?q=demo");
                    (r.status, r.header("Retry-After").map(str::to_string))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (status, retry) in &answers {
        assert!(
            *status == 200 || (*status == 503 && retry.is_some()),
            "{answers:?}"
        );
    }
    assert!(answers.iter().any(|(s, _)| *s == 200), "{answers:?}");
    // A damaged shard under a new manifest: a clear error (the shard named), not a wrong answer.
    let dir = std::path::Path::new(&cache.arg).join("nar-tool-index");
    let manifest = dir.join("index.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    let shard = m["shards"][0]["name"].as_str().unwrap();
    std::fs::write(dir.join(shard), b"not the shard").unwrap();
    std::fs::write(&manifest, format!("{text}\n")).unwrap();
    let hello = corpus_path("app-0.9");
    for q in ["q=lib".to_string(), format!("q={}", &base(&hello)[..32])] {
        let (status, body) = search(&server.addr, &q);
        assert_eq!(status, 500, "{q}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.starts_with("cannot read the index of this cache: index shard")
                && error.contains(shard),
            "{q}: {error}"
        );
    }
}

#[test]
fn searches_of_named_caches_need_the_credentials_their_cache_does() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    add_user(&auth, "alice", "a", &[]);
    add_user(&auth, "bob", "b", &["public"]);
    let (public, private) = (Cache::dir(), Cache::dir());
    let _roots = (build_corpus(&public), build_corpus(&private));
    // The private cache has one more path than the public one.
    let synth = synth_store("private", 1, 3);
    run_cmd_ok(&mut build_cmd(&private, &synth, &[&synth.paths[0]]), b"");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--auth"])
        .arg(&auth)
        .arg("--cache")
        .arg(format!("public={}", public.arg))
        .arg("--cache")
        .arg(format!("private={}", private.arg));
    let s = ServeProcess::start_args(cmd);
    let (a, b) = (basic("alice", "a"), basic("bob", "b"));
    let total = |path: &str, who: &str| -> (u16, Option<u64>) {
        let (status, _, body, _) = request(&s.addr, None, path, &[("Authorization", who)]);
        let body: Option<Value> = serde_json::from_slice(&body).ok();
        (status, body.and_then(|b| b["total"].as_u64()))
    };
    assert_eq!(total("/public/_nar-tool/lookup?q=-", &a), (200, Some(9)));
    assert_eq!(total("/private/_nar-tool/lookup?q=-", &a), (200, Some(10)));
    assert_eq!(total("/public/_nar-tool/lookup?q=-", &b), (200, Some(9)));
    assert_eq!(total("/private/_nar-tool/lookup?q=-", &b).0, 403);
    assert_eq!(total("/private/_nar-tool/lookup?q=gc-private", &b).0, 403);
    let (status, head, _, _) = request(&s.addr, None, "/public/_nar-tool/lookup?q=-", &[]);
    assert_eq!(status, 401);
    assert!(head.contains("WWW-Authenticate"), "{head}");
    // A bad query of a cache one may not read says nothing of it either.
    assert_eq!(total("/private/_nar-tool/lookup?limit=0", &b).0, 403);
    // Not a cache: the server's own namespace has no index.
    assert_eq!(total("/_nar-tool/lookup?q=-", &a).0, 404);
}
