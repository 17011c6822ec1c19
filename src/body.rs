//! Request bodies: how one is framed (RFC 9112 §6), the chunked decoder
//! (§7.1), and reading a whole body within its limit and its deadline.
//!
//! A body that cannot be read is a [`BodyError`], each of which maps to one
//! status, as a head that cannot be parsed is a
//! [`ParseError`].

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::clock;
use crate::parse::{ParseError, Version, is_host_and_port, is_token};
use crate::request::Request;
use crate::status::StatusCode;

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

/// Why a request body could not be read. Each variant maps to one status
/// code ([`BodyError::status`]), and the connection closes after it: the
/// rest of the body, if any, cannot be told from the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The body is larger than the server's limit (`Config::max_body`),
    /// by its `Content-Length` or as it is decoded.
    TooLarge,
    /// The chunked coding is malformed (size, extension, line ending or
    /// trailer).
    Chunk,
    /// The whole body did not arrive within `Config::body_timeout` of the
    /// end of the head.
    Timeout,
    /// The client closed, or the connection failed, before the body ended.
    Incomplete,
}

impl BodyError {
    /// The status code this error is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::CONTENT_TOO_LARGE,
            BodyError::Chunk | BodyError::Incomplete => StatusCode::BAD_REQUEST,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "request body too large",
            BodyError::Chunk => "malformed chunked body",
            BodyError::Timeout => "request body not received in time",
            BodyError::Incomplete => "request body cut short",
        })
    }
}

impl std::error::Error for BodyError {}

/// What a read of body bytes came to: how many, or why the body cannot be
/// read: the stream ended before it, a wait ran past its time, or the
/// connection failed.
pub(crate) fn body_read(result: std::io::Result<usize>) -> Result<usize, BodyError> {
    match result {
        Ok(0) => Err(BodyError::Incomplete),
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Err(BodyError::Timeout)
        }
        Err(_) => Err(BodyError::Incomplete),
    }
}

