//! The parking lot: idle keep-alive connections wait here without a
//! coroutine.
//!
//! A coroutine costs at least three resident stack pages, whatever it is
//! doing: the generator's sentinel at the bottom and the frames down to
//! the read it waits in. Held by 10,000 idle clients that is over 100 MiB.
//! So a connection that stays idle for [`Config::release_idle_after`]
//! gives up its coroutine: its socket moves to this lot, one thread with
//! its own epoll, at the cost of a map entry. When the client sends its
//! next request (or closes), a fresh coroutine (from may's pool) picks the
//! socket up again; a connection still idle at its idle timeout is closed
//! here. nginx does the same with its buffers.
//!
//! The connection keeps its slot and registration (`Tracked`) while
//! parked, so limits and shutdown see it as open: shutdown ends its read
//! side like any other, which wakes it here, and it is closed. A TLS
//! connection parks its rustls session beside the socket (`Session`).
//!
//! [`Config::release_idle_after`]: crate::Config::release_idle_after

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, FromRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

#[cfg(feature = "websocket")]
use crate::conn::Ended;
use crate::engine::Parking;
use crate::sys::{self, Epoll};

use super::accept::ServeConnection;
use super::registry::{Serving, Session, Tracked};

/// How often the lot's thread looks at the server even with nothing to do.
const TICK: Duration = Duration::from_millis(250);

/// A parked connection and whatever travels with it (the server's slot).
pub(crate) struct Parked<T> {
    /// Declared first so that it drops first: the server deregisters the
    /// descriptor before the stream closes it, so that a descriptor number
    /// the kernel reuses is never shut down by mistake.
    pub token: T,
    pub stream: TcpStream,
    pub peer: SocketAddr,
}

struct Inner<T> {
    parked: HashMap<u64, Parked<T>>,
    /// Every parked connection's deadline, soonest first (an idle HTTP
    /// connection's idle timeout; a WebSocket's next ping), and those of
    /// connections that have left since, dropped as they come up.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
}

/// Idle connections waiting for their next request.
pub(crate) struct Lot<T> {
    epoll: Epoll,
    inner: Mutex<Inner<T>>,
    next: AtomicU64,
}

/// What the lot's thread does with a connection.
pub(crate) enum Wake<T> {
    /// The client sent something or closed: serve it again.
    Ready(Parked<T>),
    /// Still idle at its deadline: close it (a WebSocket: serve it, to
    /// ping or close).
    Expired(Parked<T>),
}

