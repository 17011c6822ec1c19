//! Range requests (RFC 9110 §14): single and multiple ranges, clamping,
//! unsatisfiable and invalid ranges, coalescing and the amplification guard,
//! If-Range, HEAD, and the framing of 206 responses on a kept-alive
//! connection.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::util::{
    Resp, TestServer, big_pattern, read_response, read_to_close, request_all, request_text,
    start_default_site,
};

const STYLE: &[u8] = b"body { color: black; }\n";
const LEN: usize = 1024 * 1024;
const BIN: &str = "application/octet-stream";

fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// `GET path` with extra header fields on a fresh connection; one response,
/// read by its framing.
fn get(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Resp {
    server.one(request_text("GET", path, headers).as_bytes())
}

fn range(server: &TestServer, path: &str, value: &str) -> Resp {
    get(server, path, &[("Range", value)])
}

/// Asserts a single-part 206 for bytes `first..=last` of `full`.
fn assert_partial(r: &Resp, full: &[u8], first: usize, last: usize, what: &str) {
    assert_eq!(r.status, 206, "{what}: {:?}", r.headers);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {first}-{last}/{}", full.len()).as_str()),
        "{what}"
    );
    assert_eq!(
        r.header("content-length"),
        Some((last - first + 1).to_string().as_str()),
        "{what}"
    );
    assert!(
        r.body == full[first..=last],
        "{what}: wrong bytes ({} bytes received)",
        r.body.len()
    );
}

/// Asserts a 200 with the whole of `full`, no Content-Range.
fn assert_full(r: &Resp, full: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
    assert_eq!(r.header("content-range"), None, "{what}");
    assert!(
        r.body == full,
        "{what}: not the full body ({} bytes)",
        r.body.len()
    );
}

/// The boundary parameter of a `multipart/byteranges` Content-Type.
fn boundary(r: &Resp) -> String {
    let ct = r.header("content-type").expect("Content-Type");
    let (essence, params) = ct.split_once(';').unwrap_or((ct, ""));
    assert!(
        essence.trim().eq_ignore_ascii_case("multipart/byteranges"),
        "Content-Type {ct:?}"
    );
    let b = params
        .split(';')
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no boundary in {ct:?}"));
    // RFC 2046 §5.1.1: 1 to 70 characters.
    assert!(!b.is_empty() && b.len() <= 70, "boundary {b:?}");
    b
}

/// One part of a multipart body: its header fields and its content.
struct BodyPart {
    headers: Vec<(String, String)>,
    data: Vec<u8>,
}

impl BodyPart {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a `multipart/byteranges` body (RFC 9110 §14.6, RFC 2046 §5.1.1).
/// Each part's length is taken from its Content-Range, and the part must be
/// followed by a delimiter exactly there. Checks the closing delimiter.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<BodyPart> {
    let dash = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // Preamble: the first delimiter is at the start or after a CRLF.
    let first = find(body, dash.as_bytes()).expect("a first delimiter");
    assert!(
        first == 0 || body[..first].ends_with(b"\r\n"),
        "preamble {:?}",
        String::from_utf8_lossy(&body[..first])
    );
    let mut at = first + dash.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        if let Some(epilogue) = rest.strip_prefix(b"--") {
            // The close delimiter; only whitespace may follow.
            assert!(
                epilogue.iter().all(u8::is_ascii_whitespace),
                "after the close delimiter: {:?}",
                String::from_utf8_lossy(epilogue)
            );
            return parts;
        }
        let rest = rest
            .strip_prefix(b"\r\n")
            .unwrap_or_else(|| panic!("no CRLF after a delimiter at {at}"));
        let head_end = find(rest, b"\r\n\r\n").expect("end of part headers");
        let head = std::str::from_utf8(&rest[..head_end]).expect("ASCII part headers");
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(':').expect("part header colon");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let data_start = head_end + 4;
        let mut part = BodyPart {
            headers,
            data: Vec::new(),
        };
        let cr = part
            .header("content-range")
            .expect("Content-Range in a part");
        let (first, last) = cr
            .strip_prefix("bytes ")
            .and_then(|s| s.split_once('/'))
            .and_then(|(r, _)| r.split_once('-'))
            .unwrap_or_else(|| panic!("part Content-Range {cr:?}"));
        let n = last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1;
        assert!(rest.len() >= data_start + n, "part truncated");
        part.data = rest[data_start..data_start + n].to_vec();
        let after = &rest[data_start + n..];
        assert!(
            after.starts_with(delim.as_bytes()),
            "no delimiter right after a part's {n} bytes"
        );
        parts.push(part);
        at = body.len() - after.len() + delim.len();
    }
}

