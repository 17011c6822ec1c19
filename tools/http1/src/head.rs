//! A response head: parsed in place, and what it says about the body.

use crate::error::Error;

/// A response head parsed in place: the status and the header fields,
/// borrowed from the bytes it was parsed from (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: &'a str,
    /// The field lines, CRLF-separated, each known to hold a colon and no
    /// other CR or LF.
    fields: &'a str,
    /// What the framing needs, noted while parsing: the last
    /// `Transfer-Encoding` value, the first `Content-Length` value and how
    /// many `Content-Length` fields there are.
    transfer_encoding: Option<&'a str>,
    content_length: Option<&'a str>,
    content_lengths: usize,
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: an answer to HEAD, a 1xx, a 204 or a 304.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// A chunked body.
    Chunked,
    /// Everything until the server closes the connection.
    Close,
}

/// A whole response, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields in order: the name as sent, the value trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, with any chunked coding removed.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header field, its name compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where the head at the start of `bytes` ends: just past its empty line.
pub fn head_len(bytes: &[u8]) -> Option<usize> {
    find(bytes, b"\r\n\r\n").map(|i| i + 4)
}

/// Where `needle` first stands in `hay`. The `memchr` crate's vector
/// search: a load generator parses every response, and plain loops cost it
/// a tenth of its throughput.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Where `byte` first stands in `hay`.
fn memchr(byte: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(byte, hay)
}

/// Parses the response head at the start of `bytes` (status line, header
/// fields, the empty line); returns it and its length in bytes. An
/// incomplete head is an error of kind `Truncated`; one that is not
/// HTTP/1.1, has no three-digit status, a field line without a colon, a
/// bare CR or LF, or is not UTF-8 is `Malformed`.
pub fn parse_head(bytes: &[u8]) -> Result<(Head<'_>, usize), Error> {
    let len = head_len(bytes).ok_or_else(|| {
        Error::new(
            crate::ErrorKind::Truncated,
            format!("no complete head in {:?}", String::from_utf8_lossy(bytes)),
        )
    })?;
    parse_complete(&bytes[..len]).map(|head| (head, len))
}

/// Parses `bytes`, a head up to and including its empty line. One pass
/// over the bytes: a load generator parses every response.
pub(crate) fn parse_complete(bytes: &[u8]) -> Result<Head<'_>, Error> {
    let raw = &bytes[..bytes.len() - 4];
    let line_at = |start: usize, end: usize| String::from_utf8_lossy(&raw[start..end]).into_owned();
    let no_colon = |line: String| Error::malformed(format!("header line without colon: {line:?}"));
    // Where the status line ends; the framing fields' values.
    let mut status_end = None;
    let (mut te, mut cl, mut cls) = (None, None, 0);
    let mut note = |start: usize, colon: usize, end: usize| {
        let name = &raw[start..colon];
        if name.eq_ignore_ascii_case(b"content-length") {
            cls += 1;
            if cl.is_none() {
                cl = Some(colon + 1..end);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = Some(colon + 1..end);
        }
    };
    // Line by line: each ends with CRLF (the last one's is the head's
    // end, cut off), and a CR or LF alone is malformed.
    let bare = |start: usize| {
        Error::malformed(format!("bare CR or LF in {:?}", line_at(start, raw.len())))
    };
    let mut start = 0;
    loop {
        let (end, next) = match memchr(b'\n', &raw[start..]) {
            Some(i) if i > 0 && raw[start + i - 1] == b'\r' => (start + i - 1, Some(start + i + 1)),
            Some(_) => return Err(bare(start)),
            None => (raw.len(), None),
        };
        let line = &raw[start..end];
        if memchr(b'\r', line).is_some() {
            return Err(bare(start));
        }
        if status_end.is_none() {
            status_end = Some(end);
        } else {
            match memchr(b':', line) {
                Some(c) => note(start, start + c, end),
                None => return Err(no_colon(line_at(start, end))),
            }
        }
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    let status_end = status_end.filter(|&end| end < raw.len());
    let text =
        std::str::from_utf8(raw).map_err(|e| Error::malformed(format!("head not UTF-8: {e}")))?;
    let (status_line, fields) = match status_end {
        Some(end) => (&text[..end], &text[end + 2..]),
        None => (text, ""),
    };
    let bad_status = || Error::malformed(format!("bad status line {status_line:?}"));
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .ok_or_else(bad_status)?;
    let code = rest.get(..3).ok_or_else(bad_status)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_status());
    }
    let reason = match &rest[3..] {
        "" => "",
        r => r.strip_prefix(' ').ok_or_else(bad_status)?,
    };
    Ok(Head {
        status: code.parse().map_err(|_| bad_status())?,
        reason,
        fields,
        transfer_encoding: te.map(|r| text[r].trim()),
        content_length: cl.map(|r| text[r].trim()),
        content_lengths: cls,
    })
}

