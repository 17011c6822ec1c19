//! Precompressed siblings (`foo.br`, `foo.gz`) chosen by `Accept-Encoding`
//! (RFC 9110 §12.5.3), with the original's Content-Type, `Vary`, distinct
//! validators per representation, and ranges over the encoded bytes.

use crate::util::{Resp, TestServer, request, start_site};

const APP: &[u8] = b"console.log('hi');\n";
const APP_BR: &[u8] = b"BROTLI-BYTES";
const APP_GZ: &[u8] = b"GZIP-BYTES-LONGER";
const ONLY: &[u8] = b".only { display: none; }\n";
const ONLY_GZ: &[u8] = b"ONLY-GZIP";
const STYLE: &[u8] = b"body { color: black; }\n";
const JS: &str = "text/javascript; charset=utf-8";

/// The standard site plus `app.js.br`, `app.js.gz`, `only.css` and
/// `only.css.gz`, with precompressed serving as `precompressed` says.
fn server(precompressed: bool) -> TestServer {
    let server = start_site(|c, f| (c, f.precompressed(precompressed)));
    let root = server.root();
    std::fs::write(root.join("app.js.br"), APP_BR).unwrap();
    std::fs::write(root.join("app.js.gz"), APP_GZ).unwrap();
    std::fs::write(root.join("only.css"), ONLY).unwrap();
    std::fs::write(root.join("only.css.gz"), ONLY_GZ).unwrap();
    server
}

fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(server, "GET", path, headers)
}

fn accepting(server: &TestServer, path: &str, accept: &str) -> Resp {
    get(server, path, &[("Accept-Encoding", accept)])
}

/// Whether `Vary` lists `Accept-Encoding` (RFC 9110 §12.5.5).
fn varies_by_encoding(r: &Resp) -> bool {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(','))
        .any(|f| f.trim().eq_ignore_ascii_case("accept-encoding") || f.trim() == "*")
}

/// Asserts a 200 of `/app.js` in `coding` (None: identity).
fn assert_app(r: &Resp, coding: Option<&str>, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    let want = match coding {
        Some("br") => APP_BR,
        Some("gzip") => APP_GZ,
        None => APP,
        Some(other) => panic!("{other}"),
    };
    assert!(
        r.body == want,
        "{what}: body {:?}, expected {:?}",
        r.text(),
        String::from_utf8_lossy(want)
    );
    assert_eq!(r.header("content-encoding"), coding, "{what}");
    // RFC 9110 §8.3: the media type is the original's, whatever the coding.
    assert_eq!(r.header("content-type"), Some(JS), "{what}");
    assert_eq!(
        r.header("content-length"),
        Some(want.len().to_string().as_str()),
        "{what}"
    );
    // §12.5.5: the response was selected by Accept-Encoding.
    assert!(varies_by_encoding(r), "{what}: no Vary: Accept-Encoding");
}

