//! A reverse proxy in plain blocking code: every request goes to one
//! upstream with the same method, path, query and body, and the upstream's
//! answer comes back to the client as it arrives.
//!
//! ```sh
//! cargo run --release --example proxy -- 8080 http://127.0.0.1:9000
//! cargo run --release --example proxy -- 0 http://127.0.0.1:9000   # a port the OS picks
//! COSERVE_WORKERS=1 cargo run --release --example proxy -- 8080 http://127.0.0.1:9000
//!
//! curl -i 'http://127.0.0.1:8080/some/path?x=1'
//! ```
//!
//! Each request runs on its own coroutine and calls the upstream through
//! one shared [`Client`], whose calls park only that coroutine. The worker
//! threads are one per core, or `COSERVE_WORKERS` of them.
//!
//! - **Requests** go out with the client's method, path and query. The
//!   body streams through as it arrives (`Handler::stream_body`, read with
//!   `Request::body_reader`): one with a `Content-Length` goes on with
//!   that length, a chunked one chunked. It is never held whole, so up to
//!   [`MAX_BODY`] is allowed (nginx's `client_max_body_size` is 1 MiB by
//!   default, since nginx buffers bodies); a larger one is a `413`.
//! - **Responses** keep the upstream's status and end-to-end fields (the
//!   reason phrase is coserve's, and field names come out lowercase, as
//!   the client's `http` types hold them). A body of a known length up to
//!   [`BUFFER_MAX`] is read whole and sent with that `Content-Length`, in
//!   one write with the head. Any other body is streamed: read through
//!   `impl Read` [`STREAM_PIECE`] at a time and sent on as each piece
//!   comes, so it is never held whole and a slow stream (server-sent
//!   events) is not held back. One with a length keeps it
//!   (`Body::sized_stream`); one without goes out chunked. A `HEAD`
//!   answer keeps the upstream's `Content-Length`.
//! - **Hop-by-hop fields** are removed both ways: `Connection` and every
//!   field it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization` and
//!   `Proxy-Authenticate`. Each side gets the framing and persistence of
//!   its own connection.
//! - **`Host`** is the upstream's authority, as nginx's default
//!   (`$proxy_host`): an upstream's virtual hosts and absolute links then
//!   work as they do when called directly. The client's `Host` goes on
//!   in `X-Forwarded-Host` and in `Forwarded`'s `host=`.
//! - **Forwarding fields**: the client's address is appended to
//!   `X-Forwarded-For` and to `Forwarded` (RFC 7239: `for=...;proto=http;
//!   host=...`, an IPv6 address quoted in brackets); `X-Forwarded-Proto`
//!   and `X-Forwarded-Host` are replaced, not trusted from the client.
//! - **Compression**: the client decodes gzip and br bodies (ureq does,
//!   with no switch to turn it off), so the proxy asks the upstream for
//!   `Accept-Encoding: identity` rather than decode: responses go out
//!   uncompressed.
//! - **Failures**: an upstream that refuses the connection, a name that
//!   does not resolve, or a broken response is a `502`; one that does not
//!   answer in time is a `504`. A client whose body fails (cut short, too
//!   slow, malformed) gets that body's status (`400`, `408`). Both are a short text body, and a line on
//!   stderr. A body that fails halfway is cut short (the client sees the
//!   connection close before the last chunk).
//! - **Upstream connections** are kept alive in the client's pool, up to
//!   [`MAX_IDLE`] idle ones (nginx's `keepalive`), each for 10 s. Time
//!   limits: [`CONNECT_TIMEOUT`], and [`IO_TIMEOUT`] for each read and
//!   write (nginx's `proxy_read_timeout` and `proxy_send_timeout`).
//!
//! Not done: WebSocket and other upgrades, `CONNECT`, rewriting
//! `Location`, caching, retries. Redirects are passed on, not followed.
//!
//! tests/proxy.rs runs this same handler in front of upstreams started in
//! the test, on both engines.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use coserve::client::http::{self, HeaderMap, HeaderName, HeaderValue, Uri};
use coserve::client::{self, Client, ClientBuilder};
use coserve::{
    Body, BodyError, BodyPolicy, Config, Handler, IntoResponse, Method, Request, Response, Server,
    StatusCode,
};

/// A response body of a known length up to this is read whole and sent
/// with its `Content-Length`.
pub const BUFFER_MAX: u64 = 64 * 1024;

/// How much of a streamed body is read, and sent, at a time.
pub const STREAM_PIECE: usize = 16 * 1024;

/// The largest request body passed on.
pub const MAX_BODY: u64 = 1 << 30;

/// Idle keep-alive connections kept to the upstream.
pub const MAX_IDLE: usize = 64;

