//! The documentation's relative links lead somewhere: every link in
//! README.md, CHANGELOG.md and docs/**/*.md to a file or folder of the
//! repository names one that exists (relative to the linking file, or to
//! the repository's root for a leading `/`), and a `#anchor` names a heading
//! of the target, as GitHub spells heading anchors. Links to the web
//! (`http:`, `https:`, `mailto:` and other schemes) are not followed.
//!
//! Std only: a small reader of the Markdown that the docs use (inline
//! links and images, reference definitions, code spans and fenced code
//! blocks, which hold no links).

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The Markdown files whose links are checked, relative to the root.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    collect_markdown(&root.join("docs"), &mut files);
    files.retain(|f| f.is_file());
    files.sort();
    files
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_markdown(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// One link as written: the line it is on and its destination.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// The lines of `text` outside fenced code blocks, numbered from 1. A line
/// number that skips says a fence came between.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        if let Some((ch, n)) = fence_marker(trimmed).filter(|_| indent <= 3) {
            match fence {
                None => {
                    fence = Some((ch, n));
                    continue;
                }
                Some((open, len)) if open == ch && n >= len && only_fence(trimmed, ch) => {
                    fence = None;
                    continue;
                }
                Some(_) => {}
            }
        }
        if fence.is_none() {
            out.push((i + 1, raw));
        }
    }
    out
}

/// Every link destination in `text`, outside code.
fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (line, raw) in prose_lines(text) {
        let code_free = strip_code_spans(raw);
        if let Some(target) = reference_definition(&code_free) {
            out.push(Link { line, target });
            continue;
        }
        for target in inline_targets(&code_free) {
            out.push(Link { line, target });
        }
    }
    out
}

/// A code fence's character and length, if `line` opens or closes one.
fn fence_marker(line: &str) -> Option<(char, usize)> {
    let ch = line.chars().next().filter(|&c| c == '`' || c == '~')?;
    let n = line.chars().take_while(|&c| c == ch).count();
    (n >= 3).then_some((ch, n))
}

/// Whether a fence line has nothing after its marker (a closing fence).
fn only_fence(line: &str, ch: char) -> bool {
    line.trim_start_matches(ch).trim().is_empty()
}

