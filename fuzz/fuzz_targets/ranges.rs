//! Arbitrary `Range` headers against arbitrary lengths: whatever is served
//! is sorted, disjoint, inside the representation, at most `MAX_RANGES`
//! ranges, and adds up to at most its length.

#![no_main]

use coserve::__fuzz::{MAX_RANGES, Ranges, parse_ranges};
use libfuzzer_sys::fuzz_target;

fn check(header: &str, len: u64) {
    let Ranges::Satisfiable(ranges) = parse_ranges(header, len) else {
        return;
    };
    assert!(!ranges.is_empty(), "{header:?} / {len}");
    assert!(ranges.len() <= MAX_RANGES, "{header:?} / {len}: {ranges:?}");
    let mut total: u64 = 0;
    for r in &ranges {
        assert!(r.start < r.end && r.end <= len, "{header:?} / {len}: {r:?}");
        total = total.checked_add(r.end - r.start).expect("total overflows");
    }
    assert!(total <= len, "{header:?} / {len}: total {total}");
    for w in ranges.windows(2) {
        assert!(w[0].end < w[1].start, "{header:?} / {len}: {ranges:?}");
    }
}

fuzz_target!(|input: (u64, &str)| {
    let (len, header) = input;
    check(header, len);
    // Small lengths are where clamping and coalescing happen.
    check(header, len % 4096);
    if !header.contains('=') {
        check(&format!("bytes={header}"), len % 4096);
    }
});
