//! The command line: flags in the spirit of `python3 -m http.server`,
//! turned into a [`coserve::Config`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use coserve::{Config, FilesOptions};

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

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Stack size of each connection's coroutine.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().stack_size)]
    pub stack_size: usize,

    /// Close keep-alive connections idle this long.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub idle_timeout: u64,

    /// Close clients that take longer than this to send a request head.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_timeout: u64,

    /// Connections served at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Follow symlinks that point outside the directory.
    #[arg(long)]
    pub follow_symlinks: bool,
}

impl Cli {
    /// The server configuration these flags describe.
    pub fn config(&self) -> Config {
        Config {
            root: self.directory.clone(),
            files: FilesOptions {
                follow_symlinks: self.follow_symlinks,
                ..FilesOptions::default()
            },
            workers: self.workers.unwrap_or(0),
            stack_size: self.stack_size,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            header_timeout: Duration::from_secs(self.header_timeout),
            max_connections: self.max_connections,
            ..Config::default()
        }
    }
}
