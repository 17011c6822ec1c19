//! coserve's integration tests: one binary, a module per area. Every test
//! starts its own server on `127.0.0.1:0` and talks to it over real sockets.

mod util;

mod cli;
mod client;
mod files;
mod limits;
mod protocol;
