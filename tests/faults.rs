//! Fault injection ("Hardening: faults"): clients that vanish in the middle
//! of a response, files that change while they are being sent, a server
//! that runs out of descriptors, a handler that overflows its stack, and
//! coroutine stacks that cannot be mapped.
//!
//! The servers run in this process, so their descriptors and memory are the
//! process's: `/proc/self/fd` and `/proc/self/status` measure them. Other
//! tests run alongside, so a check of one server's descriptors counts only
//! what is attributably its own (sockets on its port, files under its site);
//! the test that measures the whole process runs it alone, in a fresh run of
//! this test binary ([`run_alone`]). The descriptor-limit tests run the
//! `coserve` binary as a child, with a limit of its own.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use coserve::{EngineKind, Request, Response};
use coserve_http1::procfs::{self, Process};

use crate::child;
use crate::util::{
    IO_TIMEOUT, Resp, TestServer, big_pattern, engine, eventually, make_site, read_head_only,
    read_response, start, start_default_site, start_site, test_config,
};

const STYLE: &[u8] = b"body { color: black; }\n";
const MIB: u64 = 1024 * 1024;
/// `big.bin` in the standard site.
const BIG_LEN: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers

/// Like [`eventually`](crate::util::eventually), for conditions that are expensive to evaluate (they
/// read `/proc`): waits a little between polls.
fn eventually_slow(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A file's content: byte `i` is `(i % 251) ^ xor`, so that two patterns
/// with different `xor` differ at every offset.
#[derive(Clone, Copy)]
struct Pattern {
    xor: u8,
}

/// The content of the files as written first.
const ORIGINAL: Pattern = Pattern { xor: 0 };
/// The content of a replacement: differs from [`ORIGINAL`] at every offset.
const REPLACEMENT: Pattern = Pattern { xor: 0xa5 };

impl Pattern {
    const PERIOD: usize = 251;
    /// A whole number of periods, about 1 MiB.
    const BLOCK: usize = Self::PERIOD * 4096;

    fn block(self) -> &'static [u8] {
        static BLOCKS: OnceLock<Mutex<HashMap<u8, &'static [u8]>>> = OnceLock::new();
        let mut blocks = BLOCKS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        blocks.entry(self.xor).or_insert_with(|| {
            let block: Vec<u8> = (0..Self::BLOCK + Self::PERIOD)
                .map(|i| (i % Self::PERIOD) as u8 ^ self.xor)
                .collect();
            Box::leak(block.into_boxed_slice())
        })
    }

    /// The `n` bytes at `offset`; `n` at most one block.
    fn at(self, offset: u64, n: usize) -> &'static [u8] {
        assert!(n <= Self::BLOCK);
        let start = (offset % Self::PERIOD as u64) as usize;
        &self.block()[start..start + n]
    }

    /// Whether `data` is the pattern from `offset` on, whatever its length.
    fn is(self, offset: u64, data: &[u8]) -> bool {
        data.chunks(Self::BLOCK)
            .enumerate()
            .all(|(i, chunk)| chunk == self.at(offset + (i * Self::BLOCK) as u64, chunk.len()))
    }

    /// Writes `len` bytes of the pattern to `path`.
    fn write(self, path: &Path, len: u64) {
        let mut f = File::create(path).unwrap();
        let mut left = len;
        while left > 0 {
            let n = left.min(Self::BLOCK as u64) as usize;
            f.write_all(&self.block()[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }
}

/// How reading a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// All the bytes asked for arrived.
    Complete,
    /// A FIN: the server closed.
    Eof,
    /// A reset.
    Reset,
    /// Nothing for the whole allowed time.
    TimedOut,
    /// Another error.
    Failed(io::ErrorKind),
}

/// Reads up to `len` body bytes, checking each against `pattern` at its
/// offset (starting at `offset`), for at most `within`. Returns how many
/// arrived and how the reading ended; panics at the first wrong byte.
fn read_checked(
    s: &mut TcpStream,
    pattern: Pattern,
    offset: u64,
    len: u64,
    within: Duration,
) -> (u64, End) {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < len {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return (got, End::TimedOut);
        };
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let want = (len - got).min(buf.len() as u64) as usize;
        match s.read(&mut buf[..want]) {
            Ok(0) => return (got, End::Eof),
            Ok(n) => {
                let at = offset + got;
                let expected = pattern.at(at, n);
                if buf[..n] != *expected {
                    let i = buf[..n]
                        .iter()
                        .zip(expected)
                        .position(|(a, b)| a != b)
                        .unwrap();
                    panic!(
                        "wrong byte at body offset {}: got {:#04x}, the file had {:#04x}",
                        at + i as u64,
                        buf[i],
                        expected[i]
                    );
                }
                got += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (got, End::Reset),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return (got, End::Failed(e.kind())),
        }
    }
    (got, End::Complete)
}

/// A client socket whose receive buffer is `rcvbuf` bytes, set before the
/// handshake so that the advertised window stays small: the server cannot
/// push a large body into the kernel's buffers and be done with it.
fn connect_window(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Closes with a reset instead of a FIN: SO_LINGER with a zero timeout.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

fn get_on(c: &mut TcpStream, path: &str) -> Resp {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    read_response(c, false).expect("a response")
}

/// A short request on a connection of its own must be answered normally.
fn assert_serves_others(server: &TestServer) {
    let r = server.get("/style.css");
    assert_eq!((r.status, &*r.body), (200, STYLE), "{r:?}");
}

fn assert_all_closed(server: &TestServer, within: Duration, what: &str) {
    assert!(
        eventually(within, || server.handle.active_connections() == 0),
        "{what}: {} connections still counted after {within:?}",
        server.handle.active_connections()
    );
}

// ---------------------------------------------------------------------------
// Descriptors and memory of this process

/// The sockets of this process by inode: (local port, remote port, state).
fn tcp_sockets() -> HashMap<u64, (u16, u16, u8)> {
    let mut out = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
            let state = u8::from_str_radix(f[3], 16).unwrap();
            let inode: u64 = f[9].parse().unwrap();
            out.insert(inode, (port(f[1]), port(f[2]), state));
        }
    }
    out
}

