//! Responses: status, header fields and a body, and how a response head is
//! written.
//!
//! A handler builds a [`Response`]; the connection adds the fields that
//! belong to the connection rather than the resource (`Date`, `Server`,
//! `Content-Length`, `Connection`) when it writes the head.

use std::cell::RefCell;
use std::fs::File;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// The value of the `Server` field.
pub const SERVER: &str = concat!("coserve/", env!("CARGO_PKG_VERSION"));

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(Bytes),
    /// `len` bytes of an open file, starting at `offset`. Streamed, never read
    /// whole.
    File {
        /// The open file.
        file: File,
        /// Where the body starts in the file.
        offset: u64,
        /// How many bytes to send.
        len: u64,
    },
    /// Written by the handler's closure, in blocking style, after the head
    /// has gone out: chunked for HTTP/1.1 clients, delimited by closing the
    /// connection for HTTP/1.0 ones. Not called for HEAD.
    Stream(Stream),
    /// Bytes in memory interleaved with pieces of one file: a
    /// `multipart/byteranges` body.
    Parts {
        /// The open file the [`Part::File`] pieces come from.
        file: File,
        /// The pieces, in order.
        parts: Vec<Part>,
    },
}

/// The writer behind [`Body::Stream`].
pub type StreamFn = Box<dyn FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send>;

/// A streamed body: a closure that writes it.
pub struct Stream(pub(crate) StreamFn);

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stream(..)")
    }
}

impl Body {
    /// A body streamed by `write`, which may block (coroutine-aware) between
    /// writes. An error ends the response early and closes the connection.
    pub fn stream<F>(write: F) -> Body
    where
        F: FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static,
    {
        Body::Stream(Stream(Box::new(write)))
    }

    /// Whether the length is unknown until the body has been written.
    pub fn is_stream(&self) -> bool {
        matches!(self, Body::Stream(_))
    }
}

/// A piece of a [`Body::Parts`] body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes in memory (part headers, boundaries).
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File {
        /// Where the piece starts in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::File { len, .. } => *len,
        }
    }
}

