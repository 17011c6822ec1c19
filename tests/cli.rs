//! The `coserve` binary: startup line, access log, signals, errors and
//! flags. Every child is killed when its guard drops, even on a failed
//! assertion.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use coserve_http1::procfs::{self, Process};
use regex::Regex;

use crate::child;
use crate::util::{self, make_site, read_response};

/// The line the first SIGINT or SIGTERM prints.
const SHUTTING_DOWN: &str = r"^coserve: (interrupted|terminated): shutting down";

/// A safety net for every wait on the child, not a synchronisation device.
const WAIT: Duration = Duration::from_secs(10);

/// A running `coserve`, killed and reaped on drop. Its stdout is read line
/// by line, and its stderr to the end, on threads of their own.
struct Coserve {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    reaped: bool,
}

impl Drop for Coserve {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Coserve {
    fn spawn<I, S>(args: I) -> Coserve
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Coserve::spawn_with_nofile(args, None)
    }

    /// Like [`Coserve::spawn`], with the child's descriptor limits set to
    /// `(soft, hard)` before it starts.
    fn spawn_with_nofile<I, S>(args: I, nofile: Option<(libc::rlim_t, libc::rlim_t)>) -> Coserve
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = child::command();
        cmd.args(args);
        if let Some((soft, hard)) = nofile {
            child::limit_descriptors(&mut cmd, soft, hard);
        }
        let mut child = cmd.spawn().expect("start coserve");
        let stdout = child::stdout_lines(child.stdout.take().unwrap());
        let stderr = child::stderr_to_end(child.stderr.take().unwrap());
        Coserve {
            child,
            stdout,
            stderr,
            reaped: false,
        }
    }

    /// Serves `dir` on 127.0.0.1 with an ephemeral port, plus `extra` flags.
    fn serve(dir: &Path, extra: &[&str]) -> Coserve {
        let mut args: Vec<std::ffi::OsString> = vec!["0".into(), "-b".into(), "127.0.0.1".into()];
        args.push("-d".into());
        args.push(dir.into());
        args.extend(extra.iter().map(Into::into));
        Coserve::spawn(args)
    }

    /// The next line on stdout.
    fn stdout_line(&self) -> String {
        match self.stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no stdout line within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "stdout closed before a line; stderr: {:?}",
                    self.stderr.try_recv().ok()
                )
            }
        }
    }

    /// Reads the startup line and returns the address it announces (HTTP
    /// or HTTPS).
    fn announced_addr(&self) -> SocketAddr {
        let line = self.stdout_line();
        let re = Regex::new(
            r"^Serving HTTPS? on 127\.0\.0\.1 port (\d+) \(https?://127\.0\.0\.1:(\d+)/\) \.\.\.$",
        )
        .unwrap();
        let caps = re
            .captures(&line)
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
        let port: u16 = caps[1].parse().unwrap();
        assert_eq!(&caps[1], &caps[2], "ports differ in {line:?}");
        assert_ne!(port, 0, "{line:?}");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit (its stderr reaching EOF, within
    /// [`WAIT`]), reaps it and returns its status, stderr and remaining
    /// stdout lines.
    /// Waits for the exit; stderr comes without the line that the first
    /// SIGINT or SIGTERM prints (`a_signal_says_what_it_drains` checks it).
    fn finish(&mut self) -> (ExitStatus, String, Vec<String>) {
        let (status, stderr, stdout) = self.finish_raw();
        let stderr = stderr
            .lines()
            .filter(|l| !Regex::new(SHUTTING_DOWN).unwrap().is_match(l))
            .map(|l| format!("{l}\n"))
            .collect();
        (status, stderr, stdout)
    }

    fn finish_raw(&mut self) -> (ExitStatus, String, Vec<String>) {
        let started = Instant::now();
        let stderr = match self.stderr.recv_timeout(WAIT) {
            Ok(s) => s,
            Err(_) => panic!("coserve did not exit within {WAIT:?}"),
        };
        let status = self.child.wait().expect("wait");
        self.reaped = true;
        let mut stdout = Vec::new();
        loop {
            let left = WAIT.saturating_sub(started.elapsed());
            match self.stdout.recv_timeout(left) {
                Ok(line) => stdout.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stdout not closed after exit"),
            }
        }
        (status, stderr, stdout)
    }
}

/// Runs coserve with `args` to completion.
fn run<I, S>(args: I) -> (ExitStatus, String, Vec<String>)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Coserve::spawn(args).finish()
}

/// `GET /` with `Connection: close`; returns the response.
fn get_root(addr: SocketAddr) -> util::Resp {
    let mut s = util::connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut s, false).expect("a response")
}

fn clf_line() -> Regex {
    Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET / HTTP/1\.1" 200 (\d+)$"#,
    )
    .unwrap()
}

fn serve_request_and_stop(sig: libc::c_int) {
    serve_request_and_stop_with(sig, &[]);
}

fn serve_request_and_stop_with(sig: libc::c_int, extra: &[&str]) {
    let site = make_site();
    let mut server = Coserve::serve(site.path(), extra);
    let addr = server.announced_addr();
    let r = get_root(addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<!doctype html><title>home</title>home page\n");

    server.signal(sig);
    let (status, stderr, _) = server.finish();
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );

    let re = clf_line();
    let lines: Vec<&str> = stderr.lines().filter(|l| re.is_match(l)).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one access-log line for GET /; stderr: {stderr:?}"
    );
    let bytes = &re.captures(lines[0]).unwrap()[2];
    assert_eq!(bytes, r.body.len().to_string(), "{:?}", lines[0]);
}

#[test]
fn serves_logs_and_exits_cleanly_on_sigterm() {
    serve_request_and_stop(libc::SIGTERM);
}

#[test]
fn serves_logs_and_exits_cleanly_on_sigint() {
    serve_request_and_stop(libc::SIGINT);
}

/// Ctrl-Z then `fg` (SIGSTOP, SIGCONT) interrupts every worker sleeping in
/// `epoll_wait`: nothing went wrong, so nothing is logged, and the server
/// goes on serving.
#[test]
fn a_stop_and_continue_is_not_an_error() {
    let site = make_site();
    // Few enough connections that no descriptor limit draws a warning.
    let mut server = Coserve::serve(site.path(), &["-q", "--max-connections", "100"]);
    let addr = server.announced_addr();
    assert_eq!(get_root(addr).status, 200);
    server.signal(libc::SIGSTOP);
    // SIGCONT discards a stop still pending: continue once it has stopped.
    let pid = Process::Pid(server.child.id());
    let stopped = util::eventually(WAIT, || procfs::stat(pid).is_ok_and(|s| s.state == 'T'));
    assert!(stopped, "coserve did not stop");
    server.signal(libc::SIGCONT);
    assert_eq!(get_root(addr).status, 200);
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    assert_eq!(stderr, "", "a stop and continue logged something");
}

