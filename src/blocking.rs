//! Running thread-blocking work without blocking a may worker.
//!
//! `std::fs`, DNS lookups, C libraries and std locks block the OS thread
//! they run on. On a coroutine that thread is one of may's few workers, so
//! every other connection scheduled on it would wait too. [`blocking`]
//! moves such work to a small pool of ordinary threads and parks only the
//! calling coroutine until the result is back.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Threads in the pool.
pub const POOL_THREADS: usize = 4;

fn pool() -> &'static Mutex<mpsc::Sender<Job>> {
    static POOL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..POOL_THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("coserve-blocking-{i}"))
                .spawn(move || {
                    loop {
                        // The guard is held only while taking a job, never while
                        // running one, so the other threads stay available.
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        job();
                    }
                })
                .expect("start a blocking-pool thread");
        }
        Mutex::new(tx)
    })
}

/// Runs `f` on the blocking pool and waits for its result, parking only the
/// calling coroutine (or, on a plain thread, the thread). A panic in `f` is
/// resumed in the caller.
///
/// ```no_run
/// let bytes = coserve::blocking(|| std::fs::read("/etc/hostname"));
/// ```
pub fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = may::sync::mpsc::channel();
    submit(Box::new(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    }));
    // may's channel parks a coroutine without blocking its worker thread.
    match rx.recv().expect("the job always answers") {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// Runs `f` on the blocking pool without waiting for it: background work
/// whose result the job stores itself. A panic in `f` is logged.
pub(crate) fn spawn<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    submit(Box::new(move || {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            log::error!("a background job panicked");
        }
    }));
}

/// Hands a job to the pool's threads.
fn submit(job: Job) {
    pool()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .expect("the blocking pool runs for the life of the process");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_and_resumes_panics() {
        assert_eq!(blocking(|| 6 * 7), 42);
        let caught = catch_unwind(|| blocking(|| -> u8 { panic!("in the pool") }));
        assert!(caught.is_err());
        // The pool survives a panic.
        assert_eq!(blocking(|| "still here"), "still here");
    }

    #[test]
    fn runs_off_the_calling_thread() {
        let caller = std::thread::current().id();
        let worker = blocking(|| std::thread::current().id());
        assert_ne!(caller, worker);
    }
}
