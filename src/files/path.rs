//! From a request path to a path under the root, safely, and the rule of
//! what is hidden.
//!
//! [`resolve_path`] is pure: it decodes the path once, refuses control
//! characters and backslashes, and normalises `.` and `..` so that no
//! spelling can climb above the root (climbing is refused, not clamped).
//! Opening it (`open.rs`) then keeps symlinks from leading out. The same
//! [`check_name`] decides what the handler refuses and what a listing
//! leaves out, so a listing never links to something that is then refused.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, percent_encode};

/// Why a request path does not name anything under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Malformed or hostile: control characters, backslashes, climbing
    /// above the root, not starting with `/`. Answered with 400.
    Invalid,
    /// Names a dotfile, which is hidden. Answered with 404.
    Hidden,
}

/// Whether the file name `name`, `depth` directories below the root (0 for
/// an entry of the root itself), may be served.
///
/// Names with control characters or backslashes are invalid; names that
/// start with `.` are hidden, but for `/.well-known/` (RFC 8615) at the
/// root, so that ACME challenges and `security.txt` are served while
/// `.git`, `.env` and `.htpasswd` never are.
pub fn check_name(name: &[u8], depth: usize) -> Result<(), PathError> {
    if name.iter().copied().any(is_refused_byte) {
        return Err(PathError::Invalid);
    }
    if name.starts_with(b".") && !(depth == 0 && name == b".well-known") {
        return Err(PathError::Hidden);
    }
    Ok(())
}

/// Control characters and the backslash, which no served name holds.
fn is_refused_byte(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == b'\\'
}

/// A request path that has been decoded and normalised, and is safe to join
/// to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    /// The names, joined by `/` (empty for the root): one allocation
    /// however deep the path.
    rel: Vec<u8>,
    trailing_slash: bool,
}

impl SafePath {
    /// The path relative to the root: no leading `/`, no `.` or `..`.
    pub fn relative(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.rel))
    }

    /// How many names deep the path is (0 for the root).
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.rel.split(|&b| b == b'/').filter(|s| !s.is_empty())
    }

    /// The decoded path for display, with leading and trailing `/`.
    pub fn display_path(&self) -> String {
        let mut path = String::from("/");
        for seg in self.segments() {
            path.push_str(&String::from_utf8_lossy(seg));
            path.push('/');
        }
        path
    }

    /// Whether the request path ended in `/`.
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The normalised path, percent-encoded, with a trailing slash: what a
    /// redirect to the directory points at. It always starts with exactly
    /// one `/`, so it can never be read as `//other-host`.
    pub fn directory_url(&self) -> String {
        let mut url = String::from("/");
        for seg in self.segments() {
            url.extend(percent_encode(seg, SEGMENT));
            url.push('/');
        }
        url
    }
}

/// What gets percent-encoded in a path segment of a URL we generate
/// (redirects, listing links). `:` is encoded too: a relative link such as
/// `javascript:x` or `c:d` would otherwise be read as a URL with a scheme.
/// `'` is encoded so a link is safe inside a single-quoted attribute.
pub(crate) const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'\'')
    .add(b':');

/// Turns the path part of a request target into a [`SafePath`].
///
/// The path is percent-decoded exactly once, so `%252e` stays the literal
/// name `%2e`. Decoded `/` (from `%2f`) separates segments like any other
/// `/`, and `..` segments are resolved after decoding, so `%2e%2e%2f` climbs
/// exactly as `../` would, and is refused when it would leave the root.
pub fn resolve_path(path: &str) -> Result<SafePath, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::Invalid);
    }
    // Borrowed when there is nothing to decode.
    let decoded: std::borrow::Cow<'_, [u8]> = percent_decode_str(path).into();
    resolve_decoded(&decoded)
}

