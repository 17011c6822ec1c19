//! The current time, formatted at most once a second per worker thread: the
//! `Date` field of every response and the access log's timestamp.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

/// The formats of one second.
struct Formatted {
    second: u64,
    /// IMF-fixdate (RFC 9110 §5.6.7): `Sat, 05 Dec 2026 19:57:03 GMT`.
    http: String,
    /// Common Log Format: `05/Dec/2026:19:57:03 +0000`.
    clf: String,
}

thread_local! {
    // The borrow never spans a yield: it is taken and released inside
    // `with_now`, whose callers do no I/O while they hold it.
    static NOW: RefCell<Formatted> = const {
        RefCell::new(Formatted { second: u64::MAX, http: String::new(), clf: String::new() })
    };
}

/// Calls `f` with this second's formats, formatting them if the second is
/// new on this thread. The coarse wall clock lags by at most a tick (a few
/// ms); nginx's cached time lags by up to an event-loop turn.
fn with_now<R>(f: impl FnOnce(&Formatted) -> R) -> R {
    let second = crate::clock::unix_seconds();
    NOW.with(|now| {
        let mut now = now.borrow_mut();
        if now.second != second {
            let t = UNIX_EPOCH + Duration::from_secs(second);
            now.http = httpdate::fmt_http_date(t);
            now.clf = clf(t);
            now.second = second;
        }
        f(&now)
    })
}

/// Calls `f` with the current time as an HTTP date.
pub(crate) fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    with_now(|now| f(&now.http))
}

/// Calls `f` with the current time as the access log writes it.
pub(crate) fn with_log_time<R>(f: impl FnOnce(&str) -> R) -> R {
    with_now(|now| f(&now.clf))
}

fn clf(t: std::time::SystemTime) -> String {
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_name_the_same_second() {
        with_now(|now| {
            let parsed = httpdate::parse_http_date(&now.http).expect("an HTTP date");
            assert_eq!(clf(parsed), now.clf, "{} vs {}", now.http, now.clf);
            assert!(now.clf.ends_with(" +0000"), "{}", now.clf);
        });
        assert!(with_http_date(|d| d.ends_with(" GMT")));
        assert!(with_log_time(|t| t.contains('/')));
    }
}
