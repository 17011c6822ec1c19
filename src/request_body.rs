//! Streamed request bodies: how a handler says it wants its body as a
//! stream ([`BodyPolicy`], [`Handler::stream_body`]), the reader it gets
//! ([`Request::body_reader`]), and the connection's side of that reader
//! ([`Source`]), which reads the body off the connection as the handler
//! asks for it.
//!
//! By default the connection reads a body whole before the handler runs,
//! up to `Config::max_body`, and the handler finds it in
//! [`Request::body`]. A handler that streams is called as soon as the head
//! is in; each read of its [`BodyReader`] reads the socket, so it parks
//! only its coroutine, and the body never has to fit in memory.

use std::fmt;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};

use crate::body::{BodyError, ChunkedDecoder, Framing, body_read};
use crate::clock;
use crate::handler::Handler;
use crate::request::Request;
use crate::response::Response;
use crate::transport::{Transport, read_more};

/// How the connection reads a request's body for a handler (see
/// [`Handler::body_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BodyPolicy {
    /// Read the whole body before the handler runs, up to the server's
    /// [`Config::max_body`](crate::Config::max_body); the handler finds it
    /// in [`Request::body`]. The default.
    #[default]
    Buffer,
    /// As `Buffer`, with a maximum of this route's own.
    BufferMax(u64),
    /// Call the handler once the head is in, and let it read the body
    /// itself with [`Request::body_reader`], up to this many bytes.
    Stream(u64),
}

impl BodyPolicy {
    /// The largest body allowed, with `server_max` as the default.
    pub(crate) fn max(self, server_max: u64) -> u64 {
        match self {
            BodyPolicy::Buffer => server_max,
            BodyPolicy::BufferMax(max) | BodyPolicy::Stream(max) => max,
        }
    }
}

/// A handler with a body policy of its own: what [`Handler::max_body`] and
/// [`Handler::stream_body`] make.
pub struct WithBody<H> {
    inner: H,
    policy: BodyPolicy,
}

impl<H> WithBody<H> {
    pub(crate) fn new(inner: H, policy: BodyPolicy) -> WithBody<H> {
        WithBody { inner, policy }
    }
}

impl<H> fmt::Debug for WithBody<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithBody")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Handler for WithBody<H> {
    fn handle(&self, req: &Request) -> Response {
        self.inner.handle(req)
    }

    /// The inner handler's own policy wins: `router.max_body(n)` is the
    /// limit of the routes that set none, and a route's `stream_body`
    /// still streams.
    fn body_policy(&self, req: &Request) -> BodyPolicy {
        match self.inner.body_policy(req) {
            BodyPolicy::Buffer => self.policy,
            own => own,
        }
    }
}

/// The connection's reader of a streamed body, type-erased, as the request
/// holds it while its handler runs.
type RawSource = *mut (dyn Read + Send + 'static);

/// Where a request's streamed body can be read from, while its handler
/// runs: empty before and after, and while a [`BodyReader`] has it.
#[derive(Default)]
pub(crate) struct SourceSlot(Mutex<Option<SendPtr>>);

struct SendPtr(RawSource);

// SAFETY: the pointer is to a `dyn Read + Send`; it is only dereferenced
// by the one `BodyReader` that took it out of the slot.
unsafe impl Send for SendPtr {}

impl SourceSlot {
    fn take(&self) -> Option<SendPtr> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn put(&self, ptr: SendPtr) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(ptr);
    }
}

/// A clone of a request (as [`Timeout`](crate::Timeout) makes, to run its
/// handler elsewhere) cannot read the connection.
impl Clone for SourceSlot {
    fn clone(&self) -> SourceSlot {
        SourceSlot::default()
    }
}

impl fmt::Debug for SourceSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceSlot(..)")
    }
}

