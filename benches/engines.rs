//! End-to-end benchmark of the engines: coserve's coroutine and thread
//! engines and may_minihttp's fixed-body server (the "may ceiling": a fixed
//! body from memory, no files, no checks; `coserve_peers::FixedBody`), each
//! started in-process on 127.0.0.1:0 and driven by a keep-alive load
//! generator written on may coroutines over `coserve-http1`'s client.
//!
//! `cargo bench --bench engines` (a few seconds per scenario), or
//! `COSERVE_BENCH_QUICK=1 cargo bench --bench engines` for a short smoke run
//! that asserts the numbers are sane (never a speed).
//!
//! `upstream 50ms` is the realistic version of `sleep 50ms`: the handler
//! calls another coserve server over HTTP (`coserve::client`), which
//! answers after 50 ms; coserve's engines only.
//!
//! Writes a table to stdout and `target/engines.csv`; the chart is drawn
//! from the CSV by `cargo run -p coserve-chart -- engines target/engines.csv
//! target/engines.svg`.
//!
//! Then the WebSocket scenarios (long-lived connections, coserve's two
//! engines: `engines/ws.rs`) print a second table and write
//! `target/engines-ws.csv`. `COSERVE_BENCH_ONLY=http` or `=ws` runs one
//! half alone (and writes only its CSV).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coserve::{
    Config, EngineKind, FilesOptions, Handler, Request, Response, Runtime, Server, ServerHandle,
    StaticFiles,
};
use coserve_http1::procfs::{self, Process};
use coserve_http1::{Connection, Framing, Latencies};
use coserve_peers::FixedBody;

#[path = "engines/ws.rs"]
mod ws;

/// Size of the small file and of the sleep handler's body.
const SMALL: usize = 1024;
/// Size of the large file.
const LARGE: usize = 10 * 1024 * 1024;
/// How long the sleep handler sleeps.
const SLEEP: Duration = Duration::from_millis(50);
/// Stack of each load-generator coroutine (its buffers are on the heap).
const CLIENT_STACK: usize = 32 * 1024;

// ---------------------------------------------------------------------------
// Settings

