//! Validators and conditional requests (RFC 9110 §8.8 and §13).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::request::Request;

/// The validators of one representation: a strong entity tag and the
/// modification time, truncated to the second as HTTP dates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// The entity tag, quotes included.
    pub etag: String,
    /// The modification time, whole seconds.
    pub last_modified: Option<SystemTime>,
}

impl Validators {
    /// Validators for a file. The tag is built from what changes when the
    /// content does (inode, size, modification time in nanoseconds) and the
    /// content coding, so each precompressed variant has its own tag.
    pub fn of(meta: &Metadata, coding: Option<&str>) -> Validators {
        let nanos = (meta.mtime() as i128) * 1_000_000_000 + meta.mtime_nsec() as i128;
        let mut etag = format!("\"{:x}-{:x}-{:x}", meta.ino(), meta.len(), nanos);
        if let Some(coding) = coding {
            etag.push('-');
            etag.push_str(coding);
        }
        etag.push('"');
        let last_modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| UNIX_EPOCH + Duration::from_secs(d.as_secs()));
        Validators {
            etag,
            last_modified,
        }
    }
}

/// What the preconditions decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on and serve the representation.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Splits an entity-tag list (`"a", W/"b"`), keeping the `W/` prefix.
/// Returns `None` for `*`.
fn tags(value: &str) -> Option<Vec<&str>> {
    if value.trim() == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Strong comparison (RFC 9110 §8.8.3.2): both strong and identical.
pub fn strong_match(a: &str, b: &str) -> bool {
    !a.starts_with("W/") && !b.starts_with("W/") && a == b
}

/// Weak comparison: the opaque tags are identical, whatever the `W/`.
pub fn weak_match(a: &str, b: &str) -> bool {
    opaque(a) == opaque(b)
}

fn parse_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value.trim()).ok()
}

/// Evaluates the preconditions of a GET or HEAD in the order of RFC 9110
/// §13.2.2.
pub fn evaluate(req: &Request, v: &Validators) -> Precondition {
    // Step 1: If-Match. A weak tag never matches strongly.
    if let Some(value) = req.header_str("if-match") {
        let ok = match tags(value) {
            None => true,
            Some(list) => list.iter().any(|t| strong_match(t, &v.etag)),
        };
        if !ok {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (
        req.header_str("if-unmodified-since").and_then(parse_date),
        v.last_modified,
    ) {
        // Step 2: If-Unmodified-Since, only without If-Match and only when the
        // date parses.
        if modified > since {
            return Precondition::Failed;
        }
    }
    // Step 3: If-None-Match, compared weakly. For GET and HEAD a match is 304.
    if let Some(value) = req.header_str("if-none-match") {
        let matched = match tags(value) {
            None => true,
            Some(list) => list.iter().any(|t| weak_match(t, &v.etag)),
        };
        if matched {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (
        req.header_str("if-modified-since").and_then(parse_date),
        v.last_modified,
    ) {
        // Step 4: If-Modified-Since, only without If-None-Match; an invalid
        // date is ignored.
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Step 5: whether `If-Range` (if any) lets the Range header apply
/// (RFC 9110 §13.1.5). An entity tag must match strongly; a date must equal
/// the modification time exactly. Anything else means "send it all".
pub fn if_range_allows(req: &Request, v: &Validators) -> bool {
    let Some(value) = req.header_str("if-range") else {
        return req.header("if-range").is_none();
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return strong_match(value, &v.etag);
    }
    match (parse_date(value), v.last_modified) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &str) -> Request {
        Request::parse(format!("GET / HTTP/1.1\r\nHost: h\r\n{headers}\r\n").as_bytes()).unwrap()
    }

    fn v() -> Validators {
        Validators {
            etag: "\"abc\"".into(),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        }
    }

    const AT: &str = "Sun, 09 Sep 2001 01:46:40 GMT";
    const BEFORE: &str = "Sun, 09 Sep 2001 01:46:39 GMT";

    #[test]
    fn if_none_match_is_weak_and_takes_lists_and_star() {
        assert_eq!(
            evaluate(&req("If-None-Match: \"abc\"\r\n"), &v()),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&req("If-None-Match: W/\"abc\"\r\n"), &v()),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&req("If-None-Match: \"x\", \"abc\"\r\n"), &v()),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&req("If-None-Match: *\r\n"), &v()),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&req("If-None-Match: \"x\"\r\n"), &v()),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_modified_since_only_without_if_none_match_and_only_valid_dates() {
        assert_eq!(
            evaluate(&req(&format!("If-Modified-Since: {AT}\r\n")), &v()),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate(&req(&format!("If-Modified-Since: {BEFORE}\r\n")), &v()),
            Precondition::Proceed
        );
        assert_eq!(
            evaluate(&req("If-Modified-Since: yesterday\r\n"), &v()),
            Precondition::Proceed
        );
        // §13.1.3: ignored when If-None-Match is present.
        let both = format!("If-None-Match: \"x\"\r\nIf-Modified-Since: {AT}\r\n");
        assert_eq!(evaluate(&req(&both), &v()), Precondition::Proceed);
    }

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        assert_eq!(
            evaluate(&req("If-Match: \"x\"\r\n"), &v()),
            Precondition::Failed
        );
        assert_eq!(
            evaluate(&req("If-Match: W/\"abc\"\r\n"), &v()),
            Precondition::Failed
        );
        assert_eq!(
            evaluate(&req("If-Match: \"abc\"\r\n"), &v()),
            Precondition::Proceed
        );
        assert_eq!(
            evaluate(&req("If-Match: *\r\n"), &v()),
            Precondition::Proceed
        );
        assert_eq!(
            evaluate(&req(&format!("If-Unmodified-Since: {BEFORE}\r\n")), &v()),
            Precondition::Failed
        );
        assert_eq!(
            evaluate(&req(&format!("If-Unmodified-Since: {AT}\r\n")), &v()),
            Precondition::Proceed
        );
        // §13.2.2 step 2 is skipped when If-Match is present.
        let both = format!("If-Match: \"abc\"\r\nIf-Unmodified-Since: {BEFORE}\r\n");
        assert_eq!(evaluate(&req(&both), &v()), Precondition::Proceed);
        // If-Match is evaluated before If-None-Match.
        let both = "If-Match: \"x\"\r\nIf-None-Match: \"abc\"\r\n";
        assert_eq!(evaluate(&req(both), &v()), Precondition::Failed);
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(&req(""), &v()));
        assert!(if_range_allows(&req("If-Range: \"abc\"\r\n"), &v()));
        assert!(!if_range_allows(&req("If-Range: W/\"abc\"\r\n"), &v()));
        assert!(!if_range_allows(&req("If-Range: \"old\"\r\n"), &v()));
        assert!(if_range_allows(&req(&format!("If-Range: {AT}\r\n")), &v()));
        assert!(!if_range_allows(
            &req(&format!("If-Range: {BEFORE}\r\n")),
            &v()
        ));
        assert!(!if_range_allows(&req("If-Range: garbage\r\n"), &v()));
    }
}
