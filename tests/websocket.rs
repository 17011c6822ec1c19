//! Upgrades and WebSocket, on both engines and over TLS: the handshake's
//! accept/reject table, echo, fragments, ping/pong, close codes, limits,
//! the idle timeout and shutdown. The client is tungstenite's protocol
//! over a socket, after a handshake written here by hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coserve::ws::{WebSocket, Ws, WsError, WsOptions};
use coserve::{Request, Response, Router};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::util::{TestServer, read_response, start, test_config};

/// The key of RFC 6455's example, and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub(crate) fn handshake_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// Echoes every message until the connection ends; counts how each ended.
fn echo(ended: Arc<std::sync::Mutex<Vec<String>>>) -> Ws {
    Ws::new(move |_req, mut ws: WebSocket<'_>| {
        let why = loop {
            match ws.recv() {
                Ok(msg) => {
                    if let Err(e) = ws.send(msg) {
                        break e;
                    }
                }
                Err(e) => break e,
            }
        };
        ended.lock().unwrap().push(match why {
            WsError::Closed(Some((code, _))) => format!("closed {code}"),
            WsError::Closed(None) => "closed".into(),
            WsError::TimedOut => "timed out".into(),
            WsError::ShuttingDown => "shutting down".into(),
            WsError::TooLarge => "too large".into(),
            other => format!("{other}"),
        });
    })
}

struct Echo {
    server: TestServer,
    ended: Arc<std::sync::Mutex<Vec<String>>>,
}

fn echo_server(options: WsOptions) -> Echo {
    let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = Router::new()
        .ws("/echo", echo(ended.clone()).options(options))
        .get("/", |_req| "plain");
    Echo {
        server: start(test_config(), app),
        ended,
    }
}

pub(crate) type Client = tungstenite::WebSocket<TcpStream>;

/// A client connected to `path` after a hand-written handshake (and
/// `first`, sent in the same write as the request).
pub(crate) fn connect_with(addr: SocketAddr, path: &str, extra: &str, first: &[u8]) -> Client {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = handshake_request(path, extra).into_bytes();
    request.extend_from_slice(first);
    s.write_all(&request).unwrap();
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nSec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    assert!(head.contains("\r\nUpgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nConnection: Upgrade\r\n"), "{head}");
    let config = WebSocketConfig::default()
        .max_frame_size(None)
        .max_message_size(None);
    tungstenite::WebSocket::from_raw_socket(s, Role::Client, Some(config))
}

fn connect(addr: SocketAddr) -> Client {
    connect_with(addr, "/echo", "", b"")
}

