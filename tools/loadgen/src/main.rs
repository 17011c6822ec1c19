//! A load generator on may coroutines: held keep-alive connections, a
//! connection flood and a slowloris crowd, each optionally alongside normal
//! clients whose latency is measured. `scripts/bench/load.sh` drives it
//! against the `coserve` binary; it speaks plain HTTP/1.1 to any server,
//! with the client of `coserve-http1`.
//!
//! ```sh
//! cargo build --release -p coserve-loadgen
//! L=target/release/loadgen
//! $L --addr 127.0.0.1:8000 --held 15000 --duration 20
//! $L --addr 127.0.0.1:8000 --flood 5000 --watch-pid "$SERVER_PID"
//! $L --addr 127.0.0.1:8000 --slowloris 5000 --trickle-ms 1000 --header-timeout 5 --normal 50
//! ```
//!
//! - `--held N`: opens N keep-alive connections (at most `--ramp` connecting
//!   at once), each warmed up with one request; once all are open, every
//!   one makes requests back to back for `--duration` seconds. Each answer
//!   must be a 200 with the body length the first probe saw.
//! - `--flood N`: opens N connections as fast as it can, one request each,
//!   and closes none of them itself. Each is counted by what it got: a 200
//!   (then kept open), a 503, a close without an answer, a reset, nothing.
//!   Once every one is counted, the served ones ask again, to show that the
//!   admitted connections are still served after the flood.
//! - `--slowloris N`: opens N connections that send a request line and a
//!   `Host` field at once, then one header byte every `--trickle-ms`, never
//!   finishing the head. Reports when the server closed each, counted from
//!   its first byte, against `--header-timeout` if given.
//! - `--normal K`: K keep-alive clients making a request every
//!   `--normal-pause-ms` while the above runs (or for `--duration` alone),
//!   with their latency measured.
//! - `--watch-pid PID`: samples the descriptors, threads and resident memory
//!   of process PID (the server) every `--watch-ms`, and reports the peaks.
//!
//! It prints human-readable lines, then one machine-readable line
//! `result mode=... key=value ...`. The exit status is 0 when the run
//! happened, whatever it measured: judging the numbers is the caller's job.
//! The soft descriptor limit is raised to the hard one first.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use coserve_http1::procfs::{Process, Sampler};
use coserve_http1::{Connection, ErrorKind, Framing, Latencies};
use may::coroutine::JoinHandle;
use may::net::TcpStream;
use may::sync::{Semphore, SyncFlag, WaitGroup};

