#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod blocking;
pub mod cache;
pub(crate) mod clock;
pub mod conditional;
pub mod conn;
mod engine;
pub mod files;
pub mod handler;
pub mod listing;
mod park;
pub mod range;
pub mod request;
pub mod response;
pub mod router;
pub mod server;

pub use blocking::blocking;
pub use cache::{CacheOptions, CacheStats};
pub use engine::EngineKind;
pub use files::{FilesOptions, StaticFiles};
pub use handler::Handler;
pub use request::{Limits, Method, ParseError, Request, Version};
pub use response::{Body, Part, Response};
pub use router::Router;
pub use server::{Config, Server, ServerHandle};