/// Checks `Host` and decides how the body of `req` is framed (RFC 9112
/// §6.3), refusing what could be read two ways.
pub fn framing(req: &Request) -> Result<Framing, ParseError> {
    let mut hosts = 0;
    let mut empty_host = false;
    let mut lengths = 0;
    let mut length = None;
    let mut encodings = 0;
    let mut chunked = false;
    for (name, value) in req.fields() {
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            empty_host = value.is_empty();
            if !empty_host && !is_host_and_port(value) {
                return Err(ParseError::Host);
            }
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
    // RFC 9112 §3.2 / RFC 9110 §7.2: HTTP/1.1 needs exactly one Host. An
    // empty one says the target URI has no authority, which is only so
    // for an absolute-form target (that carries its own, §3.2.2): in
    // origin and asterisk form the Host is the authority, and an http URI
    // with an empty host is invalid (RFC 9110 §4.2.1). HTTP/1.0 need not
    // send Host, so an empty one is as good as none.
    if hosts > 1
        || (req.version() == Version::Http11
            && (hosts == 0 || (empty_host && !is_absolute_form(req.target()))))
    {
        return Err(ParseError::Host);
    }
    if lengths > 1 {
        return Err(ParseError::ContentLength);
    }
    if encodings > 0 {
        // RFC 9112 §6.1: Transfer-Encoding with Content-Length, or in an
        // HTTP/1.0 request, is a smuggling attempt until proven otherwise.
        if encodings > 1 || lengths > 0 || req.version() == Version::Http10 {
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

/// Whether a target the parser accepted is in absolute form: not origin
/// form (`/...`) or asterisk form (`*`).
fn is_absolute_form(target: &str) -> bool {
    !matches!(target.as_bytes().first(), Some(b'/' | b'*'))
}

/// Whether the client waits for `100 Continue` before it sends the body;
/// an expectation other than `100-continue` is refused (RFC 9110 §10.1.1).
pub(crate) fn expects_continue(req: &Request) -> Result<bool, ParseError> {
    match req.header("expect") {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(b"100-continue") => Ok(true),
        Some(_) => Err(ParseError::Expectation),
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

/// The most trailer section a chunked body may have (its fields are read
/// past, not kept): without a bound, a client could keep one read going
/// for ever, a field at a time.
const MAX_TRAILERS: usize = 8 * 1024;

/// The state of a chunked-body decoder that works on a buffer, so that the
/// connection can feed it whatever it has read, and hand the data to a
/// buffer of the caller's (a streamed body) or to a growing one (a body
/// read whole).
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    /// Bytes of chunk data still to come in the current chunk.
    remaining: u64,
    /// Bytes of chunk data decoded so far, held against the maximum.
    decoded: u64,
    /// Expecting the CRLF after chunk data.
    data_crlf: bool,
    /// In the trailer section, after the last chunk.
    trailers: bool,
    /// Bytes of trailer section read so far, held against
    /// [`MAX_TRAILERS`].
    trailer_bytes: usize,
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
    ) -> Result<usize, BodyError> {
        // The data in `buf` is never longer than `buf`.
        let start = out.len();
        out.resize(start + buf.len(), 0);
        let decoded = self.decode_into(buf, &mut out[start..], max);
        let (used, written) = decoded.inspect_err(|_| out.truncate(start))?;
        out.truncate(start + written);
        Ok(used)
    }

    /// Decodes from `buf` into `out`, as far as both allow. Returns how
    /// many bytes of `buf` were consumed and how many of `out` written. A
    /// body past `max` bytes of data is refused as soon as a chunk's size
    /// says so.
    pub(crate) fn decode_into(
        &mut self,
        buf: &[u8],
        out: &mut [u8],
        max: u64,
    ) -> Result<(usize, usize), BodyError> {
        let mut pos = 0;
        let mut written = 0;
        while !self.done && pos < buf.len() {
            let rest = &buf[pos..];
            if self.remaining > 0 {
                let n = rest
                    .len()
                    .min(out.len() - written)
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if n == 0 {
                    break;
                }
                out[written..written + n].copy_from_slice(&rest[..n]);
                written += n;
                pos += n;
                self.took_data(n);
                continue;
            }
            // Every other state consumes one CRLF-terminated line.
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                if rest.len() > 4096 {
                    return Err(BodyError::Chunk);
                }
                break;
            };
            if lf == 0 || rest[lf - 1] != b'\r' {
                return Err(BodyError::Chunk);
            }
            let line = &rest[..lf - 1];
            pos += lf + 1;
            if self.data_crlf {
                if !line.is_empty() {
                    return Err(BodyError::Chunk);
                }
                self.data_crlf = false;
            } else if self.trailers {
                self.trailer_bytes += lf + 1;
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(BodyError::Chunk);
                }
                if line.is_empty() {
                    self.done = true;
                } else if line.contains(&b'\r') || !line.contains(&b':') {
                    return Err(BodyError::Chunk);
                }
            } else {
                let size = parse_chunk_size(line)?;
                if size == 0 {
                    self.trailers = true;
                } else {
                    if self.decoded.saturating_add(size) > max {
                        return Err(BodyError::TooLarge);
                    }
                    self.remaining = size;
                }
            }
        }
        Ok((pos, written))
    }

    /// How much of the current chunk's data is still to come: that much
    /// can be read straight into the caller's buffer, past the decoder.
    pub(crate) fn data_left(&self) -> u64 {
        self.remaining
    }

    /// Counts `n` bytes of chunk data read past the decoder.
    pub(crate) fn took_data(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.remaining);
        self.remaining -= n as u64;
        self.decoded += n as u64;
        if self.remaining == 0 {
            self.data_crlf = true;
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}

/// `chunk-size [ chunk-ext ]` where `chunk-size = 1*HEXDIG` and `chunk-ext =
/// *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )` (RFC
/// 9112 §7.1 and §7.1.1).
///
/// The grammar puts whitespace (BWS: spaces and tabs, RFC 9110 §5.6.3) only
/// around `;` and `=`, never first or last, so `5 ;a` is a size of 5 but
/// ` 5`, `5 ` and `5;a ` are refused. Whitespace just before the CRLF is a
/// request-smuggling vector: a recipient that trims it and one that refuses
/// it (or reads the size up to it and the rest as an extension) disagree
/// about where the body ends. Any other byte outside the grammar, such as
/// a bare CR or a form feed, is refused too.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::Chunk);
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16).expect("hex digit") as u64;
        n.checked_mul(16)
            .and_then(|n| n.checked_add(v))
            .ok_or(BodyError::Chunk)
    })?;
    if line.last().is_some_and(|&b| is_bws(b)) {
        return Err(BodyError::Chunk);
    }
    let mut ext = &line[digits..];
    loop {
        ext = trim_bws(ext);
        if ext.is_empty() {
            return Ok(size);
        }
        let Some(rest) = ext.strip_prefix(b";") else {
            return Err(BodyError::Chunk);
        };
        let rest = trim_bws(rest);
        let name_len = rest.iter().take_while(|&&b| is_token(b)).count();
        if name_len == 0 {
            return Err(BodyError::Chunk);
        }
        let rest = trim_bws(&rest[name_len..]);
        ext = match rest.strip_prefix(b"=") {
            None => rest,
            Some(v) => {
                let v = trim_bws(v);
                if let Some(q) = v.strip_prefix(b"\"") {
                    // qdtext and quoted-pair (RFC 9110 §5.6.4): HTAB, SP,
                    // VCHAR and obs-text, so never a bare CR, quoted or not.
                    let quotable = |b: u8| b == b'\t' || b >= 0x20 && b != 0x7f;
                    let mut i = 0;
                    loop {
                        match q.get(i) {
                            None => return Err(BodyError::Chunk),
                            Some(b'"') => break,
                            Some(b'\\') if q.get(i + 1).is_some_and(|&b| quotable(b)) => i += 2,
                            Some(&b) if b != b'\\' && quotable(b) => i += 1,
                            Some(_) => return Err(BodyError::Chunk),
                        }
                    }
                    &q[i + 1..]
                } else {
                    let n = v.iter().take_while(|&&b| is_token(b)).count();
                    if n == 0 {
                        return Err(BodyError::Chunk);
                    }
                    &v[n..]
                }
            }
        };
    }
}

