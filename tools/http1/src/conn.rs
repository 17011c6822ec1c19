//! One client connection: write requests, read responses by their framing.

use std::io::{self, Read, Write};

use crate::error::{Error, ErrorKind, kind_of};
use crate::head::{Framing, Response, find, parse_complete};

/// The buffer a buffered connection starts with.
const BUFFER: usize = 16 * 1024;

/// The longest response head, or chunk-size line, read.
pub const MAX_HEAD: usize = 64 * 1024;

/// A connection to a server: requests written to it, responses read off
/// it one at a time, so it serves keep-alive and pipelining alike.
///
/// `S` is anything that reads (and writes, to send): a std or may
/// `TcpStream`, a `&mut` one, or a byte slice holding responses.
///
/// A [buffered](Connection::new) connection reads as much as the socket
/// has, and keeps what follows one response for the next. An
/// [exact](Connection::exact) one never reads a byte past the response
/// being read (the head in reads of at most four bytes, the body in reads
/// of at most what is left of it), so that the caller can go on reading
/// the socket itself.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    exact: bool,
}

/// What a load generator keeps of a response: its status and how its body
/// was framed and how long it was (the body itself is read and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// How the body was delimited.
    pub framing: Framing,
    /// How many body bytes there were (chunked coding removed).
    pub body_len: u64,
}

/// Where body bytes go.
enum Sink<'a> {
    Keep(&'a mut Vec<u8>),
    Drop,
}

impl<S> Connection<S> {
    /// A buffered connection with a 16 KiB buffer.
    pub fn new(stream: S) -> Connection<S> {
        Connection::with_buffer(stream, vec![0; BUFFER])
    }

    /// A buffered connection reading into `buf` (its length is how much
    /// one read may take; it grows only for a head that does not fit).
    /// Reuse a buffer from [`into_parts`](Connection::into_parts) to keep
    /// many short connections from allocating one each.
    pub fn with_buffer(stream: S, mut buf: Vec<u8>) -> Connection<S> {
        if buf.is_empty() {
            buf.resize(BUFFER, 0);
        }
        Connection {
            stream,
            buf,
            start: 0,
            end: 0,
            exact: false,
        }
    }

    /// A connection that never reads past the response being read.
    pub fn exact(stream: S) -> Connection<S> {
        Connection {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            exact: true,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, to set its timeouts or write to it by hand.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Bytes read from the stream and not yet part of a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The stream and the buffer, for [`with_buffer`](Connection::with_buffer);
    /// any bytes still buffered are dropped.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.buf)
    }
}

impl<S: Write> Connection<S> {
    /// Writes a request (or any bytes) whole.
    pub fn send(&mut self, request: &[u8]) -> Result<(), Error> {
        self.stream
            .write_all(request)
            .map_err(|e| Error::io(&e, "write"))
    }
}

impl<S: Read + Write> Connection<S> {
    /// Sends `request` and reads the response whole.
    pub fn request(&mut self, request: &[u8]) -> Result<Response, Error> {
        self.send(request)?;
        self.read_response(request.starts_with(b"HEAD "))
    }

    /// Sends `request` and reads the response, keeping only its status and
    /// framing; fails if bytes nobody asked for follow it.
    pub fn exchange(&mut self, request: &[u8]) -> Result<Reply, Error> {
        self.send(request)?;
        let reply = self.skip_response(request.starts_with(b"HEAD "))?;
        match self.buffered().len() {
            0 => Ok(reply),
            n => Err(Error::malformed(format!(
                "{n} bytes after a body of {}",
                reply.body_len
            ))),
        }
    }
}

impl<S: Read> Connection<S> {
    /// Reads one response, body included (none if `head_request`, or for
    /// a 1xx, 204 or 304). An interim 1xx response is returned as it is.
    pub fn read_response(&mut self, head_request: bool) -> Result<Response, Error> {
        let len = self.fill_head()?;
        let head = parse_complete(&self.buf[self.start..self.start + len])?;
        let framing = head.framing(head_request)?;
        let mut response = head.to_response();
        self.start += len;
        self.read_body(framing, &mut response.body)?;
        Ok(response)
    }

    /// Reads one response head; the body, if any, is left unread (see
    /// [`read_body`](Connection::read_body)).
    pub fn read_head(&mut self) -> Result<Response, Error> {
        let len = self.fill_head()?;
        let head = parse_complete(&self.buf[self.start..self.start + len])?;
        let response = head.to_response();
        self.start += len;
        Ok(response)
    }