/// The limit on connecting to the upstream (and on looking its name up).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The limit on each wait for the upstream to send or to take data.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Fields that belong to one connection, never forwarded either way
/// (RFC 9110 §7.6.1), besides those `Connection` names.
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

/// Request fields the proxy writes itself: the client sets the framing
/// and the upstream's `Host`, the server has answered any `Expect`, and
/// the forwarding fields are rebuilt.
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

/// The client the proxy uses: [`client_builder`]'s settings.
pub fn client() -> Client {
    client_builder().build()
}

/// The proxy's client settings: the timeouts and pool size above, every
/// status a response (never an error), no redirects followed, and no
/// `User-Agent` or `Accept` of its own added to what the client sent.
pub fn client_builder() -> ClientBuilder {
    Client::builder()
        .connect_timeout(Some(CONNECT_TIMEOUT))
        .read_timeout(Some(IO_TIMEOUT))
        .write_timeout(Some(IO_TIMEOUT))
        .max_idle_per_host(MAX_IDLE)
        .max_idle(MAX_IDLE)
        .ureq_config(|c| {
            c.max_redirects(0)
                .allow_non_standard_methods(true)
                .user_agent(client::ureq::config::AutoHeaderValue::None)
                .accept(client::ureq::config::AutoHeaderValue::None)
        })
}

/// The handler: forwards every request to one upstream.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// `scheme://authority`, without a trailing slash.
    upstream: String,
    client: Client,
}

impl Proxy {
    /// A proxy to `upstream`, `http://HOST:PORT` or `https://HOST:PORT`
    /// (nothing after the authority but an optional `/`), calling it with
    /// `client` (see [`client()`]).
    pub fn new(upstream: &str, client: Client) -> Result<Proxy, String> {
        let uri: Uri = upstream
            .parse()
            .map_err(|e| format!("{upstream:?} is not a URL: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        let Some(authority) = uri
            .authority()
            .filter(|_| matches!(scheme, "http" | "https"))
        else {
            return Err(format!(
                "{upstream:?}: want http://HOST:PORT or https://HOST:PORT"
            ));
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{upstream:?}: no path or query after the authority"
            ));
        }
        Ok(Proxy {
            upstream: format!("{scheme}://{authority}"),
            client,
        })
    }

    /// The request to send upstream; `None` for a target it cannot take
    /// (`*`, or not one that makes a URL).
    fn upstream_request(&self, req: &Request) -> Option<http::request::Parts> {
        // The path and query, also from an absolute-form target.
        let path_and_query = match (req.target().starts_with('/'), req.query()) {
            (true, _) => req.target().to_owned(),
            (false, None) => req.path().to_owned(),
            (false, Some(query)) => format!("{}?{query}", req.path()),
        };
        if !path_and_query.starts_with('/') {
            return None;
        }
        let method = http::Method::from_bytes(req.method().as_str().as_bytes()).ok()?;
        let (mut parts, ()) = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.upstream))
            .body(())
            .ok()?
            .into_parts();
        forward_request_fields(req, &mut parts.headers);
        Some(parts)
    }

    /// The client's response made from the upstream's.
    fn respond(&self, req: &Request, mut res: client::Response) -> Response {
        let Some(status) = StatusCode::from_u16(res.status().as_u16()) else {
            return self.failed(req, &format!("status {}", res.status()), false);
        };
        let mut out = Response::new(status);
        let named = connection_names(res.headers().get_all("connection"));
        for (name, value) in res.headers() {
            let name = name.as_str();
            if HOP_BY_HOP.contains(&name) || name == "content-length" || named.contains(name) {
                continue;
            }
            match std::str::from_utf8(value.as_bytes()) {
                Ok(value) => out = out.header(name, value),
                Err(_) => log::warn!(
                    "{}: upstream field {name} is not UTF-8: dropped",
                    req.target()
                ),
            }
        }
        if *req.method() == Method::Head || status.has_no_body() {
            let length = res
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            // Nothing to read; reading it to its end puts the connection
            // back in the pool.
            if let Err(e) = res.body_mut().read_to_vec() {
                return self.failed(req, &e, matches!(e, client::Error::Timeout(_)));
            }
            if status.has_no_body() {
                return out;
            }
            // A HEAD answer keeps the upstream's length, if it gave one.
            return out.body(match length {
                Some(len) => Body::sized_stream(len, |_| Ok(())),
                None => Body::stream(|_| Ok(())),
            });
        }
        let length = res.body().content_length();
        match length {
            Some(len) if len <= BUFFER_MAX => {
                match res.body_mut().with_config().limit(BUFFER_MAX).read_to_vec() {
                    Ok(bytes) => out.body(bytes),
                    Err(e) => self.failed(req, &e, matches!(e, client::Error::Timeout(_))),
                }
            }
            _ => {
                let body = res.into_body().into_reader();
                let target = req.target().to_owned();
                let write = move |w: &mut dyn Write| stream(body, w, &target);
                out.body(match length {
                    Some(len) => Body::sized_stream(len, write),
                    None => Body::stream(write),
                })
            }
        }
    }

    /// `502`, or `504` when the upstream ran out of time; logged.
    fn failed(&self, req: &Request, why: &dyn std::fmt::Display, timeout: bool) -> Response {
        let status = if timeout {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        log::warn!(
            "{} {} -> {}: {why}: {status}",
            req.method(),
            req.target(),
            self.upstream
        );
        Response::error(status)
    }
}

