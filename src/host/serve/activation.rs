//! Socket activation, as systemd (and `systemd-socket-activate`) does it: when `LISTEN_PID` is
//! this process's id, `LISTEN_FDS` listening sockets are handed in as file descriptors 3, 4, …
//! (`sd_listen_fds(3)`). They are taken (close-on-exec set) and the variables removed, so that
//! nothing started later takes them for its own. With `LISTEN_PID` naming another process, the
//! variables are not ours and are left alone.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;

use super::Listener;

/// The first descriptor handed in.
const FIRST_FD: RawFd = 3;
/// More than this many is not a plausible hand-over.
const MAX_FDS: usize = 64;

/// The listening sockets handed to this process, if any were; an error when the hand-over is
/// malformed or a descriptor is not a listening stream socket (TCP or Unix).
///
/// Must run before other threads start (it changes the environment).
pub fn take_listeners() -> Result<Option<Vec<Listener>>, String> {
    let (Ok(pid), Ok(fds)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != std::process::id() {
        return Ok(None);
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let n: usize = fds
        .trim()
        .parse()
        .ok()
        .filter(|&n| (1..=MAX_FDS).contains(&n))
        .ok_or_else(|| format!("LISTEN_FDS={fds:?}: expected 1 to {MAX_FDS} sockets"))?;
    (FIRST_FD..FIRST_FD + n as RawFd)
        .map(listener)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Descriptor `fd`, checked to be a listening stream socket of IPv4, IPv6 or a Unix socket, as
/// a listener.
fn listener(fd: RawFd) -> Result<Listener, String> {
    let int_opt = |level, name| -> Result<libc::c_int, String> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: value and len are valid for writes of a c_int; a bad fd only fails.
        let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &raw mut len) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!(
                "file descriptor {fd} handed in is not a socket: {e}"
            ));
        }
        Ok(value)
    };
    let domain = int_opt(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if ![libc::AF_INET, libc::AF_INET6, libc::AF_UNIX].contains(&domain) {
        return Err(format!(
            "file descriptor {fd} handed in is not a TCP or Unix socket (domain {domain})"
        ));
    }
    if int_opt(libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(format!(
            "file descriptor {fd} handed in is not a stream socket"
        ));
    }
    if int_opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Err(format!("file descriptor {fd} handed in is not listening"));
    }
    // SAFETY: fd is an open listening stream socket of that domain handed to this process,
    // taken once (the variables naming it are gone).
    let listener = unsafe {
        if domain == libc::AF_UNIX {
            Listener::Unix(UnixListener::from_raw_fd(fd))
        } else {
            Listener::Tcp(TcpListener::from_raw_fd(fd))
        }
    };
    let set = match &listener {
        Listener::Tcp(l) => rustix::io::fcntl_setfd(l, rustix::io::FdFlags::CLOEXEC),
        Listener::Unix(l) => rustix::io::fcntl_setfd(l, rustix::io::FdFlags::CLOEXEC),
    };
    set.map_err(|e| format!("file descriptor {fd}: cannot set close-on-exec: {e}"))?;
    Ok(listener)
}
