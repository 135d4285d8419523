//! `nar-tool serve`: a cache directory over HTTP, as a binary cache Nix can substitute from
//! (`nix-cache-info`, narinfos, NARs, listings with their content types, HEAD, single Range
//! requests, ETag / Last-Modified), plus the inspector at `/` and the npm package's browser entry
//! it imports at `/pkg/` (`browser.js`, `lib/…`, and the wasm build at `/pkg/wasm/`).
//! Nothing outside these directories is ever read: paths with `..`, NUL or backslashes are
//! refused (400), symlinks resolving outside are treated as absent (404).
//!
//! An HTTP binary cache cannot be listed, so for the inspector (never asked for by Nix) there are
//! JSON listings: `GET /_nar-tool/narinfos` (`["<hashpart>.narinfo", …]`, sorted),
//! `GET /_nar-tool/nar-files` (`["nar/<name>", …]`, sorted) and, to load many narinfos in few
//! requests, `GET /_nar-tool/narinfo-texts?offset=O&limit=L` (see `Site::narinfo_texts`).
//!
//! HTTP/1.1 is hyper's (request parsing, framing, keep-alive, pipelining, the header-read
//! timeout), on a tokio runtime of `threads` workers. This module decides only which file or
//! listing a request gets (`Site::route`, blocking file-system work, run on tokio's blocking
//! pool) and streams file bodies in [`CHUNK`]-sized reads as the client takes them, so a NAR of
//! any size is sent in constant memory. At most [`MAX_CONNECTIONS`] connections are served at
//! once (more are answered 503); a connection idle for [`IDLE_TIMEOUT`] (or that long sending a
//! request head) is closed, as is one whose client stops reading for [`WRITE_TIMEOUT`]. On stop,
//! no new connection is accepted, idle ones close, and responses in flight get
//! [`SHUTDOWN_GRACE`] to finish. (tiny_http 0.12, used first, hands connections to a task pool
//! that can lose a wake-up when several arrive together, as a browser's do: such a connection
//! then waits, unread, until another one closes.)

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_io_timeout::TimeoutWriter;

use crate::cache::layout::CacheKey;
use crate::cache::storage::{
    is_refused, list_nar_file_names, list_narinfo_names, Object, ReadSeek, StorageRead,
};
use crate::host::dir_storage::{Beneath, DirStorage};

/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections beyond [`MAX_CONNECTIONS`] being answered 503 at once; more are just closed.
const MAX_REFUSING: usize = 64;
/// How long a connection may sit idle (or take to send a request head) before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may wait for a client that does not read before the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a stop, how long responses in flight may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// File bodies are read and sent in pieces of this size.
pub const CHUNK: usize = 256 * 1024;
/// The most narinfos one `narinfo-texts` reply carries.
const MAX_TEXTS_PAGE: usize = 5000;
/// Narinfos larger than this are left for the inspector to fetch (and judge) by itself.
const MAX_NARINFO: u64 = 1 << 20;

pub struct ServeOptions {
    pub root: PathBuf,
    pub listen: String,
    /// Worker threads of the runtime (file reads and routing run on its blocking pool).
    pub threads: usize,
    /// Static files of the inspector, served at `/` (a cache has no `index.html`).
    pub inspector: Option<PathBuf>,
    /// The npm package (`pkg/`): its browser entry (`browser.js`, `lib/`) served at `/pkg/` for
    /// the inspector; nothing else of it (tests, tools, `node_modules`).
    pub pkg: Option<PathBuf>,
    /// The wasm build, served at `/pkg/wasm/` [default: the package's `wasm/`].
    pub wasm: Option<PathBuf>,
    /// Log one line per request to stderr.
    pub log: bool,
}

/// A bound server; [`Served::run`] serves until its stop flag is set.
pub struct Served {
    listener: TcpListener,
    threads: usize,
    site: Arc<Site>,
}

/// What is served, and how.
struct Site {
    /// The cache: only its keys are served from it, opened once each (no look by name first).
    cache: Box<dyn StorageRead>,
    inspector: Option<Beneath>,
    pkg: Option<Beneath>,
    wasm: Option<Beneath>,
    log: bool,
}

