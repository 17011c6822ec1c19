//! One connection's life: read, parse, answer, keep alive or close.
//!
//! The loop is generic over [`Transport`], so the same code runs on a may
//! coroutine, an OS thread, a TLS stream, or an in-memory buffer in a test.
//! It follows may_minihttp's hot loop: read what the socket has, answer
//! every complete request in the buffer, and write the batched responses
//! once before reading again.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;

use crate::access_log;
use crate::body::{self, BodyError, Framing};
use crate::clock;
use crate::handler::Handler;
use crate::parse::{Fields, Limits, ParseError, Status, Version, parse_head_into};
use crate::request::{Method, Request, TlsInfo};
use crate::request_body::{self, BodyPolicy, Source};
use crate::response::{
    Body, ChunkedWriter, ConnectionField, Inner, Part, Response, Stream, write_head,
};
use crate::status::StatusCode;
use crate::transport::{READ_CHUNK, Transport, close_gracefully, read_more};
use crate::upgrade::{Upgrade, Upgrading};

/// Per-connection settings, shared by every connection of a server.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    /// A connection idle this long gives back its buffers, and parks if
    /// `park` says it can.
    pub release_after: Duration,
    /// Whether an idle connection ends [`serve`] with [`Ended::Idle`], to
    /// wait in the parking lot (see `server/park.rs`), rather than holding
    /// its flow of control.
    pub park: bool,
}

/// What a connection shares with its server while it runs.
pub(crate) struct ServerState<'a> {
    /// Set when the server shuts down: finish the response in flight, then
    /// close.
    pub stopping: &'a AtomicBool,
    /// Connections waiting for a request without buffers and without
    /// parking, counted for `ServerHandle::released_connections`.
    pub released: &'a AtomicUsize,
    /// This connection's: set once it has sent a response, so that
    /// shutdown knows it is idle between requests rather than waiting for
    /// its first.
    pub answered: &'a AtomicBool,
}

/// How [`serve`] ended.
#[derive(Debug)]
#[must_use = "an upgrade must be run, and an idle connection parked or closed"]
pub(crate) enum Ended {
    /// The connection is done: close it.
    Closed,
    /// The connection is idle between requests, with nothing buffered:
    /// park it, and serve it again when it is readable.
    Idle,
    /// A handler upgraded the connection and its `101` has gone out: run
    /// the new protocol on it ([`Ended::upgrade_here`] or a flow of control
    /// of its own), then close it.
    Upgrade(Box<Upgrading>),
}

impl Ended {
    /// Runs an upgrade on `io` now, on this flow of control, which ends the
    /// connection; any other end is returned as it is.
    pub(crate) fn upgrade_here<T: Transport + ?Sized>(
        self,
        io: &mut T,
        stopping: &AtomicBool,
    ) -> Ended {
        match self {
            Ended::Upgrade(upgrading) => {
                upgrading.run(io, stopping);
                Ended::Closed
            }
            other => other,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, Ended::Idle)
    }
}

