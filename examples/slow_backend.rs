//! A handler that calls a slow backend in plain sequential code, and one
//! server process holding 10,000 such requests in flight at once.
//!
//! ```sh
//! cargo run --release --example slow_backend               # 10,000 clients
//! cargo run --release --example slow_backend -- 1000       # fewer
//! cargo run --release --example slow_backend -- 10000 200  # backend takes 200 ms
//! ```
//!
//! Three parts, as in a real deployment:
//!
//! - **The backend**: a line-based TCP service (think of a database) that
//!   answers each request line after a delay, 50 ms by default. It runs in
//!   the server process only to keep the example self-contained.
//! - **The server**: coserve, whose handler for `GET /` calls the backend
//!   through [`Backend::call`], a plain blocking-style call. The backend is
//!   reached over a small pool of persistent, multiplexed connections, so a
//!   request in flight costs the server process one socket (its client's),
//!   not three more for a connection of its own to the backend.
//! - **The clients**: a child process (this same program, re-executed with
//!   a hidden `--clients ADDR N` argument) that opens all N keep-alive
//!   connections first and then sends one request on every one of them at
//!   once, and reads the answers with `coserve-http1`, the client of
//!   coserve's tests and load tools. In a process of its own, its sockets do
//!   not count against the server's open-file limit.
//!
//! Each request runs on its own may coroutine: when the handler waits for
//! the backend, only that coroutine is parked, and the worker threads (one
//! per core) run the others.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError; // may's channels use std's error types
use std::time::{Duration, Instant};

use coserve::{Config, Response, Router, Server, StatusCode};
use coserve_http1::procfs::{self, Process};
use coserve_http1::{Connection, Framing};
use may::sync::mpsc;

/// Clients, unless the first argument says.
const DEFAULT_CLIENTS: u64 = 10_000;

/// How long the backend takes to answer, unless the second argument says.
const DEFAULT_DELAY_MS: u64 = 50;

/// Persistent connections from the server to the backend, shared by all
/// requests.
const POOL_SIZE: usize = 16;

/// How long a backend call waits for its reply before giving up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The hidden argument that turns this program into the load generator.
const CLIENTS_FLAG: &str = "--clients";

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CLIENTS_FLAG) {
        return match (args.get(2), args.get(3)) {
            (Some(addr), Some(n)) => load_generator(addr, n),
            _ => Err(io::Error::other("usage: slow_backend --clients ADDR N")),
        };
    }
    let clients = arg(1, DEFAULT_CLIENTS) as usize;
    let delay = Duration::from_millis(arg(2, DEFAULT_DELAY_MS));
    if cfg!(debug_assertions) && clients > 1000 {
        eprintln!("note: a debug build; run with --release for large client counts");
    }
    serve(clients, delay)
}

// ---------------------------------------------------------------------------
// The server process: backend, backend pool, coserve, and the measurements.
// ---------------------------------------------------------------------------

