//! Binding, the accept loop, connection limits and graceful shutdown.

pub(crate) mod park;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use socket2::{Domain, Socket, Type};

use crate::conn::{ConnConfig, Ended, Transport, close_gracefully, serve_connection};
use crate::engine::coroutine::{self, Coroutines};
use crate::engine::thread::Threads;
use crate::engine::{Engine, EngineKind};
use crate::files::{FilesOptions, StaticFiles};
use crate::handler::Handler;
use crate::parse::Limits;
use crate::parse::Method;
use crate::response::{ConnectionField, Response, write_head};
use crate::router::Router;
use crate::server::park::{Lot, Parked, Wake};

/// The default coroutine stack: release builds use under 8 KiB serving
/// files with the access log on, so 64 KiB leaves room for handlers. Debug
/// builds have much larger frames and need several times more. Only the
/// pages a coroutine touches count towards resident memory.
pub const DEFAULT_STACK_SIZE: usize = if cfg!(debug_assertions) {
    512 * 1024
} else {
    64 * 1024
};

/// The smallest coroutine stack a server accepts: about twice the most the
/// server's own code uses (7.6 KiB in release builds and 25 KiB in debug
/// builds, serving files, listings, ranges, errors and precompressed files
/// with the access log on; may's stack-usage report). So only a handler's
/// own frames can overflow. An overflow in the server's code could happen
/// with a lock held (the file cache's, the log's), and a coroutine that
/// overflows is abandoned with its locks held: the next coroutine to want
/// one would block its worker thread for good.
pub const MIN_STACK_SIZE: usize = if cfg!(debug_assertions) {
    64 * 1024
} else {
    16 * 1024
};

/// The longest timeout or grace period a server takes: 100 years. Longer
/// ones are taken as this.
pub const LONGEST_TIME: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The largest coroutine stack a server accepts. may maps the stacks of
/// the 1,000 coroutines it keeps in its pool when it starts, and a stack
/// too large to map at all stopped it there.
pub const MAX_STACK_SIZE: usize = 64 * 1024 * 1024;

/// Server settings. [`Config::default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory served by [`Server::bind`].
    pub root: PathBuf,
    /// Options for the static-file handler.
    pub files: FilesOptions,
    /// Worker threads for may's scheduler; 0 means one per core. Only the
    /// first server in a process can set it: may's runtime starts once.
    pub workers: usize,
    /// Pin may's worker threads to one core each (may's own default). Off
    /// by default: measured slower whenever other processes share the cores.
    pub pin_workers: bool,
    /// Stack size of each connection's coroutine, in bytes; from
    /// [`MIN_STACK_SIZE`] to [`MAX_STACK_SIZE`]. Connections of the first
    /// server in a process reuse coroutines from may's pool; a later server
    /// with a different size maps a stack for each connection.
    pub stack_size: usize,
    /// How long an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// A connection idle this long frees its buffers and the stack pages its
    /// last request touched, so that idle connections cost little memory.
    pub release_idle_after: Duration,
    /// How long a client has to send a complete request head, counted from
    /// its first byte.
    pub header_timeout: Duration,
    /// How long one write may wait for the client to read.
    pub write_timeout: Duration,
    /// Connections served at once; more get a 503 and are closed.
    pub max_connections: usize,
    /// Connections served at once from one client address; more get a 503.
    /// `None` (the default) sets no per-address cap.
    pub max_connections_per_ip: Option<usize>,
    /// How long shutdown waits for responses in flight.
    pub shutdown_grace: Duration,
    /// Request size limits.
    pub limits: Limits,
    /// How connections are served: a coroutine or an OS thread each.
    pub engine: EngineKind,
    /// Each connection's socket send buffer (`SO_SNDBUF`), or `None` (the
    /// default) to leave it to the kernel's autotuning. A small fixed buffer
    /// keeps less of a large file in flight, which on loopback doubled the
    /// throughput of 10 MiB downloads; over a long, fast path it caps each
    /// connection at about buffer / round-trip time.
    pub send_buffer: Option<usize>,
    /// The listen backlog: connections the kernel queues before accept.
    /// Linux caps it at `net.core.somaxconn`.
    pub backlog: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("."),
            files: FilesOptions::default(),
            workers: 0,
            pin_workers: false,
            stack_size: DEFAULT_STACK_SIZE,
            idle_timeout: Duration::from_secs(15),
            release_idle_after: Duration::from_millis(500),
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: None,
            shutdown_grace: Duration::from_secs(10),
            limits: Limits::default(),
            engine: EngineKind::Coroutine,
            backlog: 4096,
            send_buffer: None,
        }
    }
}

