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
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::conn::Transport;

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

/// What the accept loop needs from an engine.
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

    /// The socket underneath a stream, taken out of the engine's hands.
    fn into_std(stream: Self::Stream) -> std::net::TcpStream;

    /// A stream for a socket from [`Engine::into_std`]; called on the flow
    /// of control that will serve it.
    fn from_std(stream: std::net::TcpStream) -> io::Result<Self::Stream>;

    /// Arranges for `on_abandon` to run if the current flow of control ends
    /// without returning or unwinding, which is what may does to a
    /// coroutine that overflows its stack: nothing on that stack is ever
    /// dropped, so `stream` would stay open. [`Engine::disarm`] cancels it.
    /// An OS thread that overflows aborts the process, so the thread engine
    /// does nothing here.
    fn on_abandon(stream: &Self::Stream, on_abandon: Box<dyn FnOnce() + Send>) {
        let _ = (stream, on_abandon);
    }

    /// Cancels [`Engine::on_abandon`] for the current flow of control.
    fn disarm() {}
}

/// Sends `len` bytes of `file` from `offset` to the socket `sock` with
/// `sendfile(2)`. When the socket buffer is full (EAGAIN), `wait_room`
/// waits until it has room, or fails (a timeout).
pub(crate) fn sendfile_loop(
    sock: std::os::fd::RawFd,
    file: &std::fs::File,
    mut offset: u64,
    len: u64,
    mut wait_room: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let end = offset + len;
    let src = file.as_raw_fd();
    while offset < end {
        let count = (end - offset).min(1 << 30) as usize;
        let mut off = offset as libc::off_t;
        // SAFETY: `sock` and `src` are open descriptors borrowed from live
        // objects for the duration of the call; `off` is a valid, exclusive
        // pointer.
        let n = unsafe { libc::sendfile(sock, src, &mut off, count) };
        if n > 0 {
            offset += n as u64;
            continue;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => wait_room()?,
            _ => return Err(err),
        }
    }
    Ok(())
}

/// Sets or clears `TCP_CORK` on a socket; failure only costs efficiency.
pub(crate) fn set_cork(sock: std::os::fd::RawFd, on: bool) {
    let value: libc::c_int = on.into();
    // SAFETY: `sock` is an open socket borrowed for the call; `value` is a
    // valid c_int whose size is passed.
    unsafe {
        libc::setsockopt(
            sock,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
