//! Routing by pattern through a server: `:name` parameters, a trailing
//! `*name` wildcard, how they rank beside exact paths and prefixes, and
//! the decoding of queries and form bodies.

use std::borrow::Cow;

use coserve::{Handler, Request, Router, StatusCode};

use crate::util::{Resp, TestServer, request, request_all, start, test_config};

/// A path parameter as a handler sees it, in brackets to show where it
/// ends; `-` when there is none.
fn param(req: &Request, name: &str) -> String {
    req.param(name)
        .map_or_else(|| "-".into(), |v| format!("[{v}]"))
}

/// Decoded pairs as `[name]=[value]`, one a line.
fn show<'a>(pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>) -> String {
    pairs.map(|(k, v)| format!("[{k}]=[{v}]\n")).collect()
}

fn app() -> Router {
    // A router nested under a prefix: it sees the whole path.
    let admin = Router::new()
        .get("/admin/users/:id", |req| {
            format!("admin user {}", param(req, "id"))
        })
        .get("/admin", |req| format!("admin home {}", param(req, "id")));
    Router::new()
        .get("/users/new", |_| "new user form")
        .get("/users/:id", |req| format!("user {}", param(req, "id")))
        .delete("/users/:id", |req| format!("deleted {}", param(req, "id")))
        .get("/users/:id/posts/:post", |req| {
            format!("post {} of {}", param(req, "post"), param(req, "id"))
        })
        .get("/users/*rest", |req| {
            format!("users rest {}", param(req, "rest"))
        })
        .get("/static/*path", |req| {
            format!("static {}", param(req, "path"))
        })
        .prefix("/api", |req| format!("api prefix {}", req.path()))
        .get("/api/items/:item", |req| {
            format!("item {}", param(req, "item"))
        })
        .prefix("/admin", move |req| admin.handle(req))
        .get("/search", |req| show(req.query_pairs()))
        .post("/form", |req| {
            req.form_pairs()
                .map(show)
                .ok_or(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        })
        .fallback(Router::new().get("/docs/*page", |req| format!("docs {}", param(req, "page"))))
}

fn get(server: &TestServer, target: &str) -> (u16, String) {
    let r = request(server, "GET", target, &[]);
    (r.status, r.text())
}

fn post_form(server: &TestServer, content_type: Option<&str>, body: &str) -> Resp {
    let mut req = String::from("POST /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if let Some(t) = content_type {
        req.push_str(&format!("Content-Type: {t}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    server.one(req.as_bytes())
}

crate::engine_tests! {
    #[test]
    fn one_and_two_parameters() {
        let server = start(test_config(), app());
        assert_eq!(get(&server, "/users/7"), (200, "user [7]".into()));
        assert_eq!(get(&server, "/users/7/posts/9"), (200, "post [9] of [7]".into()));
        assert_eq!(get(&server, "/users/7?x=1"), (200, "user [7]".into()));
    }

    /// A parameter is percent-decoded, and an encoded slash is part of it:
    /// matching is on the path as sent.
    #[test]
    fn parameters_are_decoded_and_an_encoded_slash_stays_inside_one() {
        let server = start(test_config(), app());
        assert_eq!(get(&server, "/users/Ann%20Lee"), (200, "user [Ann Lee]".into()));
        assert_eq!(get(&server, "/users/caf%C3%A9"), (200, "user [caf\u{e9}]".into()));
        assert_eq!(get(&server, "/users/a%2Fb"), (200, "user [a/b]".into()));
        assert_eq!(
            get(&server, "/users/a%2Fb/posts/c%2Fd"),
            (200, "post [c/d] of [a/b]".into())
        );
        // Not UTF-8 once decoded: refused, not handed to the handler.
        assert_eq!(get(&server, "/users/%FF").0, 400);
    }

    #[test]
    fn a_wildcard_takes_the_rest_of_the_path_but_not_an_empty_rest() {
        let server = start(test_config(), app());
        assert_eq!(
            get(&server, "/static/css/site.css"),
            (200, "static [css/site.css]".into())
        );
        assert_eq!(get(&server, "/static/a%20b/c/"), (200, "static [a b/c/]".into()));
        assert_eq!(get(&server, "/static/").0, 404);
        assert_eq!(get(&server, "/static").0, 404);
    }

    #[test]
    fn an_exact_path_beats_a_parameter_which_beats_a_wildcard() {
        let server = start(test_config(), app());
        assert_eq!(get(&server, "/users/new"), (200, "new user form".into()));
        assert_eq!(get(&server, "/users/7"), (200, "user [7]".into()));
        assert_eq!(get(&server, "/users/7/friends"), (200, "users rest [7/friends]".into()));
        assert_eq!(get(&server, "/users/new/x"), (200, "users rest [new/x]".into()));
    }

    #[test]
    fn prefix_routes_still_work_beside_patterns() {
        let server = start(test_config(), app());
        assert_eq!(get(&server, "/api"), (200, "api prefix /api".into()));
        assert_eq!(get(&server, "/api/"), (200, "api prefix /api/".into()));
        assert_eq!(get(&server, "/api/x/y"), (200, "api prefix /api/x/y".into()));
        assert_eq!(get(&server, "/api/items/3"), (200, "item [3]".into()));
        assert_eq!(get(&server, "/api/items/3/x"), (200, "api prefix /api/items/3/x".into()));
        assert_eq!(get(&server, "/apix").0, 404);
    }

    /// A router nested under a prefix, or as the fallback, matches the
    /// whole path and sets its own parameters.
    #[test]
    fn nested_routers_match_the_whole_path() {
        let server = start(test_config(), app());
        assert_eq!(get(&server, "/admin/users/5"), (200, "admin user [5]".into()));
        assert_eq!(get(&server, "/admin"), (200, "admin home -".into()));
        assert_eq!(get(&server, "/admin/other").0, 404);
        assert_eq!(get(&server, "/docs/guide/intro"), (200, "docs [guide/intro]".into()));
    }

    #[test]
    fn what_matches_nothing_is_a_404() {
        let server = start(test_config(), app());
        for target in ["/nothing", "/users", "/users/", "/docs/", "/search/x"] {
            assert_eq!(get(&server, target).0, 404, "{target}");
        }
    }

    #[test]
    fn another_method_on_a_parameter_route_is_a_405_with_allow() {
        let server = start(test_config(), app());
        let r = request(&server, "PUT", "/users/7", &[]);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, DELETE")));
        let r = request(&server, "DELETE", "/users/7", &[]);
        assert_eq!((r.status, r.text()), (200, "deleted [7]".into()));
    }

    #[test]
    fn head_on_a_parameter_route_is_answered_by_its_get() {
        let server = start(test_config(), app());
        let (head, rest) = request_all(&server, "HEAD", "/users/7", &[]);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("8"));
        assert!(rest.is_empty(), "a body after HEAD: {rest:?}");
    }

    #[test]
    fn query_pairs_are_decoded_in_order() {
        let server = start(test_config(), app());
        let (status, text) =
            get(&server, "/search?q=caf%C3%A9+au+lait&tag=a&tag=b&flag&=x&bad=%zz&plus=%2B");
        assert_eq!(status, 200);
        assert_eq!(
            text,
            "[q]=[caf\u{e9} au lait]\n[tag]=[a]\n[tag]=[b]\n[flag]=[]\n[]=[x]\n[bad]=[%zz]\n[plus]=[+]\n"
        );
        assert_eq!(get(&server, "/search"), (200, String::new()));
    }

    #[test]
    fn a_form_post_is_decoded() {
        let server = start(test_config(), app());
        let r = post_form(
            &server,
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            "name=Ann+Lee&city=S%C3%A3o+Paulo&tag=1&tag=2",
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            "[name]=[Ann Lee]\n[city]=[S\u{e3}o Paulo]\n[tag]=[1]\n[tag]=[2]\n"
        );
    }

    #[test]
    fn a_body_of_another_type_is_not_a_form() {
        let server = start(test_config(), app());
        for content_type in [
            None,
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
            Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
        ] {
            let r = post_form(&server, content_type, "name=Ann");
            assert_eq!(r.status, 415, "{content_type:?}");
        }
    }
}
