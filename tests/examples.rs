//! The examples that are apps of their own: `chat` (a WebSocket broadcast
//! hub and its page) and `events` (a counter over server-sent events and
//! its page). Their sources are compiled in here, so each test serves the
//! very `app()` the example serves, in process, on both engines; their own
//! tests (`chat::tests`, `events::tests`) come along and run here too.
//! tests/browser.rs drives both pages in headless Chromium. The last tests
//! run the built example binaries and check the line they start with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::protocol::Role;

use crate::util::{Resp, TestServer, read_head_only, start, test_config};

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
pub mod chat;

#[path = "../examples/events.rs"]
#[allow(dead_code)]
pub mod events;

/// A WebSocket client.
pub type Client = tungstenite::WebSocket<TcpStream>;

/// A client on `path` after a hand-written handshake.
pub fn ws_connect(addr: SocketAddr, path: &str) -> Client {
    let mut s = crate::util::connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    // Byte by byte, so that no frame after the head is read here.
    let head = read_head_only(&mut s);
    assert_eq!(head.status, 101, "{head:?}");
    tungstenite::WebSocket::from_raw_socket(s, Role::Client, None)
}

/// Sends a text message.
pub fn say(c: &mut Client, text: &str) {
    c.send(tungstenite::Message::Text(text.into())).unwrap();
}

