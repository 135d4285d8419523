//! `nar-tool serve`: a cache directory over HTTP, as a binary cache Nix can substitute from
//! (`nix-cache-info`, narinfos, NARs, listings with their content types, HEAD, single Range
//! requests, ETag / Last-Modified), plus the inspector at `/`. Nothing outside the directory is
//! ever read: paths with `..`, NUL or backslashes are refused (400), symlinks resolving outside
//! are treated as absent (404).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

pub struct ServeOptions {
    pub root: PathBuf,
    pub listen: String,
    pub threads: usize,
    /// Static files of the inspector, served at `/` (a cache has no `index.html`).
    pub inspector: Option<PathBuf>,
    /// The wasm build (`pkg/wasm`), served at `/wasm/` for the inspector.
    pub wasm: Option<PathBuf>,
    /// Log one line per request to stderr.
    pub log: bool,
}

/// A running server; dropping it does not stop it: set the flag given to [`Served::run`].
pub struct Served {
    server: Arc<Server>,
    root: PathBuf,
    inspector: Option<PathBuf>,
    wasm: Option<PathBuf>,
    threads: usize,
    log: bool,
}

impl Served {
    pub fn bind(opts: &ServeOptions) -> io::Result<Served> {
        let root = opts.root.canonicalize()?;
        if !root.join("nix-cache-info").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no nix-cache-info: not a binary cache",
                    root.display()
                ),
            ));
        }
        let server = Server::http(&opts.listen)
            .map_err(|e| io::Error::other(format!("cannot listen on {}: {e}", opts.listen)))?;
        let inspector = opts.inspector.as_ref().and_then(|p| p.canonicalize().ok());
        let wasm = opts.wasm.as_ref().and_then(|p| p.canonicalize().ok());
        Ok(Served {
            server: Arc::new(server),
            root,
            inspector,
            wasm,
            threads: opts.threads.max(1),
            log: opts.log,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> String {
        self.server.server_addr().to_string()
    }

    /// Serves until `stop` is set.
    pub fn run(self, stop: Arc<AtomicBool>) {
        std::thread::scope(|s| {
            for _ in 0..self.threads {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        match self.server.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(req)) => self.handle(req),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                });
            }
        });
    }

    fn handle(&self, req: Request) {
        let method = req.method().clone();
        let url = req.url().to_string();
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let (status, bytes) = match self.respond(req) {
            Ok(r) => r,
            Err(e) => {
                if self.log {
                    eprintln!("{remote} \"{method} {url}\" error: {e}");
                }
                return;
            }
        };
        if self.log {
            eprintln!("{remote} \"{method} {url}\" {status} {bytes}");
        }
    }

    fn respond(&self, req: Request) -> io::Result<(u16, u64)> {
        let cors = header("Access-Control-Allow-Origin", "*");
        if !matches!(req.method(), Method::Get | Method::Head) {
            let r = Response::from_string("only GET and HEAD\n")
                .with_status_code(405)
                .with_header(header("Allow", "GET, HEAD"))
                .with_header(cors);
            req.respond(r)?;
            return Ok((405, 0));
        }
        let path = req
            .url()
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_string();
        let rel = match decode_path(&path) {
            Ok(rel) => rel,
            Err(why) => {
                req.respond(
                    Response::from_string(format!("bad path: {why}\n"))
                        .with_status_code(400)
                        .with_header(cors),
                )?;
                return Ok((400, 0));
            }
        };
        if let Some(what) = rel.strip_prefix("_nar-tool/") {
            let names = match what {
                "narinfos" => Some(list_dir(&self.root, "", |n| {
                    n.len() == 32 + 8 && n.ends_with(".narinfo")
                })),
                "nar-files" => Some(list_dir(&self.root.join("nar"), "nar/", |n| {
                    !n.starts_with('.')
                })),
                _ => None,
            };
            if let Some(names) = names {
                let mut body = serde_json::to_vec(&names?).map_err(io::Error::other)?;
                body.push(b'\n');
                let len = body.len() as u64;
                let r = Response::from_data(body)
                    .with_header(header("Content-Type", "application/json"))
                    .with_header(header("Cache-Control", "no-cache"))
                    .with_header(cors);
                req.respond(r)?;
                return Ok((200, len));
            }
        }
        let file = if rel.is_empty() || rel.ends_with('/') {
            self.inspector_file(&format!("{rel}index.html"))
        } else {
            self.cache_file(&rel)
                .or_else(|| self.wasm_file(&rel))
                .or_else(|| self.inspector_file(&rel))
        };
        let Some(file) = file else {
            if rel.is_empty() {
                let page = format!("<!doctype html><title>nar-tool serve</title><p>Binary cache at {}. The inspector is not installed.</p>\n", html_escape(&self.root.display().to_string()));
                req.respond(
                    Response::from_string(page)
                        .with_header(header("Content-Type", "text/html; charset=utf-8"))
                        .with_header(cors),
                )?;
                return Ok((200, 0));
            }
            req.respond(
                Response::from_string("not found\n")
                    .with_status_code(404)
                    .with_header(cors),
            )?;
            return Ok((404, 0));
        };
        let name = if rel.is_empty() || rel.ends_with('/') {
            "index.html"
        } else {
            &rel
        };
        serve_file(req, &file, content_type(name), cors)
    }

    /// A regular file inside the cache, if `rel` names one (symlinks resolving outside do not).
    fn cache_file(&self, rel: &str) -> Option<PathBuf> {
        inside(&self.root, rel)
    }

    fn inspector_file(&self, rel: &str) -> Option<PathBuf> {
        self.inspector
            .as_ref()
            .and_then(|dir| inside(dir, rel.trim_start_matches('/')))
    }

    /// `/wasm/<file>` from the wasm build directory, when one is configured.
    fn wasm_file(&self, rel: &str) -> Option<PathBuf> {
        let name = rel.strip_prefix("wasm/")?;
        self.wasm.as_ref().and_then(|dir| inside(dir, name))
    }
}

