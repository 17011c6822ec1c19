//! HTML directory listings: a plain, readable page of a directory's entries
//! with their sizes and modification times.
//!
//! The page is self-contained (inline CSS, no scripts, no external
//! resources). Every name is HTML-escaped where it is shown and
//! percent-encoded where it is linked, and links are relative (just the
//! entry's name), so the page works wherever the directory is mounted.
//!
//! An entry is listed only if the handler would serve it: its name passes
//! the same rule ([`check_name`]), and it is opened by the same policy
//! (`open.rs`), so a dotfile, a FIFO or a symlink that leads out of the
//! root is left out, and nothing about such a link's target shows.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::percent_encode;
use time::OffsetDateTime;
use time::macros::format_description;

use super::open::{Purpose, Root, open};
use super::options::Symlinks;
use super::path::{SEGMENT, SafePath, check_name};
use crate::response::SERVER;

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1f2328;--bg:#fff;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;--hover:#f3f6fa;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#30363d;--head:#151b23;--hover:#161b22;--link:#4493f8}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:62rem;padding:2rem 1rem;font:15px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",\"Liberation Sans\",sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.4rem;font-weight:600;margin:0 0 1.25rem;overflow-wrap:anywhere}
table{width:100%;border-collapse:collapse;border:1px solid var(--line)}
th,td{padding:.4rem .8rem;text-align:left;border-bottom:1px solid var(--line)}
th{background:var(--head);color:var(--muted);font-size:.8rem;font-weight:600;text-transform:uppercase;letter-spacing:.04em}
tbody tr:hover{background:var(--hover)}
td.n{width:100%;overflow-wrap:anywhere}
th.s,td.s{text-align:right;padding-left:2rem}
td.s,td.m{white-space:nowrap;color:var(--muted);font-variant-numeric:tabular-nums}
td.e{color:var(--muted);font-style:italic}
a{color:var(--link);text-decoration:none}
a:hover,a:focus{text-decoration:underline}
a.d{font-weight:600}
footer{margin-top:1rem;color:var(--muted);font-size:.8rem}
@media (max-width:32rem){th.m,td.m{display:none}}
";

/// One entry of a listing.
struct Entry {
    /// The raw file name, as the filesystem has it.
    raw: Vec<u8>,
    /// The name for display (lossy when not UTF-8).
    name: String,
    /// `name` lowercased: the primary sort key.
    folded: String,
    is_dir: bool,
    size: u64,
    modified: Option<SystemTime>,
}