/// A response head, byte by byte, so that nothing after it is read.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "closed in the head: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A masked client frame.
pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The close code the server sent, reading until its close frame.
pub(crate) fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match client.read() {
            Ok(tungstenite::Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

fn wait_ended(echo: &Echo, n: usize) -> Vec<String> {
    let ok = crate::util::eventually(Duration::from_secs(10), || {
        echo.ended.lock().unwrap().len() >= n
    });
    assert!(ok, "{:?}", echo.ended.lock().unwrap());
    echo.ended.lock().unwrap().clone()
}

crate::engine_tests! {
    /// What each malformed handshake gets, and the right one's answer.
    #[test]
    fn the_handshake_accepts_and_refuses_as_rfc_6455_says() {
        let echo = echo_server(WsOptions::new().origins(["https://ok.example"]).protocols(["v2", "v1"]));
        let base = handshake_request("/echo", "");
        type Case = (String, u16, Option<(&'static str, &'static str)>);
        let cases: Vec<Case> = vec![
            ("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n".into(), 426, Some(("sec-websocket-version", "13"))),
            (base.replace("GET", "POST"), 405, Some(("allow", "GET"))),
            (base.replace("Version: 13", "Version: 8"), 426, Some(("sec-websocket-version", "13"))),
            (base.replace("Upgrade: websocket", "Upgrade: h2c"), 426, None),
            (base.replace("keep-alive, Upgrade", "keep-alive"), 426, None),
            (base.replace(KEY, "c2hvcnQ="), 400, None),
            (base.replace(KEY, "not base64!"), 400, None),
            (base.replace("HTTP/1.1", "HTTP/1.0"), 426, None),
            (handshake_request("/echo", "Origin: https://evil.example\r\n"), 403, None),
        ];
        for (request, status, header) in cases {
            let mut s = echo.server.connect();
            s.write_all(request.as_bytes()).unwrap();
            let r = read_response(&mut s, false).expect("a response");
            assert_eq!(r.status, status, "{request:?}");
            if let Some((name, value)) = header {
                assert_eq!(r.header(name), Some(value), "{request:?}");
            }
        }
        // An allowed origin, and the first of our subprotocols it offers.
        let mut s = echo.server.connect();
        let request = handshake_request(
            "/echo",
            "Origin: https://OK.example\r\nSec-WebSocket-Protocol: v1, v2\r\n",
        );
        s.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("\r\nSec-WebSocket-Protocol: v2\r\n"), "{head}");
        // Plain routes still answer on the same server.
        let r = crate::util::request(&echo.server, "GET", "/", &[]);
        assert_eq!(r.text(), "plain");
    }

    /// Text and binary come back as they went, fragmented messages joined,
    /// a frame sent with the handshake kept, pings answered with pongs, and
    /// the client's close answered with the same code.
    #[test]
    fn echo_fragments_ping_and_close() {
        let echo = echo_server(WsOptions::new());
        let mut early = frame(true, 1, b"sent with the handshake");
        early.extend(frame(true, 9, b"are you there"));
        let mut c = connect_with(echo.server.addr, "/echo", "", &early);
        assert_eq!(c.read().unwrap(), tungstenite::Message::Text("sent with the handshake".into()));
        assert_eq!(c.read().unwrap(), tungstenite::Message::Pong("are you there".into()));
        c.send(tungstenite::Message::Text("héllo".into())).unwrap();
        assert_eq!(c.read().unwrap(), tungstenite::Message::Text("héllo".into()));
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.send(tungstenite::Message::Binary(big.clone().into())).unwrap();
        assert_eq!(c.read().unwrap(), tungstenite::Message::Binary(big.into()));
        // A text message in three fragments, a ping between them.
        let raw = c.get_mut();
        let mut bytes = frame(false, 1, b"one ");
        bytes.extend(frame(false, 0, b"two "));
        bytes.extend(frame(true, 9, b""));
        bytes.extend(frame(true, 0, b"three"));
        raw.write_all(&bytes).unwrap();
        assert_eq!(c.read().unwrap(), tungstenite::Message::Pong("".into()));
        assert_eq!(c.read().unwrap(), tungstenite::Message::Text("one two three".into()));
        c.close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
        assert_eq!(close_code(&mut c), Some(1000));
        assert_eq!(wait_ended(&echo, 1), ["closed 1000"]);
    }

    /// A message over the maximum closes with 1009, without the server
    /// reading it whole; a frame over it too; text that is not UTF-8
    /// closes with 1007; an unmasked frame (a protocol error) with 1002.
    #[test]
    fn limits_and_protocol_errors_have_their_close_codes() {
        let echo = echo_server(WsOptions::new().max_message(1000).max_frame(600));
        let cases: Vec<(Vec<u8>, u16)> = vec![
            // Two fragments of 500: the message is over 1000.
            ([frame(false, 2, &[7; 500]), frame(false, 0, &[7; 500]), frame(true, 0, &[7; 500])].concat(), 1009),
            (frame(true, 2, &[7; 700]), 1009),
            (frame(true, 1, &[0xff, 0xfe]), 1007),
            (vec![0x81, 0x02, b'h', b'i'], 1002),
        ];
        for (i, (bytes, code)) in cases.into_iter().enumerate() {
            let mut c = connect(echo.server.addr);
            c.get_mut().write_all(&bytes).unwrap();
            assert_eq!(close_code(&mut c), Some(code), "case {i}");
        }
        let ended = wait_ended(&echo, 4);
        assert_eq!(ended.iter().filter(|e| *e == "too large").count(), 2, "{ended:?}");
    }

    /// A silent client is pinged after the ping interval and closed with
    /// 1001 at the idle timeout; one that answers pings stays open.
    #[test]
    fn a_silent_client_is_pinged_then_closed() {
        let echo = echo_server(
            WsOptions::new()
                .ping_interval(Duration::from_millis(200))
                .idle_timeout(Duration::from_millis(700)),
        );
        // Silent: its socket is read raw, so no pong ever goes back.
        let mut silent = connect(echo.server.addr);
        let started = Instant::now();
        let mut raw = Vec::new();
        silent.get_mut().read_to_end(&mut raw).unwrap();
        let waited = started.elapsed();
        // A ping (0x89, empty), then a close (0x88) with 1001.
        assert_eq!(&raw[..2], &[0x89, 0x00], "{raw:?}");
        let close = raw.windows(2).position(|w| w[0] == 0x88).expect("a close frame");
        assert_eq!(&raw[close + 2..close + 4], &1001u16.to_be_bytes(), "{raw:?}");
        assert!(waited >= Duration::from_millis(600) && waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(wait_ended(&echo, 1), ["timed out"]);
        // Answering: tungstenite's client sends the pong on its next read.
        let mut answering = connect(echo.server.addr);
        answering.get_mut().set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let until = Instant::now() + Duration::from_millis(1500);
        let mut pings = 0;
        while Instant::now() < until {
            match answering.read() {
                Ok(tungstenite::Message::Ping(_)) => pings += 1,
                Ok(other) => panic!("{other:?}"),
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("closed while answering pings: {e}"),
            }
        }
        assert!(pings >= 3, "{pings} pings");
        answering.send(tungstenite::Message::Text("still here".into())).unwrap();
        answering.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        loop {
            match answering.read().unwrap() {
                tungstenite::Message::Text(t) => break assert_eq!(t.as_str(), "still here"),
                tungstenite::Message::Ping(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    /// Every client gets every message, its own included, in order, sent
    /// from the coroutine (or thread) of the client that sent it; a client
    /// that left is dropped from the hub.
    #[test]
    fn senders_on_other_coroutines_reach_every_client() {
        let server = start(test_config(), Router::new().ws("/hub", hub()));
        let mut clients: Vec<Client> = Vec::new();
        for i in 0..5 {
            clients.push(connect_with(server.addr, "/hub", "", b""));
            // Its hello reaching everyone, itself included, proves it is
            // registered.
            let hello = format!("hello from {i}");
            clients[i].send(tungstenite::Message::Text(hello.clone().into())).unwrap();
            for (j, c) in clients.iter_mut().enumerate() {
                assert_eq!(texts(c, 1), std::slice::from_ref(&hello), "client {j}");
            }
        }
        for round in 0..3 {
            clients[round].send(tungstenite::Message::Text(format!("round {round}").into())).unwrap();
            for (i, c) in clients.iter_mut().enumerate() {
                assert_eq!(texts(c, 1), [format!("round {round}")], "client {i}");
            }
        }
        let mut gone = clients.remove(4);
        gone.close(None).unwrap();
        while gone.read().is_ok() {}
        clients[0].send(tungstenite::Message::Text("after".into())).unwrap();
        for c in &mut clients {
            assert_eq!(texts(c, 1), ["after"]);
        }
    }

    /// A blocking connection's senders' frames keep their order and stay
    /// whole when the client's socket fills.
    #[test]
    fn a_blocking_connections_sender_keeps_order_through_a_full_socket() {
        let slot: Arc<std::sync::Mutex<Option<coserve::ws::WsSender>>> = Arc::default();
        let opened = slot.clone();
        let ws = Ws::new(move |_req, mut ws: WebSocket<'_>| {
            *opened.lock().unwrap() = Some(ws.sender());
            while let Ok(msg) = ws.recv() {
                if ws.send(msg).is_err() {
                    break;
                }
            }
        });
        let server = start(test_config(), Router::new().ws("/events", ws));
        let mut c = connect_with(server.addr, "/events", "", b"");
        assert!(crate::util::eventually(Duration::from_secs(10), || slot.lock().unwrap().is_some()));
        let sender = slot.lock().unwrap().clone().unwrap();
        crate::websocket_events::in_order_through_a_full_socket(&sender, &mut c, 1000, 20_000);
    }

    /// Shutdown sends close 1001 to an open WebSocket and the handler ends.
    #[test]
    fn shutdown_sends_going_away() {
        let echo = echo_server(WsOptions::new());
        let mut c = connect(echo.server.addr);
        c.send(tungstenite::Message::Text("x".into())).unwrap();
        assert_eq!(c.read().unwrap(), tungstenite::Message::Text("x".into()));
        echo.server.handle.shutdown();
        assert_eq!(close_code(&mut c), Some(1001));
        assert_eq!(wait_ended(&echo, 1), ["shutting down"]);
    }

    /// `Response::upgrade` hands the connection over with what the client
    /// sent after its head; HEAD and HTTP/1.0 cannot be upgraded (500).
    #[test]
    fn an_upgrade_gets_the_connection_and_the_bytes_read_ahead() {
        let upgraded = Arc::new(AtomicUsize::new(0));
        let count = upgraded.clone();
        let server = start(test_config(), move |req: &Request| {
            let count = count.clone();
            let path = req.path().to_string();
            Response::upgrade("echo", move |mut conn| {
                count.fetch_add(1, Ordering::SeqCst);
                assert_eq!(conn.request().path(), path);
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).and_then(|()| conn.flush()).is_err() {
                        break;
                    }
                }
            })
        });
        let mut s = server.connect();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nearly").unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head}");
        assert!(head.contains("\r\nUpgrade: echo\r\n") && head.contains("\r\nConnection: Upgrade\r\n"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("content-length"), "{head}");
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"early");
        s.write_all(b"later").unwrap();
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"later");
        drop(s);
        for request in [
            "HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET /x HTTP/1.0\r\nHost: t\r\n\r\n",
        ] {
            let mut s = server.connect();
            s.write_all(request.as_bytes()).unwrap();
            let r = read_response(&mut s, request.starts_with("HEAD")).expect("a response");
            assert_eq!(r.status, 500, "{request:?}");
        }
        assert_eq!(upgraded.load(Ordering::SeqCst), 1);
        // The upgraded connection counted as open while it ran, and is gone.
        let gone = crate::util::eventually(Duration::from_secs(10), || server.handle.active_connections() == 0);
        assert!(gone);
    }
}

/// A broadcast hub: each connection registers a sender; a text from any
/// client goes to every client, the sender included, from the coroutine
/// (or thread) that received it.
fn hub() -> Ws {
    let clients: Arc<std::sync::Mutex<Vec<coserve::ws::WsSender>>> = Arc::default();
    Ws::new(move |_req, mut ws: WebSocket<'_>| {
        let me = ws.sender();
        clients.lock().unwrap().push(me.clone());
        while let Ok(msg) = ws.recv() {
            let all = clients.lock().unwrap().clone();
            for client in all {
                let _ = client.send(msg.clone());
            }
        }
        clients.lock().unwrap().retain(|c| !c.same_connection(&me));
    })
}