/// File bodies up to this size are read into the write buffer and batched
/// with the head; larger ones go out with [`Transport::send_file`], which
/// copies nothing through the server (docs/performance.md#whole-site).
const INLINE_FILE_MAX: u64 = 4 * 1024;
/// Flush the batched responses once they reach this size.
const WRITE_BATCH: usize = 64 * 1024;
/// Bodies in memory above this size are not copied into the write buffer:
/// the batch and the body go out in one vectored write.
const VECTORED_MIN: usize = 2048;
/// How long a closing connection drains what the client still sends, so that
/// the close does not become a reset that destroys the response in flight.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// The 500 that replaces a response the handler made but that cannot go
/// out: one with a refused header field, or with an informational status,
/// which is never a final response (RFC 9110 §15.2). Out of line: it is
/// rare, and its formatting would widen the frame of every response.
#[cold]
#[inline(never)]
fn unsendable(req: Option<&Request>, resp: &Response) -> Response {
    let line = req.map_or("-", Request::request_line);
    match resp.refused_header() {
        Some(refused) => log::error!("{line}: the handler's response was not sent: {refused}"),
        None if resp.body_ref().is_upgrade() => log::error!(
            "{line}: the handler's upgrade was not sent: only a 101 to an HTTP/1.1 request \
             that is not HEAD can upgrade"
        ),
        None => log::error!(
            "{line}: the handler's response was not sent: {} is informational, never a final response",
            resp.status()
        ),
    }
    Response::error(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Whether `resp`, an upgrade, may answer `req`: a `101` to an HTTP/1.1
/// request that is not `HEAD`, with a valid header section.
fn upgradable(req: &Request, resp: &Response) -> bool {
    resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && resp.refused_header().is_none()
        && req.version() == Version::Http11
        && req.method() != &Method::Head
}

/// Why a request was refused before its handler ran: its head says the
/// body cannot be read safely, or the body itself could not be.
#[derive(Debug)]
enum Refused {
    Head(ParseError),
    Body(BodyError),
}

impl Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::Head(e) => e.status(),
            Refused::Body(e) => e.status(),
        }
    }
}

impl From<ParseError> for Refused {
    fn from(e: ParseError) -> Refused {
        Refused::Head(e)
    }
}

impl From<BodyError> for Refused {
    fn from(e: BodyError) -> Refused {
        Refused::Body(e)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Head(e) => e.fmt(f),
            Refused::Body(e) => e.fmt(f),
        }
    }
}

/// How a handler that streams its body gets it.
struct Streamed {
    framing: Framing,
    continues: bool,
    max: u64,
}

/// Runs the handler; a panic is a `500`, and the connection closes.
#[inline]
fn call(handler: &dyn Handler, req: &Request) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(req))) {
        Ok(resp) => resp,
        Err(_) => {
            log::error!("handler panicked on {:?}", req.request_line());
            Response::error(StatusCode::INTERNAL_SERVER_ERROR).close()
        }
    }
}

/// Why reading stopped.
enum ReadEnd {
    Eof,
    Timeout,
    Error,
    /// Idle long enough to park (see [`ConnConfig::park`]).
    Park,
}

/// A read's result as the connection sees it: bytes, or why reading stops.
fn read_end(result: io::Result<usize>) -> Result<usize, ReadEnd> {
    match result {
        Ok(0) => Err(ReadEnd::Eof),
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(ReadEnd::Timeout)
        }
        Err(_) => Err(ReadEnd::Error),
    }
}

/// Reads more bytes into `buf`, waiting at most `timeout`.
fn fill<T: Transport + ?Sized>(
    io: &mut T,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<(), ReadEnd> {
    read_end(read_more(io, buf, timeout)).map(drop)
}

struct Conn<'a, T: Transport + ?Sized> {
    io: &'a mut T,
    peer: Option<SocketAddr>,
    tls: Option<Arc<TlsInfo>>,
    config: &'a ConnConfig,
    server: ServerState<'a>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The last request's field vector, reused by the next parse.
    fields: Fields,
    /// An upgrade answered by the last response, and what the client sent
    /// after its head.
    upgrading: Option<(Upgrade, bytes::Bytes)>,
}

/// Serves one connection until it closes, or (with [`ConnConfig::park`])
/// until it is idle long enough to park.
pub(crate) fn serve<T: Transport + ?Sized>(
    io: &mut T,
    peer: Option<SocketAddr>,
    tls: Option<Arc<TlsInfo>>,
    handler: &dyn Handler,
    config: &ConnConfig,
    server: ServerState<'_>,
) -> Ended {
    let _ = io.set_write_timeout(Some(config.write_timeout));
    let mut conn = Conn {
        io,
        peer,
        tls,
        config,
        server,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        fields: Fields::new(),
        upgrading: None,
    };
    conn.run(handler)
}

