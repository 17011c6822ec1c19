//! One connection's life: read, parse, answer, keep alive or close.
//!
//! The loop is generic over [`Transport`] (a `Read + Write` with timeouts),
//! so the same code runs on a may coroutine, an OS thread, or an in-memory
//! buffer in a unit test. It follows may_minihttp's hot loop: read what the
//! socket has, answer every complete request in the buffer, and write the
//! batched responses once before reading again.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::clock;
use crate::handler::Handler;
use crate::parse::{
    ChunkedDecoder, Fields, Framing, Limits, ParseError, Request, Status, Version, parse_head_into,
};
use crate::response::{Body, ConnectionField, Part, Response, Stream, write_head};

/// A byte stream a connection can be served over.
pub trait Transport: Read + Write {
    /// Bounds the next reads; `None` waits forever.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Bounds each write.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Sends FIN: the client sees the end of the response stream.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Holds back partial segments (`TCP_CORK`) while `on`, so that a head
    /// and the file after it leave in full segments. The default does
    /// nothing.
    fn cork(&mut self, _on: bool) {}

    /// Writes `len` bytes of `file` from `offset`. The default copies through
    /// a buffer; sockets override it with `sendfile(2)`.
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        copy_file(self, file, offset, len)
    }
}

/// Copies part of a file to a writer with a bounded buffer.
pub(crate) fn copy_file<W: Write + ?Sized>(
    out: &mut W,
    file: &File,
    mut offset: u64,
    len: u64,
) -> io::Result<()> {
    let end = offset + len;
    let mut buf = vec![0u8; 64 * 1024];
    while offset < end {
        let want = (end - offset).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        out.write_all(&buf[..n])?;
        offset += n as u64;
    }
    Ok(())
}

/// Per-connection settings, shared by every connection of a server.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    /// A connection idle this long gives back its buffers, and parks if
    /// `park` says it can.
    pub release_after: Duration,
    /// Whether an idle connection ends [`serve_connection`] with
    /// [`Ended::Idle`], to wait in the parking lot (see `park.rs`), rather
    /// than holding its flow of control.
    pub park: bool,
    /// Connections waiting for a request without buffers and without
    /// parking, counted for `ServerHandle::released_connections`.
    pub released: Arc<AtomicUsize>,
}

/// How [`serve_connection`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The connection is done: close it.
    Closed,
    /// The connection is idle between requests, with nothing buffered:
    /// park it, and serve it again when it is readable.
    Idle,
}

