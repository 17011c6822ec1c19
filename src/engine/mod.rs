//! How connections get a flow of control.
//!
//! The accept loop and the connection code are the same for every engine;
//! an engine only says how to accept, how to start a flow of control, and
//! how to wait.
//!
//! - [`coroutine`]: one may coroutine per connection (the default).
//! - [`thread`]: one OS thread per connection over std sockets, the
//!   classic blocking server, kept as the baseline to measure against.

pub(crate) mod coroutine;
pub(crate) mod deadline;
pub(crate) mod thread;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use crate::sys;
use crate::transport::Transport;

/// Which engine serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// One may coroutine per connection.
    #[default]
    Coroutine,
    /// One OS thread per connection.
    Thread,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "coroutine" => Ok(EngineKind::Coroutine),
            "thread" => Ok(EngineKind::Thread),
            other => Err(format!("unknown engine {other:?} (coroutine or thread)")),
        }
    }
}

/// What the accept loop needs from an engine: what both engines do.
pub(crate) trait Engine: 'static {
    /// A listening socket.
    type Listener: Send + 'static;
    /// An accepted connection.
    type Stream: Transport + AsRawFd + Send + 'static;

    /// Adopts a bound, listening std socket.
    fn listener(std: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Waits for the next connection.
    fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)>;

    /// Runs `f` on a new flow of control with about `stack_bytes` of stack.
    fn spawn<F: FnOnce() + Send + 'static>(stack_bytes: usize, f: F) -> io::Result<()>;

    /// Waits without holding up other flows of control.
    fn sleep(d: Duration);
}

/// What only the coroutine engine does: an idle connection gives up its
/// flow of control and waits in the parking lot as a plain socket, and a
/// flow of control can be abandoned without unwinding (may does that to a
/// coroutine that overflows its stack). An OS thread costs the same idle
/// or not, and one that overflows aborts the process.
pub(crate) trait Parking: Engine {
    /// The socket underneath a stream, taken out of the engine's hands.
    fn into_std(stream: Self::Stream) -> std::net::TcpStream;

    /// A stream for a socket from [`Parking::into_std`]; called on the flow
    /// of control that will serve it.
    fn from_std(stream: std::net::TcpStream) -> io::Result<Self::Stream>;

    /// Arranges for `on_abandon` to run if the current flow of control ends
    /// without returning or unwinding: nothing on its stack is ever
    /// dropped, so `stream` would stay open. [`Parking::disarm`] cancels it.
    fn on_abandon(stream: &Self::Stream, on_abandon: Box<dyn FnOnce() + Send>);

    /// Cancels [`Parking::on_abandon`] for the current flow of control.
    fn disarm();
}

/// Files larger than this are sent inside `TCP_CORK`.
const CORK_ABOVE: u64 = 1 << 20;

/// Sends `head`, then `len` bytes of `file` from `offset`, to the socket
/// `sock`: the head with `MSG_MORE` (so that it leaves with the file's
/// first bytes), the file with `sendfile(2)`. When the socket buffer is
/// full (EAGAIN), `wait_room` waits until it has room, or fails (a
/// timeout).
///
/// A file that will take many `sendfile` calls (over [`CORK_ABOVE`]) is
/// sent corked: each call that the full socket buffer cuts short would
/// otherwise end in a short segment (docs/performance.md). For the rest,
/// `MSG_MORE` on the head does the same for two fewer system calls.
pub(crate) fn sendfile_loop(
    sock: BorrowedFd<'_>,
    head: &[u8],
    file: &std::fs::File,
    offset: u64,
    len: u64,
    wait_room: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    if len <= CORK_ABOVE {
        return send_head_and_file(sock, head, file, offset, len, wait_room);
    }
    sys::set_cork(sock, true);
    let sent = send_head_and_file(sock, head, file, offset, len, wait_room);
    sys::set_cork(sock, false);
    sent
}

fn send_head_and_file(
    sock: BorrowedFd<'_>,
    mut head: &[u8],
    file: &std::fs::File,
    mut offset: u64,
    len: u64,
    mut wait_room: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    while !head.is_empty() {
        match sys::send_more(sock, head) {
            Ok(n) => head = &head[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_room()?,
            Err(e) => return Err(e),
        }
    }
    let end = offset + len;
    while offset < end {
        let count = (end - offset).min(1 << 30) as usize;
        match sys::sendfile(sock, file.as_fd(), &mut offset, count) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_room()?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
