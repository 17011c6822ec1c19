//! Request bodies a handler streams (`Handler::stream_body`,
//! `Request::body_reader`) and per-route limits (`Handler::max_body`), on
//! both engines: sized and chunked bodies read through a small buffer with
//! a pipelined request after them, limits refused with 413 (before the
//! handler when the length says so), `100 Continue` sent at the first read,
//! an unread body drained or the connection closed (never read as the next
//! request), a stalled or malformed body, and the policy kept through
//! middleware and `Timeout`.
//!
//! The upload RSS of the `upload` example binary is checked in
//! `examples.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coserve::{Handler, Method, Next, Request, Router, StatusCode, Timeout};

use crate::util::{
    IO_TIMEOUT, Resp, TestServer, big_pattern, read_response, read_until_closed, start, test_config,
};

const STREAM_MAX: u64 = 4 << 20;

/// FNV-1a: enough to tell one body from another.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Reads `req`'s body through a 1000-byte buffer: its length and digest,
/// as `LEN DIGEST`.
fn sum(req: &Request) -> std::io::Result<String> {
    let mut body = req.body_reader();
    let mut buf = [0u8; 1000];
    let mut hash = 0xcbf29ce484222325u64;
    let mut len = 0usize;
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            return Ok(format!("{len} {hash:x}"));
        }
        len += n;
        hash = buf[..n]
            .iter()
            .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    }
}

fn expected(body: &[u8]) -> String {
    format!("{} {:x}", body.len(), digest(body))
}

/// Counts how often each handler ran.
#[derive(Default)]
struct Calls {
    sum: AtomicUsize,
    secret: AtomicUsize,
}

