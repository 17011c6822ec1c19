//! Outbound HTTP from handlers: call another service in blocking style,
//! parking only the calling coroutine.
//!
//! [`Client`] is [ureq](https://docs.rs/ureq) 3 (its HTTP/1.1, redirects,
//! connection pool, body decoding and TLS wrapping) over a transport of
//! coserve's: may's sockets, whose connects, reads and writes park the
//! coroutine instead of blocking the worker thread, with DNS lookups on the
//! [`blocking()`](crate::blocking) pool. On a plain thread (the thread
//! engine, `main`) the same calls block that thread, as a socket would.
//!
//! ```
//! use coserve::client::Client;
//! use coserve::{Config, Error, Response, Router, Server, StatusCode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let weather = Server::bind("127.0.0.1:0", Config::new())?;
//! # let forecast = format!("http://{}/forecast?city=oslo", weather.local_addr());
//! # let weather = weather.spawn(Router::new().get("/forecast", |_| "sunny\n"))?;
//! // Made once; clones share its pool of keep-alive connections.
//! let upstream = Client::new();
//! let app = Router::new().get("/weather", move |_| -> Result<Response, Error> {
//!     let bad_gateway = |e| Error::with_cause(StatusCode::BAD_GATEWAY, e);
//!     let mut answer = upstream.get(&forecast).call().map_err(bad_gateway)?;
//!     let text = answer.body_mut().read_to_string().map_err(bad_gateway)?;
//!     Ok(Response::text(text))
//! });
//! # let server = Server::bind("127.0.0.1:0", Config::new())?;
//! # let addr = server.local_addr();
//! # let handle = server.spawn(app)?;
//! # use std::io::{Read, Write};
//! # let mut c = std::net::TcpStream::connect(addr)?;
//! # c.write_all(b"GET /weather HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! # let mut out = String::new();
//! # c.read_to_string(&mut out)?;
//! # assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nsunny\n"), "{out}");
//! # handle.shutdown();
//! # weather.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! Requests and responses are ureq's own types, re-exported here
//! ([`RequestBuilder`], [`Response`], [`Body`], [`Error`]); ureq itself is
//! [`client::ureq`](ureq). Only a [`Client`] installs the may transport:
//! `ureq::get(..)` or an `ureq::Agent` made by hand use std's sockets and
//! block the worker thread.
//!
//! `docs/client.md` says more: timeouts, pooling, TLS roots, and what the
//! client does not do.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ureq::config::ConfigBuilder;
use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, RustlsConnector, Transport,
};

pub use ureq;
pub use ureq::typestate::{WithBody, WithoutBody};
pub use ureq::{AsSendBody, Body, BodyReader, Error, RequestBuilder, SendBody, Timeout, http};

/// What a call answers: the status, the headers, and a [`Body`] that
/// streams from the connection (`body_mut().as_reader()`, or
/// `into_body().into_reader()`, both `impl Read`; `read_to_string` and
/// `read_to_vec` stop at 10 MB unless `with_config().limit(n)` says
/// otherwise).
pub type Response = http::Response<Body>;

/// An HTTP/1.1 client whose calls park only the calling coroutine.
///
/// Cheap to clone (the clones share one connection pool): make one when
/// the program starts and move clones into the handlers.
///
/// ```no_run
/// use std::time::Duration;
/// use coserve::client::Client;
///
/// let client = Client::builder()
///     .timeout(Some(Duration::from_secs(5)))
///     .max_idle_per_host(64)
///     .build();
/// let mut res = client.post("http://127.0.0.1:9000/echo").send("hello")?;
/// assert_eq!(res.status(), 200);
/// let text = res.body_mut().read_to_string()?;
/// # Ok::<(), coserve::client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

