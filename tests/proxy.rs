//! The reverse proxy of examples/proxy.rs, compiled in here and run in
//! front of upstreams started in each test, on both engines: a coserve
//! server that echoes what it saw, and a raw one on std's sockets that
//! answers as told and counts its connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coserve::client::Client;
use coserve::{Handler, Method, Request, Response, StatusCode};

use crate::util::{IO_TIMEOUT, Resp, TestServer, big_pattern, start, test_config};

#[path = "../examples/proxy.rs"]
#[allow(dead_code)]
pub mod example;

/// 8 MiB: many times every buffer on the way.
const BIG: usize = 8 * 1024 * 1024;

/// A coserve upstream. `/big` streams an 8 MiB pattern (chunked),
/// `/big-sized` sends it with its length, `/status/N` answers N with a
/// body of its own; anything else is echoed: the request line, the fields
/// as they came, an empty line, and the body.
fn echo_upstream() -> TestServer {
    start(test_config(), |req: &Request| {
        let path = req.path();
        if path == "/big" {
            return Response::new(StatusCode::OK).body(coserve::Body::stream(|w| {
                for piece in big_pattern(BIG).chunks(100_000) {
                    w.write_all(piece)?;
                    w.flush()?;
                }
                Ok(())
            }));
        }
        if path == "/big-sized" {
            return Response::bytes("application/octet-stream", big_pattern(BIG));
        }
        if let Some(code) = path.strip_prefix("/status/") {
            let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
            return Response::new(status).body(format!("upstream says {code}"));
        }
        let mut echo = format!("{} {}\n", req.method(), req.target()).into_bytes();
        for (name, value) in req.headers() {
            echo.extend_from_slice(format!("{name}: ").as_bytes());
            echo.extend_from_slice(value);
            echo.push(b'\n');
        }
        echo.push(b'\n');
        echo.extend_from_slice(req.body());
        Response::bytes("application/octet-stream", echo).header("X-Echo", "1")
    })
}

/// What the echo upstream saw.
#[derive(Debug)]
struct Seen {
    line: String,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn of(resp: &Resp) -> Seen {
        assert_eq!(resp.header("x-echo"), Some("1"), "not an echo: {resp:?}");
        let end = resp.body.windows(2).position(|w| w == b"\n\n").unwrap();
        let head = std::str::from_utf8(&resp.body[..end]).unwrap();
        let mut lines = head.lines();
        let line = lines.next().unwrap().to_string();
        let fields = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        Seen {
            line,
            fields,
            body: resp.body[end + 2..].to_vec(),
        }
    }

    /// Every value of a field, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of a field.
    fn field(&self, name: &str) -> Option<&str> {
        match self.all(name)[..] {
            [] => None,
            [one] => Some(one),
            ref many => panic!("{name} came {} times: {many:?}", many.len()),
        }
    }
}

/// The proxy in front of `upstream`, calling it with `client`.
fn proxy_to(upstream: SocketAddr, client: Client) -> TestServer {
    let proxy = example::Proxy::new(&format!("http://{upstream}"), client).unwrap();
    start(test_config(), proxy)
}

/// Sends `request` (raw bytes) to `server` and reads one response.
fn send(server: &TestServer, request: &[u8]) -> Resp {
    server.one(request)
}

/// `METHOD target` with a body, asking to close.
fn with_body(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/x-test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// An upstream on std's sockets, a thread per connection: it reads each
/// request, hands its head to the test, and writes what `answer` gives,
/// or, for `None`, never answers and waits for the proxy to close.
struct RawUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
}

type Answer = fn(&Request) -> Option<Vec<u8>>;

