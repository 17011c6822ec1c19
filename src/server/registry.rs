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

use crate::conn::{ConnConfig, ServerState};
use crate::handler::Handler;
use crate::sys;

use super::config::Config;

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
    pub(crate) fn state(&self) -> ServerState<'_> {
        ServerState {
            stopping: &self.stopping,
            released: &self.released,
        }
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
        lock(&self.conns).insert(id, Registered { fd, ip });
        // A connection accepted while shutdown swept the table must still see
        // its reads ended.
        if self.is_stopping() {
            sys::shutdown_read(fd);
        }
        Tracked {
            serving: self.clone(),
            id,
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
            for conn in lock(&self.conns).values() {
                sys::shutdown_read(conn.fd);
            }
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
                let accepting = state.accepting;
                let wait = if accepting {
                    left.min(WAKE_AGAIN)
                } else {
                    left
                };
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

/// Holds a connection's slot and registration while it is open.
pub(crate) struct Tracked {
    pub serving: Arc<Serving>,
    pub id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Deregistered before the stream closes, so the descriptor number is
        // never shut down after the kernel has reused it.
        self.serving.release(self.id);
    }
}
