//! Server-sent events (`text/event-stream`, the WHATWG HTML standard's
//! event stream) in blocking style: a handler writes events as they
//! happen, on its own coroutine, until it returns or the client goes away.
//!
//! ```no_run
//! use std::time::Duration;
//! use coserve::sse::{self, Event};
//! use coserve::{Config, Request, Router, Server};
//!
//! let app = Router::new().get("/events", |req: &Request| {
//!     // A client that reconnects says which event it saw last.
//!     let mut n: u64 = sse::last_event_id(req).and_then(|id| id.parse().ok()).unwrap_or(0);
//!     sse::stream(move |events| loop {
//!         n += 1;
//!         events.send(&Event::new(n.to_string()).id(n.to_string()))?;
//!         events.sleep(Duration::from_secs(1))?;
//!     })
//! });
//! Server::bind("127.0.0.1:8080", Config::new())?.serve(app)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! - Each event is flushed as it is sent (chunked, HTTP/1.1), with
//!   `Cache-Control: no-cache` and `X-Accel-Buffering: no` so that no
//!   proxy holds it back.
//! - `data` may hold any text: each of its lines (split at CR, LF or CRLF)
//!   becomes a `data:` line, so a newline cannot start another field. An
//!   `id` or event name holding a line break (or an `id` holding NUL) is
//!   refused with `InvalidInput` before anything is written.
//! - [`Events::sleep`] waits in blocking style and sends a comment line
//!   every heartbeat interval (15 s by default), which keeps proxies from
//!   timing the stream out and finds out when the client has gone: then
//!   a write fails and the handler's `?` ends it.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::request::Request;
use crate::response::{Body, Response};

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    data: String,
    id: Option<String>,
    name: Option<String>,
    retry: Option<Duration>,
}

impl Event {
    /// An event carrying `data` (the browser's `event.data`).
    pub fn new(data: impl Into<String>) -> Event {
        Event {
            data: data.into(),
            ..Event::default()
        }
    }

    /// Its id: the browser sends it back as `Last-Event-ID` when it
    /// reconnects.
    pub fn id(mut self, id: impl Into<String>) -> Event {
        self.id = Some(id.into());
        self
    }

    /// Its type (`event:`), which `addEventListener(type, ..)` listens
    /// for; without one it is a `message`.
    pub fn name(mut self, name: impl Into<String>) -> Event {
        self.name = Some(name.into());
        self
    }

    /// How long the browser waits before it reconnects (`retry:`).
    pub fn retry(mut self, after: Duration) -> Event {
        self.retry = Some(after);
        self
    }

    /// The event as the stream carries it, ending with its blank line.
    pub fn to_wire(&self) -> io::Result<String> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an event's {what} cannot hold a line break"),
            )
        };
        let mut out = String::with_capacity(self.data.len() + 16);
        if let Some(id) = &self.id {
            if id.contains(['\r', '\n', '\0']) {
                return Err(bad("id"));
            }
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(name) = &self.name {
            if name.contains(['\r', '\n']) {
                return Err(bad("name"));
            }
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        if let Some(retry) = self.retry {
            out.push_str(&format!("retry: {}\n", retry.as_millis()));
        }
        for line in lines(&self.data) {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        Ok(out)
    }
}

/// The lines of `text` as the event stream splits them: at CRLF, LF or
/// CR. An empty text is one empty line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The `Last-Event-ID` a reconnecting client sent, if any.
pub fn last_event_id(req: &Request) -> Option<&str> {
    req.header_str("last-event-id")
}

/// The stream a handler writes events to.
pub struct Events<'a> {
    out: &'a mut dyn Write,
    heartbeat: Duration,
    last_write: Instant,
}

impl std::fmt::Debug for Events<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl Events<'_> {
    /// Sends an event and flushes it to the client.
    pub fn send(&mut self, event: &Event) -> io::Result<()> {
        let wire = event.to_wire()?;
        self.write(wire.as_bytes())
    }

    /// Sends a comment line (`: text`), which browsers ignore. Line breaks
    /// in `text` are sent as spaces.
    pub fn comment(&mut self, text: &str) -> io::Result<()> {
        let text = text.replace(['\r', '\n'], " ");
        self.write(format!(": {text}\n\n").as_bytes())
    }

    /// Waits for `d` without holding up other coroutines, sending a
    /// heartbeat comment whenever nothing has been written for the
    /// heartbeat interval. Fails when the client has gone.
    pub fn sleep(&mut self, d: Duration) -> io::Result<()> {
        let until = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let beat = self.last_write + self.heartbeat;
            if now >= beat {
                self.write(b":\n\n")?;
                continue;
            }
            may::coroutine::sleep(until.min(beat) - now);
        }
    }

    /// Sets the heartbeat interval for the rest of the stream.
    pub fn set_heartbeat(&mut self, every: Duration) {
        self.heartbeat = every;
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()?;
        self.last_write = Instant::now();
        Ok(())
    }
}

/// The heartbeat interval: often enough for proxies that close a stream
/// silent for 30 s or more.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// A `200 text/event-stream` response whose events `write` sends, in
/// blocking style, until it returns (an error ends the stream; a client
/// that went away makes the next write fail). Not called for `HEAD`.
pub fn stream<F>(write: F) -> Response
where
    F: FnOnce(&mut Events<'_>) -> io::Result<()> + Send + 'static,
{
    Response::bytes(
        "text/event-stream",
        Body::stream(move |out| {
            let mut events = Events {
                out,
                heartbeat: HEARTBEAT,
                last_write: Instant::now(),
            };
            // The head is out; a comment now tells the client the stream
            // is open (and flushes the head through any buffer).
            events.write(b":\n\n")?;
            write(&mut events)
        }),
    )
    .header("Cache-Control", "no-cache")
    .header("X-Accel-Buffering", "no")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_lines_go_out_as_the_standard_reads_them() {
        let e = Event::new("one\ntwo\r\nthree\rfour").id("7").name("tick");
        assert_eq!(
            e.to_wire().unwrap(),
            "id: 7\nevent: tick\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
        );
        assert_eq!(Event::new("").to_wire().unwrap(), "data: \n\n");
        assert_eq!(Event::new("x\n").to_wire().unwrap(), "data: x\ndata: \n\n");
        assert_eq!(
            Event::new("r")
                .retry(Duration::from_millis(1500))
                .to_wire()
                .unwrap(),
            "retry: 1500\ndata: r\n\n"
        );
    }

    /// No field can be smuggled in through an id, a name or the data.
    #[test]
    fn line_breaks_cannot_add_fields() {
        for bad in [
            Event::new("x").id("1\nevent: evil"),
            Event::new("x").name("a\rdata: b"),
        ] {
            assert_eq!(
                bad.to_wire().unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        let wire = Event::new("a\nid: 99\r\nevent: evil").to_wire().unwrap();
        assert!(
            wire.lines()
                .all(|l| l.is_empty() || l.starts_with("data: ")),
            "{wire}"
        );
    }
}
