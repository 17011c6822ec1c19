//! Responses: a status, header fields and a body; how a response head is
//! written; and the chunked encoder that frames a streamed body.
//!
//! A handler builds a [`Response`]. The fields that belong to the
//! connection rather than the resource (`Content-Length`,
//! `Transfer-Encoding`, `Connection`) are the server's alone: a handler
//! cannot set them, and so cannot contradict the framing. `Date` and
//! `Server` are written by the server unless the handler sets its own.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::parse::{is_field_value, is_token_str};
use crate::status::StatusCode;

/// The value of the `Server` field.
pub(crate) const SERVER: &str = concat!("coserve/", env!("CARGO_PKG_VERSION"));

/// A response body: bytes in memory, part of an open file (sent with
/// `sendfile(2)`), or a stream written by a closure after the head.
///
/// Made with `From` (`Bytes`, `Vec<u8>`, `String`, `&'static str`,
/// `&'static [u8]`), [`Body::file`] or [`Body::stream`].
#[derive(Debug, Default)]
pub struct Body(pub(crate) Inner);

#[derive(Debug, Default)]
pub(crate) enum Inner {
    #[default]
    Empty,
    Bytes(Bytes),
    /// `len` bytes of `file` from `offset`; streamed, never read whole.
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
    Stream(Stream),
    /// Bytes in memory interleaved with pieces of one file: a
    /// `multipart/byteranges` body.
    Parts {
        file: File,
        parts: Vec<Part>,
    },
    /// What runs on the connection after a `101` (see `upgrade.rs`).
    Upgrade(crate::upgrade::Upgrade),
}

/// The writer behind a streamed body.
type StreamFn = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// A streamed body: a closure that writes it, and its length if it said
/// one ([`Body::sized_stream`]).
pub(crate) struct Stream(pub(crate) StreamFn, pub(crate) Option<u64>);

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stream(..)")
    }
}

