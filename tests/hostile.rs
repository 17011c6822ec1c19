//! Hostile input, generated (proptest): the head parser never panics on
//! arbitrary or mutated bytes, the path resolver never lets a path out of
//! the root however it is spelled, and a real server asked for ~500
//! generated traversal targets never answers with a file from outside its
//! root. A failing case is shrunk to a minimal input and printed.
//!
//! The table of known traversal spellings is in `files.rs`; these tests
//! generate spellings instead of listing them.

use std::path::{Component, Path, PathBuf};

use coserve::__fuzz::{Limits, Status, parse_head, resolve_path};
use coserve::Request;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

use crate::util::{self, Resp, TestServer};

const CASES: u32 = 10_000;
const SERVER_CASES: u32 = 500;

/// `CASES` cases; a failing case is saved to `tests/hostile.proptest-regressions`
/// and tried first on the next run. (The default place, beside `lib.rs`,
/// does not exist for an integration test.)
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(CASES)
    }
}

// ---------------------------------------------------------------------
// parse_head

/// Well-formed heads (some followed by a body or a second request) that
/// the mutation test starts from.
const VALID: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nAccept: */*\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET http://example.com/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"\r\nGET /%2e%2e/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"HEAD /x HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nExpect: 100-continue\r\n\r\n",
];

/// Pieces of heads, for byte soup that gets past the request line more
/// often than uniform bytes do.
const FRAGMENTS: &[&str] = &[
    "GET",
    "POST",
    "X",
    " ",
    "  ",
    "/",
    "/a",
    "*",
    "http://h",
    "?",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2.0",
    "\r\n",
    "\r",
    "\n",
    "\t",
    "\0",
    "\u{7f}",
    "\u{fc}",
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    ":",
    ": ",
    "h",
    "5",
    "-1",
    "99999999999999999999",
    "chunked",
    "gzip",
    ",",
    "close",
    "keep-alive",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(Index, u8),
    Delete(Index),
    Flip(Index, u8),
}

/// Bytes that matter to the grammar, and now and then any byte.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => select(&b"\r\n \t:,;/?%*\0\x7f\x80\xff0aA"[..]),
        1 => any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), 1u8..).prop_map(|(i, m)| Mutation::Flip(i, m)),
    ]
}

fn mutate(base: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut buf = base.to_vec();
    for m in mutations {
        match m {
            Mutation::Insert(i, b) => {
                let at = i.index(buf.len() + 1);
                buf.insert(at, *b);
            }
            Mutation::Delete(i) if !buf.is_empty() => {
                let at = i.index(buf.len());
                buf.remove(at);
            }
            Mutation::Flip(i, mask) if !buf.is_empty() => {
                let at = i.index(buf.len());
                buf[at] ^= *mask;
            }
            _ => {}
        }
    }
    buf
}

/// Parses `data` as the server does; for a complete head, exercises every
/// accessor of the request and checks that the head lies inside the input
/// and parses the same on its own.
fn check_head(data: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let head = match parse_head(data, &limits) {
        Ok(Status::Complete(head)) => head,
        Ok(Status::Partial) => return Ok(()),
        Err(e) => {
            prop_assert!(
                matches!(e.status().as_u16(), 400 | 414 | 431 | 505),
                "{e:?}"
            );
            return Ok(());
        }
    };
    prop_assert!(
        head.len <= data.len(),
        "head.len {} > input {}",
        head.len,
        data.len()
    );
    let bytes = &data[..head.len];
    prop_assert_eq!(
        parse_head(bytes, &limits),
        Ok(Status::Complete(head.clone()))
    );
    let req = Request::parse(bytes);
    prop_assert!(req.is_ok(), "Request::parse: {:?}", req);
    let req = req.unwrap();
    let _ = coserve::__fuzz::framing(&req);
    let path = req.path();
    prop_assert!(path == "*" || path.starts_with('/'), "path {:?}", path);
    if let Some(q) = req.query() {
        prop_assert!(req.target().ends_with(q));
    }
    let mut fields = 0;
    for (name, value) in req.headers() {
        prop_assert!(!name.is_empty());
        prop_assert!(!value.contains(&b'\r') && !value.contains(&b'\n'));
        fields += 1;
    }
    prop_assert!(fields <= limits.max_headers);
    let _ = req.wants_keep_alive();
    let _ = req.decoded_path();
    let _ = req.request_line();
    let _ = resolve_path(path);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Uniform bytes, and soup made of head fragments.
    #[test]
    fn parse_head_survives_arbitrary_bytes(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::collection::vec(select(FRAGMENTS), 0..48)
                .prop_map(|f| f.concat().into_bytes()),
        ]
    ) {
        check_head(&data)?;
    }

    /// Valid requests with bytes inserted, deleted and flipped.
    #[test]
    fn parse_head_survives_mutations(
        base in select(VALID),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        check_head(&mutate(base, &mutations))?;
    }
}

// ---------------------------------------------------------------------
// resolve_path

/// Path pieces that traversal attempts are made of.
const ATOMS: &[&str] = &[
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%252e",
    "/",
    "//",
    "a",
    "b",
    "\u{fc}",
    "%c3%bc",
    ".hidden",
    ".well-known",
];

/// The atoms above that do not make a path invalid by themselves (no
/// backslash, NUL or raw non-ASCII): drawn more often, so that more
/// generated paths get as far as the file system.
const PATH_ATOMS: &[&str] = &[
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%252e",
    "/",
    "//",
    "a",
    "b",
    "%c3%bc",
    ".well-known",
];

/// A path: segments of one to three atoms each, joined with `/`, after
/// `/` (sometimes `//`, sometimes nothing), sometimes ending in `/`.
fn hostile_path() -> impl Strategy<Value = String> {
    let atom = prop_oneof![3 => select(PATH_ATOMS), 1 => select(ATOMS)];
    let segment = proptest::collection::vec(atom, 1..=3).prop_map(|a| a.concat());
    (
        prop_oneof![8 => Just("/"), 1 => Just("//"), 1 => Just("")],
        proptest::collection::vec(segment, 0..8),
        any::<bool>(),
    )
        .prop_map(|(lead, segments, trailing)| {
            let mut path = format!("{lead}{}", segments.join("/"));
            if trailing {
                path.push('/');
            }
            path
        })
}

/// An independent model of the path rules: percent-decode once, split on
/// `/`, resolve `.` and `..`. None when the path climbs above the root.
fn model_segments(path: &str) -> Option<Vec<Vec<u8>>> {
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    let mut stack: Vec<Vec<u8>> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop()?;
            }
            s => stack.push(s.to_vec()),
        }
    }
    Some(stack)
}

/// `root` joined with `rel`, `..` and `.` resolved lexically.
fn lexical_join(root: &Path, rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in root.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn check_path(path: &str) -> Result<(), TestCaseError> {
    use std::os::unix::ffi::OsStrExt;

    let result = resolve_path(path);
    let model = model_segments(path);
    if path.starts_with('/') && model.is_none() {
        // Climbing above the root is refused, not clamped.
        prop_assert!(result.is_err(), "{:?} climbs but gave {:?}", path, result);
    }
    let Ok(safe) = result else {
        return Ok(());
    };
    let rel = safe.relative();
    for c in rel.components() {
        let Component::Normal(seg) = c else {
            return Err(TestCaseError::fail(format!(
                "{path:?}: component {c:?} in {rel:?}"
            )));
        };
        prop_assert!(
            !seg.as_bytes()
                .iter()
                .any(|&b| b < 0x20 || b == 0x7f || b == b'\\'),
            "{:?}: control byte or backslash in {:?}",
            path,
            rel
        );
    }
    let model = model.expect("accepted, so it does not climb");
    let expected: PathBuf = model
        .iter()
        .map(|s| std::ffi::OsStr::from_bytes(s))
        .collect();
    prop_assert_eq!(&rel, &expected, "{:?}", path);

    let root = Path::new("/srv/root");
    let joined = lexical_join(root, &rel);
    prop_assert!(
        joined.starts_with(root),
        "{:?} escapes to {:?}",
        path,
        joined
    );

    let url = safe.directory_url();
    prop_assert!(
        url.starts_with('/') && !url.starts_with("//") && !url.contains("//"),
        "{:?}: Location {:?}",
        path,
        url
    );
    let again = resolve_path(&url);
    prop_assert!(
        matches!(&again, Ok(s) if s.relative() == rel && s.has_trailing_slash()),
        "{:?}: Location {:?} resolves to {:?}",
        path,
        url,
        again
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn resolve_path_never_escapes_the_root(path in hostile_path()) {
        check_path(&path)?;
    }
}

// ---------------------------------------------------------------------
// A real server

const SECRET: &str = "SECRET-outside-the-root-0c9a71";
const HIDDEN: &str = "HIDDEN-dotfile-inside-the-root-5be2";
const IN_ROOT: &str = "IN-ROOT:";

/// A temporary directory with the served `site/` and, beside it, files
/// named like the generated atoms that hold [`SECRET`], so that any
/// target that climbs out finds one.
fn site_with_secrets() -> tempfile::TempDir {
    let outer = tempfile::tempdir().unwrap();
    let w = |rel: &str, body: &str| {
        let path = outer.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    };
    for name in [
        "secret.txt",
        "a",
        "b/a",
        "b/index.html",
        "\u{fc}",
        "%2e",
        ".hidden",
        "index.html",
        ".well-known/a",
    ] {
        w(name, SECRET);
    }
    for name in [
        "index.html",
        "a",
        "b/index.html",
        "b/a",
        "b/b/a",
        "\u{fc}",
        "%2e",
        ".well-known/a",
        ".well-known/index.html",
        "404.html",
    ] {
        w(&format!("site/{name}"), &format!("{IN_ROOT}{name}"));
    }
    w("site/.hidden", HIDDEN);
    w("site/b/.hidden", HIDDEN);
    outer
}

/// A target: a hostile path, sometimes in absolute form.
fn hostile_target() -> impl Strategy<Value = String> {
    (
        prop_oneof![9 => Just(""), 1 => Just("http://t")],
        hostile_path(),
    )
        .prop_map(|(authority, path)| format!("{authority}{path}"))
}

fn check_response(target: &str, r: &Resp) -> Result<(), TestCaseError> {
    let body = String::from_utf8_lossy(&r.body);
    prop_assert!(
        !body.contains(SECRET),
        "{:?}: {} with the secret from outside the root",
        target,
        r.status
    );
    prop_assert!(
        !body.contains(HIDDEN),
        "{:?}: {} with a dotfile",
        target,
        r.status
    );
    prop_assert!(
        matches!(r.status, 200 | 301 | 400 | 404),
        "{:?}: status {}",
        target,
        r.status
    );
    let path = target.strip_prefix("http://t").unwrap_or(target);
    let model = model_segments(path).filter(|_| path.starts_with('/') && path.is_ascii());
    // A directory without an index is listed (`b/b/`): its page names
    // nothing from outside (the secret check above) and is the only 200
    // that is not a file of the site.
    let listing = r.status == 200 && body.contains("<title>Index of /");
    if r.status == 200 && !listing {
        prop_assert!(
            body.starts_with(IN_ROOT),
            "{:?}: 200 with {:?}",
            target,
            body
        );
        // Exactly the file the path names, or its directory's index.
        if let Some(segments) = &model {
            let name = segments
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<Vec<_>>()
                .join("/");
            let index = if name.is_empty() {
                "index.html".to_string()
            } else {
                format!("{name}/index.html")
            };
            let served = &body[IN_ROOT.len()..];
            prop_assert!(
                served == name || served == index,
                "{:?}: 200 with {:?}, not {:?}",
                target,
                served,
                name
            );
        }
    }
    if let Some(loc) = r.header("location") {
        prop_assert!(
            loc.starts_with('/') && !loc.starts_with("//"),
            "{:?}: Location {:?}",
            target,
            loc
        );
    }
    // A path that climbs above the root is refused outright.
    if path.starts_with('/') && path.is_ascii() && model.is_none() {
        prop_assert_eq!(r.status, 400, "{:?} climbs", target);
    }
    Ok(())
}

#[test]
fn server_never_serves_outside_the_root() {
    let outer = site_with_secrets();
    let server: TestServer = util::start_files(
        outer.path().join("site"),
        util::test_config(),
        util::test_files(),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: SERVER_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&hostile_target(), |target| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let responses = util::parse_responses(&server.raw(request.as_bytes()));
        prop_assert_eq!(responses.len(), 1, "{:?}", target);
        check_response(&target, &responses[0])
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The site itself is served (the test is not passing on 404s alone).
    let r = server.get("/b/a");
    assert_eq!((r.status, r.text().as_str()), (200, "IN-ROOT:b/a"));
    drop(server);
    drop(outer);
}
