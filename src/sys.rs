//! Every raw system call the crate makes, each behind a safe signature.
//!
//! What std, `socket2` and may already wrap is used through them; what they
//! do not (`openat2`, `sendfile`, `recv` into spare capacity, the parking
//! lot's epoll, the coarse clocks) is here, so that the `unsafe` blocks and
//! their SAFETY notes sit in one file.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::BytesMut;

/// Turns a `-1` return into the thread's `errno`.
fn check(result: libc::c_long) -> io::Result<libc::c_long> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit,
/// and returns the soft limit now in force (`u64::MAX`, `RLIM_INFINITY`,
/// for unlimited).
///
/// Every connection takes a descriptor, and many systems start programs
/// with a soft limit of 1,024 while the hard one is far higher; Go programs
/// raise it at start for the same reason. The `coserve` binary calls this
/// before it binds; a program that embeds a server decides for itself.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut lim = open_files_limits()?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    // RLIM_INFINITY is u64::MAX already on Linux.
    Ok(lim.rlim_cur)
}

/// `getrlimit(RLIMIT_NOFILE)`: the soft and hard limits on open
/// descriptors.
fn open_files_limits() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, which is valid.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }.into())?;
    Ok(lim)
}

/// The soft limit on open descriptors (`ulimit -n`).
pub(crate) fn open_files_limit() -> io::Result<u64> {
    open_files_limits().map(|lim| lim.rlim_cur)
}