    /// Reads one response, keeping its status, framing and body length;
    /// the body is read and dropped, and nothing is allocated.
    pub fn skip_response(&mut self, head_request: bool) -> Result<Reply, Error> {
        let len = self.fill_head()?;
        let head = parse_complete(&self.buf[self.start..self.start + len])?;
        let (status, framing) = (head.status, head.framing(head_request)?);
        self.start += len;
        let body_len = self.body(framing, Sink::Drop)?;
        Ok(Reply {
            status,
            framing,
            body_len,
        })
    }

    /// Reads a body framed as `framing` (from [`framing`](crate::Head::framing)),
    /// appending it to `body`, chunked coding removed.
    pub fn read_body(&mut self, framing: Framing, body: &mut Vec<u8>) -> Result<(), Error> {
        self.body(framing, Sink::Keep(body)).map(drop)
    }

    /// Reads until the peer closes the connection (a reset counts as the
    /// close too), appending what came to `out`.
    pub fn read_to_close(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.until_close(&mut Sink::Keep(out)).map(drop)
    }

    /// Reads and drops everything until the peer closes the connection (a
    /// reset counts as the close too); returns how many bytes came.
    pub fn drain_to_close(&mut self) -> Result<u64, Error> {
        self.until_close(&mut Sink::Drop)
    }

    /// Reads more into the buffer; at most `want` bytes on an exact
    /// connection. Returns 0 at the end of the stream.
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                let grown = (self.buf.len() * 2).max(256);
                self.buf.resize(grown, 0);
            }
        }
        let room = self.buf.len() - self.end;
        let n = if self.exact { room.min(want) } else { room };
        loop {
            match self.stream.read(&mut self.buf[self.end..self.end + n]) {
                Ok(k) => {
                    self.end += k;
                    return Ok(k);
                }
                // A socket with a timeout is not restarted after the process
                // was stopped and continued (signal(7)).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the buffer holds a whole head; returns its length.
    fn fill_head(&mut self) -> Result<usize, Error> {
        self.fill_until(b"\r\n\r\n", "head").map_err(|e| match e {
            Until::Eof(have) if have.is_empty() => {
                Error::new(ErrorKind::Closed, "closed before a response")
            }
            Until::Eof(have) => Error::new(
                ErrorKind::Truncated,
                format!("EOF inside a response head: {have:?}"),
            ),
            Until::Failed(e) => e,
        })
    }

    /// Reads until the buffered bytes hold `end`; returns how many bytes
    /// up to and including it. On an exact connection each read takes at
    /// most what `end` still needs, so none goes past it.
    fn fill_until(&mut self, end: &[u8], what: &str) -> Result<usize, Until> {
        let mut searched = 0;
        loop {
            let have = &self.buf[self.start..self.end];
            if let Some(i) = find(&have[searched..], end) {
                return Ok(searched + i + end.len());
            }
            searched = have.len().saturating_sub(end.len() - 1);
            if have.len() >= MAX_HEAD {
                return Err(Until::Failed(Error::malformed(format!(
                    "a response {what} longer than {MAX_HEAD} bytes"
                ))));
            }
            let want = end.len()
                - (1..end.len())
                    .rev()
                    .find(|&k| have.ends_with(&end[..k]))
                    .unwrap_or(0);
            match self.fill(want) {
                Ok(0) => {
                    let have = &self.buf[self.start..self.end];
                    return Err(Until::Eof(String::from_utf8_lossy(have).into_owned()));
                }
                Ok(_) => {}
                Err(e) => {
                    let have = String::from_utf8_lossy(&self.buf[self.start..self.end]);
                    return Err(Until::Failed(Error::io(
                        &e,
                        format!("read failed inside a {what} ({have:?})"),
                    )));
                }
            }
        }
    }

    /// Reads a body into `sink`; returns its length.
    fn body(&mut self, framing: Framing, mut sink: Sink<'_>) -> Result<u64, Error> {
        match framing {
            Framing::None => Ok(0),
            Framing::Length(n) => self.exactly(n, &mut sink).map(|()| n),
            Framing::Close => self.until_close(&mut sink),
            Framing::Chunked => self.chunked(&mut sink),
        }
    }

    /// Moves exactly `n` body bytes to `sink`.
    fn exactly(&mut self, n: u64, sink: &mut Sink<'_>) -> Result<(), Error> {
        let mut left = n;
        let eof = |left: u64| {
            Error::new(
                ErrorKind::Truncated,
                format!("EOF after {} of {n} body bytes", n - left),
            )
        };
        while left > 0 {
            if self.start == self.end {
                if let Sink::Keep(body) = sink {
                    // Straight into the body: nothing past it is read.
                    let old = body.len();
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(64 * 1024);
                    body.resize(old + take, 0);
                    let got = loop {
                        match self.stream.read(&mut body[old..]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            r => break r,
                        }
                    };
                    match got {
                        Ok(k) => body.truncate(old + k),
                        Err(_) => body.truncate(old),
                    }
                    match got {
                        Ok(0) => return Err(eof(left)),
                        Ok(k) => left -= k as u64,
                        Err(e) => {
                            return Err(Error::io(
                                &e,
                                format!("read failed after {} of {n} body bytes", n - left),
                            ));
                        }
                    }
                    continue;
                }
                let want = usize::try_from(left).unwrap_or(usize::MAX);
                match self.fill(want) {
                    Ok(0) => return Err(eof(left)),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Error::io(
                            &e,
                            format!("read failed after {} of {n} body bytes", n - left),
                        ));
                    }
                }
            }
            let take = (self.end - self.start).min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Sink::Keep(body) = sink {
                body.extend_from_slice(&self.buf[self.start..self.start + take]);
            }
            self.start += take;
            left -= take as u64;
        }
        Ok(())
    }

    /// Moves everything until the end of the stream to `sink`.
    fn until_close(&mut self, sink: &mut Sink<'_>) -> Result<u64, Error> {
        let mut total = 0u64;
        loop {
            let have = self.end - self.start;
            if let Sink::Keep(out) = sink {
                out.extend_from_slice(&self.buf[self.start..self.end]);
            }
            total += have as u64;
            self.start = self.end;
            if self.buf.len() < BUFFER {
                self.buf.resize(BUFFER, 0);
            }
            match self.fill(usize::MAX) {
                Ok(0) => return Ok(total),
                Ok(_) => {}
                Err(e) if kind_of(&e) == ErrorKind::Reset => return Ok(total),
                Err(e) => {
                    return Err(Error::io(&e, format!("read failed after {total} bytes")));
                }
            }
        }
    }

    /// Moves a chunked body's data to `sink` (RFC 9112 §7.1); trailer
    /// fields are read and dropped.
    fn chunked(&mut self, sink: &mut Sink<'_>) -> Result<u64, Error> {
        let mut total = 0u64;
        loop {
            let line = self.line("chunk-size line")?;
            let size = line
                .split(';')
                .next()
                .unwrap_or("")
                .trim_end_matches([' ', '\t']);
            let size = (!size.is_empty() && size.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(size, 16).ok())
                .flatten()
                .ok_or_else(|| Error::malformed(format!("bad chunk-size line {line:?}")))?;
            if size == 0 {
                while !self.line("trailer section")?.is_empty() {}
                return Ok(total);
            }
            self.exactly(size, sink)?;
            total += size;
            let after = self.line("chunk")?;
            if !after.is_empty() {
                return Err(Error::malformed(format!(
                    "chunk data longer than its size {size}: {after:?}"
                )));
            }
        }
    }

    /// Reads one CRLF-terminated line of a chunked body, without the CRLF.
    fn line(&mut self, what: &str) -> Result<String, Error> {
        let len = self.fill_until(b"\r\n", what).map_err(|e| match e {
            Until::Eof(have) => Error::new(
                ErrorKind::Truncated,
                format!("EOF inside a {what}: {have:?}"),
            ),
            Until::Failed(e) => e,
        })?;
        let line =
            String::from_utf8_lossy(&self.buf[self.start..self.start + len - 2]).into_owned();
        self.start += len;
        Ok(line)
    }
}