/// The smallest stack the server accepts is enough for the server's own
/// code from the first request of the process on. The request-line regex
/// needs more stack to compile than a request needs to be served (117 KiB
/// in a debug build); it used to be compiled by the first request, inside a
/// one-time lock. On a stack this small that request overflowed holding the
/// lock, and every later request on its worker waited for the lock forever.
#[test]
fn the_smallest_stack_serves_from_the_first_request() {
    let site = make_site();
    let min = coserve::Runtime::MIN_STACK_SIZE.to_string();
    let mut server = Coserve::serve(
        site.path(),
        &["--workers", "1", "--listing", "--stack-size", &min],
    );
    let addr = server.announced_addr();
    let ask = |request: &str| {
        let mut s = util::connect(addr);
        s.write_all(request.as_bytes()).unwrap();
        match util::try_read_head(&mut s) {
            Ok(Some(head)) => head,
            Ok(None) => panic!("closed without a response to {request:?}"),
            Err(e) => panic!("no response to {request:?}: {e}"),
        }
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for (request, status) in [
        (get("/"), 200),
        (get("/"), 200),
        (get("/sub/page.html"), 200),
        (get("/empty/"), 200),
        (get("/missing"), 404),
        (get("/%2e%2e/etc/passwd"), 400),
        (
            "GET /style.css HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3,5-8\r\nConnection: close\r\n\r\n"
                .to_string(),
            206,
        ),
        ("BREW / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(), 501),
    ] {
        let head = ask(&request);
        assert_eq!(head.status, status, "{request:?}: {head:?}");
    }
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    assert!(!stderr.contains("overflow"), "{stderr}");
}

#[test]
fn a_stack_out_of_bounds_is_refused() {
    let min = coserve::Runtime::MIN_STACK_SIZE;
    let (status, stderr, stdout) = run(["--stack-size", &(min - 1).to_string()]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr:?}");
    assert!(
        stderr.contains("--stack-size") && stderr.contains(&format!("at least {min} bytes")),
        "{stderr:?}"
    );
    assert!(stdout.is_empty(), "{stdout:?}");
    let max = coserve::Runtime::MAX_STACK_SIZE;
    let (status, stderr, _) = run(["--stack-size", &(max + 1).to_string()]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr:?}");
    assert!(
        stderr.contains(&format!("at most {max} bytes")),
        "{stderr:?}"
    );
}

/// The soft descriptor limit.
fn soft_nofile(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{limits}"));
    line.split_whitespace().nth(3).unwrap().to_string()
}

/// A soft descriptor limit below the hard one is raised to it at start
/// (many systems start programs at 1,024), and a hard limit below
/// `--max-connections` draws one warning.
#[test]
fn the_descriptor_limit_is_raised_to_the_hard_one() {
    let site = make_site();
    let dir = site.path().to_str().unwrap();
    let args = [
        "0",
        "-b",
        "127.0.0.1",
        "-q",
        "-d",
        dir,
        "--max-connections",
        "500",
    ];
    // (hard limit, the soft limit expected after the start, the warning)
    for (hard, warning) in [
        (1024, None),
        (
            256,
            Some("--max-connections 500 needs about 564 descriptors, but the limit is 256"),
        ),
    ] {
        let mut server = Coserve::spawn_with_nofile(args, Some((128, hard)));
        let addr = server.announced_addr();
        assert_eq!(soft_nofile(server.child.id()), hard.to_string());
        assert_eq!(get_root(addr).status, 200);
        server.signal(libc::SIGTERM);
        let (status, stderr, _) = server.finish();
        assert!(status.success(), "{status:?}; stderr: {stderr:?}");
        match warning {
            None => assert_eq!(
                stderr, "",
                "{hard} descriptors are enough for 500 connections"
            ),
            Some(w) => assert!(stderr.contains(w), "{stderr:?}"),
        }
    }
}

/// Times too long for the clock's arithmetic mean "never", not a panic: a
/// request head that comes in two parts used to kill its connection with
/// `--header-timeout` at the largest value the flag takes, and SIGTERM
/// never finished with such a `--shutdown-grace`.
#[test]
fn the_longest_times_mean_never() {
    let site = make_site();
    let max = u64::MAX.to_string();
    let mut server = Coserve::serve(
        site.path(),
        &[
            "-q",
            "--max-connections",
            "100",
            "--header-timeout",
            &max,
            "--idle-timeout",
            &max,
            "--release-idle-after",
            &max,
            "--shutdown-grace",
            &max,
        ],
    );
    let addr = server.announced_addr();
    let mut s = util::connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, false).map(|r| r.status), Some(200));
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    s.flush().unwrap();
    // A head in two parts takes the path with a header deadline; no sleep is
    // needed for that, the server may see either one or two reads.
    s.write_all(b"Host: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, false).map(|r| r.status), Some(200));
    // An idle keep-alive connection is still open: shutdown closes it.
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    assert_eq!(stderr, "");
}

/// A file larger than the whole cache is sent from disk even when
/// `--cache-max-file` would let it in: it used to be read into memory for a
/// cache that could not keep it (a 300 MB file took the server to 600 MB).
#[test]
fn a_file_larger_than_the_cache_is_not_read_into_memory() {
    const LEN: u64 = 64 * 1024 * 1024;
    let site = make_site();
    // Sparse: no disk, but every byte read into memory would be resident.
    std::fs::File::create(site.path().join("large.bin"))
        .unwrap()
        .set_len(LEN)
        .unwrap();
    // The cache takes only files unchanged for 20 ms: this waits for that
    // rule, it synchronises nothing.
    std::thread::sleep(Duration::from_millis(50));
    let mut server = Coserve::serve(
        site.path(),
        &[
            "-q",
            "--max-connections",
            "100",
            "--cache-max-file",
            "1000000000",
            "--cache-size",
            "1048576",
        ],
    );
    let addr = server.announced_addr();
    let mut s = util::connect(addr);
    s.write_all(b"GET /large.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!((r.status, r.body.len() as u64), (200, LEN));
    let peak = util::proc_status_kib(Process::Pid(server.child.id()), "VmHWM");
    assert!(
        peak < LEN / 1024 / 2,
        "peak RSS {peak} KiB serving a {LEN}-byte file"
    );
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");
}

#[test]
fn thread_engine_serves_and_stops_cleanly() {
    serve_request_and_stop_with(libc::SIGTERM, &["--engine", "thread"]);
}

#[test]
fn unknown_engine_is_an_error() {
    let (status, stderr, _) = run(["--engine", "fibers"]);
    assert!(!status.success());
    assert!(stderr.contains("fibers"), "{stderr:?}");
}

#[test]
fn issue_3_flags_reach_the_server() {
    let site = make_site();
    std::fs::write(site.path().join("sub/default.htm"), b"default page\n").unwrap();
    let mut server = Coserve::serve(
        site.path(),
        &[
            "--cors",
            "--header",
            "X-Frame-Options: DENY",
            "--cache-control",
            "max-age=5",
            "--listing",
            "--spa",
            "--index",
            "default.htm",
            "--no-precompressed",
        ],
    );
    let addr = server.announced_addr();
    let get = |path: &str| {
        let mut s = util::connect(addr);
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        util::read_response(&mut s, false).unwrap()
    };
    let r = get("/sub/");
    assert_eq!(r.body, b"default page\n");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("max-age=5"));
    // `index.html` is no longer an index name, so the root is listed.
    let r = get("/");
    assert!(r.text().contains("Index of /"), "{}", r.text());
    // --spa: an extension-less unknown path gets the first index name that
    // exists at the root; there is none, so it is a 404.
    assert_eq!(get("/client/route").status, 404);
    server.signal(libc::SIGTERM);
    assert!(server.finish().0.success());
}

/// `--body-timeout` reaches the server: a body that does not come is cut
/// off with a 408 after it, not after the idle timeout.
#[test]
fn the_body_timeout_flag_reaches_the_server() {
    let site = make_site();
    let mut server = Coserve::serve(
        site.path(),
        &["--body-timeout", "1", "--idle-timeout", "30"],
    );
    let mut s = util::connect(server.announced_addr());
    let start = std::time::Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab")
        .unwrap();
    let r = util::read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 408);
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(950)..Duration::from_secs(5)).contains(&took),
        "{took:?}"
    );
    server.signal(libc::SIGTERM);
    assert!(server.finish().0.success());
}

