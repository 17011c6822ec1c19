//! Validators and conditional requests (RFC 9110 §8.8 and §13): ETag and
//! Last-Modified on every file response, If-None-Match, If-Modified-Since,
//! If-Match, If-Unmodified-Since, their precedence, and the framing of 304.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{
    Resp, TestServer, read_response, read_to_close, request, request_all, start_default_site,
};

const STYLE: &[u8] = b"body { color: black; }\n";
const APP: &[u8] = b"console.log('hi');\n";

/// A fixed past time (whole seconds) for mtimes, so that dates are
/// deterministic: `Sun, 09 Sep 2001 01:46:40 GMT`.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

fn set_mtime(path: &Path, when: SystemTime) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(when).unwrap();
}

fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(server, "GET", path, headers)
}

fn etag(r: &Resp) -> String {
    r.header("etag")
        .unwrap_or_else(|| panic!("no ETag in {r:?}"))
        .to_string()
}

/// A strong entity tag: `"..."` without `W/` (RFC 9110 §8.8.3).
fn is_strong_etag(tag: &str) -> bool {
    tag.len() >= 2
        && tag.starts_with('"')
        && tag.ends_with('"')
        && !tag[1..tag.len() - 1].contains('"')
        && tag.bytes().all(|b| b > 0x20 && b != 0x7f)
}

