//! Load ("Hardening: load"), at a size for CI: a thousand connections held
//! at once, a flood past the connection limit, and a slowloris crowd beside
//! a normal client. `scripts/bench/load.sh` runs the same three at full
//! size (15,000 held, a flood of 5,000 against a cap of 2,000, 5,000
//! slowloris) against the release binary, driven by `loadgen`
//! (tools/loadgen) from a process of its own.
//!
//! The servers run in this process: at these sizes both ends of every
//! connection fit within its descriptor limit, whose soft value is raised to
//! the hard one first. The clients are plain threads over std sockets, with
//! every read bounded, so a server that stops answering fails a test rather
//! than hanging it. They read responses with `coserve-http1`, as `loadgen`
//! does.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coserve::EngineKind;
use coserve_http1::{Connection, ErrorKind, Framing, Latencies};

use crate::util::{IO_TIMEOUT, set_engine, start_site};

const STYLE: &[u8] = b"body { color: black; }\n";
const GET_STYLE: &[u8] = b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n";

// ---------------------------------------------------------------------------
// Helpers

/// Raises the soft descriptor limit to the hard one, and fails unless it
/// allows `need` descriptors.
fn raise_nofile(need: u64) {
    let limit = coserve::raise_open_files_limit().expect("getrlimit");
    assert!(
        limit >= need,
        "this test needs {need} descriptors; the limit is {limit}"
    );
}

/// Runs `f` on a client thread with a small stack (a thousand of them fit).
fn client<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("start a client thread")
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    coserve_http1::connect(addr, IO_TIMEOUT)
}

/// Reads one response framed by `Content-Length`; `Ok(None)` on a clean
/// EOF before any byte. Never panics, so that a client thread that meets a
/// failure still reaches the barriers the others wait at. A timeout's
/// error starts with "timed out", a reset's with "reset".
fn read_one(s: &mut TcpStream) -> Result<Option<(u16, Vec<u8>)>, String> {
    let failed = |e: coserve_http1::Error| match e.kind() {
        ErrorKind::Timeout => format!("timed out: {e}"),
        ErrorKind::Reset => format!("reset: {e}"),
        _ => e.to_string(),
    };
    let mut c = Connection::new(&mut *s);
    let mut r = match c.read_head() {
        Err(e) if e.kind() == ErrorKind::Closed => return Ok(None),
        r => r.map_err(failed)?,
    };
    let len = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Content-Length in {:?}", r.headers))?;
    c.read_body(Framing::Length(len), &mut r.body)
        .map_err(failed)?;
    match c.buffered().len() {
        0 => Ok(Some((r.status, r.body))),
        n => Err(format!("{n} bytes past the body")),
    }
}

/// `GET /style.css` on a kept-alive connection; fails unless it is the file.
fn get_style(s: &mut TcpStream) -> Result<(), String> {
    s.write_all(GET_STYLE).map_err(|e| format!("write: {e}"))?;
    match read_one(s)? {
        Some((200, body)) if body == STYLE => Ok(()),
        Some((status, body)) => Err(format!("status {status}, body {:?}", lossy(&body))),
        None => Err("closed without an answer".into()),
    }
}

