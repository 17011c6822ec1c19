//! Blocking-style handlers: panics, body limits, and many handlers blocked
//! at once on the coroutine engine.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coserve::{Body, EngineKind, Request, Response, Router, Runtime, StaticFiles, StatusCode};

use crate::util::{TestServer, read_response, start, test_config, test_files};

fn echo_len(req: &Request) -> String {
    if req.path() == "/panic" {
        panic!("deliberate panic in a test handler");
    }
    req.body().len().to_string()
}

/// A server with routes ahead of the static files of the standard site.
fn routed_site() -> TestServer {
    let site = crate::util::make_site();
    let files = StaticFiles::new(site.path(), test_files()).unwrap();
    let app = Router::new()
        .get("/api/time", |_| "time")
        .post("/api/time", |req| {
            (StatusCode::CREATED, format!("posted {}", req.body().len()))
        })
        .prefix("/api/files", |req| format!("prefix {}", req.path()))
        .get("/stream", |req| {
            let lines = req
                .query()
                .and_then(|q| q.parse::<usize>().ok())
                .unwrap_or(3);
            Response::new(StatusCode::OK).body(Body::stream(move |w| {
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
        .get("/stream-fails", |_| {
            Response::new(StatusCode::OK).body(Body::stream(|w| {
                w.write_all(b"partial")?;
                w.flush()?;
                Err(std::io::Error::other("backend went away"))
            }))
        })
        // `/sized?N` says 12 bytes and writes N (12 unless told); so does
        // `/sized-log-probe?N`, whose access lines a test reads.
        .get("/sized-log-probe", sized)
        .get("/sized", sized)
        .get("/blocking", |_| {
            let n = coserve::blocking(|| {
                std::fs::read("/proc/self/status")
                    .map(|b| b.len())
                    .unwrap_or(0)
            });
            (n > 0).to_string()
        })
        .fallback(files);
    let mut server = start(test_config(), app);
    server.site = Some(site);
    server
}

/// `?N` (and perhaps `&more`): a sized stream of 12 bytes that writes N
/// of them.
fn sized(req: &Request) -> Response {
    let n = req
        .query()
        .and_then(|q| q.split('&').next()?.parse::<usize>().ok())
        .unwrap_or(12);
    Response::new(StatusCode::OK).body(Body::sized_stream(12, move |w| {
        let text = b"hello, world, and more";
        w.write_all(&text[..n.min(6)])?;
        w.flush()?;
        w.write_all(&text[n.min(6)..n])
    }))
}

/// Handlers that build headers from what the client sent.
fn header_echo() -> Router {
    Router::new()
        // A redirect to a decoded query value: the classic response split.
        .get("/go", |req| {
            let to = req.query_param("to").unwrap_or_default();
            Response::redirect(StatusCode::FOUND, &to)
        })
        .get("/named", |req| {
            let name = req.query_param("name").unwrap_or_default();
            Response::text("named\n").header(name, "1")
        })
        // Framing is the server's: a handler's Content-Length would be a
        // second, contradicting one.
        .get("/length", |_| {
            Response::text("four").header("Content-Length", "400")
        })
        .get("/try", |req| -> Result<Response, coserve::Error> {
            let to = req.query_param("to").unwrap_or_default();
            Ok(Response::text("tried\n").try_header("Location", to)?)
        })
}

/// The files under `root`, each served by a handler that names it.
fn named_files(files: StaticFiles) -> Router {
    Router::new().get("/by-name", move |req| {
        let name = req.query_param("file").unwrap_or_default();
        files.serve(req, &name)
    })
}

crate::engine_tests! {
    /// A value copied from the request into a header cannot split the
    /// response: CR, LF or NUL in a value, or a name that is not a token,
    /// turn the response into a 500, and nothing after them reaches the
    /// wire. `Content-Length` is the server's alone.
    #[test]
    fn a_handler_cannot_split_a_response_or_frame_it() {
        let server = start(test_config(), header_echo());
        let r = server.get("/go?to=/safe%3Fa=1");
        assert_eq!((r.status, r.header("location")), (302, Some("/safe?a=1")));
        for target in [
            "/go?to=/a%0D%0ASet-Cookie:%20evil=1",
            "/go?to=/a%0ASet-Cookie:%20evil=1",
            "/go?to=/a%0DSet-Cookie:%20evil=1",
            "/go?to=/a%00Set-Cookie:%20evil=1",
            "/named?name=Set-Cookie:%20evil=1%0D%0AX",
            "/named?name=",
            "/length",
            "/try?to=/a%0D%0ASet-Cookie:%20evil=1",
        ] {
            let raw = server.raw(
                format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            );
            let text = String::from_utf8_lossy(&raw);
            assert!(text.starts_with("HTTP/1.1 500 "), "{target}: {text}");
            assert!(!text.to_ascii_lowercase().contains("evil"), "{target}: {text}");
            assert_eq!(text.matches("Content-Length").count(), 1, "{target}: {text}");
            assert!(!text.contains("\r\nLocation"), "{target}: {text}");
        }
        // The connection goes on after a refused response.
        let raw = server.raw(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\nGET /go?to=/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let responses = crate::util::parse_responses(&raw);
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [500, 302]);
    }

    /// `StaticFiles::serve` answers with the file a handler names, with the
    /// full static semantics, and never anything outside the root or
    /// hidden.
    #[test]
    fn a_handler_serves_a_file_by_name() {
        let site = crate::util::make_site();
        let files = StaticFiles::new(site.path(), test_files()).unwrap();
        let server = start(test_config(), named_files(files));
        let r = server.get("/by-name?file=sub/page.html");
        assert_eq!((r.status, &r.body[..]), (200, &b"sub page\n"[..]));
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let etag = r.header("etag").expect("an ETag").to_string();
        let r = crate::util::request(&server, "GET", "/by-name?file=sub/page.html", &[("If-None-Match", &etag)]);
        assert_eq!(r.status, 304);
        let r = crate::util::request(&server, "GET", "/by-name?file=big.bin", &[("Range", "bytes=10-19")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.body, crate::util::big_pattern(20)[10..]);
        // A directory is served by its index, without a redirect.
        assert_eq!(server.get("/by-name?file=sub").body, b"sub index\n");
        for name in ["../etc/passwd", "sub/../../x", ".hidden", "sub/nope", "empty", "%2e%2e/x"] {
            let r = server.get(&format!("/by-name?file={name}"));
            assert_eq!(r.status, 404, "{name}: {r:?}");
        }
        assert_eq!(server.get("/by-name?file=.well-known/security.txt").status, 200);
    }

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
        let head_end = coserve_http1::head_len(&out).unwrap();
        let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(!head.contains("Content-Length"), "{head}");
        // The chunked body, decoded; it ends with the last chunk and no
        // trailer fields.
        let (r, end) = coserve_http1::parse_response(&out, false).unwrap();
        assert!(out[..end].ends_with(b"\r\n0\r\n\r\n"));
        let expected: String = (0..40000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8(r.body).unwrap(), expected);
        let next = crate::util::parse_responses(&out[end..]);
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

    /// A sized stream goes out with its `Content-Length`, not chunked,
    /// on HTTP/1.1 and 1.0 alike, and the connection stays open; `HEAD`
    /// gets the length and no body.
    #[test]
    fn sized_streams_keep_their_length_and_the_connection() {
        let server = routed_site();
        let out = server.raw(b"GET /sized HTTP/1.1\r\nHost: t\r\n\r\nHEAD /sized HTTP/1.1\r\nHost: t\r\n\r\nGET /api/time HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (first, end) = coserve_http1::parse_response(&out, false).unwrap();
        assert_eq!(first.header("content-length"), Some("12"), "{first:?}");
        assert_eq!(first.header("transfer-encoding"), None);
        assert_eq!(first.text(), "hello, world");
        let (head, head_end) = coserve_http1::parse_response(&out[end..], true).unwrap();
        assert_eq!(head.header("content-length"), Some("12"), "{head:?}");
        assert!(head.body.is_empty());
        let rest = crate::util::parse_responses(&out[end + head_end..]);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].text(), "time");

        let mut s = server.connect();
        s.write_all(b"GET /sized HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
        assert_eq!(r.text(), "hello, world");
        s.write_all(b"GET /api/time HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s, false).unwrap().text(), "time");
    }

    /// A sized stream that writes less, or tries to write more, than it
    /// said is cut short and the connection closed: the client sees fewer
    /// bytes than the length, never more.
    #[test]
    fn a_sized_stream_that_breaks_its_length_is_cut_short() {
        let server = routed_site();
        for n in [5usize, 11, 13, 20] {
            let request = format!("GET /sized?{n} HTTP/1.1\r\nHost: t\r\n\r\nGET /api/time HTTP/1.1\r\nHost: t\r\n\r\n");
            let out = server.raw(request.as_bytes());
            let head_end = coserve_http1::head_len(&out).unwrap();
            let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
            assert!(head.contains("Content-Length: 12"), "{n}: {head}");
            let body = &out[head_end..];
            assert!(body.len() < 12, "{n}: {} body bytes: {:?}", body.len(), String::from_utf8_lossy(body));
            assert!(b"hello, world".starts_with(body), "{n}: {body:?}");
        }
    }

    /// The access log counts the body bytes a stream really sent: all 12
    /// of a sized stream that kept its length, the 6 of one cut short.
    #[test]
    fn the_access_log_counts_what_a_stream_sent() {
        let capture = crate::auth::capture_log();
        let server = routed_site();
        for (n, sent) in [(12, 12), (13, 6)] {
            let target = format!("/sized-log-probe?{n}&engine={:?}", crate::util::engine());
            let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            server.raw(request.as_bytes());
            let found = crate::util::eventually(Duration::from_secs(5), || {
                capture.lines().iter().any(|l| l.contains(&target))
            });
            assert!(found, "no access line for {target}: {:?}", capture.lines());
            let line = capture.lines().into_iter().find(|l| l.contains(&target)).unwrap();
            assert!(line.ends_with(&format!(" 200 {sent}")), "{line}");
        }
    }

    /// A routes-only server: what no route matches is a 404.
    #[test]
    fn a_routes_only_server_answers_404_elsewhere() {
        let app = Router::new().get("/only", |_| Response::new(StatusCode::BAD_GATEWAY));
        let server = start(test_config(), app);
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
        let server = start(test_config(), echo_len);
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
        let server = start(test_config().max_body(1000), echo_len);
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
        seen.load(Ordering::SeqCst).to_string()
    };
    let server = start(test_config().engine(EngineKind::Coroutine), handler);
    let addr = server.addr;
    for c in crate::util::get_root_at_once(addr, N) {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        // Every handler saw all N requests in flight before it answered.
        assert_eq!(r.text(), N.to_string());
    }
    assert_eq!(arrived.load(Ordering::SeqCst), N);
}

/// may's runtime is the process's: a stack smaller than the server's own
/// code needs (a server whose workers could hang, see `MIN_STACK_SIZE`) or
/// too large to map is refused; once started, its settings stay, and
/// asking for others is an error, not a silent no-op.
#[test]
fn the_runtime_is_set_once_and_refuses_other_settings() {
    let err = Runtime::new()
        .stack_size(Runtime::MIN_STACK_SIZE - 1)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("outside {}..=", Runtime::MIN_STACK_SIZE)),
        "{err}"
    );
    let err = Runtime::new()
        .stack_size(Runtime::MAX_STACK_SIZE + 1)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");

    // A coroutine server starts the runtime (if no test got there first).
    let server = start(test_config().engine(EngineKind::Coroutine), echo_len);
    assert_eq!(server.get("/").status, 200);
    let current = Runtime::current().expect("a coroutine server started it");
    current.start().expect("the settings in force are fine");
    let err = current.workers(97).start().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("97 workers"), "{err}");
    assert_eq!(Runtime::current(), Some(current));
}
