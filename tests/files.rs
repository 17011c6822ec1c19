//! Path and file behaviour over raw sockets: index pages, directory
//! redirects, 404 pages, content types, decoding, traversal, symlinks,
//! dotfiles, special files and large files.

use std::io::Write;
use std::path::Path;

use coserve::Symlinks;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::util::{
    self, Resp, TestServer, big_pattern, read_response, start_default_site, start_site,
    test_config, test_files,
};

const CUSTOM_404: &[u8] = b"<!doctype html><title>404</title>custom not found\n";
const INDEX: &[u8] = b"<!doctype html><title>home</title>home page\n";
const SECRET: &str = "TOP-SECRET-outside-the-root-6d1f";

/// `GET target` on a fresh connection with `Connection: close`, the target
/// written exactly as given.
fn get_raw_target(server: &TestServer, target: &str) -> Resp {
    server
        .one(format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes())
}

fn write(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// A temporary directory holding a served `site/` and, beside it (outside
/// the root), `secret.txt` and `outside/`.
fn site_with_outside() -> tempfile::TempDir {
    let outer = tempfile::tempdir().unwrap();
    let site = outer.path().join("site");
    write(&site.join("index.html"), INDEX);
    write(&site.join("404.html"), CUSTOM_404);
    write(&site.join("sub/index.html"), b"sub index\n");
    write(&site.join("style.css"), b"body {}\n");
    write(&outer.path().join("secret.txt"), SECRET.as_bytes());
    write(&outer.path().join("outside/inner.txt"), SECRET.as_bytes());
    outer
}

fn assert_safe_location(target: &str, r: &Resp) {
    if let Some(loc) = r.header("location") {
        assert!(
            loc.starts_with('/') && !loc.starts_with("//"),
            "{target}: Location {loc:?} must start with exactly one '/'"
        );
        assert!(
            !loc.contains("://"),
            "{target}: Location {loc:?} has a scheme"
        );
        assert!(
            !loc.contains('\\'),
            "{target}: Location {loc:?} has a backslash"
        );
    }
}

crate::engine_tests! {
    #[test]
    fn directories_are_served_by_their_index() {
        let server = start_default_site();
        let root = server.get("/");
        assert_eq!(root.status, 200);
        assert_eq!(root.body, INDEX);
        assert_eq!(
            root.header("content-type"),
            Some("text/html; charset=utf-8")
        );

        let sub = server.get("/sub/");
        assert_eq!(sub.status, 200);
        assert_eq!(sub.body, b"sub index\n");

        let page = server.get("/sub/page.html");
        assert_eq!(page.status, 200);
        assert_eq!(page.body, b"sub page\n");

        // A directory without an index is listed, as python's http.server
        // does (modes.rs has the listing's own tests).
        let empty = server.get("/empty/");
        assert_eq!(empty.status, 200, "a directory without an index");
        assert!(empty.text().contains("This directory is empty."), "{}", empty.text());
    }

    /// A file asked for as a directory is not the file: served, its
    /// relative links would resolve below it (nginx and Go answer 404).
    #[test]
    fn a_file_with_a_trailing_slash_is_not_found() {
        let server = start_default_site();
        for _ in 0..2 {
            // Twice: the second GET of the file may come from the cache.
            assert_eq!(server.get("/style.css").status, 200);
            let r = server.get("/style.css/");
            assert_eq!(r.status, 404, "{r:?}");
            assert_eq!(r.body, CUSTOM_404);
            assert_eq!(server.get("/sub/page.html/").status, 404);
        }
        // A directory with the slash is still its index.
        assert_eq!(server.get("/sub/").body, b"sub index\n");
    }

    #[test]
    fn directory_without_slash_redirects() {
        let server = start_default_site();
        let r = server.get("/sub");
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("/sub/"));

        let r = server.get("/sub?x=1");
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("/sub/?x=1"));

        let r = server.get("/empty");
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("/empty/"));

        // The redirect target is followed to the index.
        let r = server.get("/sub/?x=1");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"sub index\n");
    }

    #[test]
    fn redirects_never_point_off_site() {
        let server = start_default_site();
        std::fs::create_dir(server.root().join("evil.example")).unwrap();
        std::fs::create_dir(server.root().join("evil.example/sub")).unwrap();

        // Targets that name the `evil.example` directory without a trailing
        // slash, so the redirect path is taken.
        let redirected = [
            ("//evil.example", "/evil.example/"),
            ("/%2fevil.example", "/evil.example/"),
            ("/%2F%2Fevil.example", "/evil.example/"),
            ("//%2fevil.example", "/evil.example/"),
            ("///evil.example/sub", "/evil.example/sub/"),
            ("/./evil.example", "/evil.example/"),
            ("//evil.example//sub", "/evil.example/sub/"),
            ("/evil.example?next=//x", "/evil.example/?next=//x"),
            ("http://evil.example//evil.example", "/evil.example/"),
        ];
        for (target, want) in redirected {
            let r = get_raw_target(&server, target);
            assert_eq!(r.status, 301, "{target}");
            assert_safe_location(target, &r);
            assert_eq!(r.header("location"), Some(want), "{target}");
        }

        // Whatever these get, a Location never leaves the site.
        let others = [
            "//evil.example/..",
            "//evil.example/.",
            "///evil.example/sub/..",
            "//evil.example/%2e%2e",
            "/\\evil.example",
            "/%5cevil.example",
            "/%5c%5cevil.example",
        ];
        for target in others {
            let r = get_raw_target(&server, target);
            assert_safe_location(target, &r);
        }
    }

    #[test]
    fn missing_file_gets_the_custom_404_page() {
        let server = start_default_site();
        let r = server.get("/no-such-file.html");
        assert_eq!(r.status, 404);
        assert_eq!(r.body, CUSTOM_404);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));

        let r = server.get("/sub/missing/deeper.txt");
        assert_eq!(r.status, 404);
        assert_eq!(r.body, CUSTOM_404);
    }

    #[test]
    fn missing_file_without_404_html_gets_a_builtin_page() {
        let server = start_default_site();
        std::fs::remove_file(server.root().join("404.html")).unwrap();
        let r = server.get("/no-such-file.html");
        assert_eq!(r.status, 404);
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{:?}",
            r.header("content-type")
        );
        let text = r.text();
        assert!(!r.body.is_empty());
        assert!(!text.contains("custom not found"));
        assert!(text.contains("404"), "{text:?}");
        assert!(text.to_ascii_lowercase().contains("<html"), "{text:?}");
    }

    #[test]
    fn head_of_a_missing_file_has_no_body() {
        let server = start_default_site();
        let bytes =
            server.raw(b"HEAD /no-such-file.html HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 404 "), "{text:?}");
        let end = text.find("\r\n\r\n").expect("a complete head") + 4;
        assert_eq!(end, bytes.len(), "HEAD response carried a body: {text:?}");

        // And HEAD of a present file: the GET's headers, no body.
        let bytes = server.raw(b"HEAD /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
        let end = text.find("\r\n\r\n").expect("a complete head") + 4;
        assert_eq!(end, bytes.len(), "HEAD response carried a body: {text:?}");
        let head = text.to_ascii_lowercase();
        assert!(
            head.contains("content-type: text/css; charset=utf-8\r\n"),
            "{text:?}"
        );
    }

    #[test]
    fn content_type_and_last_modified() {
        let server = start_default_site();
        let cases: &[(&str, &str)] = &[
            ("index.html", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("logo.png", "image/png"),
            ("file.unknownext", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ];
        for &(name, want) in cases {
            let r = server.get(&format!("/{name}"));
            assert_eq!(r.status, 200, "{name}");
            assert_eq!(r.header("content-type"), Some(want), "{name}");
            let on_disk = std::fs::read(server.root().join(name)).unwrap();
            assert_eq!(r.body, on_disk, "{name}");
            assert_eq!(
                r.header("content-length"),
                Some(on_disk.len().to_string().as_str()),
                "{name}"
            );

            let lm = r
                .header("last-modified")
                .unwrap_or_else(|| panic!("{name}: no Last-Modified"));
            let served =
                httpdate::parse_http_date(lm).unwrap_or_else(|e| panic!("{name}: {lm:?}: {e}"));
            let mtime = std::fs::metadata(server.root().join(name))
                .unwrap()
                .modified()
                .unwrap();
            assert_eq!(
                served.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                mtime.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                "{name}: Last-Modified {lm:?}"
            );
        }
    }

    #[test]
    fn last_modified_follows_an_old_mtime() {
        let server = start_default_site();
        // A fixed past time, so the header cannot match by coincidence.
        let when = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let f = std::fs::File::options()
            .write(true)
            .open(server.root().join("style.css"))
            .unwrap();
        f.set_modified(when).unwrap();
        drop(f);
        let r = server.get("/style.css");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("last-modified"),
            Some("Sun, 09 Sep 2001 01:46:40 GMT")
        );
    }

    #[test]
    fn query_is_stripped_and_path_percent_decoded() {
        let server = start_default_site();
        let r = server.get("/style.css?v=1");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"body { color: black; }\n");
        assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));

        let r = server.get("/with%20space.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"spaced\n");

        let r = server.get("/%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"unicode name\n");

        let r = server.get("/%c3%bcn%c3%af%20c%c3%b6d%c3%a9.txt?q=%00");
        assert_eq!(r.status, 200, "lower-case escapes, query not decoded");
        assert_eq!(r.body, b"unicode name\n");

        let r = server.get("/%73tyle.css");
        assert_eq!(r.status, 200, "an escaped unreserved character");
        assert_eq!(r.body, b"body { color: black; }\n");
    }

    #[test]
    fn traversal_never_leaves_the_root() {
        let outer = site_with_outside();
        let server = util::start_files(outer.path().join("site"), test_config(), test_files());
        // The site itself works, so the refusals below mean something.
        assert_eq!(get_raw_target(&server, "/").body, INDEX);

        let targets = [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/..%2fsecret.txt",
            "/..%2Fsecret.txt",
            "/sub/../../secret.txt",
            "/sub/..%2f..%2fsecret.txt",
            "/sub/%2e%2e/%2e%2e/secret.txt",
            "/..\\secret.txt",
            "/%5c..%5csecret.txt",
            "/..%5csecret.txt",
            "/%252e%252e/secret.txt",
            "/%252e%252e%252fsecret.txt",
            "/.%2e/secret.txt",
            "/%2e./secret.txt",
            "/./../secret.txt",
            "/../site/../secret.txt",
            "/../outside/inner.txt",
            "/%2e%2e/outside/inner.txt",
            "http://x/../secret.txt",
            "http://x/%2e%2e/secret.txt",
        ];
        for target in targets {
            let r = get_raw_target(&server, target);
            assert!(
                r.status == 400 || r.status == 404,
                "{target}: status {} (want 400 or 404)",
                r.status
            );
            assert!(!r.text().contains(SECRET), "{target}: the secret leaked");
        }
    }

    #[test]
    fn nul_and_control_characters_are_rejected() {
        let server = start_default_site();
        for target in [
            "/a%00b",
            "/%0d%0a",
            "/index.html%00.txt",
            "/a%0ab",
            "/a%1bb",
            "/a%7fb",
        ] {
            let r = get_raw_target(&server, target);
            assert_eq!(r.status, 400, "{target}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_root_are_refused_unless_followed() {
        use std::os::unix::fs::symlink;
        let outer = site_with_outside();
        let site = outer.path().join("site");
        symlink(outer.path().join("secret.txt"), site.join("out.txt")).unwrap();
        symlink(outer.path().join("outside"), site.join("outdir")).unwrap();
        symlink("../secret.txt", site.join("rel-out.txt")).unwrap();
        symlink(site.join("index.html"), site.join("alias.html")).unwrap();
        symlink("sub/index.html", site.join("rel-alias.html")).unwrap();

        let server = util::start_files(
            &site,
            test_config(),
            test_files().symlinks(Symlinks::Refuse),
        );
        for target in ["/out.txt", "/outdir/inner.txt", "/rel-out.txt"] {
            let r = get_raw_target(&server, target);
            assert_eq!(r.status, 404, "{target} (--symlinks refuse)");
            assert!(!r.text().contains(SECRET), "{target}: the secret leaked");
        }
        let r = get_raw_target(&server, "/alias.html");
        assert_eq!(r.status, 200, "a symlink inside the root");
        assert_eq!(r.body, INDEX);
        let r = get_raw_target(&server, "/rel-alias.html");
        assert_eq!(r.status, 200, "a relative symlink inside the root");
        assert_eq!(r.body, b"sub index\n");
        drop(server);

        let server = util::start_files(
            &site,
            test_config(),
            test_files().symlinks(Symlinks::Follow),
        );
        for target in ["/out.txt", "/outdir/inner.txt", "/rel-out.txt"] {
            let r = get_raw_target(&server, target);
            assert_eq!(r.status, 200, "{target} (--symlinks follow)");
            assert_eq!(r.text(), SECRET, "{target}");
        }
        let r = get_raw_target(&server, "/alias.html");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, INDEX);
        // Following symlinks does not open up `..`.
        let r = get_raw_target(&server, "/../secret.txt");
        assert!(r.status == 400 || r.status == 404, "status {}", r.status);
    }

    /// The three symlink policies on a site whose assets are links out of
    /// the root, as Debian's documentation packages ship: one to a file of
    /// the link's own owner (served under `owner`), one to another user's
    /// file (refused under `owner`), and one whose link belongs to another
    /// user (refused too). Run as root, the test hands files to `nobody`;
    /// as anyone else, it links to root's `/etc/passwd`.
    #[cfg(unix)]
    #[test]
    fn symlink_policies_follow_links_by_owner() {
        use std::os::unix::fs::{MetadataExt, symlink};
        let outer = site_with_outside();
        let site = outer.path().join("site");
        let assets = site.join("assets");
        std::fs::create_dir(&assets).unwrap();
        let ours = outer.path().join("outside/inner.txt");
        symlink(&ours, assets.join("same-owner.txt")).unwrap();
        symlink(outer.path().join("outside"), assets.join("same-owner-dir")).unwrap();
        let root = unsafe_free_euid() == 0;
        let theirs = if root {
            let theirs = outer.path().join("theirs.txt");
            write(&theirs, SECRET.as_bytes());
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            theirs
        } else {
            Path::new("/etc/passwd").to_path_buf()
        };
        assert_ne!(
            std::fs::metadata(&theirs).unwrap().uid(),
            std::fs::metadata(&ours).unwrap().uid()
        );
        symlink(&theirs, assets.join("other-owner.txt")).unwrap();
        let mut links = vec!["/assets/other-owner.txt"];
        if root {
            // A link planted by another user to root's file.
            symlink(&ours, assets.join("planted.txt")).unwrap();
            std::os::unix::fs::lchown(assets.join("planted.txt"), Some(65534), Some(65534)).unwrap();
            links.push("/assets/planted.txt");
        }
        let same = ["/assets/same-owner.txt", "/assets/same-owner-dir/inner.txt"];

        for (policy, same_status, other_status) in [
            (Symlinks::Refuse, 404, 404),
            (Symlinks::SameOwner, 200, 404),
            (Symlinks::Follow, 200, 200),
        ] {
            let server = util::start_files(&site, test_config(), test_files().symlinks(policy));
            for target in same {
                let r = get_raw_target(&server, target);
                assert_eq!(r.status, same_status, "{target} under {policy}");
                if same_status == 200 {
                    assert_eq!(r.text(), SECRET, "{target} under {policy}");
                } else {
                    assert!(!r.text().contains(SECRET), "{target} under {policy}");
                }
            }
            for target in &links {
                let r = get_raw_target(&server, target);
                assert_eq!(r.status, other_status, "{target} under {policy}");
                if other_status == 404 {
                    assert!(!r.text().contains(SECRET), "{target} under {policy}");
                }
            }
            // The listing shows exactly what is served.
            let listing = server.get("/assets/").text();
            for (name, served) in [
                ("same-owner.txt", same_status == 200),
                ("same-owner-dir/", same_status == 200),
                ("other-owner.txt", other_status == 200),
            ] {
                assert_eq!(
                    listing.contains(&format!("href=\"{name}\"")),
                    served,
                    "{name} under {policy}: {listing}"
                );
            }
            // Links that stay beneath the root are followed under every
            // policy.
            assert_eq!(server.get("/sub/").body, b"sub index\n");
        }
    }

    #[test]
    fn dotfiles_are_hidden_except_well_known() {
        let server = start_default_site();
        for target in ["/.hidden", "/%2ehidden", "/%2Ehidden", "/sub/../.hidden"] {
            let r = get_raw_target(&server, target);
            assert_eq!(r.status, 404, "{target}");
            assert_eq!(r.body, CUSTOM_404, "{target}");
        }
        let r = server.get("/.well-known/security.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Contact: mailto:security@example.com\n");
    }

    #[cfg(unix)]
    #[test]
    fn fifo_is_refused_without_blocking() {
        let server = start_default_site();
        let path = server.root().join("pipe");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());

        let started = Instant::now();
        let mut s = server.connect();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /pipe HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).expect("a response for the FIFO");
        assert!(r.status == 404 || r.status == 403, "status {}", r.status);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );

        // HEAD too.
        let r = server.one(b"HEAD /pipe HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert!(r.status == 404 || r.status == 403, "status {}", r.status);

        // A FIFO where a directory's index would be.
        std::fs::create_dir(server.root().join("fifodir")).unwrap();
        let c_index = std::ffi::CString::new(
            server
                .root()
                .join("fifodir/index.html")
                .as_os_str()
                .as_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c_index.as_ptr(), 0o644) };
        assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
        // Never served: a 404, or the listing, which leaves the FIFO out.
        let r = server.get("/fifodir/");
        assert!(
            r.status == 404 || r.status == 403 || (r.status == 200 && !r.text().contains("index.html")),
            "status {}: {}",
            r.status,
            r.text()
        );

        let r = server.get("/");
        assert_eq!(r.status, 200, "the server still answers after the FIFO");
        assert_eq!(r.body, INDEX);
    }

    #[test]
    fn big_file_arrives_intact() {
        let server = start_default_site();
        let r = server.get("/big.bin");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("1048576"));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body.len(), 1024 * 1024);
        assert!(r.body == big_pattern(1024 * 1024), "big.bin corrupted");

        // Twice on one keep-alive connection: framing stays right.
        let mut s = server.connect();
        s.write_all(
            b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\nGET /style.css HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .unwrap();
        let first = read_response(&mut s, false).expect("first response");
        assert_eq!(first.status, 200);
        assert!(
            first.body == big_pattern(1024 * 1024),
            "big.bin corrupted on keep-alive"
        );
        let second = read_response(&mut s, false).expect("second response");
        assert_eq!(second.status, 200);
        assert_eq!(second.body, b"body { color: black; }\n");
    }

    /// A deploy that swaps the root's symlink (`current -> v2`), or renames
    /// a new directory into place, is served after at most about a second
    /// (the root path is resolved again once a second), cached files
    /// included; each response comes whole from one version or the other.
    #[test]
    fn a_replaced_root_is_served_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for v in ["v1", "v2"] {
            write(&d.join(v).join("index.html"), format!("release {v}\n").as_bytes());
            write(&d.join(v).join(format!("only-{v}.txt")), v.as_bytes());
        }
        std::os::unix::fs::symlink("v1", d.join("current")).unwrap();
        let server = util::start_files(d.join("current"), test_config(), test_files());
        for _ in 0..2 {
            assert_eq!(server.get("/").body, b"release v1\n");
        }

        // The swap a deploy tool makes: a new link renamed over the old.
        std::os::unix::fs::symlink("v2", d.join("next")).unwrap();
        std::fs::rename(d.join("next"), d.join("current")).unwrap();
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        let swapped = util::eventually(Duration::from_secs(5), || {
            let r = server.get("/");
            *seen.entry(r.text()).or_default() += 1;
            r.body == b"release v2\n"
        });
        assert!(swapped, "still serving the old root: {seen:?}");
        assert!(
            seen.keys().all(|b| b == "release v1\n" || b == "release v2\n"),
            "{seen:?}"
        );
        assert_eq!(server.get("/only-v2.txt").status, 200);
        assert_eq!(server.get("/only-v1.txt").status, 404);

        // A real directory renamed into place of the directory served.
        let real = tempfile::tempdir().unwrap();
        let site = real.path().join("site");
        write(&site.join("index.html"), b"old site\n");
        let server = util::start_files(&site, test_config(), test_files());
        assert_eq!(server.get("/").body, b"old site\n");
        write(&real.path().join("new/index.html"), b"new site\n");
        std::fs::rename(&site, real.path().join("old")).unwrap();
        std::fs::rename(real.path().join("new"), &site).unwrap();
        assert!(
            util::eventually(Duration::from_secs(5), || server.get("/").body
                == b"new site\n"),
            "still serving the renamed-away directory"
        );

        // A root that no longer resolves (a deploy half done) keeps the old.
        std::fs::rename(&site, real.path().join("gone")).unwrap();
        assert_eq!(server.get("/").body, b"new site\n");
    }

    #[test]
    fn a_small_fixed_send_buffer_still_sends_big_files_whole() {
        // 4 KiB: every sendfile call fills the socket, so the wait for room
        // is exercised on each response, for the head sent with MSG_MORE too.
        let server = start_site(|c, f| (c.send_buffer(Some(4096)), f));
        let mut s = server.connect();
        for _ in 0..3 {
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
            let r = read_response(&mut s, false).expect("a response");
            assert_eq!(r.status, 200);
            assert!(r.body == big_pattern(1024 * 1024), "big.bin corrupted");
        }
        s.write_all(b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let r = read_response(&mut s, false).expect("a response");
        assert_eq!(r.body, b"body { color: black; }\n");
        // Pipelined: the small response batched before the file's head goes
        // out with it, in order.
        s.write_all(
            b"GET /style.css HTTP/1.1\r\nHost: test\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .unwrap();
        let r = read_response(&mut s, false).expect("the first response");
        assert_eq!(r.body, b"body { color: black; }\n");
        let r = read_response(&mut s, false).expect("the second response");
        assert!(r.body == big_pattern(1024 * 1024), "big.bin corrupted");
    }
}

/// This process's effective user id, from `/proc` (no `unsafe` here).
fn unsafe_free_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}
