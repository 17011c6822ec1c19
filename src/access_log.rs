//! The access log: one line per response in Common Log Format, to the
//! `coserve::access` log target.

use std::fmt;
use std::net::SocketAddr;

use crate::request::Request;
use crate::status::StatusCode;

/// The log target of access lines; the binary prints them as they are.
pub(crate) const TARGET: &str = "coserve::access";

/// Logs one line: client, time, request line, status and body bytes.
/// Nothing is formatted when the target is off, and nothing is allocated
/// when it is on but by the logger itself: the time comes from the
/// per-second cache the `Date` field uses.
pub(crate) fn log(peer: Option<SocketAddr>, req: Option<&Request>, status: StatusCode, bytes: u64) {
    if !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    crate::date::with_log_time(|time| {
        log::info!(
            target: TARGET,
            "{} - - [{time}] \"{}\" {} {}",
            Dash(peer.map(|p| p.ip())),
            Dash(req.map(|r| Escaped(r.request_line()))),
            status.as_u16(),
            Dash((bytes > 0).then_some(bytes)),
        )
    });
}

/// A value, or `-` for none, as CLF writes a missing field.
struct Dash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Dash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Text with what must not reach a log line raw escaped: quotes,
/// backslashes and anything that is not printable ASCII.
pub(crate) struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.bytes() {
            match b {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_escaped() {
        assert_eq!(
            Escaped("GET /\"a\"\\\n\x1b").to_string(),
            "GET /\\\"a\\\"\\\\\\x0a\\x1b"
        );
        assert_eq!(Dash::<u8>(None).to_string(), "-");
    }
}
