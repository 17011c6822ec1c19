//! EXPERIMENT (not part of the project): how fast a proxy on coserve can be
//! with a hand-written upstream path instead of ureq. GET/HEAD without a
//! request body only, plain HTTP/1.1, `Content-Length` responses only; a
//! pool of may sockets per process; the same forwarding fields as
//! examples/proxy.rs. Used to measure the ceiling, not to serve.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use coserve::{Config, Handler, Request, Response, Server, StatusCode};

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];
const REQUEST_OWN: [&str; 8] = [
    "host",
    "content-length",
    "expect",
    "accept-encoding",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

struct Lean {
    upstream: SocketAddr,
    authority: String,
    idle: Mutex<Vec<may::net::TcpStream>>,
}

struct Conn {
    stream: may::net::TcpStream,
    buf: Vec<u8>,
}

impl Lean {
    fn take(&self) -> std::io::Result<may::net::TcpStream> {
        if let Some(s) = self.idle.lock().unwrap().pop() {
            return Ok(s);
        }
        let s = may::net::TcpStream::connect(self.upstream)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(s)
    }

    fn call(&self, req: &Request) -> std::io::Result<Response> {
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(req.method().as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(req.target().as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(self.authority.as_bytes());
        for (name, value) in req.headers() {
            let lower = name.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&lower.as_str()) || REQUEST_OWN.contains(&lower.as_str()) {
                continue;
            }
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
        }
        let ip = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
        let host = req.header_str("host").unwrap_or("");
        write!(
            head,
            "\r\naccept-encoding: identity\r\nx-forwarded-for: {ip}\r\nx-forwarded-proto: http\r\nx-forwarded-host: {host}\r\nforwarded: for={ip};proto=http;host={host}\r\n\r\n"
        )?;
        let mut c = Conn {
            stream: self.take()?,
            buf: Vec::with_capacity(8192),
        };
        c.stream.write_all(&head)?;
        // The head.
        let (status, fields, body_start) = loop {
            let mut chunk = [0u8; 8192];
            let n = c.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            c.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = memchr::memmem::find(&c.buf, b"\r\n\r\n") {
                let text = std::str::from_utf8(&c.buf[..end]).map_err(std::io::Error::other)?;
                let mut lines = text.split("\r\n");
                let status: u16 = lines
                    .next()
                    .and_then(|l| l.get(9..12))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other("status"))?;
                let fields: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                break (status, fields, end + 4);
            }
        };
        let len: usize = fields
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("no length"))?;
        let len = if *req.method() == coserve::Method::Head { 0 } else { len };
        while c.buf.len() < body_start + len {
            let mut chunk = [0u8; 8192];
            let n = c.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            c.buf.extend_from_slice(&chunk[..n]);
        }
        let body = c.buf[body_start..body_start + len].to_vec();
        if c.buf.len() == body_start + len {
            // At most 64 idle, as nginx's `keepalive 64` and the example's pool.
            let mut idle = self.idle.lock().unwrap();
            if idle.len() < 64 {
                idle.push(c.stream);
            }
        }
        let mut out = Response::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY));
        for (name, value) in &fields {
            if HOP_BY_HOP.contains(&name.as_str()) || name == "content-length" {
                continue;
            }
            out = out.header(name.as_str(), value.as_str());
        }
        Ok(out.body(body))
    }
}

impl Handler for Lean {
    fn handle(&self, req: &Request) -> Response {
        self.call(req)
            .unwrap_or_else(|_| Response::error(StatusCode::BAD_GATEWAY))
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().unwrap();
    let upstream: SocketAddr = args[2].parse().unwrap();
    coserve::Runtime::new().workers(1).start()?;
    coserve::raise_open_files_limit()?;
    let server = Server::bind(("127.0.0.1", port), Config::new())?;
    println!("listening on http://{}/", server.local_addr());
    server.serve(Lean {
        upstream,
        authority: upstream.to_string(),
        idle: Mutex::new(Vec::new()),
    })
}
