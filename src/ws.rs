//! WebSocket (RFC 6455) in blocking style: the handshake is checked here,
//! the connection is taken over with [`Response::upgrade`], and
//! `tungstenite`'s synchronous protocol runs over it, parking only this
//! connection's coroutine.
//!
//! ```no_run
//! use coserve::ws::Ws;
//! use coserve::{Config, Router, Server};
//!
//! let app = Router::new().ws("/echo", Ws::new(|_req, mut ws| {
//!     while let Ok(msg) = ws.recv() {
//!         if ws.send(msg).is_err() {
//!             break;
//!         }
//!     }
//! }));
//! Server::bind("127.0.0.1:8080", Config::new())?.serve(app)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! - **Handshake.** `GET`, HTTP/1.1, `Connection: upgrade` and `Upgrade:
//!   websocket` tokens, `Sec-WebSocket-Version: 13` and a
//!   `Sec-WebSocket-Key` of 16 bytes in base64; otherwise `405` (another
//!   method), `426 Upgrade Required` (not an upgrade, another version:
//!   with `Sec-WebSocket-Version: 13`), `400` (a bad key) or `403` (an
//!   `Origin` not on the allow-list). A subprotocol is the first of ours
//!   that the client offers.
//! - **Limits.** A message or frame over its maximum ends the connection
//!   with close code 1009 before more of it is read; the read buffer starts
//!   at 1 KiB (tungstenite's default of 128 KiB would be held by every
//!   idle connection).
//! - **Keep-alive.** With nothing heard for the ping interval, a ping is
//!   sent; with nothing heard for the idle timeout, the connection closes
//!   (1001). Pings are answered with pongs, and a client's close with a
//!   close.
//! - **Shutdown.** When the server shuts down, [`WebSocket::recv`] sends
//!   close 1001 and returns [`WsError::ShuttingDown`].
//! - **Many idle connections.** A blocking [`WebSocket`] keeps its
//!   coroutine while it waits; [`WsEvents`] is the same endpoint written as
//!   callbacks, whose quiet connections park without one.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};

use crate::handler::Handler;
use crate::parse::Version;
use crate::request::{Method, Request};
use crate::response::Response;
use crate::status::StatusCode;
use crate::transport::{ReadWaker, Transport};
use crate::upgrade::{Upgrade, Upgraded};

/// A WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::Text(text.to_string())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::Text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Message {
        Message::Binary(bytes.into())
    }
}

impl From<Bytes> for Message {
    fn from(bytes: Bytes) -> Message {
        Message::Binary(bytes)
    }
}

/// Why a WebSocket can be used no more.
#[derive(Debug)]
#[non_exhaustive]
pub enum WsError {
    /// The client closed the connection, with this close code and reason
    /// if it sent any (the close was answered).
    Closed(Option<(u16, String)>),
    /// Nothing heard from the client for the idle timeout (pings
    /// included): closed with 1001.
    TimedOut,
    /// The server is shutting down: closed with 1001.
    ShuttingDown,
    /// A message or frame over the maximum: closed with 1009.
    TooLarge,
    /// The client broke the protocol (closed with 1002) or sent text that
    /// is not UTF-8 (1007).
    Protocol(String),
    /// The connection failed.
    Io(io::Error),
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Closed(Some((code, why))) => write!(f, "closed by the client ({code} {why})"),
            WsError::Closed(None) => f.write_str("closed by the client"),
            WsError::TimedOut => f.write_str("nothing heard for the idle timeout"),
            WsError::ShuttingDown => f.write_str("the server is shutting down"),
            WsError::TooLarge => f.write_str("a message over the maximum size"),
            WsError::Protocol(why) => write!(f, "protocol error: {why}"),
            WsError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WsError {}

/// The settings of a WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct WsOptions {
    origins: Option<Vec<String>>,
    protocols: Vec<String>,
    max_message: usize,
    max_frame: usize,
    ping_interval: Duration,
    idle_timeout: Duration,
}

impl Default for WsOptions {
    fn default() -> WsOptions {
        WsOptions {
            origins: None,
            protocols: Vec::new(),
            max_message: 1 << 20,
            max_frame: 1 << 20,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
        }
    }
}

impl WsOptions {
    /// The defaults: any origin, no subprotocol, messages and frames up to
    /// 1 MiB, a ping after 30 s of silence, closed after 75 s of it.
    pub fn new() -> WsOptions {
        WsOptions::default()
    }

