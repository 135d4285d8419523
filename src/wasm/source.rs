//! The host's side of a verification: its source of cache files (a JS object of functions that
//! give values or promises), its streams and its SHA-256.

use std::io;

use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::cache::verify::push::{AsyncCacheSource, ChunkStream};
use crate::hash::{Hash, HashAlgo, Sha256Host};

/// A JS error's message (or the value's text).
fn js_message(e: &JsValue) -> String {
    if let Some(e) = e.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

fn io_error(e: JsValue) -> io::Error {
    io::Error::other(js_message(&e))
}

/// `obj.name` if it is a function.
fn method(obj: &JsValue, name: &JsValue) -> Option<Function> {
    Reflect::get(obj, name).ok()?.dyn_into::<Function>().ok()
}

/// The property names looked up per file, made into JS strings once (each lookup would pass
/// the name from wasm memory to a new JS string otherwise).
struct Names {
    then: JsValue,
    size: JsValue,
    next: JsValue,
    close: JsValue,
    update: JsValue,
    digest: JsValue,
}

thread_local! {
    static NAMES: Names = Names {
        then: "then".into(),
        size: "size".into(),
        next: "next".into(),
        close: "close".into(),
        update: "update".into(),
        digest: "digest".into(),
    };
}

/// `f` of the cached property names.
fn names<T>(f: impl FnOnce(&Names) -> T) -> T {
    NAMES.with(f)
}

/// Whether `v` is a promise or any other thenable. A `Uint8Array` (what a source gives most
/// often) is taken as a value without a lookup.
fn is_thenable(v: &JsValue) -> bool {
    v.is_object()
        && !v.is_instance_of::<Uint8Array>()
        && (v.is_instance_of::<Promise>() || names(|n| method(v, &n.then)).is_some())
}

/// Calls `f` on `obj` and awaits what it returns if that is a promise (or any thenable); a
/// value given at once (a source that has it: a file in the page cache) costs no promise.
async fn call_method(obj: &JsValue, f: &Function, args: &[JsValue]) -> io::Result<JsValue> {
    let returned = match args {
        [] => f.call0(obj),
        [a] => f.call1(obj, a),
        _ => f.apply(obj, &args.iter().collect::<js_sys::Array>()),
    }
    .map_err(io_error)?;
    if !is_thenable(&returned) {
        return Ok(returned);
    }
    JsFuture::from(Promise::resolve(&returned))
        .await
        .map_err(io_error)
}

fn bytes_or_none(v: JsValue, what: &str) -> io::Result<Option<Vec<u8>>> {
    if v.is_null() || v.is_undefined() {
        return Ok(None);
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(Some(a.to_vec()));
    }
    if let Some(b) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Some(Uint8Array::new(b).to_vec()));
    }
    Err(io::Error::other(format!(
        "{what}: expected a Uint8Array or null"
    )))
}

fn strings(v: JsValue, what: &str) -> io::Result<Vec<String>> {
    let array = v
        .dyn_into::<js_sys::Array>()
        .map_err(|_| io::Error::other(format!("{what}: expected an array of strings")))?;
    array
        .iter()
        .map(|s| {
            s.as_string()
                .ok_or_else(|| io::Error::other(format!("{what}: expected an array of strings")))
        })
        .collect()
}

/// A SHA-256 of the host's: `factory()` gives `{ update(bytes), digest() → Uint8Array }`, whose
/// two methods are looked up once.
struct JsSha256 {
    hasher: JsValue,
    update: Function,
    digest: Function,
}

impl JsSha256 {
    /// The hasher `factory()` makes, if it has both methods.
    fn new(factory: &Function) -> Option<JsSha256> {
        let hasher = factory.call0(&JsValue::NULL).ok()?;
        if !hasher.is_object() {
            return None;
        }
        let (update, digest) = names(|n| (method(&hasher, &n.update), method(&hasher, &n.digest)));
        Some(JsSha256 {
            update: update?,
            digest: digest?,
            hasher,
        })
    }
}

impl Sha256Host for JsSha256 {
    fn update(&mut self, data: &[u8]) {
        // A view of wasm memory, read synchronously by the host (which cannot call back into
        // wasm meanwhile, so the memory cannot move under it).
        let view = unsafe { Uint8Array::view(data) };
        let _ = self.update.call1(&self.hasher, &view);
    }

    fn finish(self: Box<Self>) -> Hash {
        let digest = self
            .digest
            .call0(&self.hasher)
            .ok()
            .and_then(|d| bytes_or_none(d, "digest()").ok().flatten())
            .unwrap_or_default();
        // A host hasher that fails gives a digest no narinfo matches (never a false "ok").
        Hash::from_digest(HashAlgo::Sha256, &digest)
            .unwrap_or_else(|| Hash::from_digest(HashAlgo::Sha256, &[0; 32]).expect("32 bytes"))
    }
}

/// A SHA-256 factory from an optional JS function.
pub(super) fn sha256_factory(f: Option<Function>) -> impl Fn() -> Box<dyn Sha256Host> {
    move || match f.as_ref().and_then(JsSha256::new) {
        Some(h) => Box::new(h) as Box<dyn Sha256Host>,
        None => crate::hash::builtin_sha256(),
    }
}