struct Settings {
    quick: bool,
    duration: Duration,
    /// Divides every connection count.
    scale: usize,
    /// Per-operation socket timeout of the load generator.
    io_timeout: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("COSERVE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Settings {
                quick,
                duration: Duration::from_millis(300),
                scale: 10,
                io_timeout: Duration::from_secs(5),
            }
        } else {
            Settings {
                quick,
                duration: Duration::from_secs(3),
                scale: 1,
                io_timeout: Duration::from_secs(10),
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Coroutine,
    Thread,
    MayMinihttp,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Coroutine => "coroutine",
            Engine::Thread => "thread",
            Engine::MayMinihttp => "may_minihttp",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Closed-loop keep-alive load for the duration.
    Load,
    /// Connections that make one request each and are then held idle.
    Idle,
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    path: &'static str,
    body_len: usize,
    conns: usize,
    kind: Kind,
    /// coserve's engines only: may_minihttp has no HTTP client.
    coserve_only: bool,
}

fn scenarios(s: &Settings, max_conns: usize) -> Vec<Scenario> {
    let c = |n: usize| (n / s.scale).clamp(1, max_conns);
    vec![
        Scenario {
            name: "1KB file",
            path: "/1k.bin",
            body_len: SMALL,
            conns: c(64),
            kind: Kind::Load,
            coserve_only: false,
        },
        Scenario {
            name: "1KB file",
            path: "/1k.bin",
            body_len: SMALL,
            conns: c(1_000),
            kind: Kind::Load,
            coserve_only: false,
        },
        Scenario {
            name: "sleep 50ms",
            path: "/sleep",
            body_len: SMALL,
            conns: c(1_000),
            kind: Kind::Load,
            coserve_only: false,
        },
        Scenario {
            name: "sleep 50ms",
            path: "/sleep",
            body_len: SMALL,
            conns: c(10_000),
            kind: Kind::Load,
            coserve_only: false,
        },
        Scenario {
            name: "10MB file",
            path: "/10m.bin",
            body_len: LARGE,
            conns: c(16),
            kind: Kind::Load,
            coserve_only: false,
        },
        Scenario {
            name: "idle",
            path: "/1k.bin",
            body_len: SMALL,
            conns: c(10_000),
            kind: Kind::Idle,
            coserve_only: false,
        },
        // Last: its client keeps up to 1,000 pooled connections to the
        // upstream (2,000 descriptors with the upstream's ends), which the
        // idle scenario's 9,750 connections would not leave room for.
        Scenario {
            name: "upstream 50ms",
            path: "/upstream",
            body_len: SMALL,
            conns: c(1_000),
            kind: Kind::Load,
            coserve_only: true,
        },
    ]
}

// ---------------------------------------------------------------------------
// /proc sampling

/// This process's resident memory and threads now.
fn proc_status() -> procfs::Sample {
    procfs::sample(Process::Current, false).unwrap_or_default()
}

/// Samples this process's VmRSS and Threads every 10 ms until finished,
/// keeping the peaks.
struct Sampler(procfs::Sampler);

impl Sampler {
    fn start() -> Sampler {
        // Resets VmHWM so it reflects this scenario (best effort).
        let _ = procfs::reset_peak_rss(Process::Current);
        Sampler(procfs::Sampler::start(
            Process::Current,
            Duration::from_millis(10),
            false,
        ))
    }

    /// Peak RSS (KiB, the larger of the sampled VmRSS and VmHWM) and peak
    /// thread count.
    fn finish(self) -> (u64, u64) {
        let peaks = self.0.finish();
        let hwm = procfs::status(Process::Current)
            .ok()
            .and_then(|st| st.kib("VmHWM"))
            .unwrap_or(0);
        (peaks.rss_max_kib.max(hwm), peaks.threads_max)
    }
}

/// Gives freed heap back to the OS, so that the RSS taken before a scenario
/// is not inflated by what the previous one left in malloc's free lists.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

// ---------------------------------------------------------------------------
// Servers

enum Running {
    Coserve(ServerHandle),
    Minihttp(may::coroutine::JoinHandle<()>),
}

struct Target {
    addr: SocketAddr,
    running: Running,
}

impl Target {
    fn active(&self) -> Option<usize> {
        match &self.running {
            Running::Coserve(h) => Some(h.active_connections()),
            Running::Minihttp(_) => None,
        }
    }

    /// Waits (bounded) until the server has no connections left.
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        match self.active() {
            Some(_) => {
                while self.active().unwrap_or(0) > 0 && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
            }
            None => thread::sleep(Duration::from_millis(300)),
        }
        // The thread engine's threads outlive their connections' slots a
        // little: the next scenario starts once they are gone, so that it
        // does not meet two scenarios' worth of threads.
        while proc_status().threads > 64 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(100));
        trim_heap();
    }

    fn stop(self) {
        match self.running {
            Running::Coserve(h) => h.shutdown(),
            Running::Minihttp(h) => {
                // SAFETY: cancelling the accept coroutine unwinds it out of
                // its blocked accept; its connections end when their clients
                // close.
                unsafe { h.coroutine().cancel() };
            }
        }
    }
}

fn coserve_config(engine: EngineKind) -> Config {
    Config::new()
        .engine(engine)
        .max_connections(30_000)
        .shutdown_grace(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(60))
}

/// The upstream of the `upstream 50ms` scenario: a coserve server (on the
/// coroutine engine, whichever engine calls it) that answers `/sleep`
/// after [`SLEEP`] with [`SMALL`] bytes.
fn start_upstream() -> io::Result<ServerHandle> {
    let body = bytes::Bytes::from(vec![b'u'; SMALL]);
    let server = Server::bind("127.0.0.1:0", coserve_config(EngineKind::Coroutine))?;
    server.spawn(move |_req: &Request| {
        may::coroutine::sleep(SLEEP);
        Response::bytes("application/octet-stream", body.clone())
    })
}

