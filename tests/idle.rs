//! Idle keep-alive connections: on the coroutine engine they give up their
//! coroutine and wait in the parking lot; on both engines they keep every
//! promise an open connection makes (served again, timed out, closed at
//! shutdown, counted against the limits).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::engine_tests;
use crate::util::{TestServer, engine, read_response, start_site};

const RELEASE: Duration = Duration::from_millis(50);

fn server(configure: impl FnOnce(coserve::Config) -> coserve::Config) -> TestServer {
    start_site(|c, f| (configure(c.release_idle_after(RELEASE)), f))
}

fn get(conn: &mut TcpStream, path: &str) -> crate::util::Resp {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(conn, false).expect("a response")
}

/// Waits until `n` connections have given back their buffers: parked, on
/// the coroutine engine; waiting without them in their own flow of
/// control, on the thread engine, which never parks.
fn wait_parked(s: &TestServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.handle.released_connections() != n {
        assert!(
            Instant::now() < deadline,
            "{} released, expected {n}",
            s.handle.released_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let parked = if engine() == coserve::EngineKind::Thread {
        0
    } else {
        n
    };
    assert_eq!(s.handle.parked_connections(), parked);
}

/// `n` connections that each made one request and are now idle (parked on
/// the coroutine engine).
fn idle_connections(s: &TestServer, n: usize) -> Vec<TcpStream> {
    let mut conns: Vec<TcpStream> = (0..n).map(|_| s.connect()).collect();
    for c in &mut conns {
        assert_eq!(get(c, "/index.html").status, 200);
    }
    wait_parked(s, n);
    conns
}

engine_tests! {
    #[test]
    fn an_idle_connection_is_served_again_on_the_same_socket() {
        let s = server(|c| c);
        let mut conn = s.connect();
        assert_eq!(get(&mut conn, "/index.html").status, 200);
        wait_parked(&s, 1);
        let r = get(&mut conn, "/style.css");
        assert_eq!((r.status, r.text().as_str()), (200, "body { color: black; }\n"));
        assert_eq!(s.handle.parked_connections(), 0);
        assert_eq!(s.handle.released_connections(), 0);
        // And again: a connection can park any number of times.
        wait_parked(&s, 1);
        assert_eq!(get(&mut conn, "/index.html").status, 200);
    }

    #[test]
    fn hundreds_of_idle_connections_all_come_back() {
        let s = server(|c| c);
        let mut conns = idle_connections(&s, 300);
        for c in &mut conns {
            c.write_all(b"GET /sub/page.html HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        }
        for c in &mut conns {
            let r = read_response(c, false).expect("a response");
            assert_eq!((r.status, r.text().as_str()), (200, "sub page\n"));
        }
    }

    #[test]
    fn a_connection_that_never_sent_a_byte_parks_too_and_is_served() {
        let s = server(|c| c);
        let mut conn = s.connect();
        wait_parked(&s, 1);
        assert_eq!(get(&mut conn, "/index.html").status, 200);
    }

    #[test]
    fn a_request_followed_by_a_close_is_still_answered() {
        let s = server(|c| c);
        let mut conn = s.connect();
        assert_eq!(get(&mut conn, "/index.html").status, 200);
        wait_parked(&s, 1);
        conn.write_all(b"GET /data.json HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let r = read_response(&mut conn, false).expect("a response");
        assert_eq!((r.status, r.text().as_str()), (200, "{\"a\": 1}\n"));
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }

    /// A request and the client's FIN in one write: the server answers
    /// and then sees the end of the stream at once. (They can arrive in
    /// one readiness event; a read that waited for the next event after
    /// taking the request waited until the connection parked, or, for an
    /// upgraded connection, for ever.)
    #[test]
    fn a_request_and_its_fin_in_one_write_close_at_once() {
        let s = start_site(|c, f| {
            (c.release_idle_after(Duration::from_secs(20)).idle_timeout(Duration::from_secs(30)), f)
        });
        for _ in 0..5 {
            let mut conn = s.connect();
            // The first request makes the server wait for the next one.
            assert_eq!(get(&mut conn, "/index.html").status, 200);
            conn.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
            let r = read_response(&mut conn, false).expect("a response");
            assert_eq!(r.status, 200);
            let started = Instant::now();
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).unwrap();
            assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
        }
    }

    #[test]
    fn an_idle_connection_still_times_out() {
        let idle = Duration::from_millis(600);
        let s = server(|c| c.idle_timeout(idle));
        let mut conn = s.connect();
        assert_eq!(get(&mut conn, "/index.html").status, 200);
        let answered = Instant::now();
        let mut buf = [0u8; 16];
        let n = conn.read(&mut buf).unwrap();
        let waited = answered.elapsed();
        assert_eq!(n, 0, "expected the server to close");
        assert!(
            waited >= idle - Duration::from_millis(100) && waited < idle * 5,
            "closed after {waited:?}, idle timeout {idle:?}"
        );
        assert_eq!(s.handle.parked_connections(), 0);
    }

    #[test]
    fn an_idle_connection_holds_its_slot() {
        let s = server(|c| c.max_connections(1));
        let mut first = s.connect();
        assert_eq!(get(&mut first, "/index.html").status, 200);
        wait_parked(&s, 1);
        let mut second = s.connect();
        second.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut second, false).expect("a refusal");
        assert_eq!(r.status, 503);
        assert_eq!(get(&mut first, "/index.html").status, 200);
    }

    #[test]
    fn shutdown_closes_idle_connections_at_once() {
        let s = server(|c| c);
        let mut conns = idle_connections(&s, 20);
        let started = Instant::now();
        s.handle.shutdown();
        let took = started.elapsed();
        for c in &mut conns {
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
        assert!(took < Duration::from_secs(4), "shutdown took {took:?} (grace 5 s)");
        assert_eq!(s.handle.parked_connections(), 0);
    }
}