/// Builds a method's request with the agent.
macro_rules! methods {
    ($($(#[$doc:meta])* $name:ident -> $state:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<T>(&self, uri: T) -> RequestBuilder<$state>
            where
                Uri: TryFrom<T>,
                <Uri as TryFrom<T>>::Error: Into<http::Error>,
            {
                self.agent.$name(uri)
            }
        )*
    };
}

impl Client {
    /// A client with the defaults of [`ClientBuilder`].
    pub fn new() -> Client {
        Client::builder().build()
    }

    /// Settings for a client: timeouts, pool sizes, root certificates.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    methods! {
        /// A `GET` request; `.call()` sends it.
        get -> WithoutBody;
        /// A `HEAD` request; `.call()` sends it.
        head -> WithoutBody;
        /// A `DELETE` request; `.call()` sends it.
        delete -> WithoutBody;
        /// An `OPTIONS` request; `.call()` sends it.
        options -> WithoutBody;
        /// A `POST` request; `.send(body)` sends it with a body (bytes,
        /// a string, or a reader: [`SendBody::from_reader`] streams it,
        /// chunked) and `.send_empty()` without one.
        post -> WithBody;
        /// A `PUT` request, sent as [`Client::post`]'s.
        put -> WithBody;
        /// A `PATCH` request, sent as [`Client::post`]'s.
        patch -> WithBody;
    }

    /// Sends a request made with the `http` crate.
    pub fn run(&self, request: http::Request<impl AsSendBody>) -> Result<Response, Error> {
        self.agent.run(request)
    }

    /// The ureq agent underneath, with coserve's transport installed.
    /// (Its `shutdown` closes idle connections and refuses new ones, but
    /// does not interrupt calls in progress.)
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }
}

/// Settings for a [`Client`]; [`ClientBuilder::build`] makes it.
///
/// The defaults: name lookups and connects time out after 10 s, each read
/// and each write after 30 s, a whole call never; up to 32 idle
/// connections per host and 256 in all, each kept 10 s; Mozilla's root
/// certificates; a response with an error status (4xx, 5xx) is a
/// response, not an [`Error`].
pub struct ClientBuilder {
    config: ConfigBuilder<AgentScope>,
    extra_roots: Vec<Certificate<'static>>,
    mozilla_roots: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("extra_roots", &self.extra_roots.len())
            .field("mozilla_roots", &self.mozilla_roots)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder::new()
    }
}

impl ClientBuilder {
    /// The defaults (see [`ClientBuilder`]).
    pub fn new() -> ClientBuilder {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("coserve/", env!("CARGO_PKG_VERSION")))
            .timeout_resolve(Some(Duration::from_secs(10)))
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_per_read(Some(Duration::from_secs(30)))
            .timeout_per_write(Some(Duration::from_secs(30)))
            .max_idle_connections(256)
            .max_idle_connections_per_host(32)
            // Below the idle timeout of coserve (15 s) and most servers.
            .max_idle_age(Duration::from_secs(10))
            // Both are allocated per connection (twice over TLS); 64 KiB in
            // holds the largest response head ureq takes by default.
            .input_buffer_size(64 * 1024)
            .output_buffer_size(32 * 1024);
        ClientBuilder {
            config,
            extra_roots: Vec::new(),
            mozilla_roots: true,
        }
    }

    /// The limit on a whole call: connecting, sending, and reading the
    /// response to the end of its body, redirects included. `None` (the
    /// default): no limit but the others.
    pub fn timeout(mut self, timeout: Option<Duration>) -> ClientBuilder {
        self.config = self.config.timeout_global(timeout);
        self
    }

    /// The limit on looking the host's name up, and then on making the
    /// connection (the TCP connect, to each of the name's addresses in
    /// turn, and the TLS handshake). 10 s each by default.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> ClientBuilder {
        self.config = self
            .config
            .timeout_resolve(timeout)
            .timeout_connect(timeout);
        self
    }

    /// How long each read may wait for data (the response head, each piece
    /// of the body): an upstream that goes quiet for longer fails the
    /// call, or the body read, with [`Timeout::PerRead`]. 30 s by default;
    /// `None` for a long poll or an event stream.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> ClientBuilder {
        self.config = self.config.timeout_per_read(timeout);
        self
    }

    /// How long each write may wait for the upstream to take data. 30 s
    /// by default.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> ClientBuilder {
        self.config = self.config.timeout_per_write(timeout);
        self
    }

    /// Idle keep-alive connections kept for each host and port (32 by
    /// default); 0 closes each connection after its call.
    pub fn max_idle_per_host(mut self, n: usize) -> ClientBuilder {
        self.config = self.config.max_idle_connections_per_host(n);
        self
    }

    /// Idle keep-alive connections kept in all (256 by default).
    pub fn max_idle(mut self, n: usize) -> ClientBuilder {
        self.config = self.config.max_idle_connections(n);
        self
    }

    /// How long an idle connection is kept for reuse (10 s by default).
    /// Keep it below the upstream's own idle timeout, so that the client
    /// never picks a connection the server is closing.
    pub fn idle_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config = self.config.max_idle_age(timeout);
        self
    }

    /// Trusts the certificates in `pem` (one or more `-----BEGIN
    /// CERTIFICATE-----` blocks) as roots for https, besides Mozilla's
    /// (unless [`ClientBuilder::mozilla_roots`] turns those off): a private
    /// CA, or a test's. Fails if `pem` holds no certificate or a bad one.
    pub fn root_certificates_pem(mut self, pem: &[u8]) -> Result<ClientBuilder, Error> {
        let before = self.extra_roots.len();
        for item in ureq::tls::parse_pem(pem) {
            if let PemItem::Certificate(cert) = item? {
                self.extra_roots.push(cert);
            }
        }
        if self.extra_roots.len() == before {
            return Err(Error::Tls(
                "no PEM certificate in the root certificates given",
            ));
        }
        Ok(self)
    }

    /// Trusts one DER-encoded certificate as a root, as
    /// [`ClientBuilder::root_certificates_pem`] does.
    pub fn root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> ClientBuilder {
        let der: Vec<u8> = der.into();
        self.extra_roots
            .push(Certificate::from_der(&der).to_owned());
        self
    }

    /// Whether to trust Mozilla's root certificates (the `webpki-root-certs`
    /// crate, built in): on by default. Off, only the roots given to
    /// [`ClientBuilder::root_certificates_pem`] are trusted.
    pub fn mozilla_roots(mut self, trust: bool) -> ClientBuilder {
        self.mozilla_roots = trust;
        self
    }

    /// Any other ureq setting (redirects, headers sent with every request,
    /// limits): `configure` gets ureq's builder with the settings so far
    /// and returns it. Proxies are not supported (a call through one
    /// fails), and the TLS roots and crypto provider are set by `build`.
    pub fn ureq_config(
        mut self,
        configure: impl FnOnce(ConfigBuilder<AgentScope>) -> ConfigBuilder<AgentScope>,
    ) -> ClientBuilder {
        self.config = configure(self.config);
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        warm_up_tls();
        let mut roots = Vec::new();
        if self.mozilla_roots {
            roots.extend(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|der| Certificate::from_der(der.as_ref())),
            );
        }
        roots.extend(self.extra_roots);
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(crate::crypto::provider()))
            .build();
        let config = self.config.tls_config(tls).proxy(None).build();
        let connector =
            ().chain(MayConnector)
                .chain(TlsOnItsOwnStack(Arc::new(RustlsConnector::default())))
                .chain(RefusePlaintextHttps);
        Client {
            agent: ureq::Agent::with_parts(config, connector, PoolResolver),
        }
    }
}

