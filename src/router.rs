//! A small router: exact paths, patterns with `:name` parameters and a
//! trailing `*name` wildcard, and path prefixes, per method, with a
//! fallback handler (the static files, say).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use foldhash::fast::RandomState;
use percent_encoding::percent_decode_str;

use crate::handler::{Handler, IntoResponse};
use crate::request::{Method, Request};
use crate::request_body::BodyPolicy;
use crate::response::Response;
use crate::status::StatusCode;

/// One segment of a pattern, between two slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Exactly this text (compared with the segment as sent).
    Literal(Box<str>),
    /// `:name`: any one segment that is not empty.
    Param(Arc<str>),
    /// `*name`, always the last: the rest of the path, slashes and all,
    /// if it is not empty.
    Wildcard(Arc<str>),
}

impl Segment {
    const LITERAL: u8 = 2;
    const PARAM: u8 = 1;
    const WILDCARD: u8 = 0;

    /// A literal beats a parameter, a parameter a wildcard.
    fn specificity(&self) -> u8 {
        match self {
            Segment::Literal(_) => Segment::LITERAL,
            Segment::Param(_) => Segment::PARAM,
            Segment::Wildcard(_) => Segment::WILDCARD,
        }
    }

    /// Whether two segments match the same text: equal literals, or two
    /// parameters (or two wildcards) whatever their names.
    fn same_shape(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Param(_))
            | (Segment::Wildcard(_), Segment::Wildcard(_)) => true,
            _ => false,
        }
    }
}

/// A route path with parameters: `/users/:id`, `/static/*path`.
#[derive(Debug)]
struct Pattern {
    /// As written, for messages.
    text: Box<str>,
    segments: Box<[Segment]>,
    params: usize,
}

impl Pattern {
    /// `path` as a pattern, or `None` when no segment starts with `:` or
    /// `*` (it is an exact path).
    ///
    /// # Panics
    /// On a parameter without a name, a wildcard that is not last, or a
    /// name used twice.
    fn parse(path: &str) -> Option<Pattern> {
        let parts = || path[1..].split('/');
        if !parts().any(|s| s.starts_with([':', '*'])) {
            return None;
        }
        let count = parts().count();
        let mut names: Vec<&str> = Vec::new();
        let segments = parts()
            .enumerate()
            .map(|(i, part)| {
                let Some(kind) = part.chars().next().filter(|c| matches!(c, ':' | '*')) else {
                    return Segment::Literal(part.into());
                };
                let name = &part[1..];
                assert!(
                    !name.is_empty(),
                    "route {path:?}: a parameter needs a name (`{kind}name`)"
                );
                assert!(
                    !names.contains(&name),
                    "route {path:?} names the parameter {name:?} twice"
                );
                names.push(name);
                if kind == ':' {
                    Segment::Param(name.into())
                } else {
                    assert!(
                        i + 1 == count,
                        "route {path:?}: the wildcard `{part}` must be the last segment"
                    );
                    Segment::Wildcard(name.into())
                }
            })
            .collect();
        Some(Pattern {
            text: path.into(),
            segments,
            params: names.len(),
        })
    }

    /// Whether the pattern matches `path` (as sent, still
    /// percent-encoded); `capture` is given each parameter's name and where
    /// its value lies in `path`. Allocates nothing.
    fn matches(&self, path: &str, mut capture: impl FnMut(&Arc<str>, Range<usize>)) -> bool {
        if !path.starts_with('/') {
            return false;
        }
        // Where the next segment starts; `None` once the path is used up.
        let mut next = Some(1);
        for segment in &self.segments {
            let Some(start) = next else {
                return false;
            };
            let end = path[start..].find('/').map_or(path.len(), |i| start + i);
            match segment {
                Segment::Wildcard(name) => {
                    if start == path.len() {
                        return false;
                    }
                    capture(name, start..path.len());
                    return true;
                }
                Segment::Literal(text) => {
                    if path[start..end] != **text {
                        return false;
                    }
                }
                Segment::Param(name) => {
                    if start == end {
                        return false;
                    }
                    capture(name, start..end);
                }
            }
            next = (end < path.len()).then_some(end + 1);
        }
        next.is_none()
    }

