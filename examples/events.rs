//! A live counter over server-sent events: `/events` sends one event a
//! second (`id:` and `data:` both the count), and the page at `/` shows it
//! with the browser's `EventSource`. A client that reconnects with
//! `Last-Event-ID: N` (as a browser does by itself after a dropped
//! connection) resumes at N + 1.
//!
//! ```sh
//! cargo run --example events            # http://127.0.0.1:8080/
//! cargo run --example events -- 0       # a port the OS picks
//!
//! curl -N http://127.0.0.1:8080/events
//! curl -N -H 'Last-Event-ID: 41' http://127.0.0.1:8080/events   # from 42
//! ```
//!
//! Each stream is a loop in blocking style on its connection's own
//! coroutine: send, then sleep, which parks only that coroutine (and sends
//! a heartbeat comment when the wait is long). A client that has gone makes
//! the next write fail, and `?` ends the loop.
//!
//! `cargo test --example events` runs the tests at the bottom; the
//! integration suite (tests/examples.rs, tests/browser.rs) serves this same
//! app to raw sockets and to headless Chromium.

use std::io::Write as _;
use std::time::Duration;

use coserve::sse::{self, Event};
use coserve::{Config, Request, Response, Router, Server};

/// The time between two events.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The page: the latest count in `#count`, the last event id in `#last-id`.
/// `EventSource` reconnects by itself, sending the last id it saw.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>coserve events</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  main { max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 1rem; }
  #count { display: block; font-size: 5rem; font-weight: 600; line-height: 1.1;
           font-variant-numeric: tabular-nums; color: #2563eb; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; color: #4b5563; }
  dd { margin: 0; }
  #status.open { color: #15803d; }
  #status.retrying { color: #b45309; }
</style>
</head>
<body>
<main>
  <h1>coserve events</h1>
  <output id="count" aria-live="polite">&hellip;</output>
  <dl>
    <dt>Last event id</dt><dd id="last-id">none yet</dd>
    <dt>Stream</dt><dd id="status">connecting&hellip;</dd>
  </dl>
</main>
<script>
"use strict";
const count = document.getElementById("count");
const lastId = document.getElementById("last-id");
const status = document.getElementById("status");

function setStatus(text, state) {
  status.textContent = text;
  status.className = state;
}

const source = new EventSource("/events");
source.addEventListener("open", () => setStatus("open", "open"));
source.addEventListener("error", () => setStatus("reconnecting\u2026", "retrying"));
source.addEventListener("message", (event) => {
  count.textContent = event.data;
  lastId.textContent = event.lastEventId;
});
</script>
</body>
</html>
"#;

/// The number after the `Last-Event-ID` the client sent (1 without one, or
/// with one that is not a number).
pub fn first_count(req: &Request) -> u64 {
    sse::last_event_id(req)
        .and_then(|id| id.trim().parse::<u64>().ok())
        .map_or(1, |last| last.saturating_add(1))
}

/// The page at `/` and the stream at `/events`.
pub fn app() -> Router {
    Router::new()
        .get("/", |_| {
            Response::bytes("text/html; charset=utf-8", PAGE)
                // The page loads nothing from elsewhere and talks only to
                // its own server.
                .header(
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; \
                     script-src 'unsafe-inline'; connect-src 'self'",
                )
        })
        .get("/events", |req: &Request| {
            let mut n = first_count(req);
            sse::stream(move |events| {
                loop {
                    let id = n.to_string();
                    events.send(&Event::new(id.clone()).id(id))?;
                    events.sleep(INTERVAL)?;
                    n = n.saturating_add(1);
                }
            })
        })
}

fn main() -> std::io::Result<()> {
    // The port is the first argument: 8080 by default, 0 for any free port.
    let port: u16 = match std::env::args().nth(1) {
        None => 8080,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: events [PORT]   (not a port: {arg:?})");
            std::process::exit(2);
        }),
    };

    let server = Server::bind(("127.0.0.1", port), Config::new())?;
    // The real port, when the OS picked it.
    println!("listening on http://{}/", server.local_addr());
    std::io::stdout().flush()?;
    server.serve(app())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// The first event of `/events`, sent with these extra header lines.
    fn first_event(addr: std::net::SocketAddr, extra: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /events HTTP/1.1\r\nHost: test\r\n{extra}\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let text = String::from_utf8_lossy(&got);
            if let Some(at) = text.find("id: ")
                && let Some(len) = text[at..].find("\n\n")
            {
                return text[at..at + len + 2].to_string();
            }
            let n = s.read(&mut buf).unwrap();
            assert_ne!(n, 0, "closed before an event: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn counts_from_after_the_last_event_id() {
        let handle = Server::bind("127.0.0.1:0", Config::new())
            .unwrap()
            .spawn(app())
            .unwrap();
        let addr = handle.local_addr();
        assert_eq!(first_event(addr, ""), "id: 1\ndata: 1\n\n");
        assert_eq!(
            first_event(addr, "Last-Event-ID: 41\r\n"),
            "id: 42\ndata: 42\n\n"
        );
        assert_eq!(
            first_event(addr, "Last-Event-ID: soon\r\n"),
            "id: 1\ndata: 1\n\n"
        );
        // Those clients have gone: each stream ends when a write fails (the
        // first write after the client's close still goes out).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while handle.active_connections() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a stream outlived its client"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.shutdown();
    }
}
