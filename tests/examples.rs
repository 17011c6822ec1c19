//! The examples that are apps of their own: `chat` (a WebSocket broadcast
//! hub and its page), `events` (a counter over server-sent events and its
//! page) and `todo` (a JSON API on SQLite). Their sources are compiled in
//! here, so each test serves the very `app()` the example serves, in
//! process, on both engines; their own tests (`chat::tests`,
//! `events::tests`) come along and run here too. tests/browser.rs drives
//! the two pages in headless Chromium. The last tests run the built
//! example binaries and check the line they start with.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::Role;

use crate::util::{IO_TIMEOUT, Resp, TestServer, read_head_only, start, test_config};

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
pub mod chat;

#[path = "../examples/events.rs"]
#[allow(dead_code)]
pub mod events;

#[path = "../examples/todo.rs"]
#[allow(dead_code)]
pub mod todo;

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

// ---------------------------------------------------------------------------
// todo: a JSON API on SQLite

/// An answer of the todo API: the response, and its body as JSON (`Null`
/// when there is none, or it is not `application/json`).
#[derive(Debug)]
pub struct Answer {
    pub resp: Resp,
    pub json: Value,
}

/// Sends `method path`, with `body` as JSON if given, on the kept-alive
/// connection `s`, and reads the answer. Never panics, so that a client
/// among many that fails says what failed.
pub fn ask(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Answer, String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{method} {path}: write: {e}"))?;
    let resp = coserve_http1::read_response(s, method == "HEAD")
        .map_err(|e| format!("{method} {path}: {e}"))?;
    // The router's own answers (a 405, a 404 for another path) are text.
    let json = if resp.body.is_empty() || resp.header("content-type") != Some("application/json") {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body)
            .map_err(|e| format!("{method} {path}: not JSON ({e}): {:?}", resp.text()))?
    };
    Ok(Answer { resp, json })
}

/// A todo as the API shows it.
pub fn todo_json(id: i64, title: &str, done: bool) -> Value {
    json!({"id": id, "title": title, "done": done})
}

mod todo_api {
    use super::*;

    /// A todo server on the database file `db`, created if missing.
    fn start_todo(db: &Path) -> TestServer {
        start(test_config(), todo::app(db).expect("open the database"))
    }