    /// Accepts only handshakes whose `Origin` is one of these (as the
    /// browser sends it: `https://example.com`, compared without case);
    /// others get `403`. A client that sends no `Origin` (not a browser)
    /// is accepted.
    pub fn origins<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> WsOptions {
        self.origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// The subprotocols we speak, preferred first: a client offering any
    /// gets the first of ours it offers (`Sec-WebSocket-Protocol`).
    pub fn protocols<S: Into<String>>(
        mut self,
        protocols: impl IntoIterator<Item = S>,
    ) -> WsOptions {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The largest message, in bytes, fragments together.
    pub fn max_message(mut self, bytes: usize) -> WsOptions {
        self.max_message = bytes;
        self
    }

    /// The largest frame, in bytes.
    pub fn max_frame(mut self, bytes: usize) -> WsOptions {
        self.max_frame = bytes;
        self
    }

    /// How long a silent connection waits before it is pinged.
    pub fn ping_interval(mut self, d: Duration) -> WsOptions {
        self.ping_interval = d;
        self
    }

    /// How long a connection may stay silent (pongs count as heard) before
    /// it is closed.
    pub fn idle_timeout(mut self, d: Duration) -> WsOptions {
        self.idle_timeout = d;
        self
    }
}

type WsHandler = dyn for<'a> Fn(&'a Request, WebSocket<'a>) + Send + Sync;

/// A WebSocket endpoint: a [`Handler`] that checks the handshake, upgrades,
/// and runs `handler` on the connection, in blocking style, until it
/// returns.
#[derive(Clone)]
pub struct Ws {
    mode: Mode,
    options: Arc<WsOptions>,
}

/// What runs on an accepted connection.
#[derive(Clone)]
enum Mode {
    Blocking(Arc<WsHandler>),
    Events(Arc<WsEvents>),
}

impl fmt::Debug for Ws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ws")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Ws {
    /// An endpoint with the default [`WsOptions`].
    pub fn new<F>(handler: F) -> Ws
    where
        F: for<'a> Fn(&'a Request, WebSocket<'a>) + Send + Sync + 'static,
    {
        Ws {
            mode: Mode::Blocking(Arc::new(handler)),
            options: Arc::new(WsOptions::default()),
        }
    }

    /// The same endpoint with these settings.
    pub fn options(mut self, options: WsOptions) -> Ws {
        self.options = Arc::new(options);
        self
    }
}

impl Handler for Ws {
    fn handle(&self, req: &Request) -> Response {
        let (accept, protocol) = match check(req, &self.options) {
            Ok(accepted) => accepted,
            Err(refusal) => return refusal,
        };
        let chosen = protocol.clone();
        let mut resp = match &self.mode {
            Mode::Blocking(handler) => {
                let handler = Arc::clone(handler);
                let options = Arc::clone(&self.options);
                Response::upgrade("websocket", move |upgraded| {
                    let req = upgraded.request();
                    let ws = WebSocket::new(upgraded, &options, chosen);
                    handler(req, ws);
                })
            }
            Mode::Events(events) => {
                let events = Arc::clone(events);
                Response::upgrade_with(
                    "websocket",
                    Upgrade::Events(Box::new(move |request| {
                        Box::new(EventsConn::new(events, request, chosen))
                    })),
                )
            }
        }
        .header("Sec-WebSocket-Accept", accept);
        if let Some(protocol) = protocol {
            resp = resp.header("Sec-WebSocket-Protocol", protocol);
        }
        resp
    }
}

/// The GUID of RFC 6455 §1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn to_tungstenite(msg: Message) -> tungstenite::Message {
    match msg {
        Message::Text(text) => tungstenite::Message::Text(text.into()),
        Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut sha = sha1::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Checks a handshake: the `Sec-WebSocket-Accept` value and the chosen
/// subprotocol, or the response that refuses it.
fn check(req: &Request, options: &WsOptions) -> Result<(String, Option<String>), Response> {
    if req.method() != &Method::Get {
        return Err(Response::error(StatusCode::METHOD_NOT_ALLOWED).header("Allow", "GET"));
    }
    let upgrade_required = || {
        Response::error(StatusCode::UPGRADE_REQUIRED)
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
    };
    if req.version() != Version::Http11
        || !req.header_has_token("connection", "upgrade")
        || !req.header_has_token("upgrade", "websocket")
    {
        return Err(upgrade_required());
    }
    if req.header_str("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(upgrade_required());
    }
    let key = req
        .header_str("sec-websocket-key")
        .map(str::trim)
        .unwrap_or("");
    let decoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(key)
    };
    if !decoded.is_ok_and(|k| k.len() == 16) {
        return Err(Response::error(StatusCode::BAD_REQUEST));
    }
    if let (Some(allowed), Some(origin)) = (&options.origins, req.header_str("origin"))
        && !allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin.trim()))
    {
        return Err(Response::error(StatusCode::FORBIDDEN));
    }
    let offered: Vec<&str> = req
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let protocol = options
        .protocols
        .iter()
        .find(|p| offered.contains(&p.as_str()))
        .cloned();
    Ok((accept_key(key), protocol))
}

/// An open WebSocket connection, in blocking style: [`WebSocket::recv`]
/// parks this coroutine until a message comes; [`WebSocket::sender`] lets
/// other coroutines send on it.
pub struct WebSocket<'a> {
    io: Upgraded<'a>,
    core: Core,
    protocol: Option<String>,
}

/// The protocol state of one connection apart from its stream: what a
/// blocking [`WebSocket`] drives while it holds the stream, and what an
/// [`WsEvents`] connection keeps while it is parked without one.
struct Core {
    ctx: WebSocketContext,
    ping_interval: Duration,
    idle_timeout: Duration,
    /// When the client was last heard (any frame).
    heard: Instant,
    /// When the last ping went out, if one did since `heard`.
    pinged: Option<Instant>,
    /// When a frame last went either way.
    active: Instant,
    done: bool,
    outbox: Option<Arc<Outbox>>,
    /// What tungstenite has written, to send (see [`Split`]).
    pending: Vec<u8>,
}

/// Why [`Core::recv`] returned without a message.
enum Quiet {
    /// The connection is over.
    Ended(WsError),
    /// Nothing happened for the time asked: the connection may park.
    Park,
}

