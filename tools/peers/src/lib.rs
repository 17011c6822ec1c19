//! The servers coserve is measured against, beside the real ones (nginx,
//! lighttpd) that `scripts/bench/compare.sh` runs:
//!
//! - [`FixedBody`], may_minihttp answering every request with a fixed body
//!   from memory: the may ceiling, since it reads no file and formats no
//!   validators. `benches/engines.rs` runs it in-process; the
//!   `minihttp_peer` binary serves it on its own.
//! - the `null_peer` binary, a one-thread epoll loop that answers each
//!   request head with coserve's response from memory and does nothing
//!   else: the client's share of a measurement.

#![warn(missing_docs)]

use std::io;
use std::net::ToSocketAddrs;
use std::time::Duration;

use may::coroutine::JoinHandle;

/// A may_minihttp service answering from memory: `/10m.bin` with 10 MiB,
/// `/sleep` with the small body after a pause (50 ms unless
/// [`sleep`](FixedBody::sleep) says), anything else with the small body
/// (1 KiB unless [`new`](FixedBody::new) says). Every answer is
/// `text/html`.
#[derive(Clone)]
pub struct FixedBody {
    small: &'static str,
    large: &'static str,
    sleep: Duration,
}

/// The large body's length.
pub const LARGE: usize = 10 * 1024 * 1024;

impl FixedBody {
    /// Answers with `small` bytes (the bodies live as long as the process).
    pub fn new(small: usize) -> FixedBody {
        FixedBody {
            small: String::leak("x".repeat(small)),
            large: String::leak("x".repeat(LARGE)),
            sleep: Duration::from_millis(50),
        }
    }

    /// How long `/sleep` waits (parking its coroutine) before answering.
    pub fn sleep(self, sleep: Duration) -> FixedBody {
        FixedBody { sleep, ..self }
    }

    /// Serves on `addr` on may's runtime (which starts now, with may's
    /// configuration as it is); the handle is the accept loop's coroutine.
    pub fn start(self, addr: impl ToSocketAddrs) -> io::Result<JoinHandle<()>> {
        may_minihttp::HttpServer(self).start(addr)
    }
}

impl may_minihttp::HttpService for FixedBody {
    fn call(
        &mut self,
        req: may_minihttp::Request,
        rsp: &mut may_minihttp::Response,
    ) -> io::Result<()> {
        rsp.header("Content-Type: text/html");
        match req.path() {
            "/10m.bin" => rsp.body(self.large),
            "/sleep" => {
                may::coroutine::sleep(self.sleep);
                rsp.body(self.small);
            }
            _ => rsp.body(self.small),
        }
        Ok(())
    }
}