fn start_coserve(root: &Path, engine: EngineKind, upstream: SocketAddr) -> io::Result<Target> {
    let files = StaticFiles::new(root, FilesOptions::new())?;
    let body = bytes::Bytes::from(vec![b'x'; SMALL]);
    // Every load connection may be in a call at once: the pool keeps them.
    let client = coserve::client::Client::builder()
        .max_idle_per_host(4096)
        .max_idle(4096)
        .build();
    let upstream_url = format!("http://{upstream}/sleep");
    let handler = move |req: &Request| match req.path() {
        "/sleep" => {
            // Parks the coroutine, or the thread on the thread engine.
            may::coroutine::sleep(SLEEP);
            Response::bytes("application/octet-stream", body.clone())
        }
        // The realistic version of /sleep: the 50 ms is another service's,
        // over HTTP.
        "/upstream" => {
            let called = client
                .get(&upstream_url)
                .call()
                .and_then(|mut r| r.body_mut().read_to_vec());
            match called {
                Ok(bytes) => Response::bytes("application/octet-stream", bytes),
                Err(e) => Response::error(coserve::StatusCode::BAD_GATEWAY)
                    .header("X-Error", e.to_string().replace(['\r', '\n'], " ")),
            }
        }
        _ => files.handle(req),
    };
    let server = Server::bind("127.0.0.1:0", coserve_config(engine))?;
    let addr = server.local_addr();
    let handle = server.spawn(handler)?;
    Ok(Target {
        addr,
        running: Running::Coserve(handle),
    })
}

fn start_minihttp() -> io::Result<Target> {
    // may_minihttp binds by address and does not report the port, so take a
    // free one from the OS first.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let handle = FixedBody::new(SMALL).sleep(SLEEP).start(addr)?;
    // Wait until it accepts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::other("may_minihttp did not start"));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(Target {
        addr,
        running: Running::Minihttp(handle),
    })
}

fn start(engine: Engine, root: &Path, upstream: SocketAddr) -> io::Result<Target> {
    match engine {
        Engine::Coroutine => start_coserve(root, EngineKind::Coroutine, upstream),
        Engine::Thread => start_coserve(root, EngineKind::Thread, upstream),
        Engine::MayMinihttp => start_minihttp(),
    }
}

// ---------------------------------------------------------------------------
// Load generator

fn spawn_co<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<may::coroutine::JoinHandle<T>> {
    spawn_co_sized(CLIENT_STACK, f)
}

/// A load-generator coroutine with a stack of `stack` bytes.
fn spawn_co_sized<T: Send + 'static>(
    stack: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<may::coroutine::JoinHandle<T>> {
    // An even number of words: may prints the stack use of odd ones.
    let words = (stack / std::mem::size_of::<usize>() + 1) & !1;
    // SAFETY: the load generator holds no thread-locals or std lock guards
    // across a yield.
    unsafe { may::coroutine::Builder::new().stack_size(words).spawn(f) }
}

/// A client connection.
type Conn = Connection<may::net::TcpStream>;

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<may::net::TcpStream> {
    let stream = may::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends one request and reads the whole response; fails unless it is a 200
/// with `Content-Length: expect` and that many body bytes.
fn request(c: &mut Conn, req: &[u8], expect: usize) -> Result<(), String> {
    let reply = c.exchange(req).map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("status {}", reply.status));
    }
    if reply.framing != Framing::Length(expect as u64) {
        return Err(format!("{:?}, expected {expect} bytes", reply.framing));
    }
    Ok(())
}

fn request_bytes(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: coserve-bench\r\n\r\n").into_bytes()
}

#[derive(Default)]
struct LoadResult {
    ok: u64,
    errors: u64,
    /// One per correct response completed in the window.
    latencies: Latencies,
    first_error: Option<String>,
    bytes: u64,
}

/// Shared state of one load run. Times are nanoseconds since `base`.
struct Phase {
    base: Instant,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    connected: AtomicUsize,
}

