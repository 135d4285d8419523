//! `nar-tool serve`: a cache directory over HTTP, as a binary cache Nix can substitute from
//! (`nix-cache-info`, narinfos, NARs, listings with their content types, HEAD, single Range
//! requests, ETag / Last-Modified), plus the inspector at `/` and its wasm build at `/wasm/`.
//! Nothing outside these directories is ever read: paths with `..`, NUL or backslashes are
//! refused (400), symlinks resolving outside are treated as absent (404).
//!
//! An HTTP binary cache cannot be listed, so for the inspector (never asked for by Nix) there are
//! JSON listings: `GET /_nar-tool/narinfos` (`["<hashpart>.narinfo", …]`, sorted),
//! `GET /_nar-tool/nar-files` (`["nar/<name>", …]`, sorted) and, to load many narinfos in few
//! requests, `GET /_nar-tool/narinfo-texts?offset=O&limit=L` (see [`Site::narinfo_texts`]).
//!
//! The HTTP/1.1 server is a small one of our own over `std::net`: a thread per connection
//! (keep-alive, pipelining, an idle timeout, at most [`MAX_CONNECTIONS`] at once) and at most
//! `threads` responses being produced at once. (tiny_http 0.12, used before, hands connections to
//! a task pool that can lose a wake-up when several arrive together, as a browser's do: such a
//! connection then waits, unread, until another one closes.)

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may sit idle (or take to send a request head) before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The most narinfos one `narinfo-texts` reply carries.
const MAX_TEXTS_PAGE: usize = 5000;
/// Narinfos larger than this are left for the inspector to fetch (and judge) by itself.
const MAX_NARINFO: u64 = 1 << 20;
/// The largest request body a GET or HEAD may carry (read and ignored).
const MAX_IGNORED_BODY: u64 = 64 * 1024;

pub struct ServeOptions {
    pub root: PathBuf,
    pub listen: String,
    /// Responses produced at once (each connection has its own thread; this bounds the work).
    pub threads: usize,
    /// Static files of the inspector, served at `/` (a cache has no `index.html`).
    pub inspector: Option<PathBuf>,
    /// The wasm build (`pkg/wasm`), served at `/wasm/` for the inspector.
    pub wasm: Option<PathBuf>,
    /// Log one line per request to stderr.
    pub log: bool,
}

/// A bound server; [`Served::run`] serves until its stop flag is set.
pub struct Served {
    listener: TcpListener,
    site: Arc<Site>,
}

/// What is served, and how.
struct Site {
    root: PathBuf,
    inspector: Option<PathBuf>,
    wasm: Option<PathBuf>,
    log: bool,
    permits: Semaphore,
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
        let listener = TcpListener::bind(&opts.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", opts.listen))
        })?;
        let inspector = opts.inspector.as_ref().and_then(|p| p.canonicalize().ok());
        let wasm = opts.wasm.as_ref().and_then(|p| p.canonicalize().ok());
        Ok(Served {
            listener,
            site: Arc::new(Site {
                root,
                inspector,
                wasm,
                log: opts.log,
                permits: Semaphore::new(opts.threads.max(1)),
            }),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn address(&self) -> String {
        self.listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Serves until `stop` is set: stops accepting at once; connections finish the response
    /// they are writing and close.
    pub fn run(self, stop: Arc<AtomicBool>) {
        let addr = self.listener.local_addr().ok();
        let done = Arc::new(AtomicBool::new(false));
        // `accept` blocks: once `stop` is set, a connection to ourselves wakes it.
        let waker = {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let (false, Some(addr)) = (done.load(Ordering::Relaxed), addr) {
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
                }
            })
        };
        let live = Arc::new(AtomicUsize::new(0));
        for conn in self.listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: let others finish, then go on.
                    if self.site.log {
                        eprintln!("accept: {e}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                let _ = refuse(stream);
                continue;
            }
            live.fetch_add(1, Ordering::Relaxed);
            let (site, stop, live2) = (self.site.clone(), stop.clone(), live.clone());
            let spawned = std::thread::Builder::new()
                .name("serve-connection".into())
                .spawn(move || {
                    site.connection(stream, &stop);
                    live2.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                live.fetch_sub(1, Ordering::Relaxed);
            }
        }
        done.store(true, Ordering::Relaxed);
        let _ = waker.join();
    }
}

/// Too many connections: a 503 and close.
fn refuse(mut stream: TcpStream) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
    )?;
    stream.shutdown(Shutdown::Both)
}

