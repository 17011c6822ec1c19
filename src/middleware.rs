//! Middleware: code that runs around a handler, written as a plain
//! function of the request and the rest of the chain
//! ([`Handler::around`]). A middleware may answer by itself (a refused
//! login), change the response on its way out (headers, timing), or leave
//! values for the handler ([`Request::set_extension`]).

use std::fmt;

use crate::handler::{Handler, IntoResponse};
use crate::request::Request;
use crate::response::Response;

/// The rest of the chain, for a middleware to run.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    inner: &'a dyn Handler,
}

impl Next<'_> {
    /// Runs the wrapped handler (and the middleware inside this one).
    pub fn run(self, req: &Request) -> Response {
        self.inner.handle(req)
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next(..)")
    }
}

/// A handler with a middleware around it: what [`Handler::around`] makes.
pub struct Around<H, F> {
    inner: H,
    f: F,
}

impl<H, F> Around<H, F> {
    pub(crate) fn new(inner: H, f: F) -> Around<H, F> {
        Around { inner, f }
    }
}

impl<H, F> fmt::Debug for Around<H, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Around(..)")
    }
}

impl<H, F, R> Handler for Around<H, F>
where
    H: Handler,
    F: Fn(&Request, Next<'_>) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    fn handle(&self, req: &Request) -> Response {
        (self.f)(req, Next { inner: &self.inner }).into_response()
    }

    fn body_policy(&self, req: &Request) -> crate::BodyPolicy {
        self.inner.body_policy(req)
    }
}