impl Config {
    /// The defaults, serving `root`.
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            root: root.into(),
            ..Config::default()
        }
    }

    fn conn_config(&self) -> ConnConfig {
        ConnConfig {
            limits: self.limits,
            idle_timeout: self.idle_timeout,
            header_timeout: self.header_timeout,
            write_timeout: self.write_timeout,
            release_after: self.release_idle_after,
            park: false,
            released: Arc::default(),
        }
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: std::net::TcpListener,
    config: Config,
    router: Router,
    /// The static files of [`Server::bind`], for their cache counters.
    files: Option<StaticFiles>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` and serves the files under `config.root`.
    ///
    /// Fails if the root is not a directory or the address is in use.
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let files = StaticFiles::new(&config.root, config.files.clone())?;
        let mut server = Server::bind_with(addr, config, files.clone())?;
        server.files = Some(files);
        Ok(server)
    }

    /// Binds `addr` with no handler behind the routes: add them with
    /// [`Server::get`] and friends; anything else is a 404.
    pub fn bind_routes(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        Server::bind_with(addr, config, |_: &crate::Request| Response::error(404))
    }

    /// Binds `addr` and answers every request with `handler`.
    pub fn bind_with(
        addr: impl ToSocketAddrs,
        mut config: Config,
        handler: impl Handler,
    ) -> io::Result<Server> {
        // Any longer time means "never" in practice, and would overflow the
        // clock arithmetic (`Instant + Duration` panics past the clock's
        // range): `--shutdown-grace 18446744073709551615` made shutdown hang.
        for d in [
            &mut config.idle_timeout,
            &mut config.release_idle_after,
            &mut config.header_timeout,
            &mut config.write_timeout,
            &mut config.shutdown_grace,
        ] {
            *d = (*d).min(LONGEST_TIME);
        }
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&config.stack_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a stack size of {} bytes is outside {MIN_STACK_SIZE}..={MAX_STACK_SIZE}",
                    config.stack_size
                ),
            ));
        }
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        // Workers take effect only before may's runtime starts (the first
        // server in a process). The first server's stack size also becomes
        // may's default, the size of the coroutines may keeps in its pool
        // and hands out for a spawn of that size. Only the first: may's pool
        // does not look at sizes, so a later server that changed the default
        // would be given the pool's smaller (or larger) stacks. A server with
        // another size gets a stack of its own for each connection.
        static POOLED_STACK: std::sync::Once = std::sync::Once::new();
        POOLED_STACK.call_once(|| {
            may::config().set_stack_size(coroutine::stack_words(config.stack_size));
        });
        may::config().set_workers(workers);
        // may pins worker i to core i by default. When anything else runs on
        // those cores (a load generator, other services) a pinned worker cannot
        // move away from it; see the README's performance section.
        may::config().set_worker_pin(config.pin_workers);
        let listener = bind_listener(addr, config.backlog, config.send_buffer)?;
        crate::parse::warm_up();
        let mut router = Router::new();
        router.fallback(handler);
        Ok(Server {
            listener,
            config,
            router,
            files: None,
        })
    }

    /// Answers every method on exactly `path` with `handler`, ahead of the
    /// handler the server was bound with. See [`Router`] for the matching
    /// rules.
    pub fn route(&mut self, path: &str, handler: impl Handler) -> &mut Server {
        self.router.route(path, handler);
        self
    }

    /// Answers `GET` (and `HEAD`) on exactly `path`.
    pub fn get(&mut self, path: &str, handler: impl Handler) -> &mut Server {
        self.router.get(path, handler);
        self
    }

    /// Answers `POST` on exactly `path`.
    pub fn post(&mut self, path: &str, handler: impl Handler) -> &mut Server {
        self.router.post(path, handler);
        self
    }

    /// Answers `method` on exactly `path`.
    pub fn route_method(
        &mut self,
        method: Method,
        path: &str,
        handler: impl Handler,
    ) -> &mut Server {
        self.router.route_method(method, path, handler);
        self
    }

    /// Answers every method on `prefix` and the paths below it.
    pub fn prefix(&mut self, prefix: &str, handler: impl Handler) -> &mut Server {
        self.router.prefix(prefix, handler);
        self
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until shut down from a [`ServerHandle`] or a signal handler.
    pub fn run(self) -> io::Result<()> {
        self.spawn()?.wait();
        Ok(())
    }

    /// Starts accepting on a coroutine and returns a handle to stop it.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let addr = self.local_addr();
        let engine = self.config.engine;
        // Made now, not at the first park: a server out of descriptors by
        // then could not make it.
        let lot = match engine {
            EngineKind::Coroutine => match Lot::new() {
                Ok(lot) => Some(Arc::new(lot)),
                Err(e) => {
                    log::warn!("idle connections will keep their coroutines: {e}");
                    None
                }
            },
            EngineKind::Thread => None,
        };
        let mut conn_config = self.config.conn_config();
        conn_config.park = lot.is_some();
        let shared = Arc::new(Shared {
            addr,
            config: self.config.clone(),
            conn_config,
            handler: Arc::new(self.router),
            stopping: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            rejecting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                accepting: true,
                finished: false,
            }),
            changed: Condvar::new(),
            files: self.files,
            parking: lot,
        });
        if let Some(lot) = &shared.parking {
            let (lot, weak) = (lot.clone(), Arc::downgrade(&shared));
            std::thread::Builder::new()
                .name("coserve-parking".into())
                .spawn(move || parking_thread::<Coroutines>(lot, weak))?;
        }
        match engine {
            EngineKind::Coroutine => {
                crate::engine::deadline::start()?;
                start::<Coroutines>(self.listener, shared.clone())?
            }
            EngineKind::Thread => start::<Threads>(self.listener, shared.clone())?,
        }
        Ok(ServerHandle { shared })
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit,
/// and returns the soft limit now in force (`u64::MAX`, `RLIM_INFINITY`,
/// for unlimited).
///
/// Every connection takes a descriptor, and many systems start programs
/// with a soft limit of 1,024 while the hard one is far higher; Go programs
/// raise it at start for the same reason. The `coserve` binary calls this
/// before it binds; a program that embeds a server decides for itself.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a valid, exclusively borrowed struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    // RLIM_INFINITY is u64::MAX already on Linux.
    Ok(lim.rlim_cur)
}

/// Binds with SO_REUSEADDR but not SO_REUSEPORT, so that a port in use is an
/// error rather than a silent share (may's own `bind` sets SO_REUSEPORT).
fn bind_listener(
    addr: impl ToSocketAddrs,
    backlog: i32,
    send_buffer: Option<usize>,
) -> io::Result<std::net::TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addr.to_socket_addrs()? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        // Accepted connections inherit it from the listener.
        if let Some(bytes) = send_buffer {
            socket.set_send_buffer_size(bytes)?;
        }
        match socket
            .bind(&addr.into())
            .and_then(|()| socket.listen(backlog))
        {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

struct State {
    accepting: bool,
    finished: bool,
}

struct Shared {
    addr: SocketAddr,
    config: Config,
    conn_config: ConnConfig,
    handler: Arc<dyn Handler>,
    stopping: AtomicBool,
    active: AtomicUsize,
    rejecting: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections' descriptors, so shutdown can end their reads.
    conns: Mutex<HashMap<u64, Registered>>,
    /// Open connections per client address, when that is capped.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    state: Mutex<State>,
    changed: Condvar,
    files: Option<StaticFiles>,
    /// Idle connections without a flow of control; made when the server
    /// starts. `None` for the thread engine, or if it could not be made;
    /// idle connections then keep their flow of control.
    parking: Option<Arc<Lot<Tracked>>>,
}

impl Shared {
    fn notify(&self) {
        // Taking the lock orders this notification after any waiter's check.
        drop(self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }
}

/// An open connection, as the server keeps track of it.
struct Registered {
    fd: RawFd,
    ip: IpAddr,
}

impl Shared {
    /// Takes a connection slot for a client at `ip`, unless the server or
    /// that client is at its limit.
    fn admit(&self, ip: IpAddr) -> bool {
        if self.active.load(Ordering::Acquire) >= self.config.max_connections {
            return false;
        }
        if let Some(cap) = self.config.max_connections_per_ip {
            let mut per_ip = lock(&self.per_ip);
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= cap {
                return false;
            }
            *count += 1;
        }
        self.active.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Gives back the slot of connection `id`; returns its descriptor if it
    /// was still registered.
    fn release(&self, id: u64) -> Option<RawFd> {
        let conn = lock(&self.conns).remove(&id)?;
        if self.config.max_connections_per_ip.is_some() {
            let mut per_ip = lock(&self.per_ip);
            if let Some(count) = per_ip.get_mut(&conn.ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&conn.ip);
                }
            }
        }
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notify();
        }
        Some(conn.fd)
    }
}

/// Holds a connection's slot and registration while it is open.
struct Tracked {
    shared: Arc<Shared>,
    id: u64,
}

impl Tracked {
    fn new(shared: &Arc<Shared>, fd: RawFd, ip: IpAddr) -> Tracked {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&shared.conns).insert(id, Registered { fd, ip });
        // A connection accepted while shutdown swept the table must still see
        // its reads ended.
        if shared.stopping.load(Ordering::Acquire) {
            shutdown_read(fd);
        }
        Tracked {
            shared: shared.clone(),
            id,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Deregistered before the stream closes, so the descriptor number is
        // never shut down after the kernel has reused it.
        self.shared.release(self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shutdown_read(fd: RawFd) {
    // SAFETY: `fd` is registered only while its stream is open (see
    // `Tracked`), and shutdown(2) neither closes nor frees it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RD);
    }
}

fn start<E: Engine>(listener: std::net::TcpListener, shared: Arc<Shared>) -> io::Result<()> {
    let listener = E::listener(listener)?;
    E::spawn(256 * 1024, move || accept_loop::<E>(listener, shared))
}

/// Pauses while something keeps failing (accepting, starting connections):
/// from 5 ms, doubling up to 0.5 s, so that a failure that would repeat at
/// once does not spin; and a count, so that a burst is reported once, and
/// its end once.
struct Backoff {
    wait: Duration,
    failures: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const LONGEST: Duration = Duration::from_millis(500);

    fn new() -> Backoff {
        Backoff {
            wait: Backoff::FIRST,
            failures: 0,
        }
    }

    /// Counts a failure; true for the first of a burst.
    fn failed(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// Waits before the next try, longer each time until a success.
    fn pause<E: Engine>(&mut self) {
        E::sleep(self.wait);
        self.wait = (self.wait * 2).min(Backoff::LONGEST);
    }

    /// A success: the length of the burst it ends, if it ends one.
    fn succeeded(&mut self) -> Option<u64> {
        self.wait = Backoff::FIRST;
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then_some(failures)
    }
}

fn accept_loop<E: Engine>(listener: E::Listener, shared: Arc<Shared>) {
    let mut accepting = Backoff::new();
    let mut starting = Backoff::new();
    loop {
        let (stream, peer) = match E::accept(&listener) {
            Ok(pair) => pair,
            Err(e) => {
                if shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO)
                ) {
                    // The client gave up before we took it: nothing to wait for.
                    continue;
                }
                // Out of descriptors or memory: accept would fail again at
                // once.
                if accepting.failed() {
                    log::warn!("accept: {e}; backing off until it succeeds");
                }
                accepting.pause::<E>();
                continue;
            }
        };
        if let Some(failures) = accepting.succeeded() {
            log::warn!("accept: recovered after {failures} failed attempts");
        }
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        if !shared.admit(peer.ip()) {
            reject::<E>(stream, &shared);
            continue;
        }
        let tracked = Tracked::new(&shared, stream.as_raw_fd(), peer.ip());
        let spawned = E::spawn(shared.config.stack_size, move || {
            run_connection::<E>(stream, peer, tracked);
        });
        match spawned {
            Ok(()) => {
                if let Some(failures) = starting.succeeded() {
                    log::warn!("connections start again, after {failures} could not");
                }
            }
            // Out of memory or memory maps (or threads): the connection was
            // closed with what it owned, and the next would most likely fail
            // too.
            Err(e) => {
                if starting.failed() {
                    log::error!(
                        "cannot start a connection: {e}; closing new ones until one starts"
                    );
                }
                starting.pause::<E>();
            }
        }
    }
    drop(listener);
    let mut state = lock(&shared.state);
    state.accepting = false;
    drop(state);
    shared.changed.notify_all();
}

/// Serves a connection on the current flow of control until it closes, or
/// until it is idle long enough to park.
fn run_connection<E: Engine>(mut io: E::Stream, peer: SocketAddr, tracked: Tracked) {
    let shared = tracked.shared.clone();
    // If may abandons this coroutine (a handler overflowed its stack), `io`
    // and `tracked` are never dropped: close the socket and free the slot
    // from outside. Only a connection still registered is closed, and a
    // registered descriptor is still open (see `Tracked`).
    let weak = Arc::downgrade(&shared);
    let id = tracked.id;
    E::on_abandon(
        &io,
        Box::new(move || {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if let Some(fd) = shared.release(id) {
                log::error!("a connection's coroutine was abandoned (stack overflow?); closing it");
                // SAFETY: `fd` was registered, so its stream was never
                // dropped and never will be: nothing else closes it.
                unsafe { libc::close(fd) };
            }
        }),
    );
    let ended = serve_connection(
        &mut io,
        Some(peer),
        &*shared.handler,
        &shared.conn_config,
        &shared.stopping,
    );
    // No handler runs past this point: from here on the connection is
    // closed or parked (and outlives this coroutine) by the code below.
    E::disarm();
    // Only a server with a parking lot lets connections end idle
    // (`ConnConfig::park`).
    if ended == Ended::Idle
        && !shared.stopping.load(Ordering::Acquire)
        && let Some(lot) = &shared.parking
    {
        let idle = shared
            .config
            .idle_timeout
            .saturating_sub(shared.config.release_idle_after);
        let parked = Parked {
            token: tracked,
            stream: E::into_std(io),
            peer,
        };
        // One that cannot park is closed: it is idle, so nothing is lost.
        if let Err(parked) = lot.park(parked, idle) {
            drop(parked);
        }
        return;
    }
    drop(tracked);
    drop(io);
}

/// The parking lot's thread: hands readable connections to new flows of
/// control, closes expired ones, and closes all of them once the server is
/// stopping. Ends when the server is gone.
fn parking_thread<E: Engine>(lot: Arc<Lot<Tracked>>, shared: Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stopping.load(Ordering::Acquire) {
            drop(lot.drain());
        }
        for wake in lot.wait() {
            let parked = match wake {
                Wake::Ready(parked) if !shared.stopping.load(Ordering::Acquire) => parked,
                // Expired, or the server is stopping: an idle connection
                // is simply closed.
                Wake::Ready(parked) | Wake::Expired(parked) => {
                    drop(parked);
                    continue;
                }
            };
            let spawned = E::spawn(shared.config.stack_size, move || {
                let Parked {
                    token,
                    stream,
                    peer,
                } = parked;
                match E::from_std(stream) {
                    Ok(io) => run_connection::<E>(io, peer, token),
                    Err(e) => log::warn!("cannot resume a parked connection: {e}"),
                }
            });
            if let Err(e) = spawned {
                log::error!("cannot resume a parked connection: {e}");
            }
        }
    }
}

/// The 503 sent to connections over a limit.
fn refusal() -> BytesMut {
    let mut head = BytesMut::new();
    let resp = Response::error(503).header("Retry-After", "1");
    write_head(&mut head, &resp, ConnectionField::Close, false);
    head.extend_from_slice(b"503 Service Unavailable\n");
    head
}

/// Answers a connection over a limit with 503 and closes it. Normally that
/// happens on a small flow of control of its own, which drains what the
/// client sent so that the close is a FIN, not a reset that could destroy
/// the 503; the accept loop never waits on a client. Past a bound on those
/// (a flood), the 503 is written at once and the socket closed: a fresh
/// socket's buffer always takes it without waiting.
fn reject<E: Engine>(mut io: E::Stream, shared: &Arc<Shared>) {
    const MAX_REJECTING: usize = 2048;
    if shared.rejecting.fetch_add(1, Ordering::AcqRel) >= MAX_REJECTING {
        shared.rejecting.fetch_sub(1, Ordering::AcqRel);
        let _ = io.set_write_timeout(Some(Duration::from_millis(10)));
        let _ = io.write_all(&refusal());
        let _ = io.shutdown_write();
        return;
    }
    let rejecting = shared.clone();
    let spawned = E::spawn(32 * 1024, move || {
        let second = Duration::from_secs(1);
        if io.set_write_timeout(Some(second)).is_ok() && io.write_all(&refusal()).is_ok() {
            close_gracefully(&mut io, second, 64 * 1024);
        }
        drop(io);
        rejecting.rejecting.fetch_sub(1, Ordering::AcqRel);
    });
    if spawned.is_err() {
        shared.rejecting.fetch_sub(1, Ordering::AcqRel);
        log::error!("cannot start a flow of control to refuse a connection");
    }
}

/// Controls a running server. Cheap to clone; every clone controls the same
/// server.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl ServerHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// How many idle connections wait in the parking lot right now, without
    /// a coroutine (see [`Config::release_idle_after`]).
    pub fn parked_connections(&self) -> usize {
        self.shared.parking.as_ref().map_or(0, |lot| lot.len())
    }

    /// How many idle connections hold no buffers right now: the parked ones
    /// and, where connections cannot park (the thread engine), those idle
    /// for longer than [`Config::release_idle_after`].
    pub fn released_connections(&self) -> usize {
        self.parked_connections() + self.shared.conn_config.released.load(Ordering::Acquire)
    }

    /// The file cache's counters: `None` for a server not made by
    /// [`Server::bind`], or with the cache off.
    pub fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.shared.files.as_ref()?.cache_stats()
    }

    /// Connections being served right now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Stops accepting, ends idle connections, lets responses in flight
    /// finish within the grace period, and returns when done. Call it from
    /// a thread, not from a handler: it blocks.
    pub fn shutdown(&self) {
        let shared = &self.shared;
        if !shared.stopping.swap(true, Ordering::AcqRel) {
            // Wake the accept loop with a connection of our own.
            let _ = std::net::TcpStream::connect_timeout(
                &wake_addr(shared.addr),
                Duration::from_secs(1),
            );
            // Idle connections are parked in a read: ending the read side
            // ends them. Busy ones finish their response, which carries
            // `Connection: close`.
            for conn in lock(&shared.conns).values() {
                shutdown_read(conn.fd);
            }
            let deadline = Instant::now() + shared.config.shutdown_grace;
            let mut state = lock(&shared.state);
            while state.accepting || shared.active.load(Ordering::Acquire) > 0 {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    log::warn!(
                        "shutdown grace period over with {} connections open",
                        shared.active.load(Ordering::Acquire)
                    );
                    break;
                };
                state = shared
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            state.finished = true;
            drop(state);
            shared.changed.notify_all();
        }
        self.wait();
    }

    /// Blocks until the server has shut down.
    pub fn wait(&self) {
        let mut state = lock(&self.shared.state);
        while !state.finished {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Where to connect to reach a listener bound to `addr`.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}
