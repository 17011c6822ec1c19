//! The wire protocol, checked byte for byte over raw sockets: the response
//! head, HEAD, methods, persistence, pipelining, request bodies, malformed
//! input and the request forms the server accepts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use crate::util::{
    Resp, TestServer, big_pattern, parse_responses, read_response, read_to_close,
    read_until_closed, start_default_site, try_parse_head, try_read_head,
};

const INDEX: &[u8] = b"<!doctype html><title>home</title>home page\n";
const STYLE: &[u8] = b"body { color: black; }\n";
const APP: &[u8] = b"console.log('hi');\n";
const DATA: &[u8] = b"{\"a\": 1}\n";

/// How long a test waits for the server to close a connection it must close.
/// A safety net that turns "never closed" into a quick, readable failure.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

fn site() -> TestServer {
    start_default_site()
}

/// `util::try_parse_head`, with the bytes after the head.
fn parse_head(bytes: &[u8]) -> Result<(Resp, &[u8]), String> {
    try_parse_head(bytes).map(|(resp, end)| (resp, &bytes[end..]))
}

/// Like `util::parse_responses`, but reports malformed or truncated input
/// as an error instead of panicking, so a table test can list every failure.
fn parse_all(mut bytes: &[u8]) -> Result<Vec<Resp>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (mut resp, rest) = parse_head(bytes)?;
        let len: usize = match resp.header("content-length") {
            Some(v) => v
                .parse()
                .map_err(|e| format!("Content-Length {v:?}: {e}"))?,
            None => return Err(format!("no Content-Length in {resp:?}")),
        };
        if rest.len() < len {
            return Err(format!("body truncated: {} of {len} bytes", rest.len()));
        }
        resp.body = rest[..len].to_vec();
        bytes = &rest[len..];
        out.push(resp);
    }
    Ok(out)
}

/// Reads one response head from a stream without reading past it; an EOF
/// before it is an error too.
fn read_head_only(s: &mut TcpStream) -> Result<Resp, String> {
    try_read_head(s)?.ok_or_else(|| "EOF before a response head".to_string())
}

/// Whether `s` has the IMF-fixdate shape, e.g. `Thu, 26 Nov 2026 22:34:15 GMT`
/// (RFC 9110 §5.6.7), and parses as a date.
fn is_imf_fixdate(s: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && DAYS.contains(&&s[0..3])
        && &s[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &s[25..] == " GMT"
        && httpdate::parse_http_date(s).is_ok()
}

/// The fields every response carries, errors included: Date (RFC 9110
/// §6.6.1), Server, and a Content-Length equal to the body it framed.
fn common_headers_problem(r: &Resp) -> Option<String> {
    match r.header("date") {
        Some(d) if is_imf_fixdate(d) => {}
        other => return Some(format!("Date {other:?} is not an IMF-fixdate")),
    }
    match r.header("server") {
        Some(s) if s.starts_with("coserve/") => {}
        other => return Some(format!("Server {other:?}")),
    }
    match r.header("content-length").map(str::parse::<usize>) {
        Some(Ok(n)) if n == r.body.len() => None,
        other => Some(format!(
            "Content-Length {other:?} for a {}-byte body",
            r.body.len()
        )),
    }
}

fn assert_common_headers(r: &Resp) {
    if let Some(problem) = common_headers_problem(r) {
        panic!("{problem} in {r:?}");
    }
}

fn bodies(resps: &[Resp]) -> Vec<String> {
    resps.iter().map(Resp::text).collect()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// Pipelining (RFC 9112 §9.3.2: responses in the order of the requests)

const PIPELINE: &[u8] = b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n\
    GET /app.js HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n\
    HEAD /data.json HTTP/1.1\r\nHost: test\r\n\r\n\
    GET /missing HTTP/1.1\r\nHost: test\r\n\r\n\
    GET /data.json HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// Checks the answers to [`PIPELINE`]: five responses, in order.
fn check_pipeline_answers(bytes: &[u8]) {
    let mut rest = bytes;
    let mut got = Vec::new();
    for i in 0..5 {
        let (mut r, after) = parse_head(rest).unwrap_or_else(|e| panic!("response {i}: {e}"));
        // The third request is HEAD: its response has no body.
        let len = if i == 2 {
            0
        } else {
            r.header("content-length").unwrap().parse().unwrap()
        };
        r.body = after[..len].to_vec();
        rest = &after[len..];
        got.push(r);
    }
    assert!(rest.is_empty(), "extra bytes: {:?}", s(rest));
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 404, 200]
    );
    assert_eq!(got[0].body, STYLE);
    assert_eq!(got[1].body, APP);
    assert_eq!(got[2].header("content-length"), Some("9"));
    assert_eq!(got[2].header("content-type"), got[4].header("content-type"));
    assert!(got[3].text().contains("custom not found"), "{:?}", got[3]);
    assert_eq!(got[4].body, DATA);
}

