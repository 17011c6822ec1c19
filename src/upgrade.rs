//! Taking a connection over after `101 Switching Protocols`: what
//! WebSocket (and any other protocol a client upgrades to) runs on.
//!
//! A handler answers with [`Response::upgrade`](crate::Response::upgrade);
//! the connection loop sends the `101` head, then calls the closure on the
//! same coroutine (or thread) with the connection as an [`Upgraded`]: a
//! blocking `Read + Write` that first gives back the bytes the client sent
//! after its request head. When the closure returns, the connection
//! closes; it never goes back to HTTP. The connection keeps its slot
//! (the caps still count it) and its registration, so shutdown ends its
//! reads like any other's: [`Upgraded::is_stopping`] then says why a read
//! saw the end of the stream, for the protocol to say goodbye (WebSocket's
//! close 1001) within the grace period.

use std::fmt;
use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};

use crate::request::Request;
use crate::transport::Transport;

/// What a handler runs on the connection once the `101` has gone out.
pub(crate) type OnUpgrade = Box<dyn for<'a> FnOnce(Upgraded<'a>) + Send>;

/// What an upgrade response runs on its connection.
pub(crate) enum Upgrade {
    /// A closure that holds the connection until it returns.
    Closure(OnUpgrade),
    /// A WebSocket of callbacks ([`crate::ws::WsEvents`]), made from the
    /// upgraded request: it can park between messages.
    #[cfg(feature = "websocket")]
    Events(Box<dyn FnOnce(Request) -> Box<crate::ws::EventsConn> + Send>),
}

/// An upgrade whose `101` has gone out, to run once the connection loop
/// has returned: the loop's frames and buffers are gone by then, so an
/// idle upgraded connection holds only what the new protocol needs (and,
/// on the coroutine engine, runs on a fresh stack: `server/park.rs`).
pub(crate) struct Upgrading {
    upgrade: Upgrade,
    /// What the client sent after its request head.
    read: Bytes,
    request: Request,
    /// The first read timeout: the connection's idle timeout.
    idle_timeout: Duration,
}

impl fmt::Debug for Upgrading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrading")
            .field("read_ahead", &self.read.len())
            .finish_non_exhaustive()
    }
}

impl Upgrading {
    pub(crate) fn new(
        upgrade: Upgrade,
        read: Bytes,
        mut request: Request,
        idle_timeout: Duration,
    ) -> Box<Upgrading> {
        // The request's bytes still share the connection's 4 KiB read
        // buffer: a copy of its head lets that buffer go.
        request.compact();
        Box::new(Upgrading {
            upgrade,
            read: Bytes::copy_from_slice(&read),
            request,
            idle_timeout,
        })
    }

    /// A WebSocket of callbacks, to run where it can park, and what the
    /// client sent after its handshake; any other upgrade is handed back.
    #[cfg(feature = "websocket")]
    pub(crate) fn into_events(self) -> Result<(Box<crate::ws::EventsConn>, Bytes), Box<Upgrading>> {
        match self.upgrade {
            Upgrade::Events(make) => Ok((make(self.request), self.read)),
            upgrade => Err(Box::new(Upgrading { upgrade, ..self })),
        }
    }

    /// Runs the new protocol on `io` until it ends, on this flow of
    /// control.
    pub(crate) fn run<T: Transport + ?Sized>(self, io: &mut T, stopping: &AtomicBool) {
        if io.set_read_timeout(Some(self.idle_timeout)).is_err() {
            return;
        }
        let mut lent = Lent(io);
        // One arm without the `websocket` feature.
        #[cfg_attr(
            not(feature = "websocket"),
            allow(clippy::infallible_destructuring_match)
        )]
        let on_upgrade = match self.upgrade {
            Upgrade::Closure(on_upgrade) => on_upgrade,
            #[cfg(feature = "websocket")]
            Upgrade::Events(make) => {
                let mut conn = make(self.request);
                let _ = conn.run(&mut lent, self.read, stopping, None);
                return;
            }
        };
        let hooks = EndHooks::default();
        let upgraded = Upgraded::new(&mut lent, self.read, stopping, &self.request, Some(&hooks));
        if catch_unwind(AssertUnwindSafe(|| on_upgrade(upgraded))).is_err() {
            log::error!(
                "{:?}: an upgraded connection's handler panicked",
                self.request.peer_addr()
            );
        }
        for hook in hooks.into_inner().unwrap_or_else(|e| e.into_inner()) {
            hook();
        }
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upgrade::Closure(_) => f.write_str("Upgrade::Closure(..)"),
            #[cfg(feature = "websocket")]
            Upgrade::Events(_) => f.write_str("Upgrade::Events(..)"),
        }
    }
}

