//! Running thread-blocking work without blocking a may worker.
//!
//! `std::fs`, DNS lookups, C libraries and std locks block the OS thread
//! they run on. On a coroutine that thread is one of may's few workers, so
//! every other connection scheduled on it would wait too. [`blocking`]
//! moves such work to a small pool of ordinary threads and parks only the
//! calling coroutine until the result is back.
//!
//! The pool starts on first use with [`POOL_THREADS`] threads, or as many
//! as [`set_blocking_pool_size`] asked for before that.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// Threads in the pool unless [`set_blocking_pool_size`] says otherwise.
pub const POOL_THREADS: usize = 4;

/// The pool's size: the one asked for, and whether the pool has started
/// with it (then it can no longer change).
struct Size {
    threads: usize,
    started: bool,
}

static SIZE: Mutex<Size> = Mutex::new(Size {
    threads: POOL_THREADS,
    started: false,
});

/// Sets how many threads the pool of [`blocking()`](crate::blocking) runs
/// (4 unless set), which bounds how many thread-blocking jobs (file reads,
/// DNS lookups of [`client`](crate::client), password hashes) run at
/// once; the others wait their turn.
///
/// The pool starts on first use with the size in force then, so call this
/// first, before serving. Like [`Runtime`](crate::Runtime), the first
/// size wins: asking again for the size in force is fine, asking for
/// another once the pool runs fails with `AlreadyExists`. 0 threads fails
/// with `InvalidInput`.
///
/// ```
/// coserve::set_blocking_pool_size(16)?;
/// assert_eq!(coserve::blocking(|| 6 * 7), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_blocking_pool_size(threads: usize) -> io::Result<()> {
    if threads == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the blocking pool needs at least one thread",
        ));
    }
    let mut size = SIZE.lock().unwrap_or_else(|e| e.into_inner());
    if size.started && size.threads != threads {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "the blocking pool already runs with {} threads; it cannot change to {threads}",
                size.threads
            ),
        ));
    }
    size.threads = threads;
    Ok(())
}

/// How many threads the pool runs, or will run when it starts.
pub fn blocking_pool_size() -> usize {
    SIZE.lock().unwrap_or_else(|e| e.into_inner()).threads
}

fn pool() -> &'static Mutex<mpsc::Sender<Job>> {
    static POOL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = {
            let mut size = SIZE.lock().unwrap_or_else(|e| e.into_inner());
            size.started = true;
            size.threads
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
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
    fn the_size_is_fixed_once_the_pool_runs() {
        let err = set_blocking_pool_size(0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        blocking(|| ());
        let threads = blocking_pool_size();
        set_blocking_pool_size(threads).unwrap();
        let err = set_blocking_pool_size(threads + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(blocking_pool_size(), threads);
    }

    #[test]
    fn runs_off_the_calling_thread() {
        let caller = std::thread::current().id();
        let worker = blocking(|| std::thread::current().id());
        assert_ne!(caller, worker);
    }
}
