//! The WebSocket scenarios of `cargo bench --bench engines` (issue 20):
//! long-lived connections, coserve's coroutine engine against its thread
//! engine (may_minihttp has no WebSocket, so it sits these out).
//!
//! - `ws idle xN`: N connections to `/echo`, each sends one 64-byte message
//!   and reads its echo, then all are held idle (the client keeps only the
//!   sockets) for a while; the server's RSS growth per connection and its
//!   thread count while they are held.
//! - `ws echo xC`: C clients, closed loop, each sending a 64-byte binary
//!   message and waiting for its echo: echoes per second, p50/p99 round
//!   trip.
//! - `ws broadcast xN`: N subscribers on `/hub` (each registers a
//!   `WsSender`), then a publisher on `/publish` sends one text, which the
//!   server hands to every subscriber's sender: the time from the
//!   publisher's send until the last subscriber has it, over a few rounds.
//! - `ws idle events xN` and `ws broadcast events xN`: the same on
//!   `/echo-events` and `/hub-events`, endpoints of callbacks
//!   (`ws::WsEvents`), whose quiet connections park without a coroutine.
//!
//! The server runs in this process; the clients run in **another
//! process**: for each scenario the bench runs its own executable again
//! with `COSERVE_WS_CLIENT` set to the scenario and its parameters
//! (`client_main_if_asked`, first thing in `main`, runs that client side
//! and exits). So the RSS, threads and peaks in the table are the
//! server's alone (plus this process's bookkeeping: the main thread, the
//! `/proc` sampler and the thread that reads the client's output), and
//! the descriptor limit is the server's alone. The clients are tungstenite
//! over may's `TcpStream`, after a handshake written here, on may
//! coroutines in the client process (its own may runtime, configured as
//! `main` configures this one). Each reports through a channel, so that
//! one that never ends (a stack overflow abandons a coroutine) is counted,
//! not waited for.
//!
//! The two processes speak in lines of text: the client writes to its
//! stdout `held ...` (idle: its connections are open), `subscribed`
//! (broadcast: its subscribers are connected) and `result ...`, each a word
//! and `key=value` fields, its first error last as `error=<the rest of the
//! line>`; the bench writes to the client's stdin `go registered=K`
//! (broadcast: the hub has K subscribers, publish) and closes it when the
//! client should close everything and exit (idle). Every wait for the
//! client has a deadline: a client that dies or hangs becomes an error in
//! its row, and is killed; every client process is reaped.
//!
//! `COSERVE_BENCH_WS=coroutine,broadcast` (engines and scenarios, comma
//! separated: `coroutine`, `thread`, `idle`, `idle-events`, `echo`,
//! `broadcast`, `broadcast-events`) runs only those.
//!
//! `COSERVE_BENCH_PIN=1` pins the bench (the server, and the HTTP half's
//! server and load generator too) to CPU 0 before any thread starts, and
//! each client process to CPU 1, so that server and clients do not take
//! each other's CPU; may then runs one worker in each process (its worker
//! count follows the CPUs a process may use). Unpinned, the default, both
//! processes have a worker per core and share every core.

use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coserve::ws::{Ws, WsEvents, WsOptions, WsSender};
use coserve::{EngineKind, Router, Runtime, Server};
use coserve_http1::Latencies;
use tungstenite::Message;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::{
    Engine, Phase, Running, Sampler, Settings, Target, connect, coserve_config, fmt_ms, mib,
    proc_status, spawn_co_sized, trim_heap,
};

/// Stack of each WebSocket client coroutine. Measured (an odd size makes
/// may report each coroutine's use): at most 5.2 KiB, the first to call
/// tungstenite's masking RNG on a worker; about 4.7 KiB otherwise. Twice
/// the HTTP client's, for the error paths; only touched pages are resident.
const WS_CLIENT_STACK: usize = 64 * 1024;
/// The key of RFC 6455's example, and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Size of the echoed messages.
const ECHO_LEN: usize = 64;
/// How many messages the publisher broadcasts, one at a time.
const ROUNDS: usize = 5;
/// The server's ping interval and idle timeout: long, so that no ping
/// happens during a scenario.
const QUIET: Duration = Duration::from_secs(600);
/// Set in a client process's environment: the scenario and its parameters.
const CLIENT_ENV: &str = "COSERVE_WS_CLIENT";
/// `1` pins the bench to CPU 0 and the client processes to CPU 1.
const PIN_ENV: &str = "COSERVE_BENCH_PIN";
/// What the bench allows a client process beyond the client's own
/// deadlines: its start (exec, may's runtime) and its exit.
const CLIENT_SLACK: Duration = Duration::from_secs(15);

/// A duration that depends on the mode: short for QUICK, long for full
/// runs.
fn quick_or(s: &Settings, quick_secs: u64, full_secs: u64) -> Duration {
    Duration::from_secs(if s.quick { quick_secs } else { full_secs })
}

/// How long the idle client may take to open its connections.
fn idle_open_time(s: &Settings) -> Duration {
    quick_or(s, 30, 180)
}

/// How long the echo clients may take to connect.
fn echo_ramp_time(s: &Settings) -> Duration {
    quick_or(s, 10, 30)
}

/// How long the broadcast subscribers may take to connect.
fn broadcast_ramp_time(s: &Settings) -> Duration {
    quick_or(s, 10, 60)
}

/// How long the publisher waits for one round to reach every subscriber.
fn round_time(s: &Settings) -> Duration {
    s.io_timeout * 2
}

/// The connection counts, capped by the descriptor limit.
struct Sizes {
    idle: usize,
    echo: usize,
    broadcast: usize,
}

