//! The JavaScript API (wasm-bindgen): conversions only, every check and format is the core's.
//! Names are camelCase; values cross as plain JS objects shaped like the CLI's `--json` output
//! (through JSON, or for verify reports and the graph with serde-wasm-bindgen, so they are
//! exactly what `nar-tool … --json` prints); errors are JS `Error`s carrying the core's messages.
//! See `pkg/WASM-API.md` for the contract.

use js_sys::{Function, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::cache::graph::{Graph, Weight};
use crate::cache::layout::KeyDir;
use crate::cache::storage;
use crate::cache::verify::push;
use crate::cache::verify::report::{render, Junit, Rendering};
use crate::cache::verify::{NarFileCheck, Report, VerifyOptions, DEFAULT_MAX_PROBLEMS};
use crate::cache_info::CacheInfo;
use crate::compression::{self, Compression};
use crate::hash::{Encoding, Hash, HashAlgo};
use crate::nar::listing::{Listing, ListingNode, Resolved};
use crate::narinfo::NarInfo;
use crate::signing::{PublicKey, SecretKey};
use crate::store_path::{StoreDir, StorePath};

mod index;
mod report;
mod share;
mod source;

use share::JsShare;
use source::{sha256_factory, JsSource};

pub use index::CacheIndex;

type JsResult<T> = Result<T, JsError>;

/// A JS value shaped like `value`'s JSON.
fn to_js<T: Serialize>(value: &T) -> JsResult<JsValue> {
    let json = serde_json::to_string(value).map_err(|e| JsError::new(&e.to_string()))?;
    js_sys::JSON::parse(&json).map_err(|_| JsError::new("internal: unparsable JSON"))
}

/// A Rust value from a JS value, through JSON.
fn from_js<T: for<'de> Deserialize<'de>>(value: &JsValue, what: &str) -> JsResult<T> {
    let json: String = js_sys::JSON::stringify(value)
        .map_err(|_| JsError::new(&format!("{what}: not serialisable to JSON")))?
        .into();
    serde_json::from_str(&json).map_err(|e| JsError::new(&format!("{what}: {e}")))
}

/// A plain JS value (objects, not `Map`s) for a Rust value, with serde-wasm-bindgen.
fn to_value<T: Serialize>(value: &T) -> JsResult<JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(err)
}

/// A Rust value from a JS value, with serde-wasm-bindgen.
fn from_value<T: for<'de> Deserialize<'de>>(value: JsValue, what: &str) -> JsResult<T> {
    serde_wasm_bindgen::from_value(value).map_err(|e| err(format!("{what}: {e}")))
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Narinfos, keys, signatures

/// A narinfo as JS sees it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsNarInfo {
    store_path: String,
    url: String,
    compression: String,
    #[serde(default)]
    file_hash: Option<String>,
    #[serde(default)]
    file_size: Option<u64>,
    nar_hash: String,
    nar_size: u64,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    deriver: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    sigs: Vec<String>,
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    extra: Vec<(String, String)>,
}

impl From<&NarInfo> for JsNarInfo {
    fn from(i: &NarInfo) -> JsNarInfo {
        JsNarInfo {
            store_path: i.path(),
            url: i.url.clone(),
            compression: i.compression.to_string(),
            file_hash: i.file_hash.as_ref().map(Hash::to_string),
            file_size: i.file_size,
            nar_hash: i.nar_hash.to_string(),
            nar_size: i.nar_size,
            references: i
                .references
                .iter()
                .map(|r| r.base_name().to_string())
                .collect(),
            deriver: i.deriver.as_ref().map(|d| d.base_name().to_string()),
            system: i.system.clone(),
            sigs: i.sigs.iter().map(ToString::to_string).collect(),
            ca: i.ca.as_ref().map(ToString::to_string),
            extra: i.extra.clone(),
        }
    }
}