/// Messages other coroutines have given a connection to send.
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Message>>,
    /// Cleared when the connection ends: sends then fail.
    open: AtomicBool,
    /// How a sender gets the connection to send what it queued.
    wake: Mutex<Wake>,
    /// Set while frames are written to the socket: by the connection for
    /// each batch it writes (the queue drained with it), by a sender for
    /// the one frame it writes itself. A sender never waits for the socket
    /// while it holds it. An atomic, not a lock guard: the connection's
    /// coroutine may wait for the socket, and resume on another thread,
    /// while it holds it.
    writing: AtomicBool,
    /// The plain socket, for senders to write frames to themselves (-1:
    /// none, over TLS, or the connection has ended). Cleared, with
    /// `writing` held, before the socket closes.
    socket: AtomicI32,
    /// What a sender's own write left unsent: the connection sends it
    /// before anything else.
    rest: Mutex<Vec<u8>>,
}

/// `Outbox::writing`, held: cleared when dropped.
struct Writing<'a>(&'a AtomicBool);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What [`Outbox::send_direct`] did.
enum Direct {
    /// The whole frame went out.
    Sent,
    /// Part of it went out; the connection must send the rest.
    Partial,
    /// Nothing went out: queue the message.
    NotSent,
}

/// How a sender gets a connection to send.
enum Wake {
    /// It cannot: the connection looks at its queue every [`POLL_QUEUE`],
    /// or is about to park and looks once more.
    Nothing,
    /// Return its coroutine's waiting read.
    Read(ReadWaker),
    /// Take it out of the parking lot onto a coroutine (once).
    Unpark(Box<dyn FnOnce() + Send>),
}

impl Outbox {
    fn new() -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            open: AtomicBool::new(true),
            wake: Mutex::new(Wake::Nothing),
            writing: AtomicBool::new(false),
            socket: AtomicI32::new(-1),
            rest: Mutex::new(Vec::new()),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_wake(&self, wake: Wake) {
        let old = std::mem::replace(
            &mut *self.wake.lock().unwrap_or_else(|e| e.into_inner()),
            wake,
        );
        // A stale unpark closure is dropped outside the lock.
        drop(old);
    }

    fn wake(&self) {
        let mut wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        match &*wake {
            Wake::Nothing => {}
            Wake::Read(read) => {
                let read = Arc::clone(read);
                drop(wake);
                read();
            }
            Wake::Unpark(_) => {
                let Wake::Unpark(unpark) = std::mem::replace(&mut *wake, Wake::Nothing) else {
                    unreachable!("matched above");
                };
                drop(wake);
                unpark();
            }
        }
    }

    /// Whether anything waits to go out: queued messages, or the tail of
    /// a frame a sender wrote in part.
    fn has_pending(&self) -> bool {
        !self.queue().is_empty() || !self.rest().is_empty()
    }

    fn end(&self) {
        {
            let _writing = self.lock_writes();
            self.open.store(false, Ordering::Release);
            self.socket.store(-1, Ordering::Release);
        }
        self.set_wake(Wake::Nothing);
    }

    /// Stops senders writing to the socket (until the connection points
    /// them at it again): for a socket about to change hands.
    fn forget_socket(&self) {
        let _writing = self.lock_writes();
        self.socket.store(-1, Ordering::Release);
    }

    fn rest(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.rest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `writing` until the guard drops (an unwind included); a
    /// sender holds it only for one `send` that does not wait.
    fn lock_writes(&self) -> Writing<'_> {
        while self.writing.swap(true, Ordering::Acquire) {
            // A coroutine unwinding (a cancelled handler) must not yield:
            // may would cancel it again there.
            if may::coroutine::is_coroutine() && !std::thread::panicking() {
                may::coroutine::yield_now();
            } else {
                std::thread::yield_now();
            }
        }
        Writing(&self.writing)
    }

    /// Writes `msg` as one frame straight to the socket, if nothing is
    /// waiting to go out before it and the socket takes it now: a
    /// broadcast then costs one `send` per subscriber, without waking the
    /// connection's coroutine (or taking a parked connection out of the
    /// lot).
    fn send_direct(&self, msg: &Message) -> Direct {
        if self.socket.load(Ordering::Acquire) < 0 {
            return Direct::NotSent;
        }
        // Encoded before `writing` is taken: the connection may be waiting
        // for it.
        let frame = encode_frame(msg);
        if self.writing.swap(true, Ordering::Acquire) {
            return Direct::NotSent;
        }
        let _writing = Writing(&self.writing);
        self.send_direct_locked(&frame)
    }

    fn send_direct_locked(&self, frame: &[u8]) -> Direct {
        let fd = self.socket.load(Ordering::Acquire);
        if fd < 0 || !self.open.load(Ordering::Acquire) || !self.queue().is_empty() {
            return Direct::NotSent;
        }
        let mut rest = self.rest();
        if !rest.is_empty() {
            return Direct::NotSent;
        }
        // SAFETY: `socket` is cleared, with `writing` held, before the
        // connection's socket closes (`Outbox::end`, called by `Core`
        // before it lets the stream go); `writing` is held here, so `fd`
        // is still that open socket.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match crate::sys::send_nowait(sock, frame) {
            Ok(n) if n == frame.len() => Direct::Sent,
            Ok(n) if n > 0 => {
                rest.extend_from_slice(&frame[n..]);
                Direct::Partial
            }
            _ => Direct::NotSent,
        }
    }
}

/// `msg` as one unmasked frame, as a server sends it.
fn encode_frame(msg: &Message) -> Vec<u8> {
    let (opcode, payload): (u8, &[u8]) = match msg {
        Message::Text(text) => (0x1, text.as_bytes()),
        Message::Binary(bytes) => (0x2, bytes),
    };
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// What tungstenite reads from and writes to: it reads the connection,
/// and writes into `out`, which the connection then sends whole, in turn
/// with the frames senders write themselves.
struct Split<'s, 'a> {
    io: &'s mut Upgraded<'a>,
    out: &'s mut Vec<u8>,
}

impl Read for Split<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf)
    }
}

