//! The request head: a push parser for the request line and header fields,
//! the limits it enforces, and the token grammar the whole crate shares.
//!
//! The parser is modelled on `httparse`: [`parse_head`] takes the bytes read
//! so far and answers [`Status::Partial`] when the head is not complete yet,
//! [`Status::Complete`] with the parsed offsets when it is, or a
//! [`ParseError`] that maps to exactly one status code
//! ([`ParseError::status`]). It never allocates for a partial head.

use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::status::StatusCode;

/// The punctuation a `token` may hold besides ASCII letters and digits
/// (`tchar`, RFC 9110 §5.6.2): methods, field names, transfer codings and
/// chunk extensions. The parser's byte table, the request-line regex and
/// the check on response field names are all made from this one list.
const TCHAR_PUNCTUATION: &[u8] = b"!#$%&'*+-.^_`|~";

/// The bytes of a `token`, as a table: this check runs over every byte of
/// every field name.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < TCHAR_PUNCTUATION.len() {
        t[TCHAR_PUNCTUATION[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether `b` may appear in a token.
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Whether `s` is a token: not empty, token bytes only.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().copied().all(is_token)
}

/// The bytes a `Host` may hold in a host name (RFC 3986 §3.2.2 `reg-name`:
/// unreserved and sub-delims; `%` is checked for its two hex digits apart),
/// as a table: this check runs on every request. The comma, a sub-delim,
/// is left out: a `Host` with a comma is what a recipient makes of two
/// `Host` fields when it joins them into a list (RFC 9110 §5.3), and two
/// are refused (§7.2). No DNS name holds one.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    let sub_delims = b"!$&'()*+;=";
    let mut i = 0;
    while i < sub_delims.len() {
        t[sub_delims[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether a non-empty `Host` value is `uri-host [ ":" port ]` (RFC 9110
/// §7.2, RFC 3986 §3.2.2 and §3.2.3) with a host that is not empty: a
/// name or IPv4 address, or an IPv6 address in brackets, then an optional
/// colon and digits. Userinfo (`a@b`), a path, query or fragment (`a/b`,
/// `a?b`, `a#b`), a backslash, whitespace, a list (`a, b`) and IPvFuture
/// literals (which no client sends) are refused: RFC 9112 §3.2 has a server
/// answer a `Host` with an invalid value with `400`, and a value that a
/// proxy or a handler could read as another authority is how requests get
/// routed to a host they did not name.
pub(crate) fn is_host_and_port(value: &[u8]) -> bool {
    let host_end = if value.first() == Some(&b'[') {
        match find_byte(b']', value) {
            Some(close) if is_ipv6(&value[1..close]) => close + 1,
            _ => return false,
        }
    } else {
        let end = reg_name_len(value);
        if end == 0 {
            return false;
        }
        end
    };
    match &value[host_end..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// How many bytes at the start of `s` are a `reg-name` (see [`REG_NAME`]),
/// each `%` followed by two hex digits. One pass, no search for the colon
/// first: this runs on every request.
fn reg_name_len(s: &[u8]) -> usize {
    let mut i = 0;
    loop {
        i += s[i..]
            .iter()
            .position(|&b| !REG_NAME[usize::from(b)])
            .unwrap_or(s.len() - i);
        match s.get(i..i + 3) {
            Some([b'%', h1, h2]) if h1.is_ascii_hexdigit() && h2.is_ascii_hexdigit() => i += 3,
            _ => return i,
        }
    }
}

/// Whether `literal` (between the brackets) is an `IPv6address`: the text
/// forms of RFC 4291 §2.2, an IPv4 tail included, which std's parser reads.
/// Rare enough in a `Host` that its cost does not matter; a zone ID
/// (RFC 6874) is refused.
fn is_ipv6(literal: &[u8]) -> bool {
    std::str::from_utf8(literal).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

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
    let tchar: String = TCHAR_PUNCTUATION
        .iter()
        .map(|b| format!("\\x{b:02x}"))
        .collect();
    Regex::new(&format!(
        r"(?-u)^([{tchar}0-9A-Za-z]+) (/[\x21-\x7e]*|[hH][tT][tT][pP][sS]?://[\x21-\x7e]+|\*) HTTP/([0-9])\.([0-9])$"
    ))
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

/// Size and count limits for a request; set through
/// [`Config`](crate::Config).
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

/// Why a request head was refused. Each variant maps to one status code
/// ([`ParseError::status`]); a failure while reading the body is a
/// [`BodyError`](crate::body::BodyError) instead.
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
    /// HTTP/1.1 without `Host`, more than one `Host`, or a `Host` that is
    /// not `host [ ":" port ]` (userinfo, a path, a list...). An empty
    /// `Host` is refused in HTTP/1.1 unless the target is in absolute form.
    Host,
    /// `Content-Length` is not `1*DIGIT`, overflows, or appears twice.
    ContentLength,
    /// `Transfer-Encoding` together with `Content-Length`, repeated, in an
    /// HTTP/1.0 request, or with a final coding other than chunked.
    TransferEncoding,
    /// A transfer coding other than chunked that we do not implement.
    UnsupportedTransferCoding,
    /// `Expect` has a value other than `100-continue`.
    Expectation,
}

impl ParseError {
    /// The status code this error is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ParseError::RequestLine
            | ParseError::Header
            | ParseError::LineEnding
            | ParseError::Host
            | ParseError::ContentLength
            | ParseError::TransferEncoding => StatusCode::BAD_REQUEST,
            ParseError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            ParseError::RequestLineTooLong => StatusCode::URI_TOO_LONG,
            ParseError::HeadersTooLarge | ParseError::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ParseError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ParseError::Expectation => StatusCode::EXPECTATION_FAILED,
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
            ParseError::Host => "missing, repeated or invalid Host",
            ParseError::ContentLength => "invalid or repeated Content-Length",
            ParseError::TransferEncoding => "invalid Transfer-Encoding",
            ParseError::UnsupportedTransferCoding => "unsupported transfer coding",
            ParseError::Expectation => "unsupported expectation",
        })
    }
}

impl std::error::Error for ParseError {}

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

/// A parsed head: offsets into the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes the head occupies, including leading empty lines and the final
    /// empty line.
    pub len: usize,
    pub(crate) method: Range<usize>,
    pub(crate) target: Range<usize>,
    pub(crate) request_line: Range<usize>,
    pub(crate) version: Version,
    pub(crate) headers: Fields,
    /// One bit per field name present, from [`name_bit`]: a lookup for a
    /// name whose bit is clear answers "absent" without a scan. Most
    /// lookups are for fields a request does not have (the four
    /// preconditions, `Range`, `Expect`).
    pub(crate) names: u64,
}

/// A field name's bit in [`Head::names`], from its length and its first and
/// last bytes, case-insensitively. Names that share a bit are told apart by
/// the scan.
#[inline]
pub(crate) fn name_bit(name: &[u8]) -> u64 {
    let (Some(first), Some(last)) = (name.first(), name.last()) else {
        return 1;
    };
    let h = name.len() as u32 * 7 + u32::from(first | 0x20) * 3 + u32::from(last | 0x20);
    1 << (h % 64)
}

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
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() <= 32 {
        hay.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, hay)
    }
}

/// Whether `b` may appear in a field value.
pub(crate) fn is_field_value(b: u8) -> bool {
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
        if !is_token_str(name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Status<Head>, ParseError> {
        parse_head(s, &Limits::default())
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
    fn host_is_a_host_and_an_optional_port() {
        for good in [
            &b"h"[..],
            b"h:8080",
            b"h:",
            b"Example.COM.",
            b"xn--caf-dma.example",
            b"a_b",
            b"%41",
            b"!$&'()*+;=-._~",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:443",
            b"[2001:db8::ffff:1.2.3.4]",
            b"[FE80::1]",
        ] {
            assert!(
                is_host_and_port(good),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"a@b"[..],
            b"u:p@h",
            b"a/b",
            b"a?b",
            b"a#b",
            b"a\\b",
            b"a, b",
            b"a,b",
            b"a b",
            b"a\tb",
            b":80",
            b"h:8o",
            b"h:80:80",
            b"%4",
            b"%zz",
            b"\"h\"",
            b"[::1",
            b"[::1]x",
            b"[::1]:x",
            b"[]",
            b"[h]",
            b"[v1.a]",
            b"[fe80::1%25eth0]",
            b"::1",
            b"caf\xc3\xa9",
            b"h\x00",
        ] {
            assert!(!is_host_and_port(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for b in 0..=255u8 {
            let reg_name = b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b);
            assert_eq!(REG_NAME[usize::from(b)], reg_name, "reg-name byte {b:#x}");
        }
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
        assert_eq!(ParseError::Expectation.status(), 417);
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
}
