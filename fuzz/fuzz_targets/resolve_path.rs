//! Arbitrary strings as request paths: whatever `resolve_path` accepts must
//! be safe to join to the root (no `..`, no root, no control bytes), and its
//! redirect URL must start with exactly one `/` and resolve back to itself.

#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use coserve::__fuzz::resolve_path;
use libfuzzer_sys::fuzz_target;

fn check(input: &str) {
    let Ok(safe) = resolve_path(input) else {
        return;
    };
    let rel = safe.relative();
    for c in rel.components() {
        match c {
            Component::Normal(seg) => {
                let seg = seg.as_bytes();
                assert!(!seg.is_empty());
                assert!(
                    !seg.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\'),
                    "control byte or backslash in {rel:?} from {input:?}"
                );
            }
            other => panic!("component {other:?} in {rel:?} from {input:?}"),
        }
    }
    // Joined to a root and normalised lexically, it stays under the root.
    let root = Path::new("/srv/root");
    let mut joined = PathBuf::new();
    for c in root.join(&rel).components() {
        match c {
            Component::ParentDir => {
                joined.pop();
            }
            Component::CurDir => {}
            c => joined.push(c),
        }
    }
    assert!(joined.starts_with(root), "{input:?} escapes to {joined:?}");

    let url = safe.directory_url();
    assert!(
        url.starts_with('/') && !url.contains("//"),
        "directory_url {url:?} from {input:?}"
    );
    assert!(url.ends_with('/'));
    // The redirect target names the same directory.
    let again = resolve_path(&url).expect("directory_url resolves");
    assert_eq!(again.relative(), rel, "{input:?} -> {url:?}");
    assert!(again.has_trailing_slash());
    let _ = safe.display_path();
}

fuzz_target!(|input: &str| {
    check(input);
    // Most arbitrary strings fail the leading '/' at once; try each as a
    // path too.
    check(&format!("/{input}"));
});
