//! Server-sent events: the stream's head and framing, ids resumed from
//! `Last-Event-ID`, heartbeats while the handler sleeps, and the end of
//! the handler when the client goes away; on both engines.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coserve::sse::{self, Event};
use coserve::{Request, Router};

use crate::util::{start, test_config};

/// Reads until `want` has been seen (or the stream ends); returns all.
fn read_until(s: &mut std::net::TcpStream, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in {:?}",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8(got).unwrap()
}

/// A chunked body, decoded: events may be split across chunks.
fn dechunk(mut chunked: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = chunked.split_once("\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        chunked = rest[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after a chunk");
    }
}

crate::engine_tests! {
    /// Three events a few ms apart, resumed after the id the client last
    /// saw, with heartbeats between them, chunked, never cached.
    #[test]
    fn events_resume_from_last_event_id_with_heartbeats() {
        let app = Router::new().get("/events", |req: &Request| {
            let mut n: u64 = sse::last_event_id(req).and_then(|id| id.parse().ok()).unwrap_or(0);
            sse::stream(move |events| {
                events.set_heartbeat(Duration::from_millis(20));
                for _ in 0..3 {
                    n += 1;
                    events.send(&Event::new(format!("count {n}\nline two")).id(n.to_string()).name("tick"))?;
                    events.sleep(Duration::from_millis(50))?;
                }
                Ok(())
            })
        });
        let server = start(test_config(), app);
        let mut s = server.connect();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 41\r\n\r\n").unwrap();
        let all = read_until(&mut s, "\r\n0\r\n\r\n");
        let (head, chunked) = all.split_once("\r\n\r\n").unwrap();
        let body = dechunk(chunked);
        let body = body.as_str();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        for field in ["Content-Type: text/event-stream", "Cache-Control: no-cache", "Transfer-Encoding: chunked", "X-Accel-Buffering: no"] {
            assert!(head.contains(field), "{field} missing from {head}");
        }
        for n in 42..=44 {
            let event = format!("id: {n}\nevent: tick\ndata: count {n}\ndata: line two\n\n");
            assert!(body.contains(&event), "{event:?} missing from {body:?}");
        }
        assert!(body.matches(":\n\n").count() >= 3, "too few heartbeats in {body:?}");
    }

    /// A client that goes away ends the handler at its next heartbeat.
    #[test]
    fn the_handler_ends_when_the_client_goes_away() {
        let ended = Arc::new(AtomicBool::new(false));
        let flag = ended.clone();
        let app = Router::new().get("/events", move |_req: &Request| {
            let flag = flag.clone();
            sse::stream(move |events| {
                events.set_heartbeat(Duration::from_millis(10));
                let result = events.sleep(Duration::from_secs(30));
                flag.store(true, Ordering::SeqCst);
                result
            })
        });
        let server = start(test_config(), app);
        let mut s = server.connect();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        read_until(&mut s, ":\n\n");
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
        let gone = crate::util::eventually(Duration::from_secs(10), || ended.load(Ordering::SeqCst));
        assert!(gone, "the handler still sleeps for a client that left");
    }
}
