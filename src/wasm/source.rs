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
fn method(obj: &JsValue, name: &str) -> Option<Function> {
    Reflect::get(obj, &JsValue::from_str(name))
        .ok()?
        .dyn_into::<Function>()
        .ok()
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
    let thenable = returned.is_object()
        && (returned.is_instance_of::<Promise>() || method(&returned, "then").is_some());
    if !thenable {
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

/// A SHA-256 of the host's: `factory()` gives `{ update(bytes), digest() → Uint8Array }`.
struct JsSha256(JsValue);

impl Sha256Host for JsSha256 {
    fn update(&mut self, data: &[u8]) {
        // A view of wasm memory, read synchronously by the host (which cannot call back into
        // wasm meanwhile, so the memory cannot move under it).
        let view = unsafe { Uint8Array::view(data) };
        if let Ok(f) = Reflect::get(&self.0, &"update".into()) {
            if let Some(f) = f.dyn_ref::<Function>() {
                let _ = f.call1(&self.0, &view);
            }
        }
    }

    fn finish(self: Box<Self>) -> Hash {
        let digest = Reflect::get(&self.0, &"digest".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .and_then(|f| f.call0(&self.0).ok())
            .and_then(|d| bytes_or_none(d, "digest()").ok().flatten())
            .unwrap_or_default();
        // A host hasher that fails gives a digest no narinfo matches (never a false "ok").
        Hash::from_digest(HashAlgo::Sha256, &digest)
            .unwrap_or_else(|| Hash::from_digest(HashAlgo::Sha256, &[0; 32]).expect("32 bytes"))
    }
}

/// A SHA-256 factory from an optional JS function.
pub(super) fn sha256_factory(f: Option<Function>) -> impl Fn() -> Box<dyn Sha256Host> {
    move || match &f {
        Some(f) => match f.call0(&JsValue::NULL) {
            Ok(h) if h.is_object() => Box::new(JsSha256(h)) as Box<dyn Sha256Host>,
            _ => crate::hash::builtin_sha256(),
        },
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
            read_file: method(&source, "readFile"),
            file_size: method(&source, "fileSize"),
            open_file: method(&source, "openFile"),
            list_narinfos: method(&source, "listNarinfos"),
            list_nar_files: method(&source, "listNarFiles"),
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
        let size = Reflect::get(&stream, &"size".into())
            .ok()
            .and_then(|v| v.as_f64())
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .map(|n| n as u64);
        JsStream {
            next: method(&stream, "next"),
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
        if let Ok(f) = Reflect::get(&self.stream, &"close".into()) {
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
