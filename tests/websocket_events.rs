//! WebSocket endpoints of callbacks (`ws::WsEvents`), on both engines: the
//! callbacks' order, echo, a connection that parks between messages (on
//! the coroutine engine) and is taken out again by the client, by a
//! `WsSender`, or by its ping timer; the idle timeout, a close asked for by
//! a callback, a panicking callback, and shutdown.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coserve::ws::{WsConn, WsError, WsEvents, WsOptions, WsSender};
use coserve::{Config, EngineKind, Router};

use crate::util::{TestServer, eventually, start, test_config};
use crate::websocket::{Client, close_code, connect_with};

/// What the callbacks saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

struct EventsServer {
    server: TestServer,
    log: Log,
    /// The sender of the last connection opened.
    sender: Arc<Mutex<Option<WsSender>>>,
}

fn why(e: &WsError) -> String {
    match e {
        WsError::Closed(Some((code, _))) => format!("closed {code}"),
        WsError::Closed(None) => "closed".into(),
        WsError::TimedOut => "timed out".into(),
        WsError::ShuttingDown => "shutting down".into(),
        WsError::TooLarge => "too large".into(),
        other => format!("{other}"),
    }
}

/// Parks after 30 ms of quiet: the tests see parking without waiting long.
fn events_config() -> Config {
    test_config().release_idle_after(Duration::from_millis(30))
}

/// An echo of callbacks: "bye" makes it close with 4000, "panic" panics.
fn events_server(options: WsOptions) -> EventsServer {
    let log: Log = Arc::default();
    let sender: Arc<Mutex<Option<WsSender>>> = Arc::default();
    let (on_open_log, on_message_log, on_close_log) = (log.clone(), log.clone(), log.clone());
    let opened = sender.clone();
    let events = WsEvents::new(move |conn: &WsConn<'_>, msg| {
        on_message_log.lock().unwrap().push("message".into());
        match &msg {
            coserve::ws::Message::Text(t) if t == "bye" => conn.close(4000, "bye"),
            coserve::ws::Message::Text(t) if t == "panic" => panic!("a callback that panics"),
            _ => {
                conn.send(msg).unwrap();
            }
        }
    })
    .on_open(move |conn| {
        assert_eq!(conn.request().path(), "/events");
        on_open_log.lock().unwrap().push("open".into());
        *opened.lock().unwrap() = Some(conn.sender());
    })
    .on_close(move |_conn, e| on_close_log.lock().unwrap().push(why(e)))
    .options(options);
    EventsServer {
        server: start(events_config(), Router::new().ws("/events", events)),
        log,
        sender,
    }
}

fn connect(addr: std::net::SocketAddr) -> Client {
    connect_with(addr, "/events", "", b"")
}

fn text(c: &mut Client) -> String {
    loop {
        match c.read().unwrap() {
            tungstenite::Message::Text(t) => return t.as_str().to_string(),
            tungstenite::Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

fn coroutines() -> bool {
    crate::util::engine() == EngineKind::Coroutine
}

/// On the coroutine engine, waits until `n` connections are parked; the
/// thread engine never parks.
fn parked(s: &EventsServer, n: usize) {
    if coroutines() {
        assert!(
            eventually(Duration::from_secs(10), || s
                .server
                .handle
                .parked_connections()
                == n),
            "{} parked, not {n}",
            s.server.handle.parked_connections()
        );
    } else {
        assert_eq!(s.server.handle.parked_connections(), 0);
    }
}

fn logged(s: &EventsServer, n: usize) -> Vec<String> {
    let ok = eventually(Duration::from_secs(10), || s.log.lock().unwrap().len() >= n);
    assert!(ok, "{:?}", s.log.lock().unwrap());
    s.log.lock().unwrap().clone()
}

/// Sends `n` numbered messages of `size` bytes on `sender` from another
/// thread while the client reads them, slowly at first: the socket fills
/// and drains, so some frames go out whole from the sender, some in part,
/// some through the queue. Every one arrives, whole and in order.
pub(crate) fn in_order_through_a_full_socket(
    sender: &WsSender,
    c: &mut Client,
    n: usize,
    size: usize,
) {
    let sending = sender.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            let mut text = format!("{i:08} ");
            text.extend(std::iter::repeat_n(
                char::from(b'a' + (i % 26) as u8),
                size - 9,
            ));
            // A full queue refuses (a client that does not read); wait.
            while let Err(WsError::Io(e)) = sending.send(text.clone()) {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                std::thread::yield_now();
            }
        }
    });
    for i in 0..n {
        if i % 25 == 0 {
            // Let the socket fill, now and then.
            std::thread::sleep(Duration::from_millis(3));
        }
        let got = text(c);
        assert_eq!(got.len(), size, "message {i}");
        assert_eq!(&got[..9], format!("{i:08} "), "message {i} out of order");
        assert!(
            got[9..].bytes().all(|b| b == b'a' + (i % 26) as u8),
            "message {i} mangled"
        );
    }
    writer.join().unwrap();
}