/// Reads text messages until `n` have come (answering pings).
fn texts(c: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.read().unwrap() {
            tungstenite::Message::Text(t) => got.push(t.as_str().to_string()),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("{other:?}"),
        }
    }
    got
}

/// A sender outlives its connection and then refuses to send.
#[test]
fn a_sender_to_a_closed_connection_fails() {
    let (tx, rx) = std::sync::mpsc::channel();
    let ws = Ws::new(move |_req, mut ws: WebSocket<'_>| {
        tx.send(ws.sender()).unwrap();
        while ws.recv().is_ok() {}
    });
    let server = start(test_config(), Router::new().ws("/x", ws));
    let mut c = connect_with(server.addr, "/x", "", b"");
    let sender = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(sender.is_open());
    sender.send("queued").unwrap();
    assert_eq!(texts(&mut c, 1), ["queued"]);
    c.close(None).unwrap();
    while c.read().is_ok() {}
    let closed = crate::util::eventually(Duration::from_secs(10), || !sender.is_open());
    assert!(closed);
    assert!(matches!(sender.send("late"), Err(WsError::Closed(_))));
}

/// A handler that forgets its WebSocket (`mem::forget`, safe code)
/// rather than dropping it: once the server has closed the connection,
/// its sender refuses to send, and the connections that come after it
/// (which may get the closed socket's number) see nothing of it. Before,
/// the sender went on writing frames to the socket's number.
#[test]
fn a_forgotten_websocket_leaves_its_senders_closed() {
    let (tx, rx) = std::sync::mpsc::channel();
    let ws = Ws::new(move |_req, mut ws: WebSocket<'_>| {
        tx.send(ws.sender()).unwrap();
        std::mem::forget(ws);
    });
    let server = start(
        test_config(),
        Router::new().ws("/x", ws).get("/plain", |_| "plain"),
    );
    let mut c = connect_with(server.addr, "/x", "", b"");
    let sender = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The handler returned: the server closes the connection.
    while c.read().is_ok() {}
    // New connections, one of which may get the old socket's number.
    let mut others: Vec<TcpStream> = (0..4).map(|_| crate::util::connect(server.addr)).collect();
    assert!(!sender.is_open());
    assert!(matches!(sender.send("stray"), Err(WsError::Closed(_))));
    for s in &mut others {
        s.write_all(b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let out = crate::util::read_to_close(s);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(text.ends_with("\r\n\r\nplain"), "{text}");
    }
}

