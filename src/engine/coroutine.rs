//! The coroutine engine: one may coroutine per connection, over may's
//! non-blocking sockets, with `sendfile(2)` for file bodies.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use may::io::WaitIo;

use super::deadline::Waiting;
use super::{Engine, Parking};
use crate::sys;
use crate::transport::Transport;

/// A may TCP stream as a [`Transport`].
///
/// Reads wait with may's `wait_io` and time out through the deadline
/// sweeper (`deadline.rs`), not may's per-read timers. Writes use may's own
/// `write`, which waits with a timer only when the socket buffer is full.
pub(crate) struct CoStream {
    pub stream: may::net::TcpStream,
    /// How long the next reads may wait.
    read_timeout: Option<Duration>,
    /// How long a write may wait for room in the socket buffer.
    write_timeout: Option<Duration>,
    waiting: Registration,
    /// Whether the last read took all the socket had (it did not fill the
    /// buffer): the next one then waits for data before trying, which saves
    /// the read that would fail with EAGAIN while the client is still
    /// reading our response.
    drained: bool,
    /// Whether a wait has seen the client close (or the socket fail): then
    /// no read waits first, since no further event will come to end it.
    hung_up: bool,
}

/// What to do if may abandons the current coroutine (see
/// [`Parking::on_abandon`]). Kept in may's coroutine-local storage, which may
/// drops when it disposes of a coroutine, also one that overflowed its
/// stack and whose frames are never unwound.
struct Abandoned {
    on_abandon: Option<Box<dyn FnOnce() + Send>>,
    /// The stream's place with the deadline sweeper, given up as well.
    waiting: Option<Arc<Waiting>>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(on_abandon) = self.on_abandon.take() {
            on_abandon();
            if let Some(waiting) = self.waiting.take() {
                waiting.close();
            }
        }
    }
}

may::coroutine_local!(
    static ABANDONED: std::cell::RefCell<Abandoned> = std::cell::RefCell::new(Abandoned {
        on_abandon: None,
        waiting: None,
    })
);

/// A connection's place with the deadline sweeper, given up when dropped.
struct Registration(Arc<Waiting>);

impl Drop for Registration {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl CoStream {
    pub(crate) fn new(stream: may::net::TcpStream) -> CoStream {
        let waiting = Registration(Waiting::register(stream.waker()));
        CoStream {
            stream,
            read_timeout: None,
            write_timeout: None,
            waiting,
            drained: false,
            hung_up: false,
        }
    }
}

/// The events that say the client closed (or the socket failed).
const HUNG_UP: usize = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as usize;

/// The events that make a read worth trying: data, a close, an error, or
/// the deadline sweeper's wake-up (may's `WaitIoWaker` sets the top bit).
const READABLE: usize =
    (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as usize | 0x8000_0000;

impl CoStream {
    /// Runs `op`, a non-blocking read, until it has data, end-of-stream or
    /// an error, waiting for the socket between tries, at most the read
    /// timeout.
    fn read_with(
        &mut self,
        mut op: impl FnMut(&mut Self) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut deadline = None;
        // After a read that took all the socket had, wait for an event
        // before trying again. may's epoll is edge-triggered and `wait_io`
        // returns the events seen since it last returned, so data that came
        // after the last read is never missed.
        let mut wait_first = self.drained && !self.hung_up;
        loop {
            if !wait_first {
                match op(self) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if let Some(timeout) = self.read_timeout {
                let deadline = *deadline.get_or_insert_with(|| crate::clock::deadline(timeout));
                // Over only once the socket has been tried.
                if crate::clock::monotonic() >= deadline && !wait_first {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
                }
                self.waiting.0.set(Some(deadline));
            }
            wait_first = false;
            if self.waiting.0.take_woken() {
                return Err(woken());
            }
            // Until data, a close, a shutdown, or the sweeper's wake at the
            // deadline; a write's EPOLLOUT alone is no reason to read.
            let events = loop {
                let events = self.stream.wait_io();
                if events & READABLE != 0 {
                    break events;
                }
            };
            // Data and the client's FIN can come in one event: a read that
            // then takes the data must not wait for another event.
            if events & HUNG_UP != 0 {
                self.hung_up = true;
            }
            self.waiting.0.set(None);
            if self.waiting.0.take_woken() {
                // The events this wait took may include data: the next read
                // tries the socket before it waits.
                self.drained = false;
                return Err(woken());
            }
        }
    }
}

/// What a read woken by [`Transport::read_waker`] returns.
fn woken() -> io::Error {
    io::Error::new(io::ErrorKind::WouldBlock, "woken to send")
}

impl Read for CoStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|s| {
            // The socket is non-blocking (may made it so).
            let n = s.stream.inner().read(buf)?;
            s.drained = n < buf.len();
            Ok(n)
        })
    }
}

