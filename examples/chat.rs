//! A chat room: one page at `/` (HTML and a little JavaScript, nothing
//! fetched from elsewhere) and a WebSocket broadcast hub at `/ws`. A text
//! message from any client goes to every connected client, the sender
//! included, as the same text.
//!
//! ```sh
//! cargo run --example chat              # http://127.0.0.1:8080/
//! cargo run --example chat -- 0         # a port the OS picks
//! ```
//!
//! Open the page in two browser windows and type in either. Each
//! connection runs in blocking style on its own coroutine: it waits in
//! `ws.recv()`, and a message is handed to every other connection through
//! its `WsSender`, which wakes that connection's coroutine to send it.
//!
//! The hub takes any `Origin` and anyone who can reach the port: a real
//! chat would check who is connecting (`WsOptions::origins`, a login).
//!
//! `cargo test --example chat` runs the tests at the bottom; the
//! integration suite (tests/examples.rs, tests/browser.rs) serves this
//! same app to Rust clients and to headless Chromium.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use coserve::ws::{Message, WebSocket, Ws, WsOptions, WsSender};
use coserve::{Config, Request, Response, Router, Server};

/// The largest message a client may send, in bytes; a larger one closes
/// its connection (1009).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// The page: a list of messages, an input and a send button (Enter sends
/// too). Received text goes into the list with `textContent`, so markup in
/// a message is shown, not run.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>coserve chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  main { max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
  #status { margin: 0 0 1rem; color: #6b7280; font-size: .9rem; }
  #status.open { color: #15803d; }
  #status.closed { color: #b91c1c; }
  #messages { list-style: none; margin: 0 0 1rem; padding: .5rem; min-height: 12rem;
              max-height: 60vh; overflow-y: auto; background: #fff; border: 1px solid #d5d9e0;
              border-radius: 6px; }
  #messages li { padding: .35rem .5rem; border-bottom: 1px solid #eef0f3;
                 white-space: pre-wrap; overflow-wrap: anywhere; }
  #messages li:last-child { border-bottom: 0; }
  form { display: flex; gap: .5rem; }
  #text { flex: 1; font: inherit; padding: .45rem .6rem; border: 1px solid #bfc5cf; border-radius: 6px; }
  button { font: inherit; padding: .45rem 1rem; border: 0; border-radius: 6px;
           background: #2563eb; color: #fff; cursor: pointer; }
  button:disabled { background: #9ca3af; cursor: default; }
</style>
</head>
<body>
<main>
  <h1>coserve chat</h1>
  <p id="status">connecting&hellip;</p>
  <ul id="messages" aria-live="polite"></ul>
  <form id="form">
    <input id="text" autocomplete="off" maxlength="2000" placeholder="Say something" aria-label="Message" autofocus>
    <button id="send" type="submit" disabled>Send</button>
  </form>
</main>
<script>
"use strict";
const status = document.getElementById("status");
const list = document.getElementById("messages");
const form = document.getElementById("form");
const input = document.getElementById("text");
const button = document.getElementById("send");

const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/ws");

function setStatus(text, state) {
  status.textContent = text;
  status.className = state;
  document.body.dataset.state = state;
}

ws.addEventListener("open", () => {
  setStatus("connected", "open");
  button.disabled = false;
});
ws.addEventListener("close", () => {
  setStatus("disconnected: reload the page to join again", "closed");
  button.disabled = true;
});
ws.addEventListener("message", (event) => {
  if (typeof event.data !== "string") return;
  const item = document.createElement("li");
  item.textContent = event.data; // text, never markup
  list.append(item);
  list.scrollTop = list.scrollHeight;
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (input.value === "" || ws.readyState !== WebSocket.OPEN) return;
  ws.send(input.value);
  input.value = "";
  input.focus();
});
</script>
</body>
</html>
"#;

/// The page at `/` and the hub at `/ws`. The hub's state, a sender for
/// every open connection, lives in the `/ws` handler.
pub fn app() -> Router {
    let clients: Arc<Mutex<Vec<WsSender>>> = Arc::default();
    let hub = Ws::new(move |_req: &Request, mut ws: WebSocket<'_>| {
        let me = ws.sender();
        clients.lock().unwrap().push(me.clone());
        // Until the client leaves (or goes silent, or the server stops).
        while let Ok(msg) = ws.recv() {
            // Text only: a binary message is not a chat line.
            let Message::Text(text) = msg else { continue };
            // A copy of the list, so that no lock is held while sending. A
            // send to a connection that has just ended fails; that one
            // takes itself off the list below.
            let everyone = clients.lock().unwrap().clone();
            for client in everyone {
                let _ = client.send(text.clone());
            }
        }
        clients.lock().unwrap().retain(|c| !c.same_connection(&me));
    })
    .options(WsOptions::new().max_message(MAX_MESSAGE));

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
        .ws("/ws", hub)
}

fn main() -> std::io::Result<()> {
    // The port is the first argument: 8080 by default, 0 for any free port.
    let port: u16 = match std::env::args().nth(1) {
        None => 8080,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: chat [PORT]   (not a port: {arg:?})");
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
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use tungstenite::protocol::Role;

    use super::*;

    type Client = tungstenite::WebSocket<TcpStream>;

    /// A WebSocket client on `/ws`, after a hand-written handshake.
    fn join(addr: SocketAddr) -> Client {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
        // The head, byte by byte, so that no frame after it is read here.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "closed in the head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        tungstenite::WebSocket::from_raw_socket(s, Role::Client, None)
    }

    fn say(c: &mut Client, text: &str) {
        c.send(tungstenite::Message::Text(text.into())).unwrap();
    }

    /// The next text message (pings are answered on the way).
    fn heard(c: &mut Client) -> String {
        loop {
            match c.read().unwrap() {
                tungstenite::Message::Text(t) => return t.as_str().to_string(),
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn everyone_hears_everyone() {
        let handle = Server::bind("127.0.0.1:0", Config::new())
            .unwrap()
            .spawn(app())
            .unwrap();
        let addr = handle.local_addr();

        // Each hears its own hello, which shows it has joined the hub.
        let mut ann = join(addr);
        say(&mut ann, "ann joined");
        assert_eq!(heard(&mut ann), "ann joined");
        let mut bob = join(addr);
        say(&mut bob, "bob joined");
        assert_eq!(heard(&mut bob), "bob joined");
        assert_eq!(heard(&mut ann), "bob joined");

        say(&mut ann, "<b>hi</b> & \"bye\"");
        for c in [&mut ann, &mut bob] {
            assert_eq!(heard(c), "<b>hi</b> & \"bye\"");
        }

        handle.shutdown();
    }
}
