//! A small router: exact paths and path prefixes, per method, with a
//! fallback handler (the static files, say).

use std::sync::Arc;

use crate::handler::{Handler, IntoResponse};
use crate::request::{Method, Request};
use crate::response::Response;
use crate::status::StatusCode;

/// Where a route applies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Exactly this path.
    Exact(String),
    /// This path and everything below it: `/api` matches `/api`, `/api/`
    /// and `/api/x`, but not `/apix`.
    Prefix(String),
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(p) => p == path,
            Pattern::Prefix(p) => {
                let p = p.trim_end_matches('/');
                path == p || (path.starts_with(p) && path[p.len()..].starts_with('/'))
            }
        }
    }

    /// Exact routes win over prefixes, longer prefixes over shorter ones.
    fn rank(&self) -> (u8, usize) {
        match self {
            Pattern::Exact(p) => (1, p.len()),
            Pattern::Prefix(p) => (0, p.trim_end_matches('/').len()),
        }
    }
}

struct Route {
    pattern: Pattern,
    /// `None` answers every method.
    method: Option<Method>,
    handler: Arc<dyn Handler>,
}

/// Routes requests by path (matched on the path as sent, before
/// percent-decoding) and method.
///
/// A request goes to the best-matching pattern (an exact path beats a
/// prefix, a longer prefix beats a shorter one). If that pattern has routes
/// but none for the request's method, the answer is 405 with `Allow`
/// listing the methods it has (`HEAD` is answered by a `GET` route). A
/// request that matches no pattern goes to the fallback, or gets 404.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    fallback: Option<Arc<dyn Handler>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|r| (&r.pattern, &r.method))
                    .collect::<Vec<_>>(),
            )
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

/// What a route method takes: a closure from a request to anything that
/// converts into a response. Closures need no type annotations:
/// `router.get("/", |req| ...)`.
macro_rules! method_routes {
    ($($(#[$doc:meta])* $name:ident => $method:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<F, R>(self, path: &str, handler: F) -> Router
            where
                F: Fn(&Request) -> R + Send + Sync + 'static,
                R: IntoResponse,
            {
                self.route($method, path, handler)
            }
        )*
    };
}

impl Router {
    /// An empty router: everything is 404 until routes are added.
    pub fn new() -> Router {
        Router::default()
    }

    method_routes! {
        /// Answers `GET` (and so `HEAD`) on exactly `path`.
        get => Method::Get;
        /// Answers `POST` on exactly `path`.
        post => Method::Post;
        /// Answers `PUT` on exactly `path`.
        put => Method::Put;
        /// Answers `DELETE` on exactly `path`.
        delete => Method::Delete;
        /// Answers `PATCH` on exactly `path`.
        patch => Method::Patch;
    }

    /// Answers `method` on exactly `path`.
    ///
    /// # Panics
    /// If `path` does not start with `/`: no request could match it.
    pub fn route<F, R>(self, method: Method, path: &str, handler: F) -> Router
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(Pattern::Exact(path.into()), Some(method), handler)
    }

    /// Answers every method on exactly `path`.
    pub fn any<F, R>(self, path: &str, handler: F) -> Router
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(Pattern::Exact(path.into()), None, handler)
    }

    /// Answers every method on `prefix` and every path below it: `/api`
    /// matches `/api`, `/api/` and `/api/x`, not `/apix`.
    pub fn prefix<F, R>(self, prefix: &str, handler: F) -> Router
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(Pattern::Prefix(prefix.into()), None, handler)
    }

    /// A WebSocket endpoint on exactly `path` (feature `websocket`): see
    /// [`ws`](crate::ws).
    ///
    /// ```
    /// use coserve::Router;
    /// use coserve::ws::Ws;
    ///
    /// let app = Router::new().ws("/echo", Ws::new(|_req, mut ws| {
    ///     while let Ok(msg) = ws.recv() {
    ///         if ws.send(msg).is_err() {
    ///             break;
    ///         }
    ///     }
    /// }));
    /// ```
    #[cfg(feature = "websocket")]
    pub fn ws(self, path: &str, ws: impl Into<crate::ws::Ws>) -> Router {
        self.add(Pattern::Exact(path.into()), None, ws.into())
    }

    /// Answers what no route matches: a [`StaticFiles`](crate::StaticFiles),
    /// another router, or any [`Handler`]. Without one, that is a 404.
    pub fn fallback(mut self, handler: impl Handler) -> Router {
        self.fallback = Some(Arc::new(handler));
        self
    }

    fn add(mut self, pattern: Pattern, method: Option<Method>, handler: impl Handler) -> Router {
        let path = match &pattern {
            Pattern::Exact(p) | Pattern::Prefix(p) => p,
        };
        assert!(
            path.starts_with('/'),
            "a route's path starts with '/': {path:?} can never match"
        );
        self.routes.push(Route {
            pattern,
            method,
            handler: Arc::new(handler),
        });
        self
    }
}

