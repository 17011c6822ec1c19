//! Binding, serving and shutting down.
//!
//! - `config.rs`: [`Config`], the settings.
//! - `accept.rs`: the accept loop, with back-off and refusal.
//! - `registry.rs`: what a running server shares: admission, the table of
//!   open connections, the shutdown state.
//! - `park.rs`: the coroutine engine's connections, and the parking lot
//!   where idle ones wait without a coroutine.

mod accept;
mod config;
mod park;
mod registry;

pub use config::Config;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::conn::{self, ServerState};
use crate::engine::EngineKind;
use crate::engine::coroutine::Coroutines;
use crate::engine::thread::Threads;
use crate::handler::Handler;
use crate::runtime::Runtime;
use crate::transport::Transport;

use self::park::Lot;
use self::registry::Serving;

/// A bound server, not yet serving.
///
/// ```no_run
/// use coserve::{Config, Router, Server};
///
/// # fn main() -> std::io::Result<()> {
/// let app = Router::new().get("/", |_| "hello\n");
/// let server = Server::bind("127.0.0.1:8080", Config::new())?;
/// println!("listening on http://{}/", server.local_addr());
/// server.serve(app) // blocks
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    config: Config,
}

impl Server {
    /// Binds `addr` (a port in use is an error, not a share).
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let listener = bind_listener(addr, config.backlog, config.send_buffer, false)?;
        Ok(Server { listener, config })
    }

    /// Binds `addr` with `SO_REUSEPORT`: other sockets of the same user
    /// may bind the same port, and the kernel spreads new connections over
    /// them all. This is how `coserve --processes` shares a port between
    /// worker processes; a plain [`Server::bind`] refuses a port in use.
    pub fn bind_shared(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let listener = bind_listener(addr, config.backlog, config.send_buffer, true)?;
        Ok(Server { listener, config })
    }

    /// Serves a socket that is already bound and listening: one inherited
    /// from a supervising process (as under `coserve --processes`) or from
    /// a service manager's socket activation.
    pub fn from_listener(listener: std::net::TcpListener, config: Config) -> io::Result<Server> {
        // Fails on a socket that is not bound.
        listener.local_addr()?;
        Ok(Server { listener, config })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves every connection with `handler` until the process ends. To
    /// stop a server from the program, [`Server::spawn`] it instead.
    pub fn serve(self, handler: impl Handler) -> io::Result<()> {
        self.spawn(handler)?.join();
        Ok(())
    }

    /// Starts serving every connection with `handler` in the background,
    /// and returns a handle to watch and stop the server.
    ///
    /// On the coroutine engine, this starts may's runtime with the
    /// process's [`Runtime`] settings (the defaults, unless
    /// [`Runtime::start`] was called).
    pub fn spawn(self, handler: impl Handler) -> io::Result<ServerHandle> {
        // Built now, on this thread's stack, not on a connection's coroutine
        // (see `parse::warm_up`).
        crate::parse::warm_up();
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.config.tls {
            tls.warm_up();
        }
        match self.config.engine {
            EngineKind::Coroutine => self.spawn_coroutines(Box::new(handler)),
            EngineKind::Thread => self.spawn_threads(Box::new(handler)),
        }
    }

    /// The state the server's accept loop and connections share.
    fn serving(&self, handler: Box<dyn Handler>, stack_bytes: usize, park: bool) -> Arc<Serving> {
        Arc::new(Serving::new(
            self.local_addr(),
            self.config.clone(),
            self.config.conn_config(park),
            handler,
            stack_bytes,
        ))
    }

    fn spawn_threads(self, handler: Box<dyn Handler>) -> io::Result<ServerHandle> {
        let stack_bytes = Runtime::current().unwrap_or_default().stack_bytes();
        let serving = self.serving(handler, stack_bytes, false);
        accept::start::<Threads, _>(self.listener, serving.clone(), accept::UntilClosed)?;
        Ok(ServerHandle { serving, lot: None })
    }

    fn spawn_coroutines(self, handler: Box<dyn Handler>) -> io::Result<ServerHandle> {
        let runtime = Runtime::get_or_start();
        crate::engine::deadline::start()?;
        #[cfg(feature = "tls")]
        if self.config.tls.is_some() && runtime.stack_bytes() < crate::TlsConfig::MIN_STACK_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TLS needs a coroutine stack of at least {} bytes (a handshake uses about \
                     half of that); the runtime's is {}",
                    crate::TlsConfig::MIN_STACK_SIZE,
                    runtime.stack_bytes()
                ),
            ));
        }
        // Made now, not at the first park: a server out of descriptors by
        // then could not make it.
        let lot = match Lot::new() {
            Ok(lot) => Some(Arc::new(lot)),
            Err(e) => {
                log::warn!("idle connections will keep their coroutines: {e}");
                None
            }
        };
        let serving = self.serving(handler, runtime.stack_bytes(), lot.is_some());
        if let Some(lot) = &lot {
            let (lot, weak) = (lot.clone(), Arc::downgrade(&serving));
            std::thread::Builder::new()
                .name("coserve-parking".into())
                .spawn(move || park::parking_thread::<Coroutines>(lot, weak))?;
        }
        let serve = park::Parkable { lot: lot.clone() };
        accept::start::<Coroutines, _>(self.listener, serving.clone(), serve)?;
        Ok(ServerHandle { serving, lot })
    }
}

