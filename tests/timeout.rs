//! `Timeout`: a handler past its limit gets its client a 503 on time; on
//! the coroutine engine it is stopped at its next yield point with its
//! destructors run; a thread-blocked handler cannot be stopped, but its
//! client is still answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coserve::{EngineKind, Request, StatusCode, Timeout};

use crate::util::{engine, request, start, test_config};

/// Sets its flag when dropped: the handler's frames were unwound.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sleeps the way the engine's handlers should: parking the coroutine, or
/// the thread on the thread engine.
fn sleep(d: Duration) {
    if engine() == EngineKind::Coroutine {
        may::coroutine::sleep(d);
    } else {
        std::thread::sleep(d);
    }
}

crate::engine_tests! {
    /// In time: the handler's own response. Late: 503 (or the status
    /// asked for), with Connection: close, long before the handler would
    /// end; on the coroutine engine the late handler is unwound.
    #[test]
    fn a_late_handler_gets_503_and_is_stopped() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let handler = move |req: &Request| {
            let _guard = Dropped(flag.clone());
            if req.path() == "/slow" {
                sleep(Duration::from_secs(20));
            }
            "done"
        };
        let server = start(
            test_config(),
            Timeout::new(Duration::from_millis(300), handler),
        );
        let r = request(&server, "GET", "/fast", &[]);
        assert_eq!((r.status, r.text().as_str()), (200, "done"));
        dropped.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let r = request(&server, "GET", "/slow", &[]);
        let took = started.elapsed();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "{took:?}");
        if engine() == EngineKind::Coroutine {
            let unwound = crate::util::eventually(Duration::from_secs(5), || dropped.load(Ordering::SeqCst));
            assert!(unwound, "the cancelled handler's destructors did not run");
        }
    }

    /// `status` picks the answer: 504 for a handler waiting on another
    /// service.
    #[test]
    fn the_status_past_the_limit_can_be_504() {
        let server = start(
            test_config(),
            Timeout::new(Duration::from_millis(100), |_req: &Request| {
                sleep(Duration::from_secs(20));
                "late"
            })
            .status(StatusCode::GATEWAY_TIMEOUT),
        );
        assert_eq!(request(&server, "GET", "/", &[]).status, 504);
    }
}

/// A coroutine-engine handler stuck in a call that blocks its worker
/// thread cannot be stopped, but another worker answers its client on
/// time (the runtime of the tests has two workers or more).
#[test]
fn a_thread_blocked_handler_still_gets_its_client_answered() {
    crate::util::set_engine(EngineKind::Coroutine);
    let workers = coserve::Runtime::current().map_or(0, |r| r.worker_count());
    if workers < 2 {
        eprintln!("skipped: the runtime has {workers} worker(s)");
        return;
    }
    let server = start(
        test_config(),
        Timeout::new(Duration::from_millis(200), |_req: &Request| {
            // Short: it holds up one of the workers every test shares.
            std::thread::sleep(Duration::from_millis(1500));
            "late"
        }),
    );
    let started = Instant::now();
    let r = request(&server, "GET", "/", &[]);
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
