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

crate::engine_tests! {
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
