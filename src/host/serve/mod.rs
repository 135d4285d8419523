//! `nar-tool serve`: caches over HTTP (one at the root, or several under their names:
//! `shelves.rs`), each a binary cache Nix can substitute from
//! (`nix-cache-info`, narinfos, NARs, listings with their content types, HEAD, single Range
//! requests, ETag / Last-Modified), plus, under the prefix reserved for the server's own things,
//! the inspector at `/_nar-tool/` (`/` leads there) and the npm package's browser entry it
//! imports at `/_nar-tool/pkg/` (`browser.js`, `lib/…`, and the wasm build at
//! `/_nar-tool/pkg/wasm/`). From the cache only keys of its layout are served; nothing outside
//! these directories is ever read: paths with `..`, NUL or backslashes are refused (400),
//! symlinks resolving outside are treated as absent (404).
//!
//! An HTTP binary cache cannot be listed, so for the inspector (never asked for by Nix) there are
//! JSON listings, a bounded page at a time (`json.rs`): `GET /_nar-tool/narinfos`,
//! `GET /_nar-tool/nar-files` and `GET /_nar-tool/narinfo-texts` (the narinfos with their texts),
//! and searches of the cache's lookup index, `GET /_nar-tool/lookup?q=…` (`search.rs`). For its
//! verifier, many small files of the cache in one response: `GET /_nar-tool/files?key=…&key=…`
//! (at most 128 keys of the layout, files up to a size in a length-prefixed framing, streamed:
//! `bundle.rs`).
//!
//! HTTP/1.1 is hyper's (request parsing, framing, keep-alive, pipelining), on a tokio runtime of
//! `threads` workers. This module decides only which file or listing a request gets
//! (`Site::route`, blocking file-system work, run on tokio's blocking pool) and streams file
//! bodies in [`CHUNK`]-sized reads as the client takes them, never reading ahead of a client that
//! does not take them: a NAR of any size is sent in constant memory, and a connection whose client
//! stops reading holds one piece. Who may connect, for how long and how slowly is `guard.rs`'s
//! ([`Limits`]): a share per client address, a deadline for request heads, a minimum rate for
//! responses, idle connections closed first when room is needed; beyond the limit, 503. What a
//! browser may do with a response (nosniff, the Content-Security-Policy) is `policy.rs`'s; who may
//! read which cache, `auth/`'s and `gate.rs`'s (`--auth`); the sockets listened on are bound here
//! or handed in by systemd (`activation.rs`). On stop,
//! no new connection is accepted, idle ones close, and responses in flight get
//! [`SHUTDOWN_GRACE`] to finish. (tiny_http 0.12, used first, hands connections to a task pool
//! that can lose a wake-up when several arrive together, as a browser's do: such a connection
//! then waits, unread, until another one closes.)

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
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

use crate::cache::layout::CacheKey;
use crate::cache::location::CacheLocation;
use crate::cache::storage::{is_refused, Object, ObjectMeta, ReadSeek, StorageRead};
use crate::host::dir_storage::Beneath;

/// Connections being answered 503 at once; more are just closed.
const MAX_REFUSING: usize = 64;
/// How long a refused connection may take to be told so.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// After a stop, how long responses in flight may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Threads for file reads and routing, per worker thread.
const BLOCKING_THREADS_PER_WORKER: usize = 8;
/// File bodies are read and sent in pieces of this size, one at a time.
pub const CHUNK: usize = 32 * 1024;
/// hyper's buffer limit per connection: a request head at most this long, and the bytes of a
/// response queued for a client before the next piece is asked for.
const MAX_BUF: usize = 16 * 1024;

pub struct ServeOptions {
    /// The caches: each a directory, a bucket, or another HTTP cache (proxied); either one
    /// unnamed, served at the root, or named ones, each served under `/NAME/`.
    pub caches: Vec<(Option<String>, CacheLocation)>,
    /// Who may read which cache (`auth/`); `None`: anyone.
    pub auth: Option<PathBuf>,
    pub listen: String,
    /// Worker threads of the runtime (file reads and routing run on its blocking pool).
    pub threads: usize,
    /// Static files of the inspector, served at `/_nar-tool/` (its page, style and modules).
    pub inspector: Option<PathBuf>,
    /// The npm package (`pkg/`): its browser entry (`browser.js`, `lib/`) served at
    /// `/_nar-tool/pkg/` for the inspector; nothing else of it (tests, tools, `node_modules`).
    pub pkg: Option<PathBuf>,
    /// The wasm build, served at `/_nar-tool/pkg/wasm/` [default: the package's `wasm/`].
    pub wasm: Option<PathBuf>,
    /// Log one line per request to stderr.
    pub log: bool,
    /// What clients may take.
    pub limits: Limits,
}