fn serve(clients: usize, delay: Duration) -> io::Result<()> {
    // One socket per client, plus the pool and some to spare.
    let fds = raise_fd_limit();
    if (fds as usize) < clients + 256 {
        println!("note: the open-file limit is {fds}; {clients} clients may not all fit");
    }

    // Start may's runtime with coserve's settings (a worker per core, not
    // pinned; coserve's default coroutine stack) before anything else uses
    // may: the backend below is a may service, and may's scheduler starts
    // with the first coroutine or may socket.
    coserve::Runtime::new().start()?;

    // The connection limit is above the clients, the backlog absorbs the
    // ramp-up, and the timeouts are long so that connections opened early
    // are still there when the last ones are.
    let config = Config::new()
        .max_connections(20_000.max(2 * clients))
        .backlog(4096)
        .idle_timeout(Duration::from_secs(60))
        .header_timeout(Duration::from_secs(60));
    let server = Server::bind("127.0.0.1:0", config)?;
    let backend_addr = start_backend(delay)?;
    let backend = Arc::new(Backend::connect(backend_addr, POOL_SIZE)?);

    // How many requests are inside the handler now, and the most at once;
    // and when the first and the last of them came in.
    let stats = Arc::new(Stats::default());
    let app = {
        let stats = stats.clone();
        Router::new().get("/", move |_| {
            let entered = stats.enter();
            // Sequential, blocking-style code: only this coroutine waits.
            let resp = match backend.call("how are you?") {
                Ok(reply) => Response::text(format!("the backend says: {reply}\n")),
                Err(_) => Response::error(StatusCode::BAD_GATEWAY),
            };
            stats.leave(entered);
            resp
        })
    };

    let addr = server.local_addr();
    let handle = server.spawn(app)?;
    println!(
        "{clients} clients -> http://{addr}/ -> backend {backend_addr} \
         ({POOL_SIZE} pooled connections, answers after {} ms)",
        delay.as_millis()
    );

    // The clients, in a child process: it connects, says "ready N", waits
    // for "go", sends, and reports "result ...".
    let mut child = Command::new(std::env::current_exe()?)
        .args([CLIENTS_FLAG, &addr.to_string(), &clients.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().expect("piped stdin");
    let mut from_child = BufReader::new(child.stdout.take().expect("piped stdout"));
    let ramp_up = Instant::now();
    let mut line = String::new();
    from_child.read_line(&mut line)?;
    let connected: usize = line
        .strip_prefix("ready ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("load generator said {line:?}")))?;
    // Connected is not yet accepted: wait (a while) until the server has
    // taken every connection from the backlog, so that the burst measures
    // requests, not accepts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.active_connections() < connected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let accepted = handle.active_connections();
    let ramp_up = ramp_up.elapsed();
    to_child.write_all(b"go\n")?;
    line.clear();
    from_child.read_line(&mut line)?;
    let result = ClientResult::parse(&line)
        .ok_or_else(|| io::Error::other(format!("load generator said {line:?}")))?;
    child.wait()?;

    println!(
        "clients:        {clients} ({connected} connected, {accepted} accepted, in {:.3} s)",
        ramp_up.as_secs_f64()
    );
    println!("ok:             {}", result.ok);
    println!("errors:         {}", result.errors);
    if !result.first_error.is_empty() {
        println!("first error:    {}", result.first_error);
    }
    println!(
        "elapsed:        {:.3} s from the burst to the last response",
        result.burst.as_secs_f64()
    );
    println!(
        "peak in flight: {} requests inside the handler at once",
        stats.peak.load(Ordering::SeqCst)
    );
    println!(
        "arrivals:       all requests entered the handler within {:.1} ms",
        stats.arrival_spread().as_secs_f64() * 1e3
    );
    // More than the backend's delay when the burst keeps both cores busy:
    // replies then wait their turn behind requests still coming in.
    println!(
        "longest stay:   {:.1} ms inside the handler (the backend takes {} ms)",
        Duration::from_nanos(stats.longest.load(Ordering::Relaxed)).as_secs_f64() * 1e3,
        delay.as_millis()
    );
    println!(
        "server process: peak RSS {} (VmHWM), {} threads",
        proc_status("VmHWM"),
        proc_status("Threads")
    );

    // Stop accepting and wait for the server's connections to end. The
    // backend and the pool end with the process.
    handle.shutdown();
    if result.errors > 0 || result.ok != clients {
        std::process::exit(1);
    }
    Ok(())
}

/// What the handler measures.
struct Stats {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    /// Nanoseconds since `base` of the first and the last handler entry.
    first: AtomicU64,
    last: AtomicU64,
    /// The longest stay in the handler, in nanoseconds.
    longest: AtomicU64,
    base: Instant,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
            longest: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

impl Stats {
    fn enter(&self) -> Instant {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let t = self.base.elapsed().as_nanos() as u64;
        self.first.fetch_min(t, Ordering::Relaxed);
        self.last.fetch_max(t, Ordering::Relaxed);
        Instant::now()
    }

    fn leave(&self, entered: Instant) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let stay = entered.elapsed().as_nanos() as u64;
        self.longest.fetch_max(stay, Ordering::Relaxed);
    }

    fn arrival_spread(&self) -> Duration {
        let first = self.first.load(Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        Duration::from_nanos(last.saturating_sub(first))
    }
}

// ---------------------------------------------------------------------------
// The backend service: lines in, lines out, each answered after `delay`.
// ---------------------------------------------------------------------------

/// Starts the backend on a free port: a may listener whose accept loop and
/// connections each run on a coroutine of their own.
fn start_backend(delay: Duration) -> io::Result<SocketAddr> {
    let listener = may::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    may::go!(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    may::go!(move || {
                        let _ = serve_backend(stream, delay);
                    });
                }
                // Out of descriptors, say: back off instead of spinning.
                Err(_) => may::coroutine::sleep(Duration::from_millis(10)),
            }
        }
    });
    Ok(addr)
}