impl Served {
    pub fn bind(opts: &ServeOptions) -> io::Result<Served> {
        let cache = DirStorage::open(&opts.root)?;
        if cache.stat(&CacheKey::CacheInfo)?.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no nix-cache-info: not a binary cache",
                    opts.root.display()
                ),
            ));
        }
        let listener = TcpListener::bind(&opts.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", opts.listen))
        })?;
        let inspector = opts.inspector.as_ref().and_then(|p| Beneath::open(p).ok());
        let pkg = opts.pkg.as_ref().and_then(|p| Beneath::open(p).ok());
        let wasm = opts
            .wasm
            .clone()
            .or_else(|| Some(opts.pkg.as_ref()?.join("wasm")))
            .and_then(|p| Beneath::open(&p).ok());
        Ok(Served {
            listener,
            threads: opts.threads.max(1),
            site: Arc::new(Site {
                cache: Box::new(cache),
                inspector,
                pkg,
                wasm,
                log: opts.log,
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

    /// Serves until `stop` is set: stops accepting at once, closes idle connections, and lets
    /// responses in flight finish for up to [`SHUTDOWN_GRACE`].
    pub fn run(self, stop: Arc<AtomicBool>) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name("serve")
            .enable_all()
            .build()?;
        let result = runtime.block_on(self.serve(stop));
        // What is left (connections past the grace, file reads in flight) is abandoned.
        runtime.shutdown_background();
        result
    }

    async fn serve(self, stop: Arc<AtomicBool>) -> io::Result<()> {
        self.listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let site = self.site;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(IDLE_TIMEOUT)
            .title_case_headers(true);
        let mut refusing = http.clone();
        refusing.keep_alive(false);
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let refusals = Arc::new(Semaphore::new(MAX_REFUSING));
        let graceful = GracefulShutdown::new();
        let stopped = async {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::pin!(stopped);
        loop {
            let (stream, remote) = tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: let others finish, then go on.
                        if site.log {
                            eprintln!("accept: {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let mut io = TimeoutWriter::new(stream);
            io.set_timeout(Some(WRITE_TIMEOUT));
            let io = TokioIo::new(Box::pin(io));
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                // Too many connections: a 503 (when not too many of those either) and close.
                if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                    let conn = refusing.serve_connection(
                        io,
                        service_fn(|_| async {
                            let reply = Reply::text(503, "too many connections\n")
                                .header("Retry-After", "1");
                            Ok::<_, Infallible>(reply.into_response(false, None))
                        }),
                    );
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                        drop(refusal);
                    });
                }
                continue;
            };
            let for_service = site.clone();
            let service = service_fn(move |req| {
                let site = for_service.clone();
                async move { Ok::<_, Infallible>(site.answer(req, remote).await) }
            });
            let conn = graceful.watch(http.serve_connection(io, service));
            let log = site.log;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    // hyper has answered a malformed head itself (400, 431, …); other errors
                    // (a client gone, an idle timeout) are not worth a line.
                    if log && e.is_parse() {
                        eprintln!("{remote} bad request: {e}");
                    }
                }
                drop(permit);
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
        Ok(())
    }
}

/// A parsed request head, as routing needs it.
struct Head {
    method: String,
    /// The path and query, as sent.
    target: String,
    headers: HeaderMap,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response to send.
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
    File(Box<dyn ReadSeek>, u64, u64),
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

    /// The hyper response: headers, and the body unless `head_only` (its Content-Length is
    /// kept). A file must already be positioned at its range's start.
    fn into_response(self, head_only: bool, log: Option<LogLine>) -> Response<Outgoing> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let len = self.len();
        let data = match self.body {
            _ if head_only => Data::Empty,
            Body::None => Data::Empty,
            Body::Bytes(b) if b.is_empty() => Data::Empty,
            Body::Bytes(b) => Data::Bytes(Bytes::from(b)),
            Body::File(_, _, 0) => Data::Empty,
            Body::File(f, _, len) => Data::File {
                left: len,
                next: read_piece(f, len),
            },
        };
        let mut response = Response::new(Outgoing {
            data,
            sent: 0,
            error: None,
            log: log.map(|l| LogLine {
                status: self.status,
                ..l
            }),
        });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert("Server", HeaderValue::from_static("nar-tool"));
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::try_from(value),
            ) {
                headers.append(name, value);
            }
        }
        if let Some(len) = len {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// A request's log line, printed when its response is done (or abandoned).
struct LogLine {
    remote: SocketAddr,
    /// `METHOD target`
    request: String,
    status: u16,
}

/// A response body: bytes in memory, or a range of a file read [`CHUNK`] by [`CHUNK`] on the
/// blocking pool, one piece ahead of the one hyper is sending: constant memory, and a client that
/// reads slowly slows only the reads for its own response.
struct Outgoing {
    data: Data,
    sent: u64,
    error: Option<String>,
    log: Option<LogLine>,
}

enum Data {
    Empty,
    Bytes(Bytes),
    /// `left` bytes of a file still to send, the next piece of them being read.
    File {
        left: u64,
        next: PieceRead,
    },
}

/// The next piece of a body being read, and the stream to read the rest from.
type PieceRead = JoinHandle<io::Result<(Box<dyn ReadSeek>, Vec<u8>)>>;

/// Reads the next piece of the `left` bytes to send from `file` (positioned at the first).
fn read_piece(mut file: Box<dyn ReadSeek>, left: u64) -> PieceRead {
    tokio::task::spawn_blocking(move || {
        let piece = read_exactly(&mut file, left.min(CHUNK as u64))?;
        Ok((file, piece))
    })
}

/// The next `n` bytes of `file` (at most a [`CHUNK`]), all of them or an error.
fn read_exactly(file: &mut dyn ReadSeek, n: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(n as usize);
    file.take(n).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being read",
        ));
    }
    Ok(bytes)
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let chunk = match &mut this.data {
            Data::Empty => return Poll::Ready(None),
            Data::Bytes(b) => std::mem::take(b),
            Data::File { left, next } => {
                let read = match Pin::new(&mut *next).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(joined) => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
                };
                let (file, piece) = match read {
                    Ok(read) => read,
                    Err(e) => {
                        // The framing is broken: hyper closes the connection.
                        this.data = Data::Empty;
                        this.error = Some(e.to_string());
                        return Poll::Ready(Some(Err(e)));
                    }
                };
                *left -= piece.len() as u64;
                let chunk = Bytes::from(piece);
                if *left > 0 {
                    *next = read_piece(file, *left);
                    this.sent += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                chunk
            }
        };
        this.data = Data::Empty;
        this.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.data, Data::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match &self.data {
            Data::Empty => 0,
            Data::Bytes(b) => b.len() as u64,
            Data::File { left, .. } => *left,
        })
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        let Some(log) = &self.log else { return };
        let LogLine {
            remote,
            request,
            status,
        } = log;
        match (&self.error, &self.data) {
            (Some(e), _) => eprintln!("{remote} \"{request}\" {status} error: {e}"),
            (None, Data::Empty) => eprintln!("{remote} \"{request}\" {status} {}", self.sent),
            (None, _) => eprintln!(
                "{remote} \"{request}\" {status} error: connection closed after {} bytes",
                self.sent
            ),
        }
    }
}