    /// Each segment's [`Segment::specificity`]: of two routes that match
    /// one path, the greater sequence wins.
    fn specificity(&self) -> impl Iterator<Item = u8> + '_ {
        self.segments.iter().map(Segment::specificity)
    }

    /// Whether two patterns match exactly the same paths.
    fn same_shape(&self, other: &Pattern) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.same_shape(b))
    }
}

/// The routes of one path, exact, pattern or prefix: a handler per method,
/// and perhaps one for every method.
#[derive(Default)]
struct Endpoint {
    /// `None` answers every method.
    routes: Vec<(Option<Method>, Arc<dyn Handler>)>,
}

impl Endpoint {
    /// The route for `method`: its own, `GET`'s for `HEAD`, or the one for
    /// every method.
    fn find(&self, method: &Method) -> Option<&dyn Handler> {
        let by = |want: Option<&Method>| self.routes.iter().find(|(m, _)| m.as_ref() == want);
        by(Some(method))
            .or_else(|| {
                if *method == Method::Head {
                    by(Some(&Method::Get))
                } else {
                    None
                }
            })
            .or_else(|| by(None))
            .map(|(_, handler)| &**handler)
    }

    /// `405`, with `Allow` listing the methods the path has.
    fn not_allowed(&self) -> Response {
        let mut allow: Vec<&str> = Vec::new();
        for (m, _) in &self.routes {
            if let Some(m) = m {
                for name in [m.as_str(), if *m == Method::Get { "HEAD" } else { "" }] {
                    if !name.is_empty() && !allow.contains(&name) {
                        allow.push(name);
                    }
                }
            }
        }
        Response::error(StatusCode::METHOD_NOT_ALLOWED).header("Allow", allow.join(", "))
    }

    fn methods(&self) -> Vec<&str> {
        self.routes
            .iter()
            .map(|(m, _)| m.as_ref().map_or("*", Method::as_str))
            .collect()
    }
}

/// A prefix route's path, and its routes.
struct Prefix {
    /// Without a trailing slash (`/` is the empty prefix).
    path: Box<str>,
    /// How many segments `path` has.
    segments: usize,
    endpoint: Endpoint,
}