/// A load generator on may coroutines: held keep-alive connections, a
/// connection flood or a slowloris crowd, with normal clients alongside.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    addr: String,

    /// The path held, flood and normal clients ask for.
    #[arg(long, default_value = "/")]
    path: String,

    /// Hold N keep-alive connections, each making requests for --duration.
    #[arg(long, value_name = "N")]
    held: Option<usize>,

    /// Open N connections as fast as possible and keep them open.
    #[arg(long, value_name = "N")]
    flood: Option<usize>,

    /// Open N connections that trickle their request head.
    #[arg(long, value_name = "N")]
    slowloris: Option<usize>,

    /// How long held (or lone normal) clients make requests; also the most
    /// a slowloris connection is kept open.
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    duration: f64,

    /// The slowloris trickle: one header byte every this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    trickle_ms: u64,

    /// The server's header timeout, to report slowloris closes against.
    #[arg(long, value_name = "SECS")]
    header_timeout: Option<f64>,

    /// Normal keep-alive clients running alongside, latency measured.
    #[arg(long, value_name = "K", default_value_t = 0)]
    normal: usize,

    /// Pause of each normal client between its requests.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    normal_pause_ms: u64,

    /// Sample the descriptors, threads and memory of this process.
    #[arg(long, value_name = "PID")]
    watch_pid: Option<u32>,

    /// How often to sample --watch-pid.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    watch_ms: u64,

    /// Bound on each connect, read and write.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,

    /// Connections being opened at once by --held and --slowloris.
    #[arg(long, value_name = "N", default_value_t = 512)]
    ramp: usize,

    /// Stack of each client coroutine (buffers are on the heap).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    stack_size: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let modes = [args.held, args.flood, args.slowloris]
        .iter()
        .filter(|m| m.is_some())
        .count();
    if modes > 1 {
        eprintln!("loadgen: choose one of --held, --flood and --slowloris");
        return ExitCode::from(2);
    }
    if modes == 0 && args.normal == 0 {
        eprintln!("loadgen: nothing to do: give --held, --flood, --slowloris or --normal");
        return ExitCode::from(2);
    }
    let addr = match args.addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) | Err(_) => {
            eprintln!("loadgen: cannot resolve {:?}", args.addr);
            return ExitCode::from(2);
        }
    };
    let nofile = coserve::raise_open_files_limit().unwrap_or(0);
    may::config().set_stack_size(stack_words(args.stack_size));

    // The body length every answer must have, from one probe request.
    let expect = match probe(Arc::new(Ctx::new(addr, &args))) {
        Ok(len) => len,
        Err(e) => {
            eprintln!("loadgen: probe GET {} on {addr} failed: {e}", args.path);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "loadgen: {addr}, GET {} is a 200 of {expect} bytes; {nofile} descriptors allowed",
        args.path
    );
    let ctx = Arc::new(Ctx {
        expect,
        ..Ctx::new(addr, &args)
    });

    let watch = args.watch_pid.map(|pid| {
        let every = Duration::from_millis(args.watch_ms.max(1));
        Sampler::start(Process::Pid(pid), every, true)
    });
    let normal = Normal::start(&ctx, args.normal, &args);

    let mut fields = Fields::default();
    let mode_start = Instant::now();
    if let Some(n) = args.held {
        run_held(&ctx, n, &args, &mut fields);
    } else if let Some(n) = args.flood {
        run_flood(&ctx, n, &mut fields);
    } else if let Some(n) = args.slowloris {
        run_slowloris(&ctx, n, &args, &mut fields);
    } else {
        fields.push("mode", "normal");
        may::coroutine::sleep(secs(args.duration));
    }
    let mode_elapsed = mode_start.elapsed();

    if let Some(normal) = normal {
        normal.finish(&mut fields, mode_elapsed);
    }
    if let Some(watch) = watch {
        report_watched(watch, &mut fields);
    }
    println!("{}", fields.line());
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Shared pieces

/// What every client needs.
struct Ctx {
    addr: SocketAddr,
    request: Vec<u8>,
    path: String,
    timeout: Duration,
    stack_size: usize,
    /// The body length of a correct answer.
    expect: u64,
    base: Instant,
}

impl Ctx {
    fn new(addr: SocketAddr, args: &Args) -> Ctx {
        Ctx {
            addr,
            request: format!(
                "GET {} HTTP/1.1\r\nHost: loadgen\r\nUser-Agent: coserve-loadgen\r\n\r\n",
                args.path
            )
            .into_bytes(),
            path: args.path.clone(),
            timeout: Duration::from_secs(args.timeout.max(1)),
            stack_size: args.stack_size,
            expect: 0,
            base: Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn connect(&self) -> Result<Conn, Failure> {
        let connected = || -> io::Result<TcpStream> {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            let _ = s.set_nodelay(true);
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            Ok(s)
        };
        connected()
            .map(Connection::new)
            .map_err(|e| Failure::Connect(e.to_string()))
    }

    /// Sends the request on `c` and reads the answer, framed by
    /// `Content-Length`; returns its status and body length.
    fn exchange(&self, c: &mut Conn) -> Result<(u16, u64), Failure> {
        let reply = c.exchange(&self.request).map_err(Failure::Http)?;
        match reply.framing {
            Framing::Length(n) => Ok((reply.status, n)),
            other => Err(Failure::Framing(other)),
        }
    }

    /// One request on `c`; fails unless it is a 200 of the expected length.
    fn get_ok(&self, c: &mut Conn) -> Result<(), Failure> {
        match self.exchange(c)? {
            (200, len) if len == self.expect => Ok(()),
            (200, len) => Err(Failure::Length(len, self.expect)),
            (status, _) => Err(Failure::Status(status)),
        }
    }

    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        // SAFETY: the clients hold no thread-local and no std lock guard
        // across a call that may park the coroutine.
        unsafe {
            may::coroutine::Builder::new()
                .stack_size(stack_words(self.stack_size))
                .spawn(f)
        }
        .expect("spawn a client coroutine")
    }
}

fn stack_words(bytes: usize) -> usize {
    (bytes / std::mem::size_of::<usize>() + 1) & !1
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// A client connection.
type Conn = Connection<TcpStream>;

/// Why a request did not get a correct answer.
#[derive(Debug)]
enum Failure {
    Connect(String),
    Http(coserve_http1::Error),
    /// The body was not framed by `Content-Length`.
    Framing(Framing),
    Status(u16),
    Length(u64, u64),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Http(e) if e.kind() == ErrorKind::Malformed => {
                write!(f, "malformed answer: {e}")
            }
            Failure::Http(e) => write!(f, "{e}"),
            Failure::Framing(framing) => write!(f, "body not framed by length: {framing:?}"),
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Length(got, want) => write!(f, "body of {got} bytes, expected {want}"),
            Failure::Other(e) => write!(f, "{e}"),
        }
    }
}

/// The body length of a 200 for the configured path.
fn probe(ctx: Arc<Ctx>) -> Result<u64, Failure> {
    ctx.clone()
        .spawn(move || match ctx.exchange(&mut ctx.connect()?)? {
            (200, len) => Ok(len),
            (status, _) => Err(Failure::Status(status)),
        })
        .join()
        .unwrap_or_else(|_| Err(Failure::Other("the probe panicked".into())))
}

/// Errors: how many, and the first one.
#[derive(Default)]
struct Errors {
    count: u64,
    first: Option<String>,
}

impl Errors {
    fn note(&mut self, f: &Failure) {
        self.count += 1;
        self.first.get_or_insert_with(|| f.to_string());
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// The `result` line: `key=value` pairs in order.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn push(&mut self, key: &str, value: impl std::fmt::Display) {
        self.0.push((key.to_string(), value.to_string()));
    }

    fn ms(&mut self, key: &str, ms: f64) {
        self.push(key, format!("{ms:.2}"));
    }

    fn line(&self) -> String {
        let mut out = String::from("result");
        for (k, v) in &self.0 {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            // Values never hold spaces, so the line splits on them.
            out.push_str(&v.replace(' ', "_"));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The server's process, sampled

/// Reports what the sampler saw of the server's process.
fn report_watched(watch: Sampler, fields: &mut Fields) {
    let w = watch.finish();
    println!(
        "server process: {} samples; descriptors {} at the start, {} at most, {} at the end; \
         up to {} threads, peak RSS {:.1} MiB{}",
        w.samples,
        w.fds_first,
        w.fds_max,
        w.fds_last,
        w.threads_max,
        w.rss_max_kib as f64 / 1024.0,
        if w.alive { "" } else { " (it exited)" }
    );
    fields.push("server_fds_first", w.fds_first);
    fields.push("server_fds_max", w.fds_max);
    fields.push("server_fds_last", w.fds_last);
    fields.push("server_threads_max", w.threads_max);
    fields.push("server_rss_max_kib", w.rss_max_kib);
    fields.push("server_alive", w.alive);
}

/// One client's requests on a kept-alive connection: how many were served
/// right, the errors, the latencies.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: Errors,
    latencies: Latencies,
}

impl Tally {
    /// One timed request on `stream`, connecting first if there is none
    /// (and pausing 20 ms if that fails); a failure closes it.
    fn request(&mut self, ctx: &Ctx, stream: &mut Option<Conn>) {
        let s = match stream {
            Some(s) => s,
            None => match ctx.connect() {
                Ok(s) => stream.insert(s),
                Err(e) => {
                    self.errors.note(&e);
                    may::coroutine::sleep(Duration::from_millis(20));
                    return;
                }
            },
        };
        let t0 = Instant::now();
        match ctx.get_ok(s) {
            Ok(()) => {
                self.ok += 1;
                self.latencies.record(t0.elapsed());
            }
            Err(e) => {
                self.errors.note(&e);
                *stream = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Normal clients

struct Normal {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Tally>>,
}

impl Normal {
    fn start(ctx: &Arc<Ctx>, k: usize, args: &Args) -> Option<Normal> {
        if k == 0 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Duration::from_millis(args.normal_pause_ms);
        let handles = (0..k)
            .map(|_| {
                let (ctx, stop) = (ctx.clone(), stop.clone());
                ctx.clone().spawn(move || normal_client(&ctx, &stop, pause))
            })
            .collect();
        Some(Normal { stop, handles })
    }

    fn finish(self, fields: &mut Fields, ran: Duration) {
        self.stop.store(true, Ordering::Release);
        let k = self.handles.len();
        let mut ok = 0;
        let mut errors = Errors::default();
        let mut lat = Latencies::new();
        for h in self.handles {
            match h.join() {
                Ok(r) => {
                    ok += r.ok;
                    errors.merge(r.errors);
                    lat.extend(&r.latencies);
                }
                Err(_) => errors.note(&Failure::Other("a normal client panicked".into())),
            }
        }
        println!(
            "normal clients: {k}, {ok} requests served in {:.1} s, {} errors; latency p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms",
            ran.as_secs_f64(),
            errors.count,
            lat.percentile_ms(50.0).unwrap_or(0.0),
            lat.percentile_ms(99.0).unwrap_or(0.0),
            lat.percentile_ms(100.0).unwrap_or(0.0)
        );
        if let Some(e) = &errors.first {
            println!("normal clients: first error: {e}");
        }
        fields.push("normal", k);
        fields.push("normal_requests", ok);
        fields.push("normal_errors", errors.count);
        fields.ms("normal_p50_ms", lat.percentile_ms(50.0).unwrap_or(0.0));
        fields.ms("normal_p99_ms", lat.percentile_ms(99.0).unwrap_or(0.0));
        fields.ms("normal_max_ms", lat.percentile_ms(100.0).unwrap_or(0.0));
    }
}

fn normal_client(ctx: &Ctx, stop: &AtomicBool, pause: Duration) -> Tally {
    let mut r = Tally::default();
    let mut stream = None;
    while !stop.load(Ordering::Acquire) {
        r.request(ctx, &mut stream);
        if !pause.is_zero() {
            // The clients' pace, not a wait for anything.
            may::coroutine::sleep(pause);
        }
    }
    r
}

// ---------------------------------------------------------------------------
// --held

struct HeldResult {
    connected: bool,
    tally: Tally,
}

fn run_held(ctx: &Arc<Ctx>, n: usize, args: &Args, fields: &mut Fields) {
    let ramp = Arc::new(Semphore::new(args.ramp.max(1)));
    let go = Arc::new(SyncFlag::new());
    let end_ns = Arc::new(AtomicU64::new(0));
    let ready = WaitGroup::new();
    let opening = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, ramp, go, end_ns, ready) = (
                ctx.clone(),
                ramp.clone(),
                go.clone(),
                end_ns.clone(),
                ready.clone(),
            );
            ctx.spawn(move || held_client(&c, &ramp, ready, &go, &end_ns))
        })
        .collect();
    ready.wait();
    let opened = opening.elapsed();
    let start = Instant::now();
    end_ns.store(
        ctx.now_ns() + secs(args.duration).as_nanos() as u64,
        Ordering::Release,
    );
    go.fire();

    let mut connected = 0;
    let mut ok = 0;
    let mut min_per_conn = u64::MAX;
    let mut errors = Errors::default();
    let mut lat = Latencies::new();
    for h in handles {
        match h.join() {
            Ok(r) => {
                connected += usize::from(r.connected);
                ok += r.tally.ok;
                min_per_conn = min_per_conn.min(r.tally.ok);
                errors.merge(r.tally.errors);
                lat.extend(&r.tally.latencies);
            }
            Err(_) => errors.note(&Failure::Other("a client panicked".into())),
        }
    }
    let ran = start.elapsed();
    let rps = ok as f64 / ran.as_secs_f64();
    println!(
        "held: {connected} of {n} connections open at once (opened in {:.2} s), each making \
         requests for {:.1} s",
        opened.as_secs_f64(),
        ran.as_secs_f64()
    );
    println!(
        "held: {ok} requests served ({rps:.0}/s), {} errors, fewest on one connection {}; \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        errors.count,
        min_per_conn,
        lat.percentile_ms(50.0).unwrap_or(0.0),
        lat.percentile_ms(99.0).unwrap_or(0.0),
        lat.percentile_ms(100.0).unwrap_or(0.0)
    );
    if let Some(e) = &errors.first {
        println!("held: first error: {e}");
    }
    fields.push("mode", "held");
    fields.push("conns", n);
    fields.push("connected", connected);
    fields.push("open_secs", format!("{:.2}", opened.as_secs_f64()));
    fields.push("secs", format!("{:.2}", ran.as_secs_f64()));
    fields.push("requests", ok);
    fields.push("errors", errors.count);
    fields.push("rps", format!("{rps:.0}"));
    fields.push("min_per_conn", min_per_conn);
    fields.ms("p50_ms", lat.percentile_ms(50.0).unwrap_or(0.0));
    fields.ms("p99_ms", lat.percentile_ms(99.0).unwrap_or(0.0));
    fields.ms("max_ms", lat.percentile_ms(100.0).unwrap_or(0.0));
}

fn held_client(
    ctx: &Ctx,
    ramp: &Semphore,
    ready: WaitGroup,
    go: &SyncFlag,
    end_ns: &AtomicU64,
) -> HeldResult {
    let mut r = Tally::default();
    // Open and warm up with one request, a bounded number at a time.
    ramp.wait();
    let mut stream = None;
    r.request(ctx, &mut stream);
    // The warm-up is not counted.
    (r.ok, r.latencies) = (0, Latencies::new());
    ramp.post();
    let connected = stream.is_some();
    drop(ready);
    go.wait();
    let end = end_ns.load(Ordering::Acquire);
    while ctx.now_ns() < end {
        r.request(ctx, &mut stream);
    }
    HeldResult {
        connected,
        tally: r,
    }
}

// ---------------------------------------------------------------------------
// --flood

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Got {
    /// A correct 200, and the connection stays open.
    Served,
    /// A 503, then the close.
    Refused,
    /// A 503 but no close within the timeout.
    RefusedOpen,
    /// Closed without an answer.
    Closed,
    Reset,
    /// Nothing within the timeout.
    Nothing,
    ConnectFailed,
    Other,
}

impl Got {
    const ALL: [Got; 8] = [
        Got::Served,
        Got::Refused,
        Got::RefusedOpen,
        Got::Closed,
        Got::Reset,
        Got::Nothing,
        Got::ConnectFailed,
        Got::Other,
    ];

    fn key(self) -> &'static str {
        match self {
            Got::Served => "ok",
            Got::Refused => "refused_503",
            Got::RefusedOpen => "refused_503_open",
            Got::Closed => "closed",
            Got::Reset => "reset",
            Got::Nothing => "no_answer",
            Got::ConnectFailed => "connect_failed",
            Got::Other => "other",
        }
    }
}

struct FloodResult {
    got: Got,
    /// For a served connection: whether it was served again after the flood.
    again: Option<Result<(), Failure>>,
    detail: Option<String>,
}

fn run_flood(ctx: &Arc<Ctx>, n: usize, fields: &mut Fields) {
    let counted = WaitGroup::new();
    let asked_again = WaitGroup::new();
    let again = Arc::new(SyncFlag::new());
    let release = Arc::new(SyncFlag::new());
    let open = Arc::new(AtomicUsize::new(0));
    let peak_open = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, counted, asked_again, again, release, open, peak) = (
                ctx.clone(),
                counted.clone(),
                asked_again.clone(),
                again.clone(),
                release.clone(),
                open.clone(),
                peak_open.clone(),
            );
            ctx.spawn(move || {
                flood_client(&c, counted, asked_again, &again, &release, (&open, &peak))
            })
        })
        .collect();
    counted.wait();
    let flooded = start.elapsed();
    again.fire();
    asked_again.wait();
    release.fire();

    let mut counts = std::collections::BTreeMap::new();
    let mut again_ok = 0;
    let mut again_errors = Errors::default();
    let mut details = Errors::default();
    for h in handles {
        match h.join() {
            Ok(r) => {
                *counts.entry(r.got).or_insert(0usize) += 1;
                match r.again {
                    Some(Ok(())) => again_ok += 1,
                    Some(Err(e)) => again_errors.note(&e),
                    None => {}
                }
                if let Some(d) = r.detail {
                    details.note(&Failure::Other(d));
                }
            }
            Err(_) => *counts.entry(Got::Other).or_insert(0) += 1,
        }
    }
    let count = |g: Got| counts.get(&g).copied().unwrap_or(0);
    println!(
        "flood: {n} connections answered in {:.2} s, up to {} open at once on this side",
        flooded.as_secs_f64(),
        peak_open.load(Ordering::Relaxed)
    );
    let summary: Vec<String> = Got::ALL
        .iter()
        .map(|&g| format!("{} {}", g.key(), count(g)))
        .collect();
    println!("flood: {}", summary.join(", "));
    println!(
        "flood: after the flood, {again_ok} of {} served connections served again ({} errors)",
        count(Got::Served),
        again_errors.count
    );
    if let Some(e) = &again_errors.first {
        println!("flood: first error asking again: {e}");
    }
    if let Some(e) = &details.first {
        println!("flood: first unexpected answer: {e}");
    }
    fields.push("mode", "flood");
    fields.push("conns", n);
    fields.push("secs", format!("{:.2}", flooded.as_secs_f64()));
    for g in Got::ALL {
        fields.push(g.key(), count(g));
    }
    fields.push("served_again", again_ok);
    fields.push("again_errors", again_errors.count);
}

