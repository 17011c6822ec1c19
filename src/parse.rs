//! The request head: a push parser for the request line and header fields,
//! the limits it enforces, and the framing rules (RFC 9112) that decide how
//! long the body is.
//!
//! The parser is modelled on `httparse`: [`parse_head`] takes the bytes read
//! so far and answers [`Status::Partial`] when the head is not complete yet,
//! [`Status::Complete`] with the parsed offsets when it is, or a
//! [`ParseError`] that maps to exactly one status code
//! ([`ParseError::status`]). It never allocates for a partial head.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::LazyLock;

use bytes::Bytes;
use regex::bytes::Regex;

/// The request line, as RFC 9112 §3 spells it, but strict:
///
/// ```text
/// request-line = method SP request-target SP HTTP-version
/// method       = token
/// ```
///
/// The target is origin-form (`/path?query`), absolute-form
/// (`http://host/path`) or asterisk-form (`*`), visible ASCII only. The version
/// is captured as two digits so that `HTTP/2.0` can be told apart (505) from
/// garbage (400).
static REQUEST_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?-u)^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (/[\x21-\x7e]*|[hH][tT][tT][pP][sS]?://[\x21-\x7e]+|\*) HTTP/([0-9])\.([0-9])$",
    )
    .expect("request-line regex compiles")
});

/// The end of a request head.
static HEAD_END: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Builds the parser's lazily built parts now, on the caller's stack.
///
/// Compiling the request-line regex takes about 24 KiB of stack, more than
/// serving a request does. Left to the first request, it would run on that
/// connection's coroutine, inside the `LazyLock`'s one-time lock: a
/// coroutine whose stack is too small for it overflows there, may abandons
/// it with the lock held, and every later request on that worker thread
/// waits for the lock forever. Servers call this before they accept.
pub(crate) fn warm_up() {
    LazyLock::force(&REQUEST_LINE);
    LazyLock::force(&HEAD_END);
}

/// Size and count limits for the request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, without its CRLF (414 beyond).
    pub max_request_line: usize,
    /// Largest header section, without the request line (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Largest request body that is read (413 beyond).
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
        }
    }
}

/// The result of feeding bytes to the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    /// The head is complete.
    Complete(T),
    /// More bytes are needed.
    Partial,
}

/// Why a request was refused. Each variant maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The request line does not match the grammar.
    RequestLine,
    /// The version is well formed but not HTTP/1.0 or HTTP/1.1.
    Version,
    /// The request line is longer than [`Limits::max_request_line`].
    RequestLineTooLong,
    /// The header section is larger than [`Limits::max_header_bytes`].
    HeadersTooLarge,
    /// More header fields than [`Limits::max_headers`].
    TooManyHeaders,
    /// A header line is malformed: no colon, whitespace before the colon, a
    /// bad field name, obs-fold, or a control character in the value.
    Header,
    /// A line ends in a bare LF, or a bare CR appears in the head.
    LineEnding,
    /// HTTP/1.1 without `Host`, or more than one `Host`.
    Host,
    /// `Content-Length` is not `1*DIGIT`, overflows, or appears twice.
    ContentLength,
    /// `Transfer-Encoding` together with `Content-Length`, repeated, in an
    /// HTTP/1.0 request, or with a final coding other than chunked.
    TransferEncoding,
    /// A transfer coding other than chunked that we do not implement.
    UnsupportedTransferCoding,
    /// The chunked body is malformed (size, extension or line ending).
    Chunk,
    /// The body is larger than [`Limits::max_body`].
    BodyTooLarge,
    /// `Expect` has a value other than `100-continue`.
    Expectation,
}

impl ParseError {
    /// The status code this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::RequestLine
            | ParseError::Header
            | ParseError::LineEnding
            | ParseError::Host
            | ParseError::ContentLength
            | ParseError::TransferEncoding
            | ParseError::Chunk => 400,
            ParseError::Version => 505,
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadersTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedTransferCoding => 501,
            ParseError::BodyTooLarge => 413,
            ParseError::Expectation => 417,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::RequestLine => "malformed request line",
            ParseError::Version => "unsupported HTTP version",
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadersTooLarge => "header section too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::Header => "malformed header field",
            ParseError::LineEnding => "bare CR or LF in request head",
            ParseError::Host => "missing or repeated Host",
            ParseError::ContentLength => "invalid or repeated Content-Length",
            ParseError::TransferEncoding => "invalid Transfer-Encoding",
            ParseError::UnsupportedTransferCoding => "unsupported transfer coding",
            ParseError::Chunk => "malformed chunked body",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::Expectation => "unsupported expectation",
        })
    }
}

