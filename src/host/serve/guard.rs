//! Hostile clients: who may hold a connection, for how long, and how slowly.
//!
//! Every connection's socket is wrapped in [`Guarded`], which records what moves through it in
//! the connection's [`ConnState`]; requests mark themselves in flight ([`InFlight`]). A watchdog
//! ([`Guard::watch`]) looks at every connection a few times a second and cuts the ones that:
//!
//! - take longer than [`Limits::header_timeout`] to send a request head once its first byte came
//!   (slowloris: a head trickled a byte at a time);
//! - while the server waits for them to take bytes (the socket is full), take fewer than
//!   [`Limits::min_rate`] bytes per second over [`Limits::rate_window`] (slow readers);
//! - sit idle (no request, nothing to send) longer than [`Limits::idle_timeout`].
//!
//! Admission ([`Guard::admit`]) allows each client address (an IPv4 address, an IPv6 /64) at
//! most [`Limits::max_connections_per_client`] connections, and when the global limit is near,
//! makes room by closing idle keep-alive connections first (the longest idle first), then
//! connections whose request head has been arriving for over a second; a connection sending a
//! response is never closed to make room (the rate rule judges it).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::listen::{Peer, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The limits that keep one client (or many) from taking the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; beyond, idle ones are closed to make room, else 503.
    pub max_connections: usize,
    /// Connections one client address (IPv4 address, IPv6 /64) may hold at once.
    pub max_connections_per_client: usize,
    /// How long a request head may take from its first byte to its end.
    pub header_timeout: Duration,
    /// How long a connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// The slowest a client may take a response (bytes per second), measured over
    /// `rate_window` while the server waits on it.
    pub min_rate: u64,
    pub rate_window: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_client: 128,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            min_rate: 1024,
            rate_window: Duration::from_secs(10),
        }
    }
}

/// How often the watchdog looks at the connections.
const TICK: Duration = Duration::from_millis(250);
/// A request head arriving for longer than this is fair game when room is needed (a real client
/// sends its head at once).
const STALE_HEAD: Duration = Duration::from_secs(1);
/// Connections idle this long are closed to keep some room free before the limit is reached.
const SETTLED: Duration = Duration::from_secs(1);
/// How long a new connection may wait for room (while idle ones close) before it gets a 503.
const ADMIT_WAIT: Duration = Duration::from_secs(1);
/// New connections waiting for room at once; more are refused at once.
const MAX_WAITING: usize = 64;

/// Whose share a connection counts against: an IPv4 address, or an IPv6 /64 (what one host or
/// site is usually given; a single IPv6 client can use many addresses of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4([u8; 4]),
    V6([u8; 8]),
    /// Every peer of a Unix socket (`listen::Peer::Local`).
    Local,
}

