//! Where `serve` listens: TCP sockets, and Unix-domain stream sockets (a reverse proxy's
//! `proxy_pass http://unix:…`, or a systemd `ListenStream=/run/…`). Bound by `--listen` or
//! handed in by socket activation; their connections are one stream type for the rest of the
//! server, and their peers a [`Peer`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The prefix of a `--listen` value that names a Unix socket's path.
pub const UNIX_PREFIX: &str = "unix:";

/// A listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `spec`: `unix:PATH` (a stale socket file left by a server that is gone is
    /// replaced; anything else at PATH is refused) or `ADDR:PORT`.
    pub fn bind(spec: &str) -> io::Result<Listener> {
        let failed =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {spec}: {e}"));
        match spec.strip_prefix(UNIX_PREFIX) {
            Some(path) => bind_unix(Path::new(path))
                .map(Listener::Unix)
                .map_err(failed),
            None => TcpListener::bind(spec).map(Listener::Tcp).map_err(failed),
        }
    }

    /// `127.0.0.1:8080`, or `unix:/run/nar-tool.sock`.
    pub fn address(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(_) => format!(
                "{UNIX_PREFIX}{}",
                self.socket_path().unwrap_or_default().display()
            ),
        }
    }

    /// A Unix socket's path.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match self {
            Listener::Tcp(_) => None,
            Listener::Unix(l) => l.local_addr().ok()?.as_pathname().map(Path::to_path_buf),
        }
    }

    /// How a client asks for `path` (`/`, `/_nar-tool/`) here: `http://ADDR/…`, or for a Unix
    /// socket `http://localhost/… through unix:PATH`.
    pub fn url(&self, path: &str) -> String {
        match self {
            Listener::Tcp(_) => format!("http://{}{path}", self.address()),
            Listener::Unix(_) => format!("http://localhost{path} through {}", self.address()),
        }
    }

    pub(super) fn into_async(self) -> io::Result<AsyncListener> {
        Ok(match self {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                AsyncListener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                AsyncListener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        })
    }
}

/// Binds a Unix socket at `path`, replacing a socket file nobody listens on any more.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let meta = std::fs::symlink_metadata(path)?;
            if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something that is not a socket is there",
                ));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server listens there",
                )),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                    UnixListener::bind(path)
                }
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

pub(super) enum AsyncListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl AsyncListener {
    pub(super) async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            AsyncListener::Tcp(l) => {
                let (stream, addr) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Peer::Ip(addr)))
            }
            AsyncListener::Unix(l) => {
                let (stream, _) = l.accept().await?;
                Ok((Stream::Unix(stream), Peer::Local))
            }
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ip(SocketAddr),
    /// A process on this machine, through a Unix socket (a reverse proxy, usually): one client
    /// for failed-login penalties, and exempt from the per-address connection budget.
    Local,
}

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Ip(a) => Some(a.ip()),
            Peer::Local => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(a) => a.fmt(f),
            Peer::Local => f.write_str("unix"),
        }
    }
}

/// A connection's socket.
pub(super) enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Calls `$method` on whichever socket `$self` holds.
macro_rules! either {
    ($self:expr, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $call,
            Stream::Unix($s) => $call,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
