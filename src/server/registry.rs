//! What a running server shares between its accept loop, its connections
//! and its handle: the settings and handler, admission (the connection
//! caps, overall and per client address), the table of open connections
//! that shutdown walks, and whether it is still accepting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::conn::{ConnConfig, Ended, ServerState};
use crate::handler::Handler;
use crate::sys;
use crate::transport::Transport;

use super::config::Config;

/// What an idle connection keeps besides its socket while it waits in the
/// parking lot: its TLS session, when it speaks TLS, or its WebSocket
/// state (`ws::WsEvents`). Plain HTTP keeps nothing.
#[derive(Default)]
pub(crate) struct Session {
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::Session>,
    /// A WebSocket of callbacks, parked between messages.
    #[cfg(feature = "websocket")]
    pub ws: Option<Box<crate::ws::EventsConn>>,
}

impl Session {
    /// A parked WebSocket's session.
    #[cfg(feature = "websocket")]
    pub(crate) fn websocket(ws: Box<crate::ws::EventsConn>) -> Session {
        Session {
            #[cfg(feature = "tls")]
            tls: None,
            ws: Some(ws),
        }
    }

    /// Closes a parked connection's session: TLS says `close_notify`, a
    /// WebSocket close 1001.
    pub(crate) fn close(self, stream: &std::net::TcpStream) {
        #[cfg(feature = "websocket")]
        if let Some(ws) = self.ws {
            ws.close_parked(stream);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls {
            tls.close_notify(stream);
        }
        #[cfg(not(feature = "tls"))]
        let _ = stream;
    }
}

/// A running server's shared state.
pub(crate) struct Serving {
    pub addr: SocketAddr,
    pub config: Config,
    pub conn: ConnConfig,
    pub handler: Box<dyn Handler>,
    /// Each connection's stack, from the runtime's settings.
    pub stack_bytes: usize,
    /// Set once shutdown begins.
    pub stopping: AtomicBool,
    /// Idle connections holding no buffers and not parked.
    pub released: AtomicUsize,
    /// Connections being refused right now (see `accept::reject`).
    pub rejecting: AtomicUsize,
    /// Set once shutdown has ended the reads of every connection, answered
    /// or not.
    swept_all: AtomicBool,
    active: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections' descriptors, so shutdown can end their reads.
    conns: Mutex<HashMap<u64, Registered>>,
    /// Open connections per client address, when that is capped.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    accepting: bool,
    finished: bool,
}

/// An open connection, as the server keeps track of it.
struct Registered {
    fd: RawFd,
    ip: IpAddr,
    /// Set once the connection has sent a response (see [`Tracked`]).
    answered: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Serving {
    pub(crate) fn new(
        addr: SocketAddr,
        config: Config,
        conn: ConnConfig,
        handler: Box<dyn Handler>,
        stack_bytes: usize,
    ) -> Serving {
        Serving {
            addr,
            config,
            conn,
            handler,
            stack_bytes,
            stopping: AtomicBool::new(false),
            released: AtomicUsize::new(0),
            rejecting: AtomicUsize::new(0),
            swept_all: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                accepting: true,
                finished: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// What a connection sees of its server while it is served.
    pub(crate) fn state<'a>(&'a self, tracked: &'a Tracked) -> ServerState<'a> {
        ServerState {
            stopping: &self.stopping,
            released: &self.released,
            answered: &tracked.answered,
        }
    }

    /// Serves one accepted connection: over TLS when the server has a TLS
    /// configuration, else plain HTTP. What both engines' connections run.
    /// A connection that ends idle (to park) leaves in `session` what it
    /// needs to go on, and gets it back there when it is served again.
    pub(crate) fn serve<T: Transport + std::os::fd::AsRawFd + ?Sized>(
        &self,
        io: &mut T,
        peer: SocketAddr,
        tracked: &Tracked,
        session: &mut Session,
    ) -> Ended {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.config.tls {
            let fd = io.as_raw_fd();
            return crate::tls::serve(
                io,
                Some(fd),
                Some(peer),
                tls,
                &mut session.tls,
                &*self.handler,
                &self.conn,
                self.state(tracked),
            );
        }
        let _ = session;
        crate::conn::serve(
            io,
            Some(peer),
            None,
            &*self.handler,
            &self.conn,
            self.state(tracked),
        )
    }

    /// Sends `refusal` (a whole response) to a connection over a limit and
    /// closes it, over TLS when the server speaks TLS; a second for each
    /// step (the handshake, the write, the client's close).
    pub(crate) fn refuse<T: Transport + ?Sized>(&self, io: &mut T, refusal: &[u8]) {
        let second = Duration::from_secs(1);
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.config.tls {
            crate::tls::refuse(io, tls, refusal, second);
            return;
        }
        if io.set_write_timeout(Some(second)).is_ok() && io.write_all(refusal).is_ok() {
            crate::transport::close_gracefully(io, second, 64 * 1024);
        }
    }

    /// Whether connections speak TLS.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Takes a connection slot for a client at `ip`, unless the server or
    /// that client is at its limit.
    pub(crate) fn admit(&self, ip: IpAddr) -> bool {
        if self.active() >= self.config.max_connections {
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

    /// Registers an admitted connection's socket; the slot is held until
    /// the returned [`Tracked`] drops.
    pub(crate) fn track(self: &Arc<Self>, fd: RawFd, ip: IpAddr) -> Tracked {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answered = Arc::new(AtomicBool::new(false));
        lock(&self.conns).insert(
            id,
            Registered {
                fd,
                ip,
                answered: answered.clone(),
            },
        );
        // A connection accepted after shutdown's last sweep must still see
        // its reads ended.
        if self.swept_all.load(Ordering::Acquire) {
            sys::shutdown_read(fd);
        }
        Tracked {
            serving: self.clone(),
            id,
            answered,
        }
    }

    /// Gives back the slot of connection `id`; returns its descriptor if it
    /// was still registered.
    pub(crate) fn release(&self, id: u64) -> Option<RawFd> {
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

    /// The accept loop has ended.
    pub(crate) fn stopped_accepting(&self) {
        lock(&self.state).accepting = false;
        self.changed.notify_all();
    }

    fn notify(&self) {
        // Taking the lock orders this notification after any waiter's check.
        drop(lock(&self.state));
        self.changed.notify_all();
    }

    /// Stops the server (once; later calls wait for the first): ends the
    /// read side of every open connection, so idle ones close and busy ones
    /// finish their response with `Connection: close`, then waits until the
    /// accept loop and every connection have ended, or the grace period is
    /// over. `wake` wakes the accept loop.
    pub(crate) fn shut_down(&self, wake: impl Fn()) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            wake();
            // Idle connections (between requests) are closed now. One that
            // has not had its first answer yet was opened for a request that
            // is most likely on its way: under `--processes` it may have
            // been taken by this process just as another took over the
            // port. It gets FIRST_REQUEST_GRACE to send it.
            self.sweep(true);
            let first_grace = Instant::now() + FIRST_REQUEST_GRACE;
            let deadline = Instant::now() + self.config.shutdown_grace;
            let mut state = lock(&self.state);
            while state.accepting || self.active() > 0 {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    log::warn!(
                        "shutdown grace period over with {} connections open",
                        self.active()
                    );
                    break;
                };
                if !self.swept_all.load(Ordering::Acquire) && Instant::now() >= first_grace {
                    drop(state);
                    self.swept_all.store(true, Ordering::Release);
                    self.sweep(false);
                    state = lock(&self.state);
                    // The last connection may have closed during the sweep,
                    // its notification sent while the lock was not held:
                    // look again before waiting.
                    continue;
                }
                let accepting = state.accepting;
                let mut wait = left;
                if !self.swept_all.load(Ordering::Acquire) {
                    wait = wait.min(first_grace.saturating_duration_since(Instant::now()));
                }
                if accepting {
                    wait = wait.min(WAKE_AGAIN);
                }
                state = self
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                // A listener that shares its port (SO_REUSEPORT, as under
                // `coserve --processes`) may see the wake connection go to
                // another socket of the group: wake it again until it stops.
                if accepting && state.accepting {
                    drop(state);
                    wake();
                    state = lock(&self.state);
                }
            }
            state.finished = true;
            drop(state);
            self.changed.notify_all();
        }
        self.join();
    }

    /// Ends the reads of the open connections (only those that have
    /// answered a request, if `answered_only`), so that one waiting for a
    /// request sees the end of its input and closes.
    fn sweep(&self, answered_only: bool) {
        for conn in lock(&self.conns).values() {
            if !answered_only || conn.answered.load(Ordering::Acquire) {
                sys::shutdown_read(conn.fd);
            }
        }
    }

    /// Blocks until the server has shut down.
    pub(crate) fn join(&self) {
        let mut state = lock(&self.state);
        while !state.finished {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// How long shutdown waits for the accept loop to see its wake
/// connection before it sends another.
const WAKE_AGAIN: Duration = Duration::from_millis(50);

/// How long shutdown lets a connection that has not been answered yet send
/// its first request before ending its reads.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Holds a connection's slot and registration while it is open.
pub(crate) struct Tracked {
    pub serving: Arc<Serving>,
    pub id: u64,
    /// Set by the connection loop once it has sent a response: until then
    /// shutdown gives it [`FIRST_REQUEST_GRACE`].
    answered: Arc<AtomicBool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Deregistered before the stream closes, so the descriptor number is
        // never shut down after the kernel has reused it.
        self.serving.release(self.id);
    }
}