crate::engine_tests! {
    #[test]
    fn file_responses_have_a_strong_etag_and_last_modified() {
        let server = start_default_site();
        let mut tags = Vec::new();
        for name in ["index.html", "style.css", "app.js", "data.json", "big.bin"] {
            let r = get(&server, &format!("/{name}"), &[]);
            assert_eq!(r.status, 200, "{name}: {r:?}");
            let tag = etag(&r);
            assert!(is_strong_etag(&tag), "{name}: ETag {tag:?} is not strong");
            // RFC 9110 §8.8.2: Last-Modified is the file's modification time.
            let mtime = std::fs::metadata(server.root().join(name))
                .unwrap()
                .modified()
                .unwrap();
            assert_eq!(
                r.header("last-modified"),
                Some(httpdate::fmt_http_date(mtime).as_str()),
                "{name}"
            );
            tags.push((name, tag));
        }
        // Different files have different tags.
        for (i, (a, ta)) in tags.iter().enumerate() {
            for (b, tb) in &tags[i + 1..] {
                assert_ne!(ta, tb, "{a} and {b} share an ETag");
            }
        }
        // The tag is stable while the file does not change.
        assert_eq!(etag(&get(&server, "/style.css", &[])), tags[1].1);
    }

    #[test]
    fn etag_changes_with_size_and_with_mtime() {
        let server = start_default_site();
        let path = server.root().join("style.css");
        set_mtime(&path, t0());
        let before = get(&server, "/style.css", &[]);
        assert_eq!(before.body, STYLE);
        assert_eq!(
            before.header("last-modified"),
            Some("Sun, 09 Sep 2001 01:46:40 GMT")
        );
        let tag0 = etag(&before);

        // New content of another size, same mtime: only the size changed.
        std::fs::write(&path, b"body { color: red; margin: 0; }\n").unwrap();
        set_mtime(&path, t0());
        let r = get(&server, "/style.css", &[]);
        assert_eq!(r.body, b"body { color: red; margin: 0; }\n");
        assert_eq!(r.header("last-modified"), before.header("last-modified"));
        let tag1 = etag(&r);
        assert!(is_strong_etag(&tag1), "{tag1:?}");
        assert_ne!(tag1, tag0, "ETag unchanged after the size changed");

        // Same content, mtime one second later.
        set_mtime(&path, t0() + Duration::from_secs(1));
        let r = get(&server, "/style.css", &[]);
        assert_eq!(
            r.header("last-modified"),
            Some("Sun, 09 Sep 2001 01:46:41 GMT")
        );
        let tag2 = etag(&r);
        assert_ne!(tag2, tag1, "ETag unchanged after the mtime changed");

        // A change within the same second: Last-Modified cannot tell, so the
        // tag must (otherwise a cache revalidating by tag keeps stale content).
        set_mtime(&path, t0() + Duration::from_millis(1500));
        let r = get(&server, "/style.css", &[]);
        assert_eq!(
            r.header("last-modified"),
            Some("Sun, 09 Sep 2001 01:46:41 GMT")
        );
        let tag3 = etag(&r);
        assert_ne!(tag3, tag2, "ETag unchanged after a sub-second mtime change");

        // The old tag no longer validates (RFC 9110 §13.1.2).
        let r = get(&server, "/style.css", &[("If-None-Match", &tag0)]);
        assert_eq!(r.status, 200, "stale tag revalidated: {r:?}");
    }

    #[test]
    fn if_none_match_with_the_current_tag_is_304_for_get_and_head() {
        let server = start_default_site();
        let tag = etag(&get(&server, "/style.css", &[]));
        for method in ["GET", "HEAD"] {
            // RFC 9110 §13.1.2: a match on GET/HEAD is 304 Not Modified.
            let (r, rest) = request_all(&server, method, "/style.css", &[("If-None-Match", &tag)]);
            assert_eq!(r.status, 304, "{method}: {r:?}");
            // RFC 9110 §15.4.5: no content; the validators are sent.
            assert!(
                rest.is_empty(),
                "{method}: bytes after a 304 head: {:?}",
                String::from_utf8_lossy(&rest)
            );
            assert_eq!(r.header("etag"), Some(tag.as_str()), "{method}");
            assert!(r.header("last-modified").is_some(), "{method}: {r:?}");
            if let Some(len) = r.header("content-length") {
                // §8.6: if sent at all, it is the length a 200 would have had.
                assert_eq!(len, STYLE.len().to_string(), "{method}");
            }
        }
    }

    #[test]
    fn if_none_match_is_weak_and_takes_lists_and_star() {
        let server = start_default_site();
        let tag = etag(&get(&server, "/style.css", &[]));
        let weak = format!("W/{tag}");
        let list = format!("\"nope\", {tag}, \"other\"");
        let list_weak = format!("\"nope\",W/{tag}");
        // RFC 9110 §13.1.2: If-None-Match uses the weak comparison (§8.8.3.2).
        for value in [tag.as_str(), &weak, &list, &list_weak, "*"] {
            let r = get(&server, "/style.css", &[("If-None-Match", value)]);
            assert_eq!(r.status, 304, "If-None-Match: {value}: {r:?}");
            assert!(r.body.is_empty());
        }
        for value in ["\"nope\"", "\"nope\", W/\"other\""] {
            let r = get(&server, "/style.css", &[("If-None-Match", value)]);
            assert_eq!(r.status, 200, "If-None-Match: {value}: {r:?}");
            assert_eq!(r.body, STYLE);
        }
    }

    #[test]
    fn if_modified_since() {
        let server = start_default_site();
        set_mtime(&server.root().join("style.css"), t0());
        let lm = httpdate::fmt_http_date(t0());
        let later = httpdate::fmt_http_date(t0() + Duration::from_secs(86_400));
        let earlier = httpdate::fmt_http_date(t0() - Duration::from_secs(1));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(86_400));

        // RFC 9110 §13.1.3: not modified since the date → 304.
        for (value, want) in [
            (lm.as_str(), 304),
            (later.as_str(), 304),
            (earlier.as_str(), 200),
            // An invalid date is ignored (§13.1.3).
            ("yesterday", 200),
            ("garbage, 99 Foo 20x1 25:61:61 GMT", 200),
            ("", 200),
        ] {
            for method in ["GET", "HEAD"] {
                let r = request(
                    &server,
                    method,
                    "/style.css",
                    &[("If-Modified-Since", value)],
                );
                assert_eq!(
                    r.status, want,
                    "{method} If-Modified-Since: {value:?}: {r:?}"
                );
                if want == 200 && method == "GET" {
                    assert_eq!(r.body, STYLE);
                }
            }
        }
        // The obsolete date formats are valid HTTP-dates too (§5.6.7).
        for value in ["Sunday, 09-Sep-01 01:46:40 GMT", "Sun Sep  9 01:46:40 2001"] {
            let r = get(&server, "/style.css", &[("If-Modified-Since", value)]);
            assert_eq!(r.status, 304, "If-Modified-Since: {value:?}: {r:?}");
        }

        // §13.1.3: ignored when If-None-Match is present, even if it would
        // have given 304.
        let r = get(
            &server,
            "/style.css",
            &[
                ("If-None-Match", "\"nope\""),
                ("If-Modified-Since", &future),
            ],
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, STYLE);
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        let server = start_default_site();
        set_mtime(&server.root().join("style.css"), t0());
        let tag = etag(&get(&server, "/style.css", &[]));
        let weak = format!("W/{tag}");
        let list = format!("\"nope\", {tag}");
        let earlier = httpdate::fmt_http_date(t0() - Duration::from_secs(1));
        let later = httpdate::fmt_http_date(t0() + Duration::from_secs(1));
        let at = httpdate::fmt_http_date(t0());

        // RFC 9110 §13.1.1: If-Match uses the strong comparison; a failure is
        // 412 (§15.5.13).
        for (value, want) in [
            ("\"nope\"", 412),
            (weak.as_str(), 412),
            (tag.as_str(), 200),
            (list.as_str(), 200),
            ("*", 200),
        ] {
            let r = get(&server, "/style.css", &[("If-Match", value)]);
            assert_eq!(r.status, want, "If-Match: {value}: {r:?}");
            if want == 200 {
                assert_eq!(r.body, STYLE);
            } else {
                assert_ne!(r.body, STYLE, "a 412 must not carry the file");
            }
        }

        // §13.1.4: If-Unmodified-Since.
        for (value, want) in [
            (earlier.as_str(), 412),
            (at.as_str(), 200),
            (later.as_str(), 200),
        ] {
            let r = get(&server, "/style.css", &[("If-Unmodified-Since", value)]);
            assert_eq!(r.status, want, "If-Unmodified-Since: {value}: {r:?}");
        }
        // §13.1.4: ignored when If-Match is present.
        let r = get(
            &server,
            "/style.css",
            &[("If-Match", &tag), ("If-Unmodified-Since", &earlier)],
        );
        assert_eq!(r.status, 200, "{r:?}");

        // §13.2.2: If-Match (step 1) is evaluated before If-None-Match (step 3).
        let r = get(
            &server,
            "/style.css",
            &[("If-Match", "\"nope\""), ("If-None-Match", &tag)],
        );
        assert_eq!(r.status, 412, "{r:?}");
        // And with If-Match passing, If-None-Match decides.
        let r = get(
            &server,
            "/style.css",
            &[("If-Match", &tag), ("If-None-Match", &tag)],
        );
        assert_eq!(r.status, 304, "{r:?}");
    }

    #[test]
    fn responses_after_304_and_412_on_a_kept_alive_connection_are_framed() {
        let server = start_default_site();
        let tag = etag(&get(&server, "/style.css", &[]));
        let mut c = server.connect();
        let reqs = format!(
            "GET /style.css HTTP/1.1\r\nHost: test\r\nIf-None-Match: {tag}\r\n\r\n\
             HEAD /style.css HTTP/1.1\r\nHost: test\r\nIf-None-Match: {tag}\r\n\r\n\
             GET /style.css HTTP/1.1\r\nHost: test\r\nIf-Match: \"nope\"\r\n\r\n\
             GET /app.js HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        );
        c.write_all(reqs.as_bytes()).unwrap();
        // read_response reads exactly one response by its framing and checks
        // that the next one starts with a status line.
        let r = read_response(&mut c, false).expect("304 to GET");
        assert_eq!(r.status, 304, "{r:?}");
        let r = read_response(&mut c, true).expect("304 to HEAD");
        assert_eq!(r.status, 304, "{r:?}");
        let r = read_response(&mut c, false).expect("412");
        assert_eq!(r.status, 412, "{r:?}");
        let r = read_response(&mut c, false).expect("200");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, APP);
        let rest = read_to_close(&mut c);
        assert!(
            rest.is_empty(),
            "unexpected bytes after the last response: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}