impl RawUpstream {
    fn start(answer: Answer) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, heads) = mpsc::channel();
        let (count, stopped) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                std::thread::spawn(move || serve_raw(conn, answer, tx));
            }
        });
        RawUpstream {
            addr,
            accepted,
            heads,
            stop,
        }
    }

    /// The next request head the upstream read.
    fn next_head(&self) -> String {
        self.heads
            .recv_timeout(IO_TIMEOUT)
            .expect("a request at the upstream")
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection of a [`RawUpstream`]: requests until the proxy closes
/// (or 10 s of silence).
fn serve_raw(mut conn: TcpStream, answer: Answer, heads: mpsc::Sender<String>) {
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
        };
        let req = Request::parse(&buf[..end]).expect("a request head from the proxy");
        let len: usize = req
            .header_str("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < end + len {
            match conn.read(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
        }
        let _ = heads.send(String::from_utf8_lossy(&buf[..end]).into_owned());
        buf.drain(..end + len);
        match answer(&req) {
            Some(bytes) => {
                if conn.write_all(&bytes).is_err() {
                    return;
                }
            }
            // Waits for the close (a read timeout ends it too).
            None => while matches!(conn.read(&mut piece), Ok(1..)) {},
        }
    }
}

/// A field of a raw request head, its name compared without case.
fn head_field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// `ok` with its length, kept alive; no body for `HEAD`.
fn answer_ok(req: &Request) -> Option<Vec<u8>> {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n";
    Some(match req.method() {
        Method::Head => head.into(),
        _ => format!("{head}ok").into_bytes(),
    })
}

/// A response with hop-by-hop fields of its own: `Connection` names
/// `X-Up`, which must go no further; `X-Kept` is end-to-end.
fn answer_with_hop_fields(_: &Request) -> Option<Vec<u8>> {
    Some(
        b"HTTP/1.1 200 OK\r\nConnection: x-up\r\nX-Up: 1\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Authenticate: Basic realm=\"up\"\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
            .to_vec(),
    )
}

fn never_answer(_: &Request) -> Option<Vec<u8>> {
    None
}

/// An upstream that streams what it is sent: `LEN DIGEST (FRAMING)` of
/// the body, up to 64 MiB, with how it came (`sized` or `chunked`).
fn counting_upstream() -> TestServer {
    let count = |req: &Request| -> std::io::Result<String> {
        let mut body = req.body_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let (mut len, mut hash) = (0usize, 0xcbf29ce484222325u64);
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            len += n;
            hash = fnv(hash, &buf[..n]);
        }
        let framing = if req.header("content-length").is_some() {
            "sized"
        } else {
            "chunked"
        };
        Ok(format!("{len} {hash:x} ({framing})"))
    };
    start(test_config(), count.stream_body(64 << 20))
}

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