/// Reads a clock with `clock_gettime(2)`.
pub(crate) fn clock_gettime(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which is valid.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A clock's resolution, with `clock_getres(2)`.
pub(crate) fn clock_getres(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec into `ts`, which is valid.
    check(unsafe { libc::clock_getres(clock, &mut ts) }.into())?;
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Ends the read side of a socket (`shutdown(SHUT_RD)`): a read waiting on
/// it returns end-of-file. Errors are ignored: the socket may be closing.
///
/// `fd` is a number, not a borrow, because the server shuts down the
/// sockets of other flows of control; it keeps a number registered only
/// while its socket is open, so the number never names another file.
pub(crate) fn shutdown_read(fd: RawFd) {
    // SAFETY: shutdown(2) neither closes nor frees the descriptor, and
    // touches no memory of ours.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}

/// Sets or clears `TCP_CORK`; failure only costs efficiency.
pub(crate) fn set_cork(sock: BorrowedFd<'_>, on: bool) {
    let value: libc::c_int = on.into();
    // SAFETY: `sock` is open for the call; `value` is a valid c_int whose
    // size is passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// `send(2)` with `MSG_MORE`: the kernel holds these bytes back until more
/// follow (the file `sendfile` sends next), so that a head leaves in the
/// same full segment as the start of its body, without the two
/// `setsockopt` calls that `TCP_CORK` takes.
pub(crate) fn send_more(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    send(sock, buf, libc::MSG_MORE)
}

/// `send(2)` that never waits: as much of `buf` as the socket takes now
/// (`WouldBlock` when it takes nothing), whether the socket blocks or not.
#[cfg(feature = "websocket")]
pub(crate) fn send_nowait(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    send(sock, buf, libc::MSG_DONTWAIT)
}

/// `send(2)` with `flags`, and never a SIGPIPE.
fn send(sock: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `sock` is open for the call and `buf` is valid for reads of
    // its length.
    let n = check(unsafe {
        libc::send(
            sock.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    } as libc::c_long)?;
    Ok(n as usize)
}

/// `sendfile(2)`: up to `count` bytes of `file` from `*offset` to `sock`,
/// advancing `*offset`. Returns the bytes sent (0 at the end of the file).
pub(crate) fn sendfile(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    // SAFETY: both descriptors are open for the call; `off` is a valid,
    // exclusive pointer.
    let n = check(
        unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) }
            as libc::c_long,
    )?;
    *offset = off as u64;
    Ok(n as usize)
}

/// `recv(2)` into the spare capacity of `buf` (made if there is none),
/// which grows by the bytes received. Returns how many (0 at
/// end-of-stream). A socket's receive only ever writes the buffer it is
/// given, so handing it uninitialised
/// memory is sound, unlike `Read::read`, whose implementations may read it.
pub(crate) fn recv_into(sock: BorrowedFd<'_>, buf: &mut BytesMut) -> io::Result<usize> {
    // A read into no room would look like end-of-stream.
    buf.reserve(1);
    let spare = buf.spare_capacity_mut();
    // SAFETY: `sock` is open for the call, and recv writes at most
    // `spare.len()` bytes into `spare`, which is valid for writes.
    let n = check(
        unsafe { libc::recv(sock.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), 0) }
            as libc::c_long,
    )? as usize;
    let n = n.min(spare.len());
    // SAFETY: recv initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `openat(dir, path, flags)`, following symlinks unless `flags` holds
/// `O_NOFOLLOW`. `O_CLOEXEC` is always added.
pub(crate) fn openat(dir: BorrowedFd<'_>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is open for the call and `path` is NUL-terminated.
    let fd = check(
        unsafe { libc::openat(dir.as_raw_fd(), path.as_ptr(), flags | libc::O_CLOEXEC) }.into(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The text of the symlink `link` is open on (with `O_PATH | O_NOFOLLOW`):
/// `readlinkat(link, "")`, so the text read is that link's, whatever its
/// name now names.
pub(crate) fn readlink_fd(link: BorrowedFd<'_>) -> io::Result<std::ffi::CString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `link` is open for the call, the empty path is NUL-terminated,
    // and `buf` is valid for writes of its length.
    let n = check(unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    } as libc::c_long)? as usize;
    if n == buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    std::ffi::CString::new(buf).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat2(dir, path, flags, resolve)` (Linux 5.6): opens `path` relative to
/// the directory `dir` under the resolution rules `resolve` (such as
/// `RESOLVE_BENEATH`). `O_CLOEXEC` is always added.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    /// `struct open_how` from linux/openat2.h (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: `dir` is open for the call, `path` is NUL-terminated, and
    // `how` is a valid `open_how` whose size is passed alongside it.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `fstatat(dir, path)`, following symlinks as opening it would, and what
/// `look` makes of the result. The `stat` (144 bytes) lives in this frame
/// only, and `look` takes what it needs: returned by value, it was copied
/// through one more frame of the file cache's hit path.
#[inline]
pub(crate) fn fstatat<R>(
    dir: BorrowedFd<'_>,
    path: &CStr,
    look: impl FnOnce(&libc::stat) -> R,
) -> io::Result<R> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is open for the call, `path` is NUL-terminated and `st`
    // is valid for writes of a stat.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), path.as_ptr(), st.as_mut_ptr(), 0) }.into())?;
    // SAFETY: fstatat succeeded, so it filled `st`.
    Ok(look(unsafe { st.assume_init_ref() }))
}

/// An epoll instance (`epoll(7)`), for the parking lot.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// One readiness event: which registration, and what happened.
pub(crate) type Event = libc::epoll_event;

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: a plain system call; it touches no memory of ours.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }.into())?;
        // SAFETY: epoll_create1 returned a new descriptor that nothing else
        // owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// Watches `fd` for `events`, reported with `token`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are open for the call and `event` is valid.
        check(
            unsafe {
                libc::epoll_ctl(
                    self.fd.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    fd.as_raw_fd(),
                    &mut event,
                )
            }
            .into(),
        )
        .map(drop)
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) {
        // SAFETY: both descriptors are open for the call; a null event is
        // allowed for EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout` for events; returns those that came.
    pub(crate) fn wait<'e>(&self, events: &'e mut [Event], timeout: Duration) -> &'e [Event] {
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is valid for writes of `max` entries.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, millis) };
        &events[..n.max(0) as usize]
    }
}

/// The socket option level of kTLS (`linux/socket.h`).
#[cfg(feature = "tls")]
pub(crate) const SOL_TLS: libc::c_int = 282;
/// kTLS's control messages: a record's content type, to send or received.
#[cfg(feature = "tls")]
const TLS_SET_RECORD_TYPE: libc::c_int = 1;
#[cfg(feature = "tls")]
const TLS_GET_RECORD_TYPE: libc::c_int = 2;

/// `setsockopt` with a value given as bytes.
#[cfg(feature = "tls")]
pub(crate) fn setsockopt_bytes(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    // SAFETY: `value` is valid for its length during the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The control message buffer of one `TLS_*_RECORD_TYPE` (a byte), aligned
/// as `cmsghdr` wants.
#[cfg(feature = "tls")]
#[repr(C, align(8))]
struct Control([u8; 32]);

/// Sends `data` as one record of content type `kind` on a kTLS socket,
/// without waiting.
#[cfg(feature = "tls")]
pub(crate) fn send_tls_record(fd: RawFd, kind: u8, data: &[u8]) -> io::Result<usize> {
    let mut control = Control([0; 32]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: zeroed msghdr is valid; every pointer set below outlives the
    // call, and CMSG_* stay inside `control`, which holds a whole
    // control message of one byte.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(1) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = kind;
        let n = libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Receives one record from a kTLS socket, with its content type
/// (`data_type` when the kernel names none), without waiting: for the
/// record that a plain read refused (not application data).
#[cfg(feature = "tls")]
pub(crate) fn recv_tls_record(fd: RawFd, buf: &mut [u8], data_type: u8) -> io::Result<(u8, usize)> {
    let mut control = Control([0; 32]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in `send_tls_record`; the kernel writes at most
    // `msg_controllen` bytes of control data and `buf.len()` of data.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len() as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut kind = data_type;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_TLS && (*cmsg).cmsg_type == TLS_GET_RECORD_TYPE {
                kind = *libc::CMSG_DATA(cmsg);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((kind, n as usize))
    }
}

/// A new eventfd (non-blocking, close-on-exec): what wakes a thread
/// engine's read from another thread.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's count: it becomes readable.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Waits until `sock` is readable (or closed) or `wake` was signalled, at
/// most `timeout` (`None`: for ever). Returns (socket ready, woken); a
/// wake-up is consumed. Interrupted waits are retried.
pub(crate) fn poll_read_or_wake(
    sock: BorrowedFd<'_>,
    wake: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    loop {
        // SAFETY: `fds` is valid for its two entries during the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let woken = fds[1].revents != 0;
    if woken {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into `count`.
        unsafe { libc::read(wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
    Ok((fds[0].revents != 0, woken))
}
