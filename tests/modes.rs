//! The file handler's options: Cache-Control, extra header fields, CORS,
//! single-page-app fallback, index file names and directory listings.

use std::io::Write;

use coserve::Symlinks;

use crate::util::{
    TestServer, read_response, read_to_close, request, start_default_site, start_site,
};

const INDEX: &[u8] = b"<!doctype html><title>home</title>home page\n";
const NOT_FOUND: &[u8] = b"<!doctype html><title>404</title>custom not found\n";
const STYLE: &[u8] = b"body { color: black; }\n";
const ODD_NAME: &str = "<b>odd&name.txt";
const ODD_BODY: &[u8] = b"odd file contents\n";

// ---------------------------------------------------------------------------
// Directory listings

/// The `href` attribute values of a page, HTML-unescaped.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| {
            s[..s.find('"').expect("closing quote")]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&#x27;", "'")
                .replace("&#38;", "&")
                .replace("&#x26;", "&")
                .replace("&amp;", "&")
        })
        .collect()
}

/// Resolves a link found on the page at `dir` (a path ending in `/`), as a
/// browser would for a relative reference without `..` (RFC 3986 §5.2).
fn resolve(dir: &str, href: &str) -> String {
    assert!(
        !href.contains("://") && !href.starts_with("//"),
        "not a same-site link: {href:?}"
    );
    if href.starts_with('/') {
        href.to_string()
    } else {
        format!("{dir}{href}")
    }
}

fn listing_site() -> TestServer {
    let server = start_site(|c, f| (c, f.listing(true)));
    let root = server.root();
    std::fs::create_dir(root.join("odd")).unwrap();
    std::fs::write(root.join("odd").join(ODD_NAME), ODD_BODY).unwrap();
    std::fs::write(root.join("odd/.secret-file"), b"hidden\n").unwrap();
    std::fs::write(root.join("odd/plain.txt"), b"plain\n").unwrap();
    std::fs::create_dir(root.join("odd/inner")).unwrap();
    server
}