/// A piece of a `multipart/byteranges` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    /// Bytes in memory (part headers, boundaries).
    Bytes(Bytes),
    /// `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
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
    /// No body.
    pub fn empty() -> Body {
        Body(Inner::Empty)
    }

    /// A whole open file, sent with `sendfile(2)` from the page cache.
    pub fn file(file: File) -> io::Result<Body> {
        let len = file.metadata()?.len();
        Ok(Body::file_range(file, 0, len))
    }

    /// `len` bytes of an open file from `offset`. The file must still hold
    /// them when the response is written: one that shrank meanwhile cuts
    /// the response short and closes the connection.
    pub fn file_range(file: File, offset: u64, len: u64) -> Body {
        Body::shared_file(Arc::new(file), offset, len)
    }

    /// Part of a file the file cache holds open.
    pub(crate) fn shared_file(file: Arc<File>, offset: u64, len: u64) -> Body {
        Body(Inner::File { file, offset, len })
    }

    /// A body written by `write` after the head has gone out, in blocking
    /// style: it may wait (coroutine-aware) between writes, and each
    /// `flush` sends what it has written so far. HTTP/1.1 clients get it
    /// chunked, HTTP/1.0 clients delimited by the close. Not called for
    /// `HEAD`. An error (or a panic) ends the response early and closes
    /// the connection, so the client can tell it was cut short.
    pub fn stream<F>(write: F) -> Body
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    {
        Body(Inner::Stream(Stream(Box::new(write), None)))
    }

    /// A body of exactly `len` bytes written by `write` after the head has
    /// gone out, as [`Body::stream`] is, but sent with its
    /// `Content-Length` rather than chunked: the connection stays open
    /// for the next request (with HTTP/1.0 too), and a `HEAD` answer
    /// carries the length. Fewer bytes than `len`, or an attempt to write
    /// more, is an error: the response ends there and the connection
    /// closes, so the client can tell it was cut short.
    ///
    /// ```
    /// use std::io::Write;
    /// use coserve::{Body, Response, StatusCode};
    ///
    /// let resp = Response::new(StatusCode::OK).body(Body::sized_stream(11, |w| {
    ///     w.write_all(b"hello ")?;
    ///     w.write_all(b"world")
    /// }));
    /// assert_eq!(resp.body_ref().len(), Some(11));
    /// ```
    pub fn sized_stream<F>(len: u64, write: F) -> Body
    where
        F: FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    {
        Body(Inner::Stream(Stream(Box::new(write), Some(len))))
    }

    pub(crate) fn parts(file: File, parts: Vec<Part>) -> Body {
        Body(Inner::Parts { file, parts })
    }

    /// Whether this is an upgrade's closure ([`Response::upgrade`]).
    pub fn is_upgrade(&self) -> bool {
        matches!(self.0, Inner::Upgrade(_))
    }

    /// The length in bytes; `None` for a stream, whose length is not known
    /// until it has been written, unless it said it
    /// ([`Body::sized_stream`]).
    pub fn len(&self) -> Option<u64> {
        match &self.0 {
            Inner::Stream(Stream(_, len)) => *len,
            _ => Some(self.wire_len()),
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Whether the body is a stream.
    pub fn is_stream(&self) -> bool {
        matches!(self.0, Inner::Stream(_))
    }

    /// Whether the body is a stream of no stated length: chunked, or
    /// delimited by the close.
    pub(crate) fn is_unsized_stream(&self) -> bool {
        matches!(self.0, Inner::Stream(Stream(_, None)))
    }

    /// The bytes of a body held in memory; `None` for a file or a stream.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Inner::Empty => Some(&[]),
            Inner::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The file, offset and length of a body that is part of one file.
    pub(crate) fn as_file(&self) -> Option<(&Arc<File>, u64, u64)> {
        match &self.0 {
            Inner::File { file, offset, len } => Some((file, *offset, *len)),
            _ => None,
        }
    }

    /// The `Content-Length` of the body (0 for a stream of no stated
    /// length).
    pub(crate) fn wire_len(&self) -> u64 {
        match &self.0 {
            Inner::Stream(Stream(_, len)) => len.unwrap_or(0),
            Inner::Empty | Inner::Upgrade(_) => 0,
            Inner::Bytes(b) => b.len() as u64,
            Inner::File { len, .. } => *len,
            Inner::Parts { parts, .. } => parts.iter().map(Part::len).sum(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body(Inner::Bytes(bytes))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body(Inner::Bytes(bytes.into()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body(Inner::Bytes(text.into()))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body(Inner::Bytes(Bytes::from_static(text.as_bytes())))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Body {
        Body(Inner::Bytes(Bytes::from_static(bytes)))
    }
}

/// Why a header field was refused. A response given one by
/// [`Response::header`] is never sent: the client gets a `500` instead,
/// and the log says why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name is not a token (RFC 9110 §5.6.2): empty, or holding a
    /// space, a colon, a control character or the like.
    Name(String),
    /// The value of the named field holds CR, LF, NUL or another control
    /// character (HTAB aside), which could end the field and start another.
    Value(String),
    /// `Content-Length`, `Transfer-Encoding` and `Connection` are written
    /// by the server, from the body and the connection's state; use
    /// [`Response::close`] to close after a response.
    Reserved(String),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Name(name) => write!(f, "invalid header name {:?}", name),
            HeaderError::Value(name) => {
                write!(f, "control character in the value of header {name}")
            }
            HeaderError::Reserved(name) => write!(f, "{name} is set by the server, not a handler"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Checks a header field a handler (or an option) sets.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), HeaderError> {
    if !is_token_str(name.as_bytes()) {
        return Err(HeaderError::Name(name.into()));
    }
    if !value.bytes().all(is_field_value) {
        return Err(HeaderError::Value(name.into()));
    }
    for reserved in ["content-length", "transfer-encoding", "connection"] {
        if name.eq_ignore_ascii_case(reserved) {
            return Err(HeaderError::Reserved(name.into()));
        }
    }
    Ok(())
}

/// Which of the fields the server writes by default a response has set for
/// itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Own {
    date: bool,
    server: bool,
}

impl Own {
    fn note(&mut self, name: &str) {
        self.date |= name.eq_ignore_ascii_case("date");
        self.server |= name.eq_ignore_ascii_case("server");
    }
}

/// Header fields rendered ahead of time (`\r\nName: value` each), as the
/// file cache keeps them, with what they set of the server's defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rendered {
    pub bytes: Bytes,
    own: Own,
}

/// An HTTP response: a status, header fields and a [`Body`].
///
/// ```
/// use coserve::{Response, StatusCode};
/// let created = Response::text("made it\n").with_status(StatusCode::CREATED);
/// let moved = Response::redirect(StatusCode::SEE_OTHER, "/elsewhere");
/// let custom = Response::new(StatusCode::OK)
///     .header("Content-Type", "image/svg+xml")
///     .header("Cache-Control", "max-age=60")
///     .body("<svg xmlns='http://www.w3.org/2000/svg'/>");
/// # let _ = (created, moved, custom);
/// ```
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    headers: Vec<(String, String)>,
    /// Written before `headers`: what the file cache stores.
    rendered: Rendered,
    body: Body,
    close: bool,
    /// The first header field refused, which makes the response a 500.
    /// Boxed: a response is moved through several frames of every request,
    /// and this is nearly always `None`.
    refused: Option<Box<HeaderError>>,
}

impl Response {
    /// A response with this status, no header fields and no body.
    pub fn new(status: StatusCode) -> Response {
        Response {
            status,
            headers: Vec::new(),
            rendered: Rendered::default(),
            body: Body::empty(),
            close: false,
            refused: None,
        }
    }

    /// A small generic page for an error or redirect status: the status line
    /// as `text/plain`. Details belong in the log, not here.
    pub fn error(status: StatusCode) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(format!("{status}\n"))
    }

    /// `200 OK` with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Response {
        Response::bytes("text/plain; charset=utf-8", body.into())
    }

    /// `200 OK` with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<String>) -> Response {
        Response::bytes("text/html; charset=utf-8", body.into())
    }

    /// `200 OK` with a body of the given `Content-Type`.
    pub fn bytes(content_type: &str, body: impl Into<Body>) -> Response {
        Response::new(StatusCode::OK)
            .header("Content-Type", content_type)
            .body(body)
    }

    /// `101 Switching Protocols` to `protocol` (the `Upgrade` field;
    /// `Connection: Upgrade` is added): once the head is sent, the
    /// connection leaves HTTP and `on_upgrade` runs on it, on the same
    /// coroutine, in blocking style; the connection closes when it
    /// returns. Only an HTTP/1.1 request (not `HEAD`) can be upgraded;
    /// answering another with it is a handler error (`500`).
    /// [`WebSocket`](crate::ws) is built on it.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use coserve::{Request, Response};
    ///
    /// // An echo protocol: whatever comes is sent back.
    /// fn handler(_req: &Request) -> Response {
    ///     Response::upgrade("echo", |mut conn| {
    ///         let mut buf = [0u8; 1024];
    ///         while let Ok(n @ 1..) = conn.read(&mut buf) {
    ///             if conn.write_all(&buf[..n]).and_then(|()| conn.flush()).is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     })
    /// }
    /// ```
    pub fn upgrade<F>(protocol: &str, on_upgrade: F) -> Response
    where
        F: for<'a> FnOnce(crate::Upgraded<'a>) + Send + 'static,
    {
        Response::upgrade_with(
            protocol,
            crate::upgrade::Upgrade::Closure(Box::new(on_upgrade)),
        )
    }

    /// `101 Switching Protocols` to `protocol`, running `upgrade`.
    pub(crate) fn upgrade_with(protocol: &str, upgrade: crate::upgrade::Upgrade) -> Response {
        Response::new(StatusCode::SWITCHING_PROTOCOLS)
            .header("Upgrade", protocol)
            .body(Body(Inner::Upgrade(upgrade)))
    }

    /// A redirect (`301`, `302`, `303`, `307` or `308`) to `location`, with a
    /// short text body. A location holding CR, LF or another control
    /// character makes the response a `500` (see [`Response::header`]).
    pub fn redirect(status: StatusCode, location: &str) -> Response {
        Response::error(status).header("Location", location)
    }

    /// `200 OK` with `value` serialized as `application/json`. A value that
    /// cannot be serialized (a map with non-string keys, say) is a `500`,
    /// with the reason in the log.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(json) => Response::bytes("application/json", json),
            Err(e) => {
                log::error!("cannot serialize a JSON response: {e}");
                Response::error(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// Adds a header field (several with one name are all sent, in order).
    ///
    /// The name must be a token and the value free of CR, LF, NUL and the
    /// other control characters but HTAB; `Content-Length`,
    /// `Transfer-Encoding` and `Connection` belong to the server. A field
    /// that breaks these rules is not added, and the response is never
    /// sent: the client gets a `500` and the log says which field, so that
    /// a value copied from a request cannot split the response. Use
    /// [`Response::try_header`] to handle that yourself.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        let (name, value) = (name.into(), value.into());
        match check_header(&name, &value) {
            Ok(()) => {
                self.rendered.own.note(&name);
                self.headers.push((name, value));
            }
            Err(e) => {
                self.refused.get_or_insert(Box::new(e));
            }
        }
        self
    }

    /// [`Response::header`], returning the refusal instead of turning the
    /// response into a `500`.
    pub fn try_header(
        self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Response, HeaderError> {
        let (name, value) = (name.into(), value.into());
        check_header(&name, &value)?;
        Ok(self.header(name, value))
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Body>) -> Response {
        self.body = body.into();
        self
    }

    /// Changes the status.
    pub fn with_status(mut self, status: StatusCode) -> Response {
        self.status = status;
        self
    }

    /// Changes the status in place.
    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status;
    }

    /// Asks the connection to close after this response.
    pub fn close(mut self) -> Response {
        self.close = true;
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The header fields added with [`Response::header`], in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of a header field, compared case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        let raw = std::str::from_utf8(&self.rendered.bytes).unwrap_or("");
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

    /// Whether the connection closes after this response.
    pub fn closes(&self) -> bool {
        self.close
    }

    /// The header field that made this response unsendable, if one did.
    pub fn refused_header(&self) -> Option<&HeaderError> {
        self.refused.as_deref()
    }

    /// Adds header fields rendered ahead of time, written before the
    /// others.
    pub(crate) fn rendered_headers(mut self, rendered: Rendered) -> Response {
        self.rendered = rendered;
        self
    }

    /// All header fields rendered as [`Response::rendered_headers`] takes
    /// them.
    pub(crate) fn render_headers(&self) -> Rendered {
        let mut out = BytesMut::new();
        put_fields(&mut out, self);
        Rendered {
            bytes: out.freeze(),
            own: self.rendered.own,
        }
    }

    pub(crate) fn into_body(self) -> Body {
        self.body
    }
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
    /// `Connection: Upgrade`, with a `101`.
    Upgrade,
}

/// Appends a response head to `buf`. `chunked` says whether a streamed
/// body goes out with chunked coding.
pub(crate) fn write_head(
    buf: &mut BytesMut,
    resp: &Response,
    connection: ConnectionField,
    chunked: bool,
) {
    let status = resp.status;
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(itoa::Buffer::new().format(status.as_u16()).as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(status.reason().as_bytes());
    let own = resp.rendered.own;
    if !own.server {
        buf.put_slice(b"\r\nServer: ");
        buf.put_slice(SERVER.as_bytes());
    }
    if !own.date {
        buf.put_slice(b"\r\nDate: ");
        crate::date::with_http_date(|date| buf.put_slice(date.as_bytes()));
    }
    if !status.has_no_body() {
        match resp.body.0 {
            Inner::Stream(Stream(_, None)) if chunked => {
                buf.put_slice(b"\r\nTransfer-Encoding: chunked");
            }
            // Delimited by the close.
            Inner::Stream(Stream(_, None)) => {}
            _ => {
                buf.put_slice(b"\r\nContent-Length: ");
                buf.put_slice(itoa::Buffer::new().format(resp.body.wire_len()).as_bytes());
            }
        }
    }
    match connection {
        ConnectionField::Default => {}
        ConnectionField::Close => buf.put_slice(b"\r\nConnection: close"),
        ConnectionField::KeepAlive => buf.put_slice(b"\r\nConnection: keep-alive"),
        ConnectionField::Upgrade => buf.put_slice(b"\r\nConnection: Upgrade"),
    }
    put_fields(buf, resp);
    buf.put_slice(b"\r\n\r\n");
}

/// Appends a response's own header fields, pre-rendered ones first, each as
/// `\r\nName: value`.
fn put_fields(buf: &mut BytesMut, resp: &Response) {
    buf.put_slice(&resp.rendered.bytes);
    for (name, value) in &resp.headers {
        buf.put_slice(b"\r\n");
        buf.put_slice(name.as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
    }
}

/// Streamed bodies are sent in chunks of up to this size.
const STREAM_CHUNK: usize = 16 * 1024;

/// What a streamed body's closure writes to: it batches small writes and
/// frames them as chunks (RFC 9112 §7.1) when the client speaks HTTP/1.1.
pub(crate) struct ChunkedWriter<'a, W: Write + ?Sized> {
    io: &'a mut W,
    buf: Vec<u8>,
    chunked: bool,
    written: u64,
    /// The stated length of a sized stream, which it must write exactly.
    len: Option<u64>,
}

impl<'a, W: Write + ?Sized> ChunkedWriter<'a, W> {
    pub(crate) fn new(io: &'a mut W, chunked: bool) -> Self {
        ChunkedWriter {
            io,
            buf: Vec::with_capacity(STREAM_CHUNK),
            chunked,
            written: 0,
            len: None,
        }
    }

    /// A writer for a body of exactly `len` bytes, sent as they are.
    pub(crate) fn sized(io: &'a mut W, len: u64) -> Self {
        ChunkedWriter {
            len: Some(len),
            ..ChunkedWriter::new(io, false)
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.chunked {
            let mut size = [0u8; 18];
            let mut w = &mut size[..];
            write!(w, "{:x}\r\n", self.buf.len())?;
            let left = w.len();
            self.io.write_all(&size[..size.len() - left])?;
            self.buf.extend_from_slice(b"\r\n");
            self.io.write_all(&self.buf)?;
            self.written += (self.buf.len() - 2) as u64;
        } else {
            self.io.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
        }
        self.buf.clear();
        Ok(())
    }

    /// The body bytes sent so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Sends what is left and the last chunk; returns the body bytes
    /// written.
    pub(crate) fn finish(&mut self) -> io::Result<u64> {
        self.send()?;
        if let Some(len) = self.len
            && self.written != len
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a sized stream wrote {} of its {len} bytes", self.written),
            ));
        }
        if self.chunked {
            self.io.write_all(b"0\r\n\r\n")?;
        }
        self.io.flush()?;
        Ok(self.written)
    }
}