/// Only the server's descriptors are in this process (the clients' are in
/// theirs): one per connection, and two per broadcast subscriber on the
/// thread engine, whose `WsSender` wakes the connection's thread through
/// an eventfd. So the thread engine's broadcast may have fewer
/// subscribers than the coroutine engine's (the table says how many).
fn sizes(engine: Engine, quick: bool, nofile: u64) -> Sizes {
    let spare = nofile.saturating_sub(500);
    let cap = |per_conn: u64| (spare / per_conn).max(1) as usize;
    let per_subscriber = if engine == Engine::Thread { 2 } else { 1 };
    let (idle, echo, broadcast) = if quick {
        (300, 50, 200)
    } else {
        (10_000, 1_000, 10_000)
    };
    Sizes {
        idle: idle.min(cap(1)),
        echo: echo.min(cap(1)),
        broadcast: broadcast.min(cap(per_subscriber)),
    }
}

// ---------------------------------------------------------------------------
// The server

/// The broadcast hub: the senders of the connections on `/hub`.
#[derive(Default)]
struct Hub {
    senders: Mutex<Vec<WsSender>>,
    /// Connections on `/hub` that have registered their sender.
    registered: AtomicUsize,
}

impl Hub {
    fn senders(&self) -> MutexGuard<'_, Vec<WsSender>> {
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `/echo` echoes every message; `/hub` registers the connection's sender
/// and waits (sending what is queued for it); `/publish` hands every
/// message to every registered sender and answers `"SENDERS FAILED"`.
fn app(hub: &Arc<Hub>) -> Router {
    let options = WsOptions::new()
        .max_message(64 * 1024)
        .ping_interval(QUIET)
        .idle_timeout(QUIET);
    let echo = Ws::new(|_req, mut ws| {
        while let Ok(msg) = ws.recv() {
            if ws.send(msg).is_err() {
                break;
            }
        }
    });
    let h = Arc::clone(hub);
    let subscribe = Ws::new(move |_req, mut ws| {
        let me = ws.sender();
        h.senders().push(me.clone());
        h.registered.fetch_add(1, Ordering::AcqRel);
        while ws.recv().is_ok() {}
        h.senders().retain(|s| !s.same_connection(&me));
        h.registered.fetch_sub(1, Ordering::AcqRel);
    });
    let h = Arc::clone(hub);
    let publish = Ws::new(move |_req, mut ws| {
        while let Ok(msg) = ws.recv() {
            let all = h.senders().clone();
            let failed = all.iter().filter(|s| s.send(msg.clone()).is_err()).count();
            if ws.send(format!("{} {failed}", all.len())).is_err() {
                break;
            }
        }
    });
    // The same two as `WsEvents` endpoints, which park between messages.
    let echo_events = WsEvents::new(|conn, msg| {
        let _ = conn.send(msg);
    });
    let (h, g) = (Arc::clone(hub), Arc::clone(hub));
    let subscribe_events = WsEvents::new(|_conn, _msg| {})
        .on_open(move |conn| {
            h.senders().push(conn.sender());
            h.registered.fetch_add(1, Ordering::AcqRel);
        })
        .on_close(move |conn, _why| {
            let me = conn.sender();
            g.senders().retain(|s| !s.same_connection(&me));
            g.registered.fetch_sub(1, Ordering::AcqRel);
        });
    Router::new()
        .ws("/echo", echo.options(options.clone()))
        .ws("/echo-events", echo_events.options(options.clone()))
        .ws("/hub", subscribe.options(options.clone()))
        .ws("/hub-events", subscribe_events.options(options.clone()))
        .ws("/publish", publish.options(options))
}

fn start_ws(engine: Engine) -> io::Result<(Target, Arc<Hub>)> {
    let kind = match engine {
        Engine::Thread => EngineKind::Thread,
        _ => EngineKind::Coroutine,
    };
    let hub = Arc::new(Hub::default());
    let server = Server::bind("127.0.0.1:0", coserve_config(kind))?;
    let addr = server.local_addr();
    let handle = server.spawn(app(&hub))?;
    Ok((
        Target {
            addr,
            running: Running::Coserve(handle),
        },
        hub,
    ))
}

// ---------------------------------------------------------------------------
// The client process, as the bench sees it

/// A line of the protocol: a word, `key=value` fields, and an error (the
/// rest of the line after ` error=`, which may hold spaces).
struct Fields {
    word: String,
    pairs: Vec<(String, String)>,
    error: String,
}

impl Fields {
    fn parse(line: &str) -> Fields {
        let (head, error) = line.split_once(" error=").unwrap_or((line, ""));
        let mut words = head.split_whitespace();
        let word = words.next().unwrap_or("").to_string();
        let pairs = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Fields {
            word,
            pairs,
            error: error.trim().to_string(),
        }
    }

    fn get<T: FromStr>(&self, key: &str) -> Result<T, String> {
        let value = self
            .pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("`{}` without {key}", self.word))?;
        value
            .parse()
            .map_err(|_| format!("`{}`: {key}={value} does not parse", self.word))
    }
}

/// A client process: its stdin (what the bench tells it), the lines of its
/// stdout (read by a thread, so that every wait can have a deadline).
struct ClientProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
}

