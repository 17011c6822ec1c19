//! Byte ranges (RFC 9110 §14): parsing the `Range` header against a
//! representation's length, and refusing to let ranges amplify a response.

use std::ops::Range;

/// Range specs read from one header at most; a longer list is ignored whole.
pub const MAX_SPECS: usize = 100;

/// Ranges served after coalescing; more and the header is ignored (the
/// whole representation is sent), so that many small ranges cannot turn a
/// small file into a large response (the CVE-2011-3192 class).
pub const MAX_RANGES: usize = 16;

/// What a `Range` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// Serve the whole representation (200): no header, a unit other than
    /// `bytes`, a syntax error, or too many ranges.
    Ignore,
    /// No range overlaps the representation: 416.
    Unsatisfiable,
    /// One or more ranges, sorted, non-overlapping and non-adjacent, each
    /// within `0..len` and non-empty.
    Satisfiable(Vec<Range<u64>>),
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `Range` for a representation of `len` bytes.
///
/// ```text
/// ranges-specifier = range-unit "=" range-set
/// range-set        = 1#range-spec
/// int-range        = first-pos "-" [ last-pos ]
/// suffix-range     = "-" suffix-length
/// ```
///
/// Overlapping and adjacent ranges are merged (§14.2 allows coalescing).
pub fn parse_ranges(header: &str, len: u64) -> Ranges {
    let Some((unit, set)) = header.split_once('=') else {
        return Ranges::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Ignore;
    }
    let mut ranges: Vec<Range<u64>> = Vec::new();
    let mut specs = 0;
    for spec in set.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            // Empty list elements are allowed by the list syntax (§5.6.1).
            continue;
        }
        specs += 1;
        if specs > MAX_SPECS {
            return Ranges::Ignore;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Ignore;
        };
        let range = if first.is_empty() {
            let Some(suffix) = number(last) else {
                return Ranges::Ignore;
            };
            len.saturating_sub(suffix)..len
        } else {
            let Some(first) = number(first) else {
                return Ranges::Ignore;
            };
            let end = if last.is_empty() {
                len
            } else {
                let Some(last) = number(last) else {
                    return Ranges::Ignore;
                };
                // §14.1.1: last < first makes the spec invalid.
                if last < first {
                    return Ranges::Ignore;
                }
                // A range past the end is clamped to the end.
                last.saturating_add(1).min(len)
            };
            first..end
        };
        if range.start < range.end {
            ranges.push(range);
        }
    }
    if specs == 0 {
        return Ranges::Ignore;
    }
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() > MAX_RANGES {
        return Ranges::Ignore;
    }
    Ranges::Satisfiable(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sat(v: &[(u64, u64)]) -> Ranges {
        Ranges::Satisfiable(v.iter().map(|&(a, b)| a..b).collect())
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse_ranges("bytes=0-99", 1000), sat(&[(0, 100)]));
        assert_eq!(parse_ranges("bytes=500-", 1000), sat(&[(500, 1000)]));
        assert_eq!(parse_ranges("bytes=-100", 1000), sat(&[(900, 1000)]));
        assert_eq!(parse_ranges("bytes=-5000", 1000), sat(&[(0, 1000)]));
        assert_eq!(parse_ranges("bytes=900-5000", 1000), sat(&[(900, 1000)]));
        assert_eq!(parse_ranges("Bytes = 1-1", 1000), sat(&[(1, 2)]));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse_ranges("bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse_ranges("bytes=1000-2000", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse_ranges("bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse_ranges("bytes=0-0", 0), Ranges::Unsatisfiable);
        assert_eq!(
            parse_ranges("bytes=2000-, 3000-", 1000),
            Ranges::Unsatisfiable
        );
    }

    #[test]
    fn invalid_or_foreign_is_ignored() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=-",
            "bytes=1",
            "bytes=0x1-2",
            "bytes=+1-2",
            "bytes=1-2-3",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_ranges(h, 1000), Ranges::Ignore, "{h:?}");
        }
    }

    #[test]
    fn overlapping_and_adjacent_ranges_coalesce() {
        assert_eq!(parse_ranges("bytes=0-9,5-19,20-29", 1000), sat(&[(0, 30)]));
        assert_eq!(
            parse_ranges("bytes=500-599,0-9", 1000),
            sat(&[(0, 10), (500, 600)])
        );
        assert_eq!(parse_ranges("bytes=0-,0-,0-,0-", 1000), sat(&[(0, 1000)]));
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let many: Vec<String> = (0..=MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 10, i * 10))
            .collect();
        assert_eq!(
            parse_ranges(&format!("bytes={}", many.join(",")), 10_000),
            Ranges::Ignore
        );
        let ok: Vec<String> = (0..MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 10, i * 10))
            .collect();
        assert!(
            matches!(parse_ranges(&format!("bytes={}", ok.join(",")), 10_000), Ranges::Satisfiable(v) if v.len() == MAX_RANGES)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the header, the ranges served are disjoint, inside the
        /// representation, at most MAX_RANGES, and so add up to at most its
        /// length: ranges can never amplify a response.
        #[test]
        fn ranges_never_amplify(
            len in 0u64..5000,
            specs in proptest::collection::vec((proptest::option::of(0u64..6000), proptest::option::of(0u64..6000)), 0..40),
            junk in proptest::option::of("[ -~]{0,10}"),
        ) {
            let mut parts: Vec<String> = specs
                .iter()
                .map(|(a, b)| format!("{}-{}", a.map(|x| x.to_string()).unwrap_or_default(), b.map(|x| x.to_string()).unwrap_or_default()))
                .collect();
            if let Some(j) = junk {
                parts.push(j);
            }
            let header = format!("bytes={}", parts.join(","));
            if let Ranges::Satisfiable(ranges) = parse_ranges(&header, len) {
                prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
                let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
                prop_assert!(total <= len);
                for w in ranges.windows(2) {
                    prop_assert!(w[0].end < w[1].start);
                }
                for r in &ranges {
                    prop_assert!(r.start < r.end && r.end <= len);
                }
            }
        }
    }
}