/// A counting semaphore: at most `n` holders at once.
struct Semaphore {
    free: Mutex<usize>,
    cv: Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(n: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// HTTP/1.1 (else 1.0)
    http11: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept after this exchange.
    fn keep_alive(&self) -> bool {
        let conn = self.get("Connection").map(str::to_ascii_lowercase);
        match conn {
            Some(c) if c.split(',').any(|t| t.trim() == "close") => false,
            Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => self.http11,
        }
    }
}

enum HeadError {
    /// The connection ended (or idled out) between requests: close quietly.
    Closed,
    /// A malformed or oversized head: answer 400 and close.
    Bad(&'static str),
}

/// Reads one request head; `Closed` at a clean end of the connection.
fn read_head(r: &mut impl BufRead) -> Result<Head, HeadError> {
    let mut total = 0usize;
    let mut line = Vec::new();
    let mut next_line = |r: &mut dyn BufRead, line: &mut Vec<u8>| -> Result<bool, HeadError> {
        line.clear();
        let n = r
            .take((MAX_HEAD - total.min(MAX_HEAD) + 1) as u64)
            .read_until(b'\n', line)
            .map_err(|_| HeadError::Closed)?;
        total += n;
        if total > MAX_HEAD {
            return Err(HeadError::Bad("request head too large"));
        }
        if n == 0 {
            return Ok(false);
        }
        if line.last() != Some(&b'\n') {
            return Err(HeadError::Closed); // the connection ended mid-line
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(true)
    };
    // Request line (empty lines before it are allowed).
    loop {
        if !next_line(r, &mut line)? {
            return Err(HeadError::Closed);
        }
        if !line.is_empty() {
            break;
        }
    }
    let request_line =
        String::from_utf8(line.clone()).map_err(|_| HeadError::Bad("request line is not UTF-8"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Bad("unsupported HTTP version")),
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(HeadError::Bad("malformed request line"));
    }
    let mut headers = Vec::new();
    loop {
        if !next_line(r, &mut line)? {
            return Err(HeadError::Closed);
        }
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let (k, v) = text
            .split_once(':')
            .ok_or(HeadError::Bad("malformed header"))?;
        if k.is_empty() || k.contains(|c: char| c.is_whitespace()) {
            return Err(HeadError::Bad("malformed header"));
        }
        headers.push((k.to_string(), v.trim().to_string()));
        if headers.len() > 100 {
            return Err(HeadError::Bad("too many headers"));
        }
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        http11,
        headers,
    })
}

/// A response to write.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    /// No body at all (204, 304): no Content-Length either.
    None,
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`.
    File(File, u64, u64),
}

impl Reply {
    fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: Body::Bytes(text.as_bytes().to_vec()),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn len(&self) -> Option<u64> {
        match &self.body {
            Body::None => None,
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File(_, _, len) => Some(*len),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes `reply`; the body only when `with_body`. Returns the body bytes written.
fn send(out: &mut TcpStream, reply: Reply, with_body: bool, keep_alive: bool) -> io::Result<u64> {
    let mut w = BufWriter::with_capacity(8192, &mut *out);
    write!(w, "HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status))?;
    write!(
        w,
        "Server: nar-tool\r\nDate: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    )?;
    for (k, v) in &reply.headers {
        write!(w, "{k}: {v}\r\n")?;
    }
    if let Some(len) = reply.len() {
        write!(w, "Content-Length: {len}\r\n")?;
    }
    w.write_all(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    })?;
    if !with_body {
        w.flush()?;
        return Ok(0);
    }
    match reply.body {
        Body::None => {
            w.flush()?;
            Ok(0)
        }
        Body::Bytes(b) => {
            w.write_all(&b)?;
            w.flush()?;
            Ok(b.len() as u64)
        }
        Body::File(mut f, offset, len) => {
            w.flush()?;
            drop(w);
            f.seek(SeekFrom::Start(offset))?;
            // File to socket: std copies with sendfile/splice where it can.
            let n = io::copy(&mut f.take(len), out)?;
            if n != len {
                // The file shrank under us: the framing is broken, the connection must go.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            Ok(n)
        }
    }
}

impl Site {
    /// Serves one connection's requests until it closes, idles out, or `stop` is set.
    fn connection(&self, stream: TcpStream, stop: &AtomicBool) {
        let remote = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::with_capacity(8192, read_half);
        let mut out = stream;
        while !stop.load(Ordering::Relaxed) {
            let head = match read_head(&mut reader) {
                Ok(h) => h,
                Err(HeadError::Closed) => break,
                Err(HeadError::Bad(why)) => {
                    let _ = send(
                        &mut out,
                        Reply::text(400, &format!("bad request: {why}\n")),
                        true,
                        false,
                    );
                    if self.log {
                        eprintln!("{remote} bad request: {why}");
                    }
                    // Let the client read the 400 before the close (closing with unread input
                    // would reset the connection and could destroy the reply in flight).
                    let _ = out.shutdown(Shutdown::Write);
                    let _ = reader
                        .get_ref()
                        .set_read_timeout(Some(Duration::from_secs(1)));
                    let _ = io::copy(&mut (&mut reader).take(1 << 20), &mut io::sink());
                    break;
                }
            };
            let mut keep_alive = head.keep_alive() && !stop.load(Ordering::Relaxed);
            let get_or_head = matches!(head.method.as_str(), "GET" | "HEAD" | "OPTIONS");
            // GET and HEAD carry no body worth reading: skip a small one, refuse anything else.
            if head.get("Transfer-Encoding").is_some() || !get_or_head {
                keep_alive = false;
            } else if let Some(n) = head.get("Content-Length") {
                match n.parse::<u64>() {
                    Ok(n) if n <= MAX_IGNORED_BODY => {
                        if io::copy(&mut (&mut reader).take(n), &mut io::sink()).ok() != Some(n) {
                            break;
                        }
                    }
                    _ => keep_alive = false,
                }
            }
            let reply = {
                let _permit = self.permits.acquire();
                self.route(&head)
            };
            let status = reply.status;
            let result = send(&mut out, reply, head.method != "HEAD", keep_alive);
            if self.log {
                match &result {
                    Ok(bytes) => eprintln!(
                        "{remote} \"{} {}\" {status} {bytes}",
                        head.method, head.target
                    ),
                    Err(e) => eprintln!(
                        "{remote} \"{} {}\" {status} error: {e}",
                        head.method, head.target
                    ),
                }
            }
            if result.is_err() || !keep_alive {
                break;
            }
        }
        let _ = out.shutdown(Shutdown::Both);
    }

    /// The reply to a request.
    fn route(&self, head: &Head) -> Reply {
        let cors = ("Access-Control-Allow-Origin", "*".to_string());
        if head.method == "OPTIONS" {
            // A CORS preflight (the inspector served from elsewhere, sending Range, say).
            return Reply {
                status: 204,
                headers: vec![
                    cors,
                    ("Access-Control-Allow-Methods", "GET, HEAD".into()),
                    (
                        "Access-Control-Allow-Headers",
                        "Range, If-None-Match, If-Modified-Since".into(),
                    ),
                    ("Access-Control-Max-Age", "86400".into()),
                    ("Allow", "GET, HEAD, OPTIONS".into()),
                ],
                body: Body::None,
            };
        }
        if head.method != "GET" && head.method != "HEAD" {
            let mut r = Reply::text(405, "only GET and HEAD\n").header("Allow", "GET, HEAD");
            r.headers.push(cors);
            return r;
        }
        let path = head.target.split(['?', '#']).next().unwrap_or("/");
        let rel = match decode_path(path) {
            Ok(rel) => rel,
            Err(why) => {
                let mut r = Reply::text(400, &format!("bad path: {why}\n"));
                r.headers.push(cors);
                return r;
            }
        };
        if let Some(what) = rel.strip_prefix("_nar-tool/") {
            let query = head.target.split_once('?').map_or("", |(_, q)| q);
            let json = match what {
                "narinfos" => Some(self.narinfo_names().and_then(to_json)),
                "nar-files" => Some(
                    list_dir(&self.root.join("nar"), "nar/", |n| !n.starts_with('.'))
                        .and_then(to_json),
                ),
                "narinfo-texts" => Some(self.narinfo_texts(query)),
                _ => None,
            };
            if let Some(json) = json {
                let mut r = match json {
                    Ok(body) => Reply {
                        status: 200,
                        headers: vec![
                            ("Content-Type", "application/json".into()),
                            ("Cache-Control", "no-cache".into()),
                        ],
                        body: Body::Bytes(body),
                    },
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                        Reply::text(400, &format!("{e}\n"))
                    }
                    Err(e) => Reply::text(500, &format!("cannot list the cache: {e}\n")),
                };
                r.headers.push(cors);
                return r;
            }
        }
        let dir_index = rel.is_empty() || rel.ends_with('/');
        let file = if dir_index {
            self.inspector_file(&format!("{rel}index.html"))
        } else {
            self.cache_file(&rel)
                .or_else(|| self.wasm_file(&rel))
                .or_else(|| self.inspector_file(&rel))
        };
        let Some(file) = file else {
            let mut r = if rel.is_empty() {
                let page = format!("<!doctype html><title>nar-tool serve</title><p>Binary cache at {}. The inspector is not installed.</p>\n", html_escape(&self.root.display().to_string()));
                Reply {
                    status: 200,
                    headers: vec![("Content-Type", "text/html; charset=utf-8".into())],
                    body: Body::Bytes(page.into_bytes()),
                }
            } else {
                Reply::text(404, "not found\n")
            };
            r.headers.push(cors);
            return r;
        };
        let name = if dir_index { "index.html" } else { &rel };
        let mut r = match file_reply(head, &file, content_type(name)) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Reply::text(404, "not found\n"),
            Err(e) => Reply::text(500, &format!("cannot read the file: {e}\n")),
        };
        r.headers.push(cors);
        r.headers.push((
            "Access-Control-Expose-Headers",
            "Content-Range, Accept-Ranges, ETag, Last-Modified".into(),
        ));
        r
    }

    fn narinfo_names(&self) -> io::Result<Vec<String>> {
        list_dir(&self.root, "", |n| {
            n.len() == 32 + 8 && n.ends_with(".narinfo")
        })
    }

    /// `narinfo-texts?offset=O&limit=L`: the narinfos O..O+L of the sorted listing, with their
    /// contents, so the inspector need not make one request per narinfo:
    /// `{"total": N, "items": [["<hashpart>.narinfo", "<text>" | null], …]}` (null: not UTF-8,
    /// or gone meanwhile; the inspector then fetches it by itself).
    fn narinfo_texts(&self, query: &str) -> io::Result<Vec<u8>> {
        let mut offset = 0usize;
        let mut limit = 1000usize;
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let n = v.parse::<usize>().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad {k}: {v:?}"))
            });
            match k {
                "offset" => offset = n?,
                "limit" => limit = n?.min(MAX_TEXTS_PAGE),
                _ => {}
            }
        }
        let names = self.narinfo_names()?;
        let items: Vec<(String, Option<String>)> = names
            .iter()
            .skip(offset)
            .take(limit)
            .map(|n| {
                let text = inside(&self.root, n)
                    .filter(|p| p.metadata().is_ok_and(|m| m.len() <= MAX_NARINFO))
                    .and_then(|p| std::fs::read(p).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                (n.clone(), text)
            })
            .collect();
        #[derive(serde::Serialize)]
        struct Page {
            total: usize,
            items: Vec<(String, Option<String>)>,
        }
        to_json(Page {
            total: names.len(),
            items,
        })
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

fn to_json(value: impl serde::Serialize) -> io::Result<Vec<u8>> {
    let mut body = serde_json::to_vec(&value).map_err(io::Error::other)?;
    body.push(b'\n');
    Ok(body)
}

fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let real = root.join(rel).canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
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
#[allow(clippy::result_unit_err)]
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

/// A file's reply: 200, 206 for a satisfiable single range, 304 when the client has it, 416.
fn file_reply(head: &Head, path: &Path, content_type: &str) -> io::Result<Reply> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let size = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let etag = format!(
        "\"{size:x}-{:x}{:09x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos()
    );
    let headers = vec![
        ("Content-Type", content_type.to_string()),
        ("ETag", etag.clone()),
        ("Last-Modified", httpdate::fmt_http_date(modified)),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    let not_modified = match (head.get("If-None-Match"), head.get("If-Modified-Since")) {
        (Some(tags), _) => tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        (None, Some(since)) => httpdate::parse_http_date(since).is_ok_and(|t: SystemTime| {
            mtime.as_secs() <= t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
        }),
        _ => false,
    };
    if not_modified {
        return Ok(Reply {
            status: 304,
            headers,
            body: Body::None,
        });
    }
    let range = match head.get("Range") {
        Some(r) => parse_range(r, size),
        None => Ok(None),
    };
    Ok(match range {
        Err(()) => Reply {
            status: 416,
            headers,
            body: Body::Bytes(Vec::new()),
        }
        .header("Content-Range", format!("bytes */{size}")),
        Ok(None) => Reply {
            status: 200,
            headers,
            body: Body::File(file, 0, size),
        },
        Ok(Some((start, end))) => Reply {
            status: 206,
            headers,
            body: Body::File(file, start, end - start + 1),
        }
        .header("Content-Range", format!("bytes {start}-{end}/{size}")),
    })
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