#[test]
fn a_header_flag_cannot_inject_a_line() {
    for bad in ["No-Colon", "Bad Name: x", "X: a\r\nY: b", ": empty"] {
        let (status, stderr, _) = run(["--header", bad]);
        assert!(!status.success(), "{bad:?} accepted");
        assert!(!stderr.is_empty());
    }
}

/// A second SIGTERM ends the process at once, even with a response still
/// being written (a client that stopped reading a large file holds the
/// first, graceful shutdown for its whole grace period).
#[test]
fn a_second_sigterm_exits_at_once() {
    let site = make_site();
    std::fs::write(site.path().join("huge.bin"), vec![7u8; 64 * 1024 * 1024]).unwrap();
    let mut server = Coserve::serve(site.path(), &[]);
    let addr = server.announced_addr();
    let stalled = std::net::TcpStream::connect(addr).unwrap();
    socket2::SockRef::from(&stalled)
        .set_recv_buffer_size(4096)
        .unwrap();
    (&stalled)
        .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The request is in once the server has started answering it.
    let mut first = [0u8; 12];
    (&stalled).read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    server.signal(libc::SIGTERM);
    // The first signal was handled once the listener is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::yield_now();
    }
    let second = Instant::now();
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish_raw();
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "{:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    // The first signal said what it waits for, and how not to.
    // At least the stalled download; the probes above may be counted too,
    // if one was accepted before the signal was handled.
    let first = stderr.lines().next().unwrap_or_default();
    let said = Regex::new(
        r"^coserve: terminated: shutting down; draining (1 connection|\d+ connections) for up to 10 s \(a second Ctrl-C exits at once\)$",
    )
    .unwrap();
    assert!(said.is_match(first), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");
    drop(stalled);
}

/// Log injection: what a client puts in the request line cannot forge or
/// break an access-log line. Quotes and backslashes are escaped, and
/// control characters never reach the log (the parser refuses them, and an
/// encoded newline stays encoded).
#[test]
fn the_access_log_cannot_be_injected() {
    let site = make_site();
    let mut server = Coserve::serve(site.path(), &[]);
    let addr = server.announced_addr();
    for raw in [
        &b"GET /a\"b\\c%0a127.0.0.1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET /x\ny HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /x\x1b[31mred HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = util::connect(addr);
        s.write_all(raw).unwrap();
        let _ = util::read_to_close(&mut s);
    }
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "one line per request: {stderr:?}");
    assert!(
        lines[0].contains(r#""GET /a\"b\\c%0a127.0.0.1 HTTP/1.1" 400"#),
        "{}",
        lines[0]
    );
    for line in &lines {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(!line.bytes().any(|b| b.is_ascii_control()), "{line:?}");
    }
}

#[test]
fn quiet_suppresses_the_access_log() {
    let site = make_site();
    let mut server = Coserve::serve(site.path(), &["-q"]);
    let addr = server.announced_addr();
    let r = get_root(addr);
    assert_eq!(r.status, 200);
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    assert!(
        !stderr.contains("\"GET / HTTP/1.1\""),
        "access log written with -q: {stderr:?}"
    );
    assert!(
        !stderr.lines().any(|l| clf_line().is_match(l)),
        "{stderr:?}"
    );
}

#[test]
fn port_in_use_is_a_prompt_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let site = make_site();
    let started = Instant::now();
    let (status, stderr, stdout) = run([
        port.to_string().as_str(),
        "-b",
        "127.0.0.1",
        "-d",
        site.path().to_str().unwrap(),
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!status.success(), "exit status {status:?}");
    let err = stderr.trim_end();
    assert!(!err.is_empty(), "no error on stderr");
    assert_eq!(err.lines().count(), 1, "a one-line error: {stderr:?}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) || err.to_ascii_lowercase().contains("in use"),
        "error names neither the address nor 'in use': {err:?}"
    );
    assert!(
        !stdout.iter().any(|l| l.starts_with("Serving")),
        "announced serving on a port in use: {stdout:?}"
    );
    drop(taken);
}

#[test]
fn missing_directory_is_an_error() {
    let (status, stderr, stdout) = run(["0", "-b", "127.0.0.1", "-d", "/nonexistent/dir"]);
    assert!(!status.success(), "exit status {status:?}");
    let err = stderr.trim_end();
    assert!(!err.is_empty(), "no error on stderr");
    assert_eq!(err.lines().count(), 1, "a one-line error: {stderr:?}");
    assert!(err.contains("/nonexistent/dir"), "{err:?}");
    assert!(
        !stdout.iter().any(|l| l.starts_with("Serving")),
        "{stdout:?}"
    );
}