/// The host's source (see `RawSource` in pkg/WASM-API.md) and what the verifier was given with
/// it.
pub(super) struct JsSource {
    source: JsValue,
    /// Its methods, looked up once (a call per file each costs a lookup otherwise).
    read_file: Option<Function>,
    file_size: Option<Function>,
    open_file: Option<Function>,
    list_narinfos: Option<Function>,
    list_nar_files: Option<Function>,
    /// The host's SHA-256 factory, if it has one.
    sha256: Option<Function>,
    /// The memory a NAR's decoder may take.
    memory_limit: u64,
}

impl JsSource {
    pub(super) fn new(source: JsValue, sha256: Option<Function>, memory_limit: u64) -> JsSource {
        JsSource {
            read_file: method(&source, &"readFile".into()),
            file_size: method(&source, &"fileSize".into()),
            open_file: method(&source, &"openFile".into()),
            list_narinfos: method(&source, &"listNarinfos".into()),
            list_nar_files: method(&source, &"listNarFiles".into()),
            source,
            sha256,
            memory_limit,
        }
    }

    /// Calls one of its methods, `None` if it has not that one.
    async fn call(&self, f: &Option<Function>, args: &[JsValue]) -> Option<io::Result<JsValue>> {
        Some(call_method(&self.source, f.as_ref()?, args).await)
    }
}

/// A stream object with an async `next()` giving `Uint8Array`s, then `null`; an optional
/// `size` (a number: the file's size, known when it was opened), and an optional `close()`,
/// called when the stream is dropped before its end.
pub(super) struct JsStream {
    stream: JsValue,
    next: Option<Function>,
    size: Option<u64>,
    ended: bool,
}

impl JsStream {
    fn new(stream: JsValue) -> JsStream {
        let size = names(|n| Reflect::get(&stream, &n.size))
            .ok()
            .and_then(|v| v.as_f64())
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .map(|n| n as u64);
        JsStream {
            next: names(|n| method(&stream, &n.next)),
            stream,
            size,
            ended: false,
        }
    }
}

impl ChunkStream for JsStream {
    async fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let chunk = match &self.next {
            None => Err(io::Error::other("the stream has no next() method")),
            Some(f) => bytes_or_none(call_method(&self.stream, f, &[]).await?, "next()"),
        };
        self.ended = !matches!(chunk, Ok(Some(_)));
        chunk
    }

    fn size(&self) -> Option<u64> {
        self.size
    }
}

impl Drop for JsStream {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Left before its end (the size was wrong): the source may release the file now.
        if let Ok(f) = names(|n| Reflect::get(&self.stream, &n.close)) {
            if let Some(f) = f.dyn_ref::<Function>() {
                if let Ok(p) = f.call0(&self.stream) {
                    if let Ok(p) = p.dyn_into::<Promise>() {
                        // Awaited aside: a failure to close is nobody's business now (and
                        // must not be an unhandled rejection).
                        wasm_bindgen_futures::spawn_local(async move {
                            let _ = JsFuture::from(p).await;
                        });
                    }
                }
            }
        }
    }
}

impl AsyncCacheSource for JsSource {
    type Stream = JsStream;

    async fn read_small(&self, rel: &str, limit: usize) -> io::Result<Option<Vec<u8>>> {
        let r = self
            .call(&self.read_file, &[rel.into()])
            .await
            .unwrap_or_else(|| Err(io::Error::other("the source has no readFile()")))?;
        match bytes_or_none(r, "readFile()")? {
            Some(b) if b.len() > limit => {
                // Its size as the storage layer words it: the source's, else what was read.
                let size = match self.size(rel).await {
                    Some(Ok(Some(size))) => size,
                    _ => b.len() as u64,
                };
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{rel} is larger than {limit} bytes (it has {size})"),
                ))
            }
            other => Ok(other),
        }
    }

    async fn size(&self, rel: &str) -> Option<io::Result<Option<u64>>> {
        let r = self.call(&self.file_size, &[rel.into()]).await?;
        Some(r.and_then(|v| {
            if v.is_null() || v.is_undefined() {
                return Ok(None);
            }
            match v.as_f64() {
                Some(n) if n >= 0.0 && n.fract() == 0.0 => Ok(Some(n as u64)),
                _ => Err(io::Error::other("fileSize(): expected a size or null")),
            }
        }))
    }

    async fn open(&self, rel: &str) -> io::Result<Option<JsStream>> {
        let r = self
            .call(&self.open_file, &[rel.into()])
            .await
            .unwrap_or_else(|| Err(io::Error::other("the source has no openFile()")))?;
        Ok((!r.is_null() && !r.is_undefined()).then(|| JsStream::new(r)))
    }

    async fn list_narinfos(&self) -> io::Result<Vec<String>> {
        let r = self
            .call(&self.list_narinfos, &[])
            .await
            .unwrap_or_else(|| Err(io::Error::other("the source has no listNarinfos()")))?;
        strings(r, "listNarinfos()")
    }

    async fn list_nar_files(&self) -> Option<io::Result<Vec<String>>> {
        let r = self.call(&self.list_nar_files, &[]).await?;
        Some(r.and_then(|v| strings(v, "listNarFiles()")))
    }

    fn sha256(&self) -> Box<dyn Sha256Host> {
        sha256_factory(self.sha256.clone())()
    }

    fn decoder_memory_limit(&self) -> u64 {
        self.memory_limit
    }
}