impl Body {
    /// The body's length in bytes (0 for a stream, whose length is not
    /// known in advance).
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty | Body::Stream(_) => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
            Body::Parts { parts, .. } => parts.iter().map(Part::len).sum(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    /// Header fields rendered ahead of time (`\r\nName: value` each), written
    /// before `headers`: what the file cache stores.
    raw: Bytes,
    body: Body,
    close: bool,
}

impl Response {
    /// A response with this status, no header fields and no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            raw: Bytes::new(),
            body: Body::Empty,
            close: false,
        }
    }

    /// A small generic page for an error or redirect status: the status line
    /// as `text/plain`. Details belong in the log, not here.
    pub fn error(status: u16) -> Response {
        let text = format!("{} {}\n", status, reason(status));
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(Body::Bytes(Bytes::from(text)))
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds header fields rendered ahead of time: `\r\nName: value` for
    /// each, exactly as they go on the wire.
    pub(crate) fn raw_headers(mut self, raw: Bytes) -> Response {
        self.raw = raw;
        self
    }

    /// All header fields rendered as [`raw_headers`](Self::raw_headers)
    /// takes them.
    pub(crate) fn rendered_headers(&self) -> Bytes {
        let mut out = BytesMut::new();
        put_fields(&mut out, self);
        out.freeze()
    }

    /// Sets the body.
    pub fn body(mut self, body: Body) -> Response {
        self.body = body;
        self
    }

    /// Changes the status code.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Asks the connection to close after this response.
    pub fn close(mut self) -> Response {
        self.close = true;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The header fields set so far.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of a header field, compared case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        let raw = std::str::from_utf8(&self.raw).unwrap_or("");
        raw.split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .chain(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The body.
    pub fn body_ref(&self) -> &Body {
        &self.body
    }

    pub(crate) fn into_body(self) -> Body {
        self.body
    }

    /// Whether the connection must close after this response.
    pub fn closes(&self) -> bool {
        self.close
    }
}

/// The reason phrase for a status code (RFC 9110 §15).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Whether a response with this status carries no body (RFC 9110 §6.4.1).
fn status_has_no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// What the connection decided about persistence for this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionField {
    /// Send nothing: the default for the request's version applies.
    Default,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive` (an HTTP/1.0 client that asked for it).
    KeepAlive,
}

/// Appends a response head to `buf`.
/// `chunked` says whether a streamed body goes out with chunked coding.
pub(crate) fn write_head(
    buf: &mut BytesMut,
    resp: &Response,
    connection: ConnectionField,
    chunked: bool,
) {
    let status = resp.status;
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(itoa::Buffer::new().format(status).as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(reason(status).as_bytes());
    buf.put_slice(b"\r\nServer: ");
    buf.put_slice(SERVER.as_bytes());
    buf.put_slice(b"\r\nDate: ");
    put_date(buf);
    if !status_has_no_body(status) {
        match resp.body {
            Body::Stream(_) if chunked => buf.put_slice(b"\r\nTransfer-Encoding: chunked"),
            // Delimited by the close.
            Body::Stream(_) => {}
            _ => {
                buf.put_slice(b"\r\nContent-Length: ");
                buf.put_slice(itoa::Buffer::new().format(resp.body.len()).as_bytes());
            }
        }
    }
    match connection {
        ConnectionField::Default => {}
        ConnectionField::Close => buf.put_slice(b"\r\nConnection: close"),
        ConnectionField::KeepAlive => buf.put_slice(b"\r\nConnection: keep-alive"),
    }
    put_fields(buf, resp);
    buf.put_slice(b"\r\n\r\n");
}

/// Appends a response's own header fields, pre-rendered ones first, each as
/// `\r\nName: value`.
fn put_fields(buf: &mut BytesMut, resp: &Response) {
    buf.put_slice(&resp.raw);
    for (name, value) in &resp.headers {
        buf.put_slice(b"\r\n");
        buf.put_slice(name.as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
    }
}

/// Appends the current time as an IMF-fixdate, formatting it at most once a
/// second per worker thread.
fn put_date(buf: &mut BytesMut) {
    thread_local! {
        // The borrow never spans a yield: it is taken and released inside
        // this function, which does no I/O.
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    // The coarse wall clock lags by at most a tick (a few ms); nginx's
    // cached time lags by up to an event-loop turn.
    let secs = crate::clock::unix_seconds();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (
                secs,
                httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs)),
            );
        }
        buf.put_slice(cache.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(resp: &Response, c: ConnectionField) -> String {
        let mut buf = BytesMut::new();
        write_head(&mut buf, resp, c, false);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn head_has_date_server_and_length() {
        let resp = Response::new(200)
            .header("Content-Type", "text/plain")
            .body(Body::Bytes(Bytes::from_static(b"hello")));
        let h = head(&resp, ConnectionField::Default);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("\r\nContent-Length: 5\r\n"), "{h}");
        assert!(h.contains("\r\nServer: coserve/"), "{h}");
        assert!(h.contains("\r\nContent-Type: text/plain\r\n"), "{h}");
        let date = h
            .split("\r\nDate: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert!(h.ends_with("\r\n\r\n"));
        assert!(!h.contains("Connection"));
    }

    #[test]
    fn connection_field_and_bodiless_statuses() {
        let h = head(&Response::new(304), ConnectionField::Close);
        assert!(h.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!h.contains("Content-Length"), "{h}");
        assert!(h.contains("\r\nConnection: close\r\n"));
        let h = head(&Response::error(404), ConnectionField::KeepAlive);
        assert!(h.contains("\r\nConnection: keep-alive\r\n"));
        assert!(h.contains("\r\nContent-Length: 14\r\n"), "{h}");
    }
}