crate::engine_tests! {
    /// GET, POST and PUT reach the upstream with their method, path,
    /// query and body; `Host` is the upstream's, and the client's goes in
    /// `X-Forwarded-Host`.
    #[test]
    fn requests_go_through_as_sent() {
        let up = echo_upstream();
        let proxy = proxy_to(up.addr, example::client());

        let r = send(&proxy, b"GET /a/b%20c?x=1&y=%C3%A9 HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAccept: text/plain\r\n\r\n");
        assert_eq!(r.status, 200, "{r:?}");
        let seen = Seen::of(&r);
        assert_eq!(seen.line, "GET /a/b%20c?x=1&y=%C3%A9");
        assert_eq!(seen.field("host"), Some(up.addr.to_string().as_str()));
        assert_eq!(seen.field("x-forwarded-host"), Some("test"));
        assert_eq!(seen.field("accept"), Some("text/plain"));
        // Nothing of the client library's own.
        assert_eq!(seen.field("user-agent"), None, "{seen:?}");
        assert_eq!(seen.field("content-length"), None, "{seen:?}");
        assert!(seen.body.is_empty());
        // A small body keeps its length.
        assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));

        let r = send(&proxy, &with_body("POST", "/submit?draft=no", b"name=ann&age=7"));
        let seen = Seen::of(&r);
        assert_eq!(seen.line, "POST /submit?draft=no");
        assert_eq!(seen.field("content-type"), Some("application/x-test"));
        assert_eq!(seen.field("content-length"), Some("14"));
        assert_eq!(seen.body, b"name=ann&age=7");

        // 200 KiB of every byte value: the echo comes back longer than
        // what is buffered, so streamed, with the upstream's length.
        let body = big_pattern(200 * 1024);
        let r = send(&proxy, &with_body("PUT", "/files/x.bin", &body));
        assert_eq!(r.header("transfer-encoding"), None, "{:?}", r.headers);
        assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
        let seen = Seen::of(&r);
        assert_eq!(seen.line, "PUT /files/x.bin");
        assert!(seen.body == body, "{} bytes came back", seen.body.len());

        // An empty POST still says so.
        let seen = Seen::of(&send(&proxy, &with_body("POST", "/empty", b"")));
        assert_eq!(seen.field("content-length"), Some("0"));

        // HEAD: the head only, with the upstream's length, and the
        // upstream connection stays usable.
        let direct = up.one(b"HEAD /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let r = proxy.one(b"HEAD /x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-echo"), Some("1"));
        assert!(r.body.is_empty());
        assert!(direct.header("content-length").is_some(), "{direct:?}");
        assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
        // The echo of HEAD through the proxy has more fields than the
        // direct one: only check that a length came through.
        let length: usize = r.header("content-length").expect("the upstream's length").parse().unwrap();
        assert!(length > 0);
        assert_eq!(Seen::of(&proxy.get("/after-head")).line, "GET /after-head");
    }

    /// Request bodies stream through, larger than the server's 1 MiB
    /// `max_body`: with their length, or chunked as they came. One over
    /// the proxy's maximum is a 413 that never reaches the upstream.
    #[test]
    fn request_bodies_stream_through() {
        let up = counting_upstream();
        let proxy = proxy_to(up.addr, example::client());
        let body = big_pattern(3 << 20);
        let digest = fnv(0xcbf29ce484222325, &body);

        let r = send(&proxy, &with_body("PUT", "/sized", &body));
        assert_eq!((r.status, r.text()), (200, format!("{} {digest:x} (sized)", body.len())));

        let mut chunked = b"POST /chunked HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(100_000) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let r = send(&proxy, &chunked);
        assert_eq!((r.status, r.text()), (200, format!("{} {digest:x} (chunked)", body.len())));

        let too_big = format!(
            "PUT /x HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            example::MAX_BODY + 1
        );
        assert_eq!(send(&proxy, too_big.as_bytes()).status, 413);

        // A body cut short is the client's 400, not a 502.
        let mut s = proxy.connect();
        s.write_all(b"PUT /x HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nshort").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let r = crate::util::read_response(&mut s, false).expect("a response");
        assert_eq!(r.status, 400, "{r:?}");
    }

    /// Hop-by-hop fields stop at the proxy, both ways: those the client's
    /// `Connection` names, `Keep-Alive`, `TE`, `Upgrade` and the proxy
    /// credentials on the way in; the upstream's `Connection` and what it
    /// names, `Keep-Alive` and `Proxy-Authenticate` on the way out.
    #[test]
    fn hop_by_hop_fields_go_no_further() {
        let up = RawUpstream::start(answer_with_hop_fields);
        let proxy = proxy_to(up.addr, example::client());
        let r = send(
            &proxy,
            b"GET /hop HTTP/1.1\r\nHost: test\r\nConnection: x-custom, close\r\nX-Custom: 1\r\n\
              Keep-Alive: 300\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n\
              Proxy-Authorization: Basic YTpi\r\nX-End-To-End: 1\r\n\r\n",
        );
        let head = up.next_head();
        for gone in ["x-custom", "connection", "keep-alive", "te", "upgrade", "proxy-connection", "proxy-authorization"] {
            assert_eq!(head_field(&head, gone), None, "{gone} reached the upstream:\n{head}");
        }
        assert_eq!(head_field(&head, "x-end-to-end"), Some("1"), "{head}");

        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "ok");
        assert_eq!(r.header("x-kept"), Some("yes"), "{:?}", r.headers);
        for gone in ["x-up", "keep-alive", "proxy-authenticate"] {
            assert_eq!(r.header(gone), None, "{gone} reached the client: {:?}", r.headers);
        }
        // The proxy's own Connection field, for its own connection.
        assert_eq!(r.header("connection"), Some("close"));
    }

    /// The client's address is appended to `X-Forwarded-For` and to
    /// `Forwarded`; `X-Forwarded-Proto` and `X-Forwarded-Host` are the
    /// proxy's, whatever the client claimed.
    #[test]
    fn forwarding_fields_say_who_asked() {
        let up = echo_upstream();
        let proxy = proxy_to(up.addr, example::client());
        let seen = Seen::of(&send(
            &proxy,
            b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\nX-Forwarded-For: 1.2.3.4\r\n\
              X-Forwarded-Proto: https\r\nX-Forwarded-Host: elsewhere\r\nForwarded: for=1.2.3.4\r\n\r\n",
        ));
        assert_eq!(seen.field("x-forwarded-for"), Some("1.2.3.4, 127.0.0.1"));
        assert_eq!(seen.field("x-forwarded-proto"), Some("http"));
        assert_eq!(seen.field("x-forwarded-host"), Some("test"));
        assert_eq!(
            seen.field("forwarded"),
            Some("for=1.2.3.4, for=127.0.0.1;proto=http;host=test")
        );
        // The proxy asks for what it can pass on unchanged.
        assert_eq!(seen.field("accept-encoding"), Some("identity"));

        // With none before, this hop's alone.
        let seen = Seen::of(&proxy.get("/"));
        assert_eq!(seen.field("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.field("forwarded"), Some("for=127.0.0.1;proto=http;host=test"));
    }

    /// 8 MiB comes through whole and streamed: chunked when the upstream
    /// chunked it, with its length when it gave one.
    #[test]
    fn a_large_body_streams_through() {
        let up = echo_upstream();
        let proxy = proxy_to(up.addr, example::client());
        for (path, length) in [("/big", None), ("/big-sized", Some(BIG.to_string()))] {
            let r = proxy.get(path);
            assert_eq!(r.status, 200, "{path}");
            let chunked = length.is_none().then_some("chunked");
            assert_eq!(r.header("transfer-encoding"), chunked, "{path}: {:?}", r.headers);
            assert_eq!(r.header("content-length"), length.as_deref(), "{path}");
            assert!(r.body == big_pattern(BIG), "{path}: {} bytes came", r.body.len());
        }
    }

    /// The upstream's error statuses and bodies are passed on as they are.
    #[test]
    fn upstream_statuses_pass_through() {
        let up = echo_upstream();
        let proxy = proxy_to(up.addr, example::client());
        for code in [404, 500, 503] {
            let r = proxy.get(&format!("/status/{code}"));
            assert_eq!(r.status, code);
            assert_eq!(r.text(), format!("upstream says {code}"));
        }
        let r = proxy.get("/status/204");
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }

    /// Nothing listens upstream: `502`, at once.
    #[test]
    fn a_dead_upstream_is_a_502() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let proxy = proxy_to(dead, example::client());
        let started = Instant::now();
        let r = proxy.get("/");
        assert_eq!(r.status, 502, "{r:?}");
        assert_eq!(r.text(), "502 Bad Gateway\n");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    /// An upstream that takes the request and never answers: `504` when
    /// the read timeout (300 ms here) is up.
    #[test]
    fn a_silent_upstream_is_a_504() {
        let up = RawUpstream::start(never_answer);
        let client = example::client_builder()
            .read_timeout(Some(Duration::from_millis(300)))
            .build();
        let proxy = proxy_to(up.addr, client);
        let started = Instant::now();
        let r = proxy.get("/slow");
        let took = started.elapsed();
        up.next_head();
        assert_eq!(r.status, 504, "{r:?}");
        assert_eq!(r.text(), "504 Gateway Timeout\n");
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "{took:?}");
    }

    /// Requests through the proxy, HEAD among them, share one upstream
    /// connection.
    #[test]
    fn upstream_connections_are_kept_alive() {
        let up = RawUpstream::start(answer_ok);
        let proxy = proxy_to(up.addr, example::client());
        for _ in 0..3 {
            let r = proxy.get("/one");
            assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        }
        let r = proxy.one(b"HEAD /two HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200);
        let r = send(&proxy, &with_body("POST", "/three", b"abc"));
        assert_eq!(r.text(), "ok");
        // And over one client connection, kept alive too.
        let mut c = proxy.connect();
        for _ in 0..3 {
            c.write_all(b"GET /four HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
            let r = crate::util::read_response(&mut c, false).unwrap();
            assert_eq!(r.text(), "ok");
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    }
}
