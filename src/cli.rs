//! The command line: flags in the spirit of `python3 -m http.server`,
//! turned into a [`coserve::Config`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use coserve::{CacheOptions, Config, EngineKind, FilesOptions};

/// A fast, safe HTTP/1.1 static-file server on may coroutines.
#[derive(Debug, Parser)]
#[command(name = "coserve", version, about)]
pub struct Cli {
    /// Port to listen on; 0 picks a free port.
    #[arg(default_value_t = 8000)]
    pub port: u16,

    /// Address to bind to (default: all interfaces).
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "ADDR",
        default_value = "0.0.0.0"
    )]
    pub bind: IpAddr,

    /// Directory to serve.
    #[arg(
        short = 'd',
        long = "directory",
        value_name = "DIR",
        default_value = "."
    )]
    pub directory: PathBuf,

    /// Do not write the access log.
    #[arg(short, long)]
    pub quiet: bool,

    /// How connections are served: `coroutine` (one may coroutine each) or
    /// `thread` (one OS thread each).
    #[arg(long, value_name = "ENGINE", default_value = "coroutine")]
    pub engine: EngineKind,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Pin each worker thread to a core (may's default; off here, see the
    /// README's performance section).
    #[arg(long)]
    pub pin_workers: bool,

    /// Stack size of each connection's coroutine; 16384 (65536 in debug
    /// builds) to 67108864.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().stack_size,
          value_parser = parse_stack_size)]
    pub stack_size: usize,

    /// Close keep-alive connections idle this long.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub idle_timeout: u64,

    /// A connection idle this long frees its buffers and, on the coroutine
    /// engine, its coroutine: it waits in the parking lot until its next
    /// request.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub release_idle_after: u64,

    /// Close clients that take longer than this to send a request head.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_timeout: u64,

    /// How long SIGINT/SIGTERM waits for responses in flight before exiting.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_grace: u64,

    /// Connections served at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Connections served at once from one client address; more get 503
    /// [default: no cap].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Follow symlinks that point outside the directory.
    #[arg(long)]
    pub follow_symlinks: bool,

    /// List directories that have no index file.
    #[arg(long)]
    pub listing: bool,

    /// Do not serve precompressed `.br`/`.gz` siblings.
    #[arg(long)]
    pub no_precompressed: bool,

    /// `Cache-Control` value for file responses.
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// Extra response header, `"Name: value"`; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Allow cross-origin requests from anywhere and answer preflights.
    #[arg(long)]
    pub cors: bool,

    /// Serve the root index for unknown paths without an extension.
    #[arg(long)]
    pub spa: bool,

    /// Fixed socket send buffer (SO_SNDBUF) for each connection, instead of
    /// the kernel's autotuning [default: autotuning].
    #[arg(long, value_name = "BYTES")]
    pub send_buffer: Option<usize>,

    /// Read every file from disk on every request: no in-memory file cache.
    #[arg(long)]
    pub no_cache: bool,

    /// The most the file cache holds, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = CacheOptions::default().max_bytes)]
    pub cache_size: usize,

    /// Files larger than this are not cached (they go out with sendfile).
    #[arg(long, value_name = "BYTES", default_value_t = CacheOptions::default().max_file)]
    pub cache_max_file: u64,

    /// Index file name for directories; repeatable [default: index.html].
    #[arg(long = "index", value_name = "NAME")]
    pub index: Vec<String>,
}

/// A stack size within the server's bounds (`MIN_STACK_SIZE` to
/// `MAX_STACK_SIZE`), refused here with the flag's name rather than later by
/// `Server::bind`.
fn parse_stack_size(s: &str) -> Result<usize, String> {
    let bytes: usize = s.parse().map_err(|e| format!("{e}"))?;
    let (min, max) = (
        coserve::server::MIN_STACK_SIZE,
        coserve::server::MAX_STACK_SIZE,
    );
    if bytes < min {
        return Err(format!(
            "must be at least {min} bytes: the server's own code needs about half that"
        ));
    }
    if bytes > max {
        return Err(format!("must be at most {max} bytes"));
    }
    Ok(bytes)
}

/// `Name: value`, with a token name and a value free of control characters,
/// so a flag cannot inject a header line.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or("expected \"Name: value\"")?;
    let name = name.trim();
    let value = value.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("invalid header name {name:?}"));
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err("control character in header value".into());
    }
    Ok((name.to_string(), value.to_string()))
}

impl Cli {
    /// The server configuration these flags describe.
    pub fn config(&self) -> Config {
        Config {
            root: self.directory.clone(),
            files: FilesOptions {
                follow_symlinks: self.follow_symlinks,
                index: if self.index.is_empty() {
                    FilesOptions::default().index
                } else {
                    self.index.clone()
                },
                precompressed: !self.no_precompressed,
                listing: self.listing,
                cache_control: self.cache_control.clone(),
                headers: self.headers.clone(),
                cors: self.cors,
                spa: self.spa,
                cache: (!self.no_cache).then_some(CacheOptions {
                    max_bytes: self.cache_size,
                    max_file: self.cache_max_file,
                    ..CacheOptions::default()
                }),
            },
            workers: self.workers.unwrap_or(0),
            pin_workers: self.pin_workers,
            stack_size: self.stack_size,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            header_timeout: Duration::from_secs(self.header_timeout),
            release_idle_after: Duration::from_millis(self.release_idle_after),
            max_connections: self.max_connections,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            max_connections_per_ip: self.max_connections_per_ip,
            engine: self.engine,
            send_buffer: self.send_buffer,
            ..Config::default()
        }
    }
}