/// The next text message; pings are answered on the way, and anything
/// else fails the test.
pub fn heard(c: &mut Client) -> String {
    loop {
        match c.read().unwrap() {
            tungstenite::Message::Text(t) => return t.as_str().to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// A client of the chat that has joined the hub: it has heard its own
/// `hello` back, so every message sent from now on reaches it.
pub fn join_chat(addr: SocketAddr, hello: &str) -> Client {
    let mut c = ws_connect(addr, "/ws");
    say(&mut c, hello);
    assert_eq!(heard(&mut c), hello);
    c
}

/// An open `text/event-stream` response, read event by event.
struct EventStream {
    s: TcpStream,
    head: Resp,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// The de-chunked stream, from the start of the next event.
    text: String,
}

/// One event's fields, in order (comments left out).
type Fields = Vec<(String, String)>;

impl EventStream {
    /// `GET path` with extra header fields on a fresh connection; the
    /// response head has been read.
    fn open(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut s = server.connect();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let head = read_head_only(&mut s);
        EventStream {
            s,
            head,
            raw: Vec::new(),
            text: String::new(),
        }
    }

    /// The next event, waiting up to 10 s for it.
    fn next(&mut self) -> Fields {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let fields: Fields = block
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with(':'))
                    .map(|l| {
                        let (name, value) = l.split_once(':').unwrap_or((l, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        (name.to_string(), value.to_string())
                    })
                    .collect();
                if !fields.is_empty() {
                    return fields;
                }
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no event within 10 s; have {:?}", self.text));
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 1024];
            let n = self.s.read(&mut buf).unwrap();
            assert_ne!(n, 0, "the stream ended; have {:?}", self.text);
            self.raw.extend_from_slice(&buf[..n]);
            self.dechunk();
        }
    }

    /// Moves every complete chunk from `raw` to `text`.
    fn dechunk(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            assert_ne!(size, 0, "the stream ended; have {:?}", self.text);
            let start = eol + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            assert_eq!(&self.raw[start + size..start + size + 2], b"\r\n");
            self.text
                .push_str(std::str::from_utf8(&self.raw[start..start + size]).unwrap());
            self.raw.drain(..start + size + 2);
        }
    }
}

impl Drop for EventStream {
    /// Leaves with a reset, so that the handler's next write fails (a
    /// write after a plain close would still go out, and only the one
    /// after it fail).
    fn drop(&mut self) {
        let _ = socket2::SockRef::from(&self.s).set_linger(Some(Duration::ZERO));
    }
}

/// Waits until every connection to `server` has ended: an event stream
/// whose client left ends at the handler's next write, at most an
/// interval later. Then the server's shutdown has nothing to wait for.
/// (A shutdown that starts as a stream is about to end can wait out its
/// whole grace period: `Serving::shut_down` in src/server/registry.rs
/// waits again after its second sweep without checking whether the last
/// connection ended meanwhile.)
pub fn wait_all_closed(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.handle.active_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} connections still open after 10 s",
            server.handle.active_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

crate::engine_tests! {
    /// `/events` counts from 1, one event a second, each with its count
    /// as id and data, never cached.
    #[test]
    fn events_count_from_one() {
        let server = start(test_config(), events::app());
        let mut stream = EventStream::open(&server, "/events", &[]);
        let head = &stream.head;
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.header("content-type"), Some("text/event-stream"), "{head:?}");
        assert_eq!(head.header("cache-control"), Some("no-cache"), "{head:?}");
        assert_eq!(head.header("transfer-encoding"), Some("chunked"), "{head:?}");
        assert_eq!(stream.next(), fields(&[("id", "1"), ("data", "1")]));
        let first = Instant::now();
        assert_eq!(stream.next(), fields(&[("id", "2"), ("data", "2")]));
        // Not sooner than the interval (later is the machine's business).
        let gap = first.elapsed();
        assert!(gap >= events::INTERVAL - Duration::from_millis(100), "{gap:?}");
        // The client leaves: the stream ends.
        drop(stream);
        wait_all_closed(&server);
    }

    /// A client that reconnects with `Last-Event-ID: 41` resumes at 42; an
    /// id that is not a number starts over.
    #[test]
    fn events_resume_after_the_last_event_id() {
        let server = start(test_config(), events::app());
        let mut resumed = EventStream::open(&server, "/events", &[("Last-Event-ID", "41")]);
        assert_eq!(resumed.head.header("content-type"), Some("text/event-stream"));
        assert_eq!(resumed.next(), fields(&[("id", "42"), ("data", "42")]));
        let mut not_a_number = EventStream::open(&server, "/events", &[("Last-Event-ID", "x")]);
        assert_eq!(not_a_number.next(), fields(&[("id", "1"), ("data", "1")]));
        // The largest id: the count stays there rather than overflow.
        let max = u64::MAX.to_string();
        let mut at_max = EventStream::open(&server, "/events", &[("Last-Event-ID", &max)]);
        assert_eq!(at_max.next(), fields(&[("id", &max), ("data", &max)]));
        // The clients leave: the streams end.
        drop((resumed, not_a_number, at_max));
        wait_all_closed(&server);
    }

    /// Each page is served whole, as HTML that loads nothing from
    /// elsewhere; `HEAD /events` gets the head of a stream and no events.
    #[test]
    fn the_pages_are_self_contained_html() {
        for (app, needle) in [(chat::app(), "new WebSocket("), (events::app(), "new EventSource(\"/events\")")] {
            let server = start(test_config(), app);
            let resp = server.get("/");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"));
            let csp = resp.header("content-security-policy").expect("a CSP");
            assert!(csp.starts_with("default-src 'none';"), "{csp}");
            let page = resp.text();
            assert!(page.starts_with("<!doctype html>") && page.contains(needle), "{page}");
            // Nothing fetched from elsewhere, and no received text put in
            // as markup.
            for banned in ["http://", "https://", "src=", "href=", "url(", "@import", "innerHTML"] {
                assert!(!page.contains(banned), "{banned} in the page");
            }
            assert_eq!(server.get("/nowhere").status, 404);
        }
        let server = start(test_config(), events::app());
        let resp = server.one(b"HEAD /events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    }

    /// Two clients each hear both messages, their own included, as sent;
    /// a binary message goes nowhere; a client that left is dropped from
    /// the hub and the rest carry on.
    #[test]
    fn chat_clients_hear_each_other_and_themselves() {
        let server = start(test_config(), chat::app());
        let mut ann = join_chat(server.addr, "ann is here");
        let mut bob = join_chat(server.addr, "bob is here");
        assert_eq!(heard(&mut ann), "bob is here");

        let from_ann = "<b>hi</b> & \"welcome\" \u{2713}";
        say(&mut ann, from_ann);
        assert_eq!(heard(&mut ann), from_ann);
        assert_eq!(heard(&mut bob), from_ann);
        say(&mut bob, "thanks\nann");
        assert_eq!(heard(&mut bob), "thanks\nann");
        assert_eq!(heard(&mut ann), "thanks\nann");

        // Messages from one client go out in order: had the binary one
        // been passed on, it would come before the text.
        bob.send(tungstenite::Message::Binary(vec![1, 2, 3].into())).unwrap();
        say(&mut bob, "after the binary");
        assert_eq!(heard(&mut ann), "after the binary");
        assert_eq!(heard(&mut bob), "after the binary");

        let mut cat = join_chat(server.addr, "cat is here");
        assert_eq!(heard(&mut ann), "cat is here");
        assert_eq!(heard(&mut bob), "cat is here");
        bob.close(None).unwrap();
        while bob.read().is_ok() {}
        say(&mut cat, "bye bob");
        assert_eq!(heard(&mut ann), "bye bob");
        assert_eq!(heard(&mut cat), "bye bob");
    }

    /// A message over the limit closes its sender's connection with 1009;
    /// nobody hears it.
    #[test]
    fn an_oversized_chat_message_closes_its_connection() {
        let server = start(test_config(), chat::app());
        let mut ann = join_chat(server.addr, "ann");
        let mut bob = join_chat(server.addr, "bob");
        assert_eq!(heard(&mut ann), "bob");
        say(&mut bob, &"x".repeat(chat::MAX_MESSAGE + 1));
        let code = loop {
            match bob.read() {
                Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        };
        assert_eq!(code, Some(1009));
        say(&mut ann, "still here");
        assert_eq!(heard(&mut ann), "still here");
    }
}

/// The example binary `name` as `cargo test` (or `cargo build --examples`)
/// builds it beside this test binary: `target/debug/examples/NAME`. `None`
/// (with a notice) when it is not there, which fails the test when `CI` is
/// set.
fn example_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/tests-HASH -> target/debug/examples/NAME
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/PROFILE/deps")
        .join("examples")
        .join(name);
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "the example binary {} is not built: `cargo build --example {name}` \
         (plain `cargo test` builds it)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipping the {name} binary's test: {msg}");
    None
}

/// A child process, killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `binary 0`: its first line of output must be `listening on
/// http://127.0.0.1:PORT/` with the port it really listens on, where `/`
/// answers 200 with the page.
fn starts_and_says_where(binary: PathBuf, page_holds: &str) {
    let mut child = Running(
        Command::new(&binary)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display())),
    );
    let stdout = child.0.stdout.take().unwrap();
    // The first line, read on a thread of its own so that the wait has a
    // deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{}: no line within 20 s", binary.display()));
    let re = regex::Regex::new(r"^listening on http://127\.0\.0\.1:(\d+)/\n$").unwrap();
    let port: u16 = re
        .captures(&line)
        .unwrap_or_else(|| panic!("{}: first line {line:?}", binary.display()))[1]
        .parse()
        .unwrap();
    assert_ne!(port, 0, "{line:?}");

    let mut s = crate::util::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = crate::util::read_response(&mut s, false).expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.text().contains(page_holds), "{}", resp.text());
    assert!(
        matches!(child.0.try_wait(), Ok(None)),
        "the example exited while serving"
    );
}

#[test]
fn the_chat_binary_says_where_it_listens() {
    if let Some(binary) = example_binary("chat") {
        starts_and_says_where(binary, "<title>coserve chat</title>");
    }
}

#[test]
fn the_events_binary_says_where_it_listens() {
    if let Some(binary) = example_binary("events") {
        starts_and_says_where(binary, "<title>coserve events</title>");
    }
}