crate::engine_tests! {
    // ---------------------------------------------------------------------------
    // Cache-Control and extra header fields

    #[test]
    fn cache_control_on_file_responses() {
        let server = start_site(|c, f| (c, f.cache_control("public, max-age=60")));
        let r = server.get("/style.css");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
        let r = server.get("/");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=60"),
            "{r:?}"
        );
        let r = request(&server, "GET", "/big.bin", &[("Range", "bytes=0-9")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
        // RFC 9110 §15.4.5: a 304 carries the Cache-Control a 200 would have.
        let tag = server.get("/style.css").header("etag").unwrap().to_string();
        let r = request(&server, "GET", "/style.css", &[("If-None-Match", &tag)]);
        assert_eq!(r.status, 304);
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));

        // Off by default.
        let server = start_default_site();
        assert_eq!(server.get("/style.css").header("cache-control"), None);
    }

    #[test]
    fn extra_headers_on_every_response() {
        let server = start_site(|c, f| {
            let f = f
                .header("Strict-Transport-Security", "max-age=63072000")
                .header("Content-Security-Policy", "default-src 'self'");
            (c, f)
        });
        for (path, status) in [("/style.css", 200), ("/nope.txt", 404), ("/sub", 301)] {
            let r = server.get(path);
            assert_eq!(r.status, status, "{path}");
            assert_eq!(
                r.header("strict-transport-security"),
                Some("max-age=63072000"),
                "{path}"
            );
            assert_eq!(
                r.header("content-security-policy"),
                Some("default-src 'self'"),
                "{path}"
            );
        }
    }

    // ---------------------------------------------------------------------------
    // CORS

    #[test]
    fn cors_allows_any_origin() {
        let server = start_site(|c, f| (c, f.cors(true)));
        for (path, status) in [("/style.css", 200), ("/nope.txt", 404)] {
            let r = request(&server, "GET", path, &[("Origin", "https://a.example")]);
            assert_eq!(r.status, status, "{path}");
            assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
        }
        // Off by default.
        let server = start_default_site();
        let r = request(
            &server,
            "GET",
            "/style.css",
            &[("Origin", "https://a.example")],
        );
        assert_eq!(r.header("access-control-allow-origin"), None);
    }

    #[test]
    fn cors_preflight_is_answered() {
        let server = start_site(|c, f| (c, f.cors(true)));
        let mut c = server.connect();
        c.write_all(
            b"OPTIONS /style.css HTTP/1.1\r\nHost: test\r\nOrigin: https://a.example\r\n\
              Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-foo\r\n\r\n\
              GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let r = read_response(&mut c, false).expect("preflight response");
        assert_eq!(r.status, 204, "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let methods = r
            .header("access-control-allow-methods")
            .unwrap_or_else(|| panic!("no Access-Control-Allow-Methods: {r:?}"));
        assert!(
            methods.split(',').any(|m| m.trim() == "GET"),
            "Access-Control-Allow-Methods: {methods}"
        );
        let allowed = r
            .header("access-control-allow-headers")
            .unwrap_or_else(|| panic!("no Access-Control-Allow-Headers: {r:?}"));
        assert!(
            allowed
                .split(',')
                .any(|h| h.trim().eq_ignore_ascii_case("x-foo")),
            "Access-Control-Allow-Headers: {allowed}"
        );
        // RFC 9110 §15.3.5: a 204 has no content, so the next response follows
        // its head directly.
        let r = read_response(&mut c, false).expect("the GET after the preflight");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, STYLE);
        assert!(read_to_close(&mut c).is_empty());
    }

    #[test]
    fn options_without_cors_is_405() {
        let server = start_default_site();
        let r = request(
            &server,
            "OPTIONS",
            "/style.css",
            &[
                ("Origin", "https://a.example"),
                ("Access-Control-Request-Method", "GET"),
            ],
        );
        // RFC 9110 §15.5.6: 405 lists the allowed methods.
        assert_eq!(r.status, 405, "{r:?}");
        assert!(r.header("allow").is_some(), "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(r.header("access-control-allow-methods"), None);
    }

    // ---------------------------------------------------------------------------
    // Single-page apps

    #[test]
    fn spa_serves_the_root_index_for_client_routes() {
        let server = start_site(|c, f| (c, f.spa(true)));
        for path in ["/some/client/route", "/dashboard", "/users/42/edit"] {
            let r = server.get(path);
            assert_eq!(r.status, 200, "{path}: {r:?}");
            assert_eq!(r.body, INDEX, "{path}");
            assert_eq!(
                r.header("content-type"),
                Some("text/html; charset=utf-8"),
                "{path}"
            );
        }
        // A missing asset (with an extension) is still a 404.
        for path in ["/missing.js", "/some/route/missing.css"] {
            let r = server.get(path);
            assert_eq!(r.status, 404, "{path}: {r:?}");
            assert_eq!(r.body, NOT_FOUND, "{path}");
        }
        // Existing files and directories are served as usual.
        let r = server.get("/style.css");
        assert_eq!((r.status, r.body.as_slice()), (200, STYLE));
        let r = server.get("/sub/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"sub index\n"[..]));
        let r = server.get("/");
        assert_eq!((r.status, r.body.as_slice()), (200, INDEX));

        // Without spa, a client route is a 404.
        let server = start_default_site();
        assert_eq!(server.get("/some/client/route").status, 404);
    }

    // ---------------------------------------------------------------------------
    // Index files

    #[test]
    fn index_names_are_tried_in_order() {
        let server = start_site(|c, f| (c, f.index(["default.htm", "index.html"]).listing(false)));
        let root = server.root();
        std::fs::create_dir(root.join("both")).unwrap();
        std::fs::write(root.join("both/default.htm"), b"default page\n").unwrap();
        std::fs::write(root.join("both/index.html"), b"index page\n").unwrap();
        std::fs::create_dir(root.join("only")).unwrap();
        std::fs::write(root.join("only/index.html"), b"only index\n").unwrap();

        let r = server.get("/both/");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, b"default page\n");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let r = server.get("/only/");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, b"only index\n");
        assert_eq!(server.get("/").body, INDEX);
        // A directory with neither is not found (listing is off).
        assert_eq!(server.get("/empty/").status, 404);
    }

    // ---------------------------------------------------------------------------
    // Directory listings

    #[test]
    fn listing_of_a_directory_without_index() {
        let server = listing_site();
        let r = server.get("/empty/");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.text().contains("/empty/"), "{}", r.text());
        // A subdirectory's listing links to its parent.
        assert!(
            hrefs(&r.text()).iter().any(|h| h == "../"),
            "no parent link in {}",
            r.text()
        );
        // A directory with an index is still served by it.
        let r = server.get("/sub/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"sub index\n"[..]));
        // A directory without the slash still redirects to it.
        let r = server.get("/empty");
        assert_eq!(r.status, 301, "{r:?}");
        assert_eq!(r.header("location"), Some("/empty/"));
        let r = server.get("/sub");
        assert_eq!(r.status, 301, "{r:?}");
        assert_eq!(r.header("location"), Some("/sub/"));

        // With listing off, the same directory is not found.
        let server = start_site(|c, f| (c, f.listing(false)));
        assert_eq!(server.get("/empty/").status, 404);
    }

    #[test]
    fn listing_escapes_names_and_links_work() {
        let server = listing_site();
        let r = server.get("/odd/");
        assert_eq!(r.status, 200, "{r:?}");
        let html = r.text();
        assert!(
            html.contains("&lt;b&gt;odd&amp;name.txt"),
            "name not HTML-escaped: {html}"
        );
        assert!(!html.contains("<b>odd"), "raw name in the page: {html}");
        assert!(!html.contains(".secret-file"), "dotfile listed: {html}");
        assert!(html.contains("plain.txt"), "{html}");

        let links = hrefs(&html);
        assert!(
            links.iter().any(|h| h == "../"),
            "no parent link: {links:?}"
        );
        assert!(
            links.iter().any(|h| h == "inner/" || h == "/odd/inner/"),
            "no link to the subdirectory: {links:?}"
        );
        let odd: Vec<&String> = links
            .iter()
            .filter(|h| {
                percent_encoding::percent_decode_str(h)
                    .decode_utf8()
                    .is_ok_and(|d| d.ends_with(ODD_NAME))
            })
            .collect();
        assert_eq!(odd.len(), 1, "links to {ODD_NAME:?} among {links:?}");
        let href = odd[0];
        let tail = href.rsplit('/').next().unwrap();
        assert!(
            tail.eq_ignore_ascii_case("%3Cb%3Eodd&name.txt")
                || tail.eq_ignore_ascii_case("%3Cb%3Eodd%26name.txt"),
            "href {href:?} is not percent-encoded"
        );
        // Following the link, resolved against the directory URL, gets the file.
        let target = resolve("/odd/", href);
        let f = server.get(&target);
        assert_eq!(f.status, 200, "GET {target}: {f:?}");
        assert_eq!(f.body, ODD_BODY, "GET {target}");

        // Every other link on the page works too.
        for href in links.iter().filter(|h| *h != "../") {
            let target = resolve("/odd/", href);
            let r = server.get(&target);
            assert_eq!(r.status, 200, "GET {target} from the listing: {r:?}");
        }
    }

    /// The root listing has no parent link, and lists exactly what the
    /// handler serves: `/.well-known/` (served, RFC 8615) is listed, the
    /// dotfile `.hidden` (a 404) is not.
    #[test]
    fn root_listing_has_no_parent_link_and_lists_only_what_is_served() {
        let server = start_site(|c, f| (c, f.listing(true).index(Vec::<String>::new())));
        let r = server.get("/");
        assert_eq!(r.status, 200, "{r:?}");
        let html = r.text();
        let links = hrefs(&html);
        assert!(
            !links.iter().any(|h| h == "../"),
            "parent link at the root: {links:?}"
        );
        assert!(
            links.iter().any(|h| h == "style.css" || h == "/style.css"),
            "{links:?}"
        );
        assert!(!html.contains(".hidden"), "{html}");
        assert_eq!(server.get("/.hidden").status, 404);
        assert!(links.iter().any(|h| h == ".well-known/"), "{links:?}");
        assert_eq!(server.get("/.well-known/security.txt").status, 200);
        // The page and the handler agree on every entry.
        for href in &links {
            let target = resolve("/", href);
            let r = server.get(&target);
            assert!(
                matches!(r.status, 200 | 404) && (r.status == 200 || target.ends_with('/')),
                "GET {target} from the listing: {r:?}"
            );
        }
    }

    /// A symlink that leads out of the root is a 404, so the listing leaves
    /// it out and shows nothing of its target (its size, its time); with
    /// symlinks followed, it is served and listed.
    #[test]
    fn a_symlink_out_of_the_root_is_listed_only_when_it_is_served() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("target.txt"), b"outside!").unwrap();
        for follow in [false, true] {
            let policy = if follow {
                Symlinks::Follow
            } else {
                Symlinks::Refuse
            };
            let server = start_site(|c, f| (c, f.listing(true).symlinks(policy)));
            let link = server.root().join("sub/out-link.txt");
            std::os::unix::fs::symlink(outside.path().join("target.txt"), &link).unwrap();
            // Without its index, `/sub/` is listed.
            std::fs::remove_file(server.root().join("sub/index.html")).unwrap();
            let served = server.get("/sub/out-link.txt");
            let sub_listing = server.get("/sub/").text();
            if follow {
                assert_eq!((served.status, &served.body[..]), (200, &b"outside!"[..]));
                assert!(hrefs(&sub_listing).iter().any(|h| h == "out-link.txt"), "{sub_listing}");
                assert!(sub_listing.contains(">8 B<"), "{sub_listing}");
            } else {
                assert_eq!(served.status, 404);
                assert!(!sub_listing.contains("out-link"), "{sub_listing}");
                assert!(!sub_listing.contains(">8 B<"), "{sub_listing}");
            }
        }
    }
}
