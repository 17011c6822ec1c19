//! What a connection is served over: a byte stream with timeouts.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use bytes::BytesMut;

/// A byte stream a connection can be served over, with
/// [`serve_connection`](crate::serve_connection).
///
/// The server's own sockets implement it on both engines. Implement it for
/// any other `Read + Write` to serve HTTP over it: a TLS stream wrapping a
/// socket, a Unix socket, an in-memory pipe in a test. It is `Send`: a
/// coroutine may resume on another thread, and a handler may read a
/// streamed request body ([`Request::body_reader`](crate::Request::body_reader))
/// from a thread of its own. Only the first three
/// methods are required; the defaults of the others are correct, if slower
/// than a socket's own.
pub trait Transport: Read + Write + Send {
    /// Bounds the next reads; `None` waits forever. A read that times out
    /// fails with `TimedOut` or `WouldBlock`.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Bounds each write.
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Sends end-of-stream (TCP's FIN): the client sees the end of the
    /// response stream, and can still send.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Reads into the spare capacity of `buf` (made if there is none),
    /// which grows by the bytes read; returns how many (0 at end-of-stream).
    ///
    /// The default zero-fills the spare capacity and calls
    /// [`Read::read`], which may look at the buffer it is given; a socket
    /// can receive into uninitialised memory directly, and skip the fill.
    fn read_spare(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let start = buf.len();
        buf.reserve(1);
        buf.resize(buf.capacity(), 0);
        let read = self.read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Writes `head`, then `len` bytes of `file` from `offset`. The default
    /// writes the head and copies the file through a buffer; sockets send
    /// the head with `MSG_MORE` and the file with `sendfile(2)`, so that
    /// both leave in full segments.
    fn send_file(&mut self, head: &[u8], file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.write_all(head)?;
        copy_file(self, file, offset, len)
    }

    /// Something another coroutine or thread can call to make a read
    /// waiting on this transport (or its next one) return early with
    /// `WouldBlock`; `None` if it cannot be woken (the default). The
    /// server's sockets can, and a TLS stream over them: WebSocket senders
    /// use it.
    #[doc(hidden)]
    fn read_waker(&mut self) -> Option<ReadWaker> {
        None
    }

    /// The plain socket underneath, when bytes written to it go to the
    /// peer unchanged (not over TLS): WebSocket senders write whole frames
    /// to it from other coroutines. `None` by default.
    #[doc(hidden)]
    fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// How much room a read into a connection's buffer makes when little is
/// left.
pub(crate) const READ_CHUNK: usize = 4096;

/// Reads what `io` has into the spare capacity of `buf`, making
/// [`READ_CHUNK`] of room when less than 512 bytes are spare, and waiting
/// at most `timeout`: the bytes read, 0 at the end of the stream. Every
/// read of a request head or body into the connection's buffer goes
/// through here.
pub(crate) fn read_more<T: Transport + ?Sized>(
    io: &mut T,
    buf: &mut BytesMut,
    timeout: Duration,
) -> io::Result<usize> {
    io.set_read_timeout(Some(timeout))?;
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(READ_CHUNK);
    }
    io.read_spare(buf)
}

/// What [`Transport::read_waker`] gives.
#[doc(hidden)]
pub type ReadWaker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Copies part of a file to a writer with a bounded buffer.
fn copy_file<W: Write + ?Sized>(
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
