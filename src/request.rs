//! The request a handler sees: method, target, header fields and body,
//! as slices of the bytes the head arrived in.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use percent_encoding::{percent_decode, percent_decode_str};

use crate::parse::{
    Fields, Head, Limits, ParseError, Status, Version, find_byte, name_bit, parse_head,
};
use crate::request_body::{BodyReader, ReadPos, SourceSlot};

/// The request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `CONNECT`
    Connect,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `PATCH`
    Patch,
    /// Any other token.
    Other(Box<str>),
}

impl Method {
    pub(crate) fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            // The parser only admits token characters, which are ASCII.
            other => Method::Other(String::from_utf8_lossy(other).into()),
        }
    }

    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other(s) => s,
        }
    }

    /// Whether this is one of the methods RFC 9110 §9 and RFC 5789 define.
    pub fn is_standard(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request: its head, its body, and where it came from.
///
/// The head is kept as the bytes it was received in, and accessors hand out
/// slices of it, so parsing copies nothing but the offsets.
#[derive(Debug, Clone)]
pub struct Request {
    /// Starts with the head.
    raw: Bytes,
    /// Whether the request line is ASCII, as parse_head's regex makes it.
    line_ascii: bool,
    method: Method,
    head: Head,
    body: Bytes,
    peer: Option<SocketAddr>,
    tls: Option<Arc<TlsInfo>>,
    params: Params,
    extensions: Extensions,
    /// Whether the body is streamed to the handler rather than read
    /// before it ([`BodyPolicy::Stream`](crate::BodyPolicy::Stream)).
    streamed: bool,
    /// The connection's reader of a streamed body, while the handler runs.
    source: SourceSlot,
    /// How far readers of a body read whole have read it.
    read_pos: ReadPos,
}

/// Values of any type that middleware leaves for the handler (see
/// [`Request::set_extension`]), one per type. Locked only to add one or
/// to clone an `Arc` out, never across a call that could park.
#[derive(Default)]
struct Extensions(Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>);

impl Extensions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(TypeId, Arc<dyn Any + Send + Sync>)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clone for Extensions {
    fn clone(&self) -> Extensions {
        Extensions(Mutex::new(self.lock().clone()))
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Extensions({})", self.lock().len())
    }
}

/// The parameters of the pattern route that matched: each name, and where
/// its value lies in the path.
pub(crate) type ParamList = Box<[(Arc<str>, Range<usize>)]>;

/// Where a [`Router`](crate::Router) leaves the parameters it matched. The
/// router sees the request only as `&Request`, and a request crosses
/// threads (a [`Timeout`](crate::Timeout) runs its handler on another), so
/// the cell is a `Mutex`; it is locked only to set the list or to copy a
/// range out of it, never across a call that could park.
#[derive(Debug, Default)]
struct Params(Mutex<Option<ParamList>>);

impl Params {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ParamList>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clone for Params {
    fn clone(&self) -> Params {
        Params(Mutex::new(self.lock().clone()))
    }
}

/// What the TLS handshake of a request's connection settled
/// ([`Request::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    version: &'static str,
    server_name: Option<Box<str>>,
}

impl TlsInfo {
    /// `version`: as OpenSSL and nginx's `$ssl_protocol` name it
    /// (`"TLSv1.3"`); `server_name`: the SNI name the client asked for.
    pub fn new(version: &'static str, server_name: Option<&str>) -> TlsInfo {
        TlsInfo {
            version,
            server_name: server_name.map(Box::from),
        }
    }

    /// The protocol version, as OpenSSL and nginx's `$ssl_protocol` name
    /// it: `"TLSv1.3"` or `"TLSv1.2"`.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// The host name the client asked for with SNI (`$ssl_server_name`), if
    /// it sent one; clients send none when they connect to an IP address.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }
}

impl Request {
    /// Builds a request from a head parsed out of `raw` (which must start with
    /// the bytes the head was parsed from).
    pub(crate) fn new(raw: Bytes, head: Head, peer: Option<SocketAddr>) -> Request {
        let line_ascii = raw[head.request_line.clone()].is_ascii();
        let method = Method::from_token(&raw[head.method.clone()]);
        Request {
            raw,
            line_ascii,
            method,
            head,
            body: Bytes::new(),
            peer,
            tls: None,
            params: Params::default(),
            extensions: Extensions::default(),
            streamed: false,
            source: SourceSlot::default(),
            read_pos: ReadPos::default(),
        }
    }

    /// Marks the body as streamed to the handler: [`Request::body`] stays
    /// empty, and [`Request::body_reader`] reads the connection.
    pub(crate) fn set_streamed(&mut self) {
        self.streamed = true;
    }

    pub(crate) fn is_streamed(&self) -> bool {
        self.streamed
    }

    pub(crate) fn source_slot(&self) -> &SourceSlot {
        &self.source
    }

    pub(crate) fn read_pos(&self) -> &ReadPos {
        &self.read_pos
    }

    /// Sets the parameters a pattern route matched, replacing any an outer
    /// router set: each range lies within [`Request::path`].
    pub(crate) fn set_params(&self, params: ParamList) {
        *self.params.lock() = Some(params);
    }

    /// Leaves `value` with the request for whatever runs after: a
    /// middleware that has checked who is asking hands the user to the
    /// handler this way. One value per type; a second replaces the first.
    ///
    /// ```
    /// # use coserve::Request;
    /// struct User(String);
    /// let req = Request::parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    /// req.set_extension(User("ann".into()));
    /// assert_eq!(req.extension::<User>().unwrap().0, "ann");
    /// assert!(req.extension::<String>().is_none());
    /// ```
    pub fn set_extension<T: Send + Sync + 'static>(&self, value: T) {
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        let mut all = self.extensions.lock();
        match all.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
            Some(slot) => slot.1 = value,
            None => all.push((TypeId::of::<T>(), value)),
        }
    }

    /// The value of type `T` left by [`Request::set_extension`], if any.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self
            .extensions
            .lock()
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .map(|(_, value)| Arc::clone(value))?;
        value.downcast::<T>().ok()
    }

    /// Sets what TLS negotiated on the request's connection.
    pub(crate) fn set_tls(&mut self, tls: Option<Arc<TlsInfo>>) {
        self.tls = tls;
    }

    /// Parses a request from `bytes`, which must hold a complete head; a
    /// body after it is not read. For testing handlers without a server:
    ///
    /// ```
    /// let req = coserve::Request::parse(b"GET /hello?name=Ann HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    /// assert_eq!(req.query_param("name").as_deref(), Some("Ann"));
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Request, ParseError> {
        match parse_head(bytes, &Limits::default())? {
            Status::Complete(head) => Ok(Request::new(Bytes::copy_from_slice(bytes), head, None)),
            Status::Partial => Err(ParseError::RequestLine),
        }
    }

    /// The vector that held the fields, for the next [`parse_head_into`](crate::parse::parse_head_into)
    /// (which empties it).
    pub(crate) fn into_fields(self) -> Fields {
        self.head.headers
    }

    /// Moves the request's bytes out of the buffers they share (the
    /// connection's read buffer), for a request kept past its connection
    /// loop.
    pub(crate) fn compact(&mut self) {
        self.raw = Bytes::copy_from_slice(&self.raw);
        if !self.body.is_empty() {
            self.body = Bytes::copy_from_slice(&self.body);
        }
        self.head.headers.shrink_to_fit();
    }

    pub(crate) fn set_body(&mut self, body: Bytes) {
        self.body = body;
    }

    /// A part of the request line (the method, the target, or all of it)
    /// as text, without validating it again: it is read on every lookup of
    /// the path, and UTF-8 validation was 3.5% of a cached request's
    /// instructions.
    fn str_at(&self, r: &Range<usize>) -> &str {
        let bytes = &self.raw[r.clone()];
        let line = &self.head.request_line;
        if self.line_ascii && r.start >= line.start && r.end <= line.end {
            // SAFETY: the range lies within the request line, which `new`
            // found to be ASCII, and ASCII is UTF-8; `raw` and `head` never
            // change after `new`.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            std::str::from_utf8(bytes).unwrap_or("")
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request-target exactly as sent.
    pub fn target(&self) -> &str {
        self.str_at(&self.head.target)
    }

    /// The path part of the target, still percent-encoded: for absolute-form
    /// the part after the authority, and `*` for asterisk-form.
    pub fn path(&self) -> &str {
        let target = self.target();
        // Origin-form, the usual case, skips the search for "://".
        let target = if target.starts_with('/') {
            target
        } else {
            match target.find("://") {
                Some(i) => {
                    let after = &target[i + 3..];
                    match after.find(['/', '?']) {
                        Some(j) if after.as_bytes()[j] == b'/' => &after[j..],
                        _ => "/",
                    }
                }
                None => target,
            }
        };
        match find_byte(b'?', target.as_bytes()) {
            Some(q) => &target[..q],
            None => target,
        }
    }

    /// The path, percent-decoded once (invalid UTF-8 replaced with U+FFFD).
    /// For routing prefer [`Request::path`]; to serve a file named by the
    /// request, [`StaticFiles::serve`](crate::StaticFiles::serve), which
    /// refuses what decodes to `..` or control characters.
    pub fn decoded_path(&self) -> std::borrow::Cow<'_, str> {
        percent_decode_str(self.path()).decode_utf8_lossy()
    }

    /// The query string, without the `?`, still percent-encoded.
    pub fn query(&self) -> Option<&str> {
        let target = self.target();
        target.find('?').map(|q| &target[q + 1..])
    }

    /// The value of the first `name=value` pair of the query whose name is
    /// `name`, decoded as [`Request::query_pairs`] decodes it. `Some("")`
    /// for `?name` or `?name=`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The query's `name=value` pairs, in order (a repeated name comes once
    /// per pair), decoded as HTML forms encode them: `+` is a space, then
    /// `%XX` escapes are decoded (an invalid one, such as `%zz`, is kept as
    /// it is), and invalid UTF-8 is replaced with U+FFFD. A pair without
    /// `=` has an empty value; empty pairs (`a=1&&b=2`) are skipped. No
    /// query, no pairs. A part that needed no decoding is borrowed from
    /// the request.
    ///
    /// ```
    /// let req = coserve::Request::parse(b"GET /s?q=caf%C3%A9+au+lait&tag=a&tag=b HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    /// let pairs: Vec<_> = req.query_pairs().collect();
    /// assert_eq!(pairs, [("q".into(), "caf\u{e9} au lait".into()), ("tag".into(), "a".into()), ("tag".into(), "b".into())]);
    /// ```
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        url_encoded_pairs(self.query().unwrap_or("").as_bytes())
    }

    /// The `name=value` pairs of an `application/x-www-form-urlencoded`
    /// body (what an HTML form posts), decoded as [`Request::query_pairs`]
    /// decodes a query. `None` when the request's `Content-Type` is absent
    /// or another type, or names a `charset` other than UTF-8 (or
    /// US-ASCII); other parameters of the type are allowed.
    ///
    /// ```
    /// use coserve::{Request, StatusCode};
    ///
    /// fn sign_up(req: &Request) -> Result<String, StatusCode> {
    ///     let form = req.form_pairs().ok_or(StatusCode::UNSUPPORTED_MEDIA_TYPE)?;
    ///     let mut name = None;
    ///     for (key, value) in form {
    ///         if key == "name" {
    ///             name = Some(value.into_owned());
    ///         }
    ///     }
    ///     Ok(format!("welcome, {}\n", name.ok_or(StatusCode::BAD_REQUEST)?))
    /// }
    /// ```
    pub fn form_pairs(&self) -> Option<impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)>> {
        is_url_encoded_form(self.header("content-type")?).then(|| url_encoded_pairs(&self.body))
    }

    /// The value of the path parameter `name` of the route that matched
    /// (`:name` or `*name` in a [`Router`](crate::Router) pattern),
    /// percent-decoded: `/users/:id` on `/users/a%20b` gives `a b`, and on
    /// `/users/a%2Fb` gives `a/b`, since an encoded slash never separates
    /// segments. A wildcard's value is the rest of the path without its
    /// leading slash. `None` when no pattern route matched or it has no
    /// such parameter. The router answers `400` rather than run a handler
    /// whose parameter would not be UTF-8 once decoded, so the value is
    /// always the text that was sent.
    ///
    /// ```
    /// use coserve::{Handler, Request, Router};
    ///
    /// let app = Router::new().get("/users/:id", |req| format!("user {}", req.param("id").unwrap()));
    /// let req = Request::parse(b"GET /users/ann%20b HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    /// let resp = app.handle(&req);
    /// assert_eq!(resp.body_ref().as_bytes(), Some(&b"user ann b"[..]));
    /// assert_eq!(req.param("id").as_deref(), Some("ann b"));
    /// ```
    pub fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        // Copy the range out, so that no guard outlives this block.
        let range = {
            let params = self.params.lock();
            let (_, range) = params.as_deref()?.iter().find(|(n, _)| **n == *name)?;
            range.clone()
        };
        let raw = self.path().get(range)?;
        Some(percent_decode_str(raw).decode_utf8_lossy())
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The request line, without CRLF.
    pub fn request_line(&self) -> &str {
        self.str_at(&self.head.request_line)
    }

    /// The first value of a header field; names compare case-insensitively.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        // Inlined, a lookup by a literal name folds the filter's bit to a
        // constant and costs a test and a branch when the field is absent.
        if !self.may_have(name) {
            return None;
        }
        self.find_header(name)
    }

    fn find_header(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// False only when no field has this name (see [`Head::names`]).
    #[inline]
    fn may_have(&self, name: &str) -> bool {
        self.head.names & name_bit(name.as_bytes()) != 0
    }

    /// All header fields as bytes, in the order received.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head
            .headers
            .iter()
            .map(|(n, v)| (&self.raw[n.clone()], &self.raw[v.clone()]))
    }

    /// The first value of a header field as a string, if it is UTF-8.
    #[inline]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All header fields in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names are tokens, ASCII by construction.
        self.fields()
            .map(|(n, v)| (std::str::from_utf8(n).unwrap_or(""), v))
    }

    /// Whether a comma-separated header (such as `Connection`) lists `token`,
    /// in any of its fields, case-insensitively.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.may_have(name)
            && self
                .fields()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                .flat_map(|(_, v)| v.split(|&b| b == b','))
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The request body, read whole before the handler ran (empty when
    /// there is none, and for a handler that streams its body: see
    /// [`Request::body_reader`]).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request body as [`Read`](std::io::Read).
    ///
    /// For a handler that streams its body
    /// ([`Handler::stream_body`](crate::Handler::stream_body)), this reads
    /// the connection as it goes: a read parks only the handler's
    /// coroutine, and an upload of any size passes through a buffer of the
    /// handler's choosing. For any other, it reads [`Request::body`].
    ///
    /// Each reader goes on where the last one stopped. One reader at a
    /// time reads a streamed body: a second one made while the first is
    /// alive fails at its first read. What the handler leaves unread is
    /// drained (up to 256 KiB, within a second) or the connection closed,
    /// never read as the next request.
    ///
    /// ```
    /// use std::io::Read;
    /// use coserve::{Handler, Method, Request, Router};
    ///
    /// // Counts the bytes of uploads up to 1 GiB, holding 16 KiB at a time.
    /// let count = |req: &Request| -> std::io::Result<String> {
    ///     let mut body = req.body_reader();
    ///     let mut buf = [0u8; 16 * 1024];
    ///     let mut total = 0;
    ///     loop {
    ///         match body.read(&mut buf)? {
    ///             0 => return Ok(format!("{total} bytes\n")),
    ///             n => total += n,
    ///         }
    ///     }
    /// };
    /// let app = Router::new().handler(Method::Post, "/count", count.stream_body(1 << 30));
    /// # let _ = app;
    /// ```
    pub fn body_reader(&self) -> BodyReader<'_> {
        BodyReader::new(self)
    }

    /// The client's address, when the request came over a socket.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// What TLS negotiated, when the request came over HTTPS: the
    /// protocol version and the SNI name. `None` for plain HTTP.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// Whether the client asked to keep the connection open: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`
    /// (RFC 9112 §9.3).
    pub fn wants_keep_alive(&self) -> bool {
        match self.version() {
            Version::Http11 => !self.header_has_token("connection", "close"),
            Version::Http10 => {
                self.header_has_token("connection", "keep-alive")
                    && !self.header_has_token("connection", "close")
            }
        }
    }
}

