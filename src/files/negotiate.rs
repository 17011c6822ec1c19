//! Choosing the representation: a precompressed sibling the client
//! accepts (RFC 9110 §12.5.3), and the media type by extension.

use std::path::Path;

use super::open::{Opened, Purpose, Root, open};
use super::options::Symlinks;
use super::siblings::{DirStamp, SiblingIndex};
use crate::request::Request;

/// Precompressed siblings, in order of preference when q-values tie.
const CODINGS: [(&str, &str); 2] = [("br", ".br"), ("gzip", ".gz")];

/// Picks a precompressed sibling of `opened` (`X.br`, `X.gz`, opened by the
/// same policy as `X`) if the client accepts one. Returns the file to send,
/// its content coding, and whether the response varies by
/// `Accept-Encoding` (it does whenever a sibling exists), and the stamp
/// of the file's directory when it was looked at.
#[inline]
pub(crate) fn negotiate(
    root: &Root,
    req: &Request,
    opened: Opened,
    symlinks: Symlinks,
    siblings: &SiblingIndex,
) -> (Opened, Option<&'static str>, bool, Option<DirStamp>) {
    let rel = &opened.rel;
    // Most files have no sibling: one `stat` of the directory says so,
    // instead of two opens that fail.
    let (maybe, stamp) = siblings.may_have_siblings(root, rel);
    if !maybe {
        return (opened, None, false, stamp);
    }
    let accept = req.header_str("accept-encoding").unwrap_or("");
    let mut best: Option<(f32, &'static str, Opened)> = None;
    let mut vary = false;
    for (coding, suffix) in CODINGS {
        let mut name = rel.clone().into_os_string();
        name.push(suffix);
        let Ok(sibling) = open(root, Path::new(&name), symlinks, Purpose::Read) else {
            continue;
        };
        if !sibling.meta.is_file() {
            continue;
        }
        vary = true;
        let q = accept_q(accept, coding);
        if q > 0.0 && best.as_ref().is_none_or(|(bq, _, _)| q > *bq) {
            best = Some((q, coding, sibling));
        }
    }
    match best {
        Some((_, coding, sibling)) => (sibling, Some(coding), vary, stamp),
        None => (opened, None, vary, stamp),
    }
}

/// The q-value `Accept-Encoding` gives `coding` (RFC 9110 §12.5.3): its own
/// entry, else `*`, else 0 (not acceptable).
pub(crate) fn accept_q(accept: &str, coding: &str) -> f32 {
    let mut star = None;
    for item in accept.split(',') {
        let mut params = item.split(';');
        let name = params.next().unwrap_or("").trim();
        let q = params
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0.0)
}

/// The `Content-Type` for a file, by extension. Text types say they are
/// UTF-8; unknown types are `application/octet-stream`.
pub(crate) fn content_type(path: &Path) -> String {
    // The commonest extensions, without mime_guess's table search and a
    // parse of what it found (1.2% of a whole-site request).
    let common = match path.extension().map(|e| e.as_encoded_bytes()) {
        Some(b"html") => Some("text/html; charset=utf-8"),
        Some(b"css") => Some("text/css; charset=utf-8"),
        Some(b"js") => Some("text/javascript; charset=utf-8"),
        Some(b"json") => Some("application/json; charset=utf-8"),
        Some(b"svg") => Some("image/svg+xml; charset=utf-8"),
        Some(b"txt") => Some("text/plain; charset=utf-8"),
        Some(b"png") => Some("image/png"),
        Some(b"woff2") => Some("font/woff2"),
        _ => None,
    };
    if let Some(t) = common {
        return t.into();
    }
    let Some(mime) = mime_guess::from_path(path).first() else {
        return "application/octet-stream".into();
    };
    match mime.essence_str() {
        "application/javascript" | "text/javascript" => "text/javascript; charset=utf-8".into(),
        "application/json" => "application/json; charset=utf-8".into(),
        "image/svg+xml" => "image/svg+xml; charset=utf-8".into(),
        _ if mime.type_() == mime_guess::mime::TEXT => {
            format!("{}; charset=utf-8", mime.essence_str())
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values() {
        assert_eq!(accept_q("gzip, br", "br"), 1.0);
        assert_eq!(accept_q("gzip;q=0.5, *;q=0.1", "gzip"), 0.5);
        assert_eq!(accept_q("gzip;q=0.5, *;q=0.1", "br"), 0.1);
        assert_eq!(accept_q("br;q=0", "br"), 0.0);
        assert_eq!(accept_q("identity", "br"), 0.0);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(
            content_type(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(
            content_type(Path::new("a.unknownext")),
            "application/octet-stream"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
        // The shortcut agrees with mime_guess for every extension it knows.
        for ext in ["html", "css", "js", "json", "svg", "txt", "png", "woff2"] {
            let fast = content_type(Path::new(&format!("a.{ext}")));
            let mime = mime_guess::from_ext(ext).first().unwrap();
            assert!(
                fast.starts_with(mime.essence_str())
                    || (ext == "js" && fast.starts_with("text/javascript")),
                "{ext}: {fast} against {mime}"
            );
        }
    }
}