impl Prefix {
    /// Whether the prefix covers `path`: `/api` covers `/api`, `/api/` and
    /// `/api/x`, not `/apix`.
    fn covers(&self, path: &str) -> bool {
        path.strip_prefix(&*self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Ranked as its literal segments and then a wildcard: `/api` as
    /// `/api/*rest`.
    fn specificity(&self) -> impl Iterator<Item = u8> {
        std::iter::repeat_n(Segment::LITERAL, self.segments)
            .chain(std::iter::once(Segment::WILDCARD))
    }
}

/// Routes requests by path and method.
///
/// A route's path is one of:
/// - an exact path, `/about`: that path only;
/// - a pattern, a path with parameters: a segment `:name` matches any one
///   segment that is not empty, and a last segment `*name` (a wildcard)
///   matches the rest of the path, slashes and all, if it is not empty:
///   `/static/*path` matches `/static/a/b.css` (`path` is `a/b.css`) but
///   neither `/static` nor `/static/`, as in axum. A handler reads the
///   values, percent-decoded, with [`Request::param`];
/// - a prefix ([`Router::prefix`]): a path and everything below it.
///
/// Paths are matched as sent, before percent-decoding, so an encoded slash
/// never separates segments: `/users/a%2Fb` matches `/users/:id`, and
/// `id` is `a/b`.
///
/// # Which route answers
/// 1. The exact path equal to the request's.
/// 2. Else the most specific of the patterns and prefixes that match.
///    Of two, the first segment where they differ decides: a literal
///    beats a parameter, a parameter beats a wildcard, and a prefix counts
///    as its segments followed by a wildcard (`/api` as `/api/*rest`, but
///    it matches `/api` and `/api/` too). So for `/users/7`, `/users/:id`
///    beats `/users/*rest`, which beats `/*path`; the prefix `/api/v2`
///    beats the prefix `/api` for `/api/v2/x`, and `/api` beats `/*path`
///    for `/api/x`. A pattern beats a prefix it ties with (`/api/*rest`
///    and the prefix `/api`).
/// 3. Else the [fallback](Router::fallback), or `404`.
///
/// The path chosen decides alone: if it has routes, but none for the
/// request's method, the answer is `405` with `Allow` listing the methods it
/// has (`HEAD` is answered by a `GET` route), even where a route further
/// down the list has the method. A pattern route whose parameter would not
/// be UTF-8 once decoded (`/users/%FF`) is answered `400`, not run.
///
/// Two patterns that match the same paths and differ only in their
/// parameters' names (`/a/:x` and `/a/:y`) are a mistake: adding the
/// second panics. The same pattern added again with another method joins
/// the first.
///
/// # Parameters and nested routers
/// The parameters belong to the request. A router that picks a pattern
/// route sets them, replacing any an outer router set; one that picks an
/// exact path or a prefix leaves them as they were. A router nested as a
/// prefix route's handler or as a fallback sees the whole path (nothing is
/// stripped), so its routes spell paths out in full, and its handlers see
/// its own pattern's parameters if it picked a pattern, else the outer
/// router's.
///
/// ```
/// use coserve::{Handler, Request, Router};
///
/// let app = Router::new()
///     .get("/users/new", |_| "the sign-up form")
///     .get("/users/:id", |req| format!("user {}", req.param("id").unwrap()))
///     .get("/users/:id/posts/:post", |req| {
///         format!("post {} of {}", req.param("post").unwrap(), req.param("id").unwrap())
///     })
///     .get("/static/*path", |req| format!("file {}", req.param("path").unwrap()));
///
/// let get = |target: &str| {
///     let req = Request::parse(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).unwrap();
///     let resp = app.handle(&req);
///     String::from_utf8_lossy(resp.body_ref().as_bytes().unwrap()).into_owned()
/// };
/// assert_eq!(get("/users/new"), "the sign-up form");
/// assert_eq!(get("/users/Ann%20Lee"), "user Ann Lee");
/// assert_eq!(get("/users/ann/posts/7"), "post 7 of ann");
/// assert_eq!(get("/static/css/site.css"), "file css/site.css");
/// assert_eq!(get("/static/"), "404 Not Found\n");
/// ```
#[derive(Default)]
pub struct Router {
    /// Looked up by the whole path, so that an exact route costs a hash
    /// and allocates nothing however many patterns there are.
    exact: HashMap<Box<str>, Endpoint, RandomState>,
    /// In the order first added.
    patterns: Vec<(Pattern, Endpoint)>,
    prefixes: Vec<Prefix>,
    fallback: Option<Arc<dyn Handler>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut exact: Vec<_> = self
            .exact
            .iter()
            .map(|(p, e)| (&**p, e.methods()))
            .collect();
        exact.sort();
        f.debug_struct("Router")
            .field("exact", &exact)
            .field(
                "patterns",
                &self
                    .patterns
                    .iter()
                    .map(|(p, e)| (&*p.text, e.methods()))
                    .collect::<Vec<_>>(),
            )
            .field(
                "prefixes",
                &self
                    .prefixes
                    .iter()
                    .map(|p| (&*p.path, p.endpoint.methods()))
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
        /// Answers `GET` (and so `HEAD`) on `path`, an exact path or a
        /// pattern (see [`Router`]).
        get => Method::Get;
        /// Answers `POST` on `path`, an exact path or a pattern.
        post => Method::Post;
        /// Answers `PUT` on `path`, an exact path or a pattern.
        put => Method::Put;
        /// Answers `DELETE` on `path`, an exact path or a pattern.
        delete => Method::Delete;
        /// Answers `PATCH` on `path`, an exact path or a pattern.
        patch => Method::Patch;
    }

    /// Answers `method` on `path`: an exact path, or a pattern with
    /// `:name` parameters and perhaps a last `*name` wildcard (see
    /// [`Router`]).
    ///
    /// # Panics
    /// If `path` does not start with `/` (no request could match it); if a
    /// parameter has no name, a wildcard is not the last segment, or a
    /// pattern names a parameter twice; if the pattern matches the same
    /// paths as one added before with other parameter names.
    pub fn route<F, R>(self, method: Method, path: &str, handler: F) -> Router
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(path, Some(method), handler)
    }

    /// Answers `method` on `path` with any [`Handler`], not only a
    /// closure: a handler with middleware around it
    /// ([`Handler::around`]), another router, static files. Panics as
    /// [`Router::route`] does.
    ///
    /// ```
    /// use coserve::{Handler, Method, Next, Request, Response, Router};
    ///
    /// let admin = (|_req: &Request| "the admin page")
    ///     .around(|req: &Request, next: Next<'_>| next.run(req).header("Cache-Control", "no-store"));
    /// let app = Router::new().handler(Method::Get, "/admin", admin);
    /// ```
    pub fn handler(self, method: Method, path: &str, handler: impl Handler) -> Router {
        self.add(path, Some(method), handler)
    }

    /// Answers every method on `path`, an exact path or a pattern.
    pub fn any<F, R>(self, path: &str, handler: F) -> Router
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add(path, None, handler)
    }