impl Write for Split<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The most messages a sender may queue for one connection before
/// [`WsSender::send`] refuses more: a client that does not read cannot make
/// the server hold more.
pub const MAX_QUEUED: usize = 1024;

/// Sends on a [`WebSocket`] (or a [`WsEvents`] connection) from any
/// coroutine or thread: a cheap, cloneable handle, for broadcast hubs and
/// the like. A message is queued and the connection's coroutine, waiting in
/// [`WebSocket::recv`], is woken to send it (a parked [`WsEvents`]
/// connection is taken out of the parking lot to send it); messages go out
/// in the order they were queued. A blocking connection's coroutine sends
/// only while it is in `recv` (or `send`): queue from elsewhere while it
/// does other work, and they go out at its next `recv`.
#[derive(Clone)]
pub struct WsSender {
    outbox: Arc<Outbox>,
}

impl fmt::Debug for WsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender")
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl WsSender {
    /// Queues `msg` for the connection. Fails with [`WsError::Closed`] once
    /// the connection has ended, and with `Io(WouldBlock)` when
    /// [`MAX_QUEUED`] messages already wait (a client that does not read).
    pub fn send(&self, msg: impl Into<Message>) -> Result<(), WsError> {
        if !self.is_open() {
            return Err(WsError::Closed(None));
        }
        let msg = msg.into();
        match self.outbox.send_direct(&msg) {
            Direct::Sent => return Ok(()),
            Direct::Partial => {
                self.outbox.wake();
                return Ok(());
            }
            Direct::NotSent => {}
        }
        {
            let mut queue = self.outbox.queue();
            if queue.len() >= MAX_QUEUED {
                return Err(WsError::Io(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the connection's send queue is full",
                )));
            }
            queue.push_back(msg);
        }
        self.outbox.wake();
        Ok(())
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.outbox.open.load(Ordering::Acquire)
    }

    /// Whether both handles send on the same connection.
    pub fn same_connection(&self, other: &WsSender) -> bool {
        Arc::ptr_eq(&self.outbox, &other.outbox)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(outbox) = &self.outbox {
            outbox.end();
        }
    }
}

/// How often a connection whose reads cannot be woken (a transport of
/// one's own) looks at its queue.
const POLL_QUEUE: Duration = Duration::from_millis(20);

impl fmt::Debug for WebSocket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Core {
    fn new(options: &WsOptions) -> Core {
        // tungstenite's default read buffer of 128 KiB would be held by
        // every idle connection; 1 KiB holds a burst of small messages, and
        // a larger frame gets room for its length once its header is read.
        let config = WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_message_size(Some(options.max_message))
            .max_frame_size(Some(options.max_frame));
        let now = Instant::now();
        Core {
            ctx: WebSocketContext::new(Role::Server, Some(config)),
            ping_interval: options.ping_interval,
            idle_timeout: options.idle_timeout,
            heard: now,
            pinged: None,
            active: now,
            done: false,
            outbox: None,
            pending: Vec::new(),
        }
    }

    /// The longest a read should wait: the next ping or the idle timeout
    /// can come no sooner.
    fn read_wait(&self) -> Duration {
        self.ping_interval.min(self.idle_timeout)
    }

    /// The connection's outbox, made on first use.
    fn outbox(&mut self) -> Arc<Outbox> {
        Arc::clone(self.outbox.get_or_insert_with(Outbox::new))
    }

    /// Points the outbox's wake at `io`'s waiting read (or, for a transport
    /// whose reads cannot be woken, makes the reads look at the queue
    /// often). Done only once there are senders: on the thread engine a
    /// waker holds a descriptor.
    fn point_wake(&mut self, io: &mut Upgraded<'_>) {
        let outbox = self.outbox();
        if self.done {
            outbox.end();
            return;
        }
        if let Some(fd) = io.raw_socket() {
            outbox.socket.store(fd, Ordering::Release);
        }
        match io.read_waker() {
            Some(read) => outbox.set_wake(Wake::Read(read)),
            None => {
                outbox.set_wake(Wake::Nothing);
                let wait = self.ping_interval.min(self.idle_timeout).min(POLL_QUEUE);
                let _ = io.set_read_timeout(Some(wait));
            }
        }
    }