impl Phase {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

fn run_load(addr: SocketAddr, sc: &Scenario, s: &Settings) -> (LoadResult, Duration) {
    let phase = Arc::new(Phase {
        base: Instant::now(),
        start_ns: AtomicU64::new(u64::MAX),
        end_ns: AtomicU64::new(u64::MAX),
        connected: AtomicUsize::new(0),
    });
    let req: Arc<[u8]> = request_bytes(sc.path).into();
    let buf_len = if sc.body_len > SMALL {
        256 * 1024
    } else {
        16 * 1024
    };
    let mut handles = Vec::with_capacity(sc.conns);
    let mut spawn_errors = 0u64;
    let ramp_deadline = Instant::now() + Duration::from_secs(if s.quick { 10 } else { 30 });
    for i in 0..sc.conns {
        let (p, req) = (phase.clone(), req.clone());
        let (expect, timeout) = (sc.body_len, s.io_timeout);
        let spawned = spawn_co(move || {
            let phase = p;
            let mut res = LoadResult::default();
            let note = |res: &mut LoadResult, e: String| {
                res.errors += 1;
                res.first_error.get_or_insert(e);
            };
            let connect =
                || connect(addr, timeout).map(|st| Connection::with_buffer(st, vec![0; buf_len]));
            // Connect and warm up with one request before the window opens.
            let mut stream = match connect() {
                Ok(st) => Some(st),
                Err(e) => {
                    note(&mut res, format!("connect: {e}"));
                    None
                }
            };
            if let Some(st) = stream.as_mut()
                && let Err(e) = request(st, &req, expect)
            {
                note(&mut res, e);
                stream = None;
            }
            phase.connected.fetch_add(1, Ordering::AcqRel);
            while phase.start_ns.load(Ordering::Acquire) == u64::MAX {
                may::coroutine::sleep(Duration::from_millis(5));
            }
            let start = phase.start_ns.load(Ordering::Acquire);
            let end = phase.end_ns.load(Ordering::Acquire);
            while phase.now() < end {
                let st = match stream.as_mut() {
                    Some(st) => st,
                    None => match connect() {
                        Ok(st) => stream.insert(st),
                        Err(e) => {
                            note(&mut res, format!("connect: {e}"));
                            may::coroutine::sleep(Duration::from_millis(20));
                            continue;
                        }
                    },
                };
                let t0 = phase.now();
                match request(st, &req, expect) {
                    Ok(()) => {
                        let t1 = phase.now();
                        if t0 >= start && t1 <= end {
                            res.ok += 1;
                            res.bytes += expect as u64;
                            res.latencies.record(Duration::from_nanos(t1 - t0));
                        }
                    }
                    Err(e) => {
                        note(&mut res, e);
                        stream = None;
                    }
                }
            }
            res
        });
        match spawned {
            Ok(h) => handles.push(h),
            Err(_) => spawn_errors += 1,
        }
        // Ramp up in batches so the listen backlog is not flooded.
        if i % 256 == 255 {
            while phase.connected.load(Ordering::Acquire) + 64 < handles.len()
                && Instant::now() < ramp_deadline
            {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    while phase.connected.load(Ordering::Acquire) < handles.len() && Instant::now() < ramp_deadline
    {
        thread::sleep(Duration::from_millis(2));
    }
    let start = phase.now();
    let end = start + s.duration.as_nanos() as u64;
    phase.end_ns.store(end, Ordering::Release);
    phase.start_ns.store(start, Ordering::Release);
    let mut total = LoadResult {
        errors: spawn_errors,
        ..LoadResult::default()
    };
    for h in handles {
        match h.join() {
            Ok(r) => {
                total.ok += r.ok;
                total.errors += r.errors;
                total.bytes += r.bytes;
                total.latencies.extend(&r.latencies);
                if total.first_error.is_none() {
                    total.first_error = r.first_error;
                }
            }
            Err(_) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert("client coroutine panicked".into());
            }
        }
    }
    (total, s.duration)
}

struct IdleResult {
    established: usize,
    errors: u64,
    first_error: Option<String>,
    rss_held_kb: u64,
    threads_held: u64,
    server_active: Option<usize>,
}

/// Opens `sc.conns` connections, one request each, and holds them idle.
/// Only the sockets are kept on the client side (no coroutine each).
fn run_idle(target: &Target, sc: &Scenario, s: &Settings, rss_before: u64) -> IdleResult {
    let addr = target.addr;
    let openers = 100.min(sc.conns);
    let req: Arc<[u8]> = request_bytes(sc.path).into();
    let mut handles = Vec::new();
    for k in 0..openers {
        let n = sc.conns / openers + usize::from(k < sc.conns % openers);
        let (req, expect, timeout) = (req.clone(), sc.body_len, s.io_timeout);
        let h = spawn_co(move || {
            let mut held = Vec::with_capacity(n);
            let mut errors = 0u64;
            let mut first_error = None;
            // One buffer for all: only the sockets are held.
            let mut buf = vec![0u8; 16 * 1024];
            for _ in 0..n {
                let r = connect(addr, timeout).map_err(|e| format!("connect: {e}"));
                let r = r.and_then(|st| {
                    let mut c = Connection::with_buffer(st, std::mem::take(&mut buf));
                    let answered = request(&mut c, &req, expect);
                    let (st, b) = c.into_parts();
                    buf = b;
                    answered.map(|()| st)
                });
                match r {
                    Ok(st) => held.push(st),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (held, errors, first_error)
        });
        if let Ok(h) = h {
            handles.push(h);
        }
    }
    let mut held = Vec::with_capacity(sc.conns);
    let mut errors = 0;
    let mut first_error = None;
    for h in handles {
        if let Ok((streams, e, fe)) = h.join() {
            held.extend(streams);
            errors += e;
            if first_error.is_none() {
                first_error = fe;
            }
        } else {
            errors += 1;
        }
    }
    // Let the server park everything, then look.
    thread::sleep(if s.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    });
    let st = proc_status();
    let server_active = target.active();
    let _ = rss_before;
    let established = held.len();
    drop(held);
    IdleResult {
        established,
        errors,
        first_error,
        rss_held_kb: st.rss_kib,
        threads_held: st.threads,
        server_active,
    }
}

// ---------------------------------------------------------------------------
// Results

struct Row {
    engine: Engine,
    scenario: String,
    kind: Kind,
    conns: usize,
    secs: f64,
    ok: u64,
    errors: u64,
    rps: f64,
    mib_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_before_mib: f64,
    peak_rss_mib: f64,
    rss_delta_mib: f64,
    peak_threads: u64,
    kib_per_conn: f64,
    first_error: String,
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn run_scenario(engine: Engine, target: &Target, sc: &Scenario, s: &Settings) -> Row {
    target.settle();
    let before = proc_status().rss_kib;
    let sampler = Sampler::start();
    let mut row = Row {
        engine,
        scenario: format!("{} x{}", sc.name, sc.conns),
        kind: sc.kind,
        conns: sc.conns,
        secs: 0.0,
        ok: 0,
        errors: 0,
        rps: 0.0,
        mib_s: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        rss_before_mib: mib(before),
        peak_rss_mib: 0.0,
        rss_delta_mib: 0.0,
        peak_threads: 0,
        kib_per_conn: f64::NAN,
        first_error: String::new(),
    };
    match sc.kind {
        Kind::Load => {
            let (res, dur) = run_load(target.addr, sc, s);
            row.secs = dur.as_secs_f64();
            row.ok = res.ok;
            row.errors = res.errors;
            row.rps = res.ok as f64 / row.secs;
            row.mib_s = res.bytes as f64 / row.secs / (1024.0 * 1024.0);
            let mut latencies = res.latencies;
            row.p50_ms = latencies.percentile_ms(50.0).unwrap_or(f64::NAN);
            row.p99_ms = latencies.percentile_ms(99.0).unwrap_or(f64::NAN);
            row.first_error = res.first_error.unwrap_or_default();
        }
        Kind::Idle => {
            let res = run_idle(target, sc, s, before);
            row.ok = res.established as u64;
            row.errors = res.errors;
            let grown = res.rss_held_kb.saturating_sub(before);
            if res.established > 0 {
                row.kib_per_conn = grown as f64 / res.established as f64;
            }
            row.first_error = res.first_error.unwrap_or_default();
            if let Some(active) = res.server_active
                && active != res.established
            {
                let _ = write!(row.first_error, " (server had {active} open)");
            }
            let _ = res.threads_held;
        }
    }
    let (peak, threads) = sampler.finish();
    row.peak_rss_mib = mib(peak);
    row.rss_delta_mib = mib(peak.saturating_sub(before));
    row.peak_threads = threads;
    row
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.2}")
    }
}

fn print_header_row() {
    println!(
        "{:<13} {:<20} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>9}",
        "engine",
        "scenario",
        "ok",
        "errors",
        "req/s",
        "MiB/s",
        "p50 ms",
        "p99 ms",
        "peak MiB",
        "+MiB",
        "threads",
        "KiB/conn"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:<13} {:<20} {:>10} {:>8} {:>11.0} {:>9.1} {:>9} {:>9} {:>10.1} {:>10.1} {:>8} {:>9}",
        r.engine.name(),
        r.scenario,
        r.ok,
        r.errors,
        r.rps,
        r.mib_s,
        fmt_ms(r.p50_ms),
        fmt_ms(r.p99_ms),
        r.peak_rss_mib,
        r.rss_delta_mib,
        r.peak_threads,
        if r.kib_per_conn.is_nan() {
            "-".to_string()
        } else {
            format!("{:.1}", r.kib_per_conn)
        }
    );
    if !r.first_error.is_empty() {
        println!("{:<13}   first error: {}", "", r.first_error);
    }
}

fn write_csv(rows: &[Row], path: &Path) -> io::Result<()> {
    let mut out = String::from(
        "engine,scenario,kind,connections,seconds,ok,errors,req_per_s,mib_per_s,p50_ms,p99_ms,rss_before_mib,peak_rss_mib,rss_delta_mib,peak_threads,kib_per_idle_conn,first_error\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{},{},{:.1},{:.2},{:.3},{:.3},{:.1},{:.1},{:.1},{},{:.2},\"{}\"",
            r.engine.name(),
            r.scenario,
            if r.kind == Kind::Load { "load" } else { "idle" },
            r.conns,
            r.secs,
            r.ok,
            r.errors,
            r.rps,
            r.mib_s,
            r.p50_ms,
            r.p99_ms,
            r.rss_before_mib,
            r.peak_rss_mib,
            r.rss_delta_mib,
            r.peak_threads,
            r.kib_per_conn,
            r.first_error.replace('"', "'")
        );
    }
    std::fs::write(path, out)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn main() {
    // A WebSocket client process (this executable run again by ws.rs) runs
    // its scenario and exits here; then, if asked, the pinning, before any
    // thread starts.
    ws::client_main_if_asked();
    ws::pin_if_asked();
    let s = Settings::from_env();
    let only = std::env::var("COSERVE_BENCH_ONLY").unwrap_or_default();
    let (run_http, run_ws) = match only.as_str() {
        "http" => (true, false),
        "ws" => (false, true),
        _ => (true, true),
    };
    // may's runtime, shared by both coserve servers, may_minihttp and the
    // load generator: coserve's settings (a worker per core, not pinned,
    // its default coroutine stack), set once before anything uses may.
    Runtime::new().start().expect("start may's runtime");
    let nofile = coserve::raise_open_files_limit().unwrap_or(1024);
    // Both ends of every connection live in this process.
    let max_conns = (nofile.saturating_sub(500) / 2).max(1) as usize;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("1k.bin"), vec![b'x'; SMALL]).expect("write 1k.bin");
    std::fs::write(dir.path().join("10m.bin"), vec![b'x'; LARGE]).expect("write 10m.bin");

    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    println!("# coserve engines benchmark");
    println!("# date: {date}");
    println!("# cpu: {cores} x {} (nproc {cores})", cpu_model());
    println!(
        "# mode: {}; {:.1} s per load scenario; fd limit {nofile} (connections capped at {max_conns})",
        if s.quick {
            "QUICK (smoke test)"
        } else {
            "full"
        },
        s.duration.as_secs_f64()
    );
    println!(
        "# NOTE: servers run in-process and the load generator (may coroutines) shares the \
         process, the may runtime ({cores} workers) and the CPUs: RSS and thread counts include \
         the client side."
    );
    println!(
        "# ok = correct responses (200, full Content-Length body) in the window; idle: \
         connections held; +MiB = peak RSS minus RSS before the scenario (heap trimmed first); KiB/conn = RSS growth \
         per held idle connection."
    );
    println!("# may_minihttp answers a fixed body from memory (no files): the may ceiling.");
    let engines = [Engine::Coroutine, Engine::Thread, Engine::MayMinihttp];
    let list = scenarios(&s, max_conns);
    let mut rows = Vec::new();
    if run_http {
        println!();
        print_header_row();
    }
    let upstream = if run_http {
        Some(start_upstream().expect("start the upstream of `upstream 50ms`"))
    } else {
        None
    };
    let upstream_addr = upstream.as_ref().map(|u| u.local_addr());
    for &engine in engines.iter().filter(|_| run_http) {
        let target = match start(engine, dir.path(), upstream_addr.expect("started")) {
            Ok(t) => t,
            Err(e) => {
                println!("{:<13} cannot start: {e}", engine.name());
                continue;
            }
        };
        for sc in list
            .iter()
            .filter(|sc| !(sc.coserve_only && engine == Engine::MayMinihttp))
        {
            let row = run_scenario(engine, &target, sc, &s);
            print_row(&row);
            rows.push(row);
        }
        target.settle();
        target.stop();
    }
    let ws_rows = if run_ws {
        ws::run(&s, nofile)
    } else {
        Vec::new()
    };

    let out = target_dir();
    let _ = std::fs::create_dir_all(&out);
    println!();
    if run_http {
        let csv = out.join("engines.csv");
        match write_csv(&rows, &csv) {
            Ok(()) => println!("wrote {}", csv.display()),
            Err(e) => println!("cannot write {}: {e}", csv.display()),
        }
        println!(
            "chart: cargo run -p coserve-chart -- engines {} {}",
            csv.display(),
            out.join("engines.svg").display()
        );
    }
    if run_ws {
        let csv = out.join("engines-ws.csv");
        match ws::write_csv(&ws_rows, &csv) {
            Ok(()) => println!("wrote {}", csv.display()),
            Err(e) => println!("cannot write {}: {e}", csv.display()),
        }
    }

    if s.quick {
        let mut failures = Vec::new();
        for r in &rows {
            if r.ok == 0 {
                failures.push(format!(
                    "{} / {}: no correct responses",
                    r.engine.name(),
                    r.scenario
                ));
            }
            if r.engine == Engine::Coroutine && r.errors > 0 {
                failures.push(format!(
                    "{} / {}: {} errors ({})",
                    r.engine.name(),
                    r.scenario,
                    r.errors,
                    r.first_error
                ));
            }
        }
        let expected: usize = engines
            .iter()
            .map(|&e| {
                list.iter()
                    .filter(|sc| !(sc.coserve_only && e == Engine::MayMinihttp))
                    .count()
            })
            .sum();
        if run_http && rows.len() != expected {
            failures.push("not every engine ran".into());
        }
        if run_ws {
            failures.extend(ws::quick_failures(&ws_rows));
        }
        if !failures.is_empty() {
            eprintln!("quick run failed:\n  {}", failures.join("\n  "));
            std::process::exit(1);
        }
        println!("quick run: all sane");
    }
    // Connections of may_minihttp and coroutines parked in may do not hold
    // the process: exit explicitly.
    std::process::exit(0);
}
