//! The client's share for `scripts/bench/compare.sh`: a server that does
//! nothing but answer. One thread, one epoll, level-triggered; every
//! complete request head it reads (it counts `\r\n\r\n`) gets the same
//! response from memory, shaped like coserve's answer for a 1 KiB
//! `index.html` (the same header fields and lengths), so that `wrk` parses
//! as many bytes as it does against coserve.
//!
//! It reads no file, parses nothing and keeps no validators: no HTTP server
//! can answer with less work. So what `wrk -t1` makes against it is what
//! the client gets when the server costs nothing. That is not always the
//! most: the client's own cost per request depends on how the server's
//! answers are timed, and at 1,000 connections on the project's machine
//! may_minihttp, which does more, got more (docs/performance.md, "Against nginx, lighttpd and may_minihttp").
//!
//! With `short` as a second argument it answers with may_minihttp's head
//! instead (114 bytes against coserve's 246, the same 1 KiB body): the
//! difference is what the head's length costs `wrk`, which parses every
//! byte of it.
//!
//! ```sh
//! cargo run --release -p coserve-peers --bin null_peer -- 127.0.0.1:8083
//! cargo run --release -p coserve-peers --bin null_peer -- 127.0.0.1:8083 short
//! ```
//!
//! Not a server to use: it ignores methods, targets and bodies.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// coserve's head for a 1 KiB `index.html`, byte for byte in length.
const HEAD: &str = "HTTP/1.1 200 OK\r\n\
    Server: coserve/0.1.0\r\n\
    Date: Fri, 27 Nov 2026 06:38:10 GMT\r\n\
    Content-Length: 1024\r\n\
    Content-Type: text/html; charset=utf-8\r\n\
    ETag: \"ad007f-400-18ebd3701e38c57d\"\r\n\
    Last-Modified: Fri, 27 Nov 2026 06:35:54 GMT\r\n\
    Accept-Ranges: bytes\r\n\r\n";

/// may_minihttp's head for its 1 KiB answer (`minihttp_peer`),
/// byte for byte in length.
const SHORT_HEAD: &str = "HTTP/1.1 200 Ok\r\n\
    Server: M\r\n\
    Date: Fri, 27 Nov 2026 10:01:39 GMT\r\n\
    Content-Length: 1024\r\n\
    Content-Type: text/html\r\n\r\n";

struct Conn {
    stream: TcpStream,
    /// Bytes of a request head not yet complete.
    partial: Vec<u8>,
    /// Responses the socket had no room for yet.
    pending: Vec<u8>,
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8083".into());
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    let head = match std::env::args().nth(2).as_deref() {
        None => HEAD,
        Some("short") => SHORT_HEAD,
        Some(other) => {
            eprintln!("unknown head {other:?}: give `short` or nothing");
            std::process::exit(2);
        }
    };
    let mut response = head.as_bytes().to_vec();
    response.resize(head.len() + 1024, b'x');
    println!("null_peer listening on {addr}");

    // SAFETY: plain syscall; the result is checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    let lfd = listener.as_raw_fd();
    ctl(epoll, libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN)?;
    let mut conns: HashMap<RawFd, Conn> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // SAFETY: `events` is valid for writes of its length.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            if fd == lfd {
                while let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    let cfd = stream.as_raw_fd();
                    ctl(epoll, libc::EPOLL_CTL_ADD, cfd, libc::EPOLLIN)?;
                    conns.insert(
                        cfd,
                        Conn {
                            stream,
                            partial: Vec::new(),
                            pending: Vec::new(),
                        },
                    );
                }
                continue;
            }
            let Some(conn) = conns.get_mut(&fd) else {
                continue;
            };
            if serve(conn, &mut buf, &response).is_err() {
                conns.remove(&fd);
                continue;
            }
            let want = if conn.pending.is_empty() {
                libc::EPOLLIN
            } else {
                libc::EPOLLOUT
            };
            ctl(epoll, libc::EPOLL_CTL_MOD, fd, want)?;
        }
    }
}

/// Reads what the socket has and answers each complete head; an error or
/// end of stream closes the connection.
fn serve(conn: &mut Conn, buf: &mut [u8], response: &[u8]) -> io::Result<()> {
    if conn.pending.is_empty() {
        let n = match conn.stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        conn.partial.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = conn.partial[start..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            conn.pending.extend_from_slice(response);
            start += end + 4;
        }
        conn.partial.drain(..start);
    }
    while !conn.pending.is_empty() {
        match conn.stream.write(&conn.pending) {
            Ok(n) => {
                conn.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn ctl(epoll: RawFd, op: i32, fd: RawFd, events: i32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: fd as u64,
    };
    // SAFETY: both descriptors are open and `ev` is valid.
    if unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
