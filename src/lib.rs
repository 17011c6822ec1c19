//! An HTTP/1.1 server library on the stackful coroutines of
//! [`may`](https://docs.rs/may): every connection gets a coroutine, and a
//! handler is ordinary blocking code (sleep, call a database or another
//! service) that parks only its own coroutine, so one process serves tens
//! of thousands of concurrent clients. The same crate is the `coserve`
//! binary, a drop-in for `python3 -m http.server`. Linux only.
//!
//! # A server in a few lines
//!
//! A [`Router`] maps paths and methods to closures; a closure returns
//! anything that converts into a [`Response`] ([`IntoResponse`]), so `?`
//! works inside it. [`Server::bind`] takes a [`Config`]; [`Server::serve`]
//! blocks, [`Server::spawn`] returns a [`ServerHandle`] to stop it with.
//!
//! ```
//! use coserve::{Config, Error, Response, Router, Server, StatusCode};
//!
//! # fn main() -> std::io::Result<()> {
//! let app = Router::new()
//!     .get("/", |_| "hello, world\n")
//!     .get("/hello", |req| {
//!         let name = req.query_param("name").unwrap_or_else(|| "world".into());
//!         Response::text(format!("hello, {name}\n"))
//!     })
//!     .get("/square", |req| -> Result<String, Error> {
//!         let n = req.query_param("n").ok_or(StatusCode::BAD_REQUEST)?;
//!         // Not a number is the client's fault: a 400, the cause in the log.
//!         let n: u32 = n.parse().map_err(|e| Error::with_cause(StatusCode::BAD_REQUEST, e))?;
//!         Ok(format!("{}\n", u64::from(n) * u64::from(n)))
//!     })
//!     .post("/echo", |req| req.body().to_vec());
//!
//! let server = Server::bind("127.0.0.1:0", Config::new())?;
//! let addr = server.local_addr();
//! let handle = server.spawn(app)?;
//! # use std::io::{Read, Write};
//! # let mut c = std::net::TcpStream::connect(addr)?;
//! # c.write_all(b"GET /square?n=12 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! # let mut out = String::new();
//! # c.read_to_string(&mut out)?;
//! # assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\n144\n"), "{out}");
//! // ... until the program wants it to stop:
//! handle.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! # Static files
//!
//! [`StaticFiles`] is the `coserve` binary's handler: validators and
//! conditional requests, byte ranges, precompressed `.br`/`.gz` siblings,
//! `sendfile(2)`, an in-memory cache, listings, and nothing outside its
//! root but what a [`Symlinks`] policy lets a link lead to. It is a [`Handler`] of its own, a router's fallback, or called from
//! a handler with [`StaticFiles::serve`]:
//!
//! ```no_run
//! use coserve::{Config, FilesOptions, Router, Server, StaticFiles};
//!
//! # fn main() -> std::io::Result<()> {
//! let files = StaticFiles::new("site", FilesOptions::new().listing(false))?;
//! let downloads = files.clone();
//! let app = Router::new()
//!     .get("/api/time", |_| format!("{:?}\n", std::time::SystemTime::now()))
//!     .get("/latest", move |req| downloads.serve(req, "releases/v2.tar.gz"))
//!     .fallback(files);
//! Server::bind("0.0.0.0:8080", Config::new())?.serve(app)
//! # }
//! ```
//!
//! # Basic auth
//!
//! [`BasicAuth`] puts a user list in front of any handler, a router or
//! static files alike: `BasicAuth::new("realm").user_spec("alice:secret").wrap(app)?`
//! is a [`Protected`] handler that answers `401` to a request without valid
//! credentials and never calls `app` for it. Passwords are plain, SHA-256,
//! bcrypt or argon2 ([`Credential::parse`]).
//!
//! # Blocking, the right way
//!
//! A handler runs on a coroutine, so it should wait in ways may can park:
//! may's sockets, channels and `may::coroutine::sleep`. Calls that block
//! the OS thread (`std::fs`, DNS, a C library, a std `Mutex` held long)
//! would stall every coroutine on that worker; run them with [`blocking()`],
//! which moves them to a small thread pool and parks only the caller. Never
//! hold a std lock guard, a `RefCell` borrow or a thread-local across a call
//! that can park: the coroutine may resume on another thread.
//!
//! A body that takes time to produce is a [`Body::stream`]: its closure
//! writes after the head has gone out, and each `flush` sends a chunk.
//!
//! # Engines and the runtime
//!
//! [`Config::engine`] picks how connections are served: a coroutine each
//! ([`EngineKind::Coroutine`], the default) or an OS thread each
//! ([`EngineKind::Thread`]), the classic blocking server kept to measure
//! against. Every coroutine server in a process shares may's runtime, whose
//! worker count and stack size are set once, on [`Runtime`].
//!
//! # Other transports
//!
//! [`serve_connection`] runs the connection loop over anything that
//! implements [`Transport`] (a `Read + Write` with timeouts): a TLS stream,
//! a Unix socket, or an in-memory buffer in a test.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "coserve runs on Linux only: it needs epoll (through may), sendfile(2) and openat2(2)"
);

mod access_log;
mod auth;
mod blocking;
mod body;
#[cfg(feature = "client")]
pub mod client;
mod clock;
mod conn;
#[cfg(any(feature = "tls", feature = "client"))]
mod crypto;
mod date;
mod engine;
mod files;
mod handler;
mod middleware;
mod parse;
mod request;
mod request_body;
mod response;
mod router;
mod runtime;
mod server;
pub mod sse;
mod status;
mod sys;
mod timeout;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod upgrade;
#[cfg(feature = "websocket")]
pub mod ws;

pub use auth::{AuthError, BasicAuth, Credential, Protected};
pub use blocking::{blocking, blocking_pool_size, set_blocking_pool_size};
pub use body::BodyError;
pub use engine::EngineKind;
pub use files::{CacheOptions, CacheStats, FilesOptions, StaticFiles, Symlinks};
pub use handler::{Error, Handler, IntoResponse};
pub use middleware::{Around, Next};
pub use parse::{ParseError, Version};
pub use request::{Method, Request, TlsInfo};
pub use request_body::{BodyPolicy, BodyReader, WithBody};
pub use response::{Body, HeaderError, Response};
pub use router::Router;
pub use runtime::Runtime;
pub use server::{Config, Server, ServerHandle, serve_connection};
pub use status::{InvalidStatusCode, StatusCode};
pub use sys::raise_open_files_limit;
pub use timeout::Timeout;
#[cfg(feature = "tls")]
pub use tls::{RedirectToHttps, TlsConfig, TlsError};
pub use transport::Transport;
pub use upgrade::Upgraded;

/// The parsers of hostile input, for the fuzz targets, benchmarks and
/// property tests. Not part of the API: it changes without notice.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::body::{BodyError, Framing, framing};
    pub use crate::files::path::{PathError, SafePath, check_name, resolve_path};
    pub use crate::files::range::{MAX_RANGES, MAX_SPECS, Ranges, parse_ranges};
    pub use crate::parse::{Head, Limits, Status, parse_head};
}

/// The README's Rust examples, compiled as doctests so that they stay
/// true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