/// One backend connection carries many requests at once: each line
/// `"<id> <payload>"` gets a coroutine of its own that waits, then answers
/// `"<id> <reply>"`. Replies go out in whatever order they are ready, and
/// the shared write half is behind a may Mutex, which parks (rather than
/// blocks the thread) when a write has to wait for the socket.
fn serve_backend(stream: may::net::TcpStream, delay: Duration) -> io::Result<()> {
    let writer = Arc::new(may::sync::Mutex::new(stream.try_clone()?));
    let mut lines = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let writer = writer.clone();
        may::go!(move || {
            may::coroutine::sleep(delay);
            let (id, payload) = line.trim_end().split_once(' ').unwrap_or(("?", ""));
            let reply = format!("{id} fine, thanks (you said {payload:?})\n");
            let mut out = writer.lock().unwrap_or_else(|e| e.into_inner());
            let _ = out.write_all(reply.as_bytes());
        });
    }
}

// ---------------------------------------------------------------------------
// The backend client: a small pool of multiplexed connections.
// ---------------------------------------------------------------------------

/// A client for the backend, shared by every handler.
///
/// This is what database drivers and RPC clients do: a handful of
/// persistent connections, each carrying many requests at once, tagged with
/// ids so that replies can come back in any order. Thousands of requests in
/// flight cost a few sockets instead of one each (no descriptor limit, no
/// handshake per request, no port exhaustion), and the backend sees a few
/// long-lived clients, which is what it is built for.
///
/// The handler still reads as plain sequential code: [`Backend::call`]
/// sends, then parks the calling coroutine on a one-shot channel until the
/// reader of that connection hands it its reply. No callbacks or futures
/// show through.
struct Backend {
    conns: Vec<PoolConn>,
    next_id: AtomicU64,
}

/// One pooled connection: its write half, and the calls waiting for a reply
/// on it (which its reader coroutine completes).
struct PoolConn {
    /// A may Mutex: a write can park the coroutine while the lock is held.
    writer: may::sync::Mutex<may::net::TcpStream>,
    waiting: Arc<Waiting>,
}

/// Calls waiting for their reply, by id.
///
/// A std Mutex is fine here because it is only ever held to insert or
/// remove an entry, never across anything that can park the coroutine:
/// holding it there could deadlock a worker thread against a coroutine
/// parked with the lock.
#[derive(Default)]
struct Waiting {
    calls: std::sync::Mutex<HashMap<u64, mpsc::Sender<String>>>,
    closed: AtomicBool,
}

