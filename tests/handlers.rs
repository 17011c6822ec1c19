//! Blocking-style handlers: panics, body limits, and many handlers blocked
//! at once on the coroutine engine.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coserve::{Body, Config, EngineKind, Request, Response, Server};

use crate::util::{TestServer, connect, read_response, read_to_close, test_config};

fn start_handler(config: Config, handler: impl coserve::Handler) -> TestServer {
    let server = Server::bind_with("127.0.0.1:0", config, handler).unwrap();
    let addr = server.local_addr();
    TestServer {
        handle: server.spawn().unwrap(),
        addr,
        site: None,
    }
}

fn echo_len(req: &Request) -> Response {
    if req.path() == "/panic" {
        panic!("deliberate panic in a test handler");
    }
    Response::new(200).body(Body::Bytes(format!("{}", req.body().len()).into()))
}

/// A server with routes ahead of the static files of the standard site.
fn routed_site() -> TestServer {
    let site = crate::util::make_site();
    let mut server = Server::bind("127.0.0.1:0", test_config(site.path())).unwrap();
    server
        .get("/api/time", |_: &Request| {
            Response::new(200).body(Body::Bytes("time".into()))
        })
        .post("/api/time", |req: &Request| {
            Response::new(201).body(Body::Bytes(format!("posted {}", req.body().len()).into()))
        })
        .prefix("/api/files", |req: &Request| {
            Response::new(200).body(Body::Bytes(format!("prefix {}", req.path()).into()))
        })
        .get("/stream", |req: &Request| {
            let lines = req
                .query()
                .and_then(|q| q.parse::<usize>().ok())
                .unwrap_or(3);
            Response::new(200).body(Body::stream(move |w| {
                for i in 0..lines {
                    writeln!(w, "line {i}")?;
                    // Pause now and then, as a body fed by a backend would.
                    if i % 10_000 == 0 {
                        w.flush()?;
                        may::coroutine::sleep(Duration::from_millis(1));
                    }
                }
                Ok(())
            }))
        })
        .get("/stream-fails", |_: &Request| {
            Response::new(200).body(Body::stream(|w| {
                w.write_all(b"partial")?;
                w.flush()?;
                Err(std::io::Error::other("backend went away"))
            }))
        })
        .get("/blocking", |_: &Request| {
            let n = coserve::blocking(|| {
                std::fs::read("/proc/self/status")
                    .map(|b| b.len())
                    .unwrap_or(0)
            });
            Response::new(200).body(Body::Bytes(format!("{}", n > 0).into()))
        });
    let addr = server.local_addr();
    TestServer {
        handle: server.spawn().unwrap(),
        addr,
        site: Some(site),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) from what follows the head.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap(), 16).unwrap();
        body = &body[eol + 2..];
        if size == 0 {
            return (out, body == b"\r\n");
        }
        out.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