/// Builds the crypto provider's lazy statics (aws-lc's one-time set-up of
/// each key exchange) on a pool thread's large stack, once: built first
/// in a handshake on a small coroutine stack, an overflow would abandon
/// them half done, with their `Once` locked for good.
fn warm_up_tls() {
    static WARM: AtomicBool = AtomicBool::new(false);
    if WARM.load(Ordering::Acquire) {
        return;
    }
    // Not a `Once`: a second caller on the same worker thread would block
    // that thread until the first, parked in `blocking`, finished.
    crate::blocking(|| {
        for group in crate::crypto::provider().kx_groups {
            let mut provider = crate::crypto::provider();
            provider.kx_groups = vec![group];
            let Ok(builder) = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
            else {
                continue;
            };
            let config = builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
            // Making the connection makes its key share.
            let _ = rustls::ClientConnection::new(Arc::new(config), name);
        }
    });
    WARM.store(true, Ordering::Release);
}

/// Connects with may's sockets, which park the coroutine while the
/// connection is made.
#[derive(Debug)]
struct MayConnector;

impl Connector<()> for MayConnector {
    type Out = MayTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<MayTransport>, Error> {
        let config = details.config;
        if config.proxy().is_some() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "coserve's client does not go through proxies",
            )));
        }
        if details.needs_tls() {
            check_tls(config.tls_config())?;
        }
        let stream = connect(&details.addrs, details.timeout)?;
        if config.no_delay() {
            stream.set_nodelay(true)?;
        }
        Ok(Some(MayTransport {
            socket: Socket::new(stream),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        }))
    }
}