/// A bound server; [`Served::run`] serves until its stop flag is set.
pub struct Served {
    listeners: Vec<Listener>,
    /// The Unix socket file this server made (`--listen unix:PATH`), removed when it stops;
    /// never one handed in (its owner, systemd, keeps it).
    own_socket: Option<PathBuf>,
    threads: usize,
    limits: Limits,
    site: Arc<Site>,
}

/// What is served, and how.
struct Site {
    /// The caches: only their keys are served from them.
    shelves: Vec<Shelf>,
    auth: Option<Arc<auth::Auth>>,
    inspector: Option<Beneath>,
    pkg: Option<Beneath>,
    wasm: Option<Beneath>,
    log: bool,
    /// How many of the inspector's listings are being made at once.
    json_work: Arc<Semaphore>,
}

impl Served {
    /// Binds `opts.listen`: `ADDR:PORT`, or `unix:PATH` for a Unix socket.
    pub fn bind(opts: &ServeOptions) -> io::Result<Served> {
        let listener = Listener::bind(&opts.listen)?;
        let own_socket = listener.socket_path();
        let served = Served::with_listeners(opts, vec![listener]);
        if served.is_err() {
            if let Some(path) = &own_socket {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(Served {
            own_socket,
            ..served?
        })
    }

    /// Serves on listeners made elsewhere (handed in by socket activation: `activation.rs`);
    /// `opts.listen` is not used.
    pub fn with_listeners(opts: &ServeOptions, listeners: Vec<Listener>) -> io::Result<Served> {
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no socket to listen on",
            ));
        }
        let shelves = Shelf::open_all(&opts.caches)?;
        let auth = match &opts.auth {
            None => None,
            Some(path) => {
                let auth = auth::Auth::load(path).map_err(io::Error::other)?;
                Shelf::check_names(&shelves, &auth).map_err(io::Error::other)?;
                Some(Arc::new(auth))
            }
        };
        let inspector = opts.inspector.as_ref().and_then(|p| Beneath::open(p).ok());
        let pkg = opts.pkg.as_ref().and_then(|p| Beneath::open(p).ok());
        let wasm = opts
            .wasm
            .clone()
            .or_else(|| Some(opts.pkg.as_ref()?.join("wasm")))
            .and_then(|p| Beneath::open(&p).ok());
        raise_fd_limit(opts.limits.max_connections);
        Ok(Served {
            listeners,
            own_socket: None,
            threads: opts.threads.max(1),
            limits: opts.limits.clone(),
            site: Arc::new(Site {
                shelves,
                auth,
                inspector,
                pkg,
                wasm,
                log: opts.log,
                json_work: Arc::new(Semaphore::new(json::MAX_AT_ONCE)),
            }),
        })
    }

    /// The address actually bound (useful with port 0); the first, when there are several.
    pub fn address(&self) -> String {
        self.addresses().swap_remove(0)
    }

    /// The addresses listened on (`ADDR:PORT`, `unix:PATH`).
    pub fn addresses(&self) -> Vec<String> {
        self.listeners.iter().map(Listener::address).collect()
    }

    /// How a client asks each listener for `path` ([`Listener::url`]).
    pub fn urls(&self, path: &str) -> Vec<String> {
        self.listeners.iter().map(|l| l.url(path)).collect()
    }

    /// Serves until `stop` is set: stops accepting at once, closes idle connections, and lets
    /// responses in flight finish for up to [`SHUTDOWN_GRACE`].
    pub fn run(self, stop: Arc<AtomicBool>) -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            // File reads are short: a few threads per worker keep the disks busy, and a crowd
            // of clients does not become a crowd of threads (each with its stack and arena).
            .max_blocking_threads(BLOCKING_THREADS_PER_WORKER * self.threads)
            .thread_name("serve")
            .enable_all()
            .build()?;
        let own_socket = self.own_socket.clone();
        let result = runtime.block_on(self.serve(stop));
        // What is left (connections past the grace, file reads in flight) is abandoned.
        runtime.shutdown_background();
        if let Some(path) = own_socket {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    async fn serve(self, stop: Arc<AtomicBool>) -> io::Result<()> {
        let listeners = self
            .listeners
            .into_iter()
            .map(Listener::into_async)
            .collect::<io::Result<Vec<_>>>()?;
        let site = self.site;
        let guard = Guard::new(self.limits.clone());
        let watchdog = tokio::spawn(guard.clone().watch());
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            // A backstop: the watchdog cuts a slow head or an idle connection first.
            .header_read_timeout(self.limits.idle_timeout + self.limits.header_timeout)
            .max_buf_size(MAX_BUF)
            .title_case_headers(true);
        let mut refusing = http.clone();
        refusing.keep_alive(false);
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
                accepted = accept_any(&listeners) => match accepted {
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
            let (site, guard, http, refusing) =
                (site.clone(), guard.clone(), http.clone(), refusing.clone());
            let (refusals, watcher) = (refusals.clone(), graceful.watcher());
            tokio::spawn(async move {
                let log = site.log;
                let admitted = match guard.admit(ClientKey::of_peer(remote)).await {
                    Ok(admitted) => admitted,
                    Err(why) => {
                        if site.log {
                            eprintln!("{remote} refused: {}", why.describe());
                        }
                        refuse(stream, why, &refusing, &refusals).await;
                        return;
                    }
                };
                let io = TokioIo::new(admitted.wrap(stream));
                let state = admitted.state.clone();
                let service = service_fn(move |req| {
                    let (site, in_flight) = (site.clone(), state.request());
                    async move { Ok::<_, Infallible>(site.answer(req, remote, in_flight).await) }
                });
                let conn = watcher.watch(http.serve_connection(io, service));
                tokio::select! {
                    done = conn => {
                        // hyper has answered a malformed head itself (400, 431, …); other
                        // errors (a client gone) are not worth a line.
                        if let Err(e) = done {
                            if log && e.is_parse() {
                                eprintln!("{remote} bad request: {e}");
                            }
                        }
                    }
                    why = admitted.state.cut_off() => {
                        if log && why != Cut::Idle {
                            eprintln!("{remote} {}", why.describe());
                        }
                    }
                }
                drop(admitted);
            });
        }
        drop(listeners);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
        guard.cut_all();
        watchdog.abort();
        Ok(())
    }
}