crate::engine_tests! {
    /// Exact routes, prefixes, 405 with Allow, and the static files behind them.
    #[test]
    fn routes_sit_in_front_of_the_static_files() {
        let server = routed_site();
        assert_eq!(server.get("/api/time").text(), "time");
        let r = server.one(b"POST /api/time HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!((r.status, r.text().as_str()), (201, "posted 3"));
        // RFC 9110 §15.5.6: 405 lists the methods the resource has.
        let r = server.one(b"DELETE /api/time HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
        assert_eq!(server.get("/api/files/a/b").text(), "prefix /api/files/a/b");
        assert_eq!(server.get("/api/files").text(), "prefix /api/files");
        // Not under the prefix: falls through to the files.
        assert_eq!(server.get("/api/filesx").status, 404);
        assert_eq!(server.get("/style.css").text(), "body { color: black; }\n");
        // HEAD is answered by the GET route, without a body.
        let r = server.one(b"HEAD /api/time HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!((r.status, r.header("content-length")), (200, Some("4")));
    }

    /// A streamed body goes out chunked to HTTP/1.1 clients and the
    /// connection stays usable afterwards.
    #[test]
    fn streamed_bodies_are_chunked_for_http11() {
        let server = routed_site();
        let out = server.raw(b"GET /stream?40000 HTTP/1.1\r\nHost: t\r\n\r\nGET /api/time HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(!head.contains("Content-Length"), "{head}");
        let rest = &out[head_end..];
        let end = rest.windows(5).position(|w| w == b"0\r\n\r\n").unwrap() + 5;
        let (body, complete) = dechunk(&rest[..end]);
        assert!(complete);
        let expected: String = (0..40000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(body).unwrap(), expected);
        let next = crate::util::parse_responses(&rest[end..]);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].text(), "time");
    }

    /// HTTP/1.0 has no chunked coding: the body ends with the connection.
    #[test]
    fn streamed_bodies_are_close_delimited_for_http10() {
        let server = routed_site();
        let out = server.raw(b"GET /stream?3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Connection: close"), "{head}");
        assert!(!head.contains("Transfer-Encoding") && !head.contains("Content-Length"), "{head}");
        assert_eq!(body, "line 0\nline 1\nline 2\n");
    }

    /// A stream that fails leaves the chunked body unterminated and closes,
    /// so the client can tell it was cut short.
    #[test]
    fn a_failing_stream_is_cut_short_visibly() {
        let server = routed_site();
        let out = server.raw(b"GET /stream-fails HTTP/1.1\r\nHost: t\r\n\r\nGET /api/time HTTP/1.1\r\nHost: t\r\n\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("partial"), "{text}");
        assert!(!text.contains("0\r\n\r\n"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    }

    /// A routes-only server: what no route matches is a 404.
    #[test]
    fn a_routes_only_server_answers_404_elsewhere() {
        let mut server = Server::bind_routes("127.0.0.1:0", test_config(".")).unwrap();
        server.get("/only", |_: &Request| Response::new(502));
        let addr = server.local_addr();
        let server = TestServer { handle: server.spawn().unwrap(), addr, site: None };
        let r = server.get("/only");
        assert_eq!(r.status, 502);
        assert_eq!(r.text(), "");
        let raw = server.raw(b"GET /only HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(raw.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
        assert_eq!(server.get("/elsewhere").status, 404);
    }

    /// `coserve::blocking` runs std::fs work off the worker and returns it.
    #[test]
    fn blocking_work_runs_in_a_handler() {
        let server = routed_site();
        assert_eq!(server.get("/blocking").text(), "true");
    }

    /// A panic becomes a 500 for that request and closes its connection;
    /// the server and its workers carry on.
    #[test]
    fn a_panicking_handler_gets_500_and_the_server_carries_on() {
        let server = start_handler(test_config("."), echo_len);
        let out = server.raw(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\n\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        assert!(text.contains("Connection: close"), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
        for _ in 0..4 {
            let r = server.get("/fine");
            assert_eq!(r.status, 200);
        }
    }

    /// Bodies are read up to the limit and refused beyond it (RFC 9110 §15.5.14).
    #[test]
    fn bodies_are_read_up_to_the_limit() {
        let mut config = test_config(".");
        config.limits.max_body = 1000;
        let server = start_handler(config, echo_len);
        let body = vec![b'x'; 1000];
        let mut req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_vec();
        req.extend_from_slice(&body);
        let r = server.one(&req);
        assert_eq!((r.status, r.body), (200, b"1000".to_vec()));
        let r = server.one(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
        assert_eq!(r.status, 413);
        assert_eq!(r.header("connection"), Some("close"));
        // Chunked: the limit counts decoded bytes.
        let r = server.one(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n");
        assert_eq!(r.status, 413);
    }
}

/// 2,000 requests whose handlers all block at the same time: each handler
/// parks in `may::coroutine::sleep` until all 2,000 have arrived. With two
/// worker threads this can only finish if a blocked handler costs a parked
/// coroutine, not a thread.
#[test]
fn two_thousand_handlers_block_at_once_on_the_coroutine_engine() {
    const N: usize = 2000;
    let arrived = Arc::new(AtomicUsize::new(0));
    let seen = arrived.clone();
    let handler = move |_: &Request| {
        seen.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.load(Ordering::SeqCst) < N && Instant::now() < deadline {
            may::coroutine::sleep(Duration::from_millis(5));
        }
        Response::new(200).body(Body::Bytes(
            format!("{}", seen.load(Ordering::SeqCst)).into(),
        ))
    };
    let mut config = test_config(".");
    config.engine = EngineKind::Coroutine;
    let server = start_handler(config, handler);
    let addr = server.addr;
    let clients: Vec<_> = (0..N)
        .map(|_| {
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut s = connect(addr);
                    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    let r = read_response(&mut s, false).unwrap();
                    let _ = read_to_close(&mut s);
                    r
                })
                .unwrap()
        })
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        // Every handler saw all N requests in flight before it answered.
        assert_eq!(r.text(), N.to_string());
    }
    assert_eq!(arrived.load(Ordering::SeqCst), N);
}

/// A stack smaller than the server's own code needs is an error at bind, not
/// a server whose workers can hang (see `MIN_STACK_SIZE`); so is one too
/// large to map.
#[test]
fn a_stack_out_of_bounds_is_refused_at_bind() {
    let mut config = test_config(".");
    config.stack_size = coserve::server::MIN_STACK_SIZE - 1;
    let err = Server::bind_with("127.0.0.1:0", config, echo_len).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("outside {}..=", coserve::server::MIN_STACK_SIZE)),
        "{err}"
    );
    let mut config = test_config(".");
    config.stack_size = coserve::server::MAX_STACK_SIZE + 1;
    let err = Server::bind_with("127.0.0.1:0", config, echo_len).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

/// Uses about `frames` × 4 KiB of stack.
fn stack_hungry(frames: usize) -> u64 {
    let page = std::hint::black_box([frames as u8; 4096]);
    if frames == 0 {
        return u64::from(page[0]);
    }
    stack_hungry(frames - 1) + u64::from(std::hint::black_box(page)[4095])
}

/// A server with a larger stack than the process's first server gets that
/// stack. may's pool holds coroutines of the first server's size and hands
/// them out to any spawn of the current default size without looking: a
/// later server that made its own size the default got the pool's smaller
/// stacks, and a handler that fit its configured stack overflowed.
#[test]
fn a_second_server_with_a_larger_stack_gets_it() {
    // Some server with the default stack has started may's runtime and
    // filled its pool (this one, if no other test got there first).
    let first = start_handler(test_config("."), echo_len);
    let mut c = connect(first.addr);
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c, false).map(|r| r.status), Some(200));

    // More than the default stack (512 KiB in debug builds, 64 KiB in
    // release), much less than this server's.
    let frames = coserve::server::DEFAULT_STACK_SIZE / 4096;
    let mut config = test_config(".");
    config.engine = EngineKind::Coroutine;
    config.stack_size = 16 * coserve::server::DEFAULT_STACK_SIZE;
    let big = start_handler(config, move |_: &Request| {
        Response::new(200).body(Body::Bytes(stack_hungry(frames).to_string().into()))
    });
    for _ in 0..3 {
        let mut c = connect(big.addr);
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c, false);
        assert_eq!(
            r.map(|r| r.status),
            Some(200),
            "the handler's stack was too small"
        );
    }
}