crate::engine_tests! {
    #[test]
    fn file_responses_accept_byte_ranges() {
        // RFC 9110 §14.3.
        let server = start_default_site();
        for path in ["/style.css", "/big.bin", "/", "/sub/page.html"] {
            let r = server.get(path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("accept-ranges"), Some("bytes"), "{path}");
        }
    }

    #[test]
    fn single_ranges_of_a_large_file() {
        let server = start_default_site();
        let big = big_pattern(LEN);
        for (value, first, last) in [
            ("bytes=0-99", 0, 99),
            ("bytes=100-", 100, LEN - 1),
            // RFC 9110 §14.1.1: a suffix range is the last N bytes.
            ("bytes=-100", LEN - 100, LEN - 1),
            // §14.1.1: a last-pos past the end is clamped to the end.
            ("bytes=1048000-2000000", 1_048_000, LEN - 1),
            // A suffix longer than the file is the whole file.
            ("bytes=-2000000", 0, LEN - 1),
            ("bytes=1048575-1048575", LEN - 1, LEN - 1),
            // Larger than 64 KiB and not at the start: the sendfile path.
            ("bytes=500000-700000", 500_000, 700_000),
        ] {
            let r = range(&server, "/big.bin", value);
            assert_partial(&r, &big, first, last, value);
            assert_eq!(r.header("content-type"), Some(BIN), "{value}");
        }
    }

    #[test]
    fn single_ranges_of_a_small_file() {
        let server = start_default_site();
        for (value, first, last) in [
            ("bytes=0-3", 0, 3),
            ("bytes=5-", 5, STYLE.len() - 1),
            ("bytes=-1", STYLE.len() - 1, STYLE.len() - 1),
            ("bytes=0-1000", 0, STYLE.len() - 1),
        ] {
            let r = range(&server, "/style.css", value);
            assert_partial(&r, STYLE, first, last, value);
            assert_eq!(
                r.header("content-type"),
                Some("text/css; charset=utf-8"),
                "{value}"
            );
        }
        // Content-Length matches what is actually sent.
        let (r, rest) = request_all(&server, "GET", "/style.css", &[("Range", "bytes=5-9")]);
        assert_eq!(r.status, 206);
        assert_eq!(rest, &STYLE[5..=9]);
    }

    #[test]
    fn unsatisfiable_ranges_are_416() {
        let server = start_default_site();
        for value in [
            "bytes=2000000-",
            "bytes=1048576-",
            "bytes=1048576-1048600",
            "bytes=-0",
            "bytes=2000000-3000000,1048576-",
        ] {
            // RFC 9110 §15.5.17: 416 with `Content-Range: bytes */length`.
            let r = range(&server, "/big.bin", value);
            assert_eq!(r.status, 416, "{value}: {:?}", r.headers);
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes */{LEN}").as_str()),
                "{value}"
            );
            assert!(r.body.len() < 1024, "{value}: a 416 with the file?");
        }
    }

    #[test]
    fn invalid_ranges_and_other_units_are_ignored() {
        let server = start_default_site();
        // RFC 9110 §14.2: a server MAY ignore the Range header; an invalid one
        // or an unknown unit gives the full representation (200).
        for value in [
            "bytes=a-b",
            "bytes=5-1",
            "bytes",
            "bytes=",
            "items=0-1",
            "bytes=1",
            "bytes=-",
            "bytes=0-1,x",
        ] {
            let r = range(&server, "/style.css", value);
            assert_full(&r, STYLE, value);
        }
        let r = range(&server, "/big.bin", "items=0-1");
        assert_full(&r, &big_pattern(LEN), "items on big.bin");
    }

    #[test]
    fn multiple_ranges_are_multipart_byteranges() {
        let server = start_default_site();
        let big = big_pattern(LEN);
        let (r, body) = request_all(
            &server,
            "GET",
            "/big.bin",
            &[("Range", "bytes=0-9,100-109,1000-1009")],
        );
        assert_eq!(r.status, 206, "{r:?}");
        // RFC 9110 §14.6: no Content-Range on the whole of a multipart response.
        assert_eq!(r.header("content-range"), None);
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str()),
            "Content-Length vs the bytes sent"
        );
        let b = boundary(&r);
        let parts = parse_multipart(&body, &b);
        assert_eq!(parts.len(), 3);
        for (part, (first, last)) in parts.iter().zip([(0, 9), (100, 109), (1000, 1009)]) {
            assert_eq!(part.header("content-type"), Some(BIN));
            assert_eq!(
                part.header("content-range"),
                Some(format!("bytes {first}-{last}/{LEN}").as_str())
            );
            assert_eq!(part.data, &big[first..=last]);
        }
        assert!(
            find(&body, format!("--{b}--").as_bytes()).is_some(),
            "no close delimiter"
        );

        // A text file: each part carries the file's own Content-Type. Ranges
        // are served in ascending order.
        let (r, body) = request_all(&server, "GET", "/style.css", &[("Range", "bytes=7-11,0-3")]);
        assert_eq!(r.status, 206, "{r:?}");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        let parts = parse_multipart(&body, &boundary(&r));
        assert_eq!(parts.len(), 2);
        let mut got: Vec<(String, Vec<u8>)> = parts
            .iter()
            .map(|p| {
                assert_eq!(p.header("content-type"), Some("text/css; charset=utf-8"));
                (
                    p.header("content-range").unwrap().to_string(),
                    p.data.clone(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (format!("bytes 0-3/{}", STYLE.len()), STYLE[0..=3].to_vec()),
                (
                    format!("bytes 7-11/{}", STYLE.len()),
                    STYLE[7..=11].to_vec()
                ),
            ]
        );
    }

    #[test]
    fn overlapping_and_adjacent_ranges_are_coalesced() {
        let server = start_default_site();
        let big = big_pattern(LEN);
        // RFC 9110 §14.2: a server MAY coalesce overlapping or adjacent ranges.
        let r = range(&server, "/big.bin", "bytes=0-99,50-149");
        assert_partial(&r, &big, 0, 149, "overlapping");
        let r = range(&server, "/big.bin", "bytes=0-9,10-19");
        assert_partial(&r, &big, 0, 19, "adjacent");
        let r = range(&server, "/big.bin", "bytes=-100,1048000-");
        assert_partial(&r, &big, 1_048_000, LEN - 1, "suffix inside another");
    }

    #[test]
    fn many_ranges_cannot_amplify_a_response() {
        let server = start_default_site();
        let big = big_pattern(LEN);

        // 16 non-adjacent ranges are served as 16 parts...
        let sixteen: Vec<String> = (0..16)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        let value = format!("bytes={}", sixteen.join(","));
        let r = range(&server, "/big.bin", &value);
        assert_eq!(r.status, 206, "{:?}", r.headers);
        let parts = parse_multipart(&r.body, &boundary(&r));
        assert_eq!(parts.len(), 16);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.data, &big[i * 10..=i * 10 + 1]);
        }

        // ...but 17 are not: RFC 9110 §14.2 lets a server ignore a Range header
        // with many small ranges (the amplification attack of §17.15).
        let seventeen: Vec<String> = (0..17)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        let value = format!("bytes={}", seventeen.join(","));
        let r = range(&server, "/big.bin", &value);
        assert_full(&r, &big, "17 ranges");

        // 50 copies of the whole file: at most the file's length of data.
        let value = format!("bytes={}", vec!["0-"; 50].join(","));
        let r = range(&server, "/big.bin", &value);
        assert!(
            r.status == 200 || r.status == 206,
            "status {} for 50 x 0-",
            r.status
        );
        assert!(
            r.body.len() <= LEN + 1024,
            "{} bytes for a {LEN}-byte file",
            r.body.len()
        );
        if r.status == 206 {
            assert_partial(&r, &big, 0, LEN - 1, "50 x 0-");
        }
        // Overlapping ranges on a small file, too.
        let value = format!(
            "bytes={}",
            (0..50)
                .map(|i| format!("{i}-"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let r = range(&server, "/style.css", &value);
        assert!(
            r.body.len() <= STYLE.len(),
            "{} bytes for a {}-byte file: {:?}",
            r.body.len(),
            STYLE.len(),
            r.text()
        );
    }

    #[test]
    fn if_range() {
        let server = start_default_site();
        set_mtime(&server.root().join("style.css"), 1_000_000_000);
        let tag = server
            .get("/style.css")
            .header("etag")
            .expect("ETag")
            .to_string();
        let weak = format!("W/{tag}");
        let at = "Sun, 09 Sep 2001 01:46:40 GMT";
        let older = "Sun, 09 Sep 2001 01:46:39 GMT";
        let newer = "Sun, 09 Sep 2001 01:46:41 GMT";

        // RFC 9110 §13.1.5: the range applies only if the validator matches
        // strongly (an entity tag) or exactly (a date); otherwise the whole
        // representation is sent.
        for (if_range, partial) in [
            (tag.as_str(), true),
            ("\"stale\"", false),
            (weak.as_str(), false),
            (at, true),
            (older, false),
            (newer, false),
            ("garbage", false),
        ] {
            let r = get(
                &server,
                "/style.css",
                &[("Range", "bytes=0-3"), ("If-Range", if_range)],
            );
            if partial {
                assert_partial(&r, STYLE, 0, 3, if_range);
            } else {
                assert_full(&r, STYLE, if_range);
            }
        }
    }

    #[test]
    fn head_ignores_range() {
        let server = start_default_site();
        // RFC 9110 §14.2: Range applies to GET only; HEAD gets the 200 fields.
        let (r, rest) = request_all(&server, "HEAD", "/big.bin", &[("Range", "bytes=0-99")]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-length"), Some(LEN.to_string().as_str()));
        assert_eq!(r.header("content-range"), None);
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert!(
            rest.is_empty(),
            "{} bytes after a HEAD response",
            rest.len()
        );
    }

    #[test]
    fn ranged_responses_keep_the_connection_framed() {
        let server = start_default_site();
        let big = big_pattern(LEN);
        let mut c = server.connect();
        let reqs = "\
            GET /big.bin HTTP/1.1\r\nHost: test\r\nRange: bytes=0-9,100-109,1000-1009\r\n\r\n\
            GET /big.bin HTTP/1.1\r\nHost: test\r\nRange: bytes=1000-600000\r\n\r\n\
            GET /big.bin HTTP/1.1\r\nHost: test\r\nRange: bytes=2000000-\r\n\r\n\
            GET /style.css HTTP/1.1\r\nHost: test\r\nRange: bytes=0-3,5-6\r\n\r\n\
            GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        c.write_all(reqs.as_bytes()).unwrap();

        // Each response is read by its framing; read_response checks that the
        // next one starts with a status line.
        let r = read_response(&mut c, false).expect("multipart 206");
        assert_eq!(r.status, 206, "{:?}", r.headers);
        let parts = parse_multipart(&r.body, &boundary(&r));
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].data, &big[1000..=1009]);

        let r = read_response(&mut c, false).expect("large 206");
        assert_partial(&r, &big, 1000, 600_000, "large range");

        let r = read_response(&mut c, false).expect("416");
        assert_eq!(r.status, 416, "{:?}", r.headers);

        let r = read_response(&mut c, false).expect("small multipart 206");
        assert_eq!(r.status, 206, "{:?}", r.headers);
        assert_eq!(parse_multipart(&r.body, &boundary(&r)).len(), 2);

        let r = read_response(&mut c, false).expect("200");
        assert_full(&r, STYLE, "last");
        let rest = read_to_close(&mut c);
        assert!(
            rest.is_empty(),
            "unexpected bytes after the last response: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(200)])
        );
    }
}