/// `line` with the contents of its code spans removed.
fn strip_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + run..];
        let closer = "`".repeat(run);
        match find_run(after, &closer) {
            Some(end) => rest = &after[end + run..],
            // An unmatched backtick is literal text.
            None => {
                out.push_str(&rest[start..start + run]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where a run of exactly `closer.len()` backticks starts in `s`.
fn find_run(s: &str, closer: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(closer) {
        let at = from + i;
        let run = s[at..].chars().take_while(|&c| c == '`').count();
        if run == closer.len() {
            return Some(at);
        }
        from = at + run;
    }
    None
}

/// `[label]: destination`, a link reference definition.
fn reference_definition(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 || !trimmed.starts_with('[') {
        return None;
    }
    let close = trimmed.find("]:")?;
    if close < 2 || trimmed[1..close].contains(']') {
        return None;
    }
    destination(trimmed[close + 2..].trim_start())
}

/// The destinations of the inline links and images in `line`:
/// `[text](destination "title")`.
fn inline_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        // The destination ends at the parenthesis that balances the one
        // that opened it.
        let mut depth = 0usize;
        let mut end = None;
        for (j, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = Some(j);
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let Some(end) = end else {
            break;
        };
        if let Some(target) = destination(after[..end].trim()) {
            out.push(target);
        }
        rest = &after[end + 1..];
    }
    out
}

/// The destination part of `<dest> "title"` or `dest "title"`.
fn destination(s: &str) -> Option<String> {
    let dest = match s.strip_prefix('<') {
        Some(inner) => &inner[..inner.find('>')?],
        None => s.split_whitespace().next()?,
    };
    (!dest.is_empty()).then(|| dest.to_string())
}

/// Whether a destination leaves the repository: it has a URI scheme.
fn is_external(target: &str) -> bool {
    let Some(colon) = target.find(':') else {
        return false;
    };
    let scheme = &target[..colon];
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `%XX` escapes decoded, as a browser would before asking for the file.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The anchor GitHub gives a heading: its text lowercased, spaces turned
/// into `-`, and every other character but letters, digits, `-` and `_`
/// removed.
fn slug(heading: &str) -> String {
    let mut out = String::new();
    for c in heading.trim().chars() {
        if c == ' ' {
            out.push('-');
        } else if c.is_alphanumeric() || c == '-' || c == '_' {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The text a heading shows: its links' destinations gone (the rest of
/// the markup is punctuation, which `slug` drops).
fn heading_text(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find("](") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => rest = &after[end + 1..],
            None => {
                rest = after;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The anchors of the headings of `text` (ATX and setext), with GitHub's
/// `-1`, `-2` ... for repeats, plus explicit `id=`/`name=` anchors.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    let mut add = |base: String, out: &mut Vec<String>| {
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    };
    let mut previous: Option<&str> = None;
    let mut last_line = 0;
    for (line, raw) in prose_lines(text) {
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        // A fence between two lines ends any paragraph before it.
        if line != last_line + 1 {
            previous = None;
        }
        last_line = line;
        for key in ["id=\"", "name=\""] {
            let mut rest = raw;
            while let Some(i) = rest.find(key) {
                let after = &rest[i + key.len()..];
                if let Some(end) = after.find('"') {
                    out.push(after[..end].to_string());
                }
                rest = after;
            }
        }
        if indent <= 3 && trimmed.starts_with('#') {
            let level = trimmed.chars().take_while(|&c| c == '#').count();
            let after = &trimmed[level..];
            if level <= 6 && (after.is_empty() || after.starts_with(' ')) {
                // A closing sequence of `#`s is not part of the heading.
                let text = after.trim().trim_end_matches('#').trim_end();
                add(slug(&heading_text(text)), &mut out);
                previous = None;
                continue;
            }
        }
        let underline = trimmed.trim_end();
        if let Some(prev) = previous
            && indent <= 3
            && !underline.is_empty()
            && (underline.chars().all(|c| c == '=') || underline.chars().all(|c| c == '-'))
        {
            add(slug(&heading_text(prev.trim())), &mut out);
            previous = None;
            continue;
        }
        previous = (!trimmed.is_empty() && !trimmed.starts_with('|')).then_some(raw);
    }
    out
}

/// Lexically normalised: `.` dropped, `..` taking back a name.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Every broken relative link of `files`, as `FILE:LINE: TARGET: why`, with
/// paths shown relative to `root`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let show = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut anchors_of: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut broken = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(file) else {
            broken.push(format!("{}: cannot be read", show(file)));
            continue;
        };
        for link in links(&text) {
            if is_external(&link.target) {
                continue;
            }
            let (path_part, anchor) = match link.target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.target.as_str(), None),
            };
            let path_part = path_part.split('?').next().unwrap_or("");
            let target = if path_part.is_empty() {
                file.clone()
            } else if let Some(from_root) = path_part.strip_prefix('/') {
                normalise(&root.join(percent_decode(from_root)))
            } else {
                let dir = file.parent().unwrap_or(root);
                normalise(&dir.join(percent_decode(path_part)))
            };
            let at = format!("{}:{}: {}", show(file), link.line, link.target);
            if !target.exists() {
                broken.push(format!("{at}: {} does not exist", show(&target)));
                continue;
            }
            let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                continue;
            };
            // A folder's anchors are those of the README GitHub shows for it.
            let page = if target.is_dir() {
                target.join("README.md")
            } else {
                target.clone()
            };
            if page.extension().is_none_or(|e| e != "md") {
                // Line anchors (`#L10`) of source files are GitHub's own.
                continue;
            }
            let known = anchors_of.entry(page.clone()).or_insert_with(|| {
                fs::read_to_string(&page)
                    .map(|t| anchors(&t))
                    .unwrap_or_default()
            });
            let wanted = percent_decode(anchor);
            if !known.contains(&wanted) {
                broken.push(format!("{at}: no heading #{wanted} in {}", show(&page)));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_docs_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = documents(root);
    assert!(
        files.iter().any(|f| f.ends_with("README.md")),
        "no README.md under {}",
        root.display()
    );
    let broken = broken_links(root, &files);
    assert!(
        broken.is_empty(),
        "{} broken links:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn github_heading_anchors() {
    assert_eq!(slug("What makes it fast"), "what-makes-it-fast");
    assert_eq!(slug("The `coserve` command"), "the-coserve-command");
    assert_eq!(
        slug("Validators and conditional requests (RFC 9110)"),
        "validators-and-conditional-requests-rfc-9110"
    );
    assert_eq!(
        slug("No std lock guard, `RefCell` borrow or thread-local across a yield"),
        "no-std-lock-guard-refcell-borrow-or-thread-local-across-a-yield"
    );
    assert_eq!(slug("10 MiB × 16: CUBIC / BBR"), "10-mib--16-cubic--bbr");
    assert_eq!(slug("snake_case and Ünïcödé"), "snake_case-and-ünïcödé");
    let text = "# Top\n\n## Same\n\n```\n## Not a heading\n```\n\n## Same ##\n\nSetext\n------\n";
    assert_eq!(anchors(text), ["top", "same", "same-1", "setext"]);
}

#[test]
fn links_in_code_are_not_links() {
    let text = "[a](one.md) `[b](two.md)` ![c](img/three.png \"title\")\n\
                ```\n[d](four.md)\n```\n\
                [ref]: <five six.md>\n\
                [e](https://example.com/x) [f](#local) [g](x_(y).md)\n";
    let targets: Vec<String> = links(text).into_iter().map(|l| l.target).collect();
    assert_eq!(
        targets,
        [
            "one.md",
            "img/three.png",
            "five six.md",
            "https://example.com/x",
            "#local",
            "x_(y).md"
        ]
    );
    assert!(is_external("https://example.com") && is_external("mailto:a@b.c"));
    assert!(!is_external("docs/cli.md#flags") && !is_external("#flags"));
}

#[test]
fn a_broken_link_is_reported() {
    let dir = std::env::temp_dir().join(format!("coserve-links-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("docs/sub")).unwrap();
    fs::write(
        dir.join("README.md"),
        "# Title\n\n\
         [fine](docs/page.md) [fine too](docs/page.md#a-heading) [here](#title)\n\
         [folder](docs/sub/) [web](https://example.com/nowhere)\n\
         [gone](docs/missing.md)\n\
         [no such heading](docs/page.md#nowhere) [nor here](#nothing)\n",
    )
    .unwrap();
    fs::write(
        dir.join("docs/page.md"),
        "## A heading\n\n[back](../README.md#title) [up too far](../../x.md)\n",
    )
    .unwrap();
    let files = vec![dir.join("README.md"), dir.join("docs/page.md")];
    let broken = broken_links(&dir, &files);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(
        broken,
        [
            "README.md:5: docs/missing.md: docs/missing.md does not exist".to_string(),
            "README.md:6: docs/page.md#nowhere: no heading #nowhere in docs/page.md".to_string(),
            "README.md:6: #nothing: no heading #nothing in README.md".to_string(),
            format!(
                "docs/page.md:3: ../../x.md: {} does not exist",
                normalise(&dir.join("../x.md")).display()
            ),
        ],
        "{broken:#?}"
    );
}
