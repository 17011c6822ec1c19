//! The HTTP/1.1 client that coserve's tests, benchmarks and load tools
//! share, so that each reads responses, records latencies and samples
//! `/proc` the same way, from one copy of the code.
//!
//! - [`Connection`] writes requests and reads responses off any `Read`:
//!   a std or may `TcpStream`, or bytes already read. Bodies are framed by
//!   `Content-Length`, chunked coding or the close, and there is none for
//!   HEAD, 1xx, 204 and 304. A buffered connection reads ahead and keeps
//!   what follows a response for the next (keep-alive, pipelining); an
//!   [exact](Connection::exact) one never reads a byte past the response.
//! - [`parse_head`] parses a head in place; [`Head::framing`] says how its
//!   body is delimited. Every malformed head is an [`Error`] that says why,
//!   so that a table test can list each failure.
//! - [`Latencies`] records latencies and reads percentiles back.
//! - [`procfs`] reads `/proc/PID` (resident memory, threads, descriptors,
//!   CPU time) and samples it on a thread of its own.
//!
//! Raising the descriptor limit is coserve's own
//! `coserve::raise_open_files_limit`.
//!
//! ```
//! use coserve_http1::Connection;
//!
//! let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
//! let response = Connection::new(&bytes[..]).read_response(false)?;
//! assert_eq!((response.status, response.text().as_str()), (200, "hi"));
//! # Ok::<(), coserve_http1::Error>(())
//! ```

#![warn(missing_docs)]

mod conn;
mod error;
mod head;
mod latency;
pub mod procfs;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub use conn::{Connection, MAX_HEAD, Reply};
pub use error::{Error, ErrorKind};
pub use head::{Framing, Head, Response, head_len, parse_head};
pub use latency::Latencies;

/// Connects to `addr` within `timeout`, and bounds every read and write on
/// the connection by it too.
pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Reads one response off `stream`, never reading past it.
pub fn read_response(stream: &mut impl Read, head_request: bool) -> Result<Response, Error> {
    Connection::exact(stream).read_response(head_request)
}

/// Reads one response head off `stream`, never reading past it; the body,
/// if any, is left unread.
pub fn read_head(stream: &mut impl Read) -> Result<Response, Error> {
    Connection::exact(stream).read_head()
}

/// Parses the response at the start of `bytes`; returns it and how many
/// bytes it took.
pub fn parse_response(bytes: &[u8], head_request: bool) -> Result<(Response, usize), Error> {
    let mut rest = bytes;
    let response = Connection::exact(&mut rest).read_response(head_request)?;
    Ok((response, bytes.len() - rest.len()))
}

/// Reads until the peer closes (a reset counts as the close too),
/// appending to `out`.
pub fn read_to_close(stream: &mut impl Read, out: &mut Vec<u8>) -> Result<(), Error> {
    Connection::exact(stream).read_to_close(out)
}
