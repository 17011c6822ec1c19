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
//!   at 4 KiB (tungstenite's default of 128 KiB would be held by every
//!   idle connection).
//! - **Keep-alive.** With nothing heard for the ping interval, a ping is
//!   sent; with nothing heard for the idle timeout, the connection closes
//!   (1001). Pings are answered with pongs, and a client's close with a
//!   close.
//! - **Shutdown.** When the server shuts down, [`WebSocket::recv`] sends
//!   close 1001 and returns [`WsError::ShuttingDown`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::handler::Handler;
use crate::parse::Version;
use crate::request::{Method, Request};
use crate::response::Response;
use crate::status::StatusCode;
use crate::transport::ReadWaker;
use crate::upgrade::Upgraded;

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
    handler: Arc<WsHandler>,
    options: Arc<WsOptions>,
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
            handler: Arc::new(handler),
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
        let handler = Arc::clone(&self.handler);
        let options = Arc::clone(&self.options);
        let chosen = protocol.clone();
        let mut resp = Response::upgrade("websocket", move |upgraded| {
            let req = upgraded.request();
            let ws = WebSocket::new(upgraded, &options, chosen);
            handler(req, ws);
        })
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
    ws: tungstenite::WebSocket<Upgraded<'a>>,
    protocol: Option<String>,
    ping_interval: Duration,
    idle_timeout: Duration,
    heard: Instant,
    /// When the last ping went out, if one did since `heard`.
    pinged: Option<Instant>,
    done: bool,
    outbox: Option<Arc<Outbox>>,
}

/// Messages other coroutines have given a connection to send.
struct Outbox {
    queue: Mutex<VecDeque<Message>>,
    /// Cleared when the connection ends: sends then fail.
    open: AtomicBool,
    /// Makes the connection's waiting read return, to send them.
    wake: Option<ReadWaker>,
}

/// The most messages a sender may queue for one connection before
/// [`WsSender::send`] refuses more: a client that does not read cannot make
/// the server hold more.
pub const MAX_QUEUED: usize = 1024;

/// Sends on a [`WebSocket`] from any coroutine or thread: a cheap,
/// cloneable handle, for broadcast hubs and the like. A message is queued
/// and the connection's coroutine, waiting in [`WebSocket::recv`], is woken
/// to send it; messages go out in the order they were queued. A
/// connection's coroutine sends only while it is in `recv` (or
/// `send`): queue from elsewhere while it does other work, and they go out
/// at its next `recv`.
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
        {
            let mut queue = self.outbox.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.len() >= MAX_QUEUED {
                return Err(WsError::Io(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the connection's send queue is full",
                )));
            }
            queue.push_back(msg.into());
        }
        if let Some(wake) = &self.outbox.wake {
            wake();
        }
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