crate::engine_tests! {
    /// Frames from a sender keep their order and stay whole when the
    /// client's socket fills, parked or not.
    #[test]
    fn senders_frames_stay_whole_and_in_order() {
        let s = events_server(WsOptions::new());
        let mut c = connect(s.server.addr);
        assert!(eventually(Duration::from_secs(10), || s.sender.lock().unwrap().is_some()));
        let sender = s.sender.lock().unwrap().clone().unwrap();
        parked(&s, 1);
        in_order_through_a_full_socket(&sender, &mut c, 1000, 20_000);
        // And the connection still answers.
        c.send(tungstenite::Message::Text("after".into())).unwrap();
        assert_eq!(text(&mut c), "after");
    }

    /// `on_open`, then `on_message` for each message (echoed), then
    /// `on_close` with the client's close; the connection parks between
    /// messages and answers as before when the client sends again.
    #[test]
    fn callbacks_run_in_order_and_a_parked_connection_answers() {
        let s = events_server(WsOptions::new());
        let mut c = connect(s.server.addr);
        c.send(tungstenite::Message::Text("one".into())).unwrap();
        assert_eq!(text(&mut c), "one");
        parked(&s, 1);
        c.send(tungstenite::Message::Binary(vec![1, 2, 3].into())).unwrap();
        assert_eq!(c.read().unwrap(), tungstenite::Message::Binary(vec![1, 2, 3].into()));
        parked(&s, 1);
        c.send(tungstenite::Message::Text("two".into())).unwrap();
        assert_eq!(text(&mut c), "two");
        c.close(None).unwrap();
        while c.read().is_ok() {}
        assert_eq!(logged(&s, 5), ["open", "message", "message", "message", "closed"]);
        parked(&s, 0);
    }

    /// A sender on another thread reaches a parked connection at once
    /// (writing the frame itself), and a ping goes out when one is due,
    /// parked or not.
    #[test]
    fn a_sender_reaches_a_parked_connection_and_pings_go_out() {
        let s = events_server(WsOptions::new().ping_interval(Duration::from_millis(300)));
        let mut c = connect(s.server.addr);
        parked(&s, 1);
        // `on_open` runs once the 101 has gone out.
        assert!(eventually(Duration::from_secs(10), || s.sender.lock().unwrap().is_some()));
        let sender = s.sender.lock().unwrap().clone().expect("opened");
        let sent = Instant::now();
        sender.send("from elsewhere").unwrap();
        assert_eq!(text(&mut c), "from elsewhere");
        assert!(sent.elapsed() < Duration::from_millis(250), "{:?}", sent.elapsed());
        parked(&s, 1);
        // Silent: a ping comes (tungstenite queues the pong), twice.
        for _ in 0..2 {
            match c.read().unwrap() {
                tungstenite::Message::Ping(_) => {}
                other => panic!("{other:?}"),
            }
        }
        c.send(tungstenite::Message::Text("still here".into())).unwrap();
        assert_eq!(text(&mut c), "still here");
        assert!(sender.is_open());
        drop(c);
        assert!(eventually(Duration::from_secs(10), || !sender.is_open()));
        assert_eq!(sender.send("late").map_err(|e| why(&e)), Err("closed".into()));
    }

    /// A client that answers nothing is pinged, then closed with 1001 at
    /// the idle timeout, though it waited parked.
    #[test]
    fn a_silent_parked_connection_is_closed_at_its_idle_timeout() {
        let s = events_server(
            WsOptions::new()
                .ping_interval(Duration::from_millis(200))
                .idle_timeout(Duration::from_millis(700)),
        );
        let mut silent = connect(s.server.addr);
        let started = Instant::now();
        let mut raw = Vec::new();
        silent.get_mut().read_to_end(&mut raw).unwrap();
        let waited = started.elapsed();
        assert_eq!(&raw[..2], &[0x89, 0x00], "{raw:?}");
        let close = raw.windows(2).position(|w| w[0] == 0x88).expect("a close frame");
        assert_eq!(&raw[close + 2..close + 4], &1001u16.to_be_bytes(), "{raw:?}");
        assert!(waited >= Duration::from_millis(600) && waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(logged(&s, 2), ["open", "timed out"]);
    }

    /// `WsConn::close` from a callback closes with its code; a callback
    /// that panics closes with 1011; the server goes on.
    #[test]
    fn a_callback_closes_or_panics() {
        let s = events_server(WsOptions::new());
        let mut c = connect(s.server.addr);
        c.send(tungstenite::Message::Text("bye".into())).unwrap();
        assert_eq!(close_code(&mut c), Some(4000));
        // The next read sends tungstenite's answering close, which the
        // server waits for.
        while c.read().is_ok() {}
        let mut p = connect(s.server.addr);
        p.send(tungstenite::Message::Text("panic".into())).unwrap();
        assert_eq!(close_code(&mut p), Some(1011));
        let mut after = connect(s.server.addr);
        after.send(tungstenite::Message::Text("ok".into())).unwrap();
        assert_eq!(text(&mut after), "ok");
        // Three opens and messages, two closes (the last is still open).
        let log = logged(&s, 8);
        assert!(log.contains(&"closed 4000".to_string()), "{log:?}");
        assert!(log.contains(&"protocol error: the message callback panicked".to_string()), "{log:?}");
    }

    /// Pings and the idle timeout turned off with `Duration::MAX`: the
    /// connection still parks and answers (the lot's deadline is clamped).
    #[test]
    fn endless_intervals_still_park() {
        let s = events_server(
            WsOptions::new()
                .ping_interval(Duration::MAX)
                .idle_timeout(Duration::MAX),
        );
        let mut c = connect(s.server.addr);
        c.send(tungstenite::Message::Text("one".into())).unwrap();
        assert_eq!(text(&mut c), "one");
        parked(&s, 1);
        c.send(tungstenite::Message::Text("two".into())).unwrap();
        assert_eq!(text(&mut c), "two");
    }

    /// Shutdown closes a parked connection with 1001 and runs `on_close`.
    #[test]
    fn shutdown_closes_parked_connections_with_going_away() {
        let s = events_server(WsOptions::new());
        let mut c = connect(s.server.addr);
        c.send(tungstenite::Message::Text("x".into())).unwrap();
        assert_eq!(text(&mut c), "x");
        parked(&s, 1);
        s.server.handle.shutdown();
        assert_eq!(close_code(&mut c), Some(1001));
        assert_eq!(logged(&s, 3), ["open", "message", "shutting down"]);
    }
}