impl ClientProc {
    /// Runs this executable again as the client side of `scenario`. Its
    /// arguments are left out: the client reads only its environment.
    fn spawn(scenario: &str, addr: SocketAddr, n: usize, s: &Settings) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let spec = format!(
            "{scenario} addr={addr} n={n} window_ms={} io_ms={} quick={}",
            s.duration.as_millis(),
            s.io_timeout.as_millis(),
            u8::from(s.quick)
        );
        let mut cmd = Command::new(exe);
        cmd.env(CLIENT_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if pinned() {
            // SAFETY: between fork and exec the closure only makes a
            // system call on a set built on the stack (no allocation, no
            // lock).
            unsafe { cmd.pre_exec(|| pin_to_cpu(1)) };
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("start the client process: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("ws-client-out".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        let mut proc = ClientProc {
            stdin: child.stdin.take(),
            child,
            lines,
            reader: None,
        };
        // On failure, dropping `proc` kills and reaps the child.
        proc.reader = Some(reader.map_err(|e| format!("spawn the reader: {e}"))?);
        Ok(proc)
    }

    /// Waits until `deadline` for the client's line that starts with
    /// `word` (other lines go to stderr).
    fn expect(&mut self, word: &str, deadline: Instant) -> Result<Fields, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let fields = Fields::parse(&line);
                    if fields.word == word {
                        return Ok(fields);
                    }
                    eprintln!("ws client: {line}");
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("the client process sent no `{word}` in time"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = match self.reap(Instant::now() + Duration::from_secs(1)) {
                        Ok(status) => status.to_string(),
                        Err(e) => e,
                    };
                    return Err(format!(
                        "the client process ended before `{word}` ({status})"
                    ));
                }
            }
        }
    }

    fn tell(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the client's stdin is closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("tell the client process {line:?}: {e}"))
    }

    /// Closes the client's stdin (its cue to close everything and exit)
    /// and reaps it; an error unless it exited by itself, successfully.
    fn finish(mut self) -> Result<(), String> {
        self.stdin = None;
        let status = self.reap(Instant::now() + CLIENT_SLACK)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the client process failed ({status})"))
        }
    }

    /// Waits until `deadline` for the client to exit; then kills it.
    fn reap(&mut self, deadline: Instant) -> Result<ExitStatus, String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => break,
                Err(e) => return Err(format!("wait for the client process: {e}")),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err("the client process did not exit in time; killed".into())
    }
}

impl Drop for ClientProc {
    /// Kills a client still running (a scenario that gave up on it) and
    /// reaps it; its output then ends, and so does the reader.
    fn drop(&mut self) {
        self.stdin = None;
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn pinned() -> bool {
    std::env::var(PIN_ENV).is_ok_and(|v| v == "1")
}

/// Pins the calling thread, and the threads it starts later, to `cpu`.
fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and
    // sched_setaffinity only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// With `COSERVE_BENCH_PIN=1`, pins this process to CPU 0 (the client
/// processes go to CPU 1). Call it before any thread starts: threads
/// inherit it, and may sizes its workers by it.
pub(super) fn pin_if_asked() {
    if pinned()
        && let Err(e) = pin_to_cpu(0)
    {
        eprintln!("{PIN_ENV}: cannot pin to CPU 0: {e}");
    }
}

// ---------------------------------------------------------------------------
// The client process, inside

/// If this process is a client process (`COSERVE_WS_CLIENT` is set), runs
/// the client side of its scenario and exits; otherwise returns. Call it
/// first thing in `main`: the client ignores the arguments (`cargo bench`
/// passes `--bench`), and may must be configured before anything uses it.
pub(super) fn client_main_if_asked() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    // As `main` does: may's runtime with coserve's settings, before
    // anything uses may, and as many descriptors as allowed.
    let started = Runtime::new()
        .start()
        .map_err(|e| format!("start may's runtime: {e}"));
    let _ = coserve::raise_open_files_limit();
    match started.and_then(|()| client_main(&spec)) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("ws client ({spec}): {e}");
            std::process::exit(2);
        }
    }
}

fn client_main(spec: &str) -> Result<(), String> {
    let f = Fields::parse(spec);
    let addr: SocketAddr = f.get("addr")?;
    let n: usize = f.get("n")?;
    let s = Settings {
        quick: f.get::<u8>("quick")? == 1,
        duration: Duration::from_millis(f.get("window_ms")?),
        scale: 1,
        io_timeout: Duration::from_millis(f.get("io_ms")?),
    };
    match f.word.as_str() {
        "idle" => idle_client(addr, n, &s, "/echo"),
        "idle-events" => idle_client(addr, n, &s, "/echo-events"),
        "echo" => echo_client(addr, n, &s),
        "broadcast" => broadcast_client(addr, n, &s, "/hub"),
        "broadcast-events" => broadcast_client(addr, n, &s, "/hub-events"),
        other => Err(format!("no client scenario {other:?}")),
    }
}

/// Writes a line to the bench.
fn say(line: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("write to the bench: {e}"))
}

