//! The [`Handler`] trait: a request in, a response out, in blocking style.

use std::sync::Arc;

use crate::parse::Request;
use crate::response::Response;

/// Answers requests. One value is shared by every connection, so it takes
/// `&self` and must be `Send + Sync`.
///
/// A handler runs on the connection's coroutine: it may block in
/// coroutine-aware ways (may's sockets, `may::coroutine::sleep`, may's
/// channels), which park only that coroutine.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: &Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: &Request) -> Response {
        self(req)
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn handle(&self, req: &Request) -> Response {
        (**self).handle(req)
    }
}