    /// Answers every method on `prefix` and every path below it: `/api`
    /// matches `/api`, `/api/` and `/api/x`, not `/apix`. A prefix is a
    /// literal path; a pattern ending in `*rest` is the prefix with a
    /// parameter. How it ranks beside patterns: see [`Router`].
    ///
    /// # Panics
    /// If `prefix` does not start with `/`, or has a segment starting with
    /// `:` or `*`.
    pub fn prefix<F, R>(mut self, prefix: &str, handler: F) -> Router
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        check_starts_with_slash(prefix);
        assert!(
            Pattern::parse(prefix).is_none(),
            "the prefix {prefix:?} has a parameter: a prefix is literal, and a \
             pattern ending in `*rest` is the prefix with parameters"
        );
        let path = prefix.trim_end_matches('/');
        let route = (None, Arc::new(handler) as Arc<dyn Handler>);
        match self.prefixes.iter_mut().find(|p| *p.path == *path) {
            Some(p) => p.endpoint.routes.push(route),
            None => self.prefixes.push(Prefix {
                path: path.into(),
                segments: path.matches('/').count(),
                endpoint: Endpoint {
                    routes: vec![route],
                },
            }),
        }
        self
    }

    /// A WebSocket endpoint on `path`, an exact path or a pattern
    /// (feature `websocket`): see [`ws`](crate::ws).
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
        self.add(path, None, ws.into())
    }

    /// Answers what no route matches: a [`StaticFiles`](crate::StaticFiles),
    /// another router, or any [`Handler`]. Without one, that is a 404.
    pub fn fallback(mut self, handler: impl Handler) -> Router {
        self.fallback = Some(Arc::new(handler));
        self
    }

    fn add(mut self, path: &str, method: Option<Method>, handler: impl Handler) -> Router {
        check_starts_with_slash(path);
        let route = (method, Arc::new(handler) as Arc<dyn Handler>);
        let Some(pattern) = Pattern::parse(path) else {
            self.exact
                .entry(path.into())
                .or_default()
                .routes
                .push(route);
            return self;
        };
        match self
            .patterns
            .iter_mut()
            .find(|(p, _)| p.same_shape(&pattern))
        {
            Some((existing, endpoint)) => {
                assert!(
                    existing.segments == pattern.segments,
                    "route {:?} conflicts with {:?}: they match the same paths \
                     under other parameter names",
                    pattern.text,
                    existing.text
                );
                endpoint.routes.push(route);
            }
            None => self.patterns.push((
                pattern,
                Endpoint {
                    routes: vec![route],
                },
            )),
        }
        self
    }

    /// Answers with a pattern's route for the method, after leaving its
    /// parameters in the request.
    fn dispatch_pattern(&self, pattern: &Pattern, endpoint: &Endpoint, req: &Request) -> Response {
        let Some(handler) = endpoint.find(req.method()) else {
            return endpoint.not_allowed();
        };
        let path = req.path();
        let mut params = Vec::with_capacity(pattern.params);
        pattern.matches(path, |name, range| params.push((Arc::clone(name), range)));
        let utf8 = |range: &Range<usize>| {
            percent_decode_str(&path[range.clone()])
                .decode_utf8()
                .is_ok()
        };
        if !params.iter().all(|(_, range)| utf8(range)) {
            return Response::error(StatusCode::BAD_REQUEST);
        }
        req.set_params(params.into_boxed_slice());
        handler.handle(req)
    }
}

