//! Handlers: a request in, anything that converts into a response out, in
//! blocking style.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::body::BodyError;
use crate::request::Request;
use crate::request_body::{BodyPolicy, WithBody};
use crate::response::{Body, Response};
use crate::status::StatusCode;

/// Answers requests. One value is shared by every connection, so it takes
/// `&self` and must be `Send + Sync`.
///
/// A handler runs on the connection's coroutine: it may block in
/// coroutine-aware ways (may's sockets, `may::coroutine::sleep`, may's
/// channels), which park only that coroutine. Work that blocks the thread
/// (`std::fs`, a C library) goes through [`blocking()`](crate::blocking()).
///
/// Closures `Fn(&Request) -> R`, where `R` is [`IntoResponse`], are
/// handlers; so are [`Router`](crate::Router) and
/// [`StaticFiles`](crate::StaticFiles). A route method infers a closure's
/// argument type (`router.get("/", |req| ...)`); where any handler will do
/// ([`Server::serve`](crate::Server::serve), [`Router::fallback`](crate::Router::fallback)),
/// Rust cannot, so a closure there names it: `|req: &Request| ...`.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: &Request) -> Response;

    /// This handler with `f` around it: `f(req, next)` runs for every
    /// request and decides what happens, calling `next.run(req)` to run
    /// this handler (or not, to answer itself). Middleware for timing,
    /// authentication, CORS, headers: see [`Next`](crate::Next). Added
    /// layers wrap the ones before, so the last added runs first.
    ///
    /// ```
    /// use coserve::{Handler, Request, Router};
    ///
    /// struct User(String);
    /// let app = Router::new()
    ///     .get("/me", |req| format!("hello {}", req.extension::<User>().unwrap().0))
    ///     .around(|req: &Request, next: coserve::Next<'_>| {
    ///         if req.header_str("authorization") != Some("Bearer ann-token") {
    ///             return coserve::Response::error(coserve::StatusCode::UNAUTHORIZED);
    ///         }
    ///         req.set_extension(User("ann".into()));
    ///         next.run(req)
    ///     });
    /// let req = Request::parse(b"GET /me HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer ann-token\r\n\r\n").unwrap();
    /// assert_eq!(app.handle(&req).body_ref().as_bytes(), Some(&b"hello ann"[..]));
    /// ```
    fn around<F, R>(self, f: F) -> crate::middleware::Around<Self, F>
    where
        Self: Sized,
        F: Fn(&Request, crate::middleware::Next<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        crate::middleware::Around::new(self, f)
    }

    /// How the connection reads the body of `req` for this handler: whole
    /// before [`Handler::handle`] runs (the default), or streamed as the
    /// handler reads it. Asked once the head is in, only for a request
    /// with a body. Set it with [`Handler::max_body`] or
    /// [`Handler::stream_body`]; a handler that wraps another passes the
    /// question on, as [`Router`](crate::Router) does to the route that
    /// `req` matches. It is asked before the router has set the route's
    /// parameters: [`Request::param`] is not there yet.
    fn body_policy(&self, req: &Request) -> BodyPolicy {
        let _ = req;
        BodyPolicy::Buffer
    }

    /// This handler with its own limit on the body it is given whole, in
    /// place of [`Config::max_body`](crate::Config::max_body): larger for
    /// an upload route, smaller for a JSON API. A larger body is refused
    /// with `413` before the handler runs.
    ///
    /// ```
    /// use coserve::{Handler, Method, Request, Router};
    ///
    /// let notes = |req: &Request| format!("{} bytes", req.body().len());
    /// let app = Router::new().handler(Method::Post, "/notes", notes.max_body(64 * 1024));
    /// # let _ = app;
    /// ```
    fn max_body(self, bytes: u64) -> WithBody<Self>
    where
        Self: Sized,
    {
        WithBody::new(self, BodyPolicy::BufferMax(bytes))
    }

    /// This handler with its body streamed: it runs as soon as the head
    /// is in and reads the body with [`Request::body_reader`], which parks
    /// only its coroutine, so that an upload never has to fit in memory.
    /// A body over `max` bytes is refused with `413`: by its
    /// `Content-Length` before the handler runs, a chunked one by the read
    /// that passes `max`. Each read waits at most the server's
    /// [`Config::body_timeout`](crate::Config::body_timeout).
    fn stream_body(self, max: u64) -> WithBody<Self>
    where
        Self: Sized,
    {
        WithBody::new(self, BodyPolicy::Stream(max))
    }
}

impl<F, R> Handler for F
where
    F: Fn(&Request) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    fn handle(&self, req: &Request) -> Response {
        self(req).into_response()
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn handle(&self, req: &Request) -> Response {
        (**self).handle(req)
    }

    fn body_policy(&self, req: &Request) -> BodyPolicy {
        (**self).body_policy(req)
    }
}

