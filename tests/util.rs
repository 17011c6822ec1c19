//! Shared test helpers: a server on an ephemeral port, a temporary site,
//! and raw-socket request helpers. Responses are read and `/proc` is read
//! by `coserve-http1` (tools/http1), the client the load tools use too.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use coserve::{
    CacheOptions, CacheStats, Config, EngineKind, FilesOptions, Handler, Server, ServerHandle,
    StaticFiles,
};
use coserve_http1::procfs::{self, Process};
use coserve_http1::{Connection, ErrorKind, Framing};

/// A parsed response: `status`, `headers`, `body`, `header(name)`, `text()`.
pub use coserve_http1::Response as Resp;

/// How long any single socket read in a test may block before the test fails
/// (a safety net against hangs, not a synchronisation device).
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server; shut down (gracefully) when dropped.
pub struct TestServer {
    pub handle: ServerHandle,
    pub addr: SocketAddr,
    /// Keeps a temporary site alive for the server's lifetime.
    pub site: Option<tempfile::TempDir>,
    /// The static files served, when the handler is (or holds) them.
    pub files: Option<StaticFiles>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl TestServer {
    /// The root directory being served, when it is a temporary site.
    pub fn root(&self) -> &Path {
        self.site.as_ref().expect("temporary site").path()
    }

    /// The file cache's counters: `None` with the cache off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.files.as_ref().expect("a file server").cache_stats()
    }

    /// Connects with a read/write timeout set.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends raw bytes on a fresh connection and reads until the server
    /// closes it.
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_to_close(&mut s)
    }

    /// Sends raw bytes and reads exactly one response (by its framing).
    pub fn one(&self, request: &[u8]) -> Resp {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_response(&mut s, request.starts_with(b"HEAD ")).expect("a response")
    }

    /// `GET path` over HTTP/1.1 with `Connection: close`.
    pub fn get(&self, path: &str) -> Resp {
        self.one(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    coserve_http1::connect(addr, IO_TIMEOUT).unwrap()
}

thread_local! {
    /// The engine the current test runs under; set by `engine_tests!`.
    static ENGINE: std::cell::Cell<EngineKind> = const { std::cell::Cell::new(EngineKind::Coroutine) };
}

/// Makes every server this test thread starts use `engine`.
pub fn set_engine(engine: EngineKind) {
    ENGINE.with(|e| e.set(engine));
}

/// The engine the current test runs under.
pub fn engine() -> EngineKind {
    ENGINE.with(|e| e.get())
}

/// Instantiates each test once per engine, as ripgrep does per regex
/// engine: `engine_tests! { #[test] fn name() { ... } ... }` defines
/// `coroutine::name` and `thread::name`. Helpers stay outside the macro.
#[macro_export]
macro_rules! engine_tests {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        mod coroutine {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                fn $name() {
                    $crate::util::set_engine(coserve::EngineKind::Coroutine);
                    $body
                }
            )*
        }
        mod thread {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                fn $name() {
                    $crate::util::set_engine(coserve::EngineKind::Thread);
                    $body
                }
            )*
        }
    };
}

/// Whether this run tests with the file cache off: `COSERVE_TEST_CACHE=off`
/// (`.ci/run` runs the suite both ways).
pub fn cache_off() -> bool {
    std::env::var("COSERVE_TEST_CACHE").is_ok_and(|v| v == "off")
}

/// The file cache tests run with: on, and caching even a file written a
/// moment ago, so that the suite's freshly made sites are served from it
/// (the default waits for a file to settle). Off with
/// `COSERVE_TEST_CACHE=off`.
pub fn test_cache() -> Option<CacheOptions> {
    (!cache_off()).then(|| CacheOptions::new().settle(Duration::ZERO))
}

/// Short-grace defaults for tests, on the current test's engine.
pub fn test_config() -> Config {
    Config::new()
        .shutdown_grace(Duration::from_secs(5))
        .engine(engine())
}

/// The default file options with the test cache setting.
pub fn test_files() -> FilesOptions {
    FilesOptions::new().cache(test_cache())
}

