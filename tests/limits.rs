//! Timeouts, the connection limit, graceful shutdown and large files: the
//! server's defences and its lifecycle, with timeouts shortened through the
//! config so that every test is quick.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::util::{
    IO_TIMEOUT, Resp, TestServer, big_pattern, eventually, parse_responses, read_head_only,
    read_response, read_until_closed, start_default_site, start_site,
};

const STYLE: &[u8] = b"body { color: black; }\n";
const APP: &[u8] = b"console.log('hi');\n";
const DATA: &[u8] = b"{\"a\": 1}\n";
const BIG_LEN: usize = 1024 * 1024;

/// A client socket with a small receive buffer and so a small TCP window:
/// a large body cannot all be in flight to it at once, so `sendfile` meets a
/// full socket and the server waits for the client to read.
fn connect_small_window(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    // Before connect, so that the window advertised in the handshake is small.
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Runs `handle.shutdown()` on a thread; the receiver gets how long it took.
fn shutdown_in_background(server: &TestServer) -> mpsc::Receiver<Duration> {
    let handle = server.handle.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        handle.shutdown();
        let _ = tx.send(start.elapsed());
    });
    rx
}

/// Writes `bytes` to a connection one at a time, `every` apart, on a
/// thread of its own, until they run out, a write fails, or `stop`.
struct Trickle {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    writer: std::thread::JoinHandle<()>,
}

impl Trickle {
    fn start(c: &TcpStream, bytes: Vec<u8>, every: Duration) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let mut w = c.try_clone().unwrap();
        let (stopping, counting) = (stop.clone(), sent.clone());
        let writer = std::thread::spawn(move || {
            for b in bytes {
                if stopping.load(Ordering::Relaxed) || w.write_all(&[b]).is_err() {
                    return;
                }
                counting.fetch_add(1, Ordering::Relaxed);
                // The trickle itself is what is being tested, not a wait.
                std::thread::sleep(every);
            }
        });
        Trickle { stop, sent, writer }
    }

    /// Stops the trickle; returns how many bytes it wrote.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().unwrap();
        self.sent.load(Ordering::Relaxed)
    }
}

fn get_on(c: &mut TcpStream, path: &str) -> Resp {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    read_response(c, false).expect("a response")
}

// ---------------------------------------------------------------------------
// Graceful shutdown

/// Starts a GET of `path` (`len` bytes of the big pattern), reads its head,
/// shuts the server down from another thread and, once shutdown is under
/// way, reads the body. Returns whether shutdown
/// had already returned before the body was read.
fn shutdown_during_a_download(server: &TestServer, path: &str, len: usize) -> bool {
    let addr = server.addr;
    let mut c = connect_small_window(addr);
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_head_only(&mut c);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(&*len.to_string()));

    let done = shutdown_in_background(server);
    // Wait until shutdown is under way (the listener is gone) before reading
    // the body, so that the body is read while the server shuts down.
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_err()),
        "the server still accepts connections during shutdown"
    );
    let returned_early = match done.try_recv() {
        Ok(_) => true,
        Err(mpsc::TryRecvError::Empty) => false,
        Err(e) => panic!("shutdown thread: {e}"),
    };

    let mut body = vec![0u8; len];
    c.read_exact(&mut body).expect("the whole body");
    assert!(body == big_pattern(len), "the body differs");
    // Then the connection closes: no more bytes, just EOF (RFC 9112 §9.6).
    assert_eq!(
        read_until_closed(&mut c, Duration::from_secs(3), false).unwrap(),
        b""
    );
    if !returned_early {
        done.recv_timeout(IO_TIMEOUT)
            .expect("shutdown() did not return");
    }
    returned_early
}

