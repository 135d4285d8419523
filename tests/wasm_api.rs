//! The JavaScript API, run in Node by `wasm-pack test --node -- --test wasm_api` (wasm32 only):
//! the exported functions on corpus files, errors as JS `Error`s with the core's messages, and
//! `verifyCache` over an in-memory JS source, clean and damaged.
//!
//! A binary of its own, not a module of `tests/it` (the native tests): it is built only for
//! wasm32 and run by wasm-bindgen-test's runner in Node (`scripts/test-pkg.sh`), so
//! `wasm-pack test --node -- --test wasm_api` compiles this file alone, and `tests/it` stays
//! native with no per-module `cfg`.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Reflect, Uint8Array};
use nar_tool::wasm;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

const NARINFO: &str =
    include_str!("fixtures/corpus/caches/xz/mnc6w5scb0k600cvh9ss511kmyvx9xc5.narinfo");
const NAR: &[u8] =
    include_bytes!("fixtures/corpus/nar/mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public.nar");
const LIBDEMO_NAR: &[u8] =
    include_bytes!("fixtures/corpus/nar/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public.nar");
const PUBLIC_KEY: &str = include_str!("fixtures/corpus/keys/public");
const SECRET_KEY: &str = include_str!("fixtures/corpus/keys/secret");

#[wasm_bindgen(inline_js = "
export function memorySource(files, withSizes) {
  const get = (p) => files.has(p) ? files.get(p) : null;
  const source = {
    async readFile(p) { return get(p); },
    async openFile(p) {
      const data = get(p);
      if (data === null) return null;
      let at = 0;
      return { async next() {
        if (at >= data.length) return null;
        const piece = data.subarray(at, at + 1000); at += 1000; return piece;
      } };
    },
    async listNarinfos() { return [...files.keys()].filter(k => !k.includes('/') && k.endsWith('.narinfo')); },
    async listNarFiles() { return [...files.keys()].filter(k => k.startsWith('nar/')); },
  };
  if (withSizes) source.fileSize = async (p) => files.has(p) ? files.get(p).length : null;
  return source;
}
export function errorMessage(e) { return e instanceof Error ? e.message : 'not an Error: ' + e; }
")]
extern "C" {
    #[wasm_bindgen(js_name = memorySource)]
    fn memory_source(files: &js_sys::Map, with_sizes: bool) -> JsValue;
    #[wasm_bindgen(js_name = errorMessage)]
    fn error_message(e: &JsValue) -> String;
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap()
}

fn get_str(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_default()
}

fn message(e: JsError) -> String {
    error_message(&JsValue::from(e))
}

#[wasm_bindgen_test]
fn narinfo_round_trip_and_fields() {
    let info = wasm::parse_narinfo(NARINFO).unwrap();
    assert_eq!(
        get_str(&info, "storePath"),
        "/nix/store/mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public"
    );
    assert_eq!(get_str(&info, "compression"), "xz");
    assert_eq!(get(&info, "narSize").as_f64(), Some(NAR.len() as f64));
    assert_eq!(wasm::format_narinfo(info.clone()).unwrap(), NARINFO);
    let fp = wasm::fingerprint(info.clone()).unwrap();
    assert!(
        fp.starts_with("1;/nix/store/mnc6w5scb0k600cvh9ss511kmyvx9xc5-single-file-public;sha256:")
    );
}

#[wasm_bindgen_test]
fn signatures() {
    let info = wasm::parse_narinfo(NARINFO).unwrap();
    let check = wasm::verify_signatures(info.clone(), vec![PUBLIC_KEY.trim().to_string()]).unwrap();
    assert_eq!(Array::from(&get(&check, "valid")).length(), 1);
    // Changed after signing: the signature no longer verifies.
    Reflect::set(&info, &"narSize".into(), &1.0.into()).unwrap();
    let check = wasm::verify_signatures(info.clone(), vec![PUBLIC_KEY.trim().to_string()]).unwrap();
    assert_eq!(Array::from(&get(&check, "invalid")).length(), 1);
    // Re-signed with the corpus key: valid again.
    Reflect::set(&info, &"sigs".into(), &Array::new()).unwrap();
    let signed = wasm::sign_narinfo(info, SECRET_KEY.trim()).unwrap();
    let check = wasm::verify_signatures(signed, vec![PUBLIC_KEY.trim().to_string()]).unwrap();
    assert_eq!(Array::from(&get(&check, "valid")).length(), 1);
    assert_eq!(
        wasm::public_key_of(SECRET_KEY.trim()).unwrap(),
        PUBLIC_KEY.trim()
    );
}