#[test]
fn help_lists_the_flags() {
    let (status, stderr, stdout) = run(["--help"]);
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    let help = stdout.join("\n");
    for flag in [
        "--bind",
        "--directory",
        "--quiet",
        "--workers",
        "--stack-size",
        "--idle-timeout",
        "--header-timeout",
        "--max-connections",
        "--max-connections-per-ip",
        "--shutdown-grace",
        "--engine",
        "--symlinks",
        "--no-listing",
        "--no-compress",
        "--write-timeout",
        "--no-precompressed",
        "--cache-control",
        "--header",
        "--cors",
        "--spa",
        "--index",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
}

#[test]
fn version_is_printed() {
    let (status, stderr, stdout) = run(["--version"]);
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    assert_eq!(stdout, vec!["coserve 0.1.0".to_string()]);
}

#[test]
fn bad_flag_is_an_error() {
    let (status, stderr, stdout) = run(["--no-such-flag"]);
    assert!(!status.success(), "exit status {status:?}");
    assert!(stderr.contains("--no-such-flag"), "{stderr:?}");
    assert!(
        !stdout.iter().any(|l| l.starts_with("Serving")),
        "{stdout:?}"
    );
}

// ---------------------------------------------------------------------------
// The drop-in flags: binding, symlinks, listing, write timeout, processes.

const ENGINES: [&str; 2] = ["coroutine", "thread"];

/// Serves `dir` on 127.0.0.1 with the engine and flags given.
fn serve_on(engine: &str, dir: &Path, extra: &[&str]) -> Coserve {
    let mut args = vec!["--engine", engine];
    args.extend_from_slice(extra);
    Coserve::serve(dir, &args)
}

fn get(addr: SocketAddr, target: &str) -> util::Resp {
    let mut s = util::connect(addr);
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut s, false).expect("a response")
}

/// With no `-b`, python binds `::` with IPv4 mapped; so does coserve, and
/// both families reach it.
#[test]
fn with_no_bind_address_ipv4_and_ipv6_are_both_served() {
    let site = make_site();
    let mut server = Coserve::spawn([
        "0".as_ref(),
        "-q".as_ref(),
        "-d".as_ref(),
        site.path().as_os_str(),
    ]);
    let line = server.stdout_line();
    let has_ipv6 = TcpListener::bind("[::1]:0").is_ok();
    let re = Regex::new(r"^Serving HTTP on (::|0\.0\.0\.0) port (\d+) \(http://(\[::\]|0\.0\.0\.0):(\d+)/\) \.\.\.$").unwrap();
    let caps = re.captures(&line).unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(&caps[1] == "::", has_ipv6, "{line:?}");
    let port: u16 = caps[2].parse().unwrap();
    assert_eq!(
        get(SocketAddr::from(([127, 0, 0, 1], port)), "/").status,
        200
    );
    if has_ipv6 {
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        assert_eq!(get(v6, "/").status, 200);
    }
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{stderr}");
}

/// `-b` takes host names, as python does, and addresses in brackets.
#[test]
fn bind_takes_host_names() {
    let site = make_site();
    let re = Regex::new(r"^Serving HTTP on (127\.0\.0\.1|::1) port (\d+) ").unwrap();
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        if host == "[::1]" && TcpListener::bind("[::1]:0").is_err() {
            continue;
        }
        let mut server = Coserve::spawn([
            "0".as_ref(),
            "-q".as_ref(),
            "-b".as_ref(),
            host.as_ref(),
            "-d".as_ref(),
            site.path().as_os_str(),
        ]);
        let line = server.stdout_line();
        let caps = re
            .captures(&line)
            .unwrap_or_else(|| panic!("{host}: {line:?}"));
        let ip: std::net::IpAddr = caps[1].parse().unwrap();
        let addr = SocketAddr::new(ip, caps[2].parse().unwrap());
        assert_eq!(get(addr, "/").status, 200, "{host}");
        server.signal(libc::SIGTERM);
        let (status, stderr, _) = server.finish();
        assert!(status.success(), "{host}: {stderr}");
    }
    let (status, stderr, _) = run(["0", "-b", "no-such-host.invalid"]);
    assert!(!status.success());
    assert!(
        stderr.contains("cannot serve") && stderr.contains("no-such-host.invalid"),
        "{stderr}"
    );
}

/// `-d` naming a file says so, not "not found".
#[test]
fn a_file_given_as_the_directory_is_not_a_directory() {
    let site = make_site();
    let file = site.path().join("style.css");
    let (status, stderr, _) = run(["0".as_ref(), "-d".as_ref(), file.as_os_str()]);
    assert!(!status.success());
    assert!(stderr.contains("not a directory"), "{stderr}");
}

/// A symlink out of the root to another user's file is refused under the
/// default policy, with one warning per link naming the flag, however
/// often it is asked for (and listed); `--symlinks follow` serves it and
/// `--symlinks refuse` refuses a same-owner link too.
#[test]
fn refused_symlinks_are_warned_about_once_each() {
    use std::os::unix::fs::{MetadataExt, symlink};
    let outside = tempfile::tempdir().unwrap();
    let theirs = if procfs::status(Process::Current)
        .unwrap()
        .field("Uid")
        .unwrap()
        .split_whitespace()
        .nth(1)
        == Some("0")
    {
        let theirs = outside.path().join("theirs.txt");
        std::fs::write(&theirs, b"theirs\n").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        theirs
    } else {
        Path::new("/etc/passwd").to_path_buf()
    };
    let ours = outside.path().join("ours.txt");
    std::fs::write(&ours, b"ours\n").unwrap();
    assert_ne!(
        std::fs::metadata(&theirs).unwrap().uid(),
        std::fs::metadata(&ours).unwrap().uid()
    );
    let site = make_site();
    std::fs::create_dir(site.path().join("assets")).unwrap();
    symlink(&theirs, site.path().join("assets/theirs.txt")).unwrap();
    symlink(&ours, site.path().join("assets/ours.txt")).unwrap();
    symlink(&theirs, site.path().join("assets/theirs-too.txt")).unwrap();

    for engine in ENGINES {
        for (policy, ours_status, theirs_status) in [
            ("owner", 200, 404),
            ("refuse", 404, 404),
            ("follow", 200, 200),
        ] {
            let mut server = serve_on(engine, site.path(), &["-q", "--symlinks", policy]);
            let addr = server.announced_addr();
            for _ in 0..3 {
                assert_eq!(
                    get(addr, "/assets/ours.txt").status,
                    ours_status,
                    "{policy}"
                );
                assert_eq!(
                    get(addr, "/assets/theirs.txt").status,
                    theirs_status,
                    "{policy}"
                );
                assert_eq!(get(addr, "/assets/").status, 200, "{policy}");
            }
            assert_eq!(get(addr, "/assets/theirs-too.txt").status, theirs_status);
            server.signal(libc::SIGTERM);
            let (status, stderr, _) = server.finish();
            assert!(status.success(), "{stderr}");
            let warned = |name: &str| {
                stderr
                    .lines()
                    .filter(|l| l.contains(&format!("not serving /assets/{name}:")))
                    .collect::<Vec<_>>()
            };
            for (name, served) in [
                ("theirs.txt", theirs_status == 200),
                ("theirs-too.txt", theirs_status == 200),
                ("ours.txt", ours_status == 200),
            ] {
                let lines = warned(name);
                if served {
                    assert!(lines.is_empty(), "{engine}, {policy}: {stderr}");
                } else {
                    assert_eq!(lines.len(), 1, "{engine}, {policy}, {name}: {stderr}");
                    assert!(lines[0].starts_with("coserve: WARN: "), "{}", lines[0]);
                    assert!(lines[0].contains("--symlinks"), "{}", lines[0]);
                }
            }
        }
    }
}

