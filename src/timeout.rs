//! Handler timeouts: [`Timeout`] answers `503` when a handler runs too
//! long, and stops the handler at its next yield point (gevent's
//! `gevent.Timeout`, Go's `http.TimeoutHandler`).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::handler::Handler;
use crate::request::Request;
use crate::request_body::BodyPolicy;
use crate::response::Response;
use crate::status::StatusCode;

/// Runs a handler with a time limit. Past it, the client gets `503
/// Service Unavailable` (or the status given with [`Timeout::status`]),
/// with `Connection: close`, and:
///
/// - **on the coroutine engine**, the handler's coroutine is cancelled: at
///   its next yield point (a socket read or write, a sleep, a channel or
///   lock of may's) it unwinds, so its destructors run and what it holds
///   is freed;
/// - **on the thread engine**, and for a handler stuck in a call that
///   blocks its thread (`std::thread::sleep`, blocking file or database
///   I/O not moved to [`blocking`](crate::blocking())), nothing can stop
///   it: it runs to its end, and its response is thrown away. The client
///   is still answered on time, by another thread (on the coroutine
///   engine, by another may worker: with `--workers 1` the answer waits
///   until the handler yields).
///
/// The limit covers the handler until it returns its response; a body it
/// streams afterwards ([`Body::stream`](crate::Body::stream)) is bounded
/// by the write timeout instead.
///
/// ```
/// use std::time::Duration;
/// use coserve::{Request, Timeout};
///
/// let slow = |_req: &Request| {
///     may::coroutine::sleep(Duration::from_secs(60));
///     "late"
/// };
/// let bounded = Timeout::new(Duration::from_secs(5), slow);
/// # let _ = bounded;
/// ```
pub struct Timeout<H> {
    limit: Duration,
    status: StatusCode,
    handler: Arc<H>,
}

impl<H> fmt::Debug for Timeout<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("limit", &self.limit)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Timeout<H> {
    /// `handler`, answered with `503` if it runs longer than `limit`.
    pub fn new(limit: Duration, handler: H) -> Timeout<H> {
        Timeout {
            limit,
            status: StatusCode::SERVICE_UNAVAILABLE,
            handler: Arc::new(handler),
        }
    }

    /// The status of the answer past the limit (`504 Gateway Timeout` for
    /// a handler that waits on another service, say).
    pub fn status(mut self, status: StatusCode) -> Timeout<H> {
        self.status = status;
        self
    }

    fn too_late(&self, req: &Request) -> Response {
        log::warn!(
            "{}: the handler ran past its {:?} limit",
            req.request_line(),
            self.limit
        );
        Response::error(self.status).close()
    }
}

impl<H: Handler> Handler for Timeout<H> {
    /// The handler runs on a flow of control of its own, with a copy of
    /// the request, which cannot read the connection: a body it would
    /// stream is read whole first, up to the server's
    /// [`Config::max_body`](crate::Config::max_body), not the route's
    /// streaming maximum (holding a large upload in memory is what
    /// streaming avoids).
    fn body_policy(&self, req: &Request) -> BodyPolicy {
        match self.handler.body_policy(req) {
            BodyPolicy::Stream(_) => BodyPolicy::Buffer,
            other => other,
        }
    }

    fn handle(&self, req: &Request) -> Response {
        let handler = Arc::clone(&self.handler);
        let owned = req.clone();
        // A panic (may's cancellation is one) gives `None`: the waiting
        // side answers.
        let run = move || catch_unwind(AssertUnwindSafe(|| handler.handle(&owned))).ok();
        if may::coroutine::is_coroutine() {
            let (tx, rx) = may::sync::mpsc::channel();
            let stack = crate::Runtime::current().unwrap_or_default().stack_bytes();
            let spawned = crate::engine::coroutine::spawn(stack, move || {
                let _ = tx.send(run());
            });
            // Only the coroutine is kept, not may's join handle (see
            // `Engine::spawn` for why).
            let Ok(running) = spawned.map(|handle| handle.coroutine().clone()) else {
                return Response::error(StatusCode::SERVICE_UNAVAILABLE).close();
            };
            match rx.recv_timeout(self.limit) {
                Ok(Some(resp)) => resp,
                Ok(None) => Response::error(StatusCode::INTERNAL_SERVER_ERROR).close(),
                Err(_) => {
                    crate::engine::coroutine::cancel(&running);
                    self.too_late(req)
                }
            }
        } else {
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("coserve-timeout".into())
                .spawn(move || {
                    let _ = tx.send(run());
                });
            if spawned.is_err() {
                return Response::error(StatusCode::SERVICE_UNAVAILABLE).close();
            }
            match rx.recv_timeout(self.limit) {
                Ok(Some(resp)) => resp,
                Ok(None) => Response::error(StatusCode::INTERNAL_SERVER_ERROR).close(),
                Err(_) => self.too_late(req),
            }
        }
    }
}