#[wasm_bindgen_test]
fn errors_are_js_errors_with_the_core_messages() {
    let e = message(wasm::parse_narinfo("StorePath: /nix/store/x\n").unwrap_err());
    assert!(e.contains("store path") || e.contains("StorePath"), "{e}");
    let e = message(wasm::list_nar(&NAR[..NAR.len() - 8]).unwrap_err());
    assert!(e.starts_with("NAR byte offset"), "{e}");
    let e = message(wasm::hash(b"x", "sha3", None).unwrap_err());
    assert!(e.contains("unknown hash algorithm"), "{e}");
    let e = message(wasm::decompress(b"not xz", "xz").unwrap_err());
    assert!(e.starts_with("xz"), "{e}");
}

#[wasm_bindgen_test]
fn hashes_and_store_paths() {
    let h = wasm::hash(NAR, "sha256", None).unwrap();
    let info = wasm::parse_narinfo(NARINFO).unwrap();
    assert_eq!(h, get_str(&info, "narHash"));
    assert_eq!(
        wasm::hash(b"", "sha256", Some("base16".into())).unwrap(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let bytes = wasm::nixbase32_decode("0ysj00x31q08vxsznqd9pmvwa0rrzza8").unwrap();
    assert_eq!(
        wasm::nixbase32_encode(&bytes),
        "0ysj00x31q08vxsznqd9pmvwa0rrzza8"
    );
    let p = wasm::parse_store_path(
        "/nix/store/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public",
        None,
    )
    .unwrap();
    assert_eq!(get_str(&p, "hashPart"), "5qk0fgkb9sfxmrbqjcs803wd2rjkaigy");
    assert_eq!(get_str(&p, "name"), "libdemo");
    let ci =
        wasm::parse_cache_info("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n").unwrap();
    assert_eq!(get(&ci, "priority").as_f64(), Some(30.0));
}

#[wasm_bindgen_test]
fn nar_listing_reading_and_streaming() {
    let listing = wasm::list_nar(LIBDEMO_NAR).unwrap();
    assert_eq!(get_str(&get(&listing, "root"), "type"), "directory");
    // Every regular file in the listing reads back as the bytes at its offset.
    let json: String = js_sys::JSON::stringify(&listing).unwrap().into();
    assert!(json.contains("narOffset"), "{json}");
    let whole = wasm::read_nar_file(NAR, "", None).unwrap();
    assert!(!whole.is_empty());
    // Streamed in odd pieces: the same hash, size and listing.
    let mut v = wasm::NarVerifier::new(None, None, None).unwrap();
    for piece in LIBDEMO_NAR.chunks(7) {
        v.update(piece).unwrap();
    }
    let s = v.finish().unwrap();
    assert_eq!(get(&s, "narSize").as_f64(), Some(LIBDEMO_NAR.len() as f64));
    assert_eq!(
        get_str(&s, "narHash"),
        wasm::hash(LIBDEMO_NAR, "sha256", None).unwrap()
    );
    assert_eq!(
        String::from(js_sys::JSON::stringify(&get(&s, "listing")).unwrap()),
        json
    );
    // A damaged stream is refused with the reader's message.
    let mut v = wasm::NarVerifier::new(None, None, None).unwrap();
    v.update(&LIBDEMO_NAR[..100]).unwrap();
    let e = message(v.finish().unwrap_err());
    assert!(e.contains("not a valid NAR"), "{e}");
}

fn cache_files(dir: &[(&str, &[u8])]) -> js_sys::Map {
    let map = js_sys::Map::new();
    for (name, bytes) in dir {
        map.set(&(*name).into(), &Uint8Array::from(*bytes).into());
    }
    map
}

/// One path of the corpus zstd cache: nix-cache-info, its narinfo and its NAR.
fn zstd_corpus() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("nix-cache-info", include_bytes!("fixtures/corpus/caches/zstd/nix-cache-info")),
        (
            "mnc6w5scb0k600cvh9ss511kmyvx9xc5.narinfo",
            include_bytes!("fixtures/corpus/caches/zstd/mnc6w5scb0k600cvh9ss511kmyvx9xc5.narinfo"),
        ),
        (
            "nar/1p0pddpbnw3nzgy8n75yj615ra9r9nsrx0gm6xzqi7lwhk8pz1zb.nar.zst",
            include_bytes!(
                "fixtures/corpus/caches/zstd/nar/1p0pddpbnw3nzgy8n75yj615ra9r9nsrx0gm6xzqi7lwhk8pz1zb.nar.zst"
            ),
        ),
    ]
}