/// What a handler may return: anything that becomes a [`Response`].
///
/// | returned | response |
/// |---|---|
/// | [`Response`] | itself |
/// | `&'static str`, `String` | `200`, `text/plain; charset=utf-8` |
/// | `Vec<u8>`, `Bytes` | `200`, `application/octet-stream` |
/// | [`StatusCode`] | that status with a short text body |
/// | `(StatusCode, T)` | `T`'s response with that status |
/// | `Result<T, E>` | `T`'s response, or `E`'s |
/// | `()` | `204 No Content` |
///
/// `Result` makes `?` work in handlers: with [`Error`] as `E`, any
/// `std::error::Error` converts into a `500` (logged, not shown to the
/// client), and `Error::new(status)` picks another status.
pub trait IntoResponse {
    /// Converts `self` into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::bytes("application/octet-stream", self)
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        Response::bytes("application/octet-stream", Body::from(self))
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::error(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(StatusCode::NO_CONTENT)
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(t) => t.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// An error a handler returns with `?`.
///
/// Any `std::error::Error` converts into one, as a `500 Internal Server
/// Error`: the client sees only the status, and the cause goes to the log
/// (the `coserve` target), since it may hold paths or other details the
/// client should not see. [`Error::new`] and [`Error::with_cause`] choose
/// the status.
///
/// ```
/// use coserve::{Error, Request, Response, StatusCode};
///
/// fn handler(req: &Request) -> Result<Response, Error> {
///     // No `id`: a 400.
///     let id = req.query_param("id").ok_or(StatusCode::BAD_REQUEST)?;
///     // An `id` that is not a number is the client's fault too: a 400, and
///     // the log says why.
///     let id: u32 = id
///         .parse()
///         .map_err(|e| Error::with_cause(StatusCode::BAD_REQUEST, e))?;
///     // Any other failure is the server's: a plain `?` makes it a 500.
///     let name = std::fs::read_to_string(format!("/srv/items/{id}"))?;
///     Ok(Response::text(name))
/// }
/// ```
pub struct Error {
    status: StatusCode,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error answered with `status` (and a short text body).
    pub fn new(status: StatusCode) -> Error {
        Error {
            status,
            cause: None,
        }
    }

    /// An error answered with `status`, whose cause is logged.
    pub fn with_cause(
        status: StatusCode,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error {
            status,
            cause: Some(cause.into()),
        }
    }

    /// The status the error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Error {
        let status = body_error_status(&e).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Error::with_cause(status, e)
    }
}

/// The status of a request body that could not be read, if `e` is one
/// (a [`BodyError`], or an `io::Error` from a
/// [`BodyReader`](crate::BodyReader) that holds one): the client's fault,
/// not the server's.
fn body_error_status(e: &(dyn std::error::Error + 'static)) -> Option<StatusCode> {
    // Also under other errors: a JSON parser's that read the body, say.
    let mut next = Some(e);
    while let Some(e) = next {
        let io_inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<BodyError>());
        if let Some(body) = io_inner.or_else(|| e.downcast_ref::<BodyError>()) {
            return Some(body.status());
        }
        next = e.source();
    }
    None
}

/// An I/O error answers as [`Error`] does: `500`, or the status of a
/// request body that could not be read.
impl IntoResponse for std::io::Error {
    fn into_response(self) -> Response {
        Error::from(self).into_response()
    }
}

impl From<StatusCode> for Error {
    fn from(status: StatusCode) -> Error {
        Error::new(status)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self.cause {
            Some(_) if self.status.is_server_error() => log::error!("handler failed: {self}"),
            Some(_) => log::debug!("handler answered {self}"),
            None => {}
        }
        Response::error(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request::parse(b"GET /x?n=7 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap()
    }

    fn run(h: impl Handler) -> Response {
        h.handle(&req())
    }

    #[test]
    fn closures_return_anything_that_converts() {
        assert_eq!(
            run(|_: &Request| "hi").body_ref().as_bytes(),
            Some(&b"hi"[..])
        );
        let r = run(|_: &Request| (StatusCode::CREATED, String::from("made")));
        assert_eq!(
            (r.status(), r.body_ref().as_bytes()),
            (StatusCode::CREATED, Some(&b"made"[..]))
        );
        assert_eq!(run(|_: &Request| ()).status(), StatusCode::NO_CONTENT);
        assert_eq!(
            run(|_: &Request| StatusCode::GONE).status(),
            StatusCode::GONE
        );
        let r = run(|_: &Request| Response::text("x").header("X-A", "1"));
        assert_eq!(r.header_value("x-a"), Some("1"));
    }

    #[test]
    fn question_mark_turns_errors_into_statuses() {
        fn parse_n(req: &Request) -> Result<String, Error> {
            let n: u32 = req
                .query_param("n")
                .ok_or(StatusCode::BAD_REQUEST)?
                .parse()?;
            Ok(format!("{}", n * 2))
        }
        fn parse_missing(req: &Request) -> Result<String, Error> {
            let n: u32 = req
                .query_param("m")
                .ok_or(StatusCode::BAD_REQUEST)?
                .parse()?;
            Ok(format!("{n}"))
        }
        fn parse_bad(_: &Request) -> Result<String, Error> {
            let n: u32 = "x".parse()?;
            Ok(format!("{n}"))
        }
        assert_eq!(run(parse_n).body_ref().as_bytes(), Some(&b"14"[..]));
        assert_eq!(run(parse_missing).status(), StatusCode::BAD_REQUEST);
        let r = run(parse_bad);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // The cause is logged, never sent.
        assert_eq!(
            r.body_ref().as_bytes(),
            Some(&b"500 Internal Server Error\n"[..])
        );
    }
}
