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
use crate::cache::location::CacheLocation;
use crate::cache::storage::{
    is_refused, list_nar_file_names, list_narinfo_names, Object, ReadSeek, StorageRead,
};
use crate::host::dir_storage::Beneath;

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
    /// The cache: a directory, a bucket, or another HTTP cache (proxied).
    pub location: CacheLocation,
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
        let cache = crate::host::open::open_read(&opts.location)?;
        if cache.stat(&CacheKey::CacheInfo)?.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no nix-cache-info: not a binary cache",
                    opts.location
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
                cache,
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

mod bodies;
mod http;
mod routes;

use bodies::*;
use http::*;
pub use http::{decode_path, parse_range};