async fn verify(files: &js_sys::Map, with_sizes: bool) -> JsValue {
    let source = memory_source(files, with_sizes);
    let promise = wasm_bindgen_futures::future_to_promise(async move {
        wasm::verify_cache(source, JsValue::NULL)
            .await
            .map_err(JsValue::from)
    });
    JsFuture::from(promise).await.unwrap()
}

#[wasm_bindgen_test]
async fn verify_cache_clean_and_damaged() {
    let files = zstd_corpus();
    let map = cache_files(&files);
    for with_sizes in [true, false] {
        let report = verify(&map, with_sizes).await;
        assert_eq!(
            get(&report, "ok"),
            JsValue::TRUE,
            "{:?}",
            js_sys::JSON::stringify(&report)
        );
        assert_eq!(get(&report, "paths").as_f64(), Some(1.0));
        assert_eq!(wasm::exit_code(report).unwrap(), 0);
    }
    // One flipped byte in the NAR file: file-hash-mismatch, exit 1.
    let (url, nar) = files[2];
    let mut damaged = nar.to_vec();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    map.set(&url.into(), &Uint8Array::from(&damaged[..]).into());
    let report = verify(&map, true).await;
    assert_eq!(get(&report, "ok"), JsValue::FALSE);
    let problems = Array::from(&get(&report, "problems"));
    assert_eq!(problems.length(), 1);
    assert_eq!(get_str(&problems.get(0), "kind"), "file-hash-mismatch");
    assert_eq!(wasm::exit_code(report).unwrap(), 1);
    // The NAR gone: missing-nar.
    map.delete(&url.into());
    let report = verify(&map, false).await;
    let problems = Array::from(&get(&report, "problems"));
    assert_eq!(get_str(&problems.get(0), "kind"), "missing-nar");
}

const CORPUS_XZ: [&str; 9] = [
    include_str!("fixtures/corpus/caches/xz/12221svl9zlcqbffq6hxanhsxsk7wlyr.narinfo"),
    include_str!("fixtures/corpus/caches/xz/3cpw9v40wr678399d4nz2bv4rzvl3r2d.narinfo"),
    include_str!("fixtures/corpus/caches/xz/5qk0fgkb9sfxmrbqjcs803wd2rjkaigy.narinfo"),
    include_str!("fixtures/corpus/caches/xz/8bswc883h867a21h70j0gvrppyavddgp.narinfo"),
    include_str!("fixtures/corpus/caches/xz/gn07vq3ysff2m4mz8scgjm7nmgaffhih.narinfo"),
    include_str!("fixtures/corpus/caches/xz/l3x0p6waaizfa1gbn5zzzjdfdkry4czk.narinfo"),
    include_str!("fixtures/corpus/caches/xz/mnc6w5scb0k600cvh9ss511kmyvx9xc5.narinfo"),
    include_str!("fixtures/corpus/caches/xz/swf7rrkcsawh9sa0zhm4bchjhphk6mjv.narinfo"),
    include_str!("fixtures/corpus/caches/xz/z8w6vc8pyk06rr4fm1h99ciaifp1kqdp.narinfo"),
];