impl JsNarInfo {
    /// Checked as a narinfo file would be: written out as one, then parsed.
    fn to_narinfo(&self) -> JsResult<NarInfo> {
        let mut text = format!(
            "StorePath: {}\nURL: {}\nCompression: {}\n",
            self.store_path, self.url, self.compression
        );
        if let Some(h) = &self.file_hash {
            text += &format!("FileHash: {h}\n");
        }
        if let Some(s) = self.file_size {
            text += &format!("FileSize: {s}\n");
        }
        text += &format!(
            "NarHash: {}\nNarSize: {}\nReferences: {}\n",
            self.nar_hash,
            self.nar_size,
            self.references.join(" ")
        );
        if let Some(d) = &self.deriver {
            text += &format!("Deriver: {d}\n");
        }
        if let Some(s) = &self.system {
            text += &format!("System: {s}\n");
        }
        for sig in &self.sigs {
            text += &format!("Sig: {sig}\n");
        }
        if let Some(ca) = &self.ca {
            text += &format!("CA: {ca}\n");
        }
        for (k, v) in &self.extra {
            text += &format!("{k}: {v}\n");
        }
        NarInfo::parse(&text).map_err(err)
    }
}

fn narinfo_from_js(info: &JsValue) -> JsResult<NarInfo> {
    from_js::<JsNarInfo>(info, "narinfo")?.to_narinfo()
}

#[wasm_bindgen(js_name = parseNarInfo)]
pub fn parse_narinfo(text: &str) -> JsResult<JsValue> {
    to_js(&JsNarInfo::from(&NarInfo::parse(text).map_err(err)?))
}

#[wasm_bindgen(js_name = formatNarInfo)]
pub fn format_narinfo(info: JsValue) -> JsResult<String> {
    Ok(narinfo_from_js(&info)?.to_text())
}

#[wasm_bindgen]
pub fn fingerprint(info: JsValue) -> JsResult<String> {
    narinfo_from_js(&info)?.fingerprint().map_err(err)
}

#[derive(Serialize)]
struct JsSignatureCheck {
    valid: Vec<String>,
    invalid: Vec<String>,
    unknown: Vec<String>,
    malformed: Vec<String>,
}

#[wasm_bindgen(js_name = verifySignatures)]
pub fn verify_signatures(info: JsValue, trusted_keys: Vec<String>) -> JsResult<JsValue> {
    let keys = parse_keys(&trusted_keys)?;
    let check = narinfo_from_js(&info)?
        .check_signatures(&keys)
        .map_err(err)?;
    to_js(&JsSignatureCheck {
        valid: check.valid,
        invalid: check.invalid,
        unknown: check.unknown,
        malformed: check.malformed,
    })
}

fn parse_keys(keys: &[String]) -> JsResult<Vec<PublicKey>> {
    keys.iter()
        .map(|k| PublicKey::parse(k).map_err(|e| err(format!("trusted key {k:?}: {e}"))))
        .collect()
}

#[wasm_bindgen(js_name = signNarInfo)]
pub fn sign_narinfo(info: JsValue, secret_key: &str) -> JsResult<JsValue> {
    let key = SecretKey::parse(secret_key).map_err(err)?;
    let mut info = narinfo_from_js(&info)?;
    info.sign(&key).map_err(err)?;
    to_js(&JsNarInfo::from(&info))
}

/// A public key `name:base64` checked as Nix checks one: `{ name, key }` (`key` is the text
/// again), or an `Error` saying what is wrong with it.
#[wasm_bindgen(js_name = parsePublicKey)]
pub fn parse_public_key(text: &str) -> JsResult<JsValue> {
    #[derive(Serialize)]
    struct Out<'a> {
        name: &'a str,
        key: String,
    }
    let key = PublicKey::parse(text).map_err(err)?;
    to_js(&Out {
        name: key.name(),
        key: key.to_string(),
    })
}

/// Text from a cache made safe to print: control characters (ESC, CR, LF…) escaped, as every
/// report rendering does.
#[wasm_bindgen(js_name = escapeControls)]
pub fn escape_controls(text: &str) -> String {
    crate::escape::escape_controls(text).into_owned()
}