impl Drop for WebSocket<'_> {
    fn drop(&mut self) {
        if let Some(outbox) = &self.outbox {
            outbox.open.store(false, Ordering::Release);
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

impl<'a> WebSocket<'a> {
    fn new(mut upgraded: Upgraded<'a>, options: &WsOptions, protocol: Option<String>) -> Self {
        let wait = options.ping_interval.min(options.idle_timeout);
        let _ = upgraded.set_read_timeout(Some(wait));
        let config = WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_message_size(Some(options.max_message))
            .max_frame_size(Some(options.max_frame));
        WebSocket {
            ws: tungstenite::WebSocket::from_raw_socket(upgraded, Role::Server, Some(config)),
            protocol,
            ping_interval: options.ping_interval,
            idle_timeout: options.idle_timeout,
            heard: Instant::now(),
            pinged: None,
            done: false,
            outbox: None,
        }
    }

    /// A handle other coroutines can send on this connection with.
    pub fn sender(&mut self) -> WsSender {
        if self.outbox.is_none() {
            let wake = self.ws.get_mut().read_waker();
            if wake.is_none() {
                let wait = self.ping_interval.min(self.idle_timeout).min(POLL_QUEUE);
                let _ = self.ws.get_mut().set_read_timeout(Some(wait));
            }
            self.outbox = Some(Arc::new(Outbox {
                queue: Mutex::new(VecDeque::new()),
                open: AtomicBool::new(!self.done),
                wake,
            }));
        }
        WsSender {
            outbox: Arc::clone(self.outbox.as_ref().expect("just made")),
        }
    }

    /// Sends what other coroutines queued.
    fn send_queued(&mut self) -> Result<(), WsError> {
        let Some(outbox) = &self.outbox else {
            return Ok(());
        };
        let queued: Vec<Message> = {
            let mut queue = outbox.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.drain(..).collect()
        };
        if queued.is_empty() {
            return Ok(());
        }
        for msg in queued {
            self.ws
                .write(to_tungstenite(msg))
                .map_err(|e| self.write_failed(e))?;
        }
        self.ws.flush().map_err(|e| self.write_failed(e))
    }

    fn write_failed(&mut self, e: tungstenite::Error) -> WsError {
        self.done = true;
        if let Some(outbox) = &self.outbox {
            outbox.open.store(false, Ordering::Release);
        }
        match e {
            tungstenite::Error::Io(e) => WsError::Io(e),
            other => WsError::Protocol(other.to_string()),
        }
    }

    /// The subprotocol chosen in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next text or binary message (fragments joined). Pings are
    /// answered and the client pinged when silent, meanwhile. An error
    /// means the connection is over (closed as the error says).
    pub fn recv(&mut self) -> Result<Message, WsError> {
        loop {
            if self.done {
                return Err(WsError::Closed(None));
            }
            self.send_queued()?;
            match self.ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    self.heard = Instant::now();
                    self.pinged = None;
                    return Ok(Message::Text(text.as_str().to_string()));
                }
                Ok(tungstenite::Message::Binary(bytes)) => {
                    self.heard = Instant::now();
                    self.pinged = None;
                    return Ok(Message::Binary(bytes));
                }
                Ok(tungstenite::Message::Close(frame)) => {
                    // tungstenite has queued the answering close.
                    let _ = self.ws.flush();
                    self.done = true;
                    return Err(WsError::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())),
                    ));
                }
                Ok(_) => {
                    // A ping (answered) or a pong.
                    self.heard = Instant::now();
                    self.pinged = None;
                    let _ = self.ws.flush();
                }
                Err(e) => {
                    if let Some(err) = self.failed(e) {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// What a failed read means: `None` to read on (a ping was sent).
    fn failed(&mut self, e: tungstenite::Error) -> Option<WsError> {
        use tungstenite::Error as E;
        if self.ws.get_ref().is_stopping() {
            return Some(self.close_with(
                CloseCode::Away,
                "server shutting down",
                WsError::ShuttingDown,
            ));
        }
        match e {
            E::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let silent = self.heard.elapsed();
                if silent >= self.idle_timeout {
                    return Some(self.close_with(CloseCode::Away, "idle", WsError::TimedOut));
                }
                // One ping per interval of silence, however often a sender
                // wakes the read.
                let interval = self.ping_interval.saturating_sub(Duration::from_millis(1));
                let due =
                    silent >= interval && self.pinged.is_none_or(|at| at.elapsed() >= interval);
                if due {
                    self.pinged = Some(Instant::now());
                    if self
                        .ws
                        .send(tungstenite::Message::Ping(Bytes::new()))
                        .is_err()
                    {
                        self.done = true;
                        return Some(WsError::Closed(None));
                    }
                }
                None
            }
            E::Capacity(_) => {
                Some(self.close_with(CloseCode::Size, "message too large", WsError::TooLarge))
            }
            E::Utf8(why) => {
                let err = WsError::Protocol(format!("text that is not UTF-8: {why}"));
                Some(self.close_with(CloseCode::Invalid, "invalid UTF-8", err))
            }
            E::Protocol(why) => {
                let err = WsError::Protocol(why.to_string());
                Some(self.close_with(CloseCode::Protocol, "protocol error", err))
            }
            E::ConnectionClosed | E::AlreadyClosed => {
                self.done = true;
                Some(WsError::Closed(None))
            }
            E::Io(e) => {
                self.done = true;
                Some(WsError::Io(e))
            }
            other => {
                self.done = true;
                Some(WsError::Protocol(other.to_string()))
            }
        }
    }

    /// Sends a close frame (as far as the socket takes it) and ends.
    fn close_with(&mut self, code: CloseCode, reason: &str, err: WsError) -> WsError {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if self.ws.close(Some(frame)).is_ok() {
            let _ = self.ws.flush();
        } else {
            // tungstenite has given up on the connection (its reads ended:
            // the server is shutting down): the frame goes out by hand, an
            // unmasked close with its code and reason.
            let reason = &reason.as_bytes()[..reason.len().min(123)];
            let mut raw = vec![0x88, 2 + reason.len() as u8];
            raw.extend_from_slice(&u16::from(code).to_be_bytes());
            raw.extend_from_slice(reason);
            let out = self.ws.get_mut();
            let _ = out.write_all(&raw).and_then(|()| out.flush());
        }
        self.done = true;
        if let Some(outbox) = &self.outbox {
            outbox.open.store(false, Ordering::Release);
        }
        err
    }

    /// Sends a message (and flushes it), after any that other coroutines
    /// queued.
    pub fn send(&mut self, msg: impl Into<Message>) -> Result<(), WsError> {
        self.send_queued()?;
        self.ws
            .send(to_tungstenite(msg.into()))
            .map_err(|e| self.write_failed(e))
    }

    /// Closes the connection with `code` (1000: normal) and `reason`, and
    /// waits (up to the ping interval) for the client's answering close.
    pub fn close(mut self, code: u16, reason: &str) -> Result<(), WsError> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.ws
            .close(Some(frame))
            .map_err(|e| WsError::Protocol(e.to_string()))?;
        let _ = self.ws.flush();
        let until = Instant::now() + self.ping_interval;
        while Instant::now() < until {
            match self.ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        Ok(())
    }
}