/// [`resolve_path`] for a path that is not percent-encoded: a file name a
/// handler chose, relative to the root (a leading `/` is allowed).
pub(crate) fn resolve_decoded(decoded: &[u8]) -> Result<SafePath, PathError> {
    // Anywhere in the path, even in a segment that `..` takes back.
    if decoded.iter().copied().any(is_refused_byte) {
        return Err(PathError::Invalid);
    }
    // The names so far, joined by `/`; `..` cuts the last one off (a name
    // holds no `/`, so it starts after the last one).
    let mut rel: Vec<u8> = Vec::with_capacity(decoded.len());
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if rel.is_empty() {
                    return Err(PathError::Invalid);
                }
                let start = rel.iter().rposition(|&b| b == b'/').unwrap_or(0);
                rel.truncate(start);
            }
            _ => {
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(seg);
            }
        }
    }
    let safe = SafePath {
        rel,
        trailing_slash: decoded.ends_with(b"/")
            || decoded.ends_with(b"/.")
            || decoded.ends_with(b"/.."),
    };
    for (depth, seg) in safe.segments().enumerate() {
        check_name(seg, depth)?;
    }
    Ok(safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(path: &str) -> Result<PathBuf, PathError> {
        resolve_path(path).map(|s| s.relative())
    }

    #[test]
    fn traversal_spellings_never_leave_the_root() {
        let invalid = [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/%2e./etc/passwd",
            "/..%2fetc%2fpasswd",
            "/..%2Fetc/passwd",
            "/a%2f..%2f..%2fetc/passwd",
            "/..\\etc\\passwd",
            "/%5c..%5cetc/passwd",
            "/a/%5c../b",
            "/%00",
            "/a%00.html",
            "/a%0d%0ab",
            "/a%7fb",
            "/a%1bb",
            "relative",
            "*",
            "",
        ];
        for p in invalid {
            assert_eq!(rel(p), Err(PathError::Invalid), "{p}");
        }
    }

    #[test]
    fn double_encoding_is_decoded_once() {
        // `%252e%252e` is the literal directory name `%2e%2e`, not `..`.
        assert_eq!(rel("/%252e%252e/x"), Ok(PathBuf::from("%2e%2e/x")));
        assert_eq!(rel("/%252f"), Ok(PathBuf::from("%2f")));
    }

    #[test]
    fn normalisation() {
        let ok = [
            ("/", ""),
            ("/index.html", "index.html"),
            ("//a//b/", "a/b"),
            ("/a/./b", "a/b"),
            ("/a/../b", "b"),
            ("/a/b/..", "a"),
            ("/%e2%9c%93.txt", "\u{2713}.txt"),
            ("/a%20b", "a b"),
            ("/a%2fb", "a/b"),
            ("/.well-known/acme", ".well-known/acme"),
            ("/%zz", "%zz"),
        ];
        for (p, want) in ok {
            assert_eq!(rel(p), Ok(PathBuf::from(want)), "{p}");
        }
        assert!(resolve_path("/a/").unwrap().has_trailing_slash());
        assert!(resolve_path("/a/.").unwrap().has_trailing_slash());
        assert!(!resolve_path("/a").unwrap().has_trailing_slash());
    }

    #[test]
    fn dotfiles_are_hidden_except_well_known() {
        for p in [
            "/.env",
            "/.git/config",
            "/a/.htpasswd",
            "/%2egit/HEAD",
            "/.well-known/.secret",
        ] {
            assert_eq!(rel(p), Err(PathError::Hidden), "{p}");
        }
        assert!(rel("/.well-known/security.txt").is_ok());
    }

    #[test]
    fn redirect_target_is_never_protocol_relative() {
        for p in [
            "//evil.example/..",
            "//evil.example",
            "/%2fevil.example",
            "///evil.example//x",
        ] {
            let url = resolve_path(p).unwrap().directory_url();
            assert!(
                url.starts_with('/') && !url.starts_with("//"),
                "{p} -> {url}"
            );
        }
        assert_eq!(
            resolve_path("//evil.example").unwrap().directory_url(),
            "/evil.example/"
        );
        assert_eq!(
            resolve_path("/a b/c?d").unwrap().directory_url(),
            "/a%20b/c%3Fd/"
        );
    }
}