/// Connections waiting in the accept queue of the listener on `port` (for
/// a listening socket, `/proc/net/tcp` shows the accept queue as rx_queue).
fn accept_queue(port: u16) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
        if local != port || state != TCP_LISTEN {
            return None;
        }
        u32::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()
    })
}

/// This process's descriptors, sorted by owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fds {
    /// Every entry of `/proc/self/fd`.
    total: usize,
    /// Connections the server accepted (local port = its port), listener
    /// excluded.
    server_conns: usize,
    /// Clients of the server in this process (remote port = its port).
    client_conns: usize,
    /// Files open under the server's site (not the root directory).
    site_files: usize,
    /// Sockets that have nothing to do with the server.
    unrelated_sockets: usize,
}

const TCP_LISTEN: u8 = 0x0a;

fn fd_census(port: u16, site: Option<&Path>) -> Fds {
    let links: Vec<PathBuf> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect();
    // Read after the links, so that every socket listed is in the table
    // unless it closed in between.
    let sockets = tcp_sockets();
    let site = site.map(|s| s.canonicalize().unwrap());
    let mut fds = Fds {
        total: links.len(),
        server_conns: 0,
        client_conns: 0,
        site_files: 0,
        unrelated_sockets: 0,
    };
    for link in &links {
        let text = link.to_string_lossy();
        if let Some(inode) = text
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            let inode: u64 = inode.parse().unwrap();
            match sockets.get(&inode) {
                Some(&(local, _, state)) if local == port && state != TCP_LISTEN => {
                    fds.server_conns += 1
                }
                Some(&(local, _, _)) if local == port => {}
                Some(&(_, remote, _)) if remote == port => fds.client_conns += 1,
                _ => fds.unrelated_sockets += 1,
            }
        } else if site
            .as_ref()
            .is_some_and(|site| link.starts_with(site) && link != site)
        {
            // Files under the root; the root itself the server holds open
            // for as long as it runs.
            fds.site_files += 1;
        }
    }
    fds
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    crate::util::proc_status_kib(Process::Current, "VmRSS")
}