/// The non-empty lines of CRLF-separated field lines known to hold no
/// other CR or LF.
fn field_lines(fields: &str) -> impl Iterator<Item = &str> {
    fields
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

impl<'a> Head<'a> {
    /// The header fields in order: the name as sent, the value trimmed.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        field_lines(self.fields)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n, v.trim()))
    }

    /// The first value of a header field, its name compared without case.
    pub fn field(&self, name: &str) -> Option<&'a str> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// How the body that follows is delimited, `head_request` saying
    /// whether this answers a HEAD. Conflicting or malformed
    /// `Content-Length` values are an error.
    pub fn framing(&self, head_request: bool) -> Result<Framing, Error> {
        let status = self.status;
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Framing::None);
        }
        let coding = self
            .transfer_encoding
            .map(|v| v.rsplit(',').next().unwrap_or("").trim());
        let mut length = None;
        let mut note = |value: &str| {
            for v in value.split(',').map(str::trim) {
                let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| Error::malformed(format!("Content-Length {value:?}")))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::malformed("conflicting Content-Length values"));
                }
                length = Some(n);
            }
            Ok(())
        };
        match (self.content_lengths, self.content_length) {
            (1, Some(value)) => note(value)?,
            (0, _) => {}
            _ => {
                for (name, value) in self.fields() {
                    if name.eq_ignore_ascii_case("content-length") {
                        note(value)?;
                    }
                }
            }
        }
        Ok(match (coding, length) {
            (Some(c), _) if c.eq_ignore_ascii_case("chunked") => Framing::Chunked,
            (Some(_), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        })
    }

    /// The head as an owned [`Response`] with an empty body.
    pub fn to_response(&self) -> Response {
        Response {
            status: self.status,
            headers: self
                .fields()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_head_parses_in_place() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello";
        let (head, len) = parse_head(bytes).unwrap();
        assert_eq!(len, bytes.len() - 5);
        assert_eq!((head.status, head.reason), (200, "OK"));
        assert_eq!(
            head.fields().collect::<Vec<_>>(),
            [("Content-Length", "5"), ("X-A", "b")]
        );
        assert_eq!(head.field("x-a"), Some("b"));
        assert_eq!(head.framing(false).unwrap(), Framing::Length(5));
        let r = head.to_response();
        assert_eq!(r.header("content-length"), Some("5"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn a_reason_may_be_missing() {
        let (head, _) = parse_head(b"HTTP/1.1 204\r\n\r\n").unwrap();
        assert_eq!((head.status, head.reason), (204, ""));
    }

    #[test]
    fn malformed_heads_are_errors_that_say_why() {
        for (bytes, says) in [
            (&b"HTTP/1.0 200 OK\r\n\r\n"[..], "bad status line"),
            (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad status line"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
            (b"HTTP/1.1 20\r\n\r\n", "bad status line"),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "without colon"),
            (b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", "bare CR or LF"),
            (b"HTTP/1.1 200 \xff\r\n\r\n", "not UTF-8"),
        ] {
            let e = parse_head(bytes).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed, "{bytes:?}");
            assert!(e.to_string().contains(says), "{bytes:?}: {e}");
        }
        let e = parse_head(b"HTTP/1.1 200 OK\r\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Truncated);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing =
            |head: &[u8], head_request| parse_head(head).and_then(|(h, _)| h.framing(head_request));
        let ok = |head: &[u8], head_request| framing(head, head_request).unwrap();
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true),
            Framing::None
        );
        for status in ["100", "101", "204", "304"] {
            let head = format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\n");
            assert_eq!(ok(head.as_bytes(), false), Framing::None, "{status}");
        }
        assert_eq!(
            ok(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Framing::Chunked
        );
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            Framing::Close
        );
        assert_eq!(ok(b"HTTP/1.1 200 OK\r\n\r\n", false), Framing::Close);
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", false),
            Framing::Length(7)
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        ] {
            assert_eq!(
                framing(bad, false).unwrap_err().kind(),
                ErrorKind::Malformed
            );
        }
    }
}