fn app(calls: &Arc<Calls>) -> Router {
    let c = Arc::clone(calls);
    let counted_sum = move |req: &Request| {
        c.sum.fetch_add(1, Ordering::SeqCst);
        sum(req)
    };
    let c = Arc::clone(calls);
    Router::new()
        .handler(Method::Post, "/sum", counted_sum.stream_body(STREAM_MAX))
        .handler(
            Method::Post,
            "/ignore",
            (|_req: &Request| "ignored").stream_body(STREAM_MAX),
        )
        .handler(
            Method::Post,
            "/around",
            sum.stream_body(STREAM_MAX)
                .around(|req: &Request, next: Next<'_>| next.run(req).header("X-Layer", "yes")),
        )
        .handler(
            Method::Post,
            "/timeout",
            Timeout::new(Duration::from_secs(20), sum.stream_body(STREAM_MAX)),
        )
        .handler(Method::Post, "/small", sum.max_body(10))
        .handler(Method::Post, "/big", sum.max_body(2 << 20))
        .handler(Method::Post, "/readers", readers.stream_body(STREAM_MAX))
        .post("/buffered", |req| {
            let read = sum(req).unwrap();
            assert_eq!(
                read,
                expected(req.body()),
                "the reader reads the buffered body"
            );
            read
        })
        .get("/secret", move |_| {
            c.secret.fetch_add(1, Ordering::SeqCst);
            "secret"
        })
}

/// One reader at a time: a second one fails while the first lives, and a
/// third goes on where the first stopped.
fn readers(req: &Request) -> String {
    let mut first = req.body_reader();
    let mut head = [0u8; 10];
    first.read_exact(&mut head).unwrap();
    let second = req.body_reader().read(&mut [0u8; 10]);
    drop(first);
    let mut rest = Vec::new();
    req.body_reader().read_to_end(&mut rest).unwrap();
    format!(
        "head {} second {} rest {}",
        head.len(),
        if second.is_err() { "failed" } else { "read" },
        rest.len()
    )
}

fn serve() -> (TestServer, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    (start(test_config(), app(&calls)), calls)
}

fn post_head(path: &str, len: Option<usize>, extra: &str) -> String {
    let framing = match len {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    format!("POST {path} HTTP/1.1\r\nHost: test\r\n{framing}{extra}\r\n")
}

const SECRET: &[u8] = b"GET /secret HTTP/1.1\r\nHost: test\r\n\r\n";

/// `body` in chunks of the sizes given, cycled, with an extension on some
/// and a trailer.
fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    for (i, &size) in sizes.iter().cycle().enumerate() {
        if rest.is_empty() {
            break;
        }
        let n = size.min(rest.len());
        if i % 3 == 1 {
            out.extend_from_slice(format!("{n:x};note=\"x\"\r\n").as_bytes());
        } else {
            out.extend_from_slice(format!("{n:X}\r\n").as_bytes());
        }
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
    out
}

/// Writes `bytes` in pieces of varied sizes, so that the server reads
/// the body across many reads.
fn write_in_pieces(s: &mut TcpStream, bytes: &[u8]) {
    let mut rest = bytes;
    for size in [1usize, 5, 200, 4093, 70_000].iter().cycle() {
        if rest.is_empty() {
            return;
        }
        let n = (*size).min(rest.len());
        s.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
}

/// Writes `request` to `s` on a thread of its own, for a request the
/// server may answer (and stop reading) before it has all been sent: the
/// test reads the answer meanwhile, then joins the thread.
fn send_behind(s: &TcpStream, request: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut writer = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    })
}

fn response(s: &mut TcpStream) -> Resp {
    read_response(s, false).expect("a response")
}

fn assert_closes(s: &mut TcpStream) {
    let rest = read_until_closed(s, IO_TIMEOUT, true).unwrap();
    assert!(rest.is_empty(), "bytes after the last response: {rest:?}");
}

crate::engine_tests! {
    #[test]
    fn a_sized_body_streams_and_the_pipelined_request_after_it_is_answered() {
        let (server, calls) = serve();
        let body = big_pattern(3 << 20);
        let mut s = server.connect();
        let mut request = post_head("/sum", Some(body.len()), "").into_bytes();
        request.extend_from_slice(&body);
        request.extend_from_slice(SECRET);
        write_in_pieces(&mut s, &request);
        let first = response(&mut s);
        assert_eq!((first.status, first.text()), (200, expected(&body)));
        assert_eq!(first.header("connection"), None, "kept alive");
        let second = response(&mut s);
        assert_eq!((second.status, second.text()), (200, "secret".to_string()));
        assert_eq!(calls.secret.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_chunked_body_streams_and_the_pipelined_request_after_it_is_answered() {
        let (server, calls) = serve();
        for (len, sizes) in [(1 << 20, &[1usize, 7, 4096, 65_537][..]), (1 << 20, &[300_000]), (50_000, &[5])] {
            let body = big_pattern(len);
            let mut s = server.connect();
            let mut request = post_head("/sum", None, "").into_bytes();
            request.extend_from_slice(&chunked(&body, sizes));
            request.extend_from_slice(SECRET);
            write_in_pieces(&mut s, &request);
            let first = response(&mut s);
            assert_eq!((first.status, first.text()), (200, expected(&body)), "chunks of {sizes:?}");
            let second = response(&mut s);
            assert_eq!((second.status, second.text()), (200, "secret".to_string()));
        }
        assert_eq!(calls.secret.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_body_over_the_routes_maximum_is_a_413() {
        let (server, calls) = serve();
        // By its length: before the handler runs, and before the client
        // is invited to send it.
        let mut s = server.connect();
        let head = post_head("/sum", Some(STREAM_MAX as usize + 1), "Expect: 100-continue\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let resp = response(&mut s);
        assert_eq!(resp.status, 413, "{resp:?}");
        assert_eq!(resp.header("connection"), Some("close"));
        assert_closes(&mut s);
        assert_eq!(calls.sum.load(Ordering::SeqCst), 0, "the handler never ran");

        // Chunked: by the read that passes the maximum.
        let mut s = server.connect();
        let body = big_pattern(STREAM_MAX as usize + 10);
        let mut request = post_head("/sum", None, "").into_bytes();
        request.extend_from_slice(&chunked(&body, &[1 << 20]));
        request.extend_from_slice(SECRET);
        let sending = send_behind(&s, request);
        let resp = response(&mut s);
        assert_eq!(resp.status, 413, "{resp:?}");
        assert_eq!(resp.header("connection"), Some("close"));
        drop(s);
        sending.join().unwrap();
        assert_eq!(calls.sum.load(Ordering::SeqCst), 1);
        assert_eq!(calls.secret.load(Ordering::SeqCst), 0, "nothing after the body was read");
    }

    #[test]
    fn an_unread_body_is_drained_and_never_read_as_a_request() {
        let (server, calls) = serve();
        // A body that looks like requests, which the handler ignores.
        let body = SECRET.repeat(100);
        let chunked_body = chunked(&body, &[333]);
        for (framing, payload) in [(Some(body.len()), &body), (None, &chunked_body)] {
            let mut s = server.connect();
            let mut request = post_head("/ignore", framing, "").into_bytes();
            request.extend_from_slice(payload);
            request.extend_from_slice(b"POST /buffered HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc");
            write_in_pieces(&mut s, &request);
            let first = response(&mut s);
            assert_eq!((first.status, first.text()), (200, "ignored".to_string()));
            assert_eq!(first.header("connection"), None, "kept alive: {framing:?}");
            let second = response(&mut s);
            assert_eq!((second.status, second.text()), (200, expected(b"abc")));
        }
        assert_eq!(calls.secret.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_unread_body_too_large_to_drain_closes_the_connection() {
        let (server, calls) = serve();
        let body = SECRET.repeat((1 << 20) / SECRET.len());
        for (framing, payload) in [(Some(body.len()), body.clone()), (None, chunked(&body, &[4096]))] {
            let mut s = server.connect();
            let mut request = post_head("/ignore", framing, "").into_bytes();
            request.extend_from_slice(&payload);
            request.extend_from_slice(SECRET);
            let sending = send_behind(&s, request);
            let resp = response(&mut s);
            assert_eq!((resp.status, resp.text()), (200, "ignored".to_string()));
            assert_eq!(resp.header("connection"), Some("close"), "{framing:?}");
            assert_closes(&mut s);
            sending.join().unwrap();
        }
        assert_eq!(calls.secret.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn continue_goes_out_at_the_first_read_and_not_for_an_unread_body() {
        let (server, _calls) = serve();
        let body = big_pattern(100_000);
        let mut s = server.connect();
        let head = post_head("/sum", Some(body.len()), "Expect: 100-continue\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let interim = read_response(&mut s, true).expect("100 Continue");
        assert_eq!(interim.status, 100, "{interim:?}");
        s.write_all(&body).unwrap();
        let resp = response(&mut s);
        assert_eq!((resp.status, resp.text()), (200, expected(&body)));

        // A handler that never reads: the answer comes without the
        // invitation, and the connection closes since the body may follow.
        let mut s = server.connect();
        let head = post_head("/ignore", Some(body.len()), "Expect: 100-continue\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let resp = response(&mut s);
        assert_eq!((resp.status, resp.text()), (200, "ignored".to_string()));
        assert_eq!(resp.header("connection"), Some("close"));
        assert_closes(&mut s);
    }

    #[test]
    fn a_stalled_streamed_body_is_a_408() {
        let calls = Arc::new(Calls::default());
        let config = test_config().body_timeout(Duration::from_millis(300));
        let server = start(config, app(&calls));
        let mut s = server.connect();
        s.write_all(post_head("/sum", Some(100), "").as_bytes()).unwrap();
        s.write_all(&[7u8; 10]).unwrap();
        let resp = response(&mut s);
        assert_eq!(resp.status, 408, "{resp:?}");
        assert_closes(&mut s);
    }

    #[test]
    fn a_malformed_chunk_in_a_streamed_body_is_a_400() {
        let (server, calls) = serve();
        let mut s = server.connect();
        let mut request = post_head("/sum", None, "").into_bytes();
        request.extend_from_slice(b"5\r\nhello\r\nZZ\r\n");
        request.extend_from_slice(SECRET);
        s.write_all(&request).unwrap();
        let resp = response(&mut s);
        assert_eq!(resp.status, 400, "{resp:?}");
        assert_eq!(resp.header("connection"), Some("close"));
        assert_closes(&mut s);
        assert_eq!(calls.secret.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_body_cut_short_fails_the_read() {
        let (server, _calls) = serve();
        let mut s = server.connect();
        s.write_all(post_head("/sum", Some(1000), "").as_bytes()).unwrap();
        s.write_all(&[1u8; 10]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let resp = response(&mut s);
        assert_eq!(resp.status, 400, "{resp:?}");
        assert_closes(&mut s);
    }

    #[test]
    fn each_route_has_its_own_maximum_for_a_buffered_body() {
        let (server, _calls) = serve();
        let post = |path: &str, body: &[u8]| {
            let mut s = server.connect();
            let mut request = post_head(path, Some(body.len()), "Connection: close\r\n").into_bytes();
            request.extend_from_slice(body);
            let sending = send_behind(&s, request);
            let resp = response(&mut s);
            sending.join().unwrap();
            resp
        };
        assert_eq!(post("/small", b"0123456789").text(), expected(b"0123456789"));
        assert_eq!(post("/small", b"0123456789A").status, 413);
        // The server's own maximum is 1 MiB: one route raises it.
        let body = big_pattern(3 << 19);
        let resp = post("/big", &body);
        assert_eq!((resp.status, resp.text()), (200, expected(&body)));
        assert_eq!(post("/buffered", &body).status, 413);
        assert_eq!(post("/buffered", &body[..1000]).text(), expected(&body[..1000]));
    }

    /// A layer keeps the route's streaming; `Timeout`, whose handler
    /// cannot reach the connection, reads the body whole first, within the
    /// server's own 1 MiB rather than the route's 4 MiB.
    #[test]
    fn middleware_keeps_the_routes_policy_and_timeout_buffers() {
        let (server, _calls) = serve();
        let big = big_pattern(2 << 20);
        let small = big_pattern(500_000);
        for (path, body, status) in [
            ("/around", &big, 200),
            ("/timeout", &small, 200),
            ("/timeout", &big, 413),
        ] {
            let mut s = server.connect();
            let mut request = post_head(path, Some(body.len()), "").into_bytes();
            request.extend_from_slice(body);
            let sending = send_behind(&s, request);
            let resp = response(&mut s);
            sending.join().unwrap();
            assert_eq!(resp.status, status, "{path} {}", body.len());
            if status == 200 {
                assert_eq!(resp.text(), expected(body), "{path}");
            }
            if path == "/around" {
                assert_eq!(resp.header("x-layer"), Some("yes"));
            }
        }
    }

    /// A limit on a whole router is the default of its routes: one that
    /// streams keeps streaming, the others get the router's limit.
    #[test]
    fn a_routers_limit_leaves_a_routes_own_policy() {
        let calls = Arc::new(Calls::default());
        let server = start(test_config(), app(&calls).max_body(100));
        let body = big_pattern(300_000);
        let mut s = server.connect();
        let mut request = post_head("/sum", Some(body.len()), "").into_bytes();
        request.extend_from_slice(&body);
        write_in_pieces(&mut s, &request);
        assert_eq!(response(&mut s).text(), expected(&body));
        let mut request = post_head("/buffered", Some(101), "").into_bytes();
        request.extend_from_slice(&body[..101]);
        s.write_all(&request).unwrap();
        assert_eq!(response(&mut s).status, 413);
    }

    /// Readers of a body read whole go on where the last one stopped, as
    /// streamed ones do.
    #[test]
    fn each_reader_of_a_buffered_body_goes_on_from_the_last() {
        let calls = Arc::new(Calls::default());
        let server = start(test_config(), app(&calls).post("/two-buffered", readers));
        let body = big_pattern(50_000);
        let mut s = server.connect();
        let mut request = post_head("/two-buffered", Some(body.len()), "").into_bytes();
        request.extend_from_slice(&body);
        s.write_all(&request).unwrap();
        // Buffered, two readers at once share the body rather than fail.
        assert_eq!(response(&mut s).text(), "head 10 second read rest 49980");
    }

    /// Trailer fields past 8 KiB are a 400: a client cannot keep one read
    /// going for ever, a field at a time.
    #[test]
    fn endless_trailers_are_a_400() {
        let (server, _calls) = serve();
        let trailers = "X-T: 0123456789012345678901234567890123456789\r\n".repeat(200);
        for path in ["/sum", "/buffered"] {
            let mut s = server.connect();
            let request = format!("{}5\r\nhello\r\n0\r\n{trailers}\r\n", post_head(path, None, ""));
            let sending = send_behind(&s, request.into_bytes());
            let resp = response(&mut s);
            sending.join().unwrap();
            assert_eq!(resp.status, 400, "{path}: {resp:?}");
        }
    }

    /// The drain counts what it takes off the connection, framing
    /// included: an unread body of little data in long chunk extensions
    /// closes the connection once 256 KiB have gone by.
    #[test]
    fn the_drain_counts_framing_too() {
        let (server, calls) = serve();
        let extension = "x".repeat(3000);
        let mut body = post_head("/ignore", None, "").into_bytes();
        for _ in 0..200 {
            body.extend_from_slice(format!("1;e={extension}\r\nA\r\n").as_bytes());
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body.extend_from_slice(SECRET);
        let mut s = server.connect();
        let sending = send_behind(&s, body);
        let resp = response(&mut s);
        assert_eq!((resp.status, resp.text()), (200, "ignored".to_string()));
        assert_eq!(resp.header("connection"), Some("close"));
        assert_closes(&mut s);
        sending.join().unwrap();
        assert_eq!(calls.secret.load(Ordering::SeqCst), 0);
    }

    /// An answer that closes the connection is not held back to drain the
    /// body first: the client that never sends it gets its answer at once.
    #[test]
    fn a_closing_answer_does_not_wait_for_the_body() {
        let (server, _calls) = serve();
        for extra in ["Connection: close\r\n", ""] {
            let mut s = server.connect();
            let head = post_head("/ignore", Some(100_000), extra);
            let head = if extra.is_empty() {
                // HTTP/1.0 without keep-alive closes too.
                head.replacen("HTTP/1.1", "HTTP/1.0", 1)
            } else {
                head
            };
            s.write_all(head.as_bytes()).unwrap();
            // Well within the 30 s a read of the body may wait.
            let started = std::time::Instant::now();
            let resp = response(&mut s);
            assert_eq!((resp.status, resp.text()), (200, "ignored".to_string()));
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        }
    }

    /// Part of the next request that came in with a chunked body is kept
    /// while the client takes its time with the rest (longer than the
    /// server waits before it gives back an idle connection's buffers),
    /// and is read as the head it begins.
    #[test]
    fn a_head_begun_after_a_body_survives_an_idle_wait() {
        let calls = Arc::new(Calls::default());
        let config = test_config().release_idle_after(Duration::from_millis(50));
        let server = start(config, app(&calls));
        for path in ["/sum", "/buffered"] {
            let mut s = server.connect();
            // The head alone first: once `100 Continue` is back, the
            // server has taken the head off its buffer and reads the body.
            s.write_all(post_head(path, None, "Expect: 100-continue\r\n").as_bytes()).unwrap();
            assert_eq!(read_response(&mut s, true).unwrap().status, 100);
            s.write_all(b"5\r\nhello\r\n0\r\n\r\nGET /sec").unwrap();
            assert_eq!(response(&mut s).text(), expected(b"hello"));
            // The client pauses mid-head, past the 50 ms release.
            std::thread::sleep(Duration::from_millis(300));
            s.write_all(b"ret HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
            let resp = response(&mut s);
            assert_eq!((resp.status, resp.text()), (200, "secret".to_string()), "{path}");
        }
    }

    #[test]
    fn one_reader_reads_a_streamed_body_at_a_time() {
        let (server, _calls) = serve();
        let body = big_pattern(50_000);
        let mut s = server.connect();
        let mut request = post_head("/readers", Some(body.len()), "").into_bytes();
        request.extend_from_slice(&body);
        s.write_all(&request).unwrap();
        let resp = response(&mut s);
        assert_eq!(resp.text(), "head 10 second failed rest 49990");
    }
}

/// A body read error returned with `?` is the status of the error, not a
/// 500: checked without a server.
#[test]
fn a_body_error_answers_with_its_status() {
    use coserve::{BodyError, Error, IntoResponse};
    for (e, status) in [
        (BodyError::TooLarge, StatusCode::CONTENT_TOO_LARGE),
        (BodyError::Chunk, StatusCode::BAD_REQUEST),
        (BodyError::Incomplete, StatusCode::BAD_REQUEST),
        (BodyError::Timeout, StatusCode::REQUEST_TIMEOUT),
    ] {
        let io = std::io::Error::from(e);
        assert_eq!(Error::from(e).status(), status);
        assert_eq!(io.into_response().status(), status);
    }
    // Under another error, as a JSON parser that read the body wraps it.
    #[derive(Debug)]
    struct Parse(std::io::Error);
    impl std::fmt::Display for Parse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot parse")
        }
    }
    impl std::error::Error for Parse {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let wrapped = Parse(std::io::Error::from(BodyError::TooLarge));
    assert_eq!(Error::from(wrapped).status(), StatusCode::CONTENT_TOO_LARGE);
    let other = std::io::Error::other("disk full");
    assert_eq!(
        other.into_response().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