/// The bench's next line; `None` once it has closed the client's stdin.
fn hear() -> Option<String> {
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

// ---------------------------------------------------------------------------
// The client

type Client = tungstenite::WebSocket<may::net::TcpStream>;

fn spawn_ws<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<may::coroutine::JoinHandle<T>> {
    spawn_co_sized(WS_CLIENT_STACK, f)
}

/// Connects, sends the handshake for `path`, checks the `101` and its
/// accept value, and hands the socket (with any bytes read past the head)
/// to tungstenite.
fn ws_connect(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Client, String> {
    let mut st = connect(addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    st.write_all(request.as_bytes())
        .map_err(|e| format!("handshake: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let end = loop {
        let n = st.read(&mut chunk).map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 8192 {
            return Err("handshake: response head too long".into());
        }
    };
    let rest = head.split_off(end);
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("HTTP/1.1 101 ") || !text.contains(ACCEPT) {
        let line = text.lines().next().unwrap_or("");
        return Err(format!("handshake refused: {line}"));
    }
    let config = WebSocketConfig::default().read_buffer_size(4096);
    Ok(tungstenite::WebSocket::from_partially_read(
        st,
        rest,
        Role::Client,
        Some(config),
    ))
}

/// The next text or binary message (pings and pongs skipped).
fn read_data(ws: &mut Client) -> Result<Message, String> {
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Ok(m),
            Ok(Message::Close(frame)) => return Err(format!("closed by the server: {frame:?}")),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// A 64-byte message that says which client sent it and when.
fn payload(id: usize, seq: u64) -> Bytes {
    let mut b = [b'x'; ECHO_LEN];
    b[..8].copy_from_slice(&(id as u64).to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    Bytes::copy_from_slice(&b)
}

/// Sends `msg` and reads one message back, which must be the same.
fn exchange(ws: &mut Client, msg: Bytes) -> Result<(), String> {
    ws.send(Message::Binary(msg.clone()))
        .map_err(|e| format!("send: {e}"))?;
    match read_data(ws)? {
        Message::Binary(b) if b == msg => Ok(()),
        Message::Binary(b) => Err(format!("echo differs ({} bytes)", b.len())),
        other => Err(format!("echo differs: {other:?}")),
    }
}

/// What one client (or opener) reports.
#[derive(Default)]
struct Report {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Latencies,
}

impl Report {
    fn note(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn add(&mut self, r: Report) {
        self.ok += r.ok;
        self.errors += r.errors;
        self.latencies.extend(&r.latencies);
        if self.first_error.is_none() {
            self.first_error = r.first_error;
        }
    }

    /// The line that tells the bench about it: `word ok= errors=
    /// unfinished= p50_ms= p99_ms=`, then `extra` (more fields), then the
    /// first error on one line.
    fn line(mut self, word: &str, unfinished: usize, extra: &str) -> String {
        let p50 = self.latencies.percentile_ms(50.0).unwrap_or(f64::NAN);
        let p99 = self.latencies.percentile_ms(99.0).unwrap_or(f64::NAN);
        let mut line = format!(
            "{word} ok={} errors={} unfinished={unfinished} p50_ms={p50} p99_ms={p99}",
            self.ok, self.errors
        );
        if !extra.is_empty() {
            let _ = write!(line, " {extra}");
        }
        if let Some(e) = self.first_error {
            let _ = write!(line, " error={}", e.replace(['\r', '\n'], " "));
        }
        line
    }
}

/// Collects `expected` reports until `deadline`; what did not come is
/// counted in `unfinished`.
fn collect<T>(rx: &mpsc::Receiver<T>, expected: usize, deadline: Instant) -> (Vec<T>, usize) {
    let mut got = Vec::with_capacity(expected);
    while got.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => got.push(r),
            Err(_) => break,
        }
    }
    let missing = expected - got.len();
    (got, missing)
}

/// Ramps up in batches so that the listen backlog is not flooded: after
/// every 256th client spawned, waits (until `deadline`) for all but 64 of
/// those spawned to have connected.
fn pace_ramp_up(id: usize, spawned: usize, connected: &AtomicUsize, deadline: Instant) {
    if id % 256 != 255 {
        return;
    }
    while connected.load(Ordering::Acquire) + 64 < spawned && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// Results

pub(super) struct WsRow {
    engine: Engine,
    scenario: String,
    kind: &'static str,
    conns: usize,
    secs: f64,
    /// idle: connections held; echo: echoes in the window; broadcast:
    /// deliveries.
    ok: u64,
    /// What `ok` should be (0: at least one).
    expected: u64,
    errors: u64,
    /// Client coroutines that never reported.
    unfinished: usize,
    msg_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    last_median_ms: f64,
    last_max_ms: f64,
    rss_before_mib: f64,
    peak_rss_mib: f64,
    rss_delta_mib: f64,
    threads: u64,
    kib_per_conn: f64,
    first_error: String,
}

impl WsRow {
    fn note(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_empty() {
            self.first_error = e;
        }
    }

    /// Takes what a client process reported (`Report::line`).
    fn take(&mut self, f: &Fields) -> Result<(), String> {
        self.ok = f.get("ok")?;
        self.errors += f.get::<u64>("errors")?;
        self.unfinished += f.get::<usize>("unfinished")?;
        self.p50_ms = f.get("p50_ms")?;
        self.p99_ms = f.get("p99_ms")?;
        if !f.error.is_empty() && self.first_error.is_empty() {
            self.first_error = f.error.clone();
        }
        Ok(())
    }
}

/// Settles the server, then runs `f` between an RSS reading and the
/// sampler's peaks; an error `f` returns counts in the row.
fn measure(
    engine: Engine,
    target: &Target,
    kind: &'static str,
    conns: usize,
    f: impl FnOnce(&mut WsRow, u64) -> Result<(), String>,
) -> WsRow {
    target.settle();
    let before = proc_status().rss_kib;
    let sampler = Sampler::start();
    let mut row = WsRow {
        engine,
        scenario: format!("ws {kind} x{conns}"),
        kind,
        conns,
        secs: 0.0,
        ok: 0,
        expected: 0,
        errors: 0,
        unfinished: 0,
        msg_s: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        last_median_ms: f64::NAN,
        last_max_ms: f64::NAN,
        rss_before_mib: mib(before),
        peak_rss_mib: 0.0,
        rss_delta_mib: 0.0,
        threads: 0,
        kib_per_conn: f64::NAN,
        first_error: String::new(),
    };
    if let Err(e) = f(&mut row, before) {
        row.note(e);
    }
    let (peak, threads) = sampler.finish();
    row.peak_rss_mib = mib(peak);
    row.rss_delta_mib = mib(peak.saturating_sub(before));
    if row.threads == 0 {
        row.threads = threads;
    }
    if row.unfinished > 0 {
        let _ = write!(
            row.first_error,
            " ({} client coroutines never reported)",
            row.unfinished
        );
    }
    row
}

// ---------------------------------------------------------------------------
// Scenarios: the bench's side (the server's measurements) and the client
// process's

/// `ws idle xN`: the client opens `n` connections and holds them; then
/// the server's RSS (heap trimmed first, as before the scenario) and
/// thread count, and its count of open connections, which must be the
/// client's.
fn idle(
    target: &Target,
    n: usize,
    s: &Settings,
    row: &mut WsRow,
    before_kib: u64,
    client: &str,
) -> Result<(), String> {
    row.expected = n as u64;
    let mut client = ClientProc::spawn(client, target.addr, n, s)?;
    let held = client.expect("held", Instant::now() + idle_open_time(s) + CLIENT_SLACK)?;
    row.take(&held)?;
    // Let the server park everything, then look.
    thread::sleep(if s.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    });
    trim_heap();
    let st = proc_status();
    let server_active = target.active();
    row.threads = st.threads;
    if row.ok > 0 {
        row.kib_per_conn = st.rss_kib.saturating_sub(before_kib) as f64 / row.ok as f64;
    }
    if let Some(active) = server_active
        && active as u64 != row.ok
    {
        row.note(format!(
            "the server had {active} open, the client {} held",
            row.ok
        ));
    }
    client.finish()
}

/// The client of `ws idle`: 100 coroutines open the `n` connections in
/// turn (one 64-byte echo each) and keep only the sockets, until the
/// bench closes stdin.
fn idle_client(addr: SocketAddr, n: usize, s: &Settings, path: &'static str) -> Result<(), String> {
    let openers = 100.min(n);
    let (tx, rx) = mpsc::channel();
    let mut spawned = 0;
    let mut total = Report::default();
    for k in 0..openers {
        let count = n / openers + usize::from(k < n % openers);
        let (tx, timeout) = (tx.clone(), s.io_timeout);
        let opener = spawn_ws(move || {
            let mut held = Vec::with_capacity(count);
            let mut report = Report::default();
            for i in 0..count {
                let opened = ws_connect(addr, path, timeout).and_then(|mut ws| {
                    exchange(&mut ws, payload(k * count + i, 0))?;
                    Ok(ws.into_inner())
                });
                match opened {
                    Ok(st) => {
                        report.ok += 1;
                        held.push(st);
                    }
                    Err(e) => report.note(e),
                }
            }
            let _ = tx.send((held, report));
        });
        match opener {
            Ok(_) => spawned += 1,
            Err(e) => {
                total.errors += count as u64;
                total.first_error.get_or_insert(format!("spawn: {e}"));
            }
        }
    }
    let (reports, missing) = collect(&rx, spawned, Instant::now() + idle_open_time(s));
    let mut held = Vec::with_capacity(n);
    for (streams, report) in reports {
        held.extend(streams);
        total.add(report);
    }
    say(&total.line("held", missing, ""))?;
    while hear().is_some() {}
    drop(held);
    Ok(())
}

/// `ws echo xC`: the client runs the closed loop for the window, while
/// the sampler takes the server's peaks.
fn echo(addr: SocketAddr, c: usize, s: &Settings, row: &mut WsRow) -> Result<(), String> {
    let mut client = ClientProc::spawn("echo", addr, c, s)?;
    let deadline =
        Instant::now() + echo_ramp_time(s) + s.duration + s.io_timeout * 2 + CLIENT_SLACK;
    let result = client.expect("result", deadline)?;
    row.take(&result)?;
    row.secs = s.duration.as_secs_f64();
    row.msg_s = row.ok as f64 / row.secs;
    client.finish()
}

/// The clients of `ws echo`: `c` of them in a closed loop for the window,
/// each sending a 64-byte binary message and reading its echo (which must
/// be the same bytes).
fn echo_client(addr: SocketAddr, c: usize, s: &Settings) -> Result<(), String> {
    let phase = Arc::new(Phase {
        base: Instant::now(),
        start_ns: AtomicU64::new(u64::MAX),
        end_ns: AtomicU64::new(u64::MAX),
        connected: AtomicUsize::new(0),
    });
    let (tx, rx) = mpsc::channel();
    let mut spawned = 0;
    let mut total = Report::default();
    let ramp_deadline = Instant::now() + echo_ramp_time(s);
    for id in 0..c {
        let (p, tx, timeout) = (phase.clone(), tx.clone(), s.io_timeout);
        let client = spawn_ws(move || {
            let phase = p;
            let mut report = Report::default();
            let ws = ws_connect(addr, "/echo", timeout).and_then(|mut ws| {
                exchange(&mut ws, payload(id, 0))?;
                Ok(ws)
            });
            phase.connected.fetch_add(1, Ordering::AcqRel);
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(e) => {
                    report.note(e);
                    let _ = tx.send(report);
                    return;
                }
            };
            while phase.start_ns.load(Ordering::Acquire) == u64::MAX {
                may::coroutine::sleep(Duration::from_millis(5));
            }
            let start = phase.start_ns.load(Ordering::Acquire);
            let end = phase.end_ns.load(Ordering::Acquire);
            let mut seq = 0;
            while phase.now() < end {
                seq += 1;
                let t0 = phase.now();
                if let Err(e) = exchange(&mut ws, payload(id, seq)) {
                    report.note(e);
                    break;
                }
                let t1 = phase.now();
                if t0 >= start && t1 <= end {
                    report.ok += 1;
                    report.latencies.record(Duration::from_nanos(t1 - t0));
                }
            }
            let _ = tx.send(report);
        });
        match client {
            Ok(_) => spawned += 1,
            Err(e) => total.note(format!("spawn: {e}")),
        }
        pace_ramp_up(id, spawned, &phase.connected, ramp_deadline);
    }
    while phase.connected.load(Ordering::Acquire) < spawned && Instant::now() < ramp_deadline {
        thread::sleep(Duration::from_millis(2));
    }
    let start = phase.now();
    let end = start + s.duration.as_nanos() as u64;
    phase.end_ns.store(end, Ordering::Release);
    phase.start_ns.store(start, Ordering::Release);
    let deadline = Instant::now() + s.duration + s.io_timeout * 2;
    let (reports, missing) = collect(&rx, spawned, deadline);
    for r in reports {
        total.add(r);
    }
    say(&total.line("result", missing, ""))
}

/// One broadcast: when the publisher sent it, how many subscribers have
/// it, and when the last one got it (nanoseconds since `Phase::base`).
#[derive(Default)]
struct Round {
    sent_ns: AtomicU64,
    received: AtomicUsize,
    last_ns: AtomicU64,
}

fn round_text(r: usize) -> String {
    format!("broadcast round {r}")
}

/// `ws broadcast xN`: once the client's `n` subscribers are connected and
/// the hub has registered them all, tells the client to publish, and
/// takes its rounds.
fn broadcast(
    addr: SocketAddr,
    hub: &Hub,
    n: usize,
    s: &Settings,
    row: &mut WsRow,
    client: &str,
) -> Result<(), String> {
    row.expected = (n * ROUNDS) as u64;
    let mut client = ClientProc::spawn(client, addr, n, s)?;
    client.expect(
        "subscribed",
        Instant::now() + broadcast_ramp_time(s) + CLIENT_SLACK,
    )?;
    // A subscriber's handshake is done before its handler registers it.
    let until = Instant::now() + s.io_timeout;
    while hub.registered.load(Ordering::Acquire) < n && Instant::now() < until {
        thread::sleep(Duration::from_millis(2));
    }
    let registered = hub.registered.load(Ordering::Acquire);
    client.tell(&format!("go registered={registered}"))?;
    let deadline =
        Instant::now() + round_time(s) * (ROUNDS as u32 + 1) + s.io_timeout + CLIENT_SLACK;
    let result = client.expect("result", deadline)?;
    row.take(&result)?;
    row.secs = result.get("secs")?;
    row.last_median_ms = result.get("last_median_ms")?;
    row.last_max_ms = result.get("last_max_ms")?;
    if registered != n {
        row.note(format!(
            "the hub registered {registered} of {n} subscribers"
        ));
    }
    client.finish()
}

/// The client of `ws broadcast`: `n` subscribers connect to `/hub` and
/// wait; once the bench says the hub has registered them, a publisher
/// sends a text on `/publish` [`ROUNDS`] times, waiting each time until
/// every subscriber has it. Each subscriber notes when it got each one;
/// the time to the last of them is the round's result.
fn broadcast_client(
    addr: SocketAddr,
    n: usize,
    s: &Settings,
    path: &'static str,
) -> Result<(), String> {
    let phase = Arc::new(Phase {
        base: Instant::now(),
        start_ns: AtomicU64::new(0),
        end_ns: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
    });
    let rounds: Arc<[Round]> = (0..ROUNDS).map(|_| Round::default()).collect();
    // Subscribers wait through the ramp and every round.
    let wait = quick_or(s, 30, 120);
    let (tx, rx) = mpsc::channel();
    let mut spawned = 0;
    let mut total = Report::default();
    let ramp_deadline = Instant::now() + broadcast_ramp_time(s);
    for id in 0..n {
        let (p, rounds, tx, timeout) = (phase.clone(), rounds.clone(), tx.clone(), s.io_timeout);
        let subscriber = spawn_ws(move || {
            let phase = p;
            let mut report = Report::default();
            let ws = ws_connect(addr, path, timeout).and_then(|ws| {
                ws.get_ref()
                    .set_read_timeout(Some(wait))
                    .map_err(|e| format!("set_read_timeout: {e}"))?;
                Ok(ws)
            });
            phase.connected.fetch_add(1, Ordering::AcqRel);
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(e) => {
                    report.note(e);
                    let _ = tx.send(report);
                    return;
                }
            };
            for (r, round) in rounds.iter().enumerate() {
                match read_data(&mut ws) {
                    Ok(Message::Text(t)) if t.as_str() == round_text(r) => {
                        let now = phase.now();
                        round.last_ns.fetch_max(now, Ordering::AcqRel);
                        round.received.fetch_add(1, Ordering::AcqRel);
                        report.ok += 1;
                        let sent = round.sent_ns.load(Ordering::Acquire);
                        report
                            .latencies
                            .record(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                    Ok(other) => {
                        report.note(format!("subscriber {id}, round {r}: got {other:?}"));
                        break;
                    }
                    Err(e) => {
                        report.note(format!("subscriber {id}, round {r}: {e}"));
                        break;
                    }
                }
            }
            let _ = tx.send(report);
        });
        match subscriber {
            Ok(_) => spawned += 1,
            Err(e) => total.note(format!("spawn: {e}")),
        }
        pace_ramp_up(id, spawned, &phase.connected, ramp_deadline);
    }
    while phase.connected.load(Ordering::Acquire) < spawned && Instant::now() < ramp_deadline {
        thread::sleep(Duration::from_millis(2));
    }
    say("subscribed")?;
    // The bench says how many its hub registered: every round must reach
    // that many.
    let go = hear().ok_or("the bench closed stdin before `go`")?;
    let registered: usize = Fields::parse(&go).get("registered")?;

    // The publisher, on a coroutine of its own.
    let (ptx, prx) = mpsc::channel();
    let (p, rs, timeout) = (phase.clone(), rounds.clone(), s.io_timeout);
    let per_round = round_time(s);
    let publisher = spawn_ws(move || {
        let mut report = Report::default();
        let mut lasts = Vec::with_capacity(ROUNDS);
        let started = Instant::now();
        let mut ws = match ws_connect(addr, "/publish", timeout) {
            Ok(ws) => ws,
            Err(e) => {
                report.note(format!("publisher: {e}"));
                let _ = ptx.send((report, lasts, started.elapsed()));
                return;
            }
        };
        for (r, round) in rs.iter().enumerate() {
            // A pause between rounds, for what the last one left.
            may::coroutine::sleep(Duration::from_millis(50));
            round.sent_ns.store(p.now(), Ordering::Release);
            let sent = ws
                .send(Message::Text(round_text(r).into()))
                .map_err(|e| format!("publisher: send: {e}"));
            let ack = sent.and_then(|()| read_data(&mut ws));
            match ack {
                Ok(Message::Text(t)) if t.as_str() == format!("{registered} 0") => {}
                Ok(other) => report.note(format!(
                    "round {r}: the hub answered {other:?}, expected \"{registered} 0\""
                )),
                Err(e) => {
                    report.note(format!("round {r}: {e}"));
                    break;
                }
            }
            let until = Instant::now() + per_round;
            while round.received.load(Ordering::Acquire) < registered && Instant::now() < until {
                may::coroutine::sleep(Duration::from_millis(1));
            }
            let got = round.received.load(Ordering::Acquire);
            if got < registered {
                report.note(format!(
                    "round {r}: {got} of {registered} subscribers got it"
                ));
                break;
            }
            let last = round.last_ns.load(Ordering::Acquire);
            let sent = round.sent_ns.load(Ordering::Acquire);
            lasts.push(Duration::from_nanos(last.saturating_sub(sent)));
        }
        let _ = ptx.send((report, lasts, started.elapsed()));
    });
    let (mut secs, mut last_median_ms, mut last_max_ms) = (0.0, f64::NAN, f64::NAN);
    let mut unfinished = 0;
    match publisher {
        Ok(_) => {
            let deadline = Instant::now() + per_round * (ROUNDS as u32 + 1);
            match prx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((report, mut lasts, took)) => {
                    total.add(report);
                    secs = took.as_secs_f64();
                    lasts.sort_unstable();
                    if lasts.len() == ROUNDS {
                        let ms = |d: Duration| d.as_secs_f64() * 1e3;
                        last_median_ms = ms(lasts[ROUNDS / 2]);
                        last_max_ms = ms(lasts[ROUNDS - 1]);
                    }
                }
                Err(_) => {
                    total.note("the publisher never reported".into());
                    unfinished += 1;
                }
            }
        }
        Err(e) => total.note(format!("spawn the publisher: {e}")),
    }
    // The subscribers that got every round have reported already.
    let (reports, missing) = collect(&rx, spawned, Instant::now() + s.io_timeout);
    for r in reports {
        total.add(r);
    }
    let extra = format!("secs={secs} last_median_ms={last_median_ms} last_max_ms={last_max_ms}");
    say(&total.line("result", unfinished + missing, &extra))
}

// ---------------------------------------------------------------------------
// Running and reporting

/// Runs the three scenarios on each coserve engine, printing a table as
/// it goes.
pub(super) fn run(s: &Settings, nofile: u64) -> Vec<WsRow> {
    let caps = |engine| sizes(engine, false, nofile);
    let (co, th) = (caps(Engine::Coroutine), caps(Engine::Thread));
    println!();
    println!(
        "# WebSocket, long-lived connections (coserve's engines only; may_minihttp has none). \
         The server runs in this process, the clients in another (this executable again, \
         COSERVE_WS_CLIENT): RSS, threads and peaks are the server's (with the bench's main \
         thread, /proc sampler and the reader of the client's output). Connections capped by \
         this process's fd limit, the server's descriptors alone: 1 per connection, 2 per \
         broadcast subscriber on the thread engine (its WsSender holds an eventfd): idle at most \
         {}, echo at most {}, broadcast at most {} (coroutine) and {} (thread). {}",
        co.idle,
        co.echo,
        co.broadcast,
        th.broadcast,
        if pinned() {
            "Pinned: this process on CPU 0, the clients on CPU 1."
        } else {
            "Not pinned: both processes share every core."
        }
    );
    println!(
        "# ws idle: connections to /echo (idle events: /echo-events, the same as ws::WsEvents, which \
         parks a quiet connection without its coroutine), one 64-byte echo each, then held {} (the client keeps \
         only the sockets); ok = held; threads = the server process's threads while held (other \
         rows: the peak); KiB/conn = the server's RSS growth per held connection, heap trimmed \
         before both readings (memory the earlier scenarios left resident, such as may's pool \
         of 1,000 coroutines and glibc's cached thread stacks, is reused: small at full size).",
        if s.quick { "0.2 s" } else { "2 s" }
    );
    println!(
        "# ws echo: closed loop, 64-byte binary messages; ok = identical echoes in the window; \
         msg/s = echoes per second; p50/p99 = round trip."
    );
    println!(
        "# ws broadcast: subscribers on /hub (broadcast events: /hub-events, ws::WsEvents \
         subscribers, parked while they wait), a publisher's text handed by the server to every \
         subscriber's WsSender, {ROUNDS} rounds; ok = deliveries; last med/max = ms from the \
         publisher's send until the last subscriber has it (median and max of the rounds); \
         p50/p99 = each subscriber's delivery."
    );
    println!();
    print_header();
    let mut rows = Vec::new();
    for engine in [Engine::Coroutine, Engine::Thread] {
        if !wanted(engine.name()) {
            continue;
        }
        let sizes = sizes(engine, s.quick, nofile);
        let (target, hub) = match start_ws(engine) {
            Ok(t) => t,
            Err(e) => {
                println!("{:<13} cannot start: {e}", engine.name());
                continue;
            }
        };
        for (kind, client) in [("idle", "idle"), ("idle events", "idle-events")] {
            if !wanted(client) {
                continue;
            }
            let row = measure(engine, &target, kind, sizes.idle, |row, before| {
                idle(&target, sizes.idle, s, row, before, client)
            });
            print_row(&row);
            rows.push(row);
        }
        if wanted("echo") {
            let row = measure(engine, &target, "echo", sizes.echo, |row, _| {
                echo(target.addr, sizes.echo, s, row)
            });
            print_row(&row);
            rows.push(row);
        }
        for (kind, client) in [
            ("broadcast", "broadcast"),
            ("broadcast events", "broadcast-events"),
        ] {
            if !wanted(client) {
                continue;
            }
            let row = measure(engine, &target, kind, sizes.broadcast, |row, _| {
                broadcast(target.addr, &hub, sizes.broadcast, s, row, client)
            });
            print_row(&row);
            rows.push(row);
        }
        target.settle();
        target.stop();
    }
    rows
}

/// Whether `COSERVE_BENCH_WS` (a comma-separated list of engines and
/// scenarios, such as `coroutine,broadcast`) asks for `name`; everything
/// runs without it.
fn wanted(name: &str) -> bool {
    const ENGINES: [&str; 2] = ["coroutine", "thread"];
    let Ok(list) = std::env::var("COSERVE_BENCH_WS") else {
        return true;
    };
    let list: Vec<&str> = list.split(',').map(str::trim).collect();
    let is_engine = ENGINES.contains(&name);
    let named = |n: &&str| ENGINES.contains(n) == is_engine;
    !list.iter().any(named) || list.contains(&name)
}

fn fmt_num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.decimals$}")
    }
}

fn print_header() {
    println!(
        "{:<13} {:<26} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8} {:>9}",
        "engine",
        "scenario",
        "ok",
        "errors",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "last med",
        "last max",
        "peak MiB",
        "+MiB",
        "threads",
        "KiB/conn"
    );
}

fn print_row(r: &WsRow) {
    println!(
        "{:<13} {:<26} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10.1} {:>10.1} {:>8} {:>9}",
        r.engine.name(),
        r.scenario,
        r.ok,
        r.errors,
        fmt_num(r.msg_s, 0),
        fmt_ms(r.p50_ms),
        fmt_ms(r.p99_ms),
        fmt_ms(r.last_median_ms),
        fmt_ms(r.last_max_ms),
        r.peak_rss_mib,
        r.rss_delta_mib,
        r.threads,
        fmt_num(r.kib_per_conn, 1)
    );
    if !r.first_error.is_empty() {
        println!("{:<13}   first error: {}", "", r.first_error.trim());
    }
}

pub(super) fn write_csv(rows: &[WsRow], path: &Path) -> io::Result<()> {
    let mut out = String::from(
        "engine,scenario,kind,connections,seconds,ok,errors,msg_per_s,p50_ms,p99_ms,last_median_ms,last_max_ms,rss_before_mib,peak_rss_mib,rss_delta_mib,threads,kib_per_conn,first_error\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{},{},{:.1},{:.3},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{},{:.2},\"{}\"",
            r.engine.name(),
            r.scenario,
            r.kind,
            r.conns,
            r.secs,
            r.ok,
            r.errors,
            r.msg_s,
            r.p50_ms,
            r.p99_ms,
            r.last_median_ms,
            r.last_max_ms,
            r.rss_before_mib,
            r.peak_rss_mib,
            r.rss_delta_mib,
            r.threads,
            r.kib_per_conn,
            r.first_error.trim().replace('"', "'")
        );
    }
    std::fs::write(path, out)
}

