//! The accept loop: admit or refuse each connection, give it a flow of
//! control, and back off while accepting or starting keeps failing.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;

use crate::engine::Engine;
use crate::response::{ConnectionField, Response, write_head};
use crate::status::StatusCode;
use crate::transport::Transport;

use super::registry::{Serving, Session, Tracked};

/// How an engine serves an admitted connection on the flow of control it
/// is given.
///
/// A trait with a method rather than an `Fn`: calling a closure packs the
/// connection (its stream, address and slot) into an argument tuple, a
/// copy of several hundred bytes in the first frame of every connection's
/// stack, which every connection keeps resident while it runs.
pub(crate) trait ServeConnection<E: Engine>: Clone + Send + 'static {
    /// Serves `io` until it closes (or parks).
    fn serve(self, io: E::Stream, peer: SocketAddr, tracked: Tracked);
}

/// Starts the accept loop on a flow of control of its own.
pub(crate) fn start<E, S>(
    listener: std::net::TcpListener,
    serving: Arc<Serving>,
    serve: S,
) -> std::io::Result<()>
where
    E: Engine,
    S: ServeConnection<E>,
{
    let listener = E::listener(listener)?;
    E::spawn(256 * 1024, move || {
        accept_loop::<E, S>(listener, serving, serve)
    })
}

/// Serves a connection until it closes: all the thread engine does.
#[derive(Clone, Copy)]
pub(crate) struct UntilClosed;

impl<E: Engine> ServeConnection<E> for UntilClosed {
    fn serve(self, mut io: E::Stream, peer: SocketAddr, tracked: Tracked) {
        let mut session = Session::default();
        // An upgraded connection stays on its thread.
        let _ = tracked
            .serving
            .serve(&mut io, peer, &tracked, &mut session)
            .upgrade_here(&mut io, &tracked.serving.stopping);
        // Deregistered before the socket closes (see `Tracked`).
        drop(tracked);
        drop(io);
    }
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

fn accept_loop<E, S>(listener: E::Listener, serving: Arc<Serving>, serve: S)
where
    E: Engine,
    S: ServeConnection<E>,
{
    let mut accepting = Backoff::new();
    let mut starting = Backoff::new();
    loop {
        let (stream, peer) = match E::accept(&listener) {
            Ok(pair) => pair,
            Err(e) => {
                if serving.is_stopping() {
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
        // A connection taken after shutdown began is served all the same
        // (its first request, then it closes), and then the loop ends: it
        // is either the shutdown's own wake connection, closed at once, or
        // a client that raced the shutdown, whose request another process
        // sharing the port could not take over once it was accepted here.
        let last = serving.is_stopping();
        if !serving.admit(peer.ip()) {
            reject::<E>(stream, &serving);
            if last {
                break;
            }
            continue;
        }
        let tracked = serving.track(stream.as_raw_fd(), peer.ip());
        let serve = serve.clone();
        match E::spawn(serving.stack_bytes, move || {
            serve.serve(stream, peer, tracked)
        }) {
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
        if last {
            break;
        }
    }
    drop(listener);
    serving.stopped_accepting();
}

/// The 503 sent to connections over a limit.
fn refusal() -> BytesMut {
    let mut head = BytesMut::new();
    let resp = Response::error(StatusCode::SERVICE_UNAVAILABLE).header("Retry-After", "1");
    write_head(&mut head, &resp, ConnectionField::Close, false);
    if let Some(body) = resp.body_ref().as_bytes() {
        head.extend_from_slice(body);
    }
    head
}

/// Answers a connection over a limit with 503 and closes it. Normally that
/// happens on a small flow of control of its own, which drains what the
/// client sent so that the close is a FIN, not a reset that could destroy
/// the 503; the accept loop never waits on a client. Over TLS the 503
/// follows a handshake, bounded by a second, on that flow of control.
/// Past a bound on those (a flood), the 503 is written at once and the
/// socket closed: a fresh socket's buffer always takes it without waiting;
/// a TLS client is only closed (it could not read a plaintext 503).
fn reject<E: Engine>(mut io: E::Stream, serving: &Arc<Serving>) {
    const MAX_REJECTING: usize = 2048;
    if serving.rejecting.fetch_add(1, Ordering::AcqRel) >= MAX_REJECTING {
        serving.rejecting.fetch_sub(1, Ordering::AcqRel);
        if !serving.is_tls() {
            let _ = io.set_write_timeout(Some(Duration::from_millis(10)));
            let _ = io.write_all(&refusal());
            let _ = io.shutdown_write();
        }
        return;
    }
    let rejecting = serving.clone();
    // A TLS handshake needs a connection's stack.
    let stack = if serving.is_tls() {
        serving.stack_bytes
    } else {
        32 * 1024
    };
    let spawned = E::spawn(stack, move || {
        rejecting.refuse(&mut io, &refusal());
        drop(io);
        rejecting.rejecting.fetch_sub(1, Ordering::AcqRel);
    });
    if spawned.is_err() {
        serving.rejecting.fetch_sub(1, Ordering::AcqRel);
        log::error!("cannot start a flow of control to refuse a connection");
    }
}