/// Whether `b` is bad whitespace (BWS, RFC 9110 §5.6.3): SP or HTAB, and
/// not the other bytes `u8::is_ascii_whitespace` takes (CR, LF, FF).
fn is_bws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading BWS.
fn trim_bws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_bws(b)).count();
    &s[n..]
}

/// Reads a whole body framed by `framing` from `buf`, which holds what has
/// arrived after the head, calling `fill` to append more. Takes exactly the
/// body's bytes out of `buf`; what follows (a pipelined request) stays. A
/// body larger than `max` is refused: by its `Content-Length` at once, a
/// chunked one as soon as it grows past it.
///
/// `fill(buf, left)` appends at least one byte within `left`, or fails
/// with [`BodyError::Timeout`] or [`BodyError::Incomplete`]. The body must
/// be complete by `deadline`, a time on [`clock::monotonic`]: a client
/// that trickles it is cut off however steadily it sends.
pub(crate) fn read_body(
    buf: &mut BytesMut,
    framing: Framing,
    max: u64,
    deadline: Duration,
    mut fill: impl FnMut(&mut BytesMut, Duration) -> Result<(), BodyError>,
) -> Result<Bytes, BodyError> {
    let mut more = |buf: &mut BytesMut| match deadline.checked_sub(clock::monotonic()) {
        Some(left) if !left.is_zero() => fill(buf, left),
        _ => Err(BodyError::Timeout),
    };
    match framing {
        Framing::None => Ok(Bytes::new()),
        Framing::Length(n) => {
            if n > max {
                return Err(BodyError::TooLarge);
            }
            let n = n as usize;
            while buf.len() < n {
                more(buf)?;
            }
            Ok(buf.split_to(n).freeze())
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let mut out = Vec::new();
            loop {
                let used = decoder.decode(buf, &mut out, max)?;
                let _ = buf.split_to(used);
                if decoder.is_done() {
                    return Ok(Bytes::from(out));
                }
                more(buf)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &[u8]) -> Request {
        Request::parse(s).unwrap()
    }

    #[test]
    fn framing_rules() {
        let f = |s: &str| framing(&complete(s.as_bytes()));
        assert_eq!(f("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), Ok(Framing::None));
        assert_eq!(f("GET / HTTP/1.0\r\n\r\n"), Ok(Framing::None));
        assert_eq!(f("GET / HTTP/1.1\r\n\r\n"), Err(ParseError::Host));
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(ParseError::Host)
        );
        for bad in ["a@b", "a/b", "a, b", "a b", ":80", "[::1"] {
            let req = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(f(&req), Err(ParseError::Host), "{bad:?}");
            let req = format!("GET / HTTP/1.0\r\nHost: {bad}\r\n\r\n");
            assert_eq!(f(&req), Err(ParseError::Host), "{bad:?} in HTTP/1.0");
        }
        // An empty Host names no authority: only an absolute-form target
        // has one of its own.
        assert_eq!(f("GET / HTTP/1.1\r\nHost: \r\n\r\n"), Err(ParseError::Host));
        assert_eq!(
            f("OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n"),
            Err(ParseError::Host)
        );
        assert_eq!(
            f("GET http://h/ HTTP/1.1\r\nHost: \r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(f("GET / HTTP/1.0\r\nHost: \r\n\r\n"), Ok(Framing::None));
        assert_eq!(
            f("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
            Ok(Framing::None)
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

    fn dechunk(input: &[u8]) -> Result<(Vec<u8>, usize, bool), BodyError> {
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
            // Whitespace first or last on the size line, and bytes that
            // are no part of the grammar.
            b" 5\r\nhello\r\n",
            b"\t5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\t\r\nhello\r\n",
            b"5;a \r\nhello\r\n",
            b"5;a=b\t\r\nhello\r\n",
            b"5;a=\"b\" \r\nhello\r\n",
            b"5\r\nhello\r\n0 \r\n\r\n",
            b"5\r\r\nhello\r\n",
            b"5\x0c\r\nhello\r\n",
            b"5;a=\"\\\r\"\r\nhello\r\n",
        ] {
            assert!(dechunk(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // BWS around ";" and "=" is the grammar's, and is read past.
        for good in [
            &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
            b"5 ;a\r\nhello\r\n0\r\n\r\n",
            b"5\t; a = \"b\\\"c\"\r\nhello\r\n0\r\n\r\n",
        ] {
            let got = dechunk(good);
            assert_eq!(
                got,
                Ok((b"hello".to_vec(), good.len(), true)),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        let mut d = ChunkedDecoder::default();
        assert_eq!(
            d.decode(b"10\r\n", &mut Vec::new(), 8),
            Err(BodyError::TooLarge)
        );
    }
}