fn check_starts_with_slash(path: &str) {
    assert!(
        path.starts_with('/'),
        "a route's path starts with '/': {path:?} can never match"
    );
}

/// Where a path leads in a router.
enum Found<'a> {
    /// An exact path or a prefix.
    Endpoint(&'a Endpoint),
    /// A pattern, whose parameters are still to be read.
    Pattern(&'a Pattern, &'a Endpoint),
    Fallback(&'a dyn Handler),
    Nothing,
}

impl Router {
    fn find(&self, path: &str) -> Found<'_> {
        if let Some(endpoint) = self.exact.get(path) {
            return Found::Endpoint(endpoint);
        }
        // Two patterns with the same specificity cannot both match a path
        // (`add` refuses the second), nor can two prefixes.
        let pattern = self
            .patterns
            .iter()
            .filter(|(p, _)| p.matches(path, |_, _| {}))
            .max_by(|(a, _), (b, _)| a.specificity().cmp(b.specificity()));
        let prefix = self
            .prefixes
            .iter()
            .filter(|p| p.covers(path))
            .max_by_key(|p| p.segments);
        match (pattern, prefix) {
            (Some((pattern, _)), Some(prefix))
                if prefix.specificity().cmp(pattern.specificity()) == Ordering::Greater =>
            {
                Found::Endpoint(&prefix.endpoint)
            }
            (Some((pattern, endpoint)), _) => Found::Pattern(pattern, endpoint),
            (None, Some(prefix)) => Found::Endpoint(&prefix.endpoint),
            (None, None) => match &self.fallback {
                Some(fallback) => Found::Fallback(&**fallback),
                None => Found::Nothing,
            },
        }
    }
}

impl Handler for Router {
    fn handle(&self, req: &Request) -> Response {
        match self.find(req.path()) {
            Found::Endpoint(endpoint) => match endpoint.find(req.method()) {
                Some(handler) => handler.handle(req),
                None => endpoint.not_allowed(),
            },
            Found::Pattern(pattern, endpoint) => self.dispatch_pattern(pattern, endpoint, req),
            Found::Fallback(fallback) => fallback.handle(req),
            Found::Nothing => Response::error(StatusCode::NOT_FOUND),
        }
    }

