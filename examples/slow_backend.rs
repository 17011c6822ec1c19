//! A handler that calls a slow backend in plain sequential code, and one
//! process holding thousands of such requests in flight at once.
//!
//! ```sh
//! cargo run --release --example slow_backend               # 10,000 clients
//! cargo run --release --example slow_backend -- 1000       # fewer
//! cargo run --release --example slow_backend -- 10000 2000 # backend takes 2 s
//! ```
//!
//! The backend is a tiny line-based TCP service in the same process: it
//! reads a line, waits (50 ms by default), and answers. The handler for
//! `GET /` connects to it, writes a line, reads the reply and returns it,
//! with no callbacks, futures or thread pool: each request runs on its own
//! may coroutine, and the socket calls park only that coroutine while it
//! waits.
//!
//! All clients start at once, but how many requests are inside the handler
//! at the same moment also depends on how fast the process can accept them:
//! with a 50 ms backend, the first requests are answered before the last
//! ones arrive. A slower backend (the second argument) keeps them all
//! waiting together.
//!
//! Each request in flight holds four sockets (client, server side, backend
//! client, backend side), so the example raises the open-file limit first;
//! if the hard limit is too low, it lets fewer clients run at once.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coserve::{Body, Config, Request, Response, Server};

/// How long the backend takes to answer, unless the second argument says.
const DEFAULT_DELAY_MS: u64 = 50;

/// Descriptors kept free for everything but the requests.
const FD_SPARE: u64 = 256;

/// Stack of each client coroutine: they only connect, write and read.
const CLIENT_STACK_BYTES: usize = if cfg!(debug_assertions) {
    256 * 1024
} else {
    16 * 1024
};

fn main() -> io::Result<()> {
    // Optional arguments: how many clients, and the backend's delay in ms.
    let clients = arg(1, 10_000) as usize;
    let delay = Duration::from_millis(arg(2, DEFAULT_DELAY_MS));
    if cfg!(debug_assertions) && clients > 1000 {
        eprintln!("note: a debug build; run with --release for large client counts");
    }
    // Four descriptors per request in flight, plus some to spare. Where the
    // hard limit is too low for that, fewer clients run at once (see below).
    let fds = raise_fd_limit(4 * clients as u64 + FD_SPARE);
    let at_once = clients.min((fds.saturating_sub(FD_SPARE) / 4).max(1) as usize);
    if at_once < clients {
        println!(
            "note: the open-file limit is {fds}, so at most {at_once} clients run at once \
             (raise the hard limit, `ulimit -Hn`, to run all {clients})"
        );
    }

    // Bind the server first: the first `Server::bind*` in a process
    // configures may's runtime (worker threads, default coroutine stack),
    // which starts with the first coroutine or may socket.
    let config = Config {
        max_connections: 20_000.max(2 * clients),
        ..Config::default()
    };
    let mut server =
        Server::bind_with("127.0.0.1:0", config, |_req: &Request| Response::error(404))?;

    let backend = start_backend(delay)?;

    // How many requests are inside the handler now, and the most at once.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        server.get("/", move |_req: &Request| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Sequential, blocking-style code: only this coroutine waits.
            let resp = match ask_backend(backend, "how are you?") {
                Ok(reply) => Response::new(200)
                    .header("Content-Type", "text/plain; charset=utf-8")
                    .body(Body::Bytes(reply.into())),
                Err(_) => Response::error(502),
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            resp
        });
    }

    let addr = server.local_addr();
    let handle = server.spawn()?;
    println!(
        "{clients} clients -> http://{addr}/ -> backend {backend} (answers after {} ms)",
        delay.as_millis()
    );

    // Every client is a coroutine of its own with one request to make. The
    // semaphore (may's, which parks coroutines) only bites when descriptors
    // are short.
    let gate = Arc::new(may::sync::Semphore::new(at_once));
    let start = Instant::now();
    let mut clients_running = Vec::with_capacity(clients);
    for _ in 0..clients {
        let gate = gate.clone();
        let builder = may::coroutine::Builder::new()
            .stack_size(CLIENT_STACK_BYTES / std::mem::size_of::<usize>());
        // SAFETY: may's spawn is unsafe because a coroutine must not hold a
        // thread-local or a std lock guard across a point where it may
        // yield; this one holds neither, only may sockets, may's semaphore
        // and its own buffers.
        let client = unsafe {
            builder.spawn(move || {
                gate.wait();
                let result = fetch(addr);
                gate.post();
                result
            })
        }?;
        clients_running.push(client);
    }
    let mut ok = 0;
    let mut errors = 0;
    let mut first_error = None;
    for client in clients_running {
        match client.join() {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Err(_) => {
                errors += 1;
                first_error.get_or_insert_with(|| "client panicked".to_string());
            }
        }
    }
    let elapsed = start.elapsed();

    println!("requests:       {clients} ({ok} ok)");
    println!("errors:         {errors}");
    if let Some(e) = first_error {
        println!("first error:    {e}");
    }
    println!("elapsed:        {:.3} s", elapsed.as_secs_f64());
    println!(
        "peak in flight: {} requests inside the handler at once",
        peak.load(Ordering::SeqCst)
    );
    println!("peak RSS:       {} (VmHWM)", proc_status("VmHWM"));
    println!("threads:        {}", proc_status("Threads"));

    // Stop accepting and wait for the server's connections to end. The
    // backend's coroutines end with the process.
    handle.shutdown();
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

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

/// One backend connection: for each line, wait, then answer with a line.
fn serve_backend(stream: may::net::TcpStream, delay: Duration) -> io::Result<()> {
    let mut conn = BufReader::new(stream);
    let mut line = String::new();
    while conn.read_line(&mut line)? != 0 {
        may::coroutine::sleep(delay);
        let reply = format!("the backend says: fine, thanks ({})\n", line.trim_end());
        conn.get_mut().write_all(reply.as_bytes())?;
        line.clear();
    }
    Ok(())
}

/// What the handler does: connect, ask, read one line back.
fn ask_backend(backend: SocketAddr, question: &str) -> io::Result<String> {
    let mut stream = may::net::TcpStream::connect(backend)?;
    stream.write_all(format!("{question}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(reply)
}

/// One client: sends `GET /` with `Connection: close`, reads to the end, and
/// checks the status and that the body is as long as `Content-Length` says.
fn fetch(addr: SocketAddr) -> Result<(), String> {
    let mut stream = may::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| format!("set timeout: {e}"))?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;

    let text = String::from_utf8_lossy(&response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("incomplete response ({} bytes)", response.len()));
    };
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200 ") {
        return Err(format!("status: {status}"));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if length != Some(body.len()) {
        return Err(format!("Content-Length {length:?}, body {}", body.len()));
    }
    Ok(())
}

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

/// Raises the open-file soft limit towards `needed`: up to the hard limit
/// for anyone, past it only with privilege (CAP_SYS_RESOURCE). Returns the
/// soft limit in force afterwards.
fn raise_fd_limit(needed: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur >= needed {
        return lim.rlim_cur;
    }
    let set = |cur: u64, max: u64| {
        let new = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 }
    };
    let max = lim.rlim_max.max(needed);
    let cur = if set(needed, max) {
        needed
    } else if lim.rlim_cur < lim.rlim_max && set(lim.rlim_max, lim.rlim_max) {
        lim.rlim_max
    } else {
        lim.rlim_cur
    };
    if cur != lim.rlim_cur {
        println!(
            "open files:     soft limit raised from {} to {cur}",
            lim.rlim_cur
        );
    }
    cur
}

/// A field of /proc/self/status, such as `VmHWM` or `Threads`.
fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::trim))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}