impl<T: Transport + ?Sized> Conn<'_, T> {
    fn run(&mut self, handler: &dyn Handler) -> Ended {
        // When the head of a request under way times out (on the coarse
        // clock, from the first time the head was found incomplete: a
        // request whose head comes whole in one read, nearly all of them,
        // reads no clock).
        let mut head_deadline: Option<Duration> = None;
        let mut answered = false;
        loop {
            let head = match parse_head_into(&self.rbuf, &self.config.limits, &mut self.fields) {
                Ok(Status::Complete(head)) => head,
                Ok(Status::Partial) => {
                    if self.flush().is_err() {
                        return Ended::Closed;
                    }
                    // Whether part of the next request has arrived
                    // (perhaps read with the last one's body): then its
                    // head is under way, and the buffer is not given back.
                    let started = !self.rbuf.is_empty();
                    if !started {
                        head_deadline = None;
                        // Between requests, shutdown closes; a connection
                        // that has had no answer yet (accepted as shutdown
                        // began, or back from parking with a request) reads
                        // its request first.
                        if answered && self.server.stopping.load(Ordering::Acquire) {
                            return Ended::Closed;
                        }
                    }
                    let timeout = if started {
                        let deadline = *head_deadline
                            .get_or_insert_with(|| clock::deadline(self.config.header_timeout));
                        match deadline.checked_sub(clock::monotonic()) {
                            Some(left) if !left.is_zero() => left,
                            _ => return self.fail(StatusCode::REQUEST_TIMEOUT, None),
                        }
                    } else {
                        self.config.idle_timeout
                    };
                    let read = if !started {
                        self.read_idle(timeout)
                    } else {
                        fill(self.io, &mut self.rbuf, timeout)
                    };
                    match read {
                        Ok(()) => continue,
                        // A client that started a request and stalled gets a 408;
                        // an idle one is just closed.
                        Err(ReadEnd::Timeout) if started => {
                            return self.fail(StatusCode::REQUEST_TIMEOUT, None);
                        }
                        Err(ReadEnd::Park) => return Ended::Idle,
                        Err(_) => return Ended::Closed,
                    }
                }
                Err(e) => {
                    log::debug!("{:?}: {}", self.peer, e);
                    return self.fail(e.status(), None);
                }
            };
            let raw = self.rbuf.split_to(head.len).freeze();
            head_deadline = None;
            let mut req = Request::new(raw, head, self.peer);
            req.set_tls(self.tls.clone());
            let resp = match self.read_body(&mut req, handler) {
                Ok(None) => call(handler, &req),
                Ok(Some(streamed)) => match self.call_streamed(handler, &mut req, streamed) {
                    Some(resp) => resp,
                    None => return Ended::Closed,
                },
                Err(status) => return self.fail(status, Some(&req)),
            };
            if !self.respond(Some(&req), resp) {
                return match self.upgrading.take() {
                    Some((upgrade, read)) => {
                        Ended::Upgrade(Upgrading::new(upgrade, read, req, self.config.idle_timeout))
                    }
                    None => Ended::Closed,
                };
            }
            answered = true;
            self.fields = req.into_fields();
        }
    }

    /// Waits at most `timeout` for the next request on an idle connection.
    ///
    /// A connection that stays idle for `release_after` gives back its
    /// buffers. Then it parks, when it can ([`ReadEnd::Park`]); otherwise it
    /// waits out the rest without a buffer, reading the first bytes onto the
    /// stack. Busy keep-alive clients never wait that long, so they keep
    /// their buffers and pay nothing.
    fn read_idle(&mut self, timeout: Duration) -> Result<(), ReadEnd> {
        let first = timeout.min(self.config.release_after);
        match fill(self.io, &mut self.rbuf, first) {
            Err(ReadEnd::Timeout) if first < timeout => {}
            other => return other,
        }
        self.release();
        if self.config.park {
            return Err(ReadEnd::Park);
        }
        self.server.released.fetch_add(1, Ordering::AcqRel);
        let read = self.read_after_release(timeout - first);
        self.server.released.fetch_sub(1, Ordering::AcqRel);
        read
    }

    /// The rest of an idle wait once the buffers are given back, for a
    /// connection that cannot park. Out of line: its 1 KiB buffer would
    /// otherwise sit in the frame of every request.
    #[inline(never)]
    fn read_after_release(&mut self, timeout: Duration) -> Result<(), ReadEnd> {
        if self.io.set_read_timeout(Some(timeout)).is_err() {
            return Err(ReadEnd::Error);
        }
        let mut first_bytes = [0u8; 1024];
        let n = read_end(self.io.read(&mut first_bytes))?;
        self.rbuf.reserve(READ_CHUNK.max(n));
        self.rbuf.extend_from_slice(&first_bytes[..n]);
        Ok(())
    }

    /// Gives back the buffers an idle connection does not need.
    fn release(&mut self) {
        debug_assert!(self.rbuf.is_empty() && self.wbuf.is_empty());
        self.rbuf = BytesMut::new();
        self.wbuf = BytesMut::new();
        self.fields = Fields::new();
    }

    /// Reads the whole body into the request, or says how the handler
    /// streams it, or which status refuses it.
    fn read_body(
        &mut self,
        req: &mut Request,
        handler: &dyn Handler,
    ) -> Result<Option<Streamed>, StatusCode> {
        let framing = body::framing(req).map_err(|e| self.refused(e.into()))?;
        let expects = body::expects_continue(req).map_err(|e| self.refused(e.into()))?;
        if framing == Framing::None {
            return Ok(None);
        }
        // Whether to invite the body with `100 Continue` (before reading
        // it whole, or at a streaming handler's first read): only an
        // HTTP/1.1 client that asked, and sent none of it yet.
        let continues = expects && req.version() == Version::Http11 && self.rbuf.is_empty();
        let policy = handler.body_policy(req);
        let max = policy.max(self.config.limits.max_body);
        // Refused before a client waiting for `100 Continue` is invited to
        // send it, and before a handler that streams runs.
        if let Framing::Length(n) = framing
            && n > max
        {
            return Err(self.refused(BodyError::TooLarge.into()));
        }
        if let BodyPolicy::Stream(_) = policy {
            return Ok(Some(Streamed {
                framing,
                continues,
                max,
            }));
        }
        self.read_framed_body(req, framing, continues, max)
            .map_err(|e| self.refused(e.into()))?;
        Ok(None)
    }

    /// Runs a handler that streams its body (see `request_body.rs`), and
    /// makes sure the body is read to its end before the next request, or
    /// that the connection closes. `None` if it must close now.
    #[inline(never)]
    fn call_streamed(
        &mut self,
        handler: &dyn Handler,
        req: &mut Request,
        streamed: Streamed,
    ) -> Option<Response> {
        req.set_streamed();
        // Earlier responses go out before this one's body is waited for.
        self.flush().ok()?;
        let req = &*req;
        let mut source = Source::new(
            &mut *self.io,
            &mut self.rbuf,
            streamed.framing,
            streamed.max,
            self.config.body_timeout,
            streamed.continues,
        );
        let resp = request_body::with_source(req, &mut source, || call(handler, req));
        // A connection that closes after this answer need not read the
        // rest first (the close lingers, so the answer still arrives).
        let closing = resp.closes()
            || !req.wants_keep_alive()
            || self.server.stopping.load(Ordering::Acquire);
        let complete = if closing {
            source.is_done()
        } else {
            source.finish()
        };
        if complete {
            Some(resp)
        } else if resp.body_ref().is_upgrade() {
            // What follows could be the body rather than the new protocol.
            Some(Response::error(StatusCode::INTERNAL_SERVER_ERROR).close())
        } else {
            // The rest of the body cannot be told from the next request.
            Some(resp.close())
        }
    }

    /// Logs why a request is refused; returns the status that says so.
    #[cold]
    fn refused(&self, why: Refused) -> StatusCode {
        log::debug!("{:?}: {why}", self.peer);
        why.status()
    }

    /// Reads a body that `framing` says is there. Out of line: most
    /// requests have none, and its frame would sit under every one.
    #[inline(never)]
    fn read_framed_body(
        &mut self,
        req: &mut Request,
        framing: Framing,
        continues: bool,
        max: u64,
    ) -> Result<(), BodyError> {
        // The deadline runs from the end of the head.
        let deadline = clock::deadline(self.config.body_timeout);
        if continues {
            self.wbuf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.flush().map_err(|_| BodyError::Incomplete)?;
        }
        let io = &mut *self.io;
        let body = body::read_body(&mut self.rbuf, framing, max, deadline, |buf, left| {
            body::body_read(read_more(io, buf, left)).map(drop)
        })?;
        req.set_body(body);
        Ok(())
    }

    /// Answers a request that cannot be served and closes.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, status: StatusCode, req: Option<&Request>) -> Ended {
        self.respond(req, Response::error(status).close());
        Ended::Closed
    }

    /// Queues a response. Returns whether the connection stays open.
    fn respond(&mut self, req: Option<&Request>, mut resp: Response) -> bool {
        // Shutdown now ends this connection's reads at once (see
        // `ServerState::answered`).
        if !self.server.answered.load(Ordering::Relaxed) {
            self.server.answered.store(true, Ordering::Release);
        }
        let upgrade = resp.body_ref().is_upgrade();
        if upgrade {
            return match req {
                Some(req) if upgradable(req, &resp) => self.upgrade(req, resp),
                _ => self.respond(req, unsendable(req, &resp)),
            };
        }
        if resp.refused_header().is_some() || resp.status().as_u16() < 200 {
            resp = unsendable(req, &resp);
        }
        let version = req.map(Request::version);
        let status = resp.status();
        let send_body =
            !matches!(req.map(Request::method), Some(Method::Head)) && !status.has_no_body();
        // A stream of no stated length: HTTP/1.1 gets chunks, HTTP/1.0
        // gets the body delimited by the close.
        let no_length = resp.body_ref().is_unsized_stream();
        let chunked = no_length && version == Some(Version::Http11);
        let keep_alive = req.is_some_and(Request::wants_keep_alive)
            && !resp.closes()
            && (chunked || !no_length)
            && !self.server.stopping.load(Ordering::Acquire);
        let connection = match (keep_alive, version) {
            (false, _) => ConnectionField::Close,
            (true, Some(Version::Http10)) => ConnectionField::KeepAlive,
            (true, _) => ConnectionField::Default,
        };
        write_head(&mut self.wbuf, &resp, connection, chunked);
        let mut body_len = if send_body {
            resp.body_ref().wire_len()
        } else {
            0
        };
        let ok = if send_body {
            match resp.into_body() {
                Body(Inner::Stream(stream)) => self.write_stream(stream, chunked, &mut body_len),
                body => self.queue_body(body),
            }
        } else {
            Ok(())
        };
        access_log::log(self.peer, req, status, body_len);
        let ok = ok.and_then(|()| {
            if !keep_alive || self.wbuf.len() >= WRITE_BATCH {
                self.flush()
            } else {
                Ok(())
            }
        });
        if ok.is_err() {
            // What is batched (earlier responses, perhaps a truncated one) still
            // goes out; the close tells the client the last one fell short.
            let _ = self.flush();
            return false;
        }
        if !keep_alive {
            close_gracefully(&mut *self.io, LINGER, LINGER_MAX_BYTES);
        }
        keep_alive
    }

    /// Sends the `101` of an upgrade and keeps its closure for [`Conn::run`]
    /// to hand back; the loop ends here.
    #[inline(never)]
    fn upgrade(&mut self, req: &Request, resp: Response) -> bool {
        write_head(&mut self.wbuf, &resp, ConnectionField::Upgrade, false);
        access_log::log(self.peer, Some(req), resp.status(), 0);
        if self.flush().is_err() {
            return false;
        }
        let Body(Inner::Upgrade(upgrade)) = resp.into_body() else {
            return false;
        };
        // What the client sent after its request head belongs to the new
        // protocol.
        let read = self.rbuf.split().freeze();
        self.upgrading = Some((upgrade, read));
        false
    }

    /// Runs a streamed body's closure against the connection, and counts
    /// in `sent` the body bytes that went out (for the access log), also
    /// when it fails. A closure that fails or panics, or a sized stream
    /// that breaks its length, leaves the response unterminated, and the
    /// connection is closed.
    fn write_stream(&mut self, stream: Stream, chunked: bool, sent: &mut u64) -> io::Result<()> {
        *sent = 0;
        self.flush()?;
        let mut out = match stream.1 {
            Some(len) => ChunkedWriter::sized(&mut *self.io, len),
            None => ChunkedWriter::new(&mut *self.io, chunked),
        };
        let result = match catch_unwind(AssertUnwindSafe(|| (stream.0)(&mut out))) {
            Ok(Ok(())) => out.finish().map(drop),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                log::error!("streamed body panicked");
                Err(io::Error::other("streamed body panicked"))
            }
        };
        *sent = out.written();
        result
    }

    fn queue_body(&mut self, body: Body) -> io::Result<()> {
        match body.0 {
            Inner::Empty => Ok(()),
            Inner::Bytes(b) if b.len() > VECTORED_MIN => self.write_with_batch(&b),
            Inner::Bytes(b) => {
                self.wbuf.extend_from_slice(&b);
                Ok(())
            }
            Inner::File { file, offset, len } => self.queue_file(&file, offset, len),
            // `respond` writes streams itself: they cannot be batched.
            Inner::Stream(_) => Err(io::Error::other("a streamed body cannot be queued")),
            // `respond` hands upgrades over itself.
            Inner::Upgrade(_) => Err(io::Error::other("an upgrade has no body to queue")),
            Inner::Parts { file, parts } => {
                for part in parts {
                    match part {
                        Part::Bytes(b) => self.wbuf.extend_from_slice(&b),
                        Part::File { offset, len } => self.queue_file(&file, offset, len)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// Small pieces are copied into the batch; large ones are streamed.
    fn queue_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        if len > INLINE_FILE_MAX {
            // What is batched (this head, and any responses before it)
            // rides in the file's first segment, and every segment leaves
            // full: with TCP_NODELAY alone, each sendfile call would end in
            // a short segment (docs/performance.md).
            let sent = self.io.send_file(&self.wbuf, file, offset, len);
            self.wbuf.clear();
            return sent;
        }
        let start = self.wbuf.len();
        self.wbuf.resize(start + len as usize, 0);
        let mut filled = 0;
        while filled < len as usize {
            let n = file.read_at(&mut self.wbuf[start + filled..], offset + filled as u64)?;
            if n == 0 {
                // The file shrank after we promised its length: the only
                // honest thing left is to close.
                self.wbuf.truncate(start);
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
            }
            filled += n;
        }
        Ok(())
    }

    /// Writes what is batched and then `body`, in one vectored write when
    /// the transport takes it whole, without copying the body.
    fn write_with_batch(&mut self, body: &[u8]) -> io::Result<()> {
        let mut head = 0;
        let mut done = 0;
        let result = loop {
            let bufs = [
                io::IoSlice::new(&self.wbuf[head..]),
                io::IoSlice::new(&body[done..]),
            ];
            match self.io.write_vectored(&bufs) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    let h = n.min(self.wbuf.len() - head);
                    head += h;
                    n -= h;
                    done += n;
                    if done == body.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.wbuf.clear();
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let result = self.io.write_all(&self.wbuf);
            self.wbuf.clear();
            result?;
        }
        self.io.flush()
    }
}