// ---------------------------------------------------------------------------
// Bad input

/// A request that must be refused: the status, and whether the refusal must
/// also close (`Connection: close` and the server closing the socket).
struct Bad {
    what: &'static str,
    request: Vec<u8>,
    status: u16,
    close: bool,
}

fn bad(what: &'static str, request: impl AsRef<[u8]>, status: u16, close: bool) -> Bad {
    Bad {
        what,
        request: request.as_ref().to_vec(),
        status,
        close,
    }
}

fn bad_inputs() -> Vec<Bad> {
    let mut many = String::from("GET /style.css HTTP/1.1\r\nHost: test\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut table = vec![
        // RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
        bad(
            "double space",
            "GET  /style.css HTTP/1.1\r\nHost: test\r\n\r\n",
            400,
            false,
        ),
        bad(
            "tab separator",
            "GET\t/style.css HTTP/1.1\r\nHost: test\r\n\r\n",
            400,
            false,
        ),
        // RFC 9112 §2.3: the version name is case-sensitive.
        bad(
            "lowercase version",
            "GET /style.css http/1.1\r\nHost: test\r\n\r\n",
            400,
            false,
        ),
        bad(
            "missing version",
            "GET /style.css\r\nHost: test\r\n\r\n",
            400,
            false,
        ),
        // RFC 9112 §3.2: origin-form starts with "/".
        bad(
            "relative target",
            "GET style.css HTTP/1.1\r\nHost: test\r\n\r\n",
            400,
            false,
        ),
        // RFC 9112 §3.2: Host is required in HTTP/1.1 and must not repeat.
        bad("no Host", "GET /style.css HTTP/1.1\r\n\r\n", 400, false),
        bad(
            "two Host fields",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nHost: other\r\n\r\n",
            400,
            false,
        ),
        // RFC 9110 §15.6.6: a major version the server does not support. (A
        // higher minor of HTTP/1 is served as HTTP/1.1, §2.5: tested below.)
        bad(
            "HTTP/2.0",
            "GET /style.css HTTP/2.0\r\nHost: test\r\n\r\n",
            505,
            false,
        ),
        bad(
            "HTTP/3.1",
            "GET /style.css HTTP/3.1\r\nHost: test\r\n\r\n",
            505,
            false,
        ),
        // RFC 9112 §3 / RFC 9110 §15.5.15: a request line over the limit.
        bad(
            "request line over 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: test\r\n\r\n", "a".repeat(9000)),
            414,
            false,
        ),
        // RFC 6585 §5: header fields too large.
        bad(
            "header section over 16 KiB",
            format!(
                "GET /style.css HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
                "v".repeat(17 * 1024)
            ),
            431,
            false,
        ),
        bad("101 header fields", many, 431, false),
        // RFC 9112 §6.1: Transfer-Encoding with Content-Length is a smuggling
        // attempt; the server MUST close after responding.
        bad(
            "Transfer-Encoding with Content-Length",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 5\r\n\r\n0\r\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §6.3 (item 5): invalid or conflicting Content-Length is an
        // unrecoverable framing error: 400 and close.
        bad(
            "duplicate Content-Length",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
             Content-Length: 5\r\n\r\nhello",
            400,
            true,
        ),
        // RFC 9112 §5.2: obs-fold in a request is refused with 400.
        bad(
            "obs-fold",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nX-A: a\r\n folded\r\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §5.1: no whitespace between field name and colon; 400.
        bad(
            "whitespace before colon",
            "GET /style.css HTTP/1.1\r\nHost : test\r\n\r\n",
            400,
            true,
        ),
        // RFC 9110 §5.5: field values are VCHAR, SP, HTAB and obs-text only.
        bad(
            "NUL in a value",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nX-A: a\x00b\r\n\r\n",
            400,
            true,
        ),
        bad(
            "\\x01 in a value",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nX-A: a\x01b\r\n\r\n",
            400,
            true,
        ),
        bad(
            "DEL in a value",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nX-A: a\x7fb\r\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §2.2 allows a bare LF to be read as a line ending, but a
        // strict server refuses it: here it must be 400 and close.
        bad(
            "bare LF line endings",
            "GET /style.css HTTP/1.1\nHost: test\n\n",
            400,
            true,
        ),
        bad(
            "bare LF after a header",
            "GET /style.css HTTP/1.1\r\nHost: test\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §7.1: chunk-size is 1*HEXDIG; one that overflows 64 bits
        // cannot frame anything.
        bad(
            "chunk size that overflows",
            "POST /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
             10000000000000000\r\nx\r\n0\r\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS ext-name [ ... ] ).
        bad(
            "chunk extension without a name",
            "POST /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
             1;=x\r\nx\r\n0\r\n\r\n",
            400,
            true,
        ),
        bad(
            "chunk extension with a bare CR",
            "POST /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
             1;a\rb\r\nx\r\n0\r\n\r\n",
            400,
            true,
        ),
        bad(
            "chunk data longer than its size",
            "POST /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
             1\r\nxyz\r\n0\r\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty.
        bad(
            "Transfer-Encoding in HTTP/1.0",
            "POST /style.css HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            true,
        ),
        // RFC 9112 §3: single spaces; no control characters in the target.
        bad(
            "two spaces in the request line",
            "GET  /style.css HTTP/1.1\r\nHost: test\r\n\r\n",
            400,
            true,
        ),
        bad(
            "NUL in the target",
            "GET /style\x00.css HTTP/1.1\r\nHost: test\r\n\r\n",
            400,
            true,
        ),
        bad(
            "bare CR in the target",
            "GET /style\r.css HTTP/1.1\r\nHost: test\r\n\r\n",
            400,
            true,
        ),
        bad(
            "bare CR in a header value",
            "GET /style.css HTTP/1.1\r\nHost: test\r\nX-A: a\rb\r\n\r\n",
            400,
            true,
        ),
    ];
    for value in ["-1", "+1", "0x10", "1 1", "99999999999999999999999"] {
        table.push(Bad {
            what: "invalid Content-Length",
            request: format!(
                "GET /style.css HTTP/1.1\r\nHost: test\r\nContent-Length: {value}\r\n\r\n"
            )
            .into_bytes(),
            status: 400,
            close: true,
        });
    }
    table
}

/// Sends one bad request and returns what is wrong with the answer, if
/// anything.
fn check_bad(server: &TestServer, case: &Bad) -> Option<String> {
    let mut c = server.connect();
    if case.close {
        // A valid request pipelined after the bad one must never be answered:
        // the connection's framing cannot be trusted any more.
        let mut bytes = case.request.clone();
        bytes.extend_from_slice(b"GET /app.js HTTP/1.1\r\nHost: test\r\n\r\n");
        let _ = c.write_all(&bytes);
        let bytes = match read_until_closed(&mut c, CLOSE_WITHIN, true) {
            Ok(b) => b,
            Err(e) => return Some(e),
        };
        let resps = match parse_all(&bytes) {
            Ok(r) => r,
            Err(e) => return Some(e),
        };
        let [r] = &resps[..] else {
            return Some(format!(
                "{} responses (want exactly 1): {:?}",
                resps.len(),
                resps.iter().map(|r| r.status).collect::<Vec<_>>()
            ));
        };
        if r.status != case.status {
            return Some(format!("status {} (want {})", r.status, case.status));
        }
        if r.header("connection") != Some("close") {
            return Some(format!(
                "Connection {:?} (want close)",
                r.header("connection")
            ));
        }
        common_headers_problem(r)
    } else {
        let _ = c.write_all(&case.request);
        let head = match read_head_only(&mut c) {
            Ok(h) => h,
            Err(e) => return Some(e),
        };
        let mut r = head;
        let len: usize = match r.header("content-length").map(str::parse) {
            Some(Ok(n)) => n,
            other => return Some(format!("Content-Length {other:?}")),
        };
        r.body = vec![0; len];
        if let Err(e) = c.read_exact(&mut r.body) {
            return Some(format!("body: {e}"));
        }
        if r.status != case.status {
            return Some(format!("status {} (want {})", r.status, case.status));
        }
        common_headers_problem(&r)
    }
}

/// Sends each request on its own connection and checks that it gets a `400`
/// and a close, by `check_bad`'s rules; lists every request that does not.
fn refused_with_400_and_close(server: &TestServer, requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|request| {
            check_bad(server, &bad("", request, 400, true))
                .map(|problem| format!("{request:?}: {problem}"))
        })
        .collect()
}

/// A request for `/style.css` whose only `Host` field has `value`.
fn with_host(value: &str) -> String {
    format!("GET /style.css HTTP/1.1\r\nHost: {value}\r\n\r\n")
}

/// A request for `/style.css` with a chunked body of "hello" whose first
/// chunk-size line is `size_line` (without its CRLF).
fn with_chunk_size_line(size_line: &str) -> String {
    format!(
        "GET /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
         {size_line}\r\nhello\r\n0\r\n\r\n"
    )
}

crate::engine_tests! {
    // ---------------------------------------------------------------------------
    // The response head

    #[test]
    fn get_root_has_date_server_length_type_and_last_modified() {
        let server = site();
        let r = server.get("/");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, INDEX);
        assert_common_headers(&r);

        // Date is the time the response was generated (RFC 9110 §6.6.1).
        let date = httpdate::parse_http_date(r.header("date").unwrap()).unwrap();
        let now = SystemTime::now();
        let skew = now.duration_since(date).unwrap_or_else(|e| e.duration());
        assert!(
            skew < Duration::from_secs(60),
            "Date {date:?} vs now {now:?}"
        );

        assert_eq!(r.header("content-length"), Some(&*INDEX.len().to_string()));
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));

        // Last-Modified is the file's mtime as an IMF-fixdate (RFC 9110 §8.8.2).
        let lm = r.header("last-modified").expect("Last-Modified");
        assert!(is_imf_fixdate(lm), "Last-Modified {lm:?}");
        let mtime = std::fs::metadata(server.root().join("index.html"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(lm, httpdate::fmt_http_date(mtime));
    }

    #[test]
    fn head_sends_get_headers_and_no_body() {
        // RFC 9110 §9.3.2: HEAD is GET without the content; the fields
        // (Content-Length included, §8.6) are the ones GET would send. If the
        // server sent a body, the bytes after the HEAD response head would not
        // start with the GET response.
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n\
              GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let bytes = read_to_close(&mut c);
        let (head, rest) = parse_head(&bytes).unwrap();
        assert_eq!(head.status, 200, "{head:?}");
        assert!(
            rest.starts_with(b"HTTP/1.1 200 "),
            "HEAD response followed by {:?}",
            s(&rest[..rest.len().min(80)])
        );
        let get = parse_responses(rest);
        assert_eq!(get.len(), 1, "{get:?}");
        let get = &get[0];
        assert_eq!(get.body, INDEX);
        assert_common_headers(get);
        for field in ["content-length", "content-type", "last-modified"] {
            assert!(get.header(field).is_some(), "GET lacks {field}");
            assert_eq!(head.header(field), get.header(field), "{field}");
        }
        assert!(head.header("date").is_some_and(is_imf_fixdate));
        assert!(
            head.header("server")
                .is_some_and(|v| v.starts_with("coserve/"))
        );
    }

    #[test]
    fn head_of_a_large_file_sends_its_length_but_not_its_bytes() {
        // RFC 9110 §9.3.2 again, for a file that GET would send with sendfile.
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"HEAD /big.bin HTTP/1.1\r\nHost: test\r\n\r\n\
              GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let bytes = read_to_close(&mut c);
        let (head, rest) = parse_head(&bytes).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("1048576"));
        assert_eq!(
            head.header("content-type"),
            Some("application/octet-stream")
        );
        let get = parse_responses(rest);
        assert_eq!(get.len(), 1, "{} bytes after the HEAD head", rest.len());
        assert_eq!(get[0].body, STYLE);
    }

    // ---------------------------------------------------------------------------
    // Methods

    #[test]
    fn other_standard_methods_get_405_with_allow() {
        // RFC 9110 §15.5.6: a 405 MUST carry Allow listing the supported methods.
        let server = site();
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"] {
            let r = server.one(
                format!("{method} /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(r.status, 405, "{method}: {r:?}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
            assert_common_headers(&r);
        }
    }

    #[test]
    fn unknown_method_gets_501() {
        // RFC 9110 §9.1: an unrecognised method SHOULD get 501.
        let server = site();
        let r = server.one(b"BREW /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 501, "{r:?}");
        assert_common_headers(&r);
    }

    // ---------------------------------------------------------------------------
    // Persistence (RFC 9112 §9.3)

    #[test]
    fn http11_keeps_the_connection_open() {
        let server = site();
        let mut c = server.connect();
        c.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let r1 = read_response(&mut c, false).expect("first response");
        assert_eq!((r1.status, &*r1.body), (200, STYLE));
        assert_eq!(r1.header("connection"), None, "{r1:?}");
        // Same socket, a second request, written only after the first answer.
        c.write_all(b"GET /app.js HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let r2 = read_response(&mut c, false).expect("second response");
        assert_eq!((r2.status, &*r2.body), (200, APP));
    }

    /// RFC 9110 §2.5: HTTP/1.2 (or 1.9) is processed as HTTP/1.1: served,
    /// kept alive, and Host is required as in 1.1.
    #[test]
    fn a_higher_http1_minor_version_is_served_as_http11() {
        let server = site();
        let mut c = server.connect();
        for version in ["1.2", "1.9"] {
            c.write_all(format!("GET /style.css HTTP/{version}\r\nHost: test\r\n\r\n").as_bytes())
                .unwrap();
            let r = read_response(&mut c, false).expect("a response on the same connection");
            assert_eq!((r.status, &*r.body), (200, STYLE), "HTTP/{version}");
        }
        let r = server.one(b"GET /style.css HTTP/1.2\r\n\r\n");
        assert_eq!(r.status, 400, "no Host");
    }

    #[test]
    fn connection_close_is_answered_with_close_and_a_closed_socket() {
        // RFC 9112 §9.6: after a response to a request with `Connection: close`
        // the server sends `Connection: close` and closes.
        let server = site();
        let mut c = server.connect();
        c.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c, false).unwrap();
        assert_eq!((r.status, &*r.body), (200, STYLE));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap(), b"");
    }

    #[test]
    fn http10_without_keep_alive_closes_after_one_response() {
        // RFC 9112 §9.3: an HTTP/1.0 connection is not persistent unless the
        // client sent keep-alive. The pipelined second request is never answered.
        let server = site();
        let mut c = server.connect();
        c.write_all(b"GET /style.css HTTP/1.0\r\n\r\nGET /app.js HTTP/1.0\r\n\r\n")
            .unwrap();
        let bytes = read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap();
        let resps = parse_responses(&bytes);
        assert_eq!(resps.len(), 1, "{resps:?}");
        assert_eq!((resps[0].status, &*resps[0].body), (200, STYLE));
        assert_ne!(resps[0].header("connection"), Some("keep-alive"));
    }

    #[test]
    fn http10_keep_alive_is_echoed_and_honoured() {
        // RFC 9112 §9.3 / Appendix C.2.2: HTTP/1.0 keep-alive.
        let server = site();
        let mut c = server.connect();
        c.write_all(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r1 = read_response(&mut c, false).unwrap();
        assert_eq!((r1.status, &*r1.body), (200, STYLE));
        assert_eq!(r1.header("connection"), Some("keep-alive"));
        c.write_all(b"GET /app.js HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r2 = read_response(&mut c, false).unwrap();
        assert_eq!((r2.status, &*r2.body), (200, APP));
        assert_eq!(r2.header("connection"), Some("keep-alive"));
        // A third request without keep-alive ends the connection.
        c.write_all(b"GET /data.json HTTP/1.0\r\n\r\n").unwrap();
        let rest = read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap();
        let resps = parse_responses(&rest);
        assert_eq!(bodies(&resps), [s(DATA)]);
    }

    // ---------------------------------------------------------------------------
    // Pipelining (RFC 9112 §9.3.2: responses in the order of the requests)

    #[test]
    fn pipelined_requests_in_one_write_are_answered_in_order() {
        let server = site();
        let mut c = server.connect();
        c.write_all(PIPELINE).unwrap();
        check_pipeline_answers(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
    }

    #[test]
    fn pipelined_requests_written_byte_by_byte_are_answered_in_order() {
        let server = site();
        let mut c = server.connect();
        c.set_nodelay(true).unwrap();
        for b in PIPELINE {
            c.write_all(std::slice::from_ref(b)).unwrap();
        }
        check_pipeline_answers(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
    }

    #[test]
    fn bytes_that_arrive_while_a_response_is_written_are_never_missed() {
        // A regression test for a lost wake-up: a connection that waited for
        // data only after an event, while its own write had cleared the
        // event flag, stalled with pipelined bytes unread (2 runs in 60 of
        // the test above). Many fresh connections make it likely to show.
        let server = site();
        for _ in 0..40 {
            let mut c = server.connect();
            c.set_nodelay(true).unwrap();
            for b in PIPELINE {
                c.write_all(std::slice::from_ref(b)).unwrap();
            }
            check_pipeline_answers(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
        }
    }

    #[test]
    fn pipelined_requests_split_mid_crlf_are_answered_in_order() {
        // Every write ends between a CR and its LF, or between the two CRLFs
        // that end a head.
        let server = site();
        let mut c = server.connect();
        c.set_nodelay(true).unwrap();
        let mut from = 0;
        for (i, &b) in PIPELINE.iter().enumerate() {
            if b == b'\r' || (b == b'\n' && PIPELINE.get(i + 1) == Some(&b'\r')) {
                c.write_all(&PIPELINE[from..=i]).unwrap();
                from = i + 1;
            }
        }
        c.write_all(&PIPELINE[from..]).unwrap();
        check_pipeline_answers(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
    }

    // ---------------------------------------------------------------------------
    // Request bodies (RFC 9112 §6.3: the framing decides where the next request
    // starts; body bytes are never parsed as a request)

    #[test]
    fn content_length_body_is_read_and_discarded() {
        let server = site();
        for split in [false, true] {
            let mut c = server.connect();
            c.set_nodelay(true).unwrap();
            let head = b"GET /style.css HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n";
            let rest = b"GET /GET /app.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
            if split {
                // The body arrives after the head, in its own write.
                c.write_all(head).unwrap();
                c.write_all(&rest[..5]).unwrap();
                c.write_all(&rest[5..]).unwrap();
            } else {
                c.write_all(&[&head[..], &rest[..]].concat()).unwrap();
            }
            let resps = parse_responses(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
            assert_eq!(
                resps.iter().map(|r| r.status).collect::<Vec<_>>(),
                [200, 200],
                "split {split}: {resps:?}"
            );
            assert_eq!(bodies(&resps), [s(STYLE), s(APP)], "split {split}");
        }
    }

    #[test]
    fn chunked_body_is_read_and_discarded() {
        // RFC 9112 §7.1: chunks, a chunk extension, the last chunk and a trailer.
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"GET /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nGET /\r\n3\r\nx\r\n\r\n0\r\nX-Trailer: GET / HTTP/1.1\r\n\r\n\
              GET /app.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let resps = parse_responses(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
        assert_eq!(
            resps.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 200],
            "{resps:?}"
        );
        assert_eq!(bodies(&resps), [s(STYLE), s(APP)]);
    }

    #[test]
    fn expect_100_continue_gets_an_interim_response_then_the_final_one() {
        // RFC 9110 §10.1.1: a server that will read the body sends 100 Continue
        // to a client waiting for it, then the final response.
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"GET /style.css HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let interim = read_head_only(&mut c).unwrap();
        assert_eq!(interim.status, 100, "{interim:?}");
        c.write_all(b"hello").unwrap();
        let bytes = read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap();
        let resps = parse_responses(&bytes);
        assert_eq!(resps.len(), 1, "{resps:?}");
        assert_eq!((resps[0].status, &*resps[0].body), (200, STYLE));
    }

    // ---------------------------------------------------------------------------
    // Host (RFC 9112 §3.2, RFC 9110 §7.2) and chunk-size lines (RFC 9112 §7.1)

    #[test]
    fn host_with_userinfo_gets_400_and_close() {
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[with_host("a@b"), with_host("user:secret@test"), with_host("@test")],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn host_with_a_path_query_fragment_or_backslash_gets_400_and_close() {
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[
                with_host("a/b"),
                with_host("test/"),
                with_host("test:80/style.css"),
                with_host("a?b"),
                with_host("a#b"),
                with_host("a\\b"),
            ],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn host_that_is_not_a_host_and_port_gets_400_and_close() {
        // RFC 3986 §3.2.2: reg-name, IPv4 or a bracketed IPv6 literal, then
        // an optional ":" and digits.
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[
                with_host("a b"),
                with_host("test:8o"),
                with_host("test:80:80"),
                with_host(":80"),
                with_host("%zz"),
                with_host("\"test\""),
                with_host("[::1"),
                with_host("[::1]x"),
                with_host("[not:an:address]"),
                with_host("::1"),
                with_host("caf\u{e9}"),
            ],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn host_that_is_a_comma_list_gets_400_and_close() {
        // A list is what two Host fields become when a recipient joins them
        // (RFC 9110 §5.3), and two are refused (§7.2).
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[with_host("a, b"), with_host("a,b"), with_host("test,")],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn empty_host_with_origin_or_asterisk_form_gets_400_and_close() {
        // RFC 9112 §3.2: an empty Host says the target URI has no authority,
        // but in these forms the authority is the Host, and an http URI
        // with an empty host is invalid (RFC 9110 §4.2.1).
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[
                "GET / HTTP/1.1\r\nHost: \r\n\r\n".to_string(),
                "GET /style.css HTTP/1.1\r\nHost:\r\n\r\n".to_string(),
                "OPTIONS * HTTP/1.1\r\nHost: \r\n\r\n".to_string(),
            ],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn empty_host_is_served_with_an_absolute_form_target_or_in_http10() {
        // The absolute form carries its own authority (RFC 9112 §3.2.2), and
        // HTTP/1.0 need not send Host at all.
        let server = site();
        for request in [
            &b"GET http://test/style.css HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n"[..],
            b"GET /style.css HTTP/1.0\r\nHost: \r\n\r\n",
        ] {
            let r = server.one(request);
            assert_eq!((r.status, &*r.body), (200, STYLE), "{:?}: {r:?}", s(request));
        }
    }

    #[test]
    fn host_names_addresses_and_ports_are_served() {
        let server = site();
        for host in [
            "test",
            "test:8080",
            "test:",
            "TEST.example.",
            "xn--caf-dma.example",
            "under_score.example",
            "%74est",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::ffff:1.2.3.4]",
            "!$&'()*+;=-._~",
        ] {
            let r = server.one(
                format!("GET /style.css HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!((r.status, &*r.body), (200, STYLE), "Host: {host}: {r:?}");
        }
    }

    #[test]
    fn chunk_size_with_trailing_whitespace_gets_400_and_close() {
        // RFC 9112 §7.1: chunk-size = 1*HEXDIG, and nothing in the grammar
        // ends a size line in whitespace. A recipient that trims it and one
        // that refuses it disagree on where the body ends.
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[
                with_chunk_size_line("5 "),
                with_chunk_size_line("5\t"),
                with_chunk_size_line("5  "),
                with_chunk_size_line("5;a "),
                with_chunk_size_line("5;a=b\t"),
                with_chunk_size_line("5;a=\"b\" "),
                "GET /style.css HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0 \r\n\r\n"
                    .to_string(),
            ],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn chunk_size_with_leading_whitespace_or_a_bare_cr_gets_400_and_close() {
        let server = site();
        let failures = refused_with_400_and_close(
            &server,
            &[
                with_chunk_size_line(" 5"),
                with_chunk_size_line("\t5"),
                with_chunk_size_line("5\r"),
                with_chunk_size_line("5;a=\"\\\r\""),
                with_chunk_size_line("5\x0c"),
            ],
        );
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn chunk_extensions_are_accepted_with_whitespace_around_their_punctuation() {
        // RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ),
        // and RFC 9110 §5.6.3 has recipients accept and remove BWS.
        let server = site();
        for line in ["5;a", "5;a=b", "5;a=\"b c\";d", "5 ;a", "5\t; a = \"b\""] {
            let mut c = server.connect();
            c.write_all(
                format!(
                    "{}GET /app.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
                    with_chunk_size_line(line)
                )
                .as_bytes(),
            )
            .unwrap();
            let resps = parse_responses(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
            assert_eq!(
                resps.iter().map(|r| r.status).collect::<Vec<_>>(),
                [200, 200],
                "{line:?}: {resps:?}"
            );
            assert_eq!(bodies(&resps), [s(STYLE), s(APP)], "{line:?}");
        }
    }

    // ---------------------------------------------------------------------------
    // Request forms

    #[test]
    fn absolute_form_target_is_served() {
        // RFC 9112 §3.2.2: a server MUST accept the absolute form.
        let server = site();
        let r = server
            .one(b"GET http://test/style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, STYLE);
        assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    }

    #[test]
    fn exactly_100_header_fields_are_accepted() {
        let server = site();
        let mut req = String::from("GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for i in 0..98 {
            req.push_str(&format!("X-Field-{i}: v\r\n"));
        }
        req.push_str("\r\n");
        let r = server.one(req.as_bytes());
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, STYLE);
    }

    #[test]
    fn request_line_of_exactly_8_kib_is_not_too_long() {
        // The limit is 8 KiB of request line (without CRLF): 8192 bytes pass the
        // limit and get an ordinary 404 for a file that does not exist.
        let server = site();
        let target = format!("/{}", "a".repeat(8192 - "GET  HTTP/1.1".len() - 1));
        let line = format!("GET {target} HTTP/1.1");
        assert_eq!(line.len(), 8192);
        let r = server.one(format!("{line}\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, 404, "{:?}", r.headers);
    }

    // ---------------------------------------------------------------------------
    // Bad input

    #[test]
    fn bad_requests_get_one_status_each() {
        let server = site();
        let failures: Vec<String> = bad_inputs()
            .iter()
            .filter_map(|case| {
                check_bad(&server, case).map(|problem| {
                    format!(
                        "{} ({:?}...): {problem}",
                        case.what,
                        s(&case.request[..case.request.len().min(60)])
                    )
                })
            })
            .collect();
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
        // The server is still fine afterwards.
        assert_eq!(server.get("/style.css").body, STYLE);
    }

    #[test]
    fn a_bad_request_after_good_pipelined_ones_answers_them_then_closes() {
        // The requests before the bad one are answered in order; the bad one
        // gets its 400 and a close, and nothing after it is read as a request.
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n\
              GET /app.js HTTP/1.1\r\nHost: test\r\n\r\n\
              GET /data.json HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n\
              GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .unwrap();
        let resps = parse_responses(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
        assert_eq!(
            resps.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 200, 400],
            "{resps:?}"
        );
        assert_eq!(bodies(&resps[..2]), [s(STYLE), s(APP)]);
        assert_eq!(resps[2].header("connection"), Some("close"));
    }

    #[test]
    fn empty_lines_before_a_request_line_are_ignored() {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF)
        // received before the request-line.
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n\r\n\
              GET /app.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let resps = parse_responses(&read_until_closed(&mut c, CLOSE_WITHIN, true).unwrap());
        assert_eq!(bodies(&resps), [s(STYLE), s(APP)], "{resps:?}");
    }

    #[test]
    fn a_response_after_a_large_file_starts_right_after_it() {
        // Framing after a sendfile response on a kept-alive connection: the next
        // response starts exactly after the 1 MiB body (RFC 9112 §6.3).
        let server = site();
        let mut c = server.connect();
        c.write_all(
            b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n\
              GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let resps = parse_responses(&read_until_closed(&mut c, Duration::from_secs(10), true).unwrap());
        assert_eq!(resps.len(), 2);
        assert!(resps[0].body == big_pattern(1024 * 1024), "big.bin differs");
        assert_eq!(resps[1].body, STYLE);
    }
}