impl Waiting {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<String>>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, id: u64, reply: mpsc::Sender<String>) -> io::Result<()> {
        self.calls().insert(id, reply);
        // After the insert: if the reader ended meanwhile, its sweep may
        // have missed this entry.
        if self.closed.load(Ordering::SeqCst) {
            self.remove(id);
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "backend connection closed",
            ));
        }
        Ok(())
    }

    fn remove(&self, id: u64) -> Option<mpsc::Sender<String>> {
        self.calls().remove(&id)
    }

    /// Fails every waiting call: dropping its sender wakes it with an error.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let calls = std::mem::take(&mut *self.calls());
        drop(calls);
    }
}

impl Backend {
    /// Opens `size` connections to the backend, each with a reader
    /// coroutine that dispatches replies.
    fn connect(addr: SocketAddr, size: usize) -> io::Result<Backend> {
        let mut conns = Vec::with_capacity(size);
        for _ in 0..size {
            let stream = may::net::TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            let reader = stream.try_clone()?;
            let waiting = Arc::new(Waiting::default());
            let dispatch = waiting.clone();
            may::go!(move || read_replies(reader, &dispatch));
            conns.push(PoolConn {
                writer: may::sync::Mutex::new(stream),
                waiting,
            });
        }
        Ok(Backend {
            conns,
            next_id: AtomicU64::new(0),
        })
    }

    /// Sends `payload` to the backend and waits for the reply. Looks like a
    /// blocking call, and is one for the calling coroutine only.
    fn call(&self, payload: &str) -> io::Result<String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = &self.conns[id as usize % self.conns.len()];
        // Register before sending, so the reply cannot arrive first.
        let (reply_tx, reply_rx) = mpsc::channel();
        conn.waiting.insert(id, reply_tx)?;
        let line = format!("{id} {payload}\n");
        let sent = conn
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes());
        if let Err(e) = sent {
            conn.waiting.remove(id);
            return Err(e);
        }
        // Park until the reader hands over the reply.
        match reply_rx.recv_timeout(CALL_TIMEOUT) {
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) => {
                conn.waiting.remove(id);
                Err(io::ErrorKind::TimedOut.into())
            }
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "backend connection closed",
            )),
        }
    }
}

/// The reader of one pooled connection: hands each reply line to the call
/// waiting for its id. When the connection ends, the calls still waiting
/// on it fail.
fn read_replies(stream: may::net::TcpStream, waiting: &Waiting) {
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    while matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
        let (id, reply) = line.trim_end().split_once(' ').unwrap_or(("", ""));
        if let Some(call) = id.parse().ok().and_then(|id| waiting.remove(id)) {
            // The caller may have timed out and gone: nothing to do then.
            let _ = call.send(reply.to_string());
        }
        line.clear();
    }
    waiting.close();
}

// ---------------------------------------------------------------------------
// The load generator: the child process.
// ---------------------------------------------------------------------------

/// Connections being opened at once, so as not to overflow the server's
/// backlog and the kernel's SYN queue.
const CONNECT_BATCH: usize = 512;

/// Stack of each client coroutine: they only connect, write and read.
const CLIENT_STACK_BYTES: usize = if cfg!(debug_assertions) {
    256 * 1024
} else {
    16 * 1024
};