/// Runs the ignored test `name` of module `module` (a `module_path!()`) in a
/// process of its own, a fresh run of this test binary, and fails if it
/// fails or does not run. Its `[faults]` lines are passed on.
fn run_alone(module: &str, name: &str) {
    // Test names leave out the crate's name.
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let test = format!("{module}::{name}");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([&*test, "--exact", "--include-ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test binary");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    for line in stderr.lines().filter(|l| l.starts_with("[faults]")) {
        eprintln!("{line}");
    }
    let Some(status) = status else {
        panic!("{test} did not finish within 60 s:\n{stdout}\n{stderr}");
    };
    assert!(
        status.success(),
        "{test} failed in a process of its own ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run:\n{stdout}\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// 1. Clients that vanish

/// 50 MB: far more than the kernel's socket buffers hold (tcp_wmem caps the
/// send buffer at 4 MiB by default), so the server is mid-send for as long
/// as the client wants.
const HUGE: u64 = 50 * 1000 * 1000;

/// The standard site plus `huge.bin`, [`HUGE`] bytes of [`ORIGINAL`].
fn start_huge_site(configure: impl FnOnce(coserve::Config) -> coserve::Config) -> TestServer {
    let server = start_site(|c, f| (configure(c), f));
    ORIGINAL.write(&server.root().join("huge.bin"), HUGE);
    server
}

/// Starts `GET /huge.bin` and reads its head.
fn start_huge_download(c: &mut TcpStream) {
    c.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let head = read_head_only(c);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("content-length"),
        Some(&*HUGE.to_string()),
        "{head:?}"
    );
}

/// The descriptors of site files the file cache holds open on purpose
/// (bounded, and closed when stale or idle): every other one is a leak.
fn held_by_cache(server: &TestServer) -> usize {
    server.cache_stats().map_or(0, |s| s.open)
}

/// The server's connection sockets and its open site files are all gone
/// (but for what the file cache holds).
fn assert_server_descriptors_released(server: &TestServer, what: &str) {
    let port = server.addr.port();
    let mut last = fd_census(port, Some(server.root()));
    let mut held = 0;
    let released = eventually_slow(Duration::from_secs(5), || {
        last = fd_census(port, Some(server.root()));
        held = held_by_cache(server);
        last.server_conns == 0 && last.site_files == held
    });
    assert!(
        released,
        "{what}: descriptors still open: {last:?}, {held} held by the cache"
    );
}

mod vanishing_clients {
    use super::*;
    crate::engine_tests! {
        #[test]
        fn a_client_that_resets_mid_download_frees_its_connection() {
            let server = start_huge_site(|c| c);
            // A modest window keeps the server mid-body, blocked on the socket.
            let mut c = connect_window(server.addr, 64 * 1024);
            start_huge_download(&mut c);
            let (got, end) = read_checked(&mut c, ORIGINAL, 0, MIB, IO_TIMEOUT);
            assert_eq!((got, end), (MIB, End::Complete));
            assert_eq!(server.handle.active_connections(), 1);
            // While the download is in flight, others are served.
            assert_serves_others(&server);

            reset(c);
            let reset_at = Instant::now();
            assert_all_closed(&server, Duration::from_secs(5), "after the reset");
            eprintln!(
                "[faults] {:?}: reset after 1 MiB of 50 MB: connection released in {:?}",
                engine(),
                reset_at.elapsed()
            );
            // The socket and the open file went with it.
            assert_server_descriptors_released(&server, "after the reset");
            assert_serves_others(&server);
        }

        #[test]
        fn a_half_closed_client_gets_its_responses_in_full_then_a_close() {
            let server = start_default_site();
            // Keep-alive requests, pipelined, then a close of the sending side:
            // everything asked for is still answered (RFC 9112 §9.6), then the
            // server closes too.
            let mut c = server.connect();
            c.write_all(
                b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n\
                  GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n",
            )
            .unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let r = read_response(&mut c, false).expect("the first response");
            assert_eq!((r.status, &*r.body), (200, STYLE), "{r:?}");
            let head = read_head_only(&mut c);
            assert_eq!(head.status, 200, "{head:?}");
            assert_eq!(head.header("content-length"), Some(&*BIG_LEN.to_string()));
            assert_eq!(
                read_checked(&mut c, ORIGINAL, 0, BIG_LEN as u64, IO_TIMEOUT),
                (BIG_LEN as u64, End::Complete),
            );
            assert_eq!(
                read_checked(&mut c, ORIGINAL, 0, 1, Duration::from_secs(5)),
                (0, End::Eof),
                "after the responses, a close and nothing else"
            );

            // The same with `Connection: close`.
            let mut c = server.connect();
            c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let head = read_head_only(&mut c);
            assert_eq!(head.status, 200, "{head:?}");
            assert_eq!(head.header("connection"), Some("close"));
            assert_eq!(
                read_checked(&mut c, ORIGINAL, 0, BIG_LEN as u64 + 1, IO_TIMEOUT),
                (BIG_LEN as u64, End::Eof),
            );
            assert_all_closed(&server, Duration::from_secs(5), "after the half-closes");
        }

        #[test]
        fn a_client_that_stops_reading_is_dropped_at_the_write_timeout() {
            let write_timeout = Duration::from_millis(500);
            let server = start_huge_site(|c| c.write_timeout(write_timeout));
            // A tiny receive window, a 50 MB response, and never a read.
            let mut stalled = connect_window(server.addr, 4 * 1024);
            stalled
                .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            let asked = Instant::now();
            assert!(
                eventually(Duration::from_secs(5), || server.handle.active_connections() == 1),
                "the request was not taken"
            );

            // Meanwhile others are served: small and large responses.
            assert_serves_others(&server);
            let mut other = server.connect();
            let r = get_on(&mut other, "/big.bin");
            assert_eq!(r.status, 200);
            assert!(r.body == big_pattern(BIG_LEN), "the body differs");
            drop(other);

            // The stalled one is given up after the write timeout, not 30 s.
            assert!(
                eventually(Duration::from_secs(10), || server.handle.active_connections() == 0),
                "a client that stopped reading still holds its connection after 10 s \
                 (write timeout {write_timeout:?})"
            );
            let closed_after = asked.elapsed();
            assert!(
                closed_after >= write_timeout - Duration::from_millis(50),
                "closed after {closed_after:?}, before the write timeout could have passed"
            );
            eprintln!(
                "[faults] {:?}: a client that stopped reading was dropped {closed_after:?} after \
                 its request (write timeout {write_timeout:?})",
                engine()
            );

            // What did reach the client is the file, cut short by a close.
            let head = read_head_only(&mut stalled);
            assert_eq!(head.status, 200);
            let (got, end) = read_checked(&mut stalled, ORIGINAL, 0, HUGE, IO_TIMEOUT);
            assert!(got < HUGE, "the whole body arrived");
            assert!(matches!(end, End::Eof | End::Reset), "{end:?} after {got} bytes");
            eprintln!(
                "[faults] {:?}: the stalled client then read {got} body bytes and {end:?}",
                engine()
            );
            assert_server_descriptors_released(&server, "after the write timeout");
        }

        #[test]
        fn a_thousand_vanishing_clients_leak_no_descriptors_or_memory() {
            // The whole process is measured, so it must be the test's alone:
            // the other tests of this binary run in parallel with it.
            run_alone(
                module_path!(),
                "a_thousand_vanishing_clients_in_a_process_of_their_own",
            );
        }

        #[test]
        #[ignore = "run by a_thousand_vanishing_clients_leak_no_descriptors_or_memory, \
                    in a process of its own"]
        fn a_thousand_vanishing_clients_in_a_process_of_their_own() {
            const CLIENTS: usize = 1000;
            const THREADS: usize = 8;
            let server = start_default_site();
            let port = server.addr.port();
            let addr = server.addr;
            // Warm up (runtime, coroutine pool, thread stack and malloc
            // caches) with the same traffic, then take the baseline.
            let rss_start = rss_kib();
            let warm_up = vanish_many(addr, 200, THREADS);
            assert_all_closed(&server, Duration::from_secs(10), "after the warm-up");
            assert_server_descriptors_released(&server, "after the warm-up");
            let fds_before = fd_census(port, Some(server.root()));
            let rss_before = rss_kib();
            let started = Instant::now();
            let checked = vanish_many(addr, CLIENTS, THREADS);
            let clients_took = started.elapsed();
            assert_all_closed(&server, Duration::from_secs(10), "after 1,000 vanishing clients");
            let mut fds_after = fd_census(port, Some(server.root()));
            let settled = eventually_slow(Duration::from_secs(5), || {
                fds_after = fd_census(port, Some(server.root()));
                fds_after.server_conns == 0
                    && fds_after.site_files == held_by_cache(&server)
                    && fds_after.total <= fds_before.total + 5
            });
            // Memory the server only holds for a moment (exited threads not yet
            // reaped, caches being trimmed) may take a moment to go.
            let rss_limit = rss_before + 50 * 1024;
            let rss_right_after = rss_kib();
            let mut rss_after = rss_right_after;
            let rss_settled = eventually_slow(Duration::from_secs(3), || {
                rss_after = rss_kib();
                rss_after < rss_limit
            });
            eprintln!(
                "[faults] {:?}: {CLIENTS} vanishing clients in {clients_took:?} ({checked} body \
                 bytes checked; {warm_up} in the warm-up); descriptors before {fds_before:?}, \
                 after {fds_after:?}; VmRSS {rss_start} KiB before the warm-up, {rss_before} \
                 KiB before, {rss_right_after} KiB right after, {rss_after} KiB when checked",
                engine(),
            );
            assert!(
                settled,
                "descriptors leaked: before {fds_before:?}, after {fds_after:?}"
            );
            assert!(
                rss_settled,
                "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
            );
            // And the server still works.
            let r = server.get("/big.bin");
            assert_eq!(r.status, 200);
            assert!(r.body == big_pattern(BIG_LEN), "the body differs");
        }
    }
}

/// The ways a client of [`vanish`] disappears.
const KINDS: usize = 4;

/// `clients` clients that vanish, every kind in turn, from `threads`
/// threads. Returns the body bytes they read (and checked).
fn vanish_many(addr: SocketAddr, clients: usize, threads: usize) -> u64 {
    let threads: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                (t..clients)
                    .step_by(threads)
                    .map(|i| vanish(addr, (i / threads) % KINDS))
                    .sum::<u64>()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a client failed"))
        .sum()
}

/// One client that vanishes, in one of [`KINDS`] ways, around `GET
/// /big.bin` (1 MiB). Returns the body bytes it read (and checked).
fn vanish(addr: SocketAddr, kind: usize) -> u64 {
    let mut c = crate::util::connect(addr);
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    match kind {
        // A reset in the middle of the body.
        0 => {
            let head = read_head_only(&mut c);
            assert_eq!(head.status, 200);
            assert_eq!(
                read_checked(&mut c, ORIGINAL, 0, 16 * 1024, IO_TIMEOUT),
                (16 * 1024, End::Complete)
            );
            reset(c);
            16 * 1024
        }
        // A reset before reading anything.
        1 => {
            reset(c);
            0
        }
        // A half-close, then the whole response and the server's close.
        2 => {
            c.shutdown(Shutdown::Write).unwrap();
            let head = read_head_only(&mut c);
            assert_eq!(head.status, 200);
            assert_eq!(
                read_checked(&mut c, ORIGINAL, 0, BIG_LEN as u64 + 1, IO_TIMEOUT),
                (BIG_LEN as u64, End::Eof)
            );
            BIG_LEN as u64
        }
        // A half-close, then gone without reading.
        _ => {
            c.shutdown(Shutdown::Write).unwrap();
            drop(c);
            0
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Files that change while being sent

/// 20 MB: more than the kernel buffers between server and client hold (the
/// client's window is small), so most of it is still in the file when it
/// changes.
const MOVING: u64 = 20 * 1000 * 1000;
/// What the client reads before the file changes.
const BEFORE_CHANGE: u64 = 2 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Cut to 1 MiB in place.
    Truncate,
    /// A new file renamed over it.
    Replace,
    /// Unlinked.
    Delete,
}

/// Starts a download of a 20 MB file, changes the file after the first
/// 2 MiB of its body, and checks what the client gets.
fn file_changes_mid_download(change: Change) {
    let server = start_default_site();
    let path = server.root().join("moving.bin");
    ORIGINAL.write(&path, MOVING);
    let mut c = connect_window(server.addr, 64 * 1024);
    c.write_all(b"GET /moving.bin HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let head = read_head_only(&mut c);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-length"), Some(&*MOVING.to_string()));
    assert_eq!(
        read_checked(&mut c, ORIGINAL, 0, BEFORE_CHANGE, IO_TIMEOUT),
        (BEFORE_CHANGE, End::Complete)
    );

    match change {
        Change::Truncate => {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(MIB).unwrap();
        }
        Change::Replace => {
            let new = server.root().join("moving.bin.new");
            REPLACEMENT.write(&new, MIB);
            std::fs::rename(&new, &path).unwrap();
        }
        Change::Delete => std::fs::remove_file(&path).unwrap(),
    }

    // Meanwhile, another connection is served normally, and sees the file as
    // it is now.
    assert_serves_others(&server);
    let mut other = server.connect();
    let r = get_on(&mut other, "/moving.bin");
    match change {
        Change::Truncate => {
            assert_eq!(r.status, 200);
            assert!(
                r.body.len() as u64 == MIB && ORIGINAL.is(0, &r.body),
                "the truncated file differs"
            );
        }
        Change::Replace => {
            assert_eq!(r.status, 200);
            assert!(
                r.body.len() as u64 == MIB && REPLACEMENT.is(0, &r.body),
                "the new file differs"
            );
        }
        Change::Delete => assert_eq!(r.status, 404),
    }
    drop(other);

    let rest = MOVING - BEFORE_CHANGE;
    let (got, end) = read_checked(
        &mut c,
        ORIGINAL,
        BEFORE_CHANGE,
        rest,
        Duration::from_secs(20),
    );
    let total = BEFORE_CHANGE + got;
    eprintln!(
        "[faults] {:?}: {change:?} after {BEFORE_CHANGE} bytes: the client got {total} of \
         {MOVING} body bytes, all of them the original's, then {end:?}",
        engine()
    );
    match change {
        Change::Truncate => {
            // The server promised 20 MB and the file no longer has them: the
            // only honest end is a close before the promised length, and never
            // a byte that was not the file's at that offset (checked above).
            assert_eq!(end, End::Eof, "after {total} bytes");
            assert!(
                total < MOVING,
                "the whole length arrived from a truncated file"
            );
            assert_all_closed(&server, Duration::from_secs(5), "after the truncation");
        }
        Change::Replace | Change::Delete => {
            // The server holds the file open: the original goes on to the end,
            // and the connection stays usable.
            assert_eq!((total, end), (MOVING, End::Complete));
            let r = get_on(&mut c, "/moving.bin");
            if change == Change::Replace {
                assert_eq!(r.status, 200);
                assert!(
                    r.body.len() as u64 == MIB && REPLACEMENT.is(0, &r.body),
                    "the new file differs"
                );
            } else {
                assert_eq!(r.status, 404);
            }
            drop(c);
            assert_all_closed(&server, Duration::from_secs(5), "after the download");
        }
    }
    assert_server_descriptors_released(&server, "after the download");
}

mod changing_files {
    use super::*;
    crate::engine_tests! {
        #[test]
        fn a_file_truncated_mid_download_ends_the_response_early_with_its_original_bytes() {
            file_changes_mid_download(Change::Truncate);
        }

        #[test]
        fn a_file_replaced_mid_download_is_sent_whole_as_it_was() {
            file_changes_mid_download(Change::Replace);
        }

        #[test]
        fn a_file_deleted_mid_download_is_sent_whole_as_it_was() {
            file_changes_mid_download(Change::Delete);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Descriptors run out

/// A `coserve` child process with a descriptor limit of its own, killed and
/// reaped on drop, even on a failed assertion.
struct Child64 {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Child64 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHILD_NOFILE: libc::rlim_t = 64;

impl Child64 {
    fn spawn(site: &Path) -> Child64 {
        Child64::spawn_with(site, &[], Some(CHILD_NOFILE), &[])
    }

    /// A child serving `site` with `extra` flags, a descriptor limit of
    /// `nofile` (or the test process's) and `envs` in its environment.
    fn spawn_with(
        site: &Path,
        extra: &[&str],
        nofile: Option<libc::rlim_t>,
        envs: &[(&str, &str)],
    ) -> Child64 {
        let engine = match engine() {
            EngineKind::Coroutine => "coroutine",
            EngineKind::Thread => "thread",
        };
        let mut cmd = child::command();
        // A fault may make the child panic where memory is short: capturing
        // a backtrace then allocates enough to abort it.
        cmd.env("RUST_BACKTRACE", "0");
        cmd.envs(envs.iter().copied());
        cmd.args(["-q", "-b", "127.0.0.1", "0", "--engine", engine])
            .args(extra)
            .arg("-d")
            .arg(site);
        if let Some(nofile) = nofile {
            child::limit_descriptors(&mut cmd, nofile, nofile);
        }
        let mut child = cmd.spawn().expect("start coserve");
        let stdout = child::stdout_lines(child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        // Drained all along, so the child never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Child64 {
            child,
            stdout,
            stderr,
        }
    }

    /// The address from the startup line.
    fn addr(&self) -> SocketAddr {
        let line = self
            .stdout
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("no startup line: {e}; stderr {:?}", self.stderr()));
        let port = child::announced_port(&line);
        assert_ne!(port, 0);
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time used so far (user + system), from `/proc/PID/stat`.
    fn cpu(&self) -> Duration {
        procfs::stat(Process::Pid(self.pid())).unwrap().cpu()
    }

    fn open_fds(&self) -> usize {
        procfs::open_fds(Process::Pid(self.pid())).unwrap_or(0)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// `GET /style.css` with `Connection: close` on a fresh connection, each
/// step bounded by `timeout`; `None` if no complete response came.
fn try_get_style(addr: SocketAddr, timeout: Duration) -> Option<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let resps = std::panic::catch_unwind(|| crate::util::parse_responses(&bytes)).ok()?;
    resps.into_iter().next()
}

/// A child at its descriptor limit: [`FLOOD`] connections, each with a
/// request sent, more than it can accept.
struct Flood {
    child: Child64,
    addr: SocketAddr,
    conns: Vec<TcpStream>,
    refused: usize,
    /// The child's descriptors before the flood.
    fds_at_start: usize,
    /// The site, alive as long as the child serves it.
    _site: tempfile::TempDir,
}

const FLOOD: usize = 100;

fn flood() -> Flood {
    let site = make_site();
    let child = Child64::spawn(site.path());
    let addr = child.addr();
    let r = try_get_style(addr, IO_TIMEOUT).expect("a response before the flood");
    assert_eq!((r.status, &*r.body), (200, STYLE), "{r:?}");
    let fds_at_start = child.open_fds();

    // More connections than the child has descriptors: it accepts what it
    // can; the rest wait in the backlog.
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..FLOOD {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n");
                conns.push(s);
            }
            Err(_) => refused += 1,
        }
    }
    let hit_the_limit = eventually_slow(IO_TIMEOUT, || {
        child.stderr().contains("Too many open files")
    });
    assert!(
        hit_the_limit,
        "no accept error logged with {} connections and a limit of {CHILD_NOFILE} \
         ({} descriptors open); stderr {:?}",
        conns.len(),
        child.open_fds(),
        child.stderr()
    );
    Flood {
        child,
        addr,
        conns,
        refused,
        fds_at_start,
        _site: site,
    }
}

/// What each connection has received, by status code ("nothing" when no
/// byte has arrived), once at least one has (or after IO_TIMEOUT).
fn answers(conns: &mut [TcpStream]) -> std::collections::BTreeMap<String, usize> {
    // What each connection got, read without blocking; `None` while nothing
    // has come. The server answers the connections it accepted on its own
    // time, so the reads go round until one has an answer (or IO_TIMEOUT):
    // a single pass could come before any answer under load.
    let mut got: Vec<Option<String>> = vec![None; conns.len()];
    for c in conns.iter() {
        c.set_nonblocking(true).unwrap();
    }
    let mut pass = || {
        for (c, got) in conns.iter_mut().zip(got.iter_mut()) {
            if got.is_some() {
                continue;
            }
            let mut buf = [0u8; 4096];
            *got = match c.read(&mut buf) {
                Ok(n) if n >= 12 => Some(String::from_utf8_lossy(&buf[9..12]).into_owned()),
                Ok(0) => Some("closed".to_string()),
                Ok(_) => Some("partial".to_string()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => Some(format!("{:?}", e.kind())),
            };
        }
        got.iter().any(Option::is_some)
    };
    eventually(IO_TIMEOUT, &mut pass);
    for c in conns.iter() {
        c.set_nonblocking(false).unwrap();
    }
    let mut answers = std::collections::BTreeMap::new();
    for got in got {
        *answers
            .entry(got.unwrap_or_else(|| "nothing".to_string()))
            .or_default() += 1;
    }
    answers
}

mod descriptors {
    use super::*;
    crate::engine_tests! {
        #[test]
        fn out_of_descriptors_the_server_backs_off_and_recovers() {
            let Flood {
                mut child,
                addr,
                mut conns,
                refused,
                fds_at_start,
                _site,
            } = flood();
            let fds_at_limit = child.open_fds();

            // Out of descriptors, a connection waits in the backlog and the
            // listener stays readable: an accept loop that retried at once would
            // spin a core. A measured window, not a synchronisation.
            let window = Duration::from_secs(1);
            let queued_before = accept_queue(addr.port());
            let cpu_before = child.cpu();
            std::thread::sleep(window);
            let cpu_used = child.cpu() - cpu_before;
            let queued_after = accept_queue(addr.port());
            let fds_after_window = child.open_fds();
            eprintln!(
                "[faults] {:?}: {} connected, {refused} refused; child descriptors {fds_at_start} \
                 at start, {fds_at_limit} at the limit of {CHILD_NOFILE}; CPU in a {window:?} \
                 window at the limit: {cpu_used:?}; accept queue {queued_before:?} before the \
                 window, {queued_after:?} after; {fds_after_window} descriptors after; the \
                 clients got {:?}",
                engine(),
                conns.len(),
                answers(&mut conns),
            );
            // The window measured a server with work it could not do: still at
            // its limit, with connections waiting to be accepted.
            assert!(
                fds_after_window >= CHILD_NOFILE as usize - 1,
                "the server was no longer at its descriptor limit ({fds_after_window} open)"
            );
            assert!(
                queued_after.is_some_and(|n| n > 0),
                "no connection was left waiting in the accept queue ({queued_after:?})"
            );
            assert!(
                cpu_used < Duration::from_millis(500),
                "the server used {cpu_used:?} of CPU in {window:?} while out of descriptors"
            );
            assert!(child.alive(), "the server died; stderr {:?}", child.stderr());

            // Once the clients are gone, a new one is served again.
            drop(conns);
            let deadline = Instant::now() + Duration::from_secs(15);
            let recovered_at = Instant::now();
            let mut last = None;
            while Instant::now() < deadline {
                last = try_get_style(addr, Duration::from_secs(2));
                if last.as_ref().is_some_and(|r| r.status == 200) {
                    break;
                }
            }
            let r = last.unwrap_or_else(|| {
                panic!("not served again within 15 s; stderr {:?}", child.stderr())
            });
            assert_eq!((r.status, &*r.body), (200, STYLE), "{r:?}");
            let recovered_in = recovered_at.elapsed();
            // And what the flood held is given back: the child's descriptors
            // return to where they were before it.
            let mut fds_end = child.open_fds();
            let released = eventually_slow(Duration::from_secs(5), || {
                fds_end = child.open_fds();
                fds_end <= fds_at_start
            });
            eprintln!(
                "[faults] {:?}: served again {recovered_in:?} after the clients closed; \
                 descriptors {fds_end} (at start {fds_at_start}); stderr {:?}",
                engine(),
                child.stderr()
            );
            assert!(
                released,
                "the child holds {fds_end} descriptors after the flood, {fds_at_start} before"
            );
            assert!(child.alive());
        }

        #[test]
        fn out_of_descriptors_an_existing_file_is_not_reported_missing() {
            // A file that exists but cannot be opened right now is the server's
            // trouble, not the client's: 500 or 503 (RFC 9110 §15.6), never 404,
            // which a cache may store and a crawler believe.
            let mut flood = flood();
            let answers = answers(&mut flood.conns);
            let answered: usize = answers
                .iter()
                .filter(|(status, _)| status.parse::<u16>().is_ok())
                .map(|(_, n)| n)
                .sum();
            assert!(answered > 0, "no connection was answered: {answers:?}");
            assert!(
                answers
                    .keys()
                    .filter(|status| status.parse::<u16>().is_ok())
                    .all(|status| matches!(status.as_str(), "200" | "500" | "503")),
                "an existing file was answered with {answers:?} while out of descriptors"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Stack overflow

/// Recurses `n` levels with a 1 KiB array in every frame.
#[inline(never)]
fn deep(n: usize) -> u64 {
    let mut frame = [0u8; 1024];
    frame[n % 1024] = 1;
    // Opaque to the optimiser: the array must exist in this frame.
    let frame = std::hint::black_box(&mut frame);
    if n == 0 {
        return frame.iter().map(|&b| u64::from(b)).sum();
    }
    // Not a tail call: the frame lives across the recursion.
    deep(n - 1) + u64::from(frame[n % 1024])
}

/// `GET /deep?n=N` recurses N levels.
fn deep_handler(req: &Request) -> Response {
    let n: usize = req
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let sum = deep(n);
    Response::text(sum.to_string())
}

fn start_deep() -> TestServer {
    start(test_config().engine(EngineKind::Coroutine), deep_handler)
}

/// A recursion that fits the default stack with room to spare: 512 KiB in
/// debug builds; in release builds 64 KiB, of which the server itself may use
/// up to 32 KiB.
const FITS: usize = if cfg!(debug_assertions) { 50 } else { 16 };
/// A recursion that overflows any default stack (about 5 MiB of frames).
const TOO_DEEP: usize = 5000;

/// `GET /deep?n=N` on `c` must answer 200 with N + 1.
fn assert_deep_ok(c: &mut TcpStream, n: usize) {
    let r = get_on(c, &format!("/deep?n={n}"));
    assert_eq!(
        (r.status, r.text()),
        (200, (n + 1).to_string()),
        "n={n}: {r:?}"
    );
}

/// Overflowing clients sent at once.
const OVERFLOWS: usize = 8;

/// What a client that asked for too deep a recursion saw.
#[derive(Debug)]
struct Overflowed {
    bytes: Vec<u8>,
    end: End,
    after: Duration,
}

fn ask_too_deep(addr: SocketAddr, within: Duration) -> Overflowed {
    let mut c = crate::util::connect(addr);
    c.write_all(format!("GET /deep?n={TOO_DEEP} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let started = Instant::now();
    let deadline = started + within;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break End::TimedOut;
        };
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match c.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break End::Failed(e.kind()),
        }
    };
    Overflowed {
        bytes,
        end,
        after: started.elapsed(),
    }
}

mod stack_overflow {
    use super::*;

    // Coroutine engine only: on the thread engine the handler runs on an OS
    // thread, and a thread that overflows its stack aborts the whole process
    // (Rust's guard-page handler), which would take every other test with it.
    mod coroutine {
        use super::*;

        /// A handler that overflows its stack costs only its own connection: the
        /// others, opened before and after, are served, and the process lives on.
        #[test]
        fn a_stack_overflow_spares_other_connections() {
            let server = start_deep();
            let mut before = server.connect();
            assert_deep_ok(&mut before, FITS);

            let seen = ask_too_deep(server.addr, Duration::from_secs(3));
            eprintln!(
                "[faults] Coroutine: the client whose handler overflowed saw {:?} ({} bytes) and \
                 {:?} after {:?}; {} connections counted (the one opened before)",
                String::from_utf8_lossy(&seen.bytes),
                seen.bytes.len(),
                seen.end,
                seen.after,
                server.handle.active_connections()
            );
            assert!(
                !seen.bytes.starts_with(b"HTTP/1.1 200"),
                "a 200 from a handler that cannot have finished"
            );

            // The process is alive (this code runs), and serves the connection opened
            // before and a new one.
            assert_deep_ok(&mut before, FITS);
            let mut after = server.connect();
            assert_deep_ok(&mut after, FITS);

            // More overflows at once, then many connections, which may run on
            // the coroutines (and stacks) the overflowed ones left behind.
            let addr = server.addr;
            let overflowing: Vec<_> = (0..OVERFLOWS)
                .map(|_| std::thread::spawn(move || ask_too_deep(addr, Duration::from_secs(3))))
                .collect();
            let ends: Vec<End> = overflowing
                .into_iter()
                .map(|t| t.join().unwrap().end)
                .collect();
            for i in 0..100 {
                let mut c = server.connect();
                assert_deep_ok(&mut c, i % (FITS + 1));
            }
            assert_deep_ok(&mut before, FITS);
            eprintln!(
                "[faults] Coroutine: {OVERFLOWS} more overflowing clients at once saw {ends:?}; \
                 100 connections after them were served"
            );
        }

        /// Issue 5, strictly: the overflowing client's connection is closed (an
        /// error or a close, not a hang), and no longer counted.
        /// may never unwinds the overflowed coroutine, so its stream is never
        /// dropped; the server closes it from the coroutine-local guard that
        /// may drops with the coroutine (`Engine::on_abandon`).
        #[test]
        fn a_stack_overflow_closes_its_own_connection() {
            let server = start_deep();
            let seen = ask_too_deep(server.addr, Duration::from_secs(3));
            assert!(
                matches!(seen.end, End::Eof | End::Reset),
                "the overflowing client saw {:?} and {:?} after {:?}",
                String::from_utf8_lossy(&seen.bytes),
                seen.end,
                seen.after
            );
            assert!(
                !seen.bytes.starts_with(b"HTTP/1.1 200"),
                "a 200 from a handler that cannot have finished"
            );
            assert_all_closed(&server, Duration::from_secs(5), "after the overflow");
            let port = server.addr.port();
            let mut fds = fd_census(port, None);
            assert!(
                eventually_slow(Duration::from_secs(5), || {
                    fds = fd_census(port, None);
                    fds.server_conns == 0
                }),
                "the overflowed connection's socket is still open: {fds:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Coroutine stacks run out

mod stacks_run_out {
    use super::*;

    /// The child's mapped address space, in bytes.
    fn vm_size_bytes(pid: u32) -> u64 {
        crate::util::proc_status_kib(Process::Pid(pid), "VmSize") * 1024
    }

    /// may panics when it cannot map a stack for a new coroutine (out of
    /// address space or memory, or the process at `vm.max_map_count`). That
    /// panic used to unwind through the accept loop and close the listener:
    /// the process lived on and never accepted again. Now the connection
    /// that could not start is closed, and the next one is served.
    ///
    /// Connection coroutines come from may's pool, whose stacks were mapped
    /// at start; a refusal (503) starts a coroutine with a stack of its own.
    /// So with one connection slot taken and no address space left to map,
    /// a second client's refusal cannot start.
    #[test]
    fn a_coroutine_that_cannot_start_costs_only_its_connection() {
        let site = make_site();
        // No parking (it would allocate for the held connection again), and
        // no backtrace for may's panic (capturing one allocates plenty).
        let mut child = Child64::spawn_with(
            site.path(),
            &[
                "--workers",
                "1",
                "--max-connections",
                "1",
                "--release-idle-after",
                "600000",
            ],
            None,
            // Once the address space is capped, glibc can neither grow its
            // main heap nor map an arena for a thread's first allocation,
            // and an allocation that needs either aborts the child ("memory
            // allocation of 41 bytes failed", seen twice under load). One
            // arena for every thread, grown 4 MiB at a time, already holds
            // the few KiB the child allocates after the cap.
            &[("MALLOC_ARENA_MAX", "1"), ("MALLOC_TOP_PAD_", "4194304")],
        );
        let addr = child.addr();
        let status = |r: Option<Resp>| r.map(|r| r.status);
        assert_eq!(status(try_get_style(addr, IO_TIMEOUT)), Some(200));

        // From here on the child can map 24 KiB more: room for the odd small
        // allocation, not for a coroutine stack (32 KiB and two pages).
        let pid = child.pid();
        let limit = libc::rlimit {
            rlim_cur: vm_size_bytes(pid) + 24 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit(2) on our own live child, with a valid new limit
        // and no old one asked for.
        let rc = unsafe {
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_AS,
                &limit,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());

        let mut held = crate::util::connect(addr);
        let r = get_on(&mut held, "/style.css");
        assert_eq!(r.status, 200);
        // may reports the failed stack map (from its panic) either way.
        let refused = try_get_style(addr, IO_TIMEOUT);
        assert!(
            eventually(IO_TIMEOUT, || child
                .stderr()
                .contains("failed to alloc sys stack")),
            "no stack failed to map (the test no longer tests anything); the client saw \
             {:?}; stderr: {}",
            status(refused),
            child.stderr()
        );
        drop(held);

        // Once the held connection's slot is free, a new client is served:
        // the listener is still open and its loop still accepting.
        assert!(
            eventually(IO_TIMEOUT, || status(try_get_style(addr, IO_TIMEOUT))
                == Some(200)),
            "no new connection served; stderr: {}",
            child.stderr()
        );
        assert!(child.alive());
        // The child's stderr is drained by a thread of this process, which
        // may not have read the line yet.
        assert!(
            eventually(IO_TIMEOUT, || child
                .stderr()
                .contains("cannot start a flow of control to refuse a connection")),
            "{}",
            child.stderr()
        );
    }
}