impl Handler for Router {
    fn handle(&self, req: &Request) -> Response {
        let path = req.path();
        let best = self
            .routes
            .iter()
            .filter(|r| r.pattern.matches(path))
            .map(|r| r.pattern.rank())
            .max();
        let Some(best) = best else {
            return match &self.fallback {
                Some(fallback) => fallback.handle(req),
                None => Response::error(StatusCode::NOT_FOUND),
            };
        };
        let candidates = || {
            self.routes
                .iter()
                .filter(move |r| r.pattern.rank() == best && r.pattern.matches(path))
        };
        let method = req.method();
        let found = candidates()
            .find(|r| r.method.as_ref() == Some(method))
            .or_else(|| {
                candidates().find(|r| *method == Method::Head && r.method == Some(Method::Get))
            })
            .or_else(|| candidates().find(|r| r.method.is_none()));
        if let Some(route) = found {
            return route.handler.handle(req);
        }
        let mut allow: Vec<&str> = Vec::new();
        for r in candidates() {
            if let Some(m) = &r.method {
                for name in [m.as_str(), if *m == Method::Get { "HEAD" } else { "" }] {
                    if !name.is_empty() && !allow.contains(&name) {
                        allow.push(name);
                    }
                }
            }
        }
        Response::error(StatusCode::METHOD_NOT_ALLOWED).header("Allow", allow.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &'static str) -> impl Fn(&Request) -> &'static str + Send + Sync + 'static {
        move |_| name
    }

    fn call(router: &Router, method: &str, path: &str) -> (u16, String, Option<String>) {
        let req = Request::parse(format!("{method} {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let resp = router.handle(&req);
        let allow = resp.header_value("allow").map(str::to_string);
        let body = String::from_utf8_lossy(resp.body_ref().as_bytes().unwrap()).into_owned();
        (resp.status().as_u16(), body, allow)
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let r = Router::new()
            .prefix("/api", named("api"))
            .prefix("/api/v2/", named("v2"))
            .any("/api/time", named("time"));
        assert_eq!(call(&r, "GET", "/api/time").1, "time");
        assert_eq!(call(&r, "GET", "/api/other").1, "api");
        assert_eq!(call(&r, "GET", "/api").1, "api");
        assert_eq!(call(&r, "GET", "/api/v2/x").1, "v2");
        assert_eq!(call(&r, "GET", "/api/v2").1, "v2");
        assert_eq!(call(&r, "GET", "/apix").0, 404);
        assert_eq!(call(&r, "GET", "/api/time?q=1").1, "time");
    }

    #[test]
    fn methods_405_with_allow_and_head_via_get() {
        let r = Router::new()
            .get("/thing", named("get"))
            .post("/thing", named("post"));
        assert_eq!(call(&r, "GET", "/thing").1, "get");
        assert_eq!(call(&r, "HEAD", "/thing").1, "get");
        assert_eq!(call(&r, "POST", "/thing").1, "post");
        let (status, _, allow) = call(&r, "DELETE", "/thing");
        assert_eq!(status, 405);
        assert_eq!(allow.as_deref(), Some("GET, HEAD, POST"));
    }

    #[test]
    fn fallback_takes_what_no_route_matches() {
        let r = Router::new().get("/a", named("a")).fallback(named("files"));
        assert_eq!(call(&r, "GET", "/b").1, "files");
        assert_eq!(call(&r, "GET", "/a").1, "a");
        // A matched path with the wrong method is a 405, not the fallback.
        assert_eq!(call(&r, "PUT", "/a").0, 405);
    }

    #[test]
    fn closures_need_no_annotations() {
        let r = Router::new()
            .get("/len", |req| req.path().len().to_string())
            .post("/echo", |req| req.body().to_vec())
            .any("/unit", |_| ());
        assert_eq!(call(&r, "GET", "/len").1, "4");
        assert_eq!(call(&r, "PUT", "/unit").0, 204);
    }

    #[test]
    #[should_panic(expected = "starts with '/'")]
    fn a_path_without_a_slash_is_a_mistake() {
        let _ = Router::new().get("len", |_| "never");
    }
}