/// Renders an HTML listing of the directory `dir` under `root`, shown as
/// the decoded path `dir.display_path()` (always ending in '/').
///
/// Directories come first, then files, each group sorted by name
/// (case-insensitively, then bytewise). Only what the handler would serve
/// is listed (see the module's documentation), with the type, size and
/// time of what it serves: for a symlink that stays beneath the root, its
/// target. Fails only when `dir` itself cannot be read.
pub(crate) fn render_listing(
    root: &Root,
    dir: &SafePath,
    symlinks: Symlinks,
) -> io::Result<String> {
    let url_path = &dir.display_path();
    let mut entries = read_entries(root, dir, symlinks)?;
    entries.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| a.folded.cmp(&b.folded))
            .then_with(|| a.raw.cmp(&b.raw))
    });

    let title = escape_html(url_path);
    let mut html = String::with_capacity(2048 + entries.len() * 160);
    html.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n");
    let _ = writeln!(html, "<title>Index of {title}</title>");
    let _ = write!(html, "<style>\n{STYLE}</style>\n</head>\n<body>\n");
    let _ = writeln!(html, "<h1>Index of {title}</h1>");
    html.push_str("<table>\n<thead><tr><th class=\"n\">Name</th><th class=\"s\">Size</th><th class=\"m\">Modified (UTC)</th></tr></thead>\n<tbody>\n");
    if url_path != "/" {
        html.push_str("<tr><td class=\"n\"><a class=\"d\" href=\"../\" title=\"Parent directory\">../</a></td><td class=\"s\">-</td><td class=\"m\"></td></tr>\n");
    }
    for entry in &entries {
        let mut href: String = percent_encode(&entry.raw, SEGMENT).collect();
        let mut shown = escape_html(&entry.name);
        let class = if entry.is_dir {
            href.push('/');
            shown.push('/');
            " class=\"d\""
        } else {
            ""
        };
        let size = if entry.is_dir {
            "-".to_string()
        } else {
            human_size(entry.size)
        };
        let modified = entry.modified.and_then(format_time).unwrap_or_default();
        let _ = writeln!(
            html,
            "<tr><td class=\"n\"><a{class} href=\"{href}\">{shown}</a></td><td class=\"s\">{size}</td><td class=\"m\">{modified}</td></tr>",
            href = escape_html(&href),
        );
    }
    if entries.is_empty() {
        html.push_str("<tr><td class=\"e\" colspan=\"3\">This directory is empty.</td></tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
    let dirs = entries.iter().filter(|e| e.is_dir).count();
    let files = entries.len() - dirs;
    let _ = write!(
        html,
        "<footer>{dirs} {}, {files} {} &middot; {SERVER}</footer>\n</body>\n</html>\n",
        plural(dirs, "directory", "directories"),
        plural(files, "file", "files"),
    );
    Ok(html)
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// The entries of `dir` the handler would serve, unsorted.
fn read_entries(root: &Root, dir: &SafePath, symlinks: Symlinks) -> io::Result<Vec<Entry>> {
    let rel = dir.relative();
    let mut entries = Vec::new();
    for entry in fs::read_dir(root.path.join(&rel))? {
        let Ok(entry) = entry else { continue };
        let file_name = entry.file_name();
        let raw = file_name.as_bytes();
        if check_name(raw, dir.depth()).is_err() {
            continue;
        }
        // Opened as the handler would open it: what it refuses (a link out
        // of the root, a dangling one) is not listed, and what it serves
        // is described by its own descriptor.
        let Ok(opened) = open(root, &rel.join(&file_name), symlinks, Purpose::Inspect) else {
            continue;
        };
        let meta = opened.meta;
        // FIFOs, sockets and devices are never served, so not listed.
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        let name = OsStr::from_bytes(raw).to_string_lossy().into_owned();
        entries.push(Entry {
            raw: raw.to_vec(),
            folded: name.to_lowercase(),
            name,
            is_dir: meta.is_dir(),
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    Ok(entries)
}

/// Escapes `& < > " '` for use in HTML text and attribute values.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A size in binary units: `512 B`, `1.5 KiB`, `12 MiB`, `3.2 GiB`. One
/// decimal below 10 of a unit, whole numbers above.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    // Rounding may carry into the next unit (1023.96 KiB is 1.0 MiB).
    if value.round() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if (value * 10.0).round() < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `YYYY-MM-DD HH:MM` in UTC, or `None` for a time the calendar cannot
/// show.
fn format_time(t: SystemTime) -> Option<String> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(e) => {
            let before = e.duration();
            // Round towards the past, so 0.5 s before the epoch is 23:59:59.
            let whole = i64::try_from(before.as_secs()).ok()?;
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    };
    let dt = OffsetDateTime::from_unix_timestamp(secs).ok()?;
    dt.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::path::resolve_path;
    use std::fs::File;
    use std::path::Path;
    use std::time::Duration;

    /// The listing of `url` (a directory's path, percent-encoded) on a site
    /// whose root is `root`, symlinks out of it not followed.
    fn render(root: &Path, url: &str) -> io::Result<String> {
        render_policy(root, url, Symlinks::Refuse)
    }

    fn render_policy(root: &Path, url: &str, symlinks: Symlinks) -> io::Result<String> {
        let dir = resolve_path(url).expect("a servable path");
        render_listing(&Root::open(root).unwrap(), &dir, symlinks)
    }

    fn touch(dir: &Path, name: impl AsRef<Path>, len: u64) {
        let f = File::create(dir.join(name)).unwrap();
        f.set_len(len).unwrap();
    }

    /// The link targets, in page order.
    fn hrefs(html: &str) -> Vec<&str> {
        html.split("href=\"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect()
    }

    #[test]
    fn directories_first_then_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for name in ["b.txt", "A.txt", "a.txt", "C.txt", "10.txt", "2.txt"] {
            touch(p, name, 1);
        }
        for name in ["zdir", "Bdir", "adir"] {
            fs::create_dir(p.join(name)).unwrap();
        }
        let html = render(p, "/").unwrap();
        assert_eq!(
            hrefs(&html),
            [
                "adir/", "Bdir/", "zdir/", "10.txt", "2.txt", "A.txt", "a.txt", "b.txt", "C.txt"
            ]
        );
        assert!(html.contains(">adir/</a>"));
        assert!(html.contains("3 directories, 6 files"));
    }

    #[test]
    fn names_are_escaped_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("<i>&");
        fs::create_dir(&sub).unwrap();
        touch(&sub, "<b>odd&name.txt", 3);
        touch(&sub, "it's \"quoted\".txt", 3);
        let html = render(dir.path(), "/%3Ci%3E&/").unwrap();
        assert!(html.contains(">&lt;b&gt;odd&amp;name.txt</a>"), "{html}");
        assert!(
            html.contains(">it&#39;s &quot;quoted&quot;.txt</a>"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<i>"));
        assert!(html.contains("<title>Index of /&lt;i&gt;&amp;/</title>"));
        assert!(html.contains("<h1>Index of /&lt;i&gt;&amp;/</h1>"));
    }

    #[test]
    fn hrefs_are_percent_encoded_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for name in [
            "<b>odd&name.txt",
            "with space.txt",
            "hash#tag.txt",
            "what?.txt",
            "100%.txt",
            "\u{fc}n\u{ef} c\u{f6}d\u{e9}.txt",
            "it's.txt",
            "javascript:alert(1)",
        ] {
            touch(p, name, 1);
        }
        fs::create_dir(p.join("sub dir")).unwrap();
        let html = render(p, "/").unwrap();
        let mut got = hrefs(&html);
        got.sort();
        let mut want = vec![
            "%3Cb%3Eodd&amp;name.txt",
            "with%20space.txt",
            "hash%23tag.txt",
            "what%3F.txt",
            "100%25.txt",
            "%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.txt",
            "it%27s.txt",
            "javascript%3Aalert(1)",
            "sub%20dir/",
        ];
        want.sort();
        assert_eq!(got, want);
        // The UTF-8 name is shown as itself.
        assert!(html.contains(">\u{fc}n\u{ef} c\u{f6}d\u{e9}.txt</a>"));
    }

    #[test]
    fn non_utf8_names_are_shown_lossily_and_linked_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let name = OsStr::from_bytes(b"caf\xe9.txt");
        if File::create(dir.path().join(name)).is_err() {
            return; // A filesystem that insists on UTF-8 names.
        }
        let html = render(dir.path(), "/").unwrap();
        assert_eq!(hrefs(&html), ["caf%E9.txt"]);
        assert!(html.contains(">caf\u{fffd}.txt</a>"));
    }

    #[test]
    fn dotfiles_and_broken_symlinks_are_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        touch(p, ".secret", 1);
        fs::create_dir(p.join(".git")).unwrap();
        touch(p, "visible.txt", 1);
        std::os::unix::fs::symlink("visible.txt", p.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("nowhere", p.join("dangling")).unwrap();
        let html = render(p, "/").unwrap();
        assert!(!html.contains("secret"));
        assert!(!html.contains(".git"));
        assert!(!html.contains("dangling"));
        assert_eq!(hrefs(&html), ["link.txt", "visible.txt"]);
    }

    /// The listing shows exactly what the handler serves: `.well-known` at
    /// the root (not below it), no other dotfile, no name the handler
    /// refuses as invalid.
    #[test]
    fn names_follow_the_handlers_rule() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join(".well-known")).unwrap();
        fs::create_dir_all(p.join("sub/.well-known")).unwrap();
        touch(p, ".env", 1);
        touch(p, "back\\slash", 1);
        touch(p, "tab\there", 1);
        touch(p, "plain", 1);
        let html = render(p, "/").unwrap();
        assert_eq!(hrefs(&html), [".well-known/", "sub/", "plain"]);
        assert_eq!(hrefs(&render(p, "/sub/").unwrap()), ["../"]);
    }

    /// A symlink that leads out of the root is not served, so it is not
    /// listed, and nothing about its target (size, time, type) shows;
    /// with symlinks followed, it is served and listed.
    #[test]
    fn links_out_of_the_root_are_listed_only_when_followed() {
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "secret", 3);
        fs::create_dir(outside.path().join("elsewhere")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        touch(p, "inside", 5);
        std::os::unix::fs::symlink(outside.path().join("secret"), p.join("file-link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("elsewhere"), p.join("dir-link")).unwrap();
        std::os::unix::fs::symlink("inside", p.join("in-link")).unwrap();
        std::os::unix::fs::symlink(p.join("inside"), p.join("absolute-in-link")).unwrap();
        let html = render(p, "/").unwrap();
        assert_eq!(hrefs(&html), ["absolute-in-link", "in-link", "inside"]);
        assert!(!html.contains("3 B"), "{html}");
        let followed = render_policy(p, "/", Symlinks::Follow).unwrap();
        assert_eq!(
            hrefs(&followed),
            [
                "dir-link/",
                "absolute-in-link",
                "file-link",
                "in-link",
                "inside"
            ]
        );
    }

    #[test]
    fn special_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        touch(dir.path(), "plain", 1);
        let html = render(dir.path(), "/").unwrap();
        assert_eq!(hrefs(&html), ["plain"]);
    }

    #[test]
    fn symlinks_are_listed_as_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir(p.join("real")).unwrap();
        touch(p, "big", 2048);
        std::os::unix::fs::symlink("real", p.join("alias")).unwrap();
        std::os::unix::fs::symlink("big", p.join("big-link")).unwrap();
        let html = render(p, "/").unwrap();
        assert_eq!(hrefs(&html), ["alias/", "real/", "big", "big-link"]);
        assert_eq!(html.matches(">2.0 KiB<").count(), 2);
    }

    #[test]
    fn parent_link_everywhere_but_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = render(dir.path(), "/").unwrap();
        assert!(!root.contains("href=\"../\""));
        fs::create_dir_all(dir.path().join("docs/\u{fc}n\u{ef}")).unwrap();
        let sub = render(dir.path(), "/docs/%C3%BCn%C3%AF/").unwrap();
        assert_eq!(hrefs(&sub), ["../"]);
        assert!(sub.contains(">../</a>"));
        assert!(sub.contains("<title>Index of /docs/\u{fc}n\u{ef}/</title>"));
        assert!(sub.contains("This directory is empty."));
    }

    #[test]
    fn page_shape() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "a.bin", 1536);
        fs::create_dir(dir.path().join("d")).unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        File::options()
            .write(true)
            .open(dir.path().join("a.bin"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        let html = render(dir.path(), "/").unwrap();
        assert!(html.starts_with("<!doctype html>\n"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("<title>Index of /</title>"));
        assert!(html.contains("<h1>Index of /</h1>"));
        assert!(html.contains("prefers-color-scheme:dark"));
        assert!(html.contains(SERVER));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http"));
        assert!(html.contains(
            "<a href=\"a.bin\">a.bin</a></td><td class=\"s\">1.5 KiB</td><td class=\"m\">2023-11-14 22:13</td>"
        ));
        assert!(html.contains("<a class=\"d\" href=\"d/\">d/</a></td><td class=\"s\">-</td>"));
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(render(dir.path(), "/nope/").is_err());
    }

    #[test]
    fn human_sizes() {
        let cases = [
            (0, "0 B"),
            (1, "1 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (10 * 1024 - 1, "10 KiB"),
            (10 * 1024, "10 KiB"),
            (1024 * 1024 - 1, "1.0 MiB"),
            (12 * 1024 * 1024, "12 MiB"),
            (3_435_973_837, "3.2 GiB"),
            (1 << 40, "1.0 TiB"),
            (u64::MAX, "16 EiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn times() {
        let t = |s: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::from_secs(s as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
            }
        };
        assert_eq!(format_time(t(0)).unwrap(), "1970-01-01 00:00");
        assert_eq!(format_time(t(1_700_000_000)).unwrap(), "2023-11-14 22:13");
        assert_eq!(format_time(t(-60)).unwrap(), "1969-12-31 23:59");
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_millis(500)).unwrap(),
            "1969-12-31 23:59"
        );
    }
}