crate::engine_tests! {
    // ---------------------------------------------------------------------------
    // Idle timeout

    #[test]
    fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
        let server = start_site(|c, f| (c.idle_timeout(Duration::from_millis(300)), f));
        let mut c = server.connect();
        let start = Instant::now();
        let got = read_until_closed(&mut c, Duration::from_secs(5), false).unwrap();
        let elapsed = start.elapsed();
        // Nothing was asked, so nothing is answered: just a close (RFC 9112 §9.5).
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert!(
            elapsed >= Duration::from_millis(250),
            "closed after {elapsed:?}, before the idle timeout"
        );
        assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
        assert!(
            eventually(Duration::from_secs(2), || server
                .handle
                .active_connections()
                == 0),
            "the closed connection is still counted"
        );
    }

    #[test]
    fn a_kept_alive_connection_idle_after_a_response_is_closed() {
        let server = start_site(|c, f| (c.idle_timeout(Duration::from_millis(300)), f));
        let mut c = server.connect();
        let r = get_on(&mut c, "/style.css");
        assert_eq!((r.status, &*r.body), (200, STYLE));
        assert_eq!(r.header("connection"), None, "kept alive");
        let start = Instant::now();
        let got = read_until_closed(&mut c, Duration::from_secs(5), false).unwrap();
        let elapsed = start.elapsed();
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        assert!(
            elapsed >= Duration::from_millis(250),
            "closed after {elapsed:?}, before the idle timeout"
        );
        assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
    }

    // ---------------------------------------------------------------------------
    // Header timeout (slowloris)

    /// A body trickling in at a byte per 100 ms is cut off at the body
    /// timeout, counted from the end of the head however steadily the
    /// bytes come: 408 and a close (RFC 9110 §15.5.9), not a 400, and not a
    /// wait as long as the client cares to trickle.
    #[test]
    fn a_body_trickling_in_gets_408_at_the_body_timeout() {
        let body_timeout = Duration::from_secs(1);
        let server = start_site(|c, f| (c.body_timeout(body_timeout), f));
        let mut c = server.connect();
        c.set_nodelay(true).unwrap();
        c.write_all(b"POST /style.css HTTP/1.1\r\nHost: test\r\nContent-Length: 1048576\r\n\r\n")
            .unwrap();
        let start = Instant::now();

        const TRICKLE: usize = 100; // 10 s at one byte per 100 ms
        let trickle = Trickle::start(&c, vec![b'x'; TRICKLE], Duration::from_millis(100));
        let r = read_response(&mut c, false).expect("a 408");
        let elapsed = start.elapsed();
        let rest = read_until_closed(&mut c, Duration::from_secs(3), false);
        let sent = trickle.stop();

        assert_eq!(r.status, 408, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(rest.unwrap(), b"", "closed after the 408");
        assert!(
            elapsed >= body_timeout - Duration::from_millis(50),
            "408 after {elapsed:?}, before the body timeout"
        );
        assert!(elapsed < Duration::from_secs(4), "408 after {elapsed:?}");
        assert!(
            (5..TRICKLE).contains(&sent),
            "the client sent {sent} trickled bytes: it should have been cut off mid-trickle"
        );
    }

    /// A body that stops short because the client closed its side is a
    /// 400 for a body cut short; one that comes whole in time is served.
    #[test]
    fn a_body_cut_short_is_400_and_a_whole_one_is_read() {
        let server = start_site(|c, f| (c.body_timeout(Duration::from_secs(5)), f));
        let mut c = server.connect();
        c.write_all(b"POST /style.css HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let r = read_response(&mut c, false).expect("a 400");
        assert_eq!((r.status, r.header("connection")), (400, Some("close")));
        // A whole body is read, and the static files answer POST with 405.
        let r = server.one(b"POST /style.css HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(r.status, 405);
    }

    #[test]
    fn a_head_trickling_in_gets_408_at_the_header_timeout() {
        // The header timeout runs from the request's first byte, however often
        // more bytes arrive; the answer is 408 and a close (RFC 9110 §15.5.9).
        let server = start_site(|c, f| {
            let c = c
                .header_timeout(Duration::from_millis(500))
                .idle_timeout(Duration::from_secs(30));
            (c, f)
        });
        let mut c = server.connect();
        c.set_nodelay(true).unwrap();
        let start = Instant::now();
        c.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n")
            .unwrap();

        const TRICKLE: usize = 100; // 5 s at one byte per 50 ms
        let header: Vec<u8> = b"X-Slow: ".iter().chain(std::iter::repeat(&b'a')).take(TRICKLE).copied().collect();
        let trickle = Trickle::start(&c, header, Duration::from_millis(50));
        let r = read_response(&mut c, false).expect("a 408");
        let rest = read_until_closed(&mut c, Duration::from_secs(3), false);
        let elapsed = start.elapsed();
        let sent = trickle.stop();

        assert_eq!(r.status, 408, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(rest.unwrap(), b"", "closed after the 408");
        assert!(
            elapsed >= Duration::from_millis(450),
            "408 after {elapsed:?}, before the header timeout"
        );
        assert!(elapsed < Duration::from_secs(5), "408 after {elapsed:?}");

        assert!(
            (3..TRICKLE).contains(&sent),
            "the client sent {sent} trickled bytes: it should have been cut off mid-trickle"
        );
    }

    // ---------------------------------------------------------------------------
    // Connection limit

    #[test]
    fn past_max_connections_new_connections_get_503_and_the_others_are_served() {
        let server = start_site(|c, f| (c.max_connections(2), f));
        let mut c1 = server.connect();
        let mut c2 = server.connect();
        for c in [&mut c1, &mut c2] {
            let r = get_on(c, "/style.css");
            assert_eq!((r.status, &*r.body), (200, STYLE));
        }
        assert_eq!(server.handle.active_connections(), 2);

        // RFC 9110 §15.6.4: 503 for a temporary overload; then the close.
        let mut c3 = server.connect();
        let _ = c3.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n");
        let bytes = read_until_closed(&mut c3, Duration::from_secs(3), false).unwrap();
        let resps = parse_responses(&bytes);
        assert_eq!(resps.len(), 1, "{resps:?}");
        let r = &resps[0];
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.header("date").is_some() && r.header("server").is_some());
        assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));

        // The two counted connections are unaffected.
        for c in [&mut c1, &mut c2] {
            let r = get_on(c, "/app.js");
            assert_eq!((r.status, &*r.body), (200, APP));
        }
        assert_eq!(server.handle.active_connections(), 2);

        // Once one of them closes, there is room again.
        drop(c1);
        assert!(
            eventually(Duration::from_secs(3), || server
                .handle
                .active_connections()
                < 2),
            "a closed connection is still counted"
        );
        let r = server.get("/data.json");
        assert_eq!((r.status, &*r.body), (200, DATA));
        let r = get_on(&mut c2, "/style.css");
        assert_eq!(r.status, 200);
    }

    /// `--max-connections-per-ip`: one address over its cap gets 503 while
    /// another address is served. 127.0.0.2 is loopback too on Linux.
    #[test]
    fn past_the_per_ip_cap_that_client_gets_503_and_others_are_served() {
        let server = start_site(|c, f| (c.max_connections_per_ip(Some(2)), f));
        let mut c1 = server.connect();
        let mut c2 = server.connect();
        for c in [&mut c1, &mut c2] {
            assert_eq!(get_on(c, "/style.css").status, 200);
        }
        let mut c3 = server.connect();
        let _ = c3.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n");
        let bytes = read_until_closed(&mut c3, Duration::from_secs(3), false).unwrap();
        assert_eq!(parse_responses(&bytes)[0].status, 503);

        let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        other.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        other.connect(&server.addr.into()).unwrap();
        let mut other: TcpStream = other.into();
        other.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(get_on(&mut other, "/style.css").status, 200);

        // A slot freed by that client is its own again.
        drop(c1);
        assert!(eventually(Duration::from_secs(3), || server.handle.active_connections() < 3));
        let r = server.get("/data.json");
        assert_eq!((r.status, &*r.body), (200, DATA));
        assert_eq!(get_on(&mut c2, "/style.css").status, 200);
    }

    // ---------------------------------------------------------------------------
    // Graceful shutdown

    #[test]
    fn shutdown_ends_idle_connections_and_stops_accepting() {
        let grace = Duration::from_secs(4);
        let server = start_site(|c, f| (c.shutdown_grace(grace), f));
        let addr = server.addr;
        let mut idle = server.connect();
        let r = get_on(&mut idle, "/style.css");
        assert_eq!(r.status, 200);

        let done = shutdown_in_background(&server);
        let took = done
            .recv_timeout(IO_TIMEOUT)
            .expect("shutdown() did not return");
        // An idle connection is ended at once; it must not hold shutdown for
        // the grace period.
        assert!(
            took < grace - Duration::from_secs(1),
            "shutdown took {took:?} with only an idle connection open"
        );
        assert_eq!(
            read_until_closed(&mut idle, Duration::from_secs(3), false).unwrap(),
            b"",
            "the idle connection gets EOF and nothing else"
        );
        assert_eq!(server.handle.active_connections(), 0);

        // New connections are refused, or closed without an answer.
        match TcpStream::connect(addr) {
            Err(_) => {}
            Ok(mut c) => {
                let _ = c.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n");
                let got = read_until_closed(&mut c, Duration::from_secs(3), false).unwrap();
                assert!(
                    got.is_empty(),
                    "answered after shutdown: {:?}",
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }

    #[test]
    fn shutdown_lets_a_response_in_flight_finish() {
        let server = start_default_site();
        // 1 MiB may fit whole in the kernel's socket buffers, so whether it is
        // still in flight when shutdown starts is up to the kernel; either way it
        // must arrive whole, followed by a close.
        shutdown_during_a_download(&server, "/big.bin", BIG_LEN);
    }

    #[test]
    fn shutdown_waits_for_a_response_that_cannot_be_buffered() {
        // 16 MiB is more than the kernel buffers hold (tcp_wmem caps the send
        // buffer at 4 MiB by default, and the client's window is 8 KiB), so the
        // server is certainly still sending when shutdown starts: shutdown must
        // not return before the client has read the body.
        const LEN: usize = 16 * 1024 * 1024;
        let server = start_default_site();
        std::fs::write(server.root().join("huge.bin"), big_pattern(LEN)).unwrap();
        let returned_early = shutdown_during_a_download(&server, "/huge.bin", LEN);
        assert!(
            !returned_early,
            "shutdown() returned while a response was still being sent"
        );
    }

    // ---------------------------------------------------------------------------
    // Large files

    #[test]
    fn a_large_file_is_served_intact() {
        let server = start_default_site();
        let r = server.get("/big.bin");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("1048576"));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.body == big_pattern(BIG_LEN), "the body differs");
    }

    #[test]
    fn a_large_file_to_a_slow_reader_is_served_intact() {
        // A small receive window makes sendfile meet a full socket again and
        // again; the body must still arrive whole, and the connection stays
        // usable afterwards.
        let server = start_default_site();
        let mut c = connect_small_window(server.addr);
        let r = get_on(&mut c, "/big.bin");
        assert_eq!(r.status, 200);
        assert!(r.body == big_pattern(BIG_LEN), "the body differs");
        let r = get_on(&mut c, "/style.css");
        assert_eq!((r.status, &*r.body), (200, STYLE));
    }
}