/// The next connection on any of the listeners.
async fn accept_any(listeners: &[AsyncListener]) -> io::Result<(Stream, Peer)> {
    if let [one] = listeners {
        return one.accept().await;
    }
    // `accept` is cancel-safe: the ones not chosen lose nothing.
    let accepts = listeners.iter().map(|l| Box::pin(l.accept()));
    futures_util::future::select_all(accepts).await.0
}

/// Answers a connection that was not admitted with a 503 (when not too many are being answered
/// so already; else it is just closed).
async fn refuse(stream: Stream, why: Refused, http: &http1::Builder, refusals: &Arc<Semaphore>) {
    let Ok(_refusal) = refusals.clone().try_acquire_owned() else {
        return;
    };
    let service = service_fn(move |_| async move {
        let reply = Reply::text(503, &format!("{}\n", why.describe())).header("Retry-After", "1");
        Ok::<_, Infallible>(reply.into_response(false, None, None))
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_TIME, conn).await;
}

/// Raises the soft limit on open files to the hard one, so that `max_connections` sockets (and
/// the files they send) fit; says so when they cannot.
fn raise_fd_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum || (lim.current.is_some() && lim.maximum.is_none()) {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            lim = raised;
        }
    }
    let needed = 2 * max_connections as u64 + 64;
    if let Some(allowed) = lim.current.filter(|&n| n < needed) {
        eprintln!(
            "warning: {allowed} open files allowed (ulimit -n), fewer than the {needed} that {max_connections} connections may need"
        );
    }
}

pub mod activation;
pub mod auth;
mod bodies;
mod bundle;
mod embedded;
mod gate;
mod guard;
mod http;
mod json;
mod listen;
mod own_files;
mod policy;
mod routes;
mod search;
mod shelves;

use bodies::*;
pub use embedded::has_inspector as has_embedded_inspector;
pub use guard::Limits;
use guard::{ClientKey, Cut, Guard, InFlight, Refused};
use http::*;
pub use http::{decode_path, parse_range};
use listen::{AsyncListener, Stream};
pub use listen::{Listener, Peer};
use shelves::Shelf;