impl std::error::Error for ParseError {}

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
    fn from_token(token: &[u8]) -> Method {
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
            // The regex only admits token characters, which are ASCII.
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

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed head: offsets into the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes the head occupies, including leading empty lines and the final
    /// empty line.
    pub len: usize,
    method: Range<usize>,
    target: Range<usize>,
    request_line: Range<usize>,
    version: Version,
    headers: Fields,
    /// One bit per field name present, from [`name_bit`]: a lookup for a
    /// name whose bit is clear answers "absent" without a scan. Most
    /// lookups are for fields a request does not have (the four
    /// preconditions, `Range`, `Expect`).
    names: u64,
}

/// A field name's bit in [`Head::names`], from its length and its first and
/// last bytes, case-insensitively. Names that share a bit are told apart by
/// the scan.
#[inline]
fn name_bit(name: &[u8]) -> u64 {
    let (Some(first), Some(last)) = (name.first(), name.last()) else {
        return 1;
    };
    let h = name.len() as u32 * 7 + u32::from(first | 0x20) * 3 + u32::from(last | 0x20);
    1 << (h % 64)
}

/// The bytes of a `token` (RFC 9110 §5.6.2), as a table: this check runs
/// over every byte of every field name.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// field-value bytes: HTAB, SP, VCHAR and obs-text; everything but the
/// other control characters and DEL.
static FIELD_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b == 0x09 || (b >= 0x20 && b != 0x7f);
        b += 1;
    }
    t
};

/// The first `needle` in `hay`. memchr's vector search pays a dispatch
/// and setup of about 40 instructions per call, more than a plain loop over
/// the few bytes of a method, a field name or a short path takes; longer
/// inputs go to memchr.
#[inline]
fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() <= 32 {
        hay.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, hay)
    }
}

fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

fn is_field_value(b: u8) -> bool {
    FIELD_VALUE[usize::from(b)]
}