/// Serves HTTP/1.1 on one connection the caller has already made, on the
/// calling coroutine or thread, until the connection closes: the
/// connection loop that [`Server`] runs for each socket, for transports it
/// does not make itself (a TLS stream, a Unix socket, a test's in-memory
/// pipe).
///
/// `config` gives the timeouts and limits; its connection caps and engine
/// do not apply to a single connection. `peer` is what
/// [`Request::peer_addr`](crate::Request::peer_addr) reports and the access
/// log writes.
pub fn serve_connection<T: Transport + ?Sized>(
    io: &mut T,
    peer: Option<SocketAddr>,
    config: &Config,
    handler: &dyn Handler,
) {
    static NEVER_STOPPING: AtomicBool = AtomicBool::new(false);
    static RELEASED: AtomicUsize = AtomicUsize::new(0);
    let answered = AtomicBool::new(false);
    // An idle end means closed here: there is no parking lot.
    let _ = conn::serve(
        io,
        peer,
        None,
        handler,
        &config.conn_config(false),
        ServerState {
            stopping: &NEVER_STOPPING,
            released: &RELEASED,
            answered: &answered,
        },
    )
    .upgrade_here(io, &NEVER_STOPPING);
}

/// Binds with SO_REUSEADDR, and SO_REUSEPORT only when `shared`, so that a
/// port in use is an error rather than a silent share (may's own `bind`
/// sets SO_REUSEPORT).
fn bind_listener(
    addr: impl ToSocketAddrs,
    backlog: i32,
    send_buffer: Option<usize>,
    shared: bool,
) -> io::Result<std::net::TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addr.to_socket_addrs()? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if shared {
            socket.set_reuse_port(true)?;
        }
        // `[::]` takes IPv4 too (as v4-mapped addresses), whatever the
        // system's `net.ipv6.bindv6only` says: one socket for both, as
        // Go's net/http binds by default.
        if let SocketAddr::V6(a) = addr
            && a.ip().is_unspecified()
        {
            socket.set_only_v6(false)?;
        }
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

impl std::os::fd::AsFd for Server {
    /// The listening socket, to hand to a process that serves it with
    /// [`Server::from_listener`].
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

/// Watches and stops a running server. Cheap to clone; every clone controls
/// the same server.
#[derive(Clone)]
pub struct ServerHandle {
    serving: Arc<Serving>,
    lot: Option<Arc<Lot<park::Kept>>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.serving.addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.serving.addr
    }

    /// Connections open right now, idle ones included.
    pub fn active_connections(&self) -> usize {
        self.serving.active()
    }

    /// Idle connections waiting in the parking lot right now, without a
    /// coroutine (see [`Config::release_idle_after`]).
    pub fn parked_connections(&self) -> usize {
        self.lot.as_ref().map_or(0, |lot| lot.len())
    }

    /// Idle connections holding no buffers right now: the parked ones and,
    /// where connections cannot park (the thread engine), those idle for
    /// longer than [`Config::release_idle_after`].
    pub fn released_connections(&self) -> usize {
        self.parked_connections() + self.serving.released.load(Ordering::Acquire)
    }

    /// Stops accepting, ends idle connections, lets responses in flight
    /// finish within the grace period, and returns when done. Call it from
    /// a thread, not from a handler: it blocks.
    pub fn shutdown(&self) {
        let addr = self.serving.addr;
        self.serving.shut_down(|| {
            // Wake the accept loop with a connection of our own.
            let _ = std::net::TcpStream::connect_timeout(&wake_addr(addr), Duration::from_secs(1));
        });
    }

    /// Blocks until the server has shut down.
    pub fn join(&self) {
        self.serving.join();
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