    /// The policy of the route `req` matches: each route's handler says
    /// how it takes its body ([`Handler::stream_body`],
    /// [`Handler::max_body`]).
    fn body_policy(&self, req: &Request) -> BodyPolicy {
        let handler = match self.find(req.path()) {
            Found::Endpoint(endpoint) | Found::Pattern(_, endpoint) => endpoint.find(req.method()),
            Found::Fallback(fallback) => Some(fallback),
            Found::Nothing => None,
        };
        handler.map_or(BodyPolicy::Buffer, |h| h.body_policy(req))
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

    fn echo(names: &'static [&'static str]) -> impl Fn(&Request) -> String + Send + Sync + 'static {
        move |req| {
            names
                .iter()
                .map(|n| format!("{n}={}", req.param(n).as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    #[test]
    fn parameters_and_wildcards_match_segments_and_decode() {
        let r = Router::new()
            .get("/users/:id", echo(&["id"]))
            .get("/users/:id/posts/:post", echo(&["id", "post"]))
            .get("/static/*path", echo(&["path"]));
        assert_eq!(call(&r, "GET", "/users/7").1, "id=7");
        assert_eq!(call(&r, "GET", "/users/a%20b?x=1").1, "id=a b");
        assert_eq!(call(&r, "GET", "/users/a%2Fb").1, "id=a/b");
        assert_eq!(call(&r, "GET", "/users/7/posts/9").1, "id=7 post=9");
        assert_eq!(call(&r, "GET", "/static/a/b/c.css").1, "path=a/b/c.css");
        assert_eq!(call(&r, "GET", "/static//x").1, "path=/x");
        assert_eq!(call(&r, "GET", "/static/a/").1, "path=a/");
        for miss in [
            "/users",
            "/users/",
            "/users/7/",
            "/users//posts/9",
            "/users/7/posts",
            "/static",
            "/static/",
            "/staticx/a",
            "*",
        ] {
            assert_eq!(call(&r, "GET", miss).0, 404, "{miss}");
        }
    }

    #[test]
    fn exact_beats_parameter_beats_wildcard() {
        let r = Router::new()
            .prefix("/u", named("prefix"))
            .get("/*all", named("root wildcard"))
            .get("/u/*rest", named("wildcard"))
            .get("/u/:id", named("param"))
            .get("/u/:id/edit", named("param edit"))
            .get("/u/new", named("exact"))
            .get("/:x/new/:y", named("param new"))
            .get("/:x/:y/z", named("params z"));
        assert_eq!(call(&r, "GET", "/u/new").1, "exact");
        assert_eq!(call(&r, "GET", "/u/7").1, "param");
        assert_eq!(call(&r, "GET", "/u/7/edit").1, "param edit");
        assert_eq!(call(&r, "GET", "/u/7/x").1, "wildcard");
        assert_eq!(call(&r, "GET", "/a/b").1, "root wildcard");
        // The first segment that differs decides: `u` beats `:x`, however
        // specific the rest.
        assert_eq!(call(&r, "GET", "/u/new/z").1, "wildcard");
        assert_eq!(call(&r, "GET", "/v/new/z").1, "param new");
        assert_eq!(call(&r, "GET", "/v/w/z").1, "params z");
        // The prefix ranks as `/u/*rest` would, but matches `/u` and `/u/`
        // too.
        assert_eq!(call(&r, "GET", "/u").1, "prefix");
        assert_eq!(call(&r, "GET", "/u/").1, "prefix");
    }

    #[test]
    fn a_prefix_ranks_as_its_segments_and_a_wildcard() {
        let r = Router::new()
            .get("/*all", named("root wildcard"))
            .prefix("/api", named("api"))
            .prefix("/api/v2/", named("v2"))
            .get("/api/:id", named("param"))
            .get("/api/v2/*rest", named("v2 wildcard"))
            .get("/:x/v2/y", named("param v2 y"))
            .prefix("/", named("root prefix"));
        assert_eq!(call(&r, "GET", "/api").1, "api");
        assert_eq!(call(&r, "GET", "/api/").1, "api");
        assert_eq!(call(&r, "GET", "/api/7").1, "param");
        assert_eq!(call(&r, "GET", "/api/7/x").1, "api");
        // `v2` beats `:id` where they differ.
        assert_eq!(call(&r, "GET", "/api/v2").1, "v2");
        assert_eq!(call(&r, "GET", "/api/v2/").1, "v2");
        // A tie goes to the pattern.
        assert_eq!(call(&r, "GET", "/api/v2/x").1, "v2 wildcard");
        assert_eq!(call(&r, "GET", "/api/v2/y").1, "v2 wildcard");
        assert_eq!(call(&r, "GET", "/other/x").1, "root wildcard");
        assert_eq!(call(&r, "GET", "/other/v2/y").1, "param v2 y");
        assert_eq!(call(&r, "GET", "/").1, "root prefix");
    }

    #[test]
    fn a_pattern_has_methods_405_and_head_like_an_exact_path() {
        let r = Router::new()
            .get("/items/:id", named("get"))
            .delete("/items/:id", named("delete"))
            .any("/any/:id", named("any"));
        assert_eq!(call(&r, "HEAD", "/items/1").1, "get");
        assert_eq!(call(&r, "DELETE", "/items/1").1, "delete");
        let (status, _, allow) = call(&r, "PUT", "/items/1");
        assert_eq!((status, allow.as_deref()), (405, Some("GET, HEAD, DELETE")));
        assert_eq!(call(&r, "PATCH", "/any/1").1, "any");
    }

    #[test]
    fn a_parameter_that_is_not_utf8_once_decoded_is_a_400() {
        let r = Router::new()
            .get("/u/:id", echo(&["id"]))
            .get("/f/*path", echo(&["path"]));
        assert_eq!(call(&r, "GET", "/u/%FF").0, 400);
        assert_eq!(call(&r, "GET", "/f/ok/%C3").0, 400);
        assert_eq!(call(&r, "GET", "/u/%C3%A9").1, "id=\u{e9}");
        // An escape that is not one is kept as sent.
        assert_eq!(call(&r, "GET", "/u/%zz").1, "id=%zz");
        // The method is checked first.
        assert_eq!(call(&r, "POST", "/u/%FF").0, 405);
    }

    #[test]
    fn a_nested_router_sees_the_whole_path_and_the_innermost_parameters() {
        let inner = Arc::new(
            Router::new()
                .get("/api/v1/items/:item", echo(&["org", "item"]))
                .get("/api/v1/status", echo(&["org"])),
        );
        let outer = Router::new()
            .get("/orgs/:org/*rest", {
                let inner = Arc::clone(&inner);
                move |req| inner.handle(req)
            })
            .prefix("/api", move |req| inner.handle(req))
            .fallback(Router::new().get("/files/*path", echo(&["path"])));
        assert_eq!(call(&outer, "GET", "/api/v1/items/3").1, "org=- item=3");
        assert_eq!(call(&outer, "GET", "/api/v1/status").1, "org=-");
        assert_eq!(call(&outer, "GET", "/files/a/b").1, "path=a/b");
        // A pattern route's handler that asks an inner router: the inner
        // router matches the same whole path (here, nothing).
        assert_eq!(call(&outer, "GET", "/orgs/acme/x").0, 404);
    }

    #[test]
    fn an_inner_pattern_replaces_outer_parameters_and_an_exact_path_keeps_them() {
        let inner = Router::new()
            .get("/orgs/:org/items/:item", echo(&["org", "item", "rest"]))
            .get("/orgs/acme/status", echo(&["org", "rest"]));
        let outer = Router::new().get("/orgs/:org/*rest", move |req: &Request| inner.handle(req));
        assert_eq!(
            call(&outer, "GET", "/orgs/acme/items/3").1,
            "org=acme item=3 rest=-"
        );
        assert_eq!(
            call(&outer, "GET", "/orgs/acme/status").1,
            "org=acme rest=status"
        );
    }

    #[test]
    #[should_panic(expected = r#"route "/a/:y" conflicts with "/a/:x""#)]
    fn patterns_that_differ_only_in_names_conflict() {
        let _ = Router::new().get("/a/:x", |_| "x").post("/a/:y", |_| "y");
    }

    #[test]
    fn the_same_pattern_takes_more_methods_and_other_shapes_coexist() {
        let r = Router::new()
            .get("/a/:x", named("get"))
            .post("/a/:x", named("post"))
            .get("/a/:y/b", named("deeper"))
            .get("/a/*rest", named("rest"));
        assert_eq!(call(&r, "POST", "/a/1").1, "post");
        assert_eq!(call(&r, "GET", "/a/1/b").1, "deeper");
        assert_eq!(call(&r, "GET", "/a/1/c").1, "rest");
    }

    #[test]
    fn malformed_patterns_panic_with_the_reason() {
        for (path, why) in [
            ("/a/:", "needs a name"),
            ("/a/*", "needs a name"),
            ("/a/*rest/b", "must be the last segment"),
            ("/a/:x/:x", "twice"),
            ("/a/:x/*x", "twice"),
        ] {
            let message = std::panic::catch_unwind(|| Router::new().get(path, |_| ""))
                .expect_err(path)
                .downcast::<String>()
                .map(|m| *m)
                .unwrap_or_default();
            assert!(message.contains(why), "{path}: {message}");
        }
        let message = std::panic::catch_unwind(|| Router::new().prefix("/a/:x", |_| ""))
            .expect_err("a prefix with a parameter")
            .downcast::<String>()
            .map(|m| *m)
            .unwrap_or_default();
        assert!(message.contains("a prefix is literal"), "{message}");
        // `:` or `*` inside a segment is text.
        let r = Router::new().get("/a:b/c*", named("literal"));
        assert_eq!(call(&r, "GET", "/a:b/c*").1, "literal");
        assert_eq!(call(&r, "GET", "/x/c*").0, 404);
    }
}