/// Checks that every LF in `buf[from..]` is preceded by CR and every CR is
/// followed by LF (or is the last byte, whose LF may still come).
fn check_line_endings(buf: &[u8], from: usize) -> Result<(), ParseError> {
    for i in memchr::memchr2_iter(b'\r', b'\n', &buf[from..]) {
        let i = from + i;
        match buf[i] {
            b'\n' if i == 0 || buf[i - 1] != b'\r' => return Err(ParseError::LineEnding),
            b'\r' if i + 1 < buf.len() && buf[i + 1] != b'\n' => {
                return Err(ParseError::LineEnding);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a request head from the start of `buf`.
///
/// Leading empty lines (CRLF) are skipped, as RFC 9112 §2.2 asks. Every line
/// must end in CRLF: a bare LF or CR is refused rather than guessed at,
/// because guessing is how request smuggling starts.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Status<Head>, ParseError> {
    parse_head_into(buf, limits, &mut Fields::new())
}

/// [`parse_head`], keeping the fields of a complete head in `spare`'s
/// allocation (the head takes it, and leaves `spare` empty): a connection
/// hands back the vector of its last request, and parsing allocates
/// nothing.
pub(crate) fn parse_head_into(
    buf: &[u8],
    limits: &Limits,
    spare: &mut Fields,
) -> Result<Status<Head>, ParseError> {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
        if start > limits.max_request_line {
            return Err(ParseError::RequestLine);
        }
    }
    let rest = &buf[start..];
    if rest.is_empty() || rest == b"\r" {
        return Ok(Status::Partial);
    }

    // The request line.
    let Some(lf) = memchr::memchr(b'\n', rest) else {
        if rest.len() > limits.max_request_line + 1 {
            return Err(ParseError::RequestLineTooLong);
        }
        if let Some(cr) = memchr::memchr(b'\r', rest)
            && cr + 1 < rest.len()
        {
            return Err(ParseError::LineEnding);
        }
        return Ok(Status::Partial);
    };
    if lf == 0 || rest[lf - 1] != b'\r' {
        return Err(ParseError::LineEnding);
    }
    let line = &rest[..lf - 1];
    if line.len() > limits.max_request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    // The regex decides whether the line is well formed. A match-only
    // search is several times cheaper than one that tracks capture groups,
    // and a line it accepts has exactly two spaces, around the target (no
    // group can contain one), so the groups are found by splitting there.
    if !REQUEST_LINE.is_match(line) {
        return Err(ParseError::RequestLine);
    }
    let sp1 = find_byte(b' ', line).expect("the regex requires a space");
    // The regex ends the line with " HTTP/d.d".
    let sp2 = line.len() - " HTTP/1.1".len();
    debug_assert!(line[sp2] == b' ' && !line[sp1 + 1..sp2].contains(&b' '));
    let (method, target) = (0..sp1, sp1 + 1..sp2);
    // "HTTP/" then major '.' minor, one digit each.
    let (major, minor) = (sp2 + 6..sp2 + 7, sp2 + 8..sp2 + 9);
    // RFC 9110 §2.5: a higher minor version of a major version we speak
    // is processed as the highest minor we implement (HTTP/1.2 as 1.1, as
    // nginx and `python3 -m http.server` do); another major is a 505.
    let version = match (&line[major], &line[minor]) {
        (b"1", b"0") => Version::Http10,
        (b"1", _) => Version::Http11,
        _ => return Err(ParseError::Version),
    };
    let method = start + method.start..start + method.end;
    let target = start + target.start..start + target.end;
    let request_line = start..start + line.len();

    // The header section: everything up to and including CRLF CRLF.
    let fields_start = start + lf + 1;
    let section = &buf[fields_start..];
    let end = if section.starts_with(b"\r\n") {
        fields_start + 2
    } else {
        match HEAD_END.find(section) {
            Some(i) => fields_start + i + 4,
            None => {
                check_line_endings(buf, fields_start)?;
                if section.len() > limits.max_header_bytes {
                    return Err(ParseError::HeadersTooLarge);
                }
                return Ok(Status::Partial);
            }
        }
    };
    if end - fields_start > limits.max_header_bytes + 2 {
        return Err(ParseError::HeadersTooLarge);
    }
    // The fields are checked line by line; a line-ending error anywhere in
    // the section still takes precedence over the others, as when the whole
    // section was checked first (a separate pass that cost 4% of a cached
    // request's instructions; now it runs only for a head that fails).
    let (headers, names) = match parse_fields(buf, fields_start, end, limits, spare) {
        Ok(fields) => fields,
        Err(e) => {
            check_line_endings(&buf[..end], fields_start)?;
            return Err(e);
        }
    };

    Ok(Status::Complete(Head {
        len: end,
        method,
        target,
        request_line,
        version,
        headers,
        names,
    }))
}

/// Each field's name and value, as ranges of the buffer.
pub(crate) type Fields = Vec<(Range<usize>, Range<usize>)>;

/// The header fields of a complete head: `buf[fields_start..end]`, which
/// ends in CRLF CRLF. Returns each field's name and value ranges and the
/// name filter ([`Head::names`]).
fn parse_fields(
    buf: &[u8],
    fields_start: usize,
    end: usize,
    limits: &Limits,
    spare: &mut Fields,
) -> Result<(Fields, u64), ParseError> {
    let mut headers = std::mem::take(spare);
    headers.clear();
    let mut names = 0;
    let mut pos = fields_start;
    while pos < end - 2 {
        let cr = memchr::memchr(b'\r', &buf[pos..end]).ok_or(ParseError::LineEnding)?;
        let line_end = pos + cr;
        if buf.get(line_end + 1) != Some(&b'\n') {
            return Err(ParseError::LineEnding);
        }
        // No LF can hide in the line itself: names are tokens, values are
        // field-value bytes, and neither admits CR or LF.
        let line = &buf[pos..line_end];
        if headers.len() == limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        // obs-fold (a line starting with whitespace) is refused: RFC 9112 §5.2.
        let colon = find_byte(b':', line).ok_or(ParseError::Header)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().copied().all(is_token) {
            return Err(ParseError::Header);
        }
        let mut v_start = colon + 1;
        let mut v_end = line.len();
        while v_start < v_end && matches!(line[v_start], b' ' | b'\t') {
            v_start += 1;
        }
        while v_end > v_start && matches!(line[v_end - 1], b' ' | b'\t') {
            v_end -= 1;
        }
        if !line[v_start..v_end].iter().copied().all(is_field_value) {
            return Err(ParseError::Header);
        }
        names |= name_bit(name);
        headers.push((pos..pos + colon, pos + v_start..pos + v_end));
        pos = line_end + 2;
    }
    Ok((headers, names))
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
        }
    }

    /// Parses a complete request head from `bytes`; for tests and tools.
    pub fn parse(bytes: &[u8]) -> Result<Request, ParseError> {
        match parse_head(bytes, &Limits::default())? {
            Status::Complete(head) => Ok(Request::new(Bytes::copy_from_slice(bytes), head, None)),
            Status::Partial => Err(ParseError::RequestLine),
        }
    }

    /// The vector that held the fields, for the next [`parse_head_into`]
    /// (which empties it).
    pub(crate) fn into_fields(self) -> Fields {
        self.head.headers
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
    /// For routing and for opening files prefer [`Request::path`] and
    /// [`crate::files::resolve_path`], which refuse what decodes to `..` or
    /// control characters.
    pub fn decoded_path(&self) -> std::borrow::Cow<'_, str> {
        percent_encoding::percent_decode_str(self.path()).decode_utf8_lossy()
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        let target = self.target();
        target.find('?').map(|q| &target[q + 1..])
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
    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
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

    /// The request body (empty when there is none).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The client's address, when the request came over a socket.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
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

    /// Checks `Host` and decides how the body is framed (RFC 9112 §6.3).
    pub fn framing(&self) -> Result<Framing, ParseError> {
        let mut hosts = 0;
        let mut lengths = 0;
        let mut length = None;
        let mut encodings = 0;
        let mut chunked = false;
        for (name, value) in self.fields() {
            if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                lengths += 1;
                length = Some(parse_content_length(value)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                encodings += 1;
                let last = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                if !last.eq_ignore_ascii_case(b"chunked") {
                    return Err(ParseError::TransferEncoding);
                }
                if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(ParseError::UnsupportedTransferCoding);
                }
                chunked = true;
            }
        }
        if hosts > 1 || (hosts == 0 && self.version() == Version::Http11) {
            return Err(ParseError::Host);
        }
        if lengths > 1 {
            return Err(ParseError::ContentLength);
        }
        if encodings > 0 {
            // RFC 9112 §6.1: Transfer-Encoding with Content-Length, or in an
            // HTTP/1.0 request, is a smuggling attempt until proven otherwise.
            if encodings > 1 || lengths > 0 || self.version() == Version::Http10 {
                return Err(ParseError::TransferEncoding);
            }
            return Ok(if chunked {
                Framing::Chunked
            } else {
                Framing::None
            });
        }
        Ok(match length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        })
    }
}