fn flood_client(
    ctx: &Ctx,
    counted: WaitGroup,
    asked_again: WaitGroup,
    again: &SyncFlag,
    release: &SyncFlag,
    (open, peak): (&AtomicUsize, &AtomicUsize),
) -> FloodResult {
    let mut detail = None;
    let (got, stream) = match ctx.connect() {
        Err(e) => {
            detail = Some(e.to_string());
            (Got::ConnectFailed, None)
        }
        Ok(mut s) => {
            let now_open = open.fetch_add(1, Ordering::AcqRel) + 1;
            peak.fetch_max(now_open, Ordering::AcqRel);
            let got = match ctx.exchange(&mut s) {
                Ok((200, len)) if len == ctx.expect => Got::Served,
                // Read until the close: a reset counts as the close.
                Ok((503, _)) => match s.drain_to_close() {
                    Ok(_) => Got::Refused,
                    Err(_) => Got::RefusedOpen,
                },
                Ok((status, len)) => {
                    detail = Some(format!("status {status} of {len} bytes"));
                    Got::Other
                }
                Err(Failure::Http(e)) if e.kind() == ErrorKind::Closed => Got::Closed,
                Err(Failure::Http(e)) if e.kind() == ErrorKind::Reset => Got::Reset,
                Err(Failure::Http(e)) if e.kind() == ErrorKind::Timeout => Got::Nothing,
                Err(e) => {
                    detail = Some(e.to_string());
                    Got::Other
                }
            };
            if got == Got::Served {
                (got, Some(s))
            } else {
                drop(s);
                open.fetch_sub(1, Ordering::AcqRel);
                (got, None)
            }
        }
    };
    drop(counted);
    let mut result = FloodResult {
        got,
        again: None,
        detail,
    };
    if let Some(mut s) = stream {
        again.wait();
        result.again = Some(ctx.get_ok(&mut s));
        drop(asked_again);
        // Held open until every connection has been asked again.
        release.wait();
        open.fetch_sub(1, Ordering::AcqRel);
    }
    result
}