impl ClientKey {
    pub fn of_peer(peer: Peer) -> ClientKey {
        peer.ip().map_or(ClientKey::Local, ClientKey::of)
    }

    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(a) => ClientKey::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    ClientKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Why the watchdog closed a connection (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Cut {
    None = 0,
    SlowHead,
    SlowReader,
    Idle,
    MadeRoom,
    Shutdown,
}

impl Cut {
    fn from_u8(v: u8) -> Cut {
        match v {
            1 => Cut::SlowHead,
            2 => Cut::SlowReader,
            3 => Cut::Idle,
            4 => Cut::MadeRoom,
            5 => Cut::Shutdown,
            _ => Cut::None,
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Cut::None => "closed",
            Cut::SlowHead => "closed: the request head came too slowly",
            Cut::SlowReader => "closed: the client took the response too slowly",
            Cut::Idle => "closed: idle",
            Cut::MadeRoom => "closed to make room for another connection",
            Cut::Shutdown => "closed: the server stops",
        }
    }
}

/// Milliseconds since the server started (what the atomics hold).
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// One connection, as its socket, its requests and the watchdog see it.
pub(super) struct ConnState {
    clock: Clock,
    /// Bytes taken by the client so far.
    written: AtomicU64,
    /// When something last moved (ms).
    last_active: AtomicU64,
    /// When the first byte of a request head in progress came (ms + 1); 0: none in progress.
    head_started: AtomicU64,
    /// Requests dispatched whose responses are not done.
    in_flight: AtomicU32,
    /// Bytes came while a request was in flight (a pipelined head): its time starts when the
    /// response ends.
    read_while_busy: AtomicBool,
    /// A write is waiting for the client to read (the socket is full).
    write_waiting: AtomicBool,
    /// A write waited since the watchdog last looked.
    waited: AtomicBool,
    cut: AtomicU8,
    notify: Notify,
}

impl ConnState {
    fn new(clock: Clock) -> ConnState {
        ConnState {
            clock,
            written: AtomicU64::new(0),
            last_active: AtomicU64::new(clock.now()),
            head_started: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            read_while_busy: AtomicBool::new(false),
            write_waiting: AtomicBool::new(false),
            waited: AtomicBool::new(false),
            cut: AtomicU8::new(Cut::None as u8),
            notify: Notify::new(),
        }
    }

    fn on_read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.clock.now();
        self.last_active.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started.compare_exchange(
                0,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.read_while_busy.store(true, Ordering::Relaxed);
        }
    }

    fn on_written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        self.write_waiting.store(false, Ordering::Relaxed);
        if n > 0 {
            self.last_active.store(self.clock.now(), Ordering::Relaxed);
        }
    }

    fn on_write_blocked(&self) {
        self.write_waiting.store(true, Ordering::Relaxed);
        self.waited.store(true, Ordering::Relaxed);
    }