/// Why [`Connection::fill_until`] stopped.
enum Until {
    /// The stream ended, with these bytes buffered.
    Eof(String),
    Failed(Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that hands out its bytes at most `step` at a time and
    /// counts the reads, so that tests see what an exact read takes.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        reads: Vec<usize>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            self.reads.push(buf.len());
            Ok(n)
        }
    }

    const TWO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
        HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n";

    #[test]
    fn a_buffered_connection_reads_pipelined_responses() {
        let mut c = Connection::new(TWO);
        let r = c.read_response(false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert!(
            !c.buffered().is_empty(),
            "the second response is read ahead"
        );
        let r = c.read_response(false).unwrap();
        assert_eq!(r.text(), "abc0123456789abcdef");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(
            c.read_response(false).unwrap_err().kind(),
            ErrorKind::Closed
        );
    }

    #[test]
    fn an_exact_connection_never_reads_past_a_response() {
        for step in [1, 3, 7, 1000] {
            let mut stream = Trickle {
                bytes: TWO,
                step,
                reads: Vec::new(),
            };
            let mut c = Connection::exact(&mut stream);
            assert_eq!(c.read_response(false).unwrap().text(), "hello");
            assert!(c.buffered().is_empty());
            drop(c);
            assert!(stream.bytes.starts_with(b"HTTP/1.1 200 OK\r\nTransfer"));
            assert!(stream.reads.iter().all(|&n| n <= 5), "{:?}", stream.reads);
            let mut c = Connection::exact(&mut stream);
            let r = c.read_response(false).unwrap();
            assert_eq!(r.text(), "abc0123456789abcdef");
            drop(c);
            assert!(stream.bytes.is_empty());
        }
    }

    #[test]
    fn skipping_a_response_keeps_its_length_and_framing() {
        let mut c = Connection::with_buffer(TWO, vec![0; 8]);
        let reply = c.skip_response(false).unwrap();
        assert_eq!(
            reply,
            Reply {
                status: 200,
                framing: Framing::Length(5),
                body_len: 5
            }
        );
        let reply = c.skip_response(false).unwrap();
        assert_eq!((reply.framing, reply.body_len), (Framing::Chunked, 19));
    }

    #[test]
    fn no_body_is_read_for_head_1xx_204_and_304() {
        let bytes =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n";
        let mut c = Connection::exact(&bytes[..]);
        assert_eq!(c.read_response(false).unwrap().status, 100);
        assert_eq!(c.read_response(false).unwrap().status, 304);
        let r = c.read_response(true).unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0));
    }

    #[test]
    fn a_close_delimited_body_ends_with_the_stream() {
        let mut c = Connection::new(&b"HTTP/1.1 200 OK\r\n\r\nall of it"[..]);
        assert_eq!(c.read_response(false).unwrap().text(), "all of it");
    }

    #[test]
    fn truncated_responses_say_where_they_ended() {
        for (bytes, says) in [
            (
                &b"HTTP/1.1 200"[..],
                "EOF inside a response head: \"HTTP/1.1 200\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
                "EOF after 3 of 5 body bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "EOF after 2 of 5",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
                "EOF inside a chunk-size line",
            ),
        ] {
            for mut c in [Connection::new(bytes), Connection::exact(bytes)] {
                let e = c.read_response(false).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
                assert!(e.to_string().contains(says), "{e}");
            }
        }
    }

    #[test]
    fn bad_chunks_are_malformed() {
        for chunked in [
            &b"x\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"2\r\nabc\r\n0\r\n\r\n",
        ] {
            let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            bytes.extend_from_slice(chunked);
            let e = Connection::new(&bytes[..])
                .read_response(false)
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
        }
    }

    #[test]
    fn a_huge_head_is_refused() {
        let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
        bytes.resize(MAX_HEAD + 100, b'a');
        let e = Connection::new(&bytes[..])
            .read_response(false)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
    }

    /// A stream whose responses are written by the test and whose reads
    /// fail once they run out.
    struct Duplex {
        input: io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
        then: io::ErrorKind,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.input.read(buf)? {
                0 => Err(self.then.into()),
                n => Ok(n),
            }
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_exchange_sends_the_request_and_refuses_extra_bytes() {
        let duplex = |input: &[u8], then| Duplex {
            input: io::Cursor::new(input.to_vec()),
            sent: Vec::new(),
            then,
        };
        let mut c = Connection::new(duplex(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokextra",
            io::ErrorKind::WouldBlock,
        ));
        assert_eq!(
            c.exchange(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().kind(),
            ErrorKind::Malformed
        );
        assert_eq!(c.get_ref().sent, b"GET / HTTP/1.1\r\n\r\n");

        let mut c = Connection::new(duplex(b"HTTP/1.1 200 OK\r\n", io::ErrorKind::TimedOut));
        assert_eq!(
            c.exchange(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().kind(),
            ErrorKind::Timeout
        );
        let mut c = Connection::new(duplex(b"", io::ErrorKind::ConnectionReset));
        assert_eq!(
            c.exchange(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().kind(),
            ErrorKind::Reset
        );
        let mut c = Connection::new(duplex(
            b"HTTP/1.1 200 OK\r\n\r\nbody",
            io::ErrorKind::ConnectionReset,
        ));
        assert_eq!(c.request(b"GET / HTTP/1.1\r\n\r\n").unwrap().text(), "body");
        let mut c = Connection::new(duplex(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            io::ErrorKind::ConnectionReset,
        ));
        assert_eq!(c.request(b"HEAD / HTTP/1.1\r\n\r\n").unwrap().body, b"");
    }

    #[test]
    fn draining_counts_what_came_until_the_close() {
        let mut c = Connection::exact(&b"0123456789"[..]);
        assert_eq!(c.drain_to_close().unwrap(), 10);
        let mut out = Vec::new();
        Connection::new(&b"abc"[..])
            .read_to_close(&mut out)
            .unwrap();
        assert_eq!(out, b"abc");
    }
}