impl<T> Lot<T> {
    pub(crate) fn new() -> io::Result<Lot<T>> {
        Ok(Lot {
            epoll: Epoll::new()?,
            inner: Mutex::new(Inner {
                parked: HashMap::new(),
                deadlines: BinaryHeap::new(),
            }),
            next: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections are parked.
    pub(crate) fn len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Parks a connection until it is readable or `idle` has passed, under
    /// the id it returns. On failure the connection is handed back.
    pub(crate) fn park(&self, conn: Parked<T>, idle: Duration) -> Result<u64, Parked<T>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
        // Registered under the lock, after the entry exists: the lot's
        // thread looks the event's id up as soon as it can take the lock.
        let mut inner = self.lock();
        let stream = &inner.parked.entry(id).or_insert(conn).stream;
        if self.epoll.add(stream.as_fd(), events, id).is_err() {
            return Err(inner.parked.remove(&id).expect("just parked"));
        }
        inner.deadlines.push(Reverse((Instant::now() + idle, id)));
        // Deadlines of connections that left wait until they come up; when
        // they outnumber the parked ones, they go at once.
        if inner.deadlines.len() > 2 * inner.parked.len() + 1024 {
            let Inner { parked, deadlines } = &mut *inner;
            deadlines.retain(|Reverse((_, id))| parked.contains_key(id));
        }
        Ok(id)
    }

    /// Takes the connection parked under `id` out, if it is still there.
    #[cfg(feature = "websocket")]
    pub(crate) fn take(&self, id: u64) -> Option<Parked<T>> {
        let mut inner = self.lock();
        self.unpark(&mut inner, id)
    }

    /// Takes a connection out of the lot and its epoll.
    fn unpark(&self, inner: &mut Inner<T>, id: u64) -> Option<Parked<T>> {
        let conn = inner.parked.remove(&id)?;
        self.epoll.delete(conn.stream.as_fd());
        Some(conn)
    }

    /// Waits up to [`TICK`] for parked connections to become readable or
    /// reach their deadline, and returns them.
    pub(crate) fn wait(&self) -> Vec<Wake<T>> {
        let timeout = {
            let inner = self.lock();
            inner
                .deadlines
                .peek()
                .map_or(TICK, |Reverse((deadline, _))| {
                    deadline.saturating_duration_since(Instant::now()).min(TICK)
                })
        };
        let mut events = [sys::Event { events: 0, u64: 0 }; 256];
        let ready = self.epoll.wait(&mut events, timeout);
        let mut out = Vec::new();
        let mut inner = self.lock();
        for event in ready {
            let id = event.u64;
            if let Some(conn) = self.unpark(&mut inner, id) {
                out.push(Wake::Ready(conn));
            }
        }
        let now = Instant::now();
        while let Some(&Reverse((deadline, id))) = inner.deadlines.peek() {
            if !inner.parked.contains_key(&id) {
                inner.deadlines.pop();
                continue;
            }
            if deadline > now {
                break;
            }
            inner.deadlines.pop();
            if let Some(conn) = self.unpark(&mut inner, id) {
                out.push(Wake::Expired(conn));
            }
        }
        out
    }

    /// Takes every parked connection out (for shutdown).
    pub(crate) fn drain(&self) -> Vec<Parked<T>> {
        let mut inner = self.lock();
        inner.deadlines.clear();
        let ids: Vec<u64> = inner.parked.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.unpark(&mut inner, id))
            .collect()
    }
}

/// What a parked connection keeps besides its socket: its slot, dropped
/// first (see [`Parked::token`]), and its TLS session if any.
pub(crate) struct Kept {
    tracked: Tracked,
    session: Session,
}

impl Kept {
    fn is_websocket(&self) -> bool {
        #[cfg(feature = "websocket")]
        return self.session.ws.is_some();
        #[cfg(not(feature = "websocket"))]
        false
    }
}

/// Closes a parked connection: `close_notify` for TLS, then the slot is
/// given back, then the socket closed.
fn close(parked: Parked<Kept>) {
    let Parked {
        token: Kept { tracked, session },
        stream,
        ..
    } = parked;
    session.close(&stream);
    drop(tracked);
    drop(stream);
}

/// Serves a connection on the current coroutine until it closes, or until
/// it is idle long enough to park in its lot, where it outlives the
/// coroutine until its next request. Without a lot (it could not be made),
/// idle connections keep their coroutines.
#[derive(Clone)]
pub(crate) struct Parkable {
    pub lot: Option<Arc<Lot<Kept>>>,
}

impl<E: Parking> ServeConnection<E> for Parkable {
    fn serve(self, io: E::Stream, peer: SocketAddr, tracked: Tracked) {
        serve_parkable::<E>(self.lot.as_ref(), io, peer, tracked, Session::default());
    }
}

fn serve_parkable<E: Parking>(
    lot: Option<&Arc<Lot<Kept>>>,
    mut io: E::Stream,
    peer: SocketAddr,
    tracked: Tracked,
    mut session: Session,
) {
    let serving = tracked.serving.clone();
    // If may abandons this coroutine (a handler overflowed its stack), `io`
    // and `tracked` are never dropped: close the socket and free the slot
    // from outside. Only a connection still registered is closed, and a
    // registered descriptor is still open (see `Tracked`).
    let weak = Arc::downgrade(&serving);
    let id = tracked.id;
    E::on_abandon(
        &io,
        Box::new(move || {
            let Some(serving) = weak.upgrade() else {
                return;
            };
            if let Some(fd) = serving.release(id) {
                log::error!("a connection's coroutine was abandoned (stack overflow?); closing it");
                // SAFETY: `fd` was registered, so its stream was never
                // dropped and never will be: nothing else closes it.
                drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
            }
        }),
    );
    // A WebSocket of callbacks goes on where it parked.
    #[cfg(feature = "websocket")]
    if let Some(ws) = session.ws.take() {
        return serve_events::<E>(lot, ws, bytes::Bytes::new(), io, peer, tracked);
    }
    let ended = serving.serve(&mut io, peer, &tracked, &mut session);
    // An upgraded connection's new protocol runs here, once the frames of
    // the HTTP loop have returned: an idle WebSocket then keeps fewer stack
    // pages hot (docs/performance.md#websocket).
    #[cfg(feature = "websocket")]
    let ended = match ended {
        Ended::Upgrade(upgrading) => match upgrading.into_events() {
            Ok((ws, read)) => return serve_events::<E>(lot, ws, read, io, peer, tracked),
            Err(other) => Ended::Upgrade(other),
        },
        other => other,
    };
    let ended = ended.upgrade_here(&mut io, &serving.stopping);
    // No handler runs past this point: from here on the connection is
    // closed or parked (and outlives this coroutine) by the code below.
    E::disarm();
    // Only a server with a parking lot lets connections end idle
    // (`ConnConfig::park`).
    if ended.is_idle()
        && !serving.is_stopping()
        && let Some(lot) = lot
    {
        let idle = serving
            .config
            .idle_timeout
            .saturating_sub(serving.config.release_idle_after);
        let parked = Parked {
            token: Kept { tracked, session },
            stream: E::into_std(io),
            peer,
        };
        // One that cannot park is closed: it is idle, so nothing is lost.
        if let Err(parked) = lot.park(parked, idle) {
            close(parked);
        }
        return;
    }
    drop(tracked);
    // Empty without the `tls` and `websocket` features.
    #[allow(clippy::drop_non_drop)]
    drop(session);
    drop(io);
}

/// Runs a WebSocket of callbacks until it ends or is quiet for
/// [`Config::release_idle_after`](crate::Config::release_idle_after); then
/// parks it (socket and protocol state, no coroutine) until the client
/// sends, a `WsSender` sends, or a ping is due.
#[cfg(feature = "websocket")]
fn serve_events<E: Parking>(
    lot: Option<&Arc<Lot<Kept>>>,
    ws: Box<crate::ws::EventsConn>,
    read: bytes::Bytes,
    mut io: E::Stream,
    peer: SocketAddr,
    tracked: Tracked,
) {
    use crate::ws::{EventsConn, Step};
    // A local, so that it drops before `io` even on a panic: its socket
    // is forgotten before the socket closes.
    let mut ws = ws;
    let serving = tracked.serving.clone();
    let park_after = lot.map(|_| serving.config.release_idle_after);
    let step = ws.run(&mut io, read, &serving.stopping, park_after);
    E::disarm();
    let (Step::Park(wait), Some(lot)) = (step, lot) else {
        drop(ws);
        drop(tracked);
        drop(io);
        return;
    };
    let stream = E::into_std(io);
    if serving.is_stopping() {
        ws.close_parked(&stream);
        drop(tracked);
        drop(stream);
        return;
    }
    let outbox = ws.outbox();
    let parked = Parked {
        token: Kept {
            tracked,
            session: Session::websocket(ws),
        },
        stream,
        peer,
    };
    // Within the lot's reach (a ping interval of `Duration::MAX` turns
    // pings off).
    let wait = wait.clamp(Duration::from_millis(1), Duration::from_secs(24 * 3600));
    match lot.park(parked, wait) {
        Ok(id) => {
            let weak = Arc::downgrade(lot);
            let stack_bytes = serving.stack_bytes;
            EventsConn::parked(
                &outbox,
                Box::new(move || {
                    if let Some(lot) = weak.upgrade()
                        && let Some(parked) = lot.take(id)
                    {
                        resume::<E>(lot, parked, stack_bytes);
                    }
                }),
            );
        }
        Err(parked) => close(parked),
    }
}

/// Serves a parked connection again, on a new coroutine.
fn resume<E: Parking>(lot: Arc<Lot<Kept>>, parked: Parked<Kept>, stack_bytes: usize) {
    let spawned = E::spawn(stack_bytes, move || {
        let Parked {
            token: Kept { tracked, session },
            stream,
            peer,
        } = parked;
        // A failed `from_std` closes the socket while `session` lives on:
        // its senders must not write to the number meanwhile.
        #[cfg(feature = "websocket")]
        if let Some(ws) = &session.ws {
            ws.forget_socket();
        }
        match E::from_std(stream) {
            Ok(io) => serve_parkable::<E>(Some(&lot), io, peer, tracked, session),
            Err(e) => log::warn!("cannot resume a parked connection: {e}"),
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot resume a parked connection: {e}");
    }
}

/// The parking lot's thread: hands readable connections to new coroutines,
/// closes expired ones, and closes all of them once the server is
/// stopping. Ends when the server is gone.
pub(crate) fn parking_thread<E: Parking>(lot: Arc<Lot<Kept>>, serving: Weak<Serving>) {
    loop {
        let Some(serving) = serving.upgrade() else {
            return;
        };
        if serving.is_stopping() {
            lot.drain().into_iter().for_each(close);
        }
        for wake in lot.wait() {
            let parked = match wake {
                Wake::Ready(parked) if !serving.is_stopping() => parked,
                // A WebSocket's deadline is its next ping or idle timeout.
                Wake::Expired(parked) if !serving.is_stopping() && parked.token.is_websocket() => {
                    parked
                }
                // Expired, or the server is stopping: an idle connection
                // is simply closed.
                Wake::Ready(parked) | Wake::Expired(parked) => {
                    close(parked);
                    continue;
                }
            };
            resume::<E>(lot.clone(), parked, serving.stack_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (client, server)
    }

    fn parked(stream: TcpStream, token: u32) -> Parked<u32> {
        let peer = stream.peer_addr().unwrap();
        Parked {
            stream,
            peer,
            token,
        }
    }

    #[test]
    fn a_readable_connection_wakes_and_an_idle_one_expires() {
        let lot = Lot::new().unwrap();
        let (mut c1, s1) = pair();
        let (_c2, s2) = pair();
        lot.park(parked(s1, 1), Duration::from_secs(60))
            .map_err(drop)
            .unwrap();
        lot.park(parked(s2, 2), Duration::from_millis(1))
            .map_err(drop)
            .unwrap();
        assert_eq!(lot.len(), 2);
        c1.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut woke = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while woke.len() < 2 && Instant::now() < deadline {
            woke.extend(lot.wait().into_iter().map(|w| match w {
                Wake::Ready(p) => ("ready", p.token),
                Wake::Expired(p) => ("expired", p.token),
            }));
        }
        woke.sort();
        assert_eq!(woke, [("expired", 2), ("ready", 1)]);
        assert_eq!(lot.len(), 0);
    }

    #[test]
    fn drain_takes_everything() {
        let lot = Lot::new().unwrap();
        let (_c, s) = pair();
        lot.park(parked(s, 7), Duration::from_secs(60))
            .map_err(drop)
            .unwrap();
        let all = lot.drain();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].token, 7);
        assert_eq!(lot.len(), 0);
        assert!(lot.wait().is_empty());
    }
}