/// Refuses, before connecting, a TLS setting (from a request's own ureq
/// configuration) that ureq's rustls connector would not honour here: it
/// would panic, or leave an https request in plain text.
fn check_tls(tls: &TlsConfig) -> Result<(), Error> {
    if tls.provider() != TlsProvider::Rustls {
        return Err(Error::Tls("coserve's client speaks TLS with rustls only"));
    }
    if !matches!(tls.root_certs(), RootCerts::Specific(_)) && !tls.disable_verification() {
        return Err(Error::Tls(
            "coserve's client takes root certificates as a list (RootCerts::Specific)",
        ));
    }
    if tls.unversioned_rustls_crypto_provider().is_none()
        && rustls::crypto::CryptoProvider::get_default().is_none()
    {
        return Err(Error::Tls("no rustls crypto provider in the TLS settings"));
    }
    Ok(())
}

/// Tries each address in turn, each with an equal share of what is left
/// of the connect timeout, so that one that never answers leaves time
/// for the others.
fn connect(
    addrs: &ResolvedSocketAddrs,
    timeout: NextTimeout,
) -> Result<may::net::TcpStream, Error> {
    let deadline = limit(timeout).map(|d| Instant::now() + d);
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let attempt = match deadline {
            None => may::net::TcpStream::connect(addr),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout(timeout.reason));
                }
                let share = left / (addrs.len() - i) as u32;
                may::net::TcpStream::connect_timeout(addr, share.max(Duration::from_millis(10)))
            }
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                log::debug!("connect to {addr}: {e}");
                last = Some(e);
            }
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => Error::Timeout(timeout.reason),
        Some(e) => Error::Io(e),
        None => Error::HostNotFound,
    })
}

/// The wait a timeout allows; `None` for no limit. An expired one is
/// zero, which the callers turn into [`Error::Timeout`].
fn limit(timeout: NextTimeout) -> Option<Duration> {
    if timeout.after.is_not_happening() {
        None
    } else {
        Some(*timeout.after)
    }
}

/// A may socket as ureq's transport. Reads and writes try the socket
/// first and, when it would block, wait with may's timed wait, which parks
/// the coroutine (or the thread, outside one) until the socket is ready or
/// the timeout ureq gives passes.
struct MayTransport {
    socket: Socket,
    buffers: LazyBuffers,
}

impl fmt::Debug for MayTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MayTransport")
            .field("peer", &self.socket.stream.peer_addr().ok())
            .finish()
    }
}

impl Transport for MayTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let wait = wait_allowed(timeout)?;
        // The limit is on the whole write, however many waits it takes.
        let deadline = wait.map(|d| Instant::now() + d);
        let MayTransport { socket, buffers } = self;
        let mut out = &buffers.output()[..amount];
        while !out.is_empty() {
            let wait = match deadline {
                None => None,
                Some(at) => match at.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return Err(Error::Timeout(timeout.reason)),
                    left => Some(left.max(Duration::from_millis(1))),
                },
            };
            let n = socket.write(out, wait).map_err(|e| io_error(e, timeout))?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::WriteZero.into()));
            }
            out = &out[n..];
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let wait = wait_allowed(timeout)?;
        let MayTransport { socket, buffers } = self;
        let n = socket
            .read(buffers.input_append_buf(), wait)
            .map_err(|e| io_error(e, timeout))?;
        buffers.input_appended(n);
        Ok(n > 0)
    }

    /// Whether a pooled connection can be used again: see
    /// [`Socket::is_open`].
    fn is_open(&mut self) -> bool {
        self.socket.is_open()
    }
}

/// Whether a timeout already set will do for `want`: both none, or
/// within 1/64 of each other (a 60 s limit may end a second early or
/// late, a 300 ms one 5 ms).
fn about(set: Option<Duration>, want: Option<Duration>) -> bool {
    match (set, want) {
        (None, None) => true,
        (Some(set), Some(want)) => set.abs_diff(want) <= want / 64,
        _ => false,
    }
}

/// How long one read or write may wait; `Timeout` if the time is up.
fn wait_allowed(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    match limit(timeout) {
        Some(d) if d.is_zero() => Err(Error::Timeout(timeout.reason)),
        // may's timed waits are in whole milliseconds.
        other => Ok(other.map(|d| d.max(Duration::from_millis(1)))),
    }
}

/// A may socket and the timeouts last set on it: may's setters make a
/// system call each (`SO_RCVTIMEO`, `SO_SNDTIMEO`), and ureq gives nearly
/// the same timeout call after call (what is left of it: 59.9999 s of
/// 60), so one within 1/64 of the last is taken as the same.
struct Socket {
    stream: may::net::TcpStream,
    read_timeout: Option<Option<Duration>>,
    write_timeout: Option<Option<Duration>>,
    /// When it was last read or written, on the coarse clock.
    last_io: Duration,
}