    /// `ask`, failing the test on an error.
    #[track_caller]
    fn call(s: &mut TcpStream, method: &str, path: &str, body: Option<&str>) -> Answer {
        ask(s, method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A JSON answer with `status` and `json` as its body.
    #[track_caller]
    fn assert_json(a: &Answer, status: u16, json: &Value) {
        assert_eq!(a.resp.status, status, "{a:?}");
        assert_eq!(
            a.resp.header("content-type"),
            Some("application/json"),
            "{a:?}"
        );
        assert_eq!(&a.json, json, "{a:?}");
    }

    /// An error answer with `status`: `{"error": "..."}` as JSON.
    #[track_caller]
    fn assert_error(a: &Answer, status: u16) {
        assert_eq!(a.resp.status, status, "{a:?}");
        assert_eq!(
            a.resp.header("content-type"),
            Some("application/json"),
            "{a:?}"
        );
        let fields = a.json.as_object().unwrap_or_else(|| panic!("{a:?}"));
        assert_eq!(fields.len(), 1, "{a:?}");
        assert!(
            fields["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{a:?}"
        );
    }

    /// A `405` that allows exactly `allowed`.
    #[track_caller]
    fn assert_not_allowed(a: &Answer, allowed: &[&str]) {
        assert_eq!(a.resp.status, 405, "{a:?}");
        let allow = a
            .resp
            .header("allow")
            .unwrap_or_else(|| panic!("no Allow: {a:?}"));
        let mut got: Vec<&str> = allow.split(',').map(str::trim).collect();
        got.sort_unstable();
        let mut want = allowed.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{a:?}");
    }

    /// One of the thousand clients, `i`: connects, waits until all have,
    /// then creates `todo {i}`, updates it and reads it back on one
    /// connection; lists them all if `i % 10 == 5`, and deletes its todo
    /// if `i % 10 == 0`. Returns the todo it left, if any.
    fn todo_client(
        addr: SocketAddr,
        i: usize,
        all_connected: &Barrier,
    ) -> Result<Option<Value>, String> {
        let conn = coserve_http1::connect(addr, IO_TIMEOUT);
        // Everyone waits here, connected or not, so that all start at once.
        all_connected.wait();
        let s = &mut conn.map_err(|e| format!("connect: {e}"))?;
        let title = format!("todo {i}");
        let created = ask(
            s,
            "POST",
            "/todos",
            Some(&json!({"title": title}).to_string()),
        )?;
        let id = created.json["id"]
            .as_i64()
            .filter(|_| created.resp.status == 201)
            .ok_or_else(|| format!("POST: {created:?}"))?;
        if created.json != todo_json(id, &title, false)
            || created.resp.header("location") != Some(&format!("/todos/{id}"))
        {
            return Err(format!("POST: {created:?}"));
        }
        let path = format!("/todos/{id}");
        let title = format!("todo {i}, done");
        let want = todo_json(id, &title, true);
        let body = json!({"title": title, "done": true}).to_string();
        let updated = ask(s, "PATCH", &path, Some(&body))?;
        if (updated.resp.status, &updated.json) != (200, &want) {
            return Err(format!("PATCH: {updated:?}"));
        }
        let read = ask(s, "GET", &path, None)?;
        if (read.resp.status, &read.json) != (200, &want) {
            return Err(format!("GET: {read:?}"));
        }
        if i % 10 == 5 {
            let all = ask(s, "GET", "/todos", None)?;
            let holds_mine = all.json.as_array().is_some_and(|a| a.contains(&want));
            if all.resp.status != 200 || !holds_mine {
                return Err(format!("GET /todos without {want}: {all:?}"));
            }
        }
        if !i.is_multiple_of(10) {
            return Ok(Some(want));
        }
        let deleted = ask(s, "DELETE", &path, None)?;
        if deleted.resp.status != 204 {
            return Err(format!("DELETE: {deleted:?}"));
        }
        let gone = ask(s, "GET", &path, None)?;
        if gone.resp.status != 404 {
            return Err(format!("GET after DELETE: {gone:?}"));
        }
        Ok(None)
    }

    crate::engine_tests! {
        /// Every answer of the API, in one session on one kept-alive
        /// connection (so that each answer's framing is checked by the
        /// next): list, create, read, update, delete, and each error.
        #[test]
        fn todo_answers_every_request_as_documented() {
            let dir = tempfile::tempdir().unwrap();
            let server = start_todo(&dir.path().join("todos.db"));
            let mut s = server.connect();
            let s = &mut s;

            assert_json(&call(s, "GET", "/todos", None), 200, &json!([]));

            // Create: 201, where it is, and what it is.
            let milk = call(s, "POST", "/todos", Some(r#"{"title": "buy milk"}"#));
            assert_json(&milk, 201, &todo_json(1, "buy milk", false));
            assert_eq!(milk.resp.header("location"), Some("/todos/1"), "{milk:?}");
            let dog_body = r#"{"title": "walk the dog \u2713 \"now\""}"#;
            let dog = call(s, "POST", "/todos", Some(dog_body));
            assert_json(&dog, 201, &todo_json(2, "walk the dog \u{2713} \"now\"", false));
            assert_eq!(dog.resp.header("location"), Some("/todos/2"), "{dog:?}");
            // `done` may come along; other fields are ignored.
            let done = call(s, "POST", "/todos", Some(r#"{"title": "", "done": true, "x": 1}"#));
            assert_json(&done, 201, &todo_json(3, "", true));
            assert_eq!(done.resp.header("location"), Some("/todos/3"), "{done:?}");

            // Read: in id order, one by one, and HEAD.
            assert_json(
                &call(s, "GET", "/todos", None),
                200,
                &json!([
                    todo_json(1, "buy milk", false),
                    todo_json(2, "walk the dog \u{2713} \"now\"", false),
                    todo_json(3, "", true),
                ]),
            );
            assert_json(&call(s, "GET", "/todos/1", None), 200, &todo_json(1, "buy milk", false));
            let head = call(s, "HEAD", "/todos/1", None);
            assert_eq!(head.resp.status, 200, "{head:?}");
            assert_eq!(head.resp.header("content-type"), Some("application/json"));

            // Update: either field, or both; the rest stays.
            assert_json(
                &call(s, "PATCH", "/todos/1", Some(r#"{"done": true}"#)),
                200,
                &todo_json(1, "buy milk", true),
            );
            assert_json(
                &call(s, "PATCH", "/todos/1", Some(r#"{"title": "buy oat milk"}"#)),
                200,
                &todo_json(1, "buy oat milk", true),
            );
            assert_json(
                &call(s, "PATCH", "/todos/1", Some(r#"{"title": "buy milk", "done": false}"#)),
                200,
                &todo_json(1, "buy milk", false),
            );
            assert_json(&call(s, "PATCH", "/todos/3", Some("{}")), 200, &todo_json(3, "", true));
            assert_json(&call(s, "GET", "/todos/1", None), 200, &todo_json(1, "buy milk", false));

            // Bodies that are not what the API takes: 400, and nothing changes.
            for body in [
                r#"{"title": "unclosed"#,
                "",
                "not json",
                r#"["buy milk"]"#,
                r#""buy milk""#,
                "{}",
                r#"{"done": true}"#,
                r#"{"title": 5}"#,
                r#"{"title": null}"#,
                r#"{"title": ["buy milk"]}"#,
                r#"{"title": "buy milk", "done": "yes"}"#,
                r#"{"title": "buy milk", "done": 1}"#,
            ] {
                assert_error(&call(s, "POST", "/todos", Some(body)), 400);
            }
            for body in [
                "{",
                "",
                "[]",
                "true",
                r#"{"done": "yes"}"#,
                r#"{"done": null}"#,
                r#"{"done": 0}"#,
                r#"{"title": 7}"#,
                r#"{"title": "ok", "done": "no"}"#,
            ] {
                assert_error(&call(s, "PATCH", "/todos/1", Some(body)), 400);
            }
            assert_json(&call(s, "GET", "/todos/1", None), 200, &todo_json(1, "buy milk", false));

            // A body of exactly 64 KiB is taken; one byte more is a 413,
            // for a create as for an update.
            let frame = r#"{"title": ""}"#.len();
            let long = "x".repeat(todo::MAX_BODY - frame);
            let body = format!(r#"{{"title": "{long}"}}"#);
            assert_eq!(body.len(), todo::MAX_BODY);
            let big = call(s, "POST", "/todos", Some(&body));
            assert_json(&big, 201, &todo_json(4, &long, false));
            let over = format!(r#"{{"title": "{long}x"}}"#);
            assert_error(&call(s, "POST", "/todos", Some(&over)), 413);
            assert_error(&call(s, "PATCH", "/todos/1", Some(&over)), 413);
            // Even when it is not JSON: the length is checked first.
            assert_error(&call(s, "POST", "/todos", Some(&"{".repeat(todo::MAX_BODY + 1))), 413);
            assert_json(&call(s, "GET", "/todos/1", None), 200, &todo_json(1, "buy milk", false));

            // Ids that name no todo, or are not numbers written plainly: 404.
            let too_big = "99999999999999999999";
            for id in ["99", "0", "-1", "abc", "01", "+1", "1.0", "1e0", "%31%32x", too_big] {
                let path = format!("/todos/{id}");
                assert_error(&call(s, "GET", &path, None), 404);
                assert_error(&call(s, "PATCH", &path, Some(r#"{"done": true}"#)), 404);
                assert_error(&call(s, "DELETE", &path, None), 404);
            }

            // Delete: 204 without a body (the next answer on this
            // connection would not parse after one), then 404.
            let deleted = call(s, "DELETE", "/todos/2", None);
            assert_eq!(deleted.resp.status, 204, "{deleted:?}");
            assert_eq!(deleted.resp.header("content-length"), None, "{deleted:?}");
            assert!(deleted.resp.body.is_empty(), "{deleted:?}");
            assert_error(&call(s, "GET", "/todos/2", None), 404);
            assert_error(&call(s, "DELETE", "/todos/2", None), 404);
            assert_error(&call(s, "PATCH", "/todos/2", Some(r#"{"done": true}"#)), 404);
            assert_eq!(call(s, "DELETE", "/todos/4", None).resp.status, 204);
            // Ids are not used again.
            let tea = call(s, "POST", "/todos", Some(r#"{"title": "tea"}"#));
            assert_json(&tea, 201, &todo_json(5, "tea", false));
            assert_eq!(tea.resp.header("location"), Some("/todos/5"), "{tea:?}");
            assert_json(
                &call(s, "GET", "/todos", None),
                200,
                &json!([
                    todo_json(1, "buy milk", false),
                    todo_json(3, "", true),
                    todo_json(5, "tea", false),
                ]),
            );

            // Other methods on these paths: 405 with what is allowed.
            for method in ["PUT", "DELETE", "PATCH"] {
                assert_not_allowed(&call(s, method, "/todos", None), &["GET", "HEAD", "POST"]);
            }
            let one = ["GET", "HEAD", "PATCH", "DELETE"];
            for (method, path) in [("PUT", "/todos/1"), ("POST", "/todos/1"), ("PUT", "/todos/x")] {
                assert_not_allowed(&call(s, method, path, Some("{}")), &one);
            }
            assert_eq!(call(s, "GET", "/todos/1/x", None).resp.status, 404);
            assert_eq!(call(s, "GET", "/", None).resp.status, 404);
        }

        /// What was written is there after a restart on the same file, and
        /// ids carry on from where they were.
        #[test]
        fn todo_data_survives_a_restart() {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("todos.db");
            let server = start_todo(&db);
            let mut s = server.connect();
            for title in ["one", "two", "three"] {
                let body = json!({"title": title}).to_string();
                assert_eq!(call(&mut s, "POST", "/todos", Some(&body)).resp.status, 201);
            }
            let patched = call(&mut s, "PATCH", "/todos/1", Some(r#"{"done": true}"#));
            assert_eq!(patched.resp.status, 200);
            assert_eq!(call(&mut s, "DELETE", "/todos/2", None).resp.status, 204);
            drop(s);
            drop(server);

            let server = start_todo(&db);
            let mut s = server.connect();
            assert_json(
                &call(&mut s, "GET", "/todos", None),
                200,
                &json!([todo_json(1, "one", true), todo_json(3, "three", false)]),
            );
            let four = call(&mut s, "POST", "/todos", Some(r#"{"title": "four"}"#));
            assert_json(&four, 201, &todo_json(4, "four", false));
        }

        /// A thousand clients at once, each on its own connection: each
        /// creates a todo, updates it and reads it back; every tenth also
        /// lists them all, every tenth deletes its own. No request fails,
        /// and the list afterwards is exactly what they left.
        #[test]
        fn todo_serves_a_thousand_clients_at_once_without_losing_a_write() {
            const CLIENTS: usize = 1000;
            let limit = coserve::raise_open_files_limit().expect("getrlimit");
            let need = 4 * CLIENTS as u64;
            assert!(limit >= need, "this test needs {need} descriptors; the limit is {limit}");
            let dir = tempfile::tempdir().unwrap();
            let server = start_todo(&dir.path().join("todos.db"));
            let addr = server.addr;
            let all_connected = Arc::new(Barrier::new(CLIENTS));
            let start = Instant::now();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let all_connected = all_connected.clone();
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn(move || todo_client(addr, i, &all_connected))
                        .expect("start a client thread")
                })
                .collect();

            let mut errors = BTreeMap::<String, usize>::new();
            let mut kept = Vec::new();
            for c in clients {
                match c.join().expect("a client thread panicked") {
                    Ok(Some(todo)) => kept.push(todo),
                    Ok(None) => {}
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
            }
            println!(
                "[todo] {:?}: {CLIENTS} clients, {} requests in {:.2?}",
                crate::util::engine(),
                CLIENTS * 3 + CLIENTS / 10 * 3,
                start.elapsed()
            );
            assert!(errors.is_empty(), "client errors: {errors:?}");
            kept.sort_by_key(|t| t["id"].as_i64());
            assert_eq!(kept.len(), CLIENTS - CLIENTS / 10);
            let mut s = server.connect();
            let all = call(&mut s, "GET", "/todos", None);
            assert_eq!(all.resp.status, 200);
            assert_eq!(all.json, Value::Array(kept), "the list is not what the clients left");
            // Every id was handed out once: the next is one past them all.
            let next = call(&mut s, "POST", "/todos", Some(r#"{"title": "last"}"#));
            assert_json(&next, 201, &todo_json(CLIENTS as i64 + 1, "last", false));
        }
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

/// Runs `binary 0 ARGS...`: its first line of output must be `listening
/// on http://127.0.0.1:PORT/` with a real port, which is returned with the
/// process.
fn run_example(binary: &Path, args: &[&std::ffi::OsStr]) -> (Running, SocketAddr) {
    let mut child = Running(
        Command::new(binary)
            .arg("0")
            .args(args)
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
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Runs `binary 0`, which must say where it listens, and where `/`
/// answers 200 with the page.
fn starts_and_says_where(binary: PathBuf, page_holds: &str) {
    let (mut child, addr) = run_example(&binary, &[]);
    let mut s = crate::util::connect(addr);
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

/// The todo binary takes a port and a database file, says where it
/// listens, and keeps what it was told when killed and run again on the
/// same file.
#[test]
fn the_todo_binary_says_where_it_listens_and_keeps_its_data() {
    let Some(binary) = example_binary("todo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todos.db");
    let (child, addr) = run_example(&binary, &[db.as_os_str()]);
    let mut s = crate::util::connect(addr);
    let created = ask(&mut s, "POST", "/todos", Some(r#"{"title": "survive"}"#)).unwrap();
    assert_eq!(created.resp.status, 201, "{created:?}");
    // Killed, not shut down: what was answered is on disk already.
    drop((s, child));

    let (_child, addr) = run_example(&binary, &[db.as_os_str()]);
    let mut s = crate::util::connect(addr);
    let all = ask(&mut s, "GET", "/todos", None).unwrap();
    assert_eq!(all.resp.status, 200, "{all:?}");
    assert_eq!(all.json, json!([todo_json(1, "survive", false)]));
}

/// The upload binary streams a large upload to disk with its memory flat:
/// 128 MiB with a `Content-Length` and 32 MiB chunked, each file read back
/// whole, and the server's peak RSS (`VmHWM`) grows by less than 16 MiB,
/// a tenth of what it was sent. A server that held the body would grow by
/// at least its size. `scripts/bench/upload.sh` measures a 1 GiB upload.
#[test]
fn the_upload_binary_streams_a_large_upload_with_flat_memory() {
    let Some(binary) = example_binary("upload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = run_example(&binary, &[dir.path().as_os_str()]);
    let pid = coserve_http1::procfs::Process::Pid(child.0.id());
    let before = crate::util::proc_status_kib(pid, "VmHWM");
    let piece: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    for (name, mib, chunked) in [("sized.bin", 128usize, false), ("chunked.bin", 32, true)] {
        let pieces = mib * 16;
        let mut s = crate::util::connect(addr);
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", pieces * piece.len())
        };
        write!(s, "PUT /{name} HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n").unwrap();
        for _ in 0..pieces {
            if chunked {
                write!(s, "{:x}\r\n", piece.len()).unwrap();
            }
            s.write_all(&piece).unwrap();
            if chunked {
                s.write_all(b"\r\n").unwrap();
            }
        }
        if chunked {
            s.write_all(b"0\r\n\r\n").unwrap();
        }
        let resp = crate::util::read_response(&mut s, false).expect("a response");
        assert_eq!(resp.status, 201, "{name}: {resp:?}");
        assert_eq!(
            resp.text(),
            format!("stored {} bytes\n", pieces * piece.len())
        );
        assert_eq!(resp.header("location"), Some(&*format!("/{name}")));
        // On disk, and served back, whole.
        let stored = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(stored.len(), pieces * piece.len(), "{name}");
        assert!(
            stored.chunks(piece.len()).all(|c| c == piece),
            "{name}: the bytes differ"
        );
        drop(stored);
        write!(s, "HEAD /{name} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let head = crate::util::read_response(&mut s, true).expect("a response");
        assert_eq!(
            head.header("content-length"),
            Some(&*(pieces * piece.len()).to_string())
        );
    }
    let grew = crate::util::proc_status_kib(pid, "VmHWM").saturating_sub(before);
    assert!(
        grew < 16 * 1024,
        "the server's peak RSS grew by {grew} KiB over 160 MiB of uploads"
    );
    // A name that is a path, or a hidden file, is refused.
    for bad in ["/.hidden", "/a%2Fb"] {
        let mut s = crate::util::connect(addr);
        write!(
            s,
            "PUT {bad} HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi"
        )
        .unwrap();
        let resp = crate::util::read_response(&mut s, false).expect("a response");
        assert_eq!(resp.status, 400, "{bad}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no partial files left"
    );
}
