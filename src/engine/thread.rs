//! The thread engine: one OS thread per connection over blocking std
//! sockets. The same connection code runs here; the kernel parks the thread
//! instead of may parking a coroutine.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::Engine;
use crate::sys;
use crate::transport::Transport;

/// A blocking std stream as a [`Transport`].
pub(crate) struct ThreadStream {
    stream: TcpStream,
    read_timeout: Option<Duration>,
    /// Once a read waker was asked for: the eventfd it signals, which reads
    /// then wait on beside the socket.
    wake: Option<Arc<OwnedFd>>,
}

impl ThreadStream {
    /// Before a read: with a waker, waits for the socket or the waker (at
    /// most the read timeout), and says `WouldBlock` if woken or timed out.
    fn ready_to_read(&self) -> io::Result<()> {
        let Some(wake) = &self.wake else {
            return Ok(());
        };
        let (readable, woken) =
            sys::poll_read_or_wake(self.stream.as_fd(), wake.as_fd(), self.read_timeout)?;
        if woken || !readable {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "woken or timed out",
            ));
        }
        Ok(())
    }
}

impl Read for ThreadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready_to_read()?;
        self.stream.read(buf)
    }
}

impl Write for ThreadStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

impl AsRawFd for ThreadStream {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

impl Transport for ThreadStream {
    fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        Some(self.stream.as_raw_fd())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout != self.read_timeout {
            self.stream.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        Ok(())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// `recv(2)` straight into the buffer's spare capacity; the socket's
    /// receive timeout (SO_RCVTIMEO) makes a stalled read fail with EAGAIN.
    fn read_spare(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.ready_to_read()?;
        sys::recv_into(self.stream.as_fd(), buf)
    }

    fn read_waker(&mut self) -> Option<crate::transport::ReadWaker> {
        if self.wake.is_none() {
            self.wake = Some(Arc::new(sys::eventfd().ok()?));
        }
        let wake = self.wake.clone()?;
        Some(Arc::new(move || sys::eventfd_signal(wake.as_fd())))
    }

    /// `sendfile(2)` on a blocking socket: it blocks in the kernel, and the
    /// socket's send timeout (SO_SNDTIMEO) turns a stalled client into
    /// EAGAIN, reported as a timeout.
    fn send_file(&mut self, head: &[u8], file: &File, offset: u64, len: u64) -> io::Result<()> {
        super::sendfile_loop(self.stream.as_fd(), head, file, offset, len, || {
            Err(io::Error::new(io::ErrorKind::TimedOut, "send timed out"))
        })
    }
}

/// The thread engine.
pub(crate) struct Threads;

impl Engine for Threads {
    type Listener = TcpListener;
    type Stream = ThreadStream;

    fn listener(std: TcpListener) -> io::Result<TcpListener> {
        std.set_nonblocking(false)?;
        Ok(std)
    }

    fn accept(listener: &TcpListener) -> io::Result<(ThreadStream, SocketAddr)> {
        let (stream, peer) = listener.accept()?;
        let _ = stream.set_nodelay(true);
        Ok((
            ThreadStream {
                stream,
                read_timeout: None,
                wake: None,
            },
            peer,
        ))
    }

    fn spawn<F: FnOnce() + Send + 'static>(stack_bytes: usize, f: F) -> io::Result<()> {
        // OS threads get at least 128 KiB: glibc and std need more than a
        // coroutine's frames, and the pages are only committed when touched.
        // The thread is detached, so its stack is freed as soon as it ends.
        std::thread::Builder::new()
            .stack_size(stack_bytes.max(128 * 1024))
            .spawn(f)
            .map(drop)
    }

    fn sleep(d: Duration) {
        std::thread::sleep(d);
    }
}