/// The same echo over TLS, and a hub whose sender wakes a connection
/// waiting in a TLS read, on both engines.
#[test]
fn websocket_over_tls() {
    for engine in [coserve::EngineKind::Coroutine, coserve::EngineKind::Thread] {
        crate::util::set_engine(engine);
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::make_named(dir.path(), "", &["localhost"]);
        let tls = coserve::TlsConfig::from_pem_files(
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
        )
        .unwrap();
        let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
        let app = Router::new()
            .ws("/echo", echo(ended.clone()))
            .ws("/hub", hub());
        // The same hub as callbacks (`WsEvents`): over TLS it keeps its
        // coroutine (or thread) and is woken to send.
        let events_hub: Arc<std::sync::Mutex<Vec<coserve::ws::WsSender>>> = Arc::default();
        let (joined, everyone) = (events_hub.clone(), events_hub);
        let events = coserve::ws::WsEvents::new(move |_conn, msg| {
            for c in everyone.lock().unwrap().clone() {
                let _ = c.send(msg.clone());
            }
        })
        .on_open(move |conn| joined.lock().unwrap().push(conn.sender()));
        let app = app.ws("/events-hub", events);
        let server = start(test_config().tls(Some(tls)), app);
        let connect_tls = |path: &str| {
            let mut tls = crate::tls::try_connect(
                server.addr,
                crate::tls::client_config(&ca, crate::tls::BOTH),
                "localhost",
            )
            .unwrap();
            tls.write_all(handshake_request(path, "").as_bytes())
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(tls.read(&mut byte).unwrap(), 1);
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
            tungstenite::WebSocket::from_raw_socket(tls, Role::Client, None)
        };
        let mut c = connect_tls("/echo");
        for text in ["over", "TLS"] {
            c.send(tungstenite::Message::Text(text.into())).unwrap();
            assert_eq!(c.read().unwrap(), tungstenite::Message::Text(text.into()));
        }
        c.close(None).unwrap();
        while c.read().is_ok() {}
        let ok = crate::util::eventually(Duration::from_secs(10), || {
            !ended.lock().unwrap().is_empty()
        });
        assert!(ok);
        // The blocking hub, then the same as callbacks (`WsEvents`).
        for (path, text) in [("/hub", "to all"), ("/events-hub", "events to all")] {
            let (mut a, mut b) = (connect_tls(path), connect_tls(path));
            for (who, c) in [("a", &mut a), ("b", &mut b)] {
                c.send(tungstenite::Message::Text(format!("{who} here").into()))
                    .unwrap();
                let mut got = String::new();
                while got != format!("{who} here") {
                    if let tungstenite::Message::Text(t) = c.read().unwrap() {
                        got = t.as_str().to_string();
                    }
                }
            }
            // b waits in a TLS read; a's message is queued for it and wakes it.
            a.send(tungstenite::Message::Text(text.into())).unwrap();
            // a also has b's hello to read first.
            assert_eq!(texts_of(&mut a, 2), ["b here", text], "{path}");
            assert_eq!(texts_of(&mut b, 1), [text], "{path}");
        }
    }
}