/// A connection idle longer than this is checked with a read before it is
/// used again, whatever may's event loop says: see [`Socket::is_open`].
const TRUST_EVENTS_FOR: Duration = Duration::from_millis(100);

impl Socket {
    fn new(stream: may::net::TcpStream) -> Socket {
        Socket {
            stream,
            read_timeout: None,
            write_timeout: None,
            last_io: crate::clock::monotonic(),
        }
    }

    /// Reads what the socket has or, if nothing yet, waits at most `wait`:
    /// may's read tries the socket first, then parks until data comes or
    /// the time is up.
    fn read(&mut self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<usize> {
        if !self.read_timeout.is_some_and(|set| about(set, wait)) {
            self.stream.set_read_timeout(wait)?;
            self.read_timeout = Some(wait);
        }
        self.last_io = crate::clock::monotonic();
        self.stream.read(buf)
    }

    /// Writes what the socket takes or, if its buffer is full, waits at
    /// most `wait`, as [`Socket::read`] does.
    fn write(&mut self, buf: &[u8], wait: Option<Duration>) -> io::Result<usize> {
        if !self.write_timeout.is_some_and(|set| about(set, wait)) {
            self.stream.set_write_timeout(wait)?;
            self.write_timeout = Some(wait);
        }
        self.last_io = crate::clock::monotonic();
        self.stream.write(buf)
    }

    /// Whether the connection can be used again: the peer has neither
    /// closed it nor sent anything unasked. Never waits (ureq asks with
    /// its pool's lock held, twice a call: when the connection goes back
    /// to the pool and when it comes out).
    ///
    /// A read that would block says so, at the cost of a system call. A
    /// connection in steady use skips it: may's event loop flags every
    /// readiness edge on the socket, and a close or unasked bytes make
    /// one, so no edge since the last read or write means nothing came.
    /// The flag lags the kernel by the event loop's reaction time, so only
    /// a connection used within [`TRUST_EVENTS_FOR`] takes its word: one
    /// idle longer (the one an upstream's keep-alive timeout closes) is
    /// read. A close in the last instant before a call is a race no check
    /// wins; ureq does not retry.
    fn is_open(&mut self) -> bool {
        use may::io::AsIoData;
        let recent = crate::clock::monotonic().saturating_sub(self.last_io) < TRUST_EVENTS_FOR;
        if recent && self.stream.as_io_data().io_flag.load(Ordering::Acquire) == 0 {
            return true;
        }
        matches!(
            self.stream.inner().read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

/// A socket error as ureq's: a timed-out wait is the timeout that bounded it.
fn io_error(e: io::Error, timeout: NextTimeout) -> Error {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        Error::Timeout(timeout.reason)
    } else {
        Error::Io(e)
    }
}

/// The stack a TLS handshake runs on. On a handler's own stack (64 KiB in
/// release builds) a handshake left the handler little room; this is
/// several times what one was measured to use, in debug builds too
/// (`docs/client.md` has the numbers). Only the pages it touches become
/// resident.
const HANDSHAKE_STACK: usize = 256 * 1024;

/// ureq's rustls connector, run on a coroutine of its own with a stack of
/// [`HANDSHAKE_STACK`] while the caller's coroutine parks: the handshake is
/// the deepest code a call runs, and it would otherwise run on the
/// handler's stack. On a thread (whose stack is large) it runs in place.
#[derive(Debug)]
struct TlsOnItsOwnStack(Arc<RustlsConnector>);

impl Connector<MayTransport> for TlsOnItsOwnStack {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<MayTransport>,
    ) -> Result<Option<Box<dyn Transport>>, Error> {
        let boxed = |t: Option<_>| t.map(|t| Box::new(t) as Box<dyn Transport>);
        if !details.needs_tls() || !may::coroutine::is_coroutine() {
            return self.0.connect(details, chained).map(boxed);
        }
        // What the handshake needs, owned, to move to the other coroutine.
        let rustls = Arc::clone(&self.0);
        let (uri, addrs, config) = (
            details.uri.clone(),
            details.addrs.clone(),
            details.config.clone(),
        );
        let (request_level, now, timeout) = (details.request_level, details.now, details.timeout);
        let current_time = Arc::clone(&details.current_time);
        let run_connector = Arc::clone(&details.run_connector);
        let register_shutdown = Arc::clone(&details.register_shutdown);
        let (tx, rx) = may::sync::mpsc::channel();
        crate::engine::coroutine::spawn(HANDSHAKE_STACK, move || {
            let details = ConnectionDetails {
                uri: &uri,
                addrs,
                config: &config,
                request_level,
                resolver: &PoolResolver,
                now,
                timeout,
                current_time,
                run_connector,
                register_shutdown,
            };
            let _ = tx.send(rustls.connect(&details, chained).map(boxed));
        })
        .map_err(Error::Io)?;
        // A panic in the handshake drops `tx`: an error here, not a hang.
        rx.recv()
            .map_err(|_| Error::Io(io::Error::other("the TLS handshake failed")))?
    }
}

/// The last link of the chain: an https request that did not get TLS
/// (a ureq setting the checks above missed) fails instead of going out in
/// plain text.
#[derive(Debug)]
struct RefusePlaintextHttps;

impl<In: Transport> Connector<In> for RefusePlaintextHttps {
    type Out = In;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<In>, Error> {
        match chained {
            Some(t) if details.needs_tls() && !t.is_tls() => Err(Error::TlsRequired),
            other => Ok(other),
        }
    }
}

/// Resolves names on the [`blocking()`](crate::blocking) pool (the
/// system's `getaddrinfo` blocks its thread), parking only the caller; an
/// IP address needs no lookup.
#[derive(Debug)]
struct PoolResolver;

impl Resolver for PoolResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(Error::BadUri(format!("{uri}: not an absolute URL")));
        };
        let port = match (authority.port_u16(), scheme.as_str()) {
            (Some(port), _) => port,
            (None, "http") => 80,
            (None, "https") => 443,
            (None, other) => return Err(Error::BadUri(format!("unknown scheme: {other}"))),
        };
        let host = authority.host();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let found = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => lookup(bare.to_owned(), port, timeout)?,
        };
        let mut addrs = self.empty();
        for addr in config.ip_family().keep_wanted(found.into_iter()).take(16) {
            addrs.push(addr);
        }
        if addrs.is_empty() {
            return Err(Error::HostNotFound);
        }
        Ok(addrs)
    }
}