/// A directory without an index is listed by default; `--no-listing`
/// makes it a 404 whose page says why.
#[test]
fn no_listing_turns_the_listing_into_a_404_that_says_so() {
    let site = make_site();
    std::fs::remove_file(site.path().join("404.html")).unwrap();
    std::fs::write(site.path().join("empty/a.txt"), b"a\n").unwrap();
    for engine in ENGINES {
        let mut server = serve_on(engine, site.path(), &["-q"]);
        let addr = server.announced_addr();
        let r = get(addr, "/empty/");
        assert_eq!(r.status, 200, "{engine}");
        assert!(r.text().contains("href=\"a.txt\""), "{}", r.text());
        server.signal(libc::SIGTERM);
        assert!(server.finish().0.success());

        let mut server = serve_on(engine, site.path(), &["-q", "--no-listing"]);
        let addr = server.announced_addr();
        let r = get(addr, "/empty/");
        assert_eq!(r.status, 404, "{engine}");
        assert!(
            r.text().contains("directory listing is off"),
            "{}",
            r.text()
        );
        assert!(!r.text().contains("a.txt"), "{}", r.text());
        // Any other 404 does not say it.
        let r = get(addr, "/missing");
        assert_eq!(r.status, 404);
        assert!(!r.text().contains("listing"), "{}", r.text());
        server.signal(libc::SIGTERM);
        assert!(server.finish().0.success());
    }
}

/// The state of the server's side of the TCP connection from `client`
/// (a local address) to `server`, from `/proc/net/tcp`: `01` is
/// ESTABLISHED.
fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (port(f[1]) == Some(server.port()) && port(f[2]) == Some(client.port()))
            .then(|| f[3].to_string())
    })
}

/// `--write-timeout` gives up on a client that stopped reading.
#[test]
fn write_timeout_drops_a_client_that_stopped_reading() {
    let site = make_site();
    std::fs::write(site.path().join("huge.bin"), vec![7u8; 64 * 1024 * 1024]).unwrap();
    for engine in ENGINES {
        let mut server = serve_on(engine, site.path(), &["-q", "--write-timeout", "1"]);
        let addr = server.announced_addr();
        let stalled = std::net::TcpStream::connect(addr).unwrap();
        socket2::SockRef::from(&stalled)
            .set_recv_buffer_size(4096)
            .unwrap();
        (&stalled)
            .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let asked = Instant::now();
        let local = stalled.local_addr().unwrap();
        assert!(
            util::eventually(WAIT, || server_side_state(addr, local)
                .is_some_and(|st| st != "01")),
            "{engine}: the server still holds the connection after {WAIT:?}"
        );
        assert!(
            asked.elapsed() >= Duration::from_millis(900),
            "{:?}",
            asked.elapsed()
        );
        server.signal(libc::SIGTERM);
        let (status, stderr, _) = server.finish();
        assert!(status.success(), "{engine}: {stderr}");
        drop(stalled);
    }
}

/// The supervisor's children, from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// `--processes 2`: one startup line, two workers sharing the port; a
/// worker killed is replaced; SIGTERM stops them all.
#[test]
fn processes_share_the_port_and_a_dead_worker_is_replaced() {
    let site = make_site();
    for engine in ENGINES {
        let mut server = serve_on(engine, site.path(), &["-q", "--processes", "2"]);
        let addr = server.announced_addr();
        let pid = server.child.id();
        assert!(
            util::eventually(WAIT, || children(pid).len() == 2),
            "{engine}: no two workers"
        );
        for _ in 0..20 {
            assert_eq!(get(addr, "/").status, 200, "{engine}");
        }
        let first = children(pid);
        let victim = first[0];
        // SAFETY: kill(2) on the supervisor's child, which it has not reaped.
        assert_eq!(
            unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) },
            0
        );
        assert!(
            util::eventually(WAIT, || {
                let now = children(pid);
                now.len() == 2 && !now.contains(&victim)
            }),
            "{engine}: the killed worker was not replaced: {:?}",
            children(pid)
        );
        for _ in 0..20 {
            assert_eq!(get(addr, "/").status, 200, "{engine}");
        }
        let workers = children(pid);
        server.signal(libc::SIGTERM);
        let (status, stderr, stdout) = server.finish();
        assert!(status.success(), "{engine}: {stderr}");
        assert!(stdout.is_empty(), "one startup line only: {stdout:?}");
        assert!(
            stderr.contains(&format!("worker 0 (pid {victim}) was killed by signal 9"))
                || stderr.contains(&format!("worker 1 (pid {victim}) was killed by signal 9")),
            "{stderr}"
        );
        // The supervisor waited for (and reaped) its workers.
        for worker in workers {
            assert!(
                !Path::new(&format!("/proc/{worker}")).exists(),
                "{engine}: worker {worker} outlived the supervisor"
            );
        }
    }
}

