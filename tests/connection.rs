//! The connection loop on its own, through `coserve::serve_connection` over
//! an in-memory transport: pipelining split at any byte, errors that close,
//! and HTTP/1.0 persistence.

use coserve::Request;

use crate::memory::serve_script;

fn path_and_body_length(req: &Request) -> String {
    format!("{}|{}", req.path(), req.body().len())
}

fn run(input: &[u8], chunk: usize) -> String {
    String::from_utf8(serve_script(input, chunk, &path_and_body_length)).unwrap()
}

fn bodies(out: &str) -> Vec<&str> {
    out.split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or(""))
        .collect()
}

#[test]
fn pipelined_requests_split_at_any_byte_are_answered_in_order() {
    let input = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nGET /4 HTTP/1.1\r\nHost: h\r\n\r\n";
    for chunk in [1, 2, 3, 7, 64, 4096] {
        let out = run(input, chunk);
        assert_eq!(
            bodies(&out),
            ["/1|0", "/2|3", "/3|2", "/4|0"],
            "chunk {chunk}: {out}"
        );
    }
}

#[test]
fn a_bad_request_is_answered_and_closes() {
    let out = run(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET  / HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n",
        4096,
    );
    assert!(out.contains("HTTP/1.1 400 Bad Request"), "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    assert!(!out.contains("/never"), "{out}");
}

#[test]
fn http10_closes_unless_keep_alive() {
    let out = run(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", 4096);
    assert_eq!(bodies(&out), ["/a|0"]);
    let out = run(
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        4096,
    );
    assert_eq!(bodies(&out), ["/a|0", "/b|0"]);
    assert!(out.contains("Connection: keep-alive"));
}

/// A body that ends with the input, short of its length, is a 400 for a
/// body cut short, not a complaint about its `Content-Length`.
#[test]
fn a_body_cut_short_is_answered_400() {
    let out = run(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
        4096,
    );
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
}

/// An informational status can never be a final response: a handler that
/// answers with one gets its client a 500, and the connection goes on.
#[test]
fn a_handler_cannot_answer_with_an_informational_status() {
    let handler = |req: &Request| match req.path() {
        "/continue" => coserve::Response::new(coserve::StatusCode::CONTINUE),
        _ => coserve::Response::text("fine"),
    };
    let out = serve_script(
        b"GET /continue HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        4096,
        &handler,
    );
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 500 "), "{out}");
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(out.ends_with("fine"), "{out}");
}