/// `Content-Length = 1*DIGIT`: no sign, no hex, no spaces, no list, no
/// overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::ContentLength);
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(ParseError::ContentLength)
    })
}

/// The state of a chunked-body decoder that works on a buffer, so that the
/// connection can feed it whatever it has read.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    /// Bytes of chunk data still to come in the current chunk.
    remaining: u64,
    /// Expecting the CRLF after chunk data.
    data_crlf: bool,
    /// In the trailer section, after the last chunk.
    trailers: bool,
    done: bool,
}

impl ChunkedDecoder {
    /// Decodes from `buf`, appending data to `out`. Returns how many bytes of
    /// `buf` were consumed. `self.is_done()` says when the body has ended.
    pub(crate) fn decode(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        max: u64,
    ) -> Result<usize, ParseError> {
        let mut pos = 0;
        while !self.done && pos < buf.len() {
            let rest = &buf[pos..];
            if self.remaining > 0 {
                let n = rest
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if (out.len() + n) as u64 > max {
                    return Err(ParseError::BodyTooLarge);
                }
                out.extend_from_slice(&rest[..n]);
                self.remaining -= n as u64;
                pos += n;
                if self.remaining == 0 {
                    self.data_crlf = true;
                }
                continue;
            }
            // Every other state consumes one CRLF-terminated line.
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                if rest.len() > 4096 {
                    return Err(ParseError::Chunk);
                }
                break;
            };
            if lf == 0 || rest[lf - 1] != b'\r' {
                return Err(ParseError::Chunk);
            }
            let line = &rest[..lf - 1];
            pos += lf + 1;
            if self.data_crlf {
                if !line.is_empty() {
                    return Err(ParseError::Chunk);
                }
                self.data_crlf = false;
            } else if self.trailers {
                if line.is_empty() {
                    self.done = true;
                } else if line.contains(&b'\r') || !line.contains(&b':') {
                    return Err(ParseError::Chunk);
                }
            } else {
                let size = parse_chunk_size(line)?;
                if size == 0 {
                    self.trailers = true;
                } else {
                    if out.len() as u64 + size > max {
                        return Err(ParseError::BodyTooLarge);
                    }
                    self.remaining = size;
                }
            }
        }
        Ok(pos)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}

