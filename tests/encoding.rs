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

/// On-the-fly compression: files without a sibling, compressed as the
/// client accepts.
mod on_the_fly {
    use std::io::Read;

    use crate::util::{Resp, TestServer, request, start_site};

    /// A page of 20 KB (compressed whole and kept) and one of 2 MB
    /// (streamed through the encoder).
    fn page(lines: usize, salt: &str) -> Vec<u8> {
        (0..lines)
            .flat_map(|i| format!("<p>{salt} line {i} of the page, {}</p>\n", i % 97).into_bytes())
            .collect()
    }

    fn server(compress: bool) -> TestServer {
        let server = start_site(|c, f| (c, f.compress(compress)));
        std::fs::write(server.root().join("page.html"), page(500, "small")).unwrap();
        std::fs::write(server.root().join("big.txt"), page(50_000, "big")).unwrap();
        std::fs::write(
            server.root().join("photo.png"),
            page(500, "not really a png"),
        )
        .unwrap();
        server
    }

    fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(server, "GET", path, headers)
    }

    fn decode(r: &Resp) -> Vec<u8> {
        let mut plain = Vec::new();
        match r.header("content-encoding") {
            None => plain = r.body.clone(),
            Some("gzip") => {
                flate2::read::GzDecoder::new(&r.body[..])
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Some("br") => {
                brotli::Decompressor::new(&r.body[..], 4096)
                    .read_to_end(&mut plain)
                    .unwrap();
            }
            Some("zstd") => plain = zstd::decode_all(&r.body[..]).unwrap(),
            Some(other) => panic!("unexpected coding {other}"),
        }
        plain
    }

    /// Asks for `path` with `coding` until the answer is the stored copy
    /// of a large file (a `Content-Length`, not chunks), which a job on the
    /// blocking pool makes after the first request; at most 20 s.
    fn stored_copy(server: &TestServer, path: &str, coding: &str) -> Resp {
        let mut last = None;
        let ready = crate::util::eventually(std::time::Duration::from_secs(20), || {
            let r = get(server, path, &[("Accept-Encoding", coding)]);
            let done = r.header("content-length").is_some();
            last = Some(r);
            done
        });
        let last = last.unwrap();
        assert!(ready, "{path} {coding}: never stored: {:?}", last.headers);
        last
    }

    crate::engine_tests! {
        /// A file over 1 MiB is streamed at first, compressed once in the
        /// background, then sent from that copy with its length: the same
        /// bytes either way, and a new copy when the file changes.
        #[test]
        fn a_large_file_is_compressed_once_then_sent_with_its_length() {
            let server = server(true);
            for (salt, edit) in [("big", None), ("BIG", Some("BIG"))] {
                if let Some(edit) = edit {
                    // Same length, other bytes.
                    std::fs::write(server.root().join("big.txt"), page(50_000, edit)).unwrap();
                }
                let file = page(50_000, salt);
                for coding in ["gzip", "br", "zstd"] {
                    let first = get(&server, "/big.txt", &[("Accept-Encoding", coding)]);
                    assert_eq!(first.header("content-encoding"), Some(coding));
                    assert!(decode(&first) == file, "{coding} {salt}: the first answer");
                    let stored = stored_copy(&server, "/big.txt", coding);
                    assert!(decode(&stored) == file, "{coding} {salt}: the stored copy");
                    assert!(stored.body.len() < file.len() / 3);
                    // The streamed answer (fast level) is another
                    // representation, with an ETag of its own.
                    let (first_tag, tag) = (first.header("etag").unwrap(), stored.header("etag").unwrap());
                    if first.header("content-length").is_none() {
                        assert!(first_tag.ends_with(&format!("-{coding}-fast\"")), "{first_tag}");
                        assert_ne!(first_tag, tag);
                    } else {
                        assert_eq!(first_tag, tag);
                    }
                    assert!(tag.ends_with(&format!("-{coding}\"")), "{tag}");
                    // A client holding the tag gets a 304.
                    let tag = stored.header("etag").unwrap();
                    let r = get(&server, "/big.txt", &[("Accept-Encoding", coding), ("If-None-Match", tag)]);
                    assert_eq!((r.status, r.header("vary")), (304, Some("Accept-Encoding")));
                }
            }
        }

        #[test]
        fn each_coding_decodes_to_the_file_and_has_its_own_etag() {
            let server = server(true);
            for (path, lines, salt) in [("/page.html", 500, "small"), ("/big.txt", 50_000, "big")] {
                let file = page(lines, salt);
                let identity = get(&server, path, &[]);
                assert_eq!(identity.status, 200);
                assert_eq!(identity.body, file);
                assert_eq!(identity.header("vary"), Some("Accept-Encoding"), "{path}");
                let mut tags = vec![identity.header("etag").unwrap().to_string()];
                for coding in ["gzip", "br", "zstd"] {
                    // Twice: the second comes from the store (or the cache).
                    for _ in 0..2 {
                        let r = get(&server, path, &[("Accept-Encoding", coding)]);
                        assert_eq!(r.status, 200, "{path} {coding}");
                        assert_eq!(r.header("content-encoding"), Some(coding), "{path}");
                        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
                        assert!(r.body.len() < file.len() / 3, "{path} {coding}: {}", r.body.len());
                        assert!(decode(&r) == file, "{path} {coding}: decodes to another body");
                        let tag = r.header("etag").unwrap().to_string();
                        // A large file streamed before its copy is kept
                        // has a `-fast` tag of its own.
                        if !tags.contains(&tag) && !tag.ends_with("-fast\"") {
                            tags.push(tag);
                        }
                    }
                    if path == "/big.txt" {
                        let tag = stored_copy(&server, path, coding).header("etag").unwrap().to_string();
                        if !tags.contains(&tag) {
                            tags.push(tag);
                        }
                    }
                }
                assert_eq!(tags.len(), 4, "one ETag per representation: {tags:?}");
                // A browser's list picks br.
                let r = get(&server, path, &[("Accept-Encoding", "gzip, deflate, br, zstd")]);
                assert_eq!(r.header("content-encoding"), Some("br"));
                // HEAD says what GET would send (for the large file, once
                // its stored copy is ready: the streamed one has no length).
                if path == "/big.txt" {
                    stored_copy(&server, path, "gzip");
                }
                let head = request(&server, "HEAD", path, &[("Accept-Encoding", "gzip")]);
                let got = get(&server, path, &[("Accept-Encoding", "gzip")]);
                for field in ["content-encoding", "etag", "content-length", "content-type"] {
                    assert_eq!(head.header(field), got.header(field), "{path} {field}");
                }
            }
        }

        #[test]
        fn an_edited_file_is_served_fresh_under_each_coding() {
            let server = server(true);
            for coding in ["gzip", "br", "zstd"] {
                let r = get(&server, "/page.html", &[("Accept-Encoding", coding)]);
                assert!(decode(&r) == page(500, "small"));
            }
            // Same length, other bytes.
            std::fs::write(server.root().join("page.html"), page(500, "SMALL")).unwrap();
            for coding in ["gzip", "br", "zstd"] {
                let r = get(&server, "/page.html", &[("Accept-Encoding", coding)]);
                assert!(decode(&r) == page(500, "SMALL"), "{coding}: a stale body");
            }
        }

        #[test]
        fn images_small_files_and_ranges_go_out_as_they_are() {
            let server = server(true);
            let r = get(&server, "/photo.png", &[("Accept-Encoding", "gzip, br")]);
            assert_eq!(r.header("content-encoding"), None);
            assert_eq!(r.header("vary"), None);
            assert_eq!(r.body, page(500, "not really a png"));
            // Under MIN_SIZE (1 KiB): as it is.
            let r = get(&server, "/style.css", &[("Accept-Encoding", "gzip")]);
            assert_eq!(r.header("content-encoding"), None);
            // A range counts the file's own bytes.
            let r = get(&server, "/page.html", &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")]);
            assert_eq!(r.status, 206);
            assert_eq!(r.header("content-encoding"), None);
            assert_eq!(r.body, &page(500, "small")[..10]);
            // A coded ETag revalidates the coded representation.
            let tag = get(&server, "/page.html", &[("Accept-Encoding", "gzip")])
                .header("etag")
                .unwrap()
                .to_string();
            let r = get(&server, "/page.html", &[("Accept-Encoding", "gzip"), ("If-None-Match", &tag)]);
            assert_eq!(r.status, 304);
            let r = get(&server, "/page.html", &[("Accept-Encoding", "br"), ("If-None-Match", &tag)]);
            assert_eq!(r.status, 200, "another coding's tag");
        }

        #[test]
        fn a_precompressed_sibling_wins_and_compress_off_turns_it_off() {
            let server = server(true);
            std::fs::write(server.root().join("page.html.gz"), b"MADE-AHEAD").unwrap();
            let r = get(&server, "/page.html", &[("Accept-Encoding", "gzip")]);
            assert_eq!(r.body, b"MADE-AHEAD");
            assert_eq!(r.header("content-encoding"), Some("gzip"));

            let server = self::server(false);
            for coding in ["gzip", "br", "zstd"] {
                let r = get(&server, "/page.html", &[("Accept-Encoding", coding)]);
                assert_eq!(r.header("content-encoding"), None, "{coding}");
                assert_eq!(r.header("vary"), None);
                assert_eq!(r.body, page(500, "small"));
            }
        }
    }
}