/// The names of the regular files directly in `dir` (symlinks resolving to regular files inside
/// the directory count; others do not) that `keep` accepts, prefixed and sorted. A missing
/// directory lists as empty.
fn list_dir(dir: &Path, prefix: &str, keep: impl Fn(&str) -> bool) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !keep(&name) {
            continue;
        }
        let ft = e.file_type()?;
        let regular = ft.is_file() || (ft.is_symlink() && inside(dir, &name).is_some());
        if regular {
            names.push(format!("{prefix}{name}"));
        }
    }
    names.sort();
    Ok(names)
}

fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let real = root.join(rel).canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Percent-decodes a URL path into a relative path, refusing anything that could leave the root.
pub fn decode_path(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or("truncated percent escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid percent escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| "not UTF-8")?;
    if s.contains('\0') || s.contains('\\') {
        return Err("NUL or backslash");
    }
    let rel = s.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c == ".") {
        return Err("\".\" or \"..\" component");
    }
    if rel.split('/').rev().skip(1).any(str::is_empty) {
        return Err("empty component");
    }
    Ok(rel.to_string())
}

fn content_type(rel: &str) -> &'static str {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if name == "nix-cache-info" {
        "text/x-nix-cache-info"
    } else if name.ends_with(".narinfo") {
        "text/x-nix-narinfo"
    } else if rel.starts_with("nar/") {
        "application/x-nix-nar"
    } else if name.ends_with(".ls") || name.ends_with(".json") {
        "application/json"
    } else if name.ends_with(".html") {
        "text/html; charset=utf-8"
    } else if name.ends_with(".js") || name.ends_with(".mjs") {
        "text/javascript"
    } else if name.ends_with(".wasm") {
        "application/wasm"
    } else if name.ends_with(".css") {
        "text/css"
    } else if name.ends_with(".png") {
        "image/png"
    } else if name.ends_with(".svg") {
        "image/svg+xml"
    } else if name.ends_with(".ts") || name.ends_with(".md") || name.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Which bytes a `Range:` header asks for: `Ok(None)` for the whole file.
pub fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: the whole file is a valid answer
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => {
            let (s, e): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            if e < s {
                return Err(());
            }
            (s, e.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn serve_file(
    req: Request,
    path: &Path,
    content_type: &str,
    cors: Header,
) -> io::Result<(u16, u64)> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let size = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let etag = format!(
        "\"{size:x}-{:x}{:09x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos()
    );
    let last_modified = httpdate::fmt_http_date(modified);
    let get = |name: &'static str| {
        req.headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    let common = |r: Response<Box<dyn Read + Send>>| {
        r.with_chunked_threshold(usize::MAX)
            .with_header(header("Content-Type", content_type))
            .with_header(header("ETag", &etag))
            .with_header(header("Last-Modified", &last_modified))
            .with_header(header("Accept-Ranges", "bytes"))
            .with_header(cors.clone())
    };
    let not_modified = match (get("If-None-Match"), get("If-Modified-Since")) {
        (Some(tags), _) => tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        (None, Some(since)) => httpdate::parse_http_date(&since).is_ok_and(|t: SystemTime| {
            modified
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                <= t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
        }),
        _ => false,
    };
    if not_modified {
        req.respond(common(Response::new(
            StatusCode(304),
            vec![],
            Box::new(io::empty()),
            Some(0),
            None,
        )))?;
        return Ok((304, 0));
    }
    let range = match get("Range") {
        Some(r) => parse_range(&r, size),
        None => Ok(None),
    };
    match range {
        Err(()) => {
            let r = common(Response::new(
                StatusCode(416),
                vec![],
                Box::new(io::empty()),
                Some(0),
                None,
            ))
            .with_header(header("Content-Range", &format!("bytes */{size}")));
            req.respond(r)?;
            Ok((416, 0))
        }
        Ok(None) => {
            req.respond(common(Response::new(
                StatusCode(200),
                vec![],
                Box::new(file),
                Some(size as usize),
                None,
            )))?;
            Ok((200, size))
        }
        Ok(Some((start, end))) => {
            file.seek(SeekFrom::Start(start))?;
            let len = end - start + 1;
            let r = common(Response::new(
                StatusCode(206),
                vec![],
                Box::new(file.take(len)),
                Some(len as usize),
                None,
            ))
            .with_header(header(
                "Content-Range",
                &format!("bytes {start}-{end}/{size}"),
            ));
            req.respond(r)?;
            Ok((206, len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(decode_path("/nix-cache-info").unwrap(), "nix-cache-info");
        assert_eq!(decode_path("/nar/a%2Bb.nar.xz").unwrap(), "nar/a+b.nar.xz");
        for bad in [
            "/../etc/passwd",
            "/nar/%2e%2e/x",
            "/%2E%2E/x",
            "/a/./b",
            "/a%00b",
            "/a%5cb",
            "/a//b",
            "/%zz",
        ] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
    }
}