// ---------------------------------------------------------------------------
// --slowloris

/// How a slowloris connection ended.
struct SlowResult {
    /// Seconds from the first byte to the close; None if not closed.
    closed_after: Option<f64>,
    /// The status the server answered before closing, if any.
    status: Option<u16>,
    /// Header bytes trickled after the first write.
    trickled: u64,
    connect_failed: bool,
    /// Nanoseconds since the start when its first byte was sent.
    first_byte_ns: u64,
    /// The server reset the connection (rather than closing it).
    reset: bool,
}

fn run_slowloris(ctx: &Arc<Ctx>, n: usize, args: &Args, fields: &mut Fields) {
    let ramp = Arc::new(Semphore::new(args.ramp.max(1)));
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_millis(args.trickle_ms.max(1));
    let give_up = secs(args.duration);
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, ramp, open, peak) = (ctx.clone(), ramp.clone(), open.clone(), peak.clone());
            ctx.spawn(move || slow_client(&c, &ramp, (&open, &peak), interval, give_up))
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for h in handles {
        results.push(h.join().unwrap_or(SlowResult {
            closed_after: None,
            status: None,
            trickled: 0,
            connect_failed: true,
            first_byte_ns: 0,
            reset: false,
        }));
    }
    let ran = start.elapsed();

    let connect_failed = results.iter().filter(|r| r.connect_failed).count();
    let mut closes: Vec<f64> = results.iter().filter_map(|r| r.closed_after).collect();
    closes.sort_by(f64::total_cmp);
    let closed = closes.len();
    let still_open = n - connect_failed - closed;
    let with_408 = results.iter().filter(|r| r.status == Some(408)).count();
    let other_status = results
        .iter()
        .filter(|r| r.status.is_some_and(|s| s != 408))
        .count();
    let resets = results.iter().filter(|r| r.reset).count();
    let firsts = results
        .iter()
        .filter(|r| !r.connect_failed)
        .map(|r| r.first_byte_ns);
    let spread = match (firsts.clone().min(), firsts.max()) {
        (Some(a), Some(b)) => Duration::from_nanos(b - a).as_secs_f64(),
        _ => 0.0,
    };
    let trickled_max = results.iter().map(|r| r.trickled).max().unwrap_or(0);
    let at = |p: f64| -> f64 {
        if closes.is_empty() {
            return 0.0;
        }
        closes[(((p / 100.0) * (closes.len() - 1) as f64).round() as usize).min(closes.len() - 1)]
    };
    println!(
        "slowloris: {n} connections trickling a byte every {} ms, up to {} open at once, \
         first bytes spread over {spread:.2} s",
        interval.as_millis(),
        peak.load(Ordering::Relaxed)
    );
    println!(
        "slowloris: {closed} closed by the server ({with_408} with a 408, {other_status} with \
         another status, {resets} reset), {still_open} still open after {:.0} s, {connect_failed} \
         failed to connect; at most {trickled_max} bytes trickled on one",
        give_up.as_secs_f64()
    );
    println!(
        "slowloris: closed after their first byte: min {:.3} s, p50 {:.3} s, p99 {:.3} s, \
         max {:.3} s",
        at(0.0),
        at(50.0),
        at(99.0),
        at(100.0)
    );
    // Against the header timeout: a close up to 10 ms early is a timer's
    // rounding; one at or after the next trickled byte is late.
    let window = args.header_timeout.map(|ht| {
        let on_time_until = ht + 0.9 * interval.as_secs_f64();
        let early = closes.iter().filter(|&&c| c < ht - 0.01).count();
        let late = closes.iter().filter(|&&c| c > on_time_until).count();
        println!(
            "slowloris: against the header timeout of {ht} s: {early} closed early, {} on time \
             (by {on_time_until:.2} s), {late} late",
            closed - early - late
        );
        (early, closed - early - late, late)
    });
    fields.push("mode", "slowloris");
    fields.push("conns", n);
    fields.push("secs", format!("{:.2}", ran.as_secs_f64()));
    fields.push("trickle_ms", interval.as_millis());
    fields.push("peak_open", peak.load(Ordering::Relaxed));
    fields.push("first_byte_spread_s", format!("{spread:.3}"));
    fields.push("closed", closed);
    fields.push("status_408", with_408);
    fields.push("other_status", other_status);
    fields.push("reset", resets);
    fields.push("still_open", still_open);
    fields.push("connect_failed", connect_failed);
    fields.push("trickled_max", trickled_max);
    fields.push("close_min_s", format!("{:.3}", at(0.0)));
    fields.push("close_p50_s", format!("{:.3}", at(50.0)));
    fields.push("close_p99_s", format!("{:.3}", at(99.0)));
    fields.push("close_max_s", format!("{:.3}", at(100.0)));
    if let (Some(ht), Some((early, on_time, late))) = (args.header_timeout, window) {
        fields.push("header_timeout_s", ht);
        fields.push("closed_early", early);
        fields.push("closed_on_time", on_time);
        fields.push("closed_late", late);
    }
}