/// Whether the client sent a body, and its length if it said one: the
/// server has checked the framing already.
fn request_framing(req: &Request) -> Option<Option<u64>> {
    if req.header_has_token("transfer-encoding", "chunked") {
        return Some(None);
    }
    let n: u64 = req.header_str("content-length")?.parse().ok()?;
    (n > 0).then_some(Some(n))
}

impl Handler for Proxy {
    /// Bodies stream through, up to [`MAX_BODY`].
    fn body_policy(&self, _req: &Request) -> BodyPolicy {
        BodyPolicy::Stream(MAX_BODY)
    }

    fn handle(&self, req: &Request) -> Response {
        if *req.method() == Method::Connect {
            return Response::error(StatusCode::METHOD_NOT_ALLOWED);
        }
        let Some(parts) = self.upstream_request(req) else {
            return Response::error(StatusCode::BAD_REQUEST);
        };
        let sent = match request_framing(req) {
            // None, but for the methods that expect a body (an empty one
            // has `Content-Length: 0`).
            None if !matches!(req.method(), Method::Post | Method::Put | Method::Patch) => {
                self.client.run(http::Request::from_parts(parts, ()))
            }
            None => self.client.run(http::Request::from_parts(parts, &b""[..])),
            // Streamed as it arrives: with its length, or chunked.
            Some(length) => {
                let mut parts = parts;
                if let Some(n) = length {
                    parts.headers.insert(http::header::CONTENT_LENGTH, n.into());
                }
                let mut body = req.body_reader();
                let body = client::SendBody::from_reader(&mut body);
                self.client.run(http::Request::from_parts(parts, body))
            }
        };
        match sent {
            Ok(res) => self.respond(req, res),
            // The client's body failed, not the upstream: its status
            // (413, 400, 408).
            Err(client::Error::Io(e)) if e.get_ref().is_some_and(|e| e.is::<BodyError>()) => {
                coserve::Error::from(e).into_response()
            }
            Err(e) => self.failed(req, &e, matches!(e, client::Error::Timeout(_))),
        }
    }
}

/// Copies the client's end-to-end fields to `out` and adds the forwarding
/// fields.
fn forward_request_fields(req: &Request, out: &mut HeaderMap) {
    let named = connection_names(
        req.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .map(|(_, v)| v),
    );
    let (mut forwarded_for, mut forwarded) = (Vec::new(), Vec::new());
    for (name, value) in req.headers() {
        // Lowercase; a name the parser took is one `http` takes.
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        match name.as_str() {
            "x-forwarded-for" => append_to_list(&mut forwarded_for, value),
            "forwarded" => append_to_list(&mut forwarded, value),
            n if HOP_BY_HOP.contains(&n) || REQUEST_OWN.contains(&n) || named.contains(n) => {}
            _ => {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    out.append(name, value);
                }
            }
        }
    }
    let peer = req.peer_addr().map(|a| a.ip().to_canonical());
    let proto = if req.tls().is_some() { "https" } else { "http" };
    let host = req.header_str("host");
    out.insert("accept-encoding", HeaderValue::from_static("identity"));
    if let Some(ip) = peer {
        append_to_list(&mut forwarded_for, ip.to_string().as_bytes());
    }
    append_to_list(
        &mut forwarded,
        forwarded_element(peer, proto, host).as_bytes(),
    );
    let fields = [
        ("x-forwarded-for", forwarded_for),
        ("x-forwarded-proto", proto.as_bytes().to_vec()),
        ("x-forwarded-host", host.unwrap_or("").as_bytes().to_vec()),
        ("forwarded", forwarded),
    ];
    for (name, value) in fields {
        if let Ok(value) = HeaderValue::from_bytes(&value)
            && !value.is_empty()
        {
            out.insert(name, value);
        }
    }
}

