//! A server's settings: the engine, timeouts, limits and connection caps.

use std::time::Duration;

use crate::conn::ConnConfig;
use crate::engine::EngineKind;
use crate::parse::Limits;

/// The longest timeout or grace period a server takes: 100 years. Longer
/// ones are taken as this: any longer time means "never" in practice, and
/// would overflow the clock arithmetic.
const LONGEST_TIME: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A server's settings, built with chained setters from the defaults:
///
/// ```
/// use std::time::Duration;
/// let config = coserve::Config::new()
///     .idle_timeout(Duration::from_secs(60))
///     .max_body(16 * 1024 * 1024)
///     .max_connections(50_000);
/// ```
///
/// What serves the requests is not here: that is the handler given to
/// [`Server::serve`](crate::Server::serve). The settings of may's runtime,
/// which every server in a process shares, are on
/// [`Runtime`](crate::Runtime).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) engine: EngineKind,
    pub(crate) idle_timeout: Duration,
    pub(crate) release_idle_after: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) limits: Limits,
    pub(crate) send_buffer: Option<usize>,
    pub(crate) backlog: i32,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: EngineKind::Coroutine,
            idle_timeout: Duration::from_secs(15),
            release_idle_after: Duration::from_millis(500),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: None,
            shutdown_grace: Duration::from_secs(10),
            limits: Limits::default(),
            send_buffer: None,
            backlog: 4096,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Config {
    /// The defaults: the coroutine engine; 15 s idle, 10 s header, 30 s
    /// body and 30 s write timeouts; 10,000 connections; 8 KiB request
    /// lines, 16 KiB of header fields, 100 fields, 1 MiB bodies; 10 s to
    /// finish responses in flight at shutdown.
    pub fn new() -> Config {
        Config::default()
    }

    /// How connections are served: a coroutine each (the default) or an OS
    /// thread each.
    pub fn engine(mut self, engine: EngineKind) -> Config {
        self.engine = engine;
        self
    }

    /// How long an idle keep-alive connection stays open (15 s).
    pub fn idle_timeout(mut self, d: Duration) -> Config {
        self.idle_timeout = d.min(LONGEST_TIME);
        self
    }

    /// How long a connection stays idle before it frees its buffers and,
    /// on the coroutine engine, its coroutine, so that idle connections cost
    /// little memory (500 ms). Busy keep-alive clients never wait that long.
    pub fn release_idle_after(mut self, d: Duration) -> Config {
        self.release_idle_after = d.min(LONGEST_TIME);
        self
    }

    /// How long a client has to send a complete request head, from its
    /// first byte (10 s); then it gets `408` and is closed.
    pub fn header_timeout(mut self, d: Duration) -> Config {
        self.header_timeout = d.min(LONGEST_TIME);
        self
    }

    /// How long a client has to send a whole request body, from the end of
    /// its head (30 s); then it gets `408` and is closed, however steadily
    /// it was sending.
    pub fn body_timeout(mut self, d: Duration) -> Config {
        self.body_timeout = d.min(LONGEST_TIME);
        self
    }

    /// How long one write may wait for the client to read (30 s).
    pub fn write_timeout(mut self, d: Duration) -> Config {
        self.write_timeout = d.min(LONGEST_TIME);
        self
    }

    /// Connections served at once (10,000); more get `503` and are closed.
    pub fn max_connections(mut self, n: usize) -> Config {
        self.max_connections = n;
        self
    }

    /// Connections served at once from one client address; more get `503`.
    /// `None`, the default, sets no cap.
    pub fn max_connections_per_ip(mut self, n: Option<usize>) -> Config {
        self.max_connections_per_ip = n;
        self
    }

    /// How long shutdown waits for responses in flight (10 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Config {
        self.shutdown_grace = d.min(LONGEST_TIME);
        self
    }

    /// The longest request line, without its CRLF (8 KiB); `414` beyond.
    pub fn max_request_line(mut self, bytes: usize) -> Config {
        self.limits.max_request_line = bytes;
        self
    }

    /// The largest header section, without the request line (16 KiB);
    /// `431` beyond.
    pub fn max_header_bytes(mut self, bytes: usize) -> Config {
        self.limits.max_header_bytes = bytes;
        self
    }

    /// The most header fields (100); `431` beyond.
    pub fn max_headers(mut self, n: usize) -> Config {
        self.limits.max_headers = n;
        self
    }

    /// The largest request body read (1 MiB); `413` beyond.
    pub fn max_body(mut self, bytes: u64) -> Config {
        self.limits.max_body = bytes;
        self
    }

    /// Each connection's socket send buffer (`SO_SNDBUF`), or `None` (the
    /// default) to leave it to the kernel's autotuning. A small fixed buffer
    /// keeps less of a large file in flight, which helped 10 MiB downloads
    /// on loopback; over a long, fast path it caps each connection at about
    /// buffer / round-trip time.
    pub fn send_buffer(mut self, bytes: Option<usize>) -> Config {
        self.send_buffer = bytes;
        self
    }

    /// The listen backlog (4096): connections the kernel queues before
    /// accept. Linux caps it at `net.core.somaxconn`.
    pub fn backlog(mut self, n: i32) -> Config {
        self.backlog = n;
        self
    }

    /// Serves HTTPS with this TLS configuration (`None`: plain HTTP, the
    /// default). The handshake is bounded by the header timeout; idle TLS
    /// connections park with their session like plain ones (coroutine
    /// engine, [`Config::release_idle_after`]). On the coroutine engine the
    /// handshake needs about 22 KiB of stack: a runtime whose stack is
    /// under [`TlsConfig::MIN_STACK_SIZE`](crate::TlsConfig::MIN_STACK_SIZE)
    /// makes [`Server::spawn`](crate::Server::spawn) fail
    /// (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: Option<crate::TlsConfig>) -> Config {
        self.tls = tls;
        self
    }

    /// What every connection of a server is served with.
    pub(crate) fn conn_config(&self, park: bool) -> ConnConfig {
        ConnConfig {
            limits: self.limits,
            idle_timeout: self.idle_timeout,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            write_timeout: self.write_timeout,
            release_after: self.release_idle_after,
            park,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_a_century_are_a_century() {
        let config = Config::new()
            .shutdown_grace(Duration::MAX)
            .idle_timeout(Duration::from_secs(u64::MAX))
            .body_timeout(Duration::from_secs(7));
        assert_eq!(config.shutdown_grace, LONGEST_TIME);
        assert_eq!(config.idle_timeout, LONGEST_TIME);
        assert_eq!(config.body_timeout, Duration::from_secs(7));
    }
}