    /// A request head is complete and its response begins; the response holds the guard.
    pub(super) fn request(self: &Arc<ConnState>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        self.read_while_busy.store(false, Ordering::Relaxed);
        self.last_active.store(self.clock.now(), Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Nothing in progress: no request, no head arriving, nothing waiting to be sent.
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
            && !self.write_waiting.load(Ordering::Relaxed)
    }

    fn cut(&self, why: Cut) {
        if self
            .cut
            .compare_exchange(
                Cut::None as u8,
                why as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    /// Resolves once the watchdog cut the connection; gives why.
    pub(super) async fn cut_off(&self) -> Cut {
        self.notify.notified().await;
        Cut::from_u8(self.cut.load(Ordering::Relaxed))
    }
}

/// A request in flight, until its response is done (or dropped).
pub(super) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        let now = s.clock.now();
        s.last_active.store(now, Ordering::Relaxed);
        if s.in_flight.fetch_sub(1, Ordering::Relaxed) == 1
            && s.read_while_busy.swap(false, Ordering::Relaxed)
        {
            // Part of the next head came already: its time runs from now.
            s.head_started.store(now + 1, Ordering::Relaxed);
        }
    }
}

/// A connection's socket, recording what moves through it.
pub(super) struct Guarded {
    stream: Stream,
    state: Arc<ConnState>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.state.on_read(buf.filled().len() - before);
        }
        r
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.record(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.record(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Guarded {
    fn record(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Pending => self.state.on_write_blocked(),
            Poll::Ready(Ok(n)) => self.state.on_written(*n),
            Poll::Ready(Err(_)) => {}
        }
    }
}

/// What the watchdog keeps about one connection.
struct Entry {
    state: Arc<ConnState>,
    client: ClientKey,
    /// Since when (ms) the server has been waiting on the client, and how much it had taken then.
    rate_mark: Option<(u64, u64)>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    per_client: HashMap<ClientKey, usize>,
}

/// The limits in force, and every connection.
pub(super) struct Guard {
    limits: Limits,
    clock: Clock,
    registry: Mutex<Registry>,
    permits: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

/// An admitted connection: its share of the limits until it is dropped.
pub(super) struct Admitted {
    guard: Arc<Guard>,
    id: u64,
    pub(super) state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl Admitted {
    /// The socket, wrapped to record what moves through it.
    pub(super) fn wrap(&self, stream: Stream) -> Guarded {
        Guarded {
            stream,
            state: self.state.clone(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut reg = self.guard.lock();
        if let Some(entry) = reg.conns.remove(&self.id) {
            release(&mut reg, entry.client);
        }
    }
}

fn release(reg: &mut Registry, client: ClientKey) {
    if let Some(n) = reg.per_client.get_mut(&client) {
        *n -= 1;
        if *n == 0 {
            reg.per_client.remove(&client);
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Its address holds its share already.
    ClientBudget,
    /// No room, even after closing what could be closed.
    Full,
}

impl Refused {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Refused::ClientBudget => "too many connections from this address",
            Refused::Full => "too many connections",
        }
    }
}

impl Guard {
    pub(super) fn new(limits: Limits) -> Arc<Guard> {
        let limits = Limits {
            max_connections: limits.max_connections.max(1),
            max_connections_per_client: limits.max_connections_per_client.max(1),
            ..limits
        };
        Arc::new(Guard {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
            limits,
            clock: Clock(Instant::now()),
            registry: Mutex::new(Registry::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `client`: at once when there is room, else after
    /// closing idle connections (waiting up to [`ADMIT_WAIT`] for them to go). A Unix socket's
    /// peers (a reverse proxy for many clients, usually) have no budget of their own.
    pub(super) async fn admit(self: &Arc<Guard>, client: ClientKey) -> Result<Admitted, Refused> {
        {
            let mut reg = self.lock();
            let n = reg.per_client.entry(client).or_insert(0);
            if *n >= self.limits.max_connections_per_client && client != ClientKey::Local {
                return Err(Refused::ClientBudget);
            }
            *n += 1;
        }
        // Until placed, dropping `share` gives the client's share back.
        let share = Share {
            guard: self,
            client,
        };
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => self.wait_for_room().await.ok_or(Refused::Full)?,
        };
        std::mem::forget(share);
        let state = Arc::new(ConnState::new(self.clock));
        let id = {
            let mut reg = self.lock();
            reg.next_id += 1;
            let id = reg.next_id;
            let entry = Entry {
                state: state.clone(),
                client,
                rate_mark: None,
            };
            reg.conns.insert(id, entry);
            id
        };
        // Keep some room free for the next ones, from connections idle for a while.
        let reserve = (self.limits.max_connections / 32).max(1);
        let free = self.permits.available_permits();
        if free < reserve {
            self.make_room(reserve - free, SETTLED);
        }
        Ok(Admitted {
            guard: self.clone(),
            id,
            state,
            _permit: permit,
        })
    }

    /// A place, once idle connections closed for it; `None` after [`ADMIT_WAIT`], or when too
    /// many wait already.
    async fn wait_for_room(&self) -> Option<OwnedSemaphorePermit> {
        let _waiting = self.waiting.clone().try_acquire_owned().ok()?;
        let deadline = Instant::now() + ADMIT_WAIT;
        loop {
            self.make_room(1, Duration::ZERO);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let wait = self.permits.clone().acquire_owned();
            if let Ok(permit) = tokio::time::timeout(left.min(TICK), wait).await {
                return permit.ok();
            }
        }
    }

    /// Closes up to `n` connections to make room: idle ones (for at least `min_idle`) first,
    /// the longest idle first, then ones whose request head has been arriving for over
    /// [`STALE_HEAD`], the oldest first. Returns how many it closed.
    pub(super) fn make_room(&self, n: usize, min_idle: Duration) -> usize {
        let now = self.clock.now();
        let min_idle = min_idle.as_millis() as u64;
        let reg = self.lock();
        let mut idle = Vec::new();
        let mut stale = Vec::new();
        for entry in reg.conns.values() {
            let s = &entry.state;
            if s.cut.load(Ordering::Relaxed) != Cut::None as u8 {
                continue;
            }
            let head = s.head_started.load(Ordering::Relaxed);
            let last = s.last_active.load(Ordering::Relaxed);
            if s.idle() && now.saturating_sub(last) >= min_idle {
                idle.push((last, s));
            } else if head != 0 && now.saturating_sub(head - 1) > STALE_HEAD.as_millis() as u64 {
                stale.push((head, s));
            }
        }
        idle.sort_by_key(|(t, _)| *t);
        stale.sort_by_key(|(t, _)| *t);
        let victims: Vec<_> = idle.into_iter().chain(stale).take(n).collect();
        for (_, s) in &victims {
            s.cut(Cut::MadeRoom);
        }
        victims.len()
    }

    /// Cuts every connection (at shutdown, once the grace is over).
    pub(super) fn cut_all(&self) {
        for entry in self.lock().conns.values() {
            entry.state.cut(Cut::Shutdown);
        }
    }

    /// Looks at every connection every [`TICK`], cutting the ones over a limit; runs until
    /// dropped.
    pub(super) async fn watch(self: Arc<Guard>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep();
        }
    }

    fn sweep(&self) {
        let now = self.clock.now();
        let limits = &self.limits;
        let header_ms = limits.header_timeout.as_millis() as u64;
        let idle_ms = limits.idle_timeout.as_millis() as u64;
        let window_ms = (limits.rate_window.as_millis() as u64).max(1);
        let min_bytes = (limits.min_rate as u128 * window_ms as u128 / 1000) as u64;
        let mut reg = self.lock();
        for entry in reg.conns.values_mut() {
            let s = &entry.state;
            let head = s.head_started.load(Ordering::Relaxed);
            if head != 0 && now.saturating_sub(head - 1) > header_ms {
                s.cut(Cut::SlowHead);
                continue;
            }
            // The server waits on the client: it must take `min_rate` over each window.
            let waited =
                s.waited.swap(false, Ordering::Relaxed) || s.write_waiting.load(Ordering::Relaxed);
            let written = s.written.load(Ordering::Relaxed);
            entry.rate_mark = match (waited, entry.rate_mark) {
                (false, _) => None,
                (true, None) => Some((now, written)),
                (true, Some((since, at))) if now - since >= window_ms => {
                    if written - at < min_bytes {
                        s.cut(Cut::SlowReader);
                    }
                    Some((now, written))
                }
                (true, mark) => mark,
            };
            if s.idle() && now.saturating_sub(s.last_active.load(Ordering::Relaxed)) > idle_ms {
                s.cut(Cut::Idle);
            }
        }
    }

    /// Connections open now (for tests and the log).
    #[allow(dead_code)]
    pub(super) fn open_connections(&self) -> usize {
        self.lock().conns.len()
    }
}

/// A client's share taken for a connection not placed yet: dropping it gives the share back.
struct Share<'a> {
    guard: &'a Guard,
    client: ClientKey,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        release(&mut self.guard.lock(), self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn clients_are_addresses_and_ipv6_slash_64s() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a.into()), ClientKey::of(b.into()));
        assert_ne!(ClientKey::of(a.into()), ClientKey::of(c.into()));
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(
            ClientKey::of(v4.to_ipv6_mapped().into()),
            ClientKey::of(v4.into())
        );
        assert_ne!(
            ClientKey::of(Ipv4Addr::new(192, 0, 2, 2).into()),
            ClientKey::of(v4.into())
        );
    }

    fn guard(limits: Limits) -> Arc<Guard> {
        Guard::new(limits)
    }

    #[tokio::test]
    async fn a_client_gets_its_share_and_no_more() {
        let g = guard(Limits {
            max_connections: 10,
            max_connections_per_client: 2,
            ..Limits::default()
        });
        let me = ClientKey::of(Ipv4Addr::LOCALHOST.into());
        let a = g.admit(me).await.unwrap();
        let _b = g.admit(me).await.unwrap();
        assert_eq!(g.admit(me).await.err(), Some(Refused::ClientBudget));
        let _other = g
            .admit(ClientKey::of(Ipv4Addr::new(127, 0, 0, 2).into()))
            .await
            .unwrap();
        drop(a);
        assert!(
            g.admit(me).await.is_ok(),
            "a closed connection gives its place back"
        );
        // A Unix socket's peers (a proxy) share no budget: only the global limit holds them.
        let mut local = Vec::new();
        for _ in 0..7 {
            local.push(g.admit(ClientKey::Local).await.unwrap());
        }
    }

    #[tokio::test]
    async fn room_is_made_from_idle_connections_first() {
        let g = guard(Limits {
            max_connections: 3,
            ..Limits::default()
        });
        let ip = |n| ClientKey::of(IpAddr::from(Ipv4Addr::new(127, 0, 0, n)));
        let busy = g.admit(ip(1)).await.unwrap();
        let _request = busy.state.request();
        let heading = g.admit(ip(2)).await.unwrap();
        heading.state.on_read(10); // a head arriving, just now
        let idle = g.admit(ip(3)).await.unwrap();
        // Full: the idle one is closed for the newcomer; the others are not.
        let cut_idle = tokio::spawn({
            let s = idle.state.clone();
            async move { s.cut_off().await }
        });
        let newcomer = tokio::spawn({
            let g = g.clone();
            async move { g.admit(ip(4)).await.map(|_| ()) }
        });
        assert_eq!(cut_idle.await.unwrap(), Cut::MadeRoom);
        drop(idle);
        assert_eq!(newcomer.await.unwrap(), Ok(()));
        assert_eq!(busy.state.cut.load(Ordering::Relaxed), Cut::None as u8);
        assert_eq!(heading.state.cut.load(Ordering::Relaxed), Cut::None as u8);
    }

    #[tokio::test]
    async fn full_of_busy_connections_refuses_within_a_second() {
        let g = guard(Limits {
            max_connections: 1,
            ..Limits::default()
        });
        let busy = g
            .admit(ClientKey::of(Ipv4Addr::LOCALHOST.into()))
            .await
            .unwrap();
        let _request = busy.state.request();
        let t0 = Instant::now();
        let r = g
            .admit(ClientKey::of(Ipv4Addr::new(127, 0, 0, 2).into()))
            .await;
        assert_eq!(r.err(), Some(Refused::Full));
        assert!(t0.elapsed() < ADMIT_WAIT + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn the_watchdog_cuts_slow_heads_slow_readers_and_idle_connections() {
        let g = guard(Limits {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            rate_window: Duration::from_millis(500),
            min_rate: 1000,
            ..Limits::default()
        });
        let ip = |n| ClientKey::of(IpAddr::from(Ipv4Addr::new(127, 0, 0, n)));
        let slow_head = g.admit(ip(1)).await.unwrap();
        slow_head.state.on_read(1);
        let reader = g.admit(ip(2)).await.unwrap();
        let _request = reader.state.request();
        reader.state.on_write_blocked();
        let fast = g.admit(ip(3)).await.unwrap();
        let _fast_request = fast.state.request();
        let idle = g.admit(ip(4)).await.unwrap();
        let cut = |a: &Admitted| Cut::from_u8(a.state.cut.load(Ordering::Relaxed));
        for _ in 0..12 {
            // The fast reader takes plenty while the socket keeps filling; the slow one nothing.
            fast.state.on_write_blocked();
            fast.state.on_written(10_000);
            fast.state.on_write_blocked();
            g.sweep();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(cut(&slow_head), Cut::SlowHead);
        assert_eq!(cut(&reader), Cut::SlowReader);
        assert_eq!(cut(&idle), Cut::Idle);
        assert_eq!(cut(&fast), Cut::None);
    }
}