impl<W: Write + ?Sized> Write for ChunkedWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(len) = self.len
            && self.written + (self.buf.len() + data.len()) as u64 > len
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a sized stream wrote past its {len} bytes"),
            ));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    /// Sends what has been written so far as a chunk, so a client sees
    /// progress from a body that pauses between writes.
    fn flush(&mut self) -> io::Result<()> {
        self.send()?;
        self.io.flush()
    }
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
        let resp = Response::bytes("text/plain", "hello");
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
        let h = head(
            &Response::new(StatusCode::NOT_MODIFIED),
            ConnectionField::Close,
        );
        assert!(h.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!h.contains("Content-Length"), "{h}");
        assert!(h.contains("\r\nConnection: close\r\n"));
        let h = head(
            &Response::error(StatusCode::NOT_FOUND),
            ConnectionField::KeepAlive,
        );
        assert!(h.contains("\r\nConnection: keep-alive\r\n"));
        assert!(h.contains("\r\nContent-Length: 14\r\n"), "{h}");
    }

    #[test]
    fn a_field_that_could_split_the_response_is_refused() {
        for (name, value) in [
            ("Location", "/a\r\nSet-Cookie: x=1"),
            ("Location", "/a\nX: y"),
            ("Location", "/a\rX: y"),
            ("X-A", "nul\0here"),
            ("X-A", "esc\x1b"),
            ("Bad Name", "v"),
            ("Bad:Name", "v"),
            ("", "v"),
            ("X\r\nInjected", "v"),
            ("Content-Length", "5"),
            ("transfer-encoding", "chunked"),
            ("Connection", "close"),
        ] {
            let resp = Response::text("x").header(name, value);
            assert!(resp.refused_header().is_some(), "{name:?}: {value:?}");
            assert!(resp.headers().iter().all(|(n, _)| n != name));
            assert!(Response::text("x").try_header(name, value).is_err());
        }
        let ok = Response::text("x")
            .header("X-Tab", "a\tb")
            .header("X-Utf8", "caf\u{e9}");
        assert!(ok.refused_header().is_none());
        assert_eq!(ok.header_value("x-tab"), Some("a\tb"));
    }

    #[test]
    fn a_handler_may_set_its_own_date_and_server() {
        let resp = Response::text("x")
            .header("Server", "mine")
            .header("date", "Thu, 01 Jan 1970 00:00:00 GMT");
        let h = head(&resp, ConnectionField::Default);
        assert_eq!(h.matches("Server:").count(), 1, "{h}");
        assert_eq!(h.to_ascii_lowercase().matches("date:").count(), 1, "{h}");
        assert!(h.contains("\r\nServer: mine\r\n"), "{h}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_bodies_and_their_failures() {
        let r = Response::json(&serde_json::json!({"a": [1, 2]}));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        assert_eq!(r.body_ref().as_bytes(), Some(&br#"{"a":[1,2]}"#[..]));
        // A map with keys JSON cannot have is a 500, not a panic.
        let bad: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert_eq!(
            Response::json(&bad).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn chunks_frame_what_was_written() {
        let mut out = Vec::new();
        let mut w = ChunkedWriter::new(&mut out, true);
        w.write_all(b"hello").unwrap();
        w.flush().unwrap();
        w.write_all(&[b'x'; 20]).unwrap();
        assert_eq!(w.finish().unwrap(), 25);
        let want = format!("5\r\nhello\r\n14\r\n{}\r\n0\r\n\r\n", "x".repeat(20));
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}
