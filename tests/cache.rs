//! The file cache: hits come from memory and look exactly like misses, and
//! nothing stale or outside the root is ever served from it.

use std::fs;
use std::time::Duration;

use coserve::{CacheOptions, Symlinks};

use crate::engine_tests;
use crate::util::{Resp, TestServer, start_site};

/// A server whose cache takes files once they are `settle` old.
fn cached_site(settle: Duration, max_bytes: usize) -> TestServer {
    start_site(|c, f| {
        let cache = CacheOptions::new().settle(settle).max_bytes(max_bytes);
        (c, f.cache(Some(cache)))
    })
}

/// Every header field but `Date`, which changes by the second.
fn fields(r: &Resp) -> Vec<(String, String)> {
    let mut f: Vec<_> = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .cloned()
        .collect();
    f.sort();
    f
}

fn stats(s: &TestServer) -> coserve::CacheStats {
    s.cache_stats().expect("the cache is on")
}

/// How long a test waits for a file to be old enough to be cached: the
/// cache's rule under test, not a synchronisation.
const SETTLE: Duration = Duration::from_millis(30);

fn settle() {
    std::thread::sleep(SETTLE * 2);
}

engine_tests! {
    #[test]
    fn a_hit_is_served_from_memory_and_looks_like_the_miss() {
        let s = cached_site(Duration::ZERO, 1 << 20);
        let miss = s.get("/index.html");
        let hits: Vec<Resp> = (0..3).map(|_| s.get("/index.html")).collect();
        let st = stats(&s);
        assert_eq!((st.entries, st.hits), (1, 3), "{st:?}");
        for hit in &hits {
            assert_eq!(hit.status, 200);
            assert_eq!(hit.body, miss.body);
            assert_eq!(fields(hit), fields(&miss));
        }
        assert_eq!(miss.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(miss.header("etag").is_some() && miss.header("last-modified").is_some());
        // HEAD from the same entry: the same fields, no body.
        let head = s.one(b"HEAD /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(fields(&head), fields(&miss));
        assert!(head.body.is_empty());
        // The directory's index is cached under the directory's path.
        let dir = s.get("/sub/");
        assert_eq!((s.get("/sub/").body, dir.body.clone()), (b"sub index\n".to_vec(), dir.body));
    }

    #[test]
    fn a_file_written_just_now_is_not_cached_until_it_settles() {
        let s = cached_site(Duration::from_secs(3600), 1 << 20);
        for _ in 0..3 {
            assert_eq!(s.get("/index.html").status, 200);
        }
        let st = stats(&s);
        assert_eq!((st.entries, st.hits), (0, 0), "{st:?}");
    }

    #[test]
    fn an_edit_shows_up_on_the_very_next_request() {
        let s = cached_site(SETTLE, 1 << 20);
        let page = s.root().join("page.html");
        fs::write(&page, b"version 1").unwrap();
        settle();
        assert_eq!(s.get("/page.html").body, b"version 1");
        assert_eq!(s.get("/page.html").body, b"version 1");
        assert_eq!(stats(&s).hits, 1, "{:?}", stats(&s));

        // Same size, in place.
        fs::write(&page, b"version 2").unwrap();
        assert_eq!(s.get("/page.html").body, b"version 2");
        settle();
        assert_eq!(s.get("/page.html").body, b"version 2");
        assert_eq!(s.get("/page.html").body, b"version 2");

        // Replaced by a rename.
        let tmp = s.root().join("page.tmp");
        fs::write(&tmp, b"version 3, longer").unwrap();
        fs::rename(&tmp, &page).unwrap();
        assert_eq!(s.get("/page.html").body, b"version 3, longer");
        settle();
        assert_eq!(s.get("/page.html").body, b"version 3, longer");

        // Truncated, then removed.
        fs::OpenOptions::new().write(true).open(&page).unwrap().set_len(7).unwrap();
        assert_eq!(s.get("/page.html").body, b"version");
        settle();
        assert_eq!(s.get("/page.html").body, b"version");
        fs::remove_file(&page).unwrap();
        assert_eq!(s.get("/page.html").status, 404);
    }

    /// A file above `max_file` is held open: hits skip the open, yet an
    /// edit, a replacement, a truncation and a removal each show up on
    /// the next request, and a stale descriptor is closed.
    #[test]
    fn a_held_descriptor_is_never_stale_and_closes_when_its_file_goes() {
        let s = start_site(|c, f| {
            let cache = CacheOptions::new().settle(SETTLE).max_file(4);
            (c, f.cache(Some(cache)))
        });
        let page = s.root().join("page.html");
        fs::write(&page, b"version 1").unwrap();
        settle();
        assert_eq!(s.get("/page.html").body, b"version 1");
        assert_eq!(s.get("/page.html").body, b"version 1");
        let st = stats(&s);
        assert_eq!((st.hits, st.open), (1, 1), "{st:?}");

        // Same size, in place: the held descriptor is the same file.
        fs::write(&page, b"version 2").unwrap();
        assert_eq!(s.get("/page.html").body, b"version 2");
        settle();
        assert_eq!(s.get("/page.html").body, b"version 2");
        assert_eq!(s.get("/page.html").body, b"version 2");

        // Replaced by a rename: the descriptor of the old file goes.
        let tmp = s.root().join("page.tmp");
        fs::write(&tmp, b"version 3, longer").unwrap();
        fs::rename(&tmp, &page).unwrap();
        assert_eq!(s.get("/page.html").body, b"version 3, longer");
        settle();
        assert_eq!(s.get("/page.html").body, b"version 3, longer");
        assert_eq!(s.get("/page.html").body, b"version 3, longer");
        assert_eq!(stats(&s).open, 1, "{:?}", stats(&s));

        // Truncated, then removed: nothing stays open.
        fs::OpenOptions::new().write(true).open(&page).unwrap().set_len(7).unwrap();
        assert_eq!(s.get("/page.html").body, b"version");
        fs::remove_file(&page).unwrap();
        assert_eq!(s.get("/page.html").status, 404);
        assert_eq!(stats(&s).open, 0, "{:?}", stats(&s));
    }

    #[test]
    fn with_max_open_zero_no_descriptor_is_held() {
        let s = start_site(|c, f| {
            let cache = CacheOptions::new().settle(Duration::ZERO).max_file(4).max_open(0);
            (c, f.cache(Some(cache)))
        });
        for _ in 0..3 {
            assert_eq!(s.get("/index.html").status, 200);
        }
        let st = stats(&s);
        assert_eq!((st.entries, st.open, st.hits), (0, 0, 0), "{st:?}");
    }

    #[test]
    fn a_symlink_turned_outside_the_root_is_not_served_from_the_cache() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), b"top secret").unwrap();
        let s = start_site(|c, f| {
            let cache = CacheOptions::new().settle(Duration::ZERO);
            (c, f.cache(Some(cache)).symlinks(Symlinks::Refuse))
        });
        let link = s.root().join("link.txt");
        std::os::unix::fs::symlink("with space.txt", &link).unwrap();
        assert_eq!(s.get("/link.txt").body, b"spaced\n");
        assert_eq!(s.get("/link.txt").body, b"spaced\n");
        assert_eq!(stats(&s).hits, 1);
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), &link).unwrap();
        let r = s.get("/link.txt");
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(!r.text().contains("top secret"));
    }

    #[test]
    fn the_cache_stays_within_its_size_and_evicts_the_least_used() {
        let max = 64 * 1024;
        let s = cached_site(Duration::ZERO, max);
        for i in 0..40 {
            fs::write(s.root().join(format!("f{i}.txt")), vec![b'a' + (i % 26) as u8; 4000]).unwrap();
        }
        for round in 0..2 {
            for i in 0..40 {
                let r = s.get(&format!("/f{i}.txt"));
                assert_eq!(r.body, vec![b'a' + (i % 26) as u8; 4000], "round {round} file {i}");
                let st = stats(&s);
                assert!(st.bytes <= max, "{st:?}");
            }
        }
        let st = stats(&s);
        assert!(st.evictions > 0 && st.entries < 40 && st.entries > 5, "{st:?}");
        // The most recent file is still there; the first was evicted.
        let hits = st.hits;
        s.get("/f39.txt");
        assert_eq!(stats(&s).hits, hits + 1);
        s.get("/f0.txt");
        assert_eq!(stats(&s).hits, hits + 1);
    }

    #[test]
    fn each_content_coding_has_its_own_entry() {
        let s = cached_site(Duration::ZERO, 1 << 20);
        fs::write(s.root().join("app.js.gz"), b"gzipped bytes").unwrap();
        let get = |ae: &str| {
            s.one(format!("GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {ae}\r\nConnection: close\r\n\r\n").as_bytes())
        };
        for _ in 0..2 {
            let gz = get("gzip");
            assert_eq!(gz.header("content-encoding"), Some("gzip"));
            assert_eq!(gz.body, b"gzipped bytes");
            let plain = get("identity");
            assert_eq!(plain.header("content-encoding"), None);
            assert_eq!(plain.body, b"console.log('hi');\n");
            assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
            assert_ne!(plain.header("etag"), gz.header("etag"));
        }
        let st = stats(&s);
        assert_eq!((st.entries, st.hits), (2, 2), "{st:?}");
    }

    #[test]
    fn ranges_and_validators_still_apply_to_a_cached_file() {
        let s = cached_site(Duration::ZERO, 1 << 20);
        let full = s.get("/style.css");
        s.get("/style.css");
        let etag = full.header("etag").unwrap().to_string();
        let r = s.one(format!("GET /style.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, 304);
        let r = s.one(b"GET /style.css HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n");
        assert_eq!((r.status, r.body.as_slice()), (206, &b"body"[..]));
        let r = s.one(b"GET /style.css HTTP/1.1\r\nHost: t\r\nIf-Match: \"other\"\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 412);
    }

    #[test]
    fn with_the_cache_off_there_are_no_counters() {
        let s = start_site(|c, f| (c, f.cache(None)));
        assert_eq!(s.get("/index.html").status, 200);
        assert!(s.cache_stats().is_none());
    }
}