/// SIGHUP replaces every worker, one by one, while a client keeps
/// connecting: not one connection is refused or left unanswered.
#[test]
fn sighup_replaces_the_workers_without_losing_a_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let site = make_site();
    for engine in ENGINES {
        let mut server = serve_on(engine, site.path(), &["-q", "--processes", "2"]);
        let addr = server.announced_addr();
        let pid = server.child.id();
        assert!(
            util::eventually(WAIT, || children(pid).len() == 2),
            "{engine}"
        );
        let before = children(pid);

        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let client = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < WAIT {
                    let answered = std::net::TcpStream::connect(addr).ok().and_then(|mut s| {
                        s.set_read_timeout(Some(WAIT)).ok()?;
                        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                            .ok()?;
                        read_response(&mut s, false)
                    });
                    match answered {
                        Some(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        };
        assert!(util::eventually(WAIT, || ok.load(Ordering::Relaxed) > 10));
        server.signal(libc::SIGHUP);
        let replaced = util::eventually(WAIT, || {
            let now = children(pid);
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        });
        let served_during = ok.load(Ordering::Relaxed);
        assert!(util::eventually(WAIT, || ok.load(Ordering::Relaxed) > served_during + 10));
        stop.store(true, Ordering::Relaxed);
        client.join().unwrap();
        assert!(
            replaced,
            "{engine}: workers {before:?} still there: {:?}",
            children(pid)
        );
        assert_eq!(
            failed.load(Ordering::Relaxed),
            0,
            "{engine}: connections lost in a reload ({} answered)",
            ok.load(Ordering::Relaxed)
        );
        server.signal(libc::SIGTERM);
        let (status, stderr, _) = server.finish();
        assert!(status.success(), "{engine}: {stderr}");
        assert!(stderr.contains("reload done"), "{engine}: {stderr}");
    }
}

/// `--auth` and `--auth-file`: every request needs a listed user's
/// password; the password never reaches the log; a bad spec stops the
/// program before it serves.
#[test]
fn auth_flags_ask_every_request_for_a_password() {
    use base64::Engine as _;
    let basic = |user_pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    let site = make_site();
    let file = site.path().join("users.txt");
    let carol_hash = {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(b"file-pass")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("carol:sha256:{hex}\n")
    };
    std::fs::write(&file, format!("# users\n\n{carol_hash}")).unwrap();
    let file = file.to_str().unwrap();
    for engine in ENGINES {
        let mut server = serve_on(
            engine,
            site.path(),
            &[
                "--auth",
                "alice:open-sesame",
                "--auth-file",
                file,
                "--auth-realm",
                "site",
            ],
        );
        let addr = server.announced_addr();
        let ask = |auth: Option<&str>| {
            let mut s = util::connect(addr);
            let field = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
            write!(
                s,
                "GET / HTTP/1.1\r\nHost: t\r\n{field}Connection: close\r\n\r\n"
            )
            .unwrap();
            read_response(&mut s, false).expect("a response")
        };
        let r = ask(None);
        assert_eq!(r.status, 401, "{engine}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="site", charset="UTF-8""#)
        );
        assert_eq!(
            ask(Some(&basic("alice:open-sesame"))).status,
            200,
            "{engine}"
        );
        assert_eq!(ask(Some(&basic("carol:file-pass"))).status, 200, "{engine}");
        assert_eq!(ask(Some(&basic("alice:file-pass"))).status, 401, "{engine}");
        assert_eq!(
            ask(Some(&basic("mallory:open-sesame"))).status,
            401,
            "{engine}"
        );
        assert_eq!(ask(Some("Basic !!!")).status, 401, "{engine}");
        server.signal(libc::SIGTERM);
        let (status, stderr, _) = server.finish();
        assert!(status.success(), "{engine}: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.contains("\" 401 ")).count(),
            4,
            "{stderr}"
        );
        for secret in [
            "open-sesame",
            "file-pass",
            "b3Blbi1zZXNhbWU",
            "YWxpY2U6b3Blbi1zZXNhbWU",
        ] {
            assert!(
                !stderr.contains(secret),
                "{engine}: {secret} logged: {stderr}"
            );
        }
    }
    for bad in [
        vec!["--auth", "no-colon"],
        vec!["--auth", "a:sha256:12"],
        vec!["--auth", "a:x", "--auth", "a:y"],
        vec!["--auth-file", "/nonexistent/users"],
    ] {
        let (status, stderr, _) = run(&bad);
        assert!(!status.success(), "{bad:?}");
        assert!(stderr.contains("auth"), "{bad:?}: {stderr}");
        // The error names the flag and the fault, never the secret.
        for secret in ["no-colon", "a:sha256:12", "a:y"] {
            assert!(!stderr.contains(secret), "{bad:?}: {stderr}");
        }
    }
}

/// Responses are compressed on the fly by default; `--no-compress` sends
/// every file as it is.
#[test]
fn no_compress_sends_files_as_they_are() {
    let site = make_site();
    let page: Vec<u8> = (0..400)
        .flat_map(|i| format!("<p>line {i}</p>\n").into_bytes())
        .collect();
    std::fs::write(site.path().join("page.html"), &page).unwrap();
    for engine in ENGINES {
        for (flags, coded) in [(&["-q"][..], true), (&["-q", "--no-compress"][..], false)] {
            let mut server = serve_on(engine, site.path(), flags);
            let addr = server.announced_addr();
            let mut s = util::connect(addr);
            s.write_all(
                b"GET /page.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            let r = read_response(&mut s, false).expect("a response");
            assert_eq!(r.status, 200);
            if coded {
                assert_eq!(r.header("content-encoding"), Some("gzip"), "{engine}");
                let mut plain = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&r.body[..]),
                    &mut plain,
                )
                .unwrap();
                assert!(plain == page, "{engine}");
            } else {
                assert_eq!(r.header("content-encoding"), None, "{engine}");
                assert!(r.body == page, "{engine}");
            }
            server.signal(libc::SIGTERM);
            assert!(server.finish().0.success());
        }
    }
}

/// The binary serving `site` over HTTPS (`-q`, with `extra` flags), with a
/// certificate for `localhost` that a new test CA signed, in `certs`;
/// checks its startup line and returns its HTTPS address and the CA.
fn serve_https(
    site: &Path,
    certs: &Path,
    extra: &[&str],
) -> (
    Coserve,
    SocketAddr,
    rustls::pki_types::CertificateDer<'static>,
) {
    let ca = crate::tls::make_named(certs, "", &["localhost"]);
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let mut args = vec![
        "-q",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Coserve::serve(site, &args);
    let line = server.stdout_line();
    let re = Regex::new(
        r"^Serving HTTPS on 127\.0\.0\.1 port (\d+) \(https://127\.0\.0\.1:(\d+)/\) \.\.\.$",
    )
    .unwrap();
    let caps = re.captures(&line).unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(&caps[1], &caps[2], "ports differ in {line:?}");
    let port: u16 = caps[1].parse().unwrap();
    (server, SocketAddr::from(([127, 0, 0, 1], port)), ca)
}

/// `--tls-cert` and `--tls-key`: HTTPS, announced as such; a key that is
/// not the certificate's is a one-line error naming both files.
#[test]
fn tls_flags_serve_https_and_a_bad_key_is_a_clear_error() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let (mut server, addr, _) = serve_https(site.path(), certs.path(), &[]);
    let cert_pem = certs.path().join("cert.pem");
    // Plain HTTP to it gets the plaintext 400.
    let mut s = util::connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!(r.status, 400);
    // Then the close: end of stream, with nothing after the 400.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    drop(s);
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");

    let other = certs.path().join("other.pem");
    std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let (status, stderr, stdout) = run([
        "0",
        "-b",
        "127.0.0.1",
        "-d",
        site.path().to_str().unwrap(),
        "--tls-cert",
        cert_pem.to_str().unwrap(),
        "--tls-key",
        other.to_str().unwrap(),
    ]);
    assert!(!status.success());
    let err = stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "{stderr:?}");
    assert!(
        err.contains("other.pem") && err.contains("does not match"),
        "{err:?}"
    );
    assert!(
        !stdout.iter().any(|l| l.starts_with("Serving")),
        "{stdout:?}"
    );
}