/// `getaddrinfo` on a pool thread, waited for at most `timeout`. A lookup
/// that outlives it finishes on its thread, unheard.
fn lookup(host: String, port: u16, timeout: NextTimeout) -> Result<Vec<SocketAddr>, Error> {
    let (tx, rx) = may::sync::mpsc::channel();
    crate::blocking::spawn(move || {
        let found = (host.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>());
        let _ = tx.send(found);
    });
    let found = match limit(timeout) {
        None => rx
            .recv()
            .map_err(|_| Error::Io(io::Error::other("the lookup was lost")))?,
        Some(wait) => match rx.recv_timeout(wait) {
            Ok(found) => found,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(Error::Timeout(timeout.reason));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Io(io::Error::other("the lookup was lost")));
            }
        },
    };
    found.map_err(|e| {
        log::debug!("lookup: {e}");
        Error::HostNotFound
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str) -> Result<Vec<SocketAddr>, Error> {
        let uri: Uri = url.parse().unwrap();
        let config = ureq::Agent::config_builder().build();
        PoolResolver
            .resolve(&uri, &config, NextTimeout::default())
            .map(|a| a.iter().copied().collect())
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        assert_eq!(
            resolve("http://127.0.0.1:8080/x").unwrap(),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            resolve("https://[::1]/").unwrap(),
            ["[::1]:443".parse().unwrap()]
        );
        assert_eq!(
            resolve("http://10.1.2.3").unwrap(),
            ["10.1.2.3:80".parse().unwrap()]
        );
    }

    #[test]
    fn names_are_looked_up_on_the_pool() {
        let addrs = resolve("http://localhost:81/").unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.port() == 81 && a.ip().is_loopback()));
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(resolve("/relative"), Err(Error::BadUri(_))));
        assert!(matches!(resolve("ftp://host/"), Err(Error::BadUri(_))));
    }

    #[test]
    fn an_expired_timeout_is_a_timeout() {
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(0),
            reason: Timeout::Connect,
            ..NextTimeout::default()
        };
        assert!(matches!(
            wait_allowed(timeout),
            Err(Error::Timeout(Timeout::Connect))
        ));
    }
}