/// Starts a server for `config` on 127.0.0.1:0, answering with `handler`.
pub fn start(config: Config, handler: impl Handler) -> TestServer {
    let server = Server::bind("127.0.0.1:0", config).expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let handle = server.spawn(handler).expect("spawn");
    TestServer {
        handle,
        addr,
        site: None,
        files: None,
    }
}

/// Starts a server of the files under `root`.
pub fn start_files(root: impl AsRef<Path>, config: Config, files: FilesOptions) -> TestServer {
    let files = StaticFiles::new(root, files).expect("a root directory");
    let mut server = start(config, files.clone());
    server.files = Some(files);
    server
}

/// Starts a server on a fresh temporary copy of the standard site (see
/// [`make_site`]), with the test defaults adjusted by `configure`.
pub fn start_site(
    configure: impl FnOnce(Config, FilesOptions) -> (Config, FilesOptions),
) -> TestServer {
    let site = make_site();
    let (config, files) = configure(test_config(), test_files());
    let mut server = start_files(site.path(), config, files);
    server.site = Some(site);
    server
}

/// [`start_site`] with the test defaults.
pub fn start_default_site() -> TestServer {
    start_site(|c, f| (c, f))
}

/// A temporary site:
/// - `index.html`, `style.css`, `app.js`, `data.json`, `logo.png`,
///   `noext`, `file.unknownext`
/// - `404.html`
/// - `sub/index.html`, `sub/page.html`, `empty/` (no index)
/// - `big.bin`: 1 MiB of a known pattern (byte i = i % 251)
/// - `.hidden`, `.well-known/security.txt`
/// - `ünï cödé.txt`, `with space.txt`
pub fn make_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let w = |name: &str, body: &[u8]| {
        let path = p.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    };
    w(
        "index.html",
        b"<!doctype html><title>home</title>home page\n",
    );
    w(
        "404.html",
        b"<!doctype html><title>404</title>custom not found\n",
    );
    w("style.css", b"body { color: black; }\n");
    w("app.js", b"console.log('hi');\n");
    w("data.json", b"{\"a\": 1}\n");
    w("logo.png", b"\x89PNG\r\n\x1a\nnot really");
    w("noext", b"no extension\n");
    w("file.unknownext", b"unknown\n");
    w("sub/index.html", b"sub index\n");
    w("sub/page.html", b"sub page\n");
    std::fs::create_dir_all(p.join("empty")).unwrap();
    w(".hidden", b"secret\n");
    w(
        ".well-known/security.txt",
        b"Contact: mailto:security@example.com\n",
    );
    w("\u{fc}n\u{ef} c\u{f6}d\u{e9}.txt", b"unicode name\n");
    w("with space.txt", b"spaced\n");
    w("big.bin", &big_pattern(1024 * 1024));
    dir
}

pub fn big_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Reads until EOF (or a reset, which ends the stream too).
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    coserve_http1::read_to_close(s, &mut out).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Reads one response from a stream: head, then a body framed by
/// Content-Length, or chunked (a compressed stream) (none for HEAD, 1xx,
/// 204, 304), never reading past it. Returns None on a clean EOF before any
/// byte.
pub fn read_response(s: &mut TcpStream, head_request: bool) -> Option<Resp> {
    let mut c = Connection::exact(s);
    let mut resp = match c.read_head() {
        Err(e) if e.kind() == ErrorKind::Closed => return None,
        r => r.unwrap_or_else(|e| panic!("{e}")),
    };
    let status = resp.status;
    let no_body = head_request || status < 200 || status == 204 || status == 304;
    if !no_body {
        let framing = if resp
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            Framing::Chunked
        } else {
            let len: u64 = resp
                .header("content-length")
                .expect("Content-Length (or chunked) on every response")
                .parse()
                .unwrap();
            Framing::Length(len)
        };
        c.read_body(framing, &mut resp.body)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    Some(resp)
}