/// SIGHUP reads the certificate files again: a renewal is picked up
/// without a restart, and the server keeps running.
#[test]
fn sighup_reloads_the_certificates() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let (mut server, addr, _) = serve_https(site.path(), certs.path(), &[]);
    let renewed = crate::tls::make_named(certs.path(), "", &["localhost"]);
    let client = crate::tls::client_config(&renewed, crate::tls::BOTH);
    assert!(crate::tls::try_connect(addr, client.clone(), "localhost").is_err());
    server.signal(libc::SIGHUP);
    let reloaded = util::eventually(Duration::from_secs(10), || {
        crate::tls::try_connect(addr, client.clone(), "localhost").is_ok()
    });
    assert!(reloaded, "the renewed certificate was not picked up");
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");
    assert!(stderr.contains("certificates reloaded"), "{stderr:?}");
}

/// `--redirect-http PORT`: plain HTTP there gets a 308 to HTTPS.
#[test]
fn redirect_http_sends_plain_http_to_https() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let (mut server, addr, _) = serve_https(site.path(), certs.path(), &["--redirect-http", "0"]);
    let https = addr.port();
    let line = server.stdout_line();
    let re =
        Regex::new(r"^Redirecting HTTP on 127\.0\.0\.1 port (\d+) to HTTPS port (\d+)$").unwrap();
    let caps = re.captures(&line).unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(caps[2].parse::<u16>().unwrap(), https);
    let plain = SocketAddr::from(([127, 0, 0, 1], caps[1].parse::<u16>().unwrap()));
    let mut s = util::connect(plain);
    s.write_all(b"GET /sub/page.html?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(&*format!("https://localhost:{https}/sub/page.html?x=1"))
    );
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");
}

/// An expired certificate is served all the same (the clock may be wrong,
/// a renewal may be on its way), with a warning at start that names the
/// file and the date.
#[test]
fn an_expired_certificate_is_served_with_a_warning() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (cert_pem, key_pem) = (certs.path().join("old.pem"), certs.path().join("old.key"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let mut server = Coserve::serve(
        site.path(),
        &[
            "-q",
            "--tls-cert",
            cert_pem.to_str().unwrap(),
            "--tls-key",
            key_pem.to_str().unwrap(),
        ],
    );
    assert!(server.stdout_line().starts_with("Serving HTTPS on"));
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");
    let warning = stderr.lines().next().unwrap_or_default();
    assert!(
        warning.starts_with("coserve: WARN: certificate ")
            && warning.contains("old.pem: expired on Tue, 01 Jan 2002 00:00:00 GMT"),
        "{stderr:?}"
    );
}

/// The smallest stack a TLS server accepts is enough for its handshakes,
/// TLS 1.3 (X25519MLKEM768, X25519, P-256) and 1.2 (X25519, P-256), then requests
/// on the same connection; one byte less is refused at start.
#[test]
fn the_smallest_tls_stack_serves_handshakes() {
    use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let min = coserve::TlsConfig::MIN_STACK_SIZE.to_string();
    let (mut server, addr, ca) = serve_https(
        site.path(),
        certs.path(),
        &["--workers", "1", "--stack-size", &min],
    );
    for version in crate::tls::BOTH {
        for group in [X25519MLKEM768, X25519, SECP256R1] {
            // The hybrid is TLS 1.3's only.
            if version.version == rustls::ProtocolVersion::TLSv1_2
                && group.name() == X25519MLKEM768.name()
            {
                continue;
            }
            let mut provider = rustls::crypto::aws_lc_rs::default_provider();
            provider.kx_groups = vec![group];
            let config = crate::tls::client_config_with(&ca, &[version], provider);
            let mut tls = crate::tls::try_connect(addr, config, "localhost")
                .unwrap_or_else(|e| panic!("{version:?} {:?}: {e}", group.name()));
            for _ in 0..2 {
                write!(
                    tls,
                    "GET /sub/page.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
                )
                .unwrap();
                tls.flush().unwrap();
                let r = crate::tls::read_response(&mut tls, false);
                assert_eq!(r.status, 200, "{version:?} {:?}", group.name());
            }
        }
    }
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {stderr:?}"
    );
    assert!(!stderr.contains("overflow"), "{stderr}");

    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let below = (coserve::TlsConfig::MIN_STACK_SIZE - 8).to_string();
    let below = [
        "0",
        "-b",
        "127.0.0.1",
        "-d",
        site.path().to_str().unwrap(),
        "--stack-size",
        &below,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let (status, stderr, _) = run(below);
    assert!(!status.success());
    assert!(
        stderr.contains("TLS needs a coroutine stack of at least"),
        "{stderr:?}"
    );
}

/// Reads the `--redirect-http` startup line, checks the HTTPS port it
/// names, and returns the plain-HTTP address it announces.
fn redirect_addr(server: &Coserve, https: u16) -> SocketAddr {
    let line = server.stdout_line();
    let re =
        Regex::new(r"^Redirecting HTTP on 127\.0\.0\.1 port (\d+) to HTTPS port (\d+)$").unwrap();
    let caps = re.captures(&line).unwrap_or_else(|| panic!("{line:?}"));
    assert_eq!(caps[2].parse::<u16>().unwrap(), https, "{line:?}");
    let port: u16 = caps[1].parse().unwrap();
    assert_ne!(port, 0, "{line:?}");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A plain `GET /sub/page.html?x=1` to `plain`: the `Location` of its 308,
/// or why there was none.
fn redirected(plain: SocketAddr) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(plain).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    s.write_all(b"GET /sub/page.html?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let r = read_response(&mut s, false).ok_or("closed without a response")?;
    match (r.status, r.header("location")) {
        (308, Some(location)) => Ok(location.to_string()),
        (status, location) => Err(format!("{status} {location:?}")),
    }
}

/// `--redirect-http` with `--processes`: the supervisor binds the port and
/// says so once; every worker redirects on it, the HTTPS port serves, and
/// a SIGHUP's new workers (with renewed certificates) take both over with
/// not one redirect lost.
#[test]
fn redirect_http_works_with_processes_and_survives_a_reload() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let (mut server, addr, _) = serve_https(
        site.path(),
        certs.path(),
        &["--processes", "2", "--workers", "1", "--redirect-http", "0"],
    );
    let https = addr.port();
    let plain = redirect_addr(&server, https);
    assert_ne!(plain.port(), https);
    let expected = format!("https://localhost:{https}/sub/page.html?x=1");
    let pid = server.child.id();
    assert!(
        util::eventually(WAIT, || children(pid).len() == 2),
        "no two workers"
    );
    let before = children(pid);
    for _ in 0..10 {
        assert_eq!(redirected(plain).as_deref(), Ok(&*expected));
    }
    // The HTTPS port is the workers' too: plain HTTP there gets its 400.
    let mut s = util::connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut s, false).expect("a response").status,
        400
    );
    drop(s);

    // A client keeps asking the redirect port throughout a reload.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, ok, expected) = (stop.clone(), ok.clone(), expected.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < 3 * WAIT {
                match redirected(plain) {
                    Ok(location) if location == expected => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        failures.push(other);
                        0
                    }
                };
            }
            failures
        })
    };
    assert!(util::eventually(WAIT, || ok.load(Ordering::Relaxed) > 10));
    // New workers read the certificate files: a renewal shows they serve.
    let renewed = crate::tls::make_named(certs.path(), "", &["localhost"]);
    let tls_client = crate::tls::client_config(&renewed, crate::tls::BOTH);
    server.signal(libc::SIGHUP);
    let replaced = util::eventually(WAIT, || {
        let now = children(pid);
        now.len() == 2 && now.iter().all(|p| !before.contains(p))
    });
    let served_during = ok.load(Ordering::Relaxed);
    assert!(util::eventually(WAIT, || ok.load(Ordering::Relaxed) > served_during + 10));
    stop.store(true, Ordering::Relaxed);
    let failures = client.join().unwrap();
    assert!(
        replaced,
        "workers {before:?} still there: {:?}",
        children(pid)
    );
    assert!(
        failures.is_empty(),
        "redirects lost in a reload ({} answered): {failures:?}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(redirected(plain).as_deref(), Ok(&*expected));
    // Every new worker serves HTTPS with the renewed certificate.
    for _ in 0..10 {
        let mut tls = crate::tls::try_connect(addr, tls_client.clone(), "localhost")
            .expect("the renewed certificate");
        write!(
            tls,
            "GET /sub/page.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        tls.flush().unwrap();
        assert_eq!(crate::tls::read_response(&mut tls, false).status, 200);
    }

    let workers = children(pid);
    server.signal(libc::SIGTERM);
    let (status, stderr, stdout) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");
    assert!(stderr.contains("reload done"), "{stderr}");
    assert!(stdout.is_empty(), "two startup lines only: {stdout:?}");
    for worker in workers {
        assert!(
            !Path::new(&format!("/proc/{worker}")).exists(),
            "worker {worker} outlived the supervisor"
        );
    }
}

/// With `--processes`, a `--redirect-http` port in use is one error at
/// start that names it, before any worker starts; and the HTTPS port
/// itself (which SO_REUSEPORT would otherwise share) is refused.
#[test]
fn redirect_http_port_in_use_with_processes_is_one_error_at_start() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    crate::tls::make_named(certs.path(), "", &["localhost"]);
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let args = |https: &str, redirect: &str| {
        [
            https,
            "-b",
            "127.0.0.1",
            "-d",
            site.path().to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--processes",
            "2",
            "--redirect-http",
            redirect,
        ]
        .map(String::from)
    };
    let started = Instant::now();
    let (status, stderr, stdout) = run(args("0", &port));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!status.success(), "{status:?}");
    let err = stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "a one-line error: {stderr:?}");
    assert!(
        err.starts_with(&format!("coserve: --redirect-http {port}: "))
            && err.to_ascii_lowercase().contains("in use"),
        "{err:?}"
    );
    assert!(stdout.is_empty(), "{stdout:?}");
    drop(taken);

    // A free port, asked for twice: refused before it is bound.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let (status, stderr, stdout) = run(args(&free, &free));
    assert!(!status.success(), "{status:?}");
    assert_eq!(
        stderr.trim_end(),
        format!("coserve: --redirect-http {free}: the HTTPS port itself")
    );
    assert!(stdout.is_empty(), "{stdout:?}");
}