fn slow_client(
    ctx: &Ctx,
    ramp: &Semphore,
    (open, peak): (&AtomicUsize, &AtomicUsize),
    interval: Duration,
    give_up: Duration,
) -> SlowResult {
    let mut r = SlowResult {
        closed_after: None,
        status: None,
        trickled: 0,
        connect_failed: false,
        first_byte_ns: 0,
        reset: false,
    };
    ramp.wait();
    let prefix = format!(
        "GET {} HTTP/1.1\r\nHost: loadgen\r\nX-Slowloris: ",
        ctx.path
    );
    // The trickle and the reads are by hand: the stream itself.
    let mut s = match ctx.connect() {
        Ok(c) => c.into_parts().0,
        Err(_) => {
            ramp.post();
            r.connect_failed = true;
            return r;
        }
    };
    let t0 = Instant::now();
    r.first_byte_ns = ctx.now_ns();
    let sent = s.write_all(prefix.as_bytes());
    ramp.post();
    let now_open = open.fetch_add(1, Ordering::AcqRel) + 1;
    peak.fetch_max(now_open, Ordering::AcqRel);
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut next = t0 + interval;
    let deadline = t0 + give_up;
    if sent.is_err() {
        r.closed_after = Some(t0.elapsed().as_secs_f64());
        r.reset = true;
    }
    while r.closed_after.is_none() {
        let now = Instant::now();
        if now >= deadline {
            break; // still open: the server never closed it
        }
        if now >= next {
            // The trickle itself is the behaviour under test.
            match s.write_all(b"a") {
                Ok(()) => r.trickled += 1,
                Err(_) => {
                    r.closed_after = Some(t0.elapsed().as_secs_f64());
                    r.reset = true;
                }
            }
            next += interval;
            continue;
        }
        let wait = next.min(deadline) - now;
        if s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => r.closed_after = Some(t0.elapsed().as_secs_f64()),
            Ok(k) => answer.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) => {}
            Err(_) => {
                r.closed_after = Some(t0.elapsed().as_secs_f64());
                r.reset = true;
            }
        }
    }
    r.status = coserve_http1::parse_head(&answer)
        .ok()
        .map(|(head, _)| head.status);
    open.fetch_sub(1, Ordering::AcqRel);
    r
}