/// Opens `n` keep-alive connections to `addr`, says `ready <connected>`,
/// waits for a line on stdin, then sends one request on every connection at
/// once, reads every response and says `result ...`.
fn load_generator(addr: &str, n: &str) -> io::Result<()> {
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    let n: usize = n.parse().map_err(io::Error::other)?;
    raise_fd_limit();
    may::config().set_stack_size(CLIENT_STACK_BYTES / std::mem::size_of::<usize>());

    // One request, built once, sent with a single write per connection.
    let request: Arc<[u8]> = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        .into_bytes()
        .into();
    let connecting = Arc::new(may::sync::Semphore::new(CONNECT_BATCH));
    let go = Arc::new(may::sync::SyncFlag::new());
    let (connected_tx, connected_rx) = mpsc::channel();
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let (request, connecting, go) = (request.clone(), connecting.clone(), go.clone());
            let connected_tx = connected_tx.clone();
            may::go!(move || -> Result<(), String> {
                connecting.wait();
                let stream = connect_with_retries(addr);
                connecting.post();
                let _ = connected_tx.send(stream.is_ok());
                let stream = stream.map_err(|e| format!("connect: {e}"))?;
                // Everyone waits here until every connection is open.
                go.wait();
                // The answer is a few hundred bytes: a small buffer each.
                let reply = Connection::with_buffer(stream, vec![0; 512])
                    .exchange(&request)
                    .map_err(|e| e.to_string())?;
                match (reply.status, reply.framing) {
                    (200, Framing::Length(_)) => Ok(()),
                    (200, framing) => Err(format!("not framed by Content-Length: {framing:?}")),
                    (status, _) => Err(format!("status {status}")),
                }
            })
        })
        .collect();
    drop(connected_tx);

    let connected = connected_rx.iter().take(n).filter(|&ok| ok).count();
    println!("ready {connected}");
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;

    let burst = Instant::now();
    go.fire();
    let (mut ok, mut errors, mut first_error) = (0, 0, String::new());
    for client in clients {
        match client.join() {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                errors += 1;
                if first_error.is_empty() {
                    first_error = e;
                }
            }
            Err(_) => {
                errors += 1;
                if first_error.is_empty() {
                    first_error = "client panicked".into();
                }
            }
        }
    }
    let result = ClientResult {
        ok,
        errors,
        burst: burst.elapsed(),
        first_error,
    };
    println!("{}", result.line());
    Ok(())
}

/// Connects, retrying for a while on the errors a busy listener or a short
/// supply of ports can cause.
fn connect_with_retries(addr: SocketAddr) -> io::Result<may::net::TcpStream> {
    use io::ErrorKind::*;
    let mut attempt = 0;
    loop {
        match may::net::TcpStream::connect(addr) {
            Ok(stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(60)))?;
                return Ok(stream);
            }
            Err(e)
                if attempt < 20
                    && matches!(
                        e.kind(),
                        ConnectionRefused
                            | ConnectionReset
                            | TimedOut
                            | AddrNotAvailable
                            | WouldBlock
                            | Interrupted
                    ) =>
            {
                attempt += 1;
                may::coroutine::sleep(Duration::from_millis(10 * attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the load generator reports, as one line on its stdout.
struct ClientResult {
    ok: usize,
    errors: usize,
    burst: Duration,
    first_error: String,
}

impl ClientResult {
    fn line(&self) -> String {
        format!(
            "result {} {} {} {}",
            self.ok,
            self.errors,
            self.burst.as_micros(),
            self.first_error
        )
    }

    fn parse(line: &str) -> Option<ClientResult> {
        let mut fields = line.trim_end().strip_prefix("result ")?.splitn(4, ' ');
        Some(ClientResult {
            ok: fields.next()?.parse().ok()?,
            errors: fields.next()?.parse().ok()?,
            burst: Duration::from_micros(fields.next()?.parse().ok()?),
            first_error: fields.next().unwrap_or("").to_string(),
        })
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// The `n`th command-line argument as a number, or `default`.
fn arg(n: usize, default: u64) -> u64 {
    match std::env::args().nth(n) {
        None => default,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: slow_backend [CLIENTS [DELAY_MS]]   (not a number: {arg:?})");
            std::process::exit(2);
        }),
    }
}

/// Raises the open-file soft limit to the hard limit (going past that needs
/// CAP_SYS_RESOURCE). Returns the soft limit in force afterwards.
fn raise_fd_limit() -> u64 {
    coserve::raise_open_files_limit().unwrap_or(1024)
}

/// A field of /proc/self/status, such as `VmHWM` or `Threads`.
fn proc_status(field: &str) -> String {
    procfs::status(Process::Current)
        .ok()
        .and_then(|st| st.field(field).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