fn store(base: &str) -> String {
    format!("/nix/store/{base}")
}

fn strings(v: &JsValue) -> Vec<String> {
    Array::from(v)
        .iter()
        .map(|s| s.as_string().unwrap())
        .collect()
}

#[wasm_bindgen_test]
fn cache_graph_closures_referrers_why_depends() {
    let top = store("z8w6vc8pyk06rr4fm1h99ciaifp1kqdp-closure-top-public");
    let app = store("swf7rrkcsawh9sa0zhm4bchjhphk6mjv-app-0.9-public");
    let tool = store("l3x0p6waaizfa1gbn5zzzjdfdkry4czk-tool-2.3-public");
    let libdemo = store("5qk0fgkb9sfxmrbqjcs803wd2rjkaigy-libdemo-1.0-public");
    let edge = store("12221svl9zlcqbffq6hxanhsxsk7wlyr-edge-cases-public");
    let symlink = store("8bswc883h867a21h70j0gvrppyavddgp-bare-symlink-public");
    // Every narinfo but libdemo's (the third).
    let infos: Array = CORPUS_XZ
        .iter()
        .filter(|t| !t.starts_with(&format!("StorePath: {libdemo}\n")))
        .map(|t| wasm::parse_narinfo(t).unwrap())
        .collect();
    let mut graph = wasm::CacheGraph::new(infos.clone().into()).unwrap();
    assert_eq!(graph.size(), 8);
    let closure = graph.closure(vec![top.clone()]).unwrap();
    assert_eq!(closure.len(), 7);
    assert!(closure.windows(2).all(|w| w[0] < w[1]) && closure.contains(&top));
    assert_eq!(
        wasm::closure(infos.into(), vec![top.clone()]).unwrap(),
        closure
    );
    // libdemo has no narinfo: skipped by closure, reported by closureWithMissing.
    let c = graph.closure_with_missing(vec![top.clone()]).unwrap();
    assert_eq!(strings(&get(&c, "paths")), closure);
    assert_eq!(strings(&get(&c, "missing")), vec![libdemo.clone()]);
    // Direct referrers, a self-reference included; base names accepted.
    let libdemo_base = libdemo.trim_start_matches("/nix/store/");
    assert_eq!(
        graph.referrers(libdemo_base).unwrap(),
        vec![tool.clone(), app.clone()]
    );
    assert_eq!(
        graph.referrers(&tool).unwrap(),
        vec![tool.clone(), app.clone()]
    );
    // The shortest chain; of two, the first in store path order (bare-symlink before app).
    let chain = graph.why_depends(&top, &libdemo).unwrap();
    assert_eq!(
        strings(&chain),
        vec![top.clone(), app.clone(), libdemo.clone()]
    );
    let chain = graph.why_depends(&top, &edge).unwrap();
    assert_eq!(strings(&chain), vec![top.clone(), symlink, edge]);
    assert!(graph.why_depends(&libdemo, &top).unwrap().is_null());
    // Grown with libdemo's narinfo: in the closure, nothing missing.
    let more: Array = [wasm::parse_narinfo(CORPUS_XZ[2]).unwrap()]
        .iter()
        .collect();
    graph.add(more.into()).unwrap();
    assert_eq!(graph.size(), 9);
    let c = graph.closure_with_missing(vec![top.clone()]).unwrap();
    assert_eq!(strings(&get(&c, "paths")).len(), 8);
    assert_eq!(Array::from(&get(&c, "missing")).length(), 0);
    let e = message(graph.closure(vec!["not-a-path".into()]).unwrap_err());
    assert!(e.starts_with("\"not-a-path\""), "{e}");
}
