//! Middleware (`Handler::around`) and request extensions, on both engines:
//! the order layers run in, a layer that answers by itself, a value passed
//! from a layer to the handler, and the three examples of the guide
//! (timing, an auth check, CORS).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use coserve::{Handler, Method, Next, Request, Response, Router, StatusCode};

use crate::util::{request, start, test_config};

/// The user an auth layer found, for the handler.
struct User {
    name: String,
}

/// `Authorization: Bearer <token>`: a known token becomes a [`User`] for
/// the handler; anything else is `401` and the handler never runs.
fn require_user(req: &Request, next: Next<'_>) -> Response {
    let token = req
        .header_str("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    let name = match token {
        Some("ann-token") => "ann",
        Some("bob-token") => "bob",
        _ => {
            return Response::error(StatusCode::UNAUTHORIZED).header("WWW-Authenticate", "Bearer");
        }
    };
    req.set_extension(User { name: name.into() });
    next.run(req)
}

/// How long the rest of the chain took, in `Server-Timing`.
fn timing(req: &Request, next: Next<'_>) -> Response {
    let started = Instant::now();
    let resp = next.run(req);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    resp.header("Server-Timing", format!("app;dur={ms:.3}"))
}

/// CORS for one allowed origin: a preflight is answered here; other
/// requests get `Access-Control-Allow-Origin` on their way out.
fn cors(req: &Request, next: Next<'_>) -> Response {
    const ORIGIN: &str = "https://app.example";
    let allowed = req.header_str("origin") == Some(ORIGIN);
    if req.method() == &Method::Options && req.header("access-control-request-method").is_some() {
        let resp = Response::new(StatusCode::NO_CONTENT).header("Vary", "Origin");
        return if allowed {
            resp.header("Access-Control-Allow-Origin", ORIGIN)
                .header("Access-Control-Allow-Methods", "GET, POST")
                .header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type",
                )
                .header("Access-Control-Max-Age", "600")
        } else {
            resp
        };
    }
    let resp = next.run(req).header("Vary", "Origin");
    if allowed {
        resp.header("Access-Control-Allow-Origin", ORIGIN)
    } else {
        resp
    }
}

crate::engine_tests! {
    /// Layers run outside in, the last added first, and unwind in the
    /// opposite order around the handler.
    #[test]
    fn layers_run_outside_in_and_unwind_in_reverse() {
        let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let (h, a, b) = (log.clone(), log.clone(), log.clone());
        let app = Router::new()
            .get("/", move |_req| {
                h.lock().unwrap().push("handler");
                "ok"
            })
            .around(move |req: &Request, next: Next<'_>| {
                a.lock().unwrap().push("inner in");
                let resp = next.run(req);
                a.lock().unwrap().push("inner out");
                resp
            })
            .around(move |req: &Request, next: Next<'_>| {
                b.lock().unwrap().push("outer in");
                let resp = next.run(req);
                b.lock().unwrap().push("outer out");
                resp
            });
        let server = start(test_config(), app);
        let r = request(&server, "GET", "/", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok");
        assert_eq!(
            *log.lock().unwrap(),
            ["outer in", "inner in", "handler", "inner out", "outer out"]
        );
    }

    /// The auth layer hands the user to the handler, or answers 401 itself
    /// without running it; a route of its own can carry a layer too.
    #[test]
    fn an_auth_layer_passes_the_user_or_refuses() {
        let ran: Arc<Mutex<usize>> = Arc::default();
        let counted = ran.clone();
        let me = (move |req: &Request| {
            *counted.lock().unwrap() += 1;
            format!("hello {}", req.extension::<User>().expect("set by the layer").name)
        })
        .around(require_user);
        let app = Router::new()
            .handler(Method::Get, "/me", me)
            .get("/open", |_req| "open");
        let server = start(test_config(), app);
        let r = request(&server, "GET", "/me", &[("Authorization", "Bearer bob-token")]);
        assert_eq!((r.status, r.text()), (200, "hello bob".to_string()));
        let r = request(&server, "GET", "/me", &[("Authorization", "Bearer nope")]);
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = request(&server, "GET", "/me", &[]);
        assert_eq!(r.status, 401);
        assert_eq!(*ran.lock().unwrap(), 1, "the handler ran without a user");
        // Only that route has the layer.
        assert_eq!(request(&server, "GET", "/open", &[]).status, 200);
    }

    /// Timing and CORS around a router: a preflight answered by the layer,
    /// the allowed origin echoed on a normal request, another refused
    /// (no Allow-Origin), the timing on every response.
    #[test]
    fn timing_and_cors_layers() {
        let app = Router::new()
            .get("/data", |_req| "data")
            .post("/data", |_req| StatusCode::CREATED)
            .around(cors)
            .around(timing);
        let server = start(test_config(), app);
        let preflight = request(&server, "OPTIONS", "/data", &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ]);
        assert_eq!(preflight.status, 204);
        assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example"));
        assert_eq!(preflight.header("access-control-allow-methods"), Some("GET, POST"));
        let get = request(&server, "GET", "/data", &[("Origin", "https://app.example")]);
        assert_eq!((get.status, get.text()), (200, "data".to_string()));
        assert_eq!(get.header("access-control-allow-origin"), Some("https://app.example"));
        assert_eq!(get.header("vary"), Some("Origin"));
        let timing = get.header("server-timing").expect("Server-Timing");
        assert!(timing.starts_with("app;dur="), "{timing}");
        let other = request(&server, "GET", "/data", &[("Origin", "https://evil.example")]);
        assert_eq!(other.status, 200);
        assert_eq!(other.header("access-control-allow-origin"), None);
        let bad = request(&server, "OPTIONS", "/data", &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ]);
        assert_eq!(bad.status, 204);
        assert_eq!(bad.header("access-control-allow-origin"), None);
        // A plain OPTIONS (no preflight) goes on to the router: 405.
        assert_eq!(request(&server, "OPTIONS", "/data", &[]).status, 405);
    }

    /// Extensions: one value per type, the last set wins, and a layer's
    /// value is seen by the layers inside it too.
    #[test]
    fn extensions_are_one_per_type() {
        let app = (|req: &Request| {
            let n = req.extension::<u32>().map_or(0, |n| *n);
            let who = req.extension::<String>().map(|s| s.to_string()).unwrap_or_default();
            format!("{who} {n}")
        })
        .around(|req: &Request, next: Next<'_>| {
            let seen = req.extension::<u32>().map_or(0, |n| *n);
            req.set_extension(seen + 1);
            next.run(req)
        })
        .around(|req: &Request, next: Next<'_>| {
            req.set_extension(41u32);
            req.set_extension(String::from("layer"));
            next.run(req)
        });
        let server = start(test_config(), app);
        assert_eq!(request(&server, "GET", "/", &[]).text(), "layer 42");
        // A fresh request starts with none.
        assert_eq!(request(&server, "GET", "/", &[]).text(), "layer 42");
    }
}