/// Reads one response head, byte by byte, without reading past it.
/// `Ok(None)` is a clean EOF before its first byte; an error says what went
/// wrong (EOF or a failed read inside the head, or a malformed head), so
/// that a table test can list every failure instead of stopping at the
/// first.
pub fn try_read_head(s: &mut TcpStream) -> Result<Option<Resp>, String> {
    match coserve_http1::read_head(s) {
        Ok(resp) => Ok(Some(resp)),
        Err(e) if e.kind() == ErrorKind::Closed => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Splits a byte stream of several responses (to requests that are not
/// HEAD), each by its framing.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (resp, len) =
            coserve_http1::parse_response(bytes, false).unwrap_or_else(|e| panic!("{e}"));
        bytes = &bytes[len..];
        out.push(resp);
    }
    out
}

/// Reads one response head, byte by byte, without reading past it.
pub fn read_head_only(s: &mut TcpStream) -> Resp {
    read_response(s, true).expect("a response head, not EOF")
}

/// Reads until EOF, giving up (with an error) if the server keeps the
/// connection open for `within` (a safety net, not a synchronisation
/// device). With `show_bytes`, that error also shows the bytes read.
pub fn read_until_closed(
    s: &mut TcpStream,
    within: Duration,
    show_bytes: bool,
) -> Result<Vec<u8>, String> {
    let deadline = std::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
            return Err(if show_bytes {
                format!(
                    "connection still open after {within:?} ({} bytes read: {:?})",
                    out.len(),
                    String::from_utf8_lossy(&out)
                )
            } else {
                format!(
                    "connection still open after {within:?} ({} bytes read)",
                    out.len()
                )
            });
        };
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("read failed after {} bytes: {e}", out.len())),
        }
    }
}

/// The text of `method path` over HTTP/1.1 with `Connection: close` and
/// extra header fields.
pub fn request_text(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// `method path` with extra header fields, on a fresh connection that the
/// request asks to close; reads one response by its framing.
pub fn request(server: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    server.one(request_text(method, path, headers).as_bytes())
}

/// Splits everything a server sent into the response head (with an empty
/// body) and every byte after it.
pub fn split_head(bytes: &[u8]) -> (Resp, Vec<u8>) {
    let (head, end) = try_parse_head(bytes).unwrap_or_else(|e| panic!("{e}"));
    (head, bytes[end..].to_vec())
}

/// Parses the response head (status line and fields, up to and including
/// the empty line) at the start of `bytes`. Returns it, with an empty body,
/// and where it ends; or what is missing or malformed, so that a table
/// test can list every failure instead of stopping at the first.
pub fn try_parse_head(bytes: &[u8]) -> Result<(Resp, usize), String> {
    coserve_http1::parse_head(bytes)
        .map(|(head, end)| (head.to_response(), end))
        .map_err(|e| e.to_string())
}

/// Polls `cond` until it holds or `within` has passed; returns whether it
/// held.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::yield_now();
    }
    cond()
}

/// Like [`request`], but reads everything until the server closes and
/// returns the head and every byte after it, so that a body that should
/// not be there (or a Content-Length that disagrees with what was sent)
/// shows.
pub fn request_all(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Resp, Vec<u8>) {
    split_head(&server.raw(request_text(method, path, headers).as_bytes()))
}

/// A size field of `/proc/PROCESS/status` (`VmRSS`, `VmHWM`, `VmSize`, ...),
/// in KiB.
pub fn proc_status_kib(process: Process, field: &str) -> u64 {
    let status = procfs::status(process).unwrap();
    status
        .kib(field)
        .unwrap_or_else(|| panic!("no {field} in /proc/{process}/status: {:?}", status.text()))
}

/// `n` clients at once, each on a thread of its own (with a small stack,
/// so that thousands fit): each connects to `addr`, sends `GET /` asking
/// to close, and gives back the response once the server has closed.
pub fn get_root_at_once(addr: SocketAddr, n: usize) -> Vec<std::thread::JoinHandle<Resp>> {
    (0..n)
        .map(|_| {
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut s = connect(addr);
                    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    let r = read_response(&mut s, false).unwrap();
                    let _ = read_to_close(&mut s);
                    r
                })
                .unwrap()
        })
        .collect()
}
