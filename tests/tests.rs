//! coserve's integration tests: one binary, a module per area. Every test
//! starts its own server on `127.0.0.1:0` and talks to it over real sockets.

mod child;
mod memory;
mod util;

mod auth;
mod binding;
mod browser;
mod cache;
mod cli;
mod client;
mod conditional;
mod connection;
mod encoding;
mod examples;
mod faults;
mod files;
mod handlers;
mod hostile;
mod idle;
mod limits;
mod links;
mod load;
mod middleware;
mod modes;
mod outbound;
mod protocol;
mod proxy;
mod ranges;
mod routing;
mod shutdown;
mod sse;
mod timeout;
mod tls;
mod uploads;
mod websocket;
mod websocket_events;