/// `--tls-dir` with `--tls-password-file`: a directory of NAME.crt and
/// NAME.key pairs, the keys encrypted, the password the file's first line;
/// a wrong password stops the program with one line naming the key.
#[test]
fn tls_dir_and_password_file_serve_https() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let ca = crate::tls::make_named(certs.path(), "", &["localhost"]);
    crate::tls::encrypt_key(certs.path(), "", "pass phrase");
    std::fs::rename(
        certs.path().join("cert.pem"),
        certs.path().join("localhost.crt"),
    )
    .unwrap();
    std::fs::rename(
        certs.path().join("key.pem"),
        certs.path().join("localhost.key"),
    )
    .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "pass phrase\r\nnot this line\n").unwrap();
    let (dir, password) = (certs.path().to_str().unwrap(), password.to_str().unwrap());
    let mut server = Coserve::serve(
        site.path(),
        &["-q", "--tls-dir", dir, "--tls-password-file", password],
    );
    let addr = server.announced_addr();
    let mut tls = crate::tls::try_connect(
        addr,
        crate::tls::client_config(&ca, crate::tls::BOTH),
        "localhost",
    )
    .unwrap();
    write!(
        tls,
        "GET /sub/page.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    assert_eq!(crate::tls::read_response(&mut tls, false).status, 200);
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");

    let wrong = secrets.path().join("wrong");
    std::fs::write(&wrong, "guess\n").unwrap();
    let (status, stderr, _) = run([
        "0",
        "-b",
        "127.0.0.1",
        "--tls-dir",
        dir,
        "--tls-password-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(!status.success());
    let err = stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "{stderr:?}");
    assert!(
        err.contains("localhost.key") && err.contains("wrong password"),
        "{err:?}"
    );
}

/// `--ktls` on a kernel without kTLS (this project's machines have none):
/// a warning at start that says why, and HTTPS served through rustls all
/// the same, files included. On a kernel with kTLS it says nothing and the
/// same requests are served by the kernel's TLS.
#[test]
fn ktls_falls_back_to_rustls_with_a_warning() {
    let site = make_site();
    let certs = tempfile::tempdir().unwrap();
    let (mut server, addr, ca) = serve_https(site.path(), certs.path(), &["--ktls"]);
    for version in crate::tls::BOTH {
        let config = crate::tls::client_config(&ca, &[version]);
        let mut tls = crate::tls::try_connect(addr, config, "localhost").unwrap();
        for _ in 0..2 {
            write!(tls, "GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            tls.flush().unwrap();
            let r = crate::tls::read_response(&mut tls, false);
            assert_eq!(r.status, 200);
            assert_eq!(r.body, std::fs::read(site.path().join("big.bin")).unwrap());
        }
    }
    server.signal(libc::SIGTERM);
    let (status, stderr, _) = server.finish();
    assert!(status.success(), "{status:?}; stderr: {stderr:?}");
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    let warned = stderr.contains("coserve: WARN: kTLS: not available (");
    if ulps.split_whitespace().any(|u| u == "tls") {
        assert!(!warned, "{stderr:?}");
    } else {
        assert!(warned, "{stderr:?}");
    }
}