    /// Sends what other coroutines queued.
    fn send_queued(&mut self, io: &mut Upgraded<'_>) -> Result<(), WsError> {
        let Some(outbox) = self.outbox.clone() else {
            return Ok(());
        };
        // Drained and written with `writing` held, so that no sender's own
        // frame overtakes one it queued earlier.
        let writing = outbox.lock_writes();
        let queued: Vec<Message> = outbox.queue().drain(..).collect();
        if queued.is_empty() && outbox.rest().is_empty() && self.pending.is_empty() {
            return Ok(());
        }
        let mut written = Ok(());
        for msg in queued {
            let mut split = Split {
                io,
                out: &mut self.pending,
            };
            written = self.ctx.write(&mut split, to_tungstenite(msg));
            if written.is_err() {
                break;
            }
        }
        let sent = written.map(|()| self.write_out_locked(io, &outbox));
        drop(writing);
        self.active = Instant::now();
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.write_failed(tungstenite::Error::Io(e))),
            Err(e) => Err(self.write_failed(e)),
        }
    }

    /// Sends what a sender left unsent, then what tungstenite wrote; with
    /// `writing` held.
    fn write_out_locked(&mut self, io: &mut Upgraded<'_>, outbox: &Outbox) -> io::Result<()> {
        let rest = std::mem::take(&mut *outbox.rest());
        let sent = io
            .write_all(&rest)
            .and_then(|()| io.write_all(&self.pending))
            .and_then(|()| io.flush());
        self.pending.clear();
        sent
    }

    /// Sends what tungstenite wrote.
    fn send_out(&mut self, io: &mut Upgraded<'_>) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.outbox.clone() {
            Some(outbox) => {
                let _writing = outbox.lock_writes();
                self.write_out_locked(io, &outbox)
            }
            None => {
                let sent = io.write_all(&self.pending).and_then(|()| io.flush());
                self.pending.clear();
                sent
            }
        }
    }

    /// Runs `op` on tungstenite with the connection, its writes kept for
    /// [`Core::send_out`].
    fn with_ctx<R>(
        &mut self,
        io: &mut Upgraded<'_>,
        op: impl FnOnce(&mut WebSocketContext, &mut Split<'_, '_>) -> R,
    ) -> R {
        let mut split = Split {
            io,
            out: &mut self.pending,
        };
        op(&mut self.ctx, &mut split)
    }

    fn write_failed(&mut self, e: tungstenite::Error) -> WsError {
        self.end();
        match e {
            tungstenite::Error::Io(e) => WsError::Io(e),
            other => WsError::Protocol(other.to_string()),
        }
    }

    fn end(&mut self) {
        self.done = true;
        if let Some(outbox) = &self.outbox {
            outbox.end();
        }
    }

    fn heard_now(&mut self) {
        self.heard = Instant::now();
        self.active = self.heard;
        self.pinged = None;
    }

    /// The next text or binary message (fragments joined), answering pings
    /// and pinging a silent client meanwhile. With `park_after`, returns
    /// [`Quiet::Park`] once nothing has gone either way for that long and
    /// nothing is queued.
    fn recv(
        &mut self,
        io: &mut Upgraded<'_>,
        park_after: Option<Duration>,
    ) -> Result<Message, Quiet> {
        loop {
            if self.done {
                return Err(Quiet::Ended(WsError::Closed(None)));
            }
            self.send_queued(io).map_err(Quiet::Ended)?;
            let read = self.with_ctx(io, |ctx, s| ctx.read(s));
            // Pongs and the answer to a close, as tungstenite wrote them.
            if !matches!(read, Ok(tungstenite::Message::Close(_))) && self.send_out(io).is_err() {
                self.end();
                return Err(Quiet::Ended(WsError::Closed(None)));
            }
            match read {
                Ok(tungstenite::Message::Text(text)) => {
                    self.heard_now();
                    return Ok(Message::Text(text.as_str().to_string()));
                }
                Ok(tungstenite::Message::Binary(bytes)) => {
                    self.heard_now();
                    return Ok(Message::Binary(bytes));
                }
                Ok(tungstenite::Message::Close(frame)) => {
                    // tungstenite has queued the answering close: the last
                    // frame, so senders stop first.
                    let _ = self.with_ctx(io, |ctx, s| ctx.flush(s));
                    self.end();
                    let _ = self.send_out(io);
                    return Err(Quiet::Ended(WsError::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())),
                    )));
                }
                Ok(_) => {
                    // A ping (answered) or a pong.
                    self.heard_now();
                    let _ = self.with_ctx(io, |ctx, s| ctx.flush(s));
                    let _ = self.send_out(io);
                }
                Err(e) => {
                    if let Some(err) = self.failed(io, e) {
                        return Err(Quiet::Ended(err));
                    }
                    if let Some(after) = park_after
                        && self.active.elapsed() >= after
                        && !self.outbox.as_ref().is_some_and(|o| o.has_pending())
                    {
                        return Err(Quiet::Park);
                    }
                }
            }
        }
    }

    /// What a failed read means: `None` to read on (a ping may have gone
    /// out).
    fn failed(&mut self, io: &mut Upgraded<'_>, e: tungstenite::Error) -> Option<WsError> {
        use tungstenite::Error as E;
        if io.is_stopping() {
            return Some(self.close_with(
                io,
                CloseCode::Away,
                "server shutting down",
                WsError::ShuttingDown,
            ));
        }
        match e {
            E::Io(e) if is_wait(&e) => self.silence(io),
            E::Capacity(_) => {
                Some(self.close_with(io, CloseCode::Size, "message too large", WsError::TooLarge))
            }
            E::Utf8(why) => {
                let err = WsError::Protocol(format!("text that is not UTF-8: {why}"));
                Some(self.close_with(io, CloseCode::Invalid, "invalid UTF-8", err))
            }
            E::Protocol(why) => {
                let err = WsError::Protocol(why.to_string());
                Some(self.close_with(io, CloseCode::Protocol, "protocol error", err))
            }
            E::ConnectionClosed | E::AlreadyClosed => {
                self.end();
                Some(WsError::Closed(None))
            }
            E::Io(e) => {
                self.end();
                Some(WsError::Io(e))
            }
            other => {
                self.end();
                Some(WsError::Protocol(other.to_string()))
            }
        }
    }

    /// Keeps a silent connection alive: one ping per interval of silence
    /// (however often a sender wakes the read), closed (1001) at the idle
    /// timeout. `None` while it stays open.
    fn silence(&mut self, io: &mut Upgraded<'_>) -> Option<WsError> {
        let silent = self.heard.elapsed();
        if silent >= self.idle_timeout {
            return Some(self.close_with(io, CloseCode::Away, "idle", WsError::TimedOut));
        }
        let interval = self.ping_interval.saturating_sub(Duration::from_millis(1));
        let due = silent >= interval && self.pinged.is_none_or(|at| at.elapsed() >= interval);
        if due {
            self.pinged = Some(Instant::now());
            self.active = Instant::now();
            let ping = self.with_ctx(io, |ctx, s| {
                ctx.write(s, tungstenite::Message::Ping(Bytes::new()))
                    .and_then(|()| ctx.flush(s))
            });
            if ping.is_err() || self.send_out(io).is_err() {
                self.end();
                return Some(WsError::Closed(None));
            }
        }
        None
    }

    /// How long until [`Core::silence`] has something to do.
    fn next_timer(&self) -> Duration {
        let now = Instant::now();
        let until = |from: Instant, after: Duration| {
            from.checked_add(after)
                .map_or(Duration::MAX, |t| t.saturating_duration_since(now))
        };
        let ping = until(self.pinged.unwrap_or(self.heard), self.ping_interval);
        ping.min(until(self.heard, self.idle_timeout))
    }

    /// Sends a close frame (as far as the socket takes it) and ends.
    fn close_with(
        &mut self,
        io: &mut Upgraded<'_>,
        code: CloseCode,
        reason: &str,
        err: WsError,
    ) -> WsError {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let closed = self.with_ctx(io, |ctx, s| {
            ctx.close(s, Some(frame)).and_then(|()| ctx.flush(s))
        });
        if closed.is_err() {
            // tungstenite has given up on the connection (its reads ended:
            // the server is shutting down): the frame goes out by hand.
            self.pending.extend_from_slice(&close_frame(code, reason));
        }
        // The close is the last frame: senders stop first.
        self.end();
        let _ = self.send_out(io);
        err
    }

    fn send(&mut self, io: &mut Upgraded<'_>, msg: Message) -> Result<(), WsError> {
        self.send_queued(io)?;
        self.active = Instant::now();
        self.with_ctx(io, |ctx, s| {
            ctx.write(s, to_tungstenite(msg))
                .and_then(|()| ctx.flush(s))
        })
        .map_err(|e| self.write_failed(e))?;
        self.send_out(io)
            .map_err(|e| self.write_failed(tungstenite::Error::Io(e)))
    }

    /// Closes with `code` and `reason`, and waits (up to the ping interval)
    /// for the client's answering close.
    fn close(&mut self, io: &mut Upgraded<'_>, code: u16, reason: &str) -> Result<(), WsError> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.send_queued(io);
        let closed = self.with_ctx(io, |ctx, s| ctx.close(s, Some(frame)));
        self.end();
        closed.map_err(|e| WsError::Protocol(e.to_string()))?;
        let _ = self.with_ctx(io, |ctx, s| ctx.flush(s));
        let _ = self.send_out(io);
        let wait = self.ping_interval.min(Duration::from_secs(60));
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let read = self.with_ctx(io, |ctx, s| ctx.read(s));
            let _ = self.send_out(io);
            match read {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if is_wait(&e) => {}
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// An unmasked close frame with `code` and `reason` (cut to fit a
/// control frame).
fn close_frame(code: CloseCode, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut raw = vec![0x88, 2 + reason.len() as u8];
    raw.extend_from_slice(&u16::from(code).to_be_bytes());
    raw.extend_from_slice(reason);
    raw
}

impl<'a> WebSocket<'a> {
    fn new(mut io: Upgraded<'a>, options: &WsOptions, protocol: Option<String>) -> Self {
        let core = Core::new(options);
        let _ = io.set_read_timeout(Some(core.read_wait()));
        WebSocket { io, core, protocol }
    }

    /// A handle other coroutines can send on this connection with.
    pub fn sender(&mut self) -> WsSender {
        let outbox = match &self.core.outbox {
            Some(outbox) => Arc::clone(outbox),
            None => {
                self.core.point_wake(&mut self.io);
                let outbox = self.core.outbox();
                // Senders write to the socket's number: it must be taken
                // from them before the socket closes, also when this
                // WebSocket is forgotten rather than dropped (its drop
                // does it otherwise), or they could write into whatever
                // connection gets the number next.
                let ending = Arc::clone(&outbox);
                self.io.at_end(move || ending.end());
                outbox
            }
        };
        WsSender { outbox }
    }

    /// The subprotocol chosen in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next text or binary message (fragments joined). Pings are
    /// answered and the client pinged when silent, meanwhile. An error
    /// means the connection is over (closed as the error says).
    pub fn recv(&mut self) -> Result<Message, WsError> {
        match self.core.recv(&mut self.io, None) {
            Ok(msg) => Ok(msg),
            Err(Quiet::Ended(e)) => Err(e),
            Err(Quiet::Park) => unreachable!("recv without park_after never parks"),
        }
    }

    /// Sends a message (and flushes it), after any that other coroutines
    /// queued.
    pub fn send(&mut self, msg: impl Into<Message>) -> Result<(), WsError> {
        self.core.send(&mut self.io, msg.into())
    }

    /// Closes the connection with `code` (1000: normal) and `reason`, and
    /// waits (up to the ping interval) for the client's answering close.
    pub fn close(mut self, code: u16, reason: &str) -> Result<(), WsError> {
        self.core.close(&mut self.io, code, reason)
    }
}

// ---------------------------------------------------------------------------
// WsEvents: a connection that holds no coroutine while it is idle

type OnOpen = dyn Fn(&WsConn<'_>) + Send + Sync;
type OnMessage = dyn Fn(&WsConn<'_>, Message) + Send + Sync;
type OnClose = dyn Fn(&WsConn<'_>, &WsError) + Send + Sync;

/// A WebSocket endpoint written as callbacks: `on_message` runs for each
/// message, on a coroutine (it may block: call a database, sleep), and
/// between messages the connection holds no coroutine at all. An idle
/// [`WebSocket`] keeps its coroutine's stack (at least three resident
/// pages: `docs/performance.md#websocket`); an idle `WsEvents` connection
/// parks its socket and protocol state in the server's parking lot, like
/// an idle keep-alive connection, and is picked up again when the client
/// sends, a [`WsSender`] sends, or a ping is due. For endpoints that hold
/// many mostly idle connections (notifications, chat rooms, dashboards).
///
/// ```no_run
/// use coserve::ws::WsEvents;
/// use coserve::{Config, Router, Server};
///
/// let echo = WsEvents::new(|conn, msg| {
///     let _ = conn.send(msg);
/// })
/// .on_open(|conn| log::info!("{:?} joined", conn.request().peer_addr()));
/// let app = Router::new().ws("/echo", echo);
/// Server::bind("127.0.0.1:8080", Config::new())?.serve(app)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Connections park on the coroutine engine once nothing has gone either
/// way for [`Config::release_idle_after`](crate::Config::release_idle_after);
/// on the thread engine and over TLS they keep their thread or coroutine,
/// and the callbacks run the same way.
#[derive(Clone)]
pub struct WsEvents {
    on_open: Option<Arc<OnOpen>>,
    on_message: Arc<OnMessage>,
    on_close: Option<Arc<OnClose>>,
    options: WsOptions,
}

impl fmt::Debug for WsEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsEvents")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl WsEvents {
    /// An endpoint that calls `on_message` for every text or binary
    /// message, with the default [`WsOptions`].
    pub fn new<F>(on_message: F) -> WsEvents
    where
        F: Fn(&WsConn<'_>, Message) + Send + Sync + 'static,
    {
        WsEvents {
            on_open: None,
            on_message: Arc::new(on_message),
            on_close: None,
            options: WsOptions::default(),
        }
    }

    /// Runs `f` once the connection is open, before its first message.
    pub fn on_open<F>(mut self, f: F) -> WsEvents
    where
        F: Fn(&WsConn<'_>) + Send + Sync + 'static,
    {
        self.on_open = Some(Arc::new(f));
        self
    }

    /// Runs `f` once when the connection ends, with why (after
    /// `on_open`, never before it). At shutdown it may run on the parking
    /// lot's thread: keep it short.
    pub fn on_close<F>(mut self, f: F) -> WsEvents
    where
        F: Fn(&WsConn<'_>, &WsError) + Send + Sync + 'static,
    {
        self.on_close = Some(Arc::new(f));
        self
    }

    /// The same endpoint with these settings.
    pub fn options(mut self, options: WsOptions) -> WsEvents {
        self.options = options;
        self
    }
}

impl From<WsEvents> for Ws {
    fn from(events: WsEvents) -> Ws {
        Ws {
            options: Arc::new(events.options.clone()),
            mode: Mode::Events(Arc::new(events)),
        }
    }
}

/// A [`WsEvents`] connection, as its callbacks see it.
pub struct WsConn<'a> {
    request: &'a Request,
    protocol: Option<&'a str>,
    outbox: &'a Arc<Outbox>,
    closing: &'a Mutex<Option<(u16, String)>>,
}

impl fmt::Debug for WsConn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConn")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl WsConn<'_> {
    /// The handshake request.
    pub fn request(&self) -> &Request {
        self.request
    }

    /// The subprotocol chosen in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// Queues `msg`; it goes out when the callback returns, in order. Fails
    /// as [`WsSender::send`] does.
    pub fn send(&self, msg: impl Into<Message>) -> Result<(), WsError> {
        self.sender().send(msg)
    }

    /// A handle to send on this connection from anywhere, later.
    pub fn sender(&self) -> WsSender {
        WsSender {
            outbox: Arc::clone(self.outbox),
        }
    }

    /// Closes the connection with `code` (1000: normal) and `reason` once
    /// the callback returns (after what was queued before).
    pub fn close(&self, code: u16, reason: &str) {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner()) = Some((code, reason.to_string()));
    }
}

/// A [`WsEvents`] connection between its runs: what parks in the lot.
pub(crate) struct EventsConn {
    events: Arc<WsEvents>,
    core: Core,
    request: Request,
    protocol: Option<String>,
    opened: bool,
    closing: Mutex<Option<(u16, String)>>,
}

/// How [`EventsConn::run`] ended.
pub(crate) enum Step {
    /// The connection is over: close it.
    Closed,
    /// Nothing to do for now: park until the client sends, a sender sends,
    /// or this time has passed (a ping or the idle timeout is due).
    Park(Duration),
}

impl fmt::Debug for EventsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsConn")
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl EventsConn {
    fn new(events: Arc<WsEvents>, request: Request, protocol: Option<String>) -> EventsConn {
        let mut core = Core::new(&events.options);
        core.outbox = Some(Outbox::new());
        EventsConn {
            events,
            core,
            request,
            protocol,
            opened: false,
            closing: Mutex::new(None),
        }
    }

    /// Runs the connection on `io` (`read`: bytes the client sent after
    /// its handshake) until it ends, or, with `park_after`, until it has
    /// been quiet that long.
    pub(crate) fn run(
        &mut self,
        io: &mut dyn Transport,
        read: Bytes,
        stopping: &AtomicBool,
        park_after: Option<Duration>,
    ) -> Step {
        let EventsConn {
            events,
            core,
            request,
            protocol,
            opened,
            closing,
        } = self;
        let closing: &Mutex<_> = closing;
        let mut io = Upgraded::new(io, read, stopping, request, None);
        let wait = park_after.map_or(core.read_wait(), |p| p.min(core.read_wait()));
        let _ = io.set_read_timeout(Some(wait));
        let outbox = core.outbox();
        // Beyond the core's handle and this one, any are senders, and a
        // sender needs a wake (made once there is one).
        let has_senders = |outbox: &Arc<Outbox>| Arc::strong_count(outbox) > 2;
        let mut waking = has_senders(&outbox);
        if waking {
            core.point_wake(&mut io);
        }
        let conn = WsConn {
            request,
            protocol: protocol.as_deref(),
            outbox: &outbox,
            closing,
        };
        let call = |f: &mut dyn FnMut()| {
            if catch_unwind(AssertUnwindSafe(f)).is_err() {
                log::error!("{:?}: a WebSocket callback panicked", request.peer_addr());
                return false;
            }
            true
        };
        let ended = |core: &mut Core, conn: &WsConn<'_>, why: WsError| {
            core.end();
            if let Some(on_close) = &events.on_close {
                call(&mut || on_close(conn, &why));
            }
            Step::Closed
        };
        if !*opened {
            *opened = true;
            core.active = Instant::now();
            if let Some(on_open) = &events.on_open
                && !call(&mut || on_open(&conn))
            {
                let err = core.close_with(&mut io, CloseCode::Error, "", WsError::Closed(None));
                return ended(core, &conn, err);
            }
            if !waking && has_senders(&outbox) {
                core.point_wake(&mut io);
                waking = true;
            }
        } else if let Some(err) = core.silence(&mut io) {
            // Back from the lot for a ping or the idle timeout.
            return ended(core, &conn, err);
        }
        loop {
            let close = closing.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((code, reason)) = close {
                let _ = core.send_queued(&mut io);
                let err = match core.close(&mut io, code, &reason) {
                    Ok(()) => WsError::Closed(Some((code, reason))),
                    Err(e) => e,
                };
                return ended(core, &conn, err);
            }
            match core.recv(&mut io, park_after) {
                Ok(msg) => {
                    let mut msg = Some(msg);
                    let on_message = &mut || {
                        if let Some(msg) = msg.take() {
                            (events.on_message)(&conn, msg);
                        }
                    };
                    if !call(on_message) {
                        let err = core.close_with(
                            &mut io,
                            CloseCode::Error,
                            "",
                            WsError::Protocol("the message callback panicked".into()),
                        );
                        return ended(core, &conn, err);
                    }
                    if !waking && has_senders(&outbox) {
                        core.point_wake(&mut io);
                        waking = true;
                    }
                    let _ = core.send_queued(&mut io);
                }
                Err(Quiet::Ended(err)) => return ended(core, &conn, err),
                Err(Quiet::Park) => {
                    // A sender that queues from now on finds no wake; the
                    // lot looks at the queue once it has parked the
                    // connection (`EventsConn::parked`).
                    outbox.set_wake(Wake::Nothing);
                    if outbox.has_pending() {
                        let _ = io.set_read_timeout(Some(wait));
                        core.point_wake(&mut io);
                        continue;
                    }
                    return Step::Park(core.next_timer());
                }
            }
        }
    }

    /// Says how to take the connection out of the lot, once it is parked
    /// there; if a sender queued meanwhile, does so at once.
    pub(crate) fn parked(outbox: &Arc<Outbox>, unpark: Box<dyn FnOnce() + Send>) {
        {
            let mut wake = outbox.wake.lock().unwrap_or_else(|e| e.into_inner());
            // Anything else is newer: the lot has handed the connection on
            // already (its client spoke), and its new run set its wake.
            if !matches!(*wake, Wake::Nothing) {
                return;
            }
            *wake = Wake::Unpark(unpark);
        }
        if outbox.has_pending() {
            outbox.wake();
        }
    }

    /// See [`Outbox::forget_socket`]: the parked socket is about to be
    /// handed to a new coroutine.
    pub(crate) fn forget_socket(&self) {
        if let Some(outbox) = &self.core.outbox {
            outbox.forget_socket();
        }
    }

    /// The handle [`EventsConn::parked`] takes.
    pub(crate) fn outbox(&self) -> Arc<Outbox> {
        Arc::clone(
            self.core
                .outbox
                .as_ref()
                .expect("an events connection has an outbox"),
        )
    }

    /// Ends a parked connection (the server shuts down): close 1001, as
    /// far as the socket takes it at once, and `on_close`.
    pub(crate) fn close_parked(mut self, mut stream: &std::net::TcpStream) {
        // Senders stop first; what one left unsent goes before the close.
        self.core.end();
        let mut out = std::mem::take(&mut *self.outbox().rest());
        out.extend_from_slice(&close_frame(CloseCode::Away, "server shutting down"));
        let _ = stream.write(&out);
        if let Some(on_close) = &self.events.on_close {
            let outbox = self.outbox();
            let conn = WsConn {
                request: &self.request,
                protocol: self.protocol.as_deref(),
                outbox: &outbox,
                closing: &self.closing,
            };
            if catch_unwind(AssertUnwindSafe(|| on_close(&conn, &WsError::ShuttingDown))).is_err() {
                log::error!("a WebSocket on_close callback panicked");
            }
        }
    }
}