/// `texts` for any stream.
fn texts_of<S: Read + Write>(c: &mut tungstenite::WebSocket<S>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        if let tungstenite::Message::Text(t) = c.read().unwrap() {
            got.push(t.as_str().to_string());
        }
    }
    got
}

/// A frame as a hostile client might write it: any opcode, FIN or not,
/// masked or not, a length field that may lie (up to 2^63), and a payload
/// of its own length.
fn hostile_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    (
        any::<bool>(),
        0u8..16,
        any::<bool>(),
        prop_oneof![0u64..200, 100_000u64..200_000, Just(u64::MAX >> 1)],
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<[u8; 4]>(),
    )
        .prop_map(|(fin, opcode, masked, claimed, payload, mask)| {
            let mut f = vec![(u8::from(fin) << 7) | opcode];
            let m = u8::from(masked) << 7;
            match claimed {
                n if n < 126 => f.push(m | n as u8),
                n if n < 65536 => {
                    f.push(m | 126);
                    f.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    f.push(m | 127);
                    f.extend_from_slice(&n.to_be_bytes());
                }
            }
            if masked {
                f.extend_from_slice(&mask);
            }
            f.extend_from_slice(&payload);
            f
        })
}

/// Random frames, and random bytes, after a good handshake: the server
/// never panics or hangs (each connection ends once the client has sent
/// its last byte), never answers a lying length by reading or holding more
/// than the limits (a claim over them is refused at once), and serves the
/// next client.
#[test]
fn hostile_frames_never_panic_hang_or_grow() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let echo = echo_server(WsOptions::new().max_message(64 * 1024).max_frame(16 * 1024));
    let addr = echo.server.addr;
    let input = prop_oneof![
        proptest::collection::vec(hostile_frame(), 1..6).prop_map(|fs| fs.concat()),
        proptest::collection::vec(any::<u8>(), 0..600),
    ];
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(300)
    });
    runner
        .run(&input, |bytes| {
            let mut c = connect_with(addr, "/echo", "", b"");
            let raw = c.get_mut();
            let _ = raw.write_all(&bytes);
            let _ = raw.shutdown(std::net::Shutdown::Write);
            let started = Instant::now();
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            loop {
                match raw.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    // Echoes of what fitted the limits, at most.
                    Ok(n) => total += n,
                }
            }
            prop_assert!(
                started.elapsed() < Duration::from_secs(9),
                "hung: {:?}",
                started.elapsed()
            );
            prop_assert!(
                total <= bytes.len() + 1024,
                "sent {} for {} in",
                total,
                bytes.len()
            );
            Ok(())
        })
        .unwrap();
    // A length claim of 2^62 is refused with 1009 before a byte of it.
    let mut c = connect(addr);
    let mut claim = vec![0x82, 0x80 | 127];
    claim.extend_from_slice(&(1u64 << 62).to_be_bytes());
    claim.extend_from_slice(&[1, 2, 3, 4]);
    c.get_mut().write_all(&claim).unwrap();
    assert_eq!(close_code(&mut c), Some(1009));
    // And the server still echoes.
    let mut c = connect(addr);
    c.send(tungstenite::Message::Text("still fine".into()))
        .unwrap();
    assert_eq!(
        c.read().unwrap(),
        tungstenite::Message::Text("still fine".into())
    );
}