/// A connection taken over after `101 Switching Protocols`: blocking
/// reads and writes that park only this coroutine. Reads first return what
/// the client sent after its request head, then read the connection
/// (over TLS, the decrypted stream).
///
/// Reads wait at most the read timeout, [`Config::idle_timeout`] unless
/// [`Upgraded::set_read_timeout`] says otherwise; a read that times out
/// fails with `TimedOut` or `WouldBlock`. Writes wait at most
/// [`Config::write_timeout`].
///
/// [`Config::idle_timeout`]: crate::Config::idle_timeout
/// [`Config::write_timeout`]: crate::Config::write_timeout
pub struct Upgraded<'a> {
    io: &'a mut dyn Transport,
    read: Bytes,
    stopping: &'a AtomicBool,
    request: &'a Request,
    /// What must run once the upgrade's handler is done with the
    /// connection, before its socket closes, however the handler let go
    /// of it (`None` where the connection outlives the handler).
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    at_end: Option<&'a EndHooks>,
}

/// Work for the end of an upgraded connection, kept outside the
/// [`Upgraded`] (which a handler could forget).
pub(crate) type EndHooks = Mutex<Vec<Box<dyn FnOnce() + Send>>>;

impl<'a> Upgraded<'a> {
    pub(crate) fn new(
        io: &'a mut dyn Transport,
        read: Bytes,
        stopping: &'a AtomicBool,
        request: &'a Request,
        at_end: Option<&'a EndHooks>,
    ) -> Upgraded<'a> {
        Upgraded {
            io,
            read,
            stopping,
            request,
            at_end,
        }
    }

    /// Runs `f` once the handler is done with the connection, before its
    /// socket closes: also if the handler forgot (`mem::forget`) what it
    /// held of it. Nothing where the connection outlives the handler.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(crate) fn at_end(&self, f: impl FnOnce() + Send + 'static) {
        if let Some(hooks) = self.at_end {
            hooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Box::new(f));
        }
    }

    /// The request that was upgraded.
    pub fn request(&self) -> &'a Request {
        self.request
    }

    /// Bounds the reads to come (`None`: wait for ever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_read_timeout(timeout)
    }

    /// Bounds each write (`None`: wait for ever).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_write_timeout(timeout)
    }

    /// Whether the server is shutting down: it has ended this connection's
    /// reads (they see the end of the stream), and waits for the
    /// connection to close within its grace period. Writes still work.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The plain socket underneath, if writes may bypass the transport.
    #[cfg(feature = "websocket")]
    pub(crate) fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        self.io.raw_socket()
    }

    /// What makes this connection's waiting read return early.
    #[cfg(feature = "websocket")]
    pub(crate) fn read_waker(&mut self) -> Option<crate::transport::ReadWaker> {
        self.io.read_waker()
    }

    /// Sends the end of the stream (TCP's FIN; over TLS, `close_notify`
    /// first). Reads go on until the client closes too.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.io.shutdown_write()
    }
}

impl Read for Upgraded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.read.is_empty() {
            let n = buf.len().min(self.read.len());
            buf[..n].copy_from_slice(&self.read[..n]);
            self.read.advance(n);
            return Ok(n);
        }
        self.io.read(buf)
    }
}

impl Write for Upgraded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

impl fmt::Debug for Upgraded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("read_ahead", &self.read.len())
            .finish_non_exhaustive()
    }
}

/// A transport of any size as a sized one, so that it can be lent out as
/// `&mut dyn Transport`.
pub(crate) struct Lent<'a, T: Transport + ?Sized>(pub &'a mut T);

impl<T: Transport + ?Sized> Read for Lent<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Transport + ?Sized> Write for Lent<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<T: Transport + ?Sized> Transport for Lent<'_, T> {
    fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        self.0.raw_socket()
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.shutdown_write()
    }

    fn read_spare(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        self.0.read_spare(buf)
    }

    fn read_waker(&mut self) -> Option<crate::transport::ReadWaker> {
        self.0.read_waker()
    }
}