/// Runs `f` with `source` readable through `req`'s [`BodyReader`]s, and
/// takes it back after, also if `f` unwinds.
pub(crate) fn with_source<R>(
    req: &Request,
    source: &mut (dyn Read + Send + '_),
    f: impl FnOnce() -> R,
) -> R {
    struct Clear<'a>(&'a SourceSlot);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    let slot = req.source_slot();
    let raw: *mut (dyn Read + Send + '_) = source;
    // SAFETY: only the lifetime is erased. The pointer leaves the slot
    // before `source`'s borrow ends (`Clear` runs when `f` returns or
    // unwinds), and a `BodyReader` that holds it borrows `req`, which no
    // reader can outlive: `f` runs the handler, whose `&Request` ends when
    // it returns.
    let raw: RawSource = unsafe { std::mem::transmute(raw) };
    slot.put(SendPtr(raw));
    let _clear = Clear(slot);
    f()
}

/// A request's body as [`Read`]: what [`Request::body_reader`] gives.
///
/// For a handler that streams ([`BodyPolicy::Stream`]), each read reads
/// the connection: it parks only the handler's coroutine, and the body
/// never has to fit in memory. A failed read is an [`io::Error`] whose
/// inner error is a [`BodyError`] (too large, malformed, cut short or too
/// slow); returned from the handler with `?`, it becomes the matching
/// status (413, 400 or 408). For any other handler it reads the body that
/// was read before the handler ran.
pub struct BodyReader<'a> {
    inner: Inner<'a>,
    /// Not `Sync`: two threads must not read the one stream.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

enum Inner<'a> {
    /// A body read before the handler ran, from where the request's
    /// last reader stopped.
    Buffered(&'a Request),
    Stream {
        req: &'a Request,
        source: SendPtr,
    },
    /// A streamed body that this reader cannot reach: another reader has
    /// it, or this is a clone of the request.
    Elsewhere,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(req: &'a Request) -> BodyReader<'a> {
        let inner = if !req.is_streamed() {
            Inner::Buffered(req)
        } else {
            match req.source_slot().take() {
                Some(source) => Inner::Stream { req, source },
                None => Inner::Elsewhere,
            }
        };
        BodyReader {
            inner,
            _not_sync: PhantomData,
        }
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Buffered(req) => Ok(req.read_pos().read(req.body(), buf)),
            // SAFETY: the pointer came out of the request's slot, so no
            // other reader has it, and the source is alive: see
            // `with_source`.
            Inner::Stream { source, .. } => unsafe { (*source.0).read(buf) },
            Inner::Elsewhere => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the request body is being read by another BodyReader, or this \
                 request is a copy that cannot reach the connection (a handler \
                 inside Timeout: put stream_body inside it, where it reads the \
                 body whole first)",
            )),
        }
    }
}

impl Drop for BodyReader<'_> {
    fn drop(&mut self) {
        if let Inner::Stream { req, source } = std::mem::replace(&mut self.inner, Inner::Elsewhere)
        {
            req.source_slot().put(source);
        }
    }
}

impl fmt::Debug for BodyReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Buffered(_) => "BodyReader(buffered)",
            Inner::Stream { .. } => "BodyReader(stream)",
            Inner::Elsewhere => "BodyReader(elsewhere)",
        })
    }
}

/// How far the readers of a body read before the handler ran have read
/// it: each goes on where the last stopped, as streamed readers do.
#[derive(Debug, Default)]
pub(crate) struct ReadPos(AtomicUsize);

impl ReadPos {
    /// Copies the next bytes of `body` into `buf`, and moves past them.
    fn read(&self, body: &[u8], buf: &mut [u8]) -> usize {
        let mut pos = self.0.load(Ordering::Acquire);
        loop {
            let n = buf.len().min(body.len().saturating_sub(pos));
            match self
                .0
                .compare_exchange(pos, pos + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    buf[..n].copy_from_slice(&body[pos..pos + n]);
                    return n;
                }
                Err(now) => pos = now,
            }
        }
    }
}

impl Clone for ReadPos {
    fn clone(&self) -> ReadPos {
        ReadPos(AtomicUsize::new(self.0.load(Ordering::Acquire)))
    }
}

/// The body still to come.
enum Left {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// The connection's side of a streamed body: reads it off the transport,
/// after what the connection has already buffered, as the handler asks.
/// Never reads past the body's end, so a pipelined request after it stays
/// where the connection will look for it.
pub(crate) struct Source<'a, T: Transport + ?Sized> {
    io: &'a mut T,
    /// What the connection read after the head; what is left of it after
    /// the body goes back to the connection.
    rbuf: &'a mut BytesMut,
    left: Left,
    max: u64,
    /// How long each read may wait.
    timeout: Duration,
    /// The client waits for `100 Continue`, sent at the first read.
    continue_pending: bool,
    /// The first failure, which every later read repeats: the body cannot
    /// be told from what follows it any more.
    failed: Option<BodyError>,
    /// Bytes taken off the connection for the body, framing included.
    taken: u64,
}

/// At most this much of a body its handler left unread (counted as it
/// comes, framing included) is read and thrown away to keep the
/// connection, within [`DRAIN_TIME`]; past either, the connection closes
/// (Go's net/http reads 256 KiB).
pub(crate) const DRAIN_MAX: u64 = 256 * 1024;