/// Bodies up to this size are copied into the write buffer and batched with
/// the head; larger ones are streamed with [`Transport::send_file`].
const INLINE_FILE_MAX: u64 = 64 * 1024;
/// Flush the batched responses once they reach this size.
const WRITE_BATCH: usize = 64 * 1024;
const READ_CHUNK: usize = 4096;
/// How long a closing connection drains what the client still sends, so that
/// the close does not become a reset that destroys the response in flight.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 256 * 1024;

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// A read's result as the connection sees it: bytes, or why reading stops.
fn read_end(result: io::Result<usize>) -> Result<usize, ReadEnd> {
    match result {
        Ok(0) => Err(ReadEnd::Eof),
        Ok(n) => Ok(n),
        Err(e) if is_timeout(&e) => Err(ReadEnd::Timeout),
        Err(_) => Err(ReadEnd::Error),
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

struct Conn<'a, T: Transport + ?Sized> {
    io: &'a mut T,
    peer: Option<SocketAddr>,
    config: &'a ConnConfig,
    stopping: &'a AtomicBool,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The last request's field vector, reused by the next parse.
    fields: Fields,
}

/// Serves one connection until it closes.
pub(crate) fn serve_connection<T: Transport + ?Sized>(
    io: &mut T,
    peer: Option<SocketAddr>,
    handler: &dyn Handler,
    config: &ConnConfig,
    stopping: &AtomicBool,
) -> Ended {
    let _ = io.set_write_timeout(Some(config.write_timeout));
    let mut conn = Conn {
        io,
        peer,
        config,
        stopping,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        fields: Fields::new(),
    };
    conn.run(handler)
}

impl<T: Transport + ?Sized> Conn<'_, T> {
    fn run(&mut self, handler: &dyn Handler) -> Ended {
        // Whether part of the next request has arrived, and when its head
        // times out (on the coarse clock, from the first time the head was
        // found incomplete: a request whose head comes whole in one read,
        // nearly all of them, reads no clock).
        let mut started = false;
        let mut head_deadline: Option<Duration> = None;
        loop {
            let head = match parse_head_into(&self.rbuf, &self.config.limits, &mut self.fields) {
                Ok(Status::Complete(head)) => head,
                Ok(Status::Partial) => {
                    if self.flush().is_err() {
                        return Ended::Closed;
                    }
                    if self.rbuf.is_empty() {
                        started = false;
                        head_deadline = None;
                        if self.stopping.load(Ordering::Acquire) {
                            return Ended::Closed;
                        }
                    }
                    let timeout = if started {
                        let deadline = *head_deadline
                            .get_or_insert_with(|| clock::deadline(self.config.header_timeout));
                        match deadline.checked_sub(clock::monotonic()) {
                            Some(left) if !left.is_zero() => left,
                            _ => return self.fail(408, None),
                        }
                    } else {
                        self.config.idle_timeout
                    };
                    let read = if !started {
                        self.read_idle(timeout)
                    } else {
                        self.read_more(timeout)
                    };
                    match read {
                        Ok(()) => {
                            started = true;
                            continue;
                        }
                        // A client that started a request and stalled gets a 408;
                        // an idle one is just closed.
                        Err(ReadEnd::Timeout) if started => return self.fail(408, None),
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
            started = !self.rbuf.is_empty();
            head_deadline = None;
            let mut req = Request::new(raw, head, self.peer);
            if let Err(e) = self.read_body(&mut req) {
                log::debug!("{:?}: {}", self.peer, e);
                return self.fail(e.status(), Some(&req));
            }
            let resp = match catch_unwind(AssertUnwindSafe(|| handler.handle(&req))) {
                Ok(resp) => resp,
                Err(_) => {
                    log::error!("handler panicked on {:?}", req.request_line());
                    Response::error(500).close()
                }
            };
            if !self.respond(Some(&req), resp) {
                return Ended::Closed;
            }
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
        match self.read_more(first) {
            Err(ReadEnd::Timeout) if first < timeout => {}
            other => return other,
        }
        self.release();
        if self.config.park {
            return Err(ReadEnd::Park);
        }
        self.config.released.fetch_add(1, Ordering::AcqRel);
        let read = self.read_after_release(timeout - first);
        self.config.released.fetch_sub(1, Ordering::AcqRel);
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

    /// Reads more bytes into `rbuf`, waiting at most `timeout`.
    fn read_more(&mut self, timeout: Duration) -> Result<(), ReadEnd> {
        if self.io.set_read_timeout(Some(timeout)).is_err() {
            return Err(ReadEnd::Error);
        }
        if self.rbuf.capacity() - self.rbuf.len() < 512 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let len = self.rbuf.len();
        let spare = self.rbuf.spare_capacity_mut();
        // SAFETY: the spare capacity is allocated; the transports (sockets,
        // and the test transport over a Cursor) only write into the buffer a
        // read is given, never read it, so handing it over uninitialised is
        // what std's own `read_buf` does. Zeroing it first cost a 4 KiB
        // memset per read: 16% of the instructions per request.
        let spare = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        let result = self.io.read(spare);
        let n = *result.as_ref().unwrap_or(&0);
        // SAFETY: the read initialised the first `n` bytes of the spare
        // capacity (n <= spare.len()).
        unsafe { self.rbuf.set_len(len + n.min(spare.len())) };
        read_end(result).map(drop)
    }

    /// Reads the whole body into the request, or refuses it.
    fn read_body(&mut self, req: &mut Request) -> Result<(), ParseError> {
        let framing = req.framing()?;
        if let Some(expect) = req.header("expect")
            && !expect.eq_ignore_ascii_case(b"100-continue")
        {
            return Err(ParseError::Expectation);
        }
        let max = self.config.limits.max_body;
        if let Framing::Length(n) = framing
            && n > max
        {
            return Err(ParseError::BodyTooLarge);
        }
        if framing == Framing::None {
            return Ok(());
        }
        if req.version() == Version::Http11
            && req.header("expect").is_some()
            && self.rbuf.is_empty()
        {
            self.wbuf
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.flush().map_err(|_| ParseError::Chunk)?;
        }
        let body = match framing {
            Framing::None => Bytes::new(),
            Framing::Length(n) => {
                let n = n as usize;
                while self.rbuf.len() < n {
                    if self.read_more(self.config.idle_timeout).is_err() {
                        return Err(ParseError::ContentLength);
                    }
                }
                self.rbuf.split_to(n).freeze()
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                let mut out = Vec::new();
                loop {
                    let used = decoder.decode(&self.rbuf, &mut out, max)?;
                    let _ = self.rbuf.split_to(used);
                    if decoder.is_done() {
                        break;
                    }
                    if self.read_more(self.config.idle_timeout).is_err() {
                        return Err(ParseError::Chunk);
                    }
                }
                Bytes::from(out)
            }
        };
        req.set_body(body);
        Ok(())
    }

    /// Answers a request that cannot be served and closes.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, status: u16, req: Option<&Request>) -> Ended {
        self.respond(req, Response::error(status).close());
        Ended::Closed
    }

    /// Queues a response. Returns whether the connection stays open.
    fn respond(&mut self, req: Option<&Request>, resp: Response) -> bool {
        let version = req.map(Request::version);
        let status = resp.status();
        let send_body = !matches!(req.map(Request::method), Some(crate::parse::Method::Head))
            && !matches!(status, 100..=199 | 204 | 304);
        // A stream has no length: HTTP/1.1 gets chunks, HTTP/1.0 gets the
        // body delimited by the close.
        let streaming = resp.body_ref().is_stream();
        let chunked = streaming && version == Some(Version::Http11);
        let keep_alive = req.is_some_and(Request::wants_keep_alive)
            && !resp.closes()
            && (chunked || !streaming)
            && !self.stopping.load(Ordering::Acquire);
        let connection = match (keep_alive, version) {
            (false, _) => ConnectionField::Close,
            (true, Some(Version::Http10)) => ConnectionField::KeepAlive,
            (true, _) => ConnectionField::Default,
        };
        write_head(&mut self.wbuf, &resp, connection, chunked);
        let mut body_len = if send_body { resp.body_ref().len() } else { 0 };
        let ok = if send_body {
            match resp.into_body() {
                Body::Stream(stream) => self.write_stream(stream, chunked).map(|n| body_len = n),
                body => self.queue_body(body),
            }
        } else {
            Ok(())
        };
        access_log(self.peer, req, status, body_len);
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
            self.linger();
        }
        keep_alive
    }

    /// Runs a streamed body's closure against the connection. Returns the
    /// body bytes written. A closure that fails or panics leaves the
    /// response unterminated, and the connection is closed.
    fn write_stream(&mut self, stream: Stream, chunked: bool) -> io::Result<u64> {
        self.flush()?;
        let mut out = StreamWriter {
            io: &mut *self.io,
            buf: Vec::with_capacity(STREAM_CHUNK),
            chunked,
            written: 0,
        };
        match catch_unwind(AssertUnwindSafe(|| (stream.0)(&mut out))) {
            Ok(Ok(())) => out.finish(),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                log::error!("streamed body panicked");
                Err(io::Error::other("streamed body panicked"))
            }
        }
    }

    fn queue_body(&mut self, body: Body) -> io::Result<()> {
        match body {
            Body::Empty => Ok(()),
            Body::Bytes(b) => {
                self.wbuf.extend_from_slice(&b);
                Ok(())
            }
            Body::File { file, offset, len } => self.queue_file(&file, offset, len),
            // `respond` writes streams itself: they cannot be batched.
            Body::Stream(_) => Err(io::Error::other("a streamed body cannot be queued")),
            Body::Parts { file, parts } => {
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
            // Corked, the head rides in the file's first segment and every
            // segment leaves full: with TCP_NODELAY alone, each sendfile call
            // ends in a short segment. Measured on a 10 MiB file at 16
            // connections: 165 req/s uncorked, 254 corked.
            self.io.cork(true);
            let sent = self
                .flush()
                .and_then(|()| self.io.send_file(file, offset, len));
            self.io.cork(false);
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

    fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let result = self.io.write_all(&self.wbuf);
            self.wbuf.clear();
            result?;
        }
        self.io.flush()
    }

    /// Closes politely (see [`close_gracefully`]).
    fn linger(&mut self) {
        close_gracefully(&mut *self.io, LINGER, LINGER_MAX_BYTES);
    }
}

/// Closes politely: FIN first, then drain what the client still sends, for
/// at most `within` and `max_bytes`, so that unread input does not turn the
/// close into a reset that could destroy the response before the client
/// reads it.
pub(crate) fn close_gracefully<T: Transport + ?Sized>(
    io: &mut T,
    within: Duration,
    max_bytes: usize,
) {
    if io.shutdown_write().is_err() {
        return;
    }
    let deadline = Instant::now() + within;
    let mut drained = 0;
    let mut buf = [0u8; 1024];
    while drained < max_bytes {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        if left.is_zero() || io.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match io.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Streamed bodies are sent in chunks of up to this size.
const STREAM_CHUNK: usize = 16 * 1024;

/// What a streamed body's closure writes to: it batches small writes and
/// frames them as chunks (RFC 9112 §7.1) when the client speaks HTTP/1.1.
struct StreamWriter<'a, W: Write + ?Sized> {
    io: &'a mut W,
    buf: Vec<u8>,
    chunked: bool,
    written: u64,
}

impl<W: Write + ?Sized> StreamWriter<'_, W> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.chunked {
            let size = format!("{:x}\r\n", self.buf.len());
            self.io.write_all(size.as_bytes())?;
            self.buf.extend_from_slice(b"\r\n");
            self.io.write_all(&self.buf)?;
            self.written += (self.buf.len() - 2) as u64;
        } else {
            self.io.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
        }
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<u64> {
        self.send()?;
        if self.chunked {
            self.io.write_all(b"0\r\n\r\n")?;
        }
        self.io.flush()?;
        Ok(self.written)
    }
}

impl<W: Write + ?Sized> Write for StreamWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    /// Sends what has been written so far as a chunk, so a client sees
    /// progress from a body that pauses between writes.
    fn flush(&mut self) -> io::Result<()> {
        self.send()?;
        self.io.flush()
    }
}

/// Logs one line in Common Log Format to the `coserve::access` target.
fn access_log(peer: Option<SocketAddr>, req: Option<&Request>, status: u16, bytes: u64) {
    if !log::log_enabled!(target: "coserve::access", log::Level::Info) {
        return;
    }
    let host = peer.map_or_else(|| "-".to_string(), |p| p.ip().to_string());
    let line = req.map_or_else(|| "-".to_string(), |r| escape_log(r.request_line()));
    let bytes = if bytes == 0 {
        "-".to_string()
    } else {
        bytes.to_string()
    };
    log::info!(target: "coserve::access", "{host} - - [{}] \"{line}\" {status} {bytes}", clf_time());
}

fn clf_time() -> String {
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

/// Escapes what must not reach a log line raw: quotes, backslashes and
/// anything that is not printable ASCII.
pub(crate) fn escape_log(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// An in-memory transport: reads from a script, records what is written.
    struct Memory {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
        chunk: usize,
    }

    impl Read for Memory {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk);
            self.input.read(&mut buf[..n])
        }
    }
    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Transport for Memory {
        fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn set_write_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The settings both in-memory runs use: one-second timeouts, no parking.
    fn config() -> ConnConfig {
        ConnConfig {
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            release_after: Duration::from_secs(1),
            park: false,
            released: Arc::default(),
        }
    }

    /// Counts the allocations each thread makes, for the test below.
    struct Counting;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is passed to the system allocator unchanged.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract, passed on.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: std::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract, passed on.
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Allocations made on this thread while serving `n` pipelined
    /// keep-alive requests, with a handler that allocates nothing itself.
    fn allocations_serving(n: usize) -> u64 {
        let request = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n";
        let mut io = Memory {
            input: Cursor::new(request.repeat(n)),
            output: Vec::with_capacity(1 << 20),
            chunk: 4096,
        };
        let config = config();
        let handler =
            |_: &Request| Response::new(200).body(Body::Bytes(Bytes::from_static(b"hello")));
        let stopping = AtomicBool::new(false);
        let before = ALLOCATIONS.with(|a| a.get());
        serve_connection(&mut io, None, &handler, &config, &stopping);
        let after = ALLOCATIONS.with(|a| a.get());
        assert_eq!(
            io.output
                .windows(15)
                .filter(|w| w == b"HTTP/1.1 200 OK")
                .count(),
            n
        );
        after - before
    }

    #[test]
    fn a_warm_keep_alive_connection_allocates_nothing_per_request() {
        // The first run also builds what is built once (the regex).
        allocations_serving(1);
        let one = allocations_serving(1);
        let many = allocations_serving(501);
        // The buffers grow while 500 pipelined responses are batched: a few
        // allocations in all, never one per request.
        assert!(
            many <= one + 16,
            "{one} allocations for one request, {many} for 501: the hot path allocates per request"
        );
    }

    fn run(input: &[u8], chunk: usize) -> String {
        let mut io = Memory {
            input: Cursor::new(input.to_vec()),
            output: Vec::new(),
            chunk,
        };
        let config = config();
        let handler = |req: &Request| {
            Response::new(200).body(Body::Bytes(Bytes::from(format!(
                "{}|{}",
                req.path(),
                req.body().len()
            ))))
        };
        serve_connection(&mut io, None, &handler, &config, &AtomicBool::new(false));
        String::from_utf8(io.output).unwrap()
    }

    fn bodies(out: &str) -> Vec<&str> {
        out.split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or(""))
            .collect()
    }

    #[test]
    fn pipelined_requests_split_at_any_byte_are_answered_in_order() {
        let input = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nGET /4 HTTP/1.1\r\nHost: h\r\n\r\n";
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let out = run(input, chunk);
            assert_eq!(
                bodies(&out),
                ["/1|0", "/2|3", "/3|2", "/4|0"],
                "chunk {chunk}: {out}"
            );
        }
    }

    #[test]
    fn a_bad_request_is_answered_and_closes() {
        let out = run(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET  / HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n", 4096);
        assert!(out.contains("HTTP/1.1 400 Bad Request"), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        assert!(!out.contains("/never"), "{out}");
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let out = run(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", 4096);
        assert_eq!(bodies(&out), ["/a|0"]);
        let out = run(
            b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
            4096,
        );
        assert_eq!(bodies(&out), ["/a|0", "/b|0"]);
        assert!(out.contains("Connection: keep-alive"));
    }

    #[test]
    fn log_lines_are_escaped() {
        assert_eq!(
            escape_log("GET /\"a\"\\\n\x1b"),
            "GET /\\\"a\\\"\\\\\\x0a\\x1b"
        );
    }
}
