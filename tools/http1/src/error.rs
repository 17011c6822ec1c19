//! Why a response could not be read.

use std::fmt;
use std::io;

/// What went wrong, for a caller that counts failures by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The peer closed the connection before the first byte of a response.
    Closed,
    /// The connection ended inside a response (its head or its body).
    Truncated,
    /// A read or a write timed out.
    Timeout,
    /// The connection was reset (or the pipe broke).
    Reset,
    /// Any other I/O error.
    Io,
    /// Not a well-formed HTTP/1.1 response, or bytes nobody asked for.
    Malformed,
}

/// A failure to write a request or read a response: its kind, and a
/// message that says where (with the bytes read so far, where they help).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Malformed, message)
    }

    /// An I/O error met while doing `what`.
    pub(crate) fn io(e: &io::Error, what: impl fmt::Display) -> Error {
        Error::new(kind_of(e), format!("{what}: {e}"))
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// How an I/O error counts.
pub(crate) fn kind_of(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        _ => ErrorKind::Io,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