/// The `name=value` pairs of a query string or an
/// `application/x-www-form-urlencoded` body, decoded (see
/// [`Request::query_pairs`]).
fn url_encoded_pairs(input: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match find_byte(b'=', pair) {
            Some(eq) => (form_decode(&pair[..eq]), form_decode(&pair[eq + 1..])),
            None => (form_decode(pair), Cow::Borrowed("")),
        })
}

/// One name or value of a form: `+` is a space, then `%XX` escapes.
fn form_decode(part: &[u8]) -> Cow<'_, str> {
    if find_byte(b'+', part).is_none() {
        return percent_decode(part).decode_utf8_lossy();
    }
    let spaced: Vec<u8> = part
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Cow::Owned(percent_decode(&spaced).decode_utf8_lossy().into_owned())
}

/// Whether a `Content-Type` names a URL-encoded form in UTF-8: the type
/// in any case, a `charset` of UTF-8 or US-ASCII or none, any other
/// parameters.
fn is_url_encoded_form(content_type: &[u8]) -> bool {
    let mut parts = content_type.split(|&b| b == b';');
    let media_type = parts.next().unwrap_or_default().trim_ascii();
    media_type.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        && parts.all(|param| {
            let (name, value) = match find_byte(b'=', param) {
                Some(eq) => (&param[..eq], &param[eq + 1..]),
                None => (param, &b""[..]),
            };
            if !name.trim_ascii().eq_ignore_ascii_case(b"charset") {
                return true;
            }
            let value = value.trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            value.eq_ignore_ascii_case(b"utf-8") || value.eq_ignore_ascii_case(b"us-ascii")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &[u8]) -> Request {
        Request::parse(s).unwrap_or_else(|e| panic!("{e} for {:?}", String::from_utf8_lossy(s)))
    }

    #[test]
    fn every_field_is_found_in_any_case_and_absent_ones_are_not() {
        // Many names, so that several share a bit of the name filter.
        let names: Vec<String> = (0..300)
            .map(|i| match i % 4 {
                0 => format!("X-Field-{i}"),
                1 => format!("if-{i}-since"),
                2 => format!("{i}a"),
                _ => format!("~{i}!"),
            })
            .collect();
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for (i, n) in names.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
            raw.push_str(&format!("{n}: v{i}\r\n"));
        }
        raw.push_str("\r\n");
        let limits = Limits {
            max_headers: 400,
            ..Limits::default()
        };
        let Ok(Status::Complete(head)) = parse_head(raw.as_bytes(), &limits) else {
            panic!("did not parse");
        };
        let req = Request::new(Bytes::from(raw.clone()), head, None);
        for (i, n) in names.iter().enumerate() {
            let want = (i % 3 != 0).then(|| format!("v{i}"));
            for spelled in [n.clone(), n.to_ascii_uppercase(), n.to_ascii_lowercase()] {
                assert_eq!(
                    req.header(&spelled)
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                    want,
                    "{spelled}"
                );
                assert_eq!(
                    req.header_has_token(&spelled, &format!("V{i}")),
                    want.is_some()
                );
            }
        }
        assert_eq!(req.header("HOST"), Some(&b"h"[..]));
        assert_eq!(req.header("range"), None);
    }

    #[test]
    fn parses_a_simple_request() {
        let r = complete(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Y:  z \r\n\r\n");
        assert_eq!(r.method(), &Method::Get);
        assert_eq!(r.target(), "/a/b?x=1");
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("x=1"));
        let r2 = complete(b"GET /caf%C3%A9%20au%2Flait?x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r2.decoded_path(), "/caf\u{e9} au/lait");
        assert_eq!(r.version(), Version::Http11);
        assert_eq!(r.header("x-y"), Some(&b"z"[..]));
        assert_eq!(r.header("HOST"), Some(&b"h"[..]));
        assert_eq!(r.request_line(), "GET /a/b?x=1 HTTP/1.1");
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let r = complete(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n");
        assert_eq!(r.target(), "/");
    }

    #[test]
    fn absolute_form_path() {
        let r = complete(b"GET http://example.com/x/y?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(r.path(), "/x/y");
        let r = complete(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(r.path(), "/");
        let r = complete(b"GET http://example.com?a=/b HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(r.path(), "/");
    }

    #[test]
    fn keep_alive_rules() {
        let k = |s: &str| complete(s.as_bytes()).wants_keep_alive();
        assert!(k("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!k("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
        assert!(!k(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n"
        ));
        assert!(!k("GET / HTTP/1.0\r\n\r\n"));
        assert!(k("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    fn query(q: &str) -> Vec<(String, String)> {
        complete(format!("GET /?{q} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_pairs_decode_as_forms_do() {
        assert_eq!(query("a=1&a=2"), pairs(&[("a", "1"), ("a", "2")]));
        assert_eq!(query("a"), pairs(&[("a", "")]));
        assert_eq!(query("=x"), pairs(&[("", "x")]));
        assert_eq!(query("a=%zz"), pairs(&[("a", "%zz")]));
        assert_eq!(query("a=%4"), pairs(&[("a", "%4")]));
        assert_eq!(query("a+b=c+d"), pairs(&[("a b", "c d")]));
        assert_eq!(query("a=%2B+%20"), pairs(&[("a", "+  ")]));
        assert_eq!(query("a=b=c"), pairs(&[("a", "b=c")]));
        assert_eq!(query("a=%FF"), pairs(&[("a", "\u{fffd}")]));
        assert_eq!(query("&&a=1&&"), pairs(&[("a", "1")]));
        assert_eq!(query(""), pairs(&[]));
        assert!(
            complete(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                .query_pairs()
                .next()
                .is_none()
        );
        // A part that needs no decoding is not copied.
        let req = complete(b"GET /?plain=text&x=a%20b HTTP/1.1\r\nHost: h\r\n\r\n");
        let decoded: Vec<_> = req.query_pairs().collect();
        assert!(matches!(
            decoded[0],
            (Cow::Borrowed("plain"), Cow::Borrowed("text"))
        ));
        assert!(matches!(&decoded[1].1, Cow::Owned(v) if v == "a b"));
    }

    #[test]
    fn query_param_takes_the_first_pair_of_a_name() {
        let req = complete(b"GET /?a=1&b&a=2&c+d=%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.query_param("a").as_deref(), Some("1"));
        assert_eq!(req.query_param("b").as_deref(), Some(""));
        assert_eq!(req.query_param("c d").as_deref(), Some("\u{e9}"));
        assert_eq!(req.query_param("z"), None);
    }

    fn form(content_type: Option<&str>, body: &str) -> Option<Vec<(String, String)>> {
        let mut head = String::from("POST /f HTTP/1.1\r\nHost: h\r\n");
        if let Some(t) = content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        head.push_str("\r\n");
        let mut req = complete(head.as_bytes());
        req.set_body(Bytes::copy_from_slice(body.as_bytes()));
        let decoded = req.form_pairs()?;
        Some(
            decoded
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    #[test]
    fn form_pairs_need_the_form_type_in_utf8() {
        let body = "name=Ann+Lee&tag=%231&tag=x";
        let want = pairs(&[("name", "Ann Lee"), ("tag", "#1"), ("tag", "x")]);
        for t in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded ;charset=\"utf-8\"",
            "application/x-www-form-urlencoded; charset=us-ascii; x=y",
        ] {
            assert_eq!(form(Some(t), body).as_ref(), Some(&want), "{t}");
        }
        assert_eq!(
            form(Some("application/x-www-form-urlencoded"), ""),
            Some(vec![])
        );
        for t in [
            None,
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
            Some("application/x-www-form-urlencoded-not"),
            Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
        ] {
            assert_eq!(form(t, body), None, "{t:?}");
        }
    }

    #[test]
    fn a_param_is_none_until_a_router_sets_it() {
        let req = complete(b"GET /u/a%20b/x%2Fy HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(req.param("id"), None);
        req.set_params(Box::new([("id".into(), 3..8), ("rest".into(), 9..14)]));
        assert_eq!(req.param("id").as_deref(), Some("a b"));
        assert_eq!(req.param("rest").as_deref(), Some("x/y"));
        assert_eq!(req.param("other"), None);
        // A clone keeps them.
        assert_eq!(req.clone().param("id").as_deref(), Some("a b"));
    }
}