/// The field names a `Connection` field lists (RFC 9110 §7.6.1),
/// lowercase.
fn connection_names(values: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Names {
    let mut names = Vec::new();
    for value in values {
        for name in value.as_ref().split(|&b| b == b',') {
            let name = name.trim_ascii();
            if !name.is_empty() {
                names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
            }
        }
    }
    Names(names)
}

/// Field names, lowercase.
struct Names(Vec<String>);

impl Names {
    fn contains(&self, lowercase: &str) -> bool {
        self.0.iter().any(|n| n == lowercase)
    }
}

/// Appends `item` to a comma-separated list.
fn append_to_list(list: &mut Vec<u8>, item: &[u8]) {
    if !list.is_empty() {
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(item);
}

/// This hop's `Forwarded` element (RFC 7239 §4): `for=` the client's
/// address (an IPv6 one quoted in brackets, `unknown` without one),
/// `proto=`, and `host=` the `Host` the client sent, quoted unless it is a
/// token.
pub fn forwarded_element(peer: Option<IpAddr>, proto: &str, host: Option<&str>) -> String {
    let mut element = String::from("for=");
    match peer {
        Some(IpAddr::V4(ip)) => write!(element, "{ip}").unwrap(),
        Some(IpAddr::V6(ip)) => write!(element, "\"[{ip}]\"").unwrap(),
        None => element.push_str("unknown"),
    }
    write!(element, ";proto={proto}").unwrap();
    if let Some(host) = host {
        element.push_str(";host=");
        let is_token = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if is_token {
            element.push_str(host);
        } else {
            element.push('"');
            for c in host.chars() {
                if c == '"' || c == '\\' {
                    element.push('\\');
                }
                element.push(c);
            }
            element.push('"');
        }
    }
    element
}

/// Sends the upstream's body on as it comes: each piece read is written
/// and flushed, so nothing waits for the next one. A failed read cuts the
/// response short.
fn stream(mut body: impl Read, w: &mut dyn Write, target: &str) -> io::Result<()> {
    let mut piece = vec![0u8; STREAM_PIECE];
    loop {
        let n = match body.read(&mut piece) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("{target}: the upstream's body ended early: {e}");
                return Err(e);
            }
        };
        w.write_all(&piece[..n])?;
        w.flush()?;
    }
}

/// Warnings (the upstream failures) on stderr.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "usage: proxy PORT UPSTREAM_URL   (e.g. proxy 8080 http://127.0.0.1:9000)\n{problem}"
    );
    std::process::exit(2);
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, upstream] = &args[..] else {
        usage("two arguments, please");
    };
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| usage(&format!("not a port: {port:?}")));
    // Before anything starts may: its scheduler takes its settings once.
    if let Ok(workers) = std::env::var("COSERVE_WORKERS") {
        let workers = workers
            .parse()
            .unwrap_or_else(|_| usage(&format!("COSERVE_WORKERS={workers:?} is not a number")));
        coserve::Runtime::new().workers(workers).start()?;
    }
    // Each request through the proxy holds two descriptors: raise the
    // soft limit to the hard one.
    if let Err(e) = coserve::raise_open_files_limit() {
        eprintln!("warning: cannot raise the open files limit: {e}");
    }
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let proxy = Proxy::new(upstream, client()).unwrap_or_else(|e| usage(&e));

    let server = Server::bind(("127.0.0.1", port), Config::new())?;
    // The real port, when the OS picked it.
    println!("listening on http://{}/", server.local_addr());
    io::stdout().flush()?;
    server.serve(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_elements_quote_what_is_not_a_token() {
        let v4 = Some(IpAddr::from([192, 0, 2, 60]));
        assert_eq!(
            forwarded_element(v4, "http", Some("example.com")),
            "for=192.0.2.60;proto=http;host=example.com"
        );
        let v6 = Some("2001:db8:cafe::17".parse().unwrap());
        assert_eq!(
            forwarded_element(v6, "https", Some("example.com:8443")),
            "for=\"[2001:db8:cafe::17]\";proto=https;host=\"example.com:8443\""
        );
        assert_eq!(
            forwarded_element(None, "http", None),
            "for=unknown;proto=http"
        );
        assert_eq!(
            forwarded_element(v4, "http", Some("a\"b\\c")),
            "for=192.0.2.60;proto=http;host=\"a\\\"b\\\\c\""
        );
    }

    #[test]
    fn upstreams_are_a_scheme_and_an_authority() {
        for good in [
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/",
            "https://example.com",
        ] {
            assert!(Proxy::new(good, Client::new()).is_ok(), "{good}");
        }
        let bad = [
            "127.0.0.1:9000",
            "ftp://h/",
            "http://h/api",
            "http://h/?x",
            "/path",
        ];
        for bad in bad {
            assert!(Proxy::new(bad, Client::new()).is_err(), "{bad}");
        }
    }
}