/// The events that make a write worth trying again: room in the socket
/// buffer, or a close or error that the write will report.
const WRITABLE: usize = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as usize;

/// Waits, after a write said EAGAIN, until `stream` has room, at most
/// `timeout` (through the deadline sweeper, as reads do).
///
/// The kernel signals room (an EPOLLOUT edge) only once a third of the
/// buffer is free, so the next write moves a large piece. Writing again as
/// soon as any room appears instead, as an earlier 4 KiB fallback through
/// may's `write` did, sent a 10 MiB file in 40 KiB pieces with an EAGAIN
/// between each.
fn wait_writable(
    stream: &may::net::TcpStream,
    waiting: &Waiting,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let deadline = timeout.map(crate::clock::deadline);
    loop {
        if let Some(deadline) = deadline {
            if crate::clock::monotonic() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"));
            }
            waiting.set(Some(deadline));
        }
        let events = stream.wait_io();
        waiting.set(None);
        if events & WRITABLE != 0 {
            return Ok(());
        }
    }
}

/// Writes go straight to the non-blocking socket; only when its buffer is
/// full does may's `write` take over to wait (with the write timeout).
/// may's `write` clears the socket's event flags, which could hide data that
/// arrived meanwhile from the next `wait_io`, so after one the next read
/// tries the socket before waiting (`drained` is cleared).
impl CoStream {
    fn write_with(
        &mut self,
        op: impl Fn(&mut dyn Write) -> io::Result<usize>,
    ) -> io::Result<usize> {
        match op(&mut self.stream.inner()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.drained = false;
                op(&mut self.stream)
            }
            other => other,
        }
    }
}

impl Write for CoStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|w| w.write(buf))
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.write_with(|w| w.write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for CoStream {
    fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        Some(self.stream.as_raw_fd())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout = timeout;
        self.stream
            .set_write_timeout(timeout.map(|d| d.max(Duration::from_millis(1))))
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    fn read_waker(&mut self) -> Option<crate::transport::ReadWaker> {
        let waiting = self.waiting.0.clone();
        Some(Arc::new(move || waiting.wake()))
    }

    /// `recv(2)` straight into the buffer's spare capacity.
    fn read_spare(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.read_with(|s| {
            let before = buf.capacity() - buf.len();
            let n = sys::recv_into(s.stream.inner().as_fd(), buf)?;
            s.drained = n < before;
            Ok(n)
        })
    }

    /// The head with `send(MSG_MORE)`, then `sendfile(2)` straight from
    /// the page cache to the socket.
    ///
    /// When the socket buffer is full, sendfile says EAGAIN and the
    /// coroutine waits until the socket is writable again, at most the write
    /// timeout, so that a client that stops reading cannot hold it forever.
    fn send_file(&mut self, head: &[u8], file: &File, offset: u64, len: u64) -> io::Result<()> {
        // A wait takes the socket's event flags, a read's EPOLLIN among
        // them: after one, the next read must try the socket before it
        // waits. Without one (the socket took it all), nothing was taken,
        // and a drained socket need not be tried again (a failed `recv`
        // per request, when every file went out this way).
        let mut waited = false;
        let (stream, waiting, timeout) = (&self.stream, &self.waiting.0, self.write_timeout);
        let sent = super::sendfile_loop(stream.inner().as_fd(), head, file, offset, len, || {
            waited = true;
            wait_writable(stream, waiting, timeout)
        });
        if waited {
            self.drained = false;
        }
        sent
    }
}

impl AsRawFd for CoStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }
}

/// The coroutine engine.
pub(crate) struct Coroutines;

impl Engine for Coroutines {
    type Listener = may::net::TcpListener;
    type Stream = CoStream;

    fn listener(std: std::net::TcpListener) -> io::Result<may::net::TcpListener> {
        listener(std)
    }

    fn accept(listener: &may::net::TcpListener) -> io::Result<(CoStream, SocketAddr)> {
        let (stream, peer) = listener.accept()?;
        let _ = stream.set_nodelay(true);
        Ok((CoStream::new(stream), peer))
    }