/// `chunk-size [ chunk-ext ]` where `chunk-ext = *( BWS ";" BWS token [ BWS "="
/// BWS ( token / quoted-string ) ] )` (RFC 9112 §7.1.1).
fn parse_chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ParseError::Chunk);
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).expect("hex digit") as u64;
        n.checked_mul(16)
            .and_then(|n| n.checked_add(v))
            .ok_or(ParseError::Chunk)
    })?;
    let mut ext = &line[digits..];
    loop {
        ext = ext.trim_ascii_start();
        if ext.is_empty() {
            return Ok(size);
        }
        let Some(rest) = ext.strip_prefix(b";") else {
            return Err(ParseError::Chunk);
        };
        let rest = rest.trim_ascii_start();
        let name_len = rest.iter().take_while(|&&b| is_token(b)).count();
        if name_len == 0 {
            return Err(ParseError::Chunk);
        }
        let rest = rest[name_len..].trim_ascii_start();
        ext = match rest.strip_prefix(b"=") {
            None => rest,
            Some(v) => {
                let v = v.trim_ascii_start();
                if let Some(q) = v.strip_prefix(b"\"") {
                    let mut i = 0;
                    loop {
                        match q.get(i) {
                            None => return Err(ParseError::Chunk),
                            Some(b'"') => break,
                            Some(b'\\') => i += 2,
                            Some(&b) if b == b'\t' || b >= 0x20 && b != 0x7f => i += 1,
                            Some(_) => return Err(ParseError::Chunk),
                        }
                    }
                    &q[i + 1..]
                } else {
                    let n = v.iter().take_while(|&&b| is_token(b)).count();
                    if n == 0 {
                        return Err(ParseError::Chunk);
                    }
                    &v[n..]
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Status<Head>, ParseError> {
        parse_head(s, &Limits::default())
    }

    fn complete(s: &[u8]) -> Request {
        match parse(s) {
            Ok(Status::Complete(h)) => Request::new(Bytes::copy_from_slice(s), h, None),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(s)),
        }
    }

    #[test]
    fn byte_tables_match_the_grammar() {
        for b in 0..=255u8 {
            let token = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token(b), token, "token byte {b:#x}");
            let value = b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
            assert_eq!(is_field_value(b), value, "field-value byte {b:#x}");
        }
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
    fn partial_input_is_partial_at_every_split() {
        let full = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
        for i in 0..full.len() {
            assert_eq!(
                parse(&full[..i]),
                Ok(Status::Partial),
                "prefix of {i} bytes"
            );
        }
        assert!(matches!(parse(full), Ok(Status::Complete(h)) if h.len == full.len()));
    }

    #[test]
    fn pipelined_buffer_yields_one_head_at_a_time() {
        let two = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
        let Ok(Status::Complete(h)) = parse(two) else {
            panic!()
        };
        assert_eq!(&two[h.target.clone()], b"/1");
        let Ok(Status::Complete(h2)) = parse(&two[h.len..]) else {
            panic!()
        };
        assert_eq!(&two[h.len..][h2.target.clone()], b"/2");
        assert_eq!(h.len + h2.len, two.len());
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
    fn errors_map_to_one_status_each() {
        let table: &[(&[u8], ParseError)] = &[
            (b"GET  / HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (b"GET / HTTP/1.1 \r\n\r\n", ParseError::RequestLine),
            (b"GET /  HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (b"GET\t/ HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (b"G(T / HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (b"GET foo HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (
                b"GET / HTTP/1.1\r\n\r\n"[..0].as_ref(),
                ParseError::RequestLine,
            ),
            (b"GET /\x00 HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (b"GET /\x7f HTTP/1.1\r\n\r\n", ParseError::RequestLine),
            (b"GET / http/1.1\r\n\r\n", ParseError::RequestLine),
            (b"GET / HTTP/2.0\r\n\r\n", ParseError::Version),
            (b"GET / HTTP/0.9\r\n\r\n", ParseError::Version),
            (b"GET / HTTP/1.1\n\r\n", ParseError::LineEnding),
            (b"GET / HTTP/1.1\r\nHost: h\n\r\n", ParseError::LineEnding),
            (
                b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
                ParseError::LineEnding,
            ),
            (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", ParseError::Header),
            (b"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", ParseError::Header),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
                ParseError::Header,
            ),
            (b"GET / HTTP/1.1\r\n\tHost: h\r\n\r\n", ParseError::Header),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", ParseError::Header),
            (b"GET / HTTP/1.1\r\n: empty\r\n\r\n", ParseError::Header),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", ParseError::Header),
            (b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", ParseError::Header),
            (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", ParseError::Header),
        ];
        for (input, want) in table {
            if input.is_empty() {
                continue;
            }
            assert_eq!(
                parse(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(ParseError::RequestLine.status(), 400);
        assert_eq!(ParseError::Version.status(), 505);
        assert_eq!(ParseError::RequestLineTooLong.status(), 414);
        assert_eq!(ParseError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn bare_lf_is_refused_before_the_head_completes() {
        // Without the early check this would wait for a CRLF CRLF that never comes.
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: h\n\n"),
            Err(ParseError::LineEnding)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\n"), Err(ParseError::LineEnding));
    }

    #[test]
    fn limits() {
        let limits = Limits::default();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(limits.max_request_line));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::RequestLineTooLong));
        // Without the line ending yet: still refused once past the limit.
        assert_eq!(
            parse(&long.as_bytes()[..limits.max_request_line + 10]),
            Err(ParseError::RequestLineTooLong)
        );
        let ok = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(limits.max_request_line - 16)
        );
        assert!(matches!(parse(ok.as_bytes()), Ok(Status::Complete(_))));

        let big = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "v".repeat(limits.max_header_bytes)
        );
        assert_eq!(parse(big.as_bytes()), Err(ParseError::HeadersTooLarge));
        let big_partial = format!(
            "GET / HTTP/1.1\r\nX: {}",
            "v".repeat(limits.max_header_bytes)
        );
        assert_eq!(
            parse(big_partial.as_bytes()),
            Err(ParseError::HeadersTooLarge)
        );

        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=limits.max_headers {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse(many.as_bytes()), Err(ParseError::TooManyHeaders));
        let mut hundred = String::from("GET / HTTP/1.1\r\n");
        for i in 0..limits.max_headers {
            hundred.push_str(&format!("X-{i}: v\r\n"));
        }
        hundred.push_str("\r\n");
        assert!(matches!(parse(hundred.as_bytes()), Ok(Status::Complete(_))));
    }

    #[test]
    fn framing_rules() {
        let f = |s: &str| complete(s.as_bytes()).framing();
        assert_eq!(f("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(Framing::None));
        assert_eq!(f("GET / HTTP/1.0\r\n\r\n"), Ok(Framing::None));
        assert_eq!(f("GET / HTTP/1.1\r\n\r\n"), Err(ParseError::Host));
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(ParseError::Host)
        );
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        for bad in [
            "-5",
            "+5",
            "0x5",
            "5 5",
            "5,5",
            "",
            "99999999999999999999",
            "18446744073709551616",
        ] {
            let req = format!("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(f(&req), Err(ParseError::ContentLength), "{bad:?}");
        }
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Err(ParseError::ContentLength)
        );
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f(
                "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            Err(ParseError::TransferEncoding)
        );
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(ParseError::TransferEncoding)
        );
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(ParseError::UnsupportedTransferCoding)
        );
        assert_eq!(
            f("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ParseError::TransferEncoding)
        );
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

    fn dechunk(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ParseError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out, 1 << 20)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1;q=\"a b\"\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (out, n, done) = dechunk(body).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&body[n..], b"NEXT");
        // Split at every point: the same result when fed in two pieces.
        for split in 0..body.len() - 4 {
            let mut d = ChunkedDecoder::default();
            let mut out = Vec::new();
            let mut buf = body[..split].to_vec();
            let used = d.decode(&buf, &mut out, 1 << 20).unwrap();
            buf.drain(..used);
            buf.extend_from_slice(&body[split..]);
            let used2 = d.decode(&buf, &mut out, 1 << 20).unwrap();
            assert_eq!(out, b"hello world", "split {split}");
            assert!(d.is_done());
            assert_eq!(&buf[used2..], b"NEXT");
        }
        for bad in [
            &b"fffffffffffffffff\r\n"[..],
            b"1ffffffffffffffff\r\n",
            b"5;\r\nhello\r\n",
            b"5;=x\r\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\n",
            b"5;a=\"unterminated\r\n",
        ] {
            assert!(dechunk(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.decode(b"10\r\n", &mut Vec::new(), 8),
            Err(ParseError::BodyTooLarge)
        );
    }
}