crate::engine_tests! {
    #[test]
    fn brotli_is_preferred_when_both_are_accepted() {
        let server = server(true);
        let r = accepting(&server, "/app.js", "gzip, br");
        assert_app(&r, Some("br"), "gzip, br");
        // HEAD has the same fields.
        let h = request(
            &server,
            "HEAD",
            "/app.js",
            &[("Accept-Encoding", "gzip, br")],
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-encoding"), Some("br"));
        assert_eq!(
            h.header("content-length"),
            Some(APP_BR.len().to_string().as_str())
        );
        assert_eq!(h.header("etag"), r.header("etag"));
    }

    #[test]
    fn gzip_when_only_gzip_is_accepted() {
        let server = server(true);
        let r = accepting(&server, "/app.js", "gzip");
        assert_app(&r, Some("gzip"), "gzip");
        let r = accepting(&server, "/app.js", "br");
        assert_app(&r, Some("br"), "br");
    }

    #[test]
    fn q_values_are_respected() {
        let server = server(true);
        // RFC 9110 §12.5.3 (and §12.4.2 for weights): q=0 is "not acceptable",
        // higher q wins, `*` matches codings not listed, codings are
        // case-insensitive (§8.4.1).
        for (accept, want) in [
            ("br;q=0.5, gzip;q=1", Some("gzip")),
            ("br;q=0.5, gzip", Some("gzip")),
            ("gzip;q=0.8, br;q=0.9", Some("br")),
            ("br;q=0, gzip", Some("gzip")),
            ("br ; q=0 , gzip", Some("gzip")),
            ("br;q=0, gzip;q=0", None),
            ("br;q=0.000, gzip;q=0.0", None),
            ("*", Some("br")),
            ("*;q=0", None),
            ("gzip, *;q=0", Some("gzip")),
            ("br;q=0, *", Some("gzip")),
            ("identity", None),
            ("deflate, compress", None),
            ("BR", Some("br")),
            ("GZip", Some("gzip")),
            ("", None),
        ] {
            let r = accepting(&server, "/app.js", accept);
            assert_app(&r, want, &format!("Accept-Encoding: {accept:?}"));
        }
    }

    #[test]
    fn identity_without_accept_encoding_and_vary_only_with_siblings() {
        let server = server(true);
        let r = get(&server, "/app.js", &[]);
        assert_app(&r, None, "no Accept-Encoding");
        assert_eq!(r.header("content-encoding"), None);

        // A file without precompressed siblings does not vary.
        for accept in [None, Some("gzip, br")] {
            let headers: Vec<(&str, &str)> =
                accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
            let r = get(&server, "/style.css", &headers);
            assert_eq!(r.status, 200);
            assert_eq!(r.body, STYLE);
            assert_eq!(r.header("content-encoding"), None, "{accept:?}");
            assert_eq!(r.header("vary"), None, "{accept:?}");
        }
    }

    /// A sibling created after the file was served without one is
    /// served: at once with the cache off (the directory's `stat` tells the
    /// sibling index), within a second with it on (a cached entry looks at
    /// its directory again after `RECHECK`); and removed, the file goes
    /// out as itself again.
    #[test]
    fn a_sibling_created_after_a_miss_is_picked_up() {
        let server = server(true);
        let dir = server.root().join("late");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("late.css"), STYLE).unwrap();
        let within = if crate::util::cache_off() {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs(3)
        };
        let serves = |body: &[u8], coding: Option<&str>| {
            let ok = || {
                let r = accepting(&server, "/late/late.css", "gzip");
                r.status == 200 && r.body == body && r.header("content-encoding") == coding
            };
            ok() || crate::util::eventually(within, ok)
        };
        for _ in 0..3 {
            assert!(serves(STYLE, None), "no sibling yet");
        }
        std::fs::write(dir.join("late.css.gz"), ONLY_GZ).unwrap();
        assert!(serves(ONLY_GZ, Some("gzip")), "the new sibling was not picked up");
        std::fs::remove_file(dir.join("late.css.gz")).unwrap();
        assert!(serves(STYLE, None), "the removed sibling is still served");
    }

    #[test]
    fn a_file_with_only_a_gzip_sibling() {
        let server = server(true);
        let r = accepting(&server, "/only.css", "br, gzip");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, ONLY_GZ);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
        assert!(varies_by_encoding(&r));

        let r = accepting(&server, "/only.css", "br");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, ONLY);
        assert_eq!(r.header("content-encoding"), None);
        assert!(varies_by_encoding(&r), "{r:?}");
    }

    #[test]
    fn each_encoding_has_its_own_etag() {
        let server = server(true);
        let tag = |accept: &str| {
            let r = accepting(&server, "/app.js", accept);
            assert_eq!(r.status, 200);
            r.header("etag").expect("ETag").to_string()
        };
        let (identity, br, gzip) = (tag("identity"), tag("br"), tag("gzip"));
        // RFC 9110 §8.8.3: different representations, different tags.
        assert_ne!(identity, br);
        assert_ne!(identity, gzip);
        assert_ne!(br, gzip);
        for t in [&identity, &br, &gzip] {
            assert!(t.starts_with('"') && t.ends_with('"'), "{t}");
        }

        // §13.1.2: revalidating the br representation while accepting br.
        let r = get(
            &server,
            "/app.js",
            &[("Accept-Encoding", "br"), ("If-None-Match", &br)],
        );
        assert_eq!(r.status, 304, "{r:?}");
        assert_eq!(r.header("etag"), Some(br.as_str()));
        // §15.4.5: a 304 carries the Vary the 200 would have.
        assert!(varies_by_encoding(&r), "304 without Vary: {r:?}");

        // The br tag does not validate the gzip or identity representation.
        let r = get(
            &server,
            "/app.js",
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &br)],
        );
        assert_app(&r, Some("gzip"), "gzip with the br tag");
        let r = get(&server, "/app.js", &[("If-None-Match", &br)]);
        assert_app(&r, None, "identity with the br tag");
        let r = get(&server, "/app.js", &[("If-None-Match", &identity)]);
        assert_eq!(r.status, 304, "{r:?}");
    }

    #[test]
    fn precompressed_off_always_serves_identity() {
        let server = server(false);
        for accept in ["gzip, br", "br", "gzip", "*"] {
            let r = accepting(&server, "/app.js", accept);
            assert_eq!(r.status, 200, "{accept}");
            assert_eq!(r.body, APP, "{accept}");
            assert_eq!(r.header("content-encoding"), None, "{accept}");
            assert_eq!(r.header("vary"), None, "{accept}");
        }
        let r = accepting(&server, "/only.css", "gzip");
        assert_eq!(r.body, ONLY);
        assert_eq!(r.header("content-encoding"), None);
    }

    #[test]
    fn ranges_apply_to_the_encoded_bytes() {
        let server = server(true);
        // RFC 9110 §14.1: ranges are of the selected representation's bytes,
        // which for a content-coded response are the coded bytes (§8.4).
        let r = get(
            &server,
            "/app.js",
            &[("Accept-Encoding", "br"), ("Range", "bytes=0-5")],
        );
        assert_eq!(r.status, 206, "{r:?}");
        assert_eq!(r.body, &APP_BR[..6]);
        assert_eq!(r.header("content-encoding"), Some("br"));
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 0-5/{}", APP_BR.len()).as_str())
        );
        assert!(varies_by_encoding(&r));

        let r = get(
            &server,
            "/app.js",
            &[("Accept-Encoding", "gzip"), ("Range", "bytes=-6")],
        );
        assert_eq!(r.status, 206, "{r:?}");
        assert_eq!(r.body, &APP_GZ[APP_GZ.len() - 6..]);
        assert_eq!(
            r.header("content-range"),
            Some(
                format!(
                    "bytes {}-{}/{}",
                    APP_GZ.len() - 6,
                    APP_GZ.len() - 1,
                    APP_GZ.len()
                )
                .as_str()
            )
        );

        // Unsatisfiable against the coded length, though not the original's.
        let r = get(
            &server,
            "/app.js",
            &[("Accept-Encoding", "br"), ("Range", "bytes=15-")],
        );
        assert_eq!(r.status, 416, "{r:?}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{}", APP_BR.len()).as_str())
        );
    }
}