#[wasm_bindgen(js_name = publicKeyOf)]
pub fn public_key_of(secret_key: &str) -> JsResult<String> {
    Ok(SecretKey::parse(secret_key)
        .map_err(err)?
        .public_key()
        .to_string())
}

// ---------------------------------------------------------------------------------------------
// Hashes, store paths, nix-cache-info

#[wasm_bindgen(js_name = nixbase32Encode)]
pub fn nixbase32_encode(bytes: &[u8]) -> String {
    crate::nixbase32::encode(bytes)
}

#[wasm_bindgen(js_name = nixbase32Decode)]
pub fn nixbase32_decode(text: &str) -> JsResult<Vec<u8>> {
    crate::nixbase32::decode(text).map_err(err)
}

#[wasm_bindgen]
pub fn hash(bytes: &[u8], algo: &str, encoding: Option<String>) -> JsResult<String> {
    let algo: HashAlgo = algo.parse().map_err(err)?;
    let h = Hash::of(algo, bytes);
    Ok(match encoding.as_deref().unwrap_or("nixbase32") {
        "nixbase32" => h.to_prefixed(Encoding::Nixbase32),
        "base16" => h.to_prefixed(Encoding::Base16),
        "base64" => h.to_prefixed(Encoding::Base64),
        "sri" => h.to_sri(),
        other => {
            return Err(err(format!(
                "unknown encoding {other:?} (expected nixbase32, base16, base64 or sri)"
            )))
        }
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsStorePath {
    store_dir: String,
    hash_part: String,
    name: String,
    version: String,
    base_name: String,
    path: String,
}

#[wasm_bindgen(js_name = parseStorePath)]
pub fn parse_store_path(path: &str, store_dir: Option<String>) -> JsResult<JsValue> {
    let dir = StoreDir::new(store_dir.as_deref().unwrap_or("/nix/store")).map_err(err)?;
    let p = dir.parse_path(path).map_err(err)?;
    let (name, version) = p.name_and_version();
    to_js(&JsStorePath {
        store_dir: dir.as_str().to_string(),
        hash_part: p.hash_part().to_string(),
        name: name.to_string(),
        version: version.to_string(),
        base_name: p.base_name().to_string(),
        path: dir.display(&p),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsCacheInfo {
    store_dir: Option<String>,
    want_mass_query: bool,
    priority: Option<i64>,
}

#[wasm_bindgen(js_name = parseCacheInfo)]
pub fn parse_cache_info(text: &str) -> JsResult<JsValue> {
    let info = CacheInfo::parse(text).map_err(err)?;
    to_js(&JsCacheInfo {
        store_dir: info.store_dir,
        want_mass_query: info.want_mass_query.unwrap_or(false),
        priority: info.priority,
    })
}

// ---------------------------------------------------------------------------------------------
// NARs and compression

#[wasm_bindgen(js_name = listNar)]
pub fn list_nar(nar: &[u8]) -> JsResult<JsValue> {
    to_js(&Listing::from_nar(nar).map_err(err)?)
}

/// The bytes of the regular file at `path` in an archive, symlinks inside it followed (absolute
/// ones too if they point into `storePath`, the archive's own store path).
#[wasm_bindgen(js_name = readNarFile)]
pub fn read_nar_file(nar: &[u8], path: &str, store_path: Option<String>) -> JsResult<Vec<u8>> {
    let listing = Listing::from_nar(nar).map_err(err)?;
    match listing.resolve(path, store_path.as_deref()).map_err(err)? {
        Resolved::Inside(
            _,
            ListingNode::Regular {
                size,
                nar_offset: Some(offset),
                ..
            },
        ) => {
            // The listing came from these very bytes, so the range is inside them.
            let start = *offset as usize;
            Ok(nar[start..start + *size as usize].to_vec())
        }
        Resolved::Inside(resolved, _) => Err(err(format!("{resolved:?} is not a regular file"))),
        Resolved::Outside(to) => Err(err(format!("{path:?} leads to {to}, outside the archive"))),
    }
}

/// Resolves `path` in a listing (symlinks followed, as [`read_nar_file`]): `{ path, node }`, or
/// `{ outside }`, the absolute path a symlink leads to out of the archive.
#[wasm_bindgen(js_name = resolveNarPath)]
pub fn resolve_nar_path(
    listing: JsValue,
    path: &str,
    store_path: Option<String>,
) -> JsResult<JsValue> {
    let listing: Listing = from_js(&listing, "listing")?;
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Js<'a> {
        Inside { path: String, node: &'a ListingNode },
        Outside { outside: String },
    }
    to_js(
        &match listing.resolve(path, store_path.as_deref()).map_err(err)? {
            Resolved::Inside(path, node) => Js::Inside { path, node },
            Resolved::Outside(outside) => Js::Outside { outside },
        },
    )
}

fn parse_compression(name: &str) -> JsResult<Compression> {
    name.parse().map_err(err)
}

/// Streams a NAR (or, given a compression, a compressed NAR) through: its hash, size and
/// listing, in constant memory.
#[wasm_bindgen]
pub struct NarVerifier {
    check: Option<NarFileCheck>,
    compressed: bool,
}

#[wasm_bindgen]
impl NarVerifier {
    /// `sha256`: optionally, a factory of faster hashers (`() => ({ update, digest })`);
    /// `memoryLimit`: the bytes the decoder may need (see [`Decompressor::new`]).
    #[wasm_bindgen(constructor)]
    pub fn new(
        compression: Option<String>,
        sha256: Option<Function>,
        memory_limit: Option<f64>,
    ) -> JsResult<NarVerifier> {
        let method = match compression.as_deref() {
            Some(c) => parse_compression(c)?,
            None => Compression::None,
        };
        let check = NarFileCheck::with_sha256(method, u64::MAX, true, &sha256_factory(sha256))
            .with_memory_limit(bytes_limit(memory_limit)?);
        Ok(NarVerifier {
            check: Some(check),
            compressed: compression.is_some(),
        })
    }

    pub fn update(&mut self, chunk: &[u8]) -> JsResult<()> {
        match &mut self.check {
            Some(c) => {
                c.update(chunk);
                Ok(())
            }
            None => Err(err("NarVerifier: finish() was already called")),
        }
    }

    /// `{ narHash, narSize, listing, fileHash?, fileSize? }`, or an `Error` saying what is wrong.
    pub fn finish(&mut self) -> JsResult<JsValue> {
        let check = self
            .check
            .take()
            .ok_or_else(|| err("NarVerifier: finish() was already called"))?;
        let s = check.summary("the input").map_err(err)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Summary {
            nar_hash: String,
            nar_size: u64,
            listing: Option<Listing>,
            #[serde(skip_serializing_if = "Option::is_none")]
            file_hash: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            file_size: Option<u64>,
        }
        to_js(&Summary {
            nar_hash: s.nar_hash.to_string(),
            nar_size: s.nar_bytes,
            listing: s.listing,
            file_hash: self.compressed.then(|| s.file_hash.to_string()),
            file_size: self.compressed.then_some(s.file_bytes),
        })
    }
}

/// A streaming decompressor: `update(chunk)` → the bytes it completes; `finish()` → the rest.
#[wasm_bindgen]
pub struct Decompressor {
    decoder: compression::Decoder,
}

#[wasm_bindgen]
impl Decompressor {
    /// `memoryLimit`: the most bytes the decoder may need (a zstd window, an xz dictionary); a
    /// stream needing more is refused before anything is allocated. Default: 2 GiB + 1 MiB,
    /// which accepts what Nix accepts (zstd up to `--long=31`, xz dictionaries up to 1.5 GiB).
    #[wasm_bindgen(constructor)]
    pub fn new(compression: &str, memory_limit: Option<f64>) -> JsResult<Decompressor> {
        Ok(Decompressor {
            decoder: compression::Decoder::with_memory_limit(
                parse_compression(compression)?,
                bytes_limit(memory_limit)?,
            ),
        })
    }

    pub fn update(&mut self, chunk: &[u8]) -> JsResult<Vec<u8>> {
        let mut out = Vec::new();
        self.decoder
            .update(chunk, &mut |b| -> Result<(), ()> {
                out.extend_from_slice(b);
                Ok(())
            })
            .map_err(push_error)?;
        Ok(out)
    }

    pub fn finish(&mut self) -> JsResult<Vec<u8>> {
        let mut out = Vec::new();
        self.decoder
            .finish(&mut |b| -> Result<(), ()> {
                out.extend_from_slice(b);
                Ok(())
            })
            .map_err(push_error)?;
        Ok(out)
    }
}

fn push_error(e: compression::PushError<()>) -> JsError {
    match e {
        compression::PushError::Decode(e) => err(e),
        compression::PushError::Sink(()) => err("internal: output refused"),
    }
}

/// Decompresses a whole buffer (at most 4 GiB of output).
#[wasm_bindgen]
pub fn decompress(bytes: &[u8], compression: &str) -> JsResult<Vec<u8>> {
    compression::decode_all(parse_compression(compression)?, bytes, u32::MAX.into()).map_err(err)
}

// ---------------------------------------------------------------------------------------------
// Cache listings

/// The names of a folder's listing (`dir`: "" for the root, "nar", "log" or "realisations") that
/// are part of the cache, by the storage layer's rule ([`storage::listed_names`]).
#[wasm_bindgen(js_name = listedNames)]
pub fn listed_names(dir: &str, names: Vec<String>) -> JsResult<Vec<String>> {
    let dir = KeyDir::ALL
        .into_iter()
        .find(|d| d.path() == dir)
        .ok_or_else(|| err(format!("{dir:?} is not a folder of a binary cache")))?;
    storage::listed_names(dir, names.into_iter().map(Ok)).map_err(err)
}

// ---------------------------------------------------------------------------------------------
// Verifying a cache through JS sources

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsVerifyOptions {
    trusted_keys: Vec<String>,
    check_contents: Option<bool>,
    store_dir: Option<String>,
    only: Option<Vec<String>>,
    memory_limit: Option<f64>,
    jobs: Option<f64>,
    max_problems: Option<f64>,
}

/// A `memoryLimit` option: bytes a decoder may need (a zstd window, an xz dictionary); the
/// default accepts what Nix accepts ([`compression::DEFAULT_MEMORY_LIMIT`]).
fn bytes_limit(limit: Option<f64>) -> JsResult<u64> {
    match limit {
        None => Ok(compression::DEFAULT_MEMORY_LIMIT),
        Some(n) if n.is_finite() && n >= 0.0 => Ok(n as u64),
        Some(n) => Err(err(format!(
            "memoryLimit: expected a number of bytes, found {n}"
        ))),
    }
}

/// Paths checked at once unless told (`jobs`): enough reads in flight to keep the one thread
/// busy, few enough decoders alive at once.
const DEFAULT_JOBS: usize = 8;

/// Verifies a cache through `source`; resolves to the report `nar-tool verify --json` prints.
#[wasm_bindgen(js_name = verifyCache)]
pub async fn verify_cache(source: JsValue, options: JsValue) -> Result<JsValue, JsError> {
    to_value(&run_verify(source, options).await?)
}

/// Verifies a cache through `source`; resolves to the report kept in wasm memory
/// ([`report::VerifyReport`]): its verdict at once, its renderings in pieces.
#[wasm_bindgen(js_name = verifyCacheReport)]
pub async fn verify_cache_report(
    source: JsValue,
    options: JsValue,
) -> Result<report::VerifyReport, JsError> {
    Ok(report::VerifyReport::new(
        run_verify(source, options).await?,
    ))
}

/// What a verification's options say, checked.
struct VerifySetup {
    opts: VerifyOptions,
    source: JsSource,
    jobs: usize,
    only: Option<Vec<String>>,
    share: JsShare,
}

fn verify_setup(source: JsValue, options: &JsValue) -> Result<VerifySetup, JsError> {
    let o: JsVerifyOptions = if options.is_undefined() || options.is_null() {
        JsVerifyOptions::default()
    } else {
        from_js(options, "options")?
    };
    let sha256 = function_option(options, "sha256");
    let opts = VerifyOptions {
        trusted_keys: parse_keys(&o.trusted_keys)?,
        check_contents: o.check_contents.unwrap_or(true),
        store_dir: StoreDir::new(o.store_dir.as_deref().unwrap_or("/nix/store")).map_err(err)?,
        policy: Default::default(),
        max_problems: match o.max_problems {
            None => DEFAULT_MAX_PROBLEMS,
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => n as usize,
            Some(n) => {
                return Err(err(format!(
                    "maxProblems: expected a whole number of problems (0: every one), found {n}"
                )))
            }
        },
    };
    let source = JsSource::new(source, sha256, bytes_limit(o.memory_limit)?);
    let jobs = match o.jobs {
        None => DEFAULT_JOBS,
        Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= 1024.0 => n as usize,
        Some(n) => {
            return Err(err(format!(
                "jobs: expected a whole number of paths from 1 to 1024, found {n}"
            )))
        }
    };
    let share = if options.is_object() {
        Reflect::get(options, &"share".into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    };
    Ok(VerifySetup {
        opts,
        source,
        jobs,
        only: o.only,
        share: JsShare::new(&share).map_err(err)?,
    })
}

async fn run_verify(source: JsValue, options: JsValue) -> Result<Report, JsError> {
    let on_progress = function_option(&options, "onProgress");
    let v = verify_setup(source, &options)?;
    let report = push::verify_cache_shared(
        &v.source,
        &v.opts,
        v.only.as_deref(),
        v.jobs,
        &v.share,
        |p| {
            if let Some(f) = &on_progress {
                let event = js_sys::Object::new();
                let set = |k: &str, v: JsValue| Reflect::set(&event, &k.into(), &v);
                let _ = set("done", (p.done as f64).into());
                let _ = set("total", (p.total as f64).into());
                let _ = set("path", p.path.into());
                let _ = set("bytes", (p.bytes as f64).into());
                let _ = f.call1(&JsValue::NULL, &event);
            }
        },
    )
    .await;
    Ok(report)
}

/// Paths checked by a helper before it sends their checks to the leader.
const SHARED_BATCH: usize = 16;

/// A helper's part of a verification shared between workers: checks the paths of `names` it
/// claims through `options.share` (as `verifyCache` would: the same options) and sends their
/// checks, a batch at a time, to `options.share.send`. Resolves when no path is left to claim.
#[wasm_bindgen(js_name = checkSharedPaths)]
pub async fn check_shared_paths(
    source: JsValue,
    options: JsValue,
    names: Vec<String>,
) -> Result<(), JsError> {
    let v = verify_setup(source, &options)?;
    push::check_claimed(
        &v.source,
        &v.opts,
        &names,
        v.jobs,
        &v.share,
        SHARED_BATCH,
        |text| v.share.send(text),
    )
    .await;
    Ok(())
}

/// `options[name]` if it is a function.
fn function_option(options: &JsValue, name: &str) -> Option<Function> {
    if !options.is_object() {
        return None;
    }
    Reflect::get(options, &name.into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
}

/// The exit code `nar-tool verify` gives for a report.
#[wasm_bindgen(js_name = exitCode)]
pub fn exit_code(report: JsValue) -> JsResult<u8> {
    Ok(from_value::<Report>(report, "report")?.exit_code())
}

fn junit_option(junit: JsValue) -> JsResult<JsJunit> {
    if junit.is_undefined() || junit.is_null() {
        Ok(JsJunit::default())
    } else {
        from_value(junit, "junit")
    }
}

/// A rendering by its name (see [`render_report`]).
fn rendering<'a>(format: Option<&str>, junit: &'a JsJunit) -> JsResult<Rendering<'a>> {
    Ok(match format.unwrap_or("text") {
        "text" => Rendering::Text,
        "summary" => Rendering::Summary,
        "json" => Rendering::Json,
        "github" => Rendering::Github,
        "github-summary" => Rendering::GithubSummary,
        "junit" => Rendering::Junit(Junit {
            paths: &junit.paths,
            seconds: junit.seconds,
            timestamp: junit
                .timestamp
                .unwrap_or_else(|| js_sys::Date::now() / 1000.0)
                .max(0.0) as u64,
        }),
        other => {
            return Err(err(format!(
            "unknown report format {other:?} (text, summary, json, github, github-summary, junit)"
        )))
        }
    })
}

/// What a JUnit rendering needs besides the report.
#[derive(Deserialize, Default)]
struct JsJunit {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    seconds: f64,
    /// Seconds since the Unix epoch; default now.
    timestamp: Option<f64>,
}

/// A report rendered as `nar-tool verify` prints it (`text`, the default), its summary line
/// (`summary`), its `--json` document (`json`), GitHub Actions annotations (`github`), a
/// Markdown step summary for GitHub (`github-summary`) or a JUnit XML report (`junit`, with
/// `junit` = `{ paths, seconds, timestamp }`).
#[wasm_bindgen(js_name = renderReport)]
pub fn render_report(
    report: JsValue,
    cache: &str,
    format: Option<String>,
    junit: JsValue,
) -> JsResult<String> {
    let report: Report = from_value(report, "report")?;
    let junit = junit_option(junit)?;
    let how = rendering(format.as_deref(), &junit)?;
    Ok(render(&report, cache, how))
}

// ---------------------------------------------------------------------------------------------
// The reference graph

/// What the graph reads of a narinfo (any other field is ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphEntry {
    store_path: String,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    nar_size: Option<u64>,
    #[serde(default)]
    file_size: Option<u64>,
}

/// Sizes as JS sees them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsWeight {
    nar_size: u64,
    file_size: u64,
}

impl From<Weight> for JsWeight {
    fn from(w: Weight) -> JsWeight {
        JsWeight {
            nar_size: w.nar_size,
            file_size: w.file_size,
        }
    }
}

/// A store path given as a full path or a base name.
fn store_path_arg(path: &str) -> JsResult<StorePath> {
    let base = path.rsplit('/').next().unwrap_or(path);
    StorePath::from_base_name(base).map_err(|e| err(format!("{path:?}: {e}")))
}

fn store_path_args(paths: &[String]) -> JsResult<Vec<StorePath>> {
    paths.iter().map(|p| store_path_arg(p)).collect()
}

/// The references among narinfos, built once (and grown with `add`), for closures, referrers
/// and why-depends; paths go out as full store paths.
#[wasm_bindgen]
pub struct CacheGraph {
    graph: Graph,
    /// The store directory of the first narinfo added.
    store_dir: Option<StoreDir>,
}

#[wasm_bindgen]
impl CacheGraph {
    /// A graph of `infos` (narinfos: only `storePath` and `references` are read), or an empty one.
    #[wasm_bindgen(constructor)]
    pub fn new(infos: JsValue) -> JsResult<CacheGraph> {
        let mut g = CacheGraph {
            graph: Graph::new(),
            store_dir: None,
        };
        g.add(infos)?;
        Ok(g)
    }

    /// Adds narinfos (a later one for a store path replaces an earlier one).
    pub fn add(&mut self, infos: JsValue) -> JsResult<()> {
        if infos.is_undefined() || infos.is_null() {
            return Ok(());
        }
        let entries: Vec<GraphEntry> = from_value(infos, "narinfos")?;
        for e in entries {
            let (dir, base) = e.store_path.rsplit_once('/').unwrap_or(("", &e.store_path));
            let path = StorePath::from_base_name(base)
                .map_err(|x| err(format!("storePath {:?}: {x}", e.store_path)))?;
            if self.store_dir.is_none() {
                let dir = StoreDir::new(dir)
                    .map_err(|x| err(format!("storePath {:?}: {x}", e.store_path)))?;
                self.store_dir = Some(dir);
            }
            let refs = store_path_args(&e.references)?;
            let weight = Weight {
                nar_size: e.nar_size.unwrap_or(0),
                file_size: e.file_size.unwrap_or(0),
            };
            self.graph.insert_weighted(path, refs, weight);
        }
        Ok(())
    }

    /// The number of store paths with a narinfo.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> usize {
        self.graph.len()
    }

    fn display(&self, paths: Vec<&StorePath>) -> Vec<String> {
        let dir = self.store_dir.clone().unwrap_or_default();
        paths.into_iter().map(|p| dir.display(p)).collect()
    }

    /// The store paths with a narinfo in the closure of `roots` (store paths or base names),
    /// roots included, sorted; references without a narinfo are skipped.
    pub fn closure(&self, roots: Vec<String>) -> JsResult<Vec<String>> {
        let roots = store_path_args(&roots)?;
        Ok(self.display(self.graph.closure(&roots)))
    }

    /// `{ paths, missing, narSize, fileSize }`: the closure as `closure` gives it, the roots and
    /// references in it without a narinfo, sorted, and the sums of its paths' sizes.
    #[wasm_bindgen(js_name = closureWithMissing)]
    pub fn closure_with_missing(&self, roots: Vec<String>) -> JsResult<JsValue> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            paths: Vec<String>,
            missing: Vec<String>,
            nar_size: u64,
            file_size: u64,
        }
        let roots = store_path_args(&roots)?;
        let c = self.graph.closure_with_missing(&roots);
        let total = self.graph.closure_weight(&roots);
        to_value(&Out {
            paths: self.display(c.paths),
            missing: self.display(c.missing),
            nar_size: total.nar_size,
            file_size: total.file_size,
        })
    }

    /// The closure size of each of `paths` (its own closure, each apart): `[{ narSize, fileSize }]`.
    #[wasm_bindgen(js_name = closureSizes)]
    pub fn closure_sizes(&self, paths: Vec<String>) -> JsResult<JsValue> {
        let sizes: Vec<JsWeight> = store_path_args(&paths)?
            .iter()
            .map(|p| self.graph.closure_weight([p]).into())
            .collect();
        to_value(&sizes)
    }

    /// The closure of `root` as nix-tree and nix-du see it: `[{ path, narSize, fileSize, added:
    /// { narSize, fileSize }, dominator }]`, the root first and every path after its dominator
    /// (the nearest path every chain of references from the root to it goes through; null for
    /// the root). `added` is what the path brings into the closure alone: its sizes and those of
    /// the paths it dominates. Empty when `root` has no narinfo.
    #[wasm_bindgen(js_name = closureTree)]
    pub fn closure_tree(&self, root: &str) -> JsResult<JsValue> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Node {
            path: String,
            nar_size: u64,
            file_size: u64,
            added: JsWeight,
            dominator: Option<String>,
        }
        let dir = self.store_dir.clone().unwrap_or_default();
        let nodes: Vec<Node> = self
            .graph
            .closure_tree(&store_path_arg(root)?)
            .into_iter()
            .map(|n| Node {
                path: dir.display(n.path),
                nar_size: n.weight.nar_size,
                file_size: n.weight.file_size,
                added: n.added.into(),
                dominator: n.dominator.map(|d| dir.display(d)),
            })
            .collect();
        to_value(&nodes)
    }

    /// The store paths whose narinfos reference `path` (itself too if it refers to itself), sorted.
    pub fn referrers(&self, path: &str) -> JsResult<Vec<String>> {
        Ok(self.display(self.graph.referrers(&store_path_arg(path)?)))
    }

    /// The shortest chain of references from `from` to `to` (both included; the first in store
    /// path order among the shortest), or `null` when `to` is not in `from`'s closure.
    #[wasm_bindgen(js_name = whyDepends)]
    pub fn why_depends(&self, from: &str, to: &str) -> JsResult<JsValue> {
        let (from, to) = (store_path_arg(from)?, store_path_arg(to)?);
        let chain = self.graph.why_depends(&from, &to);
        to_value(&chain.map(|c| self.display(c)))
    }
}

/// The store paths in the closure of `roots` (store paths or base names) among `infos`.
#[wasm_bindgen]
pub fn closure(infos: JsValue, roots: Vec<String>) -> JsResult<Vec<String>> {
    CacheGraph::new(infos)?.closure(roots)
}
