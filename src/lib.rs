#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod blocking;
pub(crate) mod clock;
pub mod conn;
mod engine;
pub mod files;
pub mod handler;
pub mod parse;
pub mod response;
pub mod router;
pub mod server;

pub use blocking::blocking;
pub use engine::EngineKind;
pub use files::cache::{CacheOptions, CacheStats};
pub use files::{FilesOptions, StaticFiles};
pub use handler::Handler;
pub use parse::{Limits, Method, ParseError, Request, Version};
pub use response::{Body, Part, Response};
pub use router::Router;
pub use server::{Config, Server, ServerHandle};