/// How long the drain may take, all reads together, so that a client
/// that trickles the rest does not hold the answer back.
const DRAIN_TIME: Duration = Duration::from_secs(1);

impl<'a, T: Transport + ?Sized> Source<'a, T> {
    pub(crate) fn new(
        io: &'a mut T,
        rbuf: &'a mut BytesMut,
        framing: Framing,
        max: u64,
        timeout: Duration,
        continue_pending: bool,
    ) -> Source<'a, T> {
        let left = match framing {
            Framing::None => Left::Length(0),
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(ChunkedDecoder::default()),
        };
        Source {
            io,
            rbuf,
            left,
            max,
            timeout,
            continue_pending,
            failed: None,
            taken: 0,
        }
    }

    /// Whether the body has been read to its end.
    pub(crate) fn is_done(&self) -> bool {
        match &self.left {
            Left::Length(n) => *n == 0,
            Left::Chunked(d) => d.is_done(),
        }
    }

    /// After the handler: whether the body has been read to its end, so
    /// that the connection can go on to the next request. Reads and throws
    /// away what the handler left, up to [`DRAIN_MAX`] within
    /// [`DRAIN_TIME`]; a body larger or slower than that, a failed one, or
    /// one the client was never invited to send (no `100 Continue` went
    /// out) ends the connection.
    pub(crate) fn finish(&mut self) -> bool {
        if self.is_done() {
            return true;
        }
        if self.failed.is_some() || self.continue_pending {
            return false;
        }
        if let Left::Length(n) = self.left
            && n > DRAIN_MAX
        {
            return false;
        }
        let budget = self.taken + DRAIN_MAX;
        let deadline = clock::deadline(DRAIN_TIME.min(self.timeout));
        let mut scratch = [0u8; 1024];
        while self.taken < budget {
            match deadline.checked_sub(clock::monotonic()) {
                Some(left) if !left.is_zero() => self.timeout = left,
                _ => return false,
            }
            match self.read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn read_body(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        loop {
            match &mut self.left {
                Left::Length(left) => {
                    let want = out.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = if !self.rbuf.is_empty() {
                        let n = want.min(self.rbuf.len());
                        out[..n].copy_from_slice(&self.rbuf[..n]);
                        self.rbuf.advance(n);
                        n
                    } else {
                        read_some(self.io, self.timeout, &mut out[..want])?
                    };
                    *left -= n as u64;
                    self.taken += n as u64;
                    return Ok(n);
                }
                Left::Chunked(decoder) => {
                    if !self.rbuf.is_empty() {
                        let (used, written) = decoder.decode_into(self.rbuf, out, self.max)?;
                        self.rbuf.advance(used);
                        self.taken += used as u64;
                        if written > 0 || decoder.is_done() {
                            return Ok(written);
                        }
                    }
                    let data = decoder.data_left();
                    if self.rbuf.is_empty() && data > 0 {
                        // Chunk data goes straight to the caller.
                        let want = out.len().min(usize::try_from(data).unwrap_or(usize::MAX));
                        let n = read_some(self.io, self.timeout, &mut out[..want])?;
                        decoder.took_data(n);
                        self.taken += n as u64;
                        return Ok(n);
                    }
                    // A chunk's size line or trailer, in part.
                    body_read(read_more(self.io, self.rbuf, self.timeout))?;
                }
            }
        }
    }
}

/// One read into `out` (not empty) within `timeout`, past the
/// connection's buffer.
fn read_some<T: Transport + ?Sized>(
    io: &mut T,
    timeout: Duration,
    out: &mut [u8],
) -> Result<usize, BodyError> {
    body_read(
        io.set_read_timeout(Some(timeout))
            .and_then(|()| io.read(out)),
    )
}

impl<T: Transport + ?Sized> Read for Source<'_, T> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.failed {
            return Err(e.into());
        }
        if out.is_empty() || self.is_done() {
            return Ok(0);
        }
        if self.continue_pending {
            self.continue_pending = false;
            if self
                .io
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| self.io.flush())
                .is_err()
            {
                self.failed = Some(BodyError::Incomplete);
                return Err(BodyError::Incomplete.into());
            }
        }
        self.read_body(out).map_err(|e| {
            self.failed = Some(e);
            e.into()
        })
    }
}

impl From<BodyError> for io::Error {
    fn from(e: BodyError) -> io::Error {
        let kind = match e {
            BodyError::TooLarge | BodyError::Chunk => io::ErrorKind::InvalidData,
            BodyError::Timeout => io::ErrorKind::TimedOut,
            BodyError::Incomplete => io::ErrorKind::UnexpectedEof,
        };
        io::Error::new(kind, e)
    }
}