/// Reads until EOF; whether it came (a reset counts as the end too).
fn read_to_eof(s: &mut TcpStream) -> Result<(), String> {
    Connection::exact(s)
        .drain_to_close()
        .map(drop)
        .map_err(|e| e.to_string())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `p`th percentile, in milliseconds.
fn pct_ms(latencies: &mut Latencies, p: f64) -> f64 {
    latencies.percentile_ms(p).unwrap_or(0.0)
}

/// Connects and asks for a file at once, as a flood does.
fn flood_one(addr: SocketAddr) -> TcpStream {
    let mut c = connect(addr).expect("connect");
    // The server may already have answered 503 and be closing: then the
    // write can fail, and what was answered is still read below.
    let _ = c.write_all(GET_STYLE);
    c
}

/// What a flood connection got, for the tally.
fn answer_label(s: &mut TcpStream) -> String {
    match read_one(s) {
        Ok(Some((200, body))) if body == STYLE => "200".into(),
        Ok(Some((503, _))) => match read_to_eof(s) {
            Ok(()) => "503, closed".into(),
            Err(e) => format!("503, then {e}"),
        },
        Ok(Some((status, _))) => format!("status {status}"),
        Ok(None) => "closed without an answer".into(),
        Err(e) if e.contains("reset") => "reset".into(),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Slowloris clients

/// How a slowloris connection ended, timed from its first byte.
struct Slow {
    /// When the server closed it, if it did within the test's bound.
    closed_after: Option<Duration>,
    /// The status of what it answered before closing.
    status: Option<u16>,
    trickled: usize,
}

/// Sends a request line and `Host` at once, then one header byte every
/// `trickle` (the trickle is the behaviour under test), never ending the
/// head, until the server closes the connection or `give_up` has passed.
/// Waits at `sent` after the first bytes are out.
fn slowloris(addr: SocketAddr, trickle: Duration, give_up: Duration, sent: &Barrier) -> Slow {
    let mut r = Slow {
        closed_after: None,
        status: None,
        trickled: 0,
    };
    let Ok(mut s) = connect(addr) else {
        sent.wait();
        return r;
    };
    let t0 = Instant::now();
    let first = s.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\nX-Slowloris: ");
    sent.wait();
    if first.is_err() {
        r.closed_after = Some(t0.elapsed());
        return r;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut next = t0 + trickle;
    while t0.elapsed() < give_up {
        let now = Instant::now();
        if now >= next {
            if s.write_all(b"a").is_err() {
                r.closed_after = Some(t0.elapsed());
                break;
            }
            r.trickled += 1;
            next += trickle;
            continue;
        }
        let _ = s.set_read_timeout(Some((next - now).max(Duration::from_millis(1))));
        match s.read(&mut buf) {
            Ok(0) => {
                r.closed_after = Some(t0.elapsed());
                break;
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                r.closed_after = Some(t0.elapsed());
                break;
            }
        }
    }
    r.status = coserve_http1::parse_head(&answer)
        .ok()
        .map(|(head, _)| head.status);
    r
}

/// Heads that trickle in at the header timeout's very end: the request line
/// and `Host` at once, then nothing until `header_timeout - 3 ms`, then a
/// byte every 200 µs on every connection until `header_timeout - 0.3 ms`,
/// then silence. The server takes its clock from the first byte it reads, a
/// little after the client sent it, so its last read before the deadline
/// has well under a millisecond left. Returns what each connection got by
/// one second after the deadline, as a label.
fn heads_ending_at_the_deadline(
    addr: SocketAddr,
    conns: usize,
    header_timeout: Duration,
) -> Vec<String> {
    let mut socks: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    for s in &mut socks {
        s.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\nX-Late: ")
            .unwrap();
    }
    // Pacing the trickle is the behaviour under test: sleep to near its
    // start, then keep exact time.
    std::thread::sleep(header_timeout - Duration::from_millis(4));
    let stop = t0 + header_timeout - Duration::from_micros(300);
    let mut next = t0 + header_timeout - Duration::from_millis(3);
    while next < stop {
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        for s in &mut socks {
            let _ = s.write_all(b"a");
        }
        next += Duration::from_micros(200);
    }
    // The 408s are due at the deadline; whatever has come a second later
    // has come in time.
    let bound = t0 + header_timeout + Duration::from_secs(1);
    socks
        .iter_mut()
        .map(|s| {
            let left = bound.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match read_one(s) {
                Ok(Some((408, _))) => "408".to_string(),
                Ok(Some((status, _))) => format!("status {status}"),
                Ok(None) => "closed without an answer".into(),
                Err(e) if e.starts_with("timed out") => {
                    "nothing by 1 s after the header timeout".into()
                }
                Err(e) => e,
            }
        })
        .collect()
}

/// Rounds of [`heads_ending_at_the_deadline`]: every head gets its 408.
fn assert_heads_ending_at_the_deadline_get_408() {
    const ROUNDS: usize = 5;
    const CONNS: usize = 20;
    let header_timeout = Duration::from_millis(300);
    let server = start_site(|c, f| {
        let c = c
            .header_timeout(header_timeout)
            .idle_timeout(Duration::from_secs(30));
        (c, f)
    });
    let mut tally = BTreeMap::<String, usize>::new();
    for _ in 0..ROUNDS {
        for label in heads_ending_at_the_deadline(server.addr, CONNS, header_timeout) {
            *tally.entry(label).or_default() += 1;
        }
    }
    assert_eq!(
        tally,
        BTreeMap::from([("408".to_string(), ROUNDS * CONNS)]),
        "heads whose last byte came just before the header timeout"
    );
}

// ---------------------------------------------------------------------------
// The tests

crate::engine_tests! {
    /// A thousand keep-alive connections open at once (each has had its
    /// answer and none has closed), then each makes four more requests.
    #[test]
    fn a_thousand_connections_held_at_once_are_all_served() {
        const CONNS: usize = 1000;
        const REQUESTS: usize = 5;
        raise_nofile(4 * CONNS as u64);
        let server = start_site(|c, f| {
            let c = c
                .max_connections(2 * CONNS)
                .idle_timeout(Duration::from_secs(30));
            (c, f)
        });
        let addr = server.addr;
        let all_open = Arc::new(Barrier::new(CONNS + 1));
        let counted = Arc::new(Barrier::new(CONNS + 1));
        let start = Instant::now();
        let clients: Vec<_> = (0..CONNS)
            .map(|_| {
                let (all_open, counted) = (all_open.clone(), counted.clone());
                client(move || -> Result<Latencies, String> {
                    let mut latencies = Latencies::with_capacity(REQUESTS);
                    let mut timed = |c: &mut TcpStream| {
                        let t = Instant::now();
                        get_style(c)?;
                        latencies.record(t.elapsed());
                        Ok::<(), String>(())
                    };
                    let first = connect(addr)
                        .map_err(|e| format!("connect: {e}"))
                        .and_then(|mut c| timed(&mut c).map(|()| c));
                    all_open.wait();
                    counted.wait();
                    let mut c = first?;
                    for _ in 1..REQUESTS {
                        timed(&mut c)?;
                    }
                    Ok(latencies)
                })
            })
            .collect();
        all_open.wait();
        let opened = start.elapsed();
        // Every connection has been answered and is still open.
        let active = server.handle.active_connections();
        counted.wait();

        let mut errors = BTreeMap::<String, usize>::new();
        let mut latencies = Latencies::new();
        for c in clients {
            match c.join().expect("a client thread panicked") {
                Ok(l) => latencies.extend(&l),
                Err(e) => *errors.entry(e).or_default() += 1,
            }
        }
        println!(
            "[load] {:?}: {CONNS} connections open in {opened:.2?}, {} requests in {:.2?}, \
             latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            crate::util::engine(),
            latencies.len(),
            start.elapsed(),
            pct_ms(&mut latencies, 50.0),
            pct_ms(&mut latencies, 99.0),
            pct_ms(&mut latencies, 100.0)
        );
        assert!(errors.is_empty(), "client errors: {errors:?}");
        assert_eq!(latencies.len(), CONNS * REQUESTS);
        assert_eq!(active, CONNS, "connections being served at once");
    }

    /// 300 connections as fast as one client can open them, each asking for
    /// a file, against a cap of 100: the first 100 are served, the other 200
    /// get a 503 and a close, the cap holds throughout, and the first 100 are
    /// still served afterwards.
    #[test]
    fn a_flood_past_max_connections_gets_503_and_the_admitted_are_still_served() {
        const CAP: usize = 100;
        const FLOOD: usize = 300;
        raise_nofile(4 * FLOOD as u64);
        let server = start_site(|c, f| {
            let c = c.max_connections(CAP).idle_timeout(Duration::from_secs(30));
            (c, f)
        });
        let mut most_active = 0;
        let mut conns = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            // Connected is not yet accepted: the server takes them in order.
            conns.push(flood_one(server.addr));
            most_active = most_active.max(server.handle.active_connections());
        }
        let mut got = Vec::with_capacity(FLOOD);
        for c in &mut conns {
            got.push(answer_label(c));
            most_active = most_active.max(server.handle.active_connections());
        }
        let mut tally = BTreeMap::<&str, usize>::new();
        for g in &got {
            *tally.entry(g.as_str()).or_default() += 1;
        }
        println!("[load] {:?}: flood of {FLOOD} against {CAP}: {tally:?}", crate::util::engine());
        assert_eq!(
            tally,
            BTreeMap::from([("200", CAP), ("503, closed", FLOOD - CAP)]),
            "what the flood got"
        );
        assert!(
            got[..CAP].iter().all(|g| g == "200"),
            "the first {CAP} connections were not the ones served"
        );
        assert!(most_active <= CAP, "{most_active} connections served at once");

        // The admitted connections are served as before.
        for (i, c) in conns[..CAP].iter_mut().enumerate() {
            get_style(c).unwrap_or_else(|e| panic!("connection {i} after the flood: {e}"));
        }
        assert_eq!(server.handle.active_connections(), CAP);
    }

    /// 300 connections trickle a header byte every 100 ms against a header
    /// timeout of 1 s: each gets a 408 and a close about 1 s after its first
    /// byte, and meanwhile a normal keep-alive client is served throughout.
    #[test]
    fn a_slowloris_crowd_is_cut_off_at_the_header_timeout_while_others_are_served() {
        const SLOW: usize = 300;
        let header_timeout = Duration::from_secs(1);
        let trickle = Duration::from_millis(100);
        let give_up = Duration::from_secs(5);
        raise_nofile(4 * SLOW as u64);
        let server = start_site(|c, f| {
            let c = c
                .header_timeout(header_timeout)
                .idle_timeout(Duration::from_secs(30));
            (c, f)
        });
        let addr = server.addr;
        let sent = Arc::new(Barrier::new(SLOW + 1));
        let finished = Arc::new(AtomicUsize::new(0));
        let crowd: Vec<_> = (0..SLOW)
            .map(|_| {
                let (sent, finished) = (sent.clone(), finished.clone());
                client(move || {
                    let r = slowloris(addr, trickle, give_up, &sent);
                    finished.fetch_add(1, Ordering::Release);
                    r
                })
            })
            .collect();
        sent.wait();

        // A normal client, connected after the whole crowd (so accepted
        // after it), makes requests until the crowd is gone.
        let mut normal = connect(addr).expect("connect the normal client");
        let mut latencies = Latencies::new();
        let mut active_at_first = None;
        while finished.load(Ordering::Acquire) < SLOW {
            let t = Instant::now();
            get_style(&mut normal)
                .unwrap_or_else(|e| panic!("normal request {}: {e}", latencies.len() + 1));
            latencies.record(t.elapsed());
            active_at_first.get_or_insert(server.handle.active_connections());
        }
        let crowd: Vec<Slow> = crowd
            .into_iter()
            .map(|c| c.join().expect("a slowloris thread panicked"))
            .collect();

        let mut closes: Vec<Duration> = crowd.iter().filter_map(|s| s.closed_after).collect();
        closes.sort_unstable();
        println!(
            "[load] {:?}: {SLOW} slowloris closed after {:.2?} .. {:.2?} (p50 {:.2?}), most \
             trickled {} bytes; normal client: {} requests, p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms",
            crate::util::engine(),
            closes.first().copied().unwrap_or_default(),
            closes.last().copied().unwrap_or_default(),
            closes.get(closes.len() / 2).copied().unwrap_or_default(),
            crowd.iter().map(|s| s.trickled).max().unwrap_or(0),
            latencies.len(),
            pct_ms(&mut latencies, 50.0),
            pct_ms(&mut latencies, 99.0),
            pct_ms(&mut latencies, 100.0)
        );
        assert_eq!(
            active_at_first,
            Some(SLOW + 1),
            "connections being served when the normal client got its first answer"
        );
        let mut tally = BTreeMap::<String, usize>::new();
        for s in &crowd {
            let label = match (s.status, s.closed_after) {
                (Some(408), Some(after))
                    if after >= header_timeout - Duration::from_millis(10)
                        && after <= Duration::from_secs(3) =>
                {
                    "408 and closed within 1-3 s".to_string()
                }
                (status, Some(after)) => format!("{status:?} and closed after {after:.1?}"),
                (status, None) => format!("{status:?} and open after {give_up:?}"),
            };
            *tally.entry(label).or_default() += 1;
        }
        assert_eq!(
            tally,
            BTreeMap::from([("408 and closed within 1-3 s".to_string(), SLOW)]),
            "how the slowloris connections ended"
        );
    }

    /// Past the bound on connections being refused at once (2,048, each
    /// held until the client closes or for a second), every excess
    /// connection of a flood still gets its 503: 2,298 excess connections,
    /// all opened well within a second and none closed by the client.
    #[test]
    fn a_flood_past_the_refusal_bound_still_gets_503_for_every_excess_connection() {
        const CAP: usize = 50;
        /// `MAX_REJECTING` in src/server/accept.rs.
        const REFUSING: usize = 2048;
        const FLOOD: usize = CAP + REFUSING + 250;
        raise_nofile(4 * FLOOD as u64);
        let server = start_site(|c, f| (c.max_connections(CAP), f));
        let mut conns: Vec<TcpStream> = (0..FLOOD).map(|_| flood_one(server.addr)).collect();
        let mut tally = BTreeMap::<String, usize>::new();
        for c in &mut conns {
            *tally.entry(answer_label(c)).or_default() += 1;
        }
        assert_eq!(
            tally,
            BTreeMap::from([("200".to_string(), CAP), ("503, closed".to_string(), FLOOD - CAP)]),
            "what the flood got"
        );
    }
}

/// The thread engine cuts off a head whose last byte arrives just before
/// the header timeout, at the timeout.
#[test]
fn thread_a_head_ending_just_before_the_header_timeout_gets_408_at_the_deadline() {
    set_engine(EngineKind::Thread);
    assert_heads_ending_at_the_deadline_get_408();
}

/// The same on the coroutine engine. Regression: the last read before the
/// deadline could have under 1 ms left, and may keeps socket timeouts in
/// whole milliseconds with 0 meaning "none", so that read waited for the
/// client's next byte, forever if none came.
#[test]
fn coroutine_a_head_ending_just_before_the_header_timeout_gets_408_at_the_deadline() {
    set_engine(EngineKind::Coroutine);
    assert_heads_ending_at_the_deadline_get_408();
}