impl Site {
    /// The response to one request.
    async fn answer(
        self: Arc<Site>,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<Outgoing> {
        // A body on a GET or HEAD means nothing: hyper skips it (or closes the connection).
        let (parts, _body) = req.into_parts();
        let head_only = parts.method == Method::HEAD;
        let log = self.log.then(|| LogLine {
            remote,
            request: format!("{} {}", parts.method, parts.uri),
            status: 0,
        });
        let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
        let reply = if !target.starts_with('/') {
            // Not a path (an authority, `*`): as malformed as a bad request line, so close.
            Reply::text(400, "bad request: the target is not a path\n")
                .header("Connection", "close")
        } else {
            let head = Head {
                method: parts.method.as_str().to_string(),
                target: target.to_string(),
                headers: parts.headers,
            };
            let site = self.clone();
            tokio::task::spawn_blocking(move || site.prepare(&head))
                .await
                .unwrap_or_else(|e| {
                    // The details go to the log, not to the client.
                    eprintln!("internal error answering {target}: {e}");
                    Reply::text(500, "internal error\n")
                })
        };
        reply.into_response(head_only, log)
    }

    /// [`Site::route`], with a file body positioned at the start of its range, or read already
    /// when it is at most a [`CHUNK`] (narinfos, most inspector files; not for HEAD).
    fn prepare(&self, head: &Head) -> Reply {
        let mut reply = self.route(head);
        if let Body::File(file, offset, len) = &mut reply.body {
            let mut read = || -> io::Result<Option<Vec<u8>>> {
                file.seek(SeekFrom::Start(*offset))?;
                if *len > CHUNK as u64 || head.method == "HEAD" {
                    return Ok(None);
                }
                read_exactly(&mut **file, *len).map(Some)
            };
            match read() {
                Ok(None) => {}
                Ok(Some(bytes)) => reply.body = Body::Bytes(bytes),
                Err(e) => return Reply::text(500, &format!("cannot read the file: {e}\n")),
            }
        }
        reply
    }

    /// The reply to a request.
    fn route(&self, head: &Head) -> Reply {
        let mut reply = self.dispatch(head);
        // Every reply may be read by the inspector served from elsewhere.
        reply
            .headers
            .push(("Access-Control-Allow-Origin", "*".into()));
        reply
    }

    /// The reply to a request, before the CORS header every reply gets.
    fn dispatch(&self, head: &Head) -> Reply {
        if head.method == "OPTIONS" {
            // A CORS preflight (the inspector served from elsewhere, sending Range, say).
            return Reply {
                status: 204,
                headers: vec![
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
            return Reply::text(405, "only GET and HEAD\n").header("Allow", "GET, HEAD");
        }
        let path = head.target.split(['?', '#']).next().unwrap_or("/");
        let rel = match decode_path(path) {
            Ok(rel) => rel,
            Err(why) => return Reply::text(400, &format!("bad path: {why}\n")),
        };
        if let Some(what) = rel.strip_prefix("_nar-tool/") {
            let query = head.target.split_once('?').map_or("", |(_, q)| q);
            let json = match what {
                "narinfos" => Some(self.narinfo_names().and_then(to_json)),
                "nar-files" => Some(self.nar_file_names().and_then(to_json)),
                "narinfo-texts" => Some(self.narinfo_texts(query)),
                _ => None,
            };
            if let Some(json) = json {
                return match json {
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
            }
        }
        let dir_index = rel.is_empty() || rel.ends_with('/');
        // A cache key is answered from the cache alone; anything else from the package's browser
        // entry or the inspector's files. Each is opened once, and what is sent is what was
        // opened.
        let opened: io::Result<Option<(Object, &'static str)>> = if dir_index {
            static_file(self.inspector.as_ref(), &format!("{rel}index.html"))
        } else if let Ok(key) = CacheKey::parse(&rel) {
            self.cache
                .open(&key)
                .map(|o| o.map(|o| (o, key.content_type())))
        } else if let Some(name) = rel
            .strip_prefix("pkg/")
            .filter(|_| self.pkg.is_some() || self.wasm.is_some())
        {
            match name.split_once('/') {
                Some(("wasm", file)) => static_file(self.wasm.as_ref(), file),
                Some(("lib", _)) => static_file(self.pkg.as_ref(), name),
                None if name == "browser.js" => static_file(self.pkg.as_ref(), name),
                _ => Ok(None),
            }
        } else {
            static_file(self.inspector.as_ref(), &rel)
        };
        let opened = match opened {
            Ok(opened) => opened,
            // A symlink leading out, a FIFO, a directory: not something this server has.
            Err(e) if is_refused(&e) => None,
            Err(_) => return Reply::text(500, "cannot read the file\n"),
        };
        let Some((object, content_type)) = opened else {
            return if rel.is_empty() {
                let page = format!("<!doctype html><title>nar-tool serve</title><p>Binary cache at {}. The inspector is not installed.</p>\n", html_escape(&self.cache.describe()));
                Reply {
                    status: 200,
                    headers: vec![("Content-Type", "text/html; charset=utf-8".into())],
                    body: Body::Bytes(page.into_bytes()),
                }
            } else {
                Reply::text(404, "not found\n")
            };
        };
        let mut r = file_reply(head, object, content_type);
        r.headers.push((
            "Access-Control-Expose-Headers",
            "Content-Range, Accept-Ranges, ETag, Last-Modified".into(),
        ));
        r
    }

    /// The narinfo names, by the one rule every face uses (`bogus.narinfo` too: the verifier
    /// reports it).
    fn narinfo_names(&self) -> io::Result<Vec<String>> {
        list_narinfo_names(&*self.cache)
    }

    /// The files under `nar/`: NAR keys, and names there that are not (the verifier reports
    /// them).
    fn nar_file_names(&self) -> io::Result<Vec<String>> {
        list_nar_file_names(&*self.cache)
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
                let text = CacheKey::parse(n)
                    .ok()
                    .and_then(|key| self.cache.read_small(&key, MAX_NARINFO).ok().flatten())
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
}

/// A static file (inspector, package, wasm build) opened beneath its folder.
fn static_file(dir: Option<&Beneath>, rel: &str) -> io::Result<Option<(Object, &'static str)>> {
    let Some(dir) = dir else { return Ok(None) };
    Ok(dir.open_regular(rel)?.map(|(file, meta)| {
        (
            Object {
                meta,
                body: Box::new(file),
            },
            content_type(rel),
        )
    }))
}

fn to_json(value: impl serde::Serialize) -> io::Result<Vec<u8>> {
    let mut body = serde_json::to_vec(&value).map_err(io::Error::other)?;
    body.push(b'\n');
    Ok(body)
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
fn file_reply(head: &Head, object: Object, content_type: &str) -> Reply {
    let Object { meta, body: file } = object;
    let size = meta.size;
    // HTTP dates end with the year 9999: a file dated later is sent as dated then.
    const LAST_HTTP_DATE: u64 = 253_402_300_799;
    let mtime = Duration::from_secs(meta.modified.unwrap_or(0).min(LAST_HTTP_DATE));
    let modified = UNIX_EPOCH + mtime;
    let etag = meta.etag;
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
        return Reply {
            status: 304,
            headers,
            body: Body::None,
        };
    }
    let range = match head.get("Range") {
        Some(r) => parse_range(r, size),
        None => Ok(None),
    };
    match range {
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
