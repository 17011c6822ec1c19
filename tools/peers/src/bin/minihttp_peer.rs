//! The may ceiling for `scripts/bench/compare.sh`: may_minihttp answering
//! every request with a fixed body from memory (1 KiB by default;
//! `/10m.bin` answers 10 MiB), [`FixedBody`]. It reads no file and formats
//! no validators, so nothing built on may serves a keep-alive request with
//! less work.
//!
//! ```sh
//! cargo run --release -p coserve-peers --bin minihttp_peer -- 127.0.0.1:8082 [BODY_BYTES] [WORKERS] [pin|nopin]
//! ```
//!
//! Without WORKERS it runs on may's defaults: a worker per core, each
//! pinned to its core.

use std::io;

use coserve_peers::FixedBody;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8082".into());
    let small: usize = args
        .next()
        .map_or(Ok(1024), |s| s.parse())
        .map_err(io::Error::other)?;
    // may's configuration has to be set before anything starts the runtime.
    if let Some(workers) = args.next() {
        let workers: usize = workers.parse().map_err(io::Error::other)?;
        may::config().set_workers(workers);
    }
    match args.next().as_deref() {
        None => {}
        Some("pin") => may::config().set_worker_pin(true),
        Some("nopin") => may::config().set_worker_pin(false),
        Some(other) => return Err(io::Error::other(format!("pin or nopin, not {other}"))),
    }
    let server = FixedBody::new(small).start(addr.as_str())?;
    println!(
        "may_minihttp listening on {addr}, {} workers",
        may::config().get_workers()
    );
    server
        .join()
        .map_err(|_| io::Error::other("server panicked"))
}