    fn spawn<F: FnOnce() + Send + 'static>(stack_bytes: usize, f: F) -> io::Result<()> {
        // The join handle is dropped at once: holding may's handles and
        // dropping them after the coroutine ended crashed inside may's timer
        // list (a misaligned pointer in may_queue's Entry::drop).
        spawn(stack_bytes, f).map(drop)
    }

    fn sleep(d: Duration) {
        may::coroutine::sleep(d);
    }
}

impl Parking for Coroutines {
    fn into_std(stream: CoStream) -> std::net::TcpStream {
        // Dropping may's stream takes the descriptor out of may's epoll.
        let fd = stream.stream.into_raw_fd();
        // SAFETY: `fd` was just released by the may stream, which owned it.
        unsafe { std::net::TcpStream::from_raw_fd(fd) }
    }

    fn from_std(stream: std::net::TcpStream) -> io::Result<CoStream> {
        let fd = stream.into_raw_fd();
        // may's from_raw_fd panics when it cannot register the descriptor
        // with its epoll (out of memory); that becomes an error here.
        std::panic::catch_unwind(|| {
            // SAFETY: `fd` was just released by the std stream, which owned it.
            unsafe { may::net::TcpStream::from_raw_fd(fd) }
        })
        .map(CoStream::new)
        // Not closed here: may's `from_raw_fd` wraps `fd` in a std socket
        // before it registers it, and that socket closed `fd` as the panic
        // unwound. Closing it again could close a descriptor another thread
        // has opened since under the same number.
        .map_err(|_| io::Error::other("cannot register a socket with may"))
    }

    fn on_abandon(stream: &CoStream, on_abandon: Box<dyn FnOnce() + Send>) {
        let waiting = stream.waiting.0.clone();
        // The borrow is taken and released here, with no yield in between.
        ABANDONED.with(|a| {
            let mut a = a.borrow_mut();
            a.on_abandon = Some(on_abandon);
            a.waiting = Some(waiting);
        });
    }

    fn disarm() {
        ABANDONED.with(|a| {
            let mut a = a.borrow_mut();
            a.on_abandon = None;
            a.waiting = None;
        });
    }
}

/// Cancels a coroutine: at its next yield point (an I/O wait, a sleep, a
/// may channel or lock) it unwinds with may's cancel panic, running the
/// destructors of what it holds. What [`Timeout`](crate::Timeout) does to
/// a handler past its limit; the only place coserve cancels.
pub(crate) fn cancel(co: &may::coroutine::Coroutine) {
    // SAFETY: may marks cancel unsafe because the coroutine is unwound from
    // wherever it next yields. The one coroutine cancelled is a Timeout's,
    // which runs only the handler, under catch_unwind, with the request it
    // owns; server state is behind std locks that are never held across a
    // yield, so the unwinding leaves none of them held.
    unsafe { co.cancel() }
}

/// Turns a bound std listener into a may listener.
pub(crate) fn listener(std: std::net::TcpListener) -> io::Result<may::net::TcpListener> {
    std.set_nonblocking(true)?;
    let fd = std.into_raw_fd();
    // The first listener starts may's runtime, which maps a stack for each of
    // the 1,000 coroutines it keeps in its pool and panics if it cannot (an
    // address-space limit, strict overcommit): an error here instead.
    std::panic::catch_unwind(|| {
        // SAFETY: `fd` was just released by a live, listening std socket, so
        // it is open, owned by nobody else, and becomes owned by the may
        // listener.
        unsafe { may::net::TcpListener::from_raw_fd(fd) }
    })
    // `fd` is closed already, as in `from_std`: may wrapped it in a std
    // listener before the panic, and unwinding dropped that.
    .map_err(|_| {
        io::Error::other("cannot start may's runtime (no memory for its coroutine stacks?)")
    })
}

/// Runs `f` on a new coroutine with a stack of `stack_bytes`.
pub(crate) fn spawn<F>(stack_bytes: usize, f: F) -> io::Result<may::coroutine::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let builder =
        may::coroutine::Builder::new().stack_size(crate::runtime::stack_words(stack_bytes));
    // may panics when it cannot map a stack for a new coroutine: out of
    // memory or address space, or the process at `vm.max_map_count` (each
    // stack is two maps, so about 32,000 coroutines at Linux's default).
    // Unwinding drops `f` and what it owns (a connection's socket is
    // closed); the caller gets an error and carries on.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: may's spawn is unsafe because a coroutine must not hold
        // thread-locals or std lock guards across a yield. The connection
        // code holds none across I/O: its only thread-local (the Date cache)
        // is borrowed and released inside a function that does no I/O.
        unsafe { builder.spawn(f) }
    }))
    .unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "cannot map a coroutine stack",
        ))
    })
}