/// The QUICK run's sanity checks (never a speed): every scenario ran on
/// both engines, every client reported, no errors, every echo identical,
/// every connection held, every broadcast reached every subscriber.
pub(super) fn quick_failures(rows: &[WsRow]) -> Vec<String> {
    let mut failures = Vec::new();
    if std::env::var("COSERVE_BENCH_WS").is_err() && rows.len() != 10 {
        failures.push(format!("ws: {} of 10 rows ran", rows.len()));
    }
    for r in rows {
        let at = format!("{} / {}", r.engine.name(), r.scenario);
        if r.errors > 0 {
            failures.push(format!(
                "{at}: {} errors ({})",
                r.errors,
                r.first_error.trim()
            ));
        }
        if r.unfinished > 0 {
            failures.push(format!("{at}: {} clients never reported", r.unfinished));
        }
        if r.ok == 0 || (r.expected > 0 && r.ok != r.expected) {
            failures.push(format!("{at}: ok {} (expected {})", r.ok, r.expected));
        }
        match r.kind {
            "idle" | "idle events" if r.kib_per_conn.is_nan() => {
                failures.push(format!("{at}: no RSS reading"))
            }
            "echo" if r.p99_ms.is_nan() => failures.push(format!("{at}: no latencies")),
            "broadcast" | "broadcast events" if r.last_max_ms.is_nan() || r.p99_ms.is_nan() => {
                failures.push(format!("{at}: not every round completed"))
            }
            _ => {}
        }
    }
    failures
}
