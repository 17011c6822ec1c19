//! may's runtime, which every coroutine server in a process shares: how
//! many worker threads it has, how large each coroutine's stack is, and
//! whether the workers are pinned to cores.

use std::io;
use std::sync::Mutex;

/// The process-wide settings of may's runtime: worker threads, coroutine
/// stack size and core pinning.
///
/// may's scheduler starts once per process, with whatever settings are in
/// force then, and every coroutine server in the process shares it. So
/// these are set once, **first call wins**: [`Runtime::start`] applies
/// them, or the first coroutine server to start applies the defaults. A
/// later `start` with the same settings is fine; with different ones it is
/// an error, rather than settings silently ignored.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// // One worker thread, 128 KiB stacks for handlers that recurse deeply.
/// coserve::Runtime::new().workers(1).stack_size(128 * 1024).start()?;
/// # Ok(()) }
/// ```
///
/// Call it before anything else uses may (a may socket, a coroutine): may
/// starts its scheduler then, and later settings would not reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// 0 until resolved: one per core.
    workers: usize,
    stack_size: usize,
    pin_workers: bool,
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime {
            workers: 0,
            stack_size: Runtime::DEFAULT_STACK_SIZE,
            pin_workers: false,
        }
    }
}

/// The settings in force, once applied.
static STARTED: Mutex<Option<Runtime>> = Mutex::new(None);

impl Runtime {
    /// The default coroutine stack: release builds use about 8 KiB serving
    /// files with the access log on, so 64 KiB leaves room for handlers.
    /// Debug builds have much larger frames and need several times more.
    /// Only the pages a coroutine touches count towards resident memory.
    pub const DEFAULT_STACK_SIZE: usize = if cfg!(debug_assertions) {
        512 * 1024
    } else {
        64 * 1024
    };

    /// The smallest coroutine stack accepted: about twice the most the
    /// server's own code uses (8.0 KiB in release builds and 26 KiB in
    /// debug builds, serving files, listings, ranges, errors and
    /// precompressed files with the access log on, as
    /// `--cfg coserve_stack_report` reports it). So only a handler's own frames can overflow. An overflow in
    /// the server's code could happen with a lock held (the file cache's,
    /// the log's), and a coroutine that overflows is abandoned with its
    /// locks held: the next coroutine to want one would block its worker
    /// thread for good.
    pub const MIN_STACK_SIZE: usize = if cfg!(debug_assertions) {
        64 * 1024
    } else {
        16 * 1024
    };

    /// The largest coroutine stack accepted. may maps the stacks of the
    /// 1,000 coroutines it keeps in its pool when it starts, and a stack
    /// too large to map at all stopped it there.
    pub const MAX_STACK_SIZE: usize = 64 * 1024 * 1024;

    /// The defaults: a worker per core, [`Runtime::DEFAULT_STACK_SIZE`],
    /// workers not pinned.
    pub fn new() -> Runtime {
        Runtime::default()
    }

    /// Worker threads for may's scheduler; 0 means one per core.
    pub fn workers(mut self, workers: usize) -> Runtime {
        self.workers = workers;
        self
    }

    /// The stack of each coroutine, in bytes, from
    /// [`Runtime::MIN_STACK_SIZE`] to [`Runtime::MAX_STACK_SIZE`]. The
    /// thread engine gives its threads this much too, or 128 KiB if more.
    pub fn stack_size(mut self, bytes: usize) -> Runtime {
        self.stack_size = bytes;
        self
    }

    /// Pins worker thread *i* to core *i* (may's own default). Off here:
    /// a pinned worker cannot move away from a core that something else
    /// (a load generator, other services) keeps busy.
    pub fn pin_workers(mut self, pin: bool) -> Runtime {
        self.pin_workers = pin;
        self
    }

    /// Applies these settings to the process, or checks that they are the
    /// ones in force.
    ///
    /// Fails with `InvalidInput` for a stack size out of bounds, and with
    /// `AlreadyExists` if the runtime was started with other settings
    /// (by an earlier call, or by a server that started with the
    /// defaults).
    pub fn start(self) -> io::Result<()> {
        let wanted = self.resolved()?;
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        match *started {
            None => {
                may::config()
                    .set_workers(wanted.workers)
                    .set_stack_size(stack_words(wanted.stack_size));
                may::config().set_worker_pin(wanted.pin_workers);
                *started = Some(wanted);
                Ok(())
            }
            Some(current) if current == wanted => Ok(()),
            Some(current) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "may's runtime already runs with {} workers, {}-byte stacks and pinning {}; \
                     it cannot change to {} workers, {}-byte stacks and pinning {} \
                     (the first settings in a process win)",
                    current.workers,
                    current.stack_size,
                    if current.pin_workers { "on" } else { "off" },
                    wanted.workers,
                    wanted.stack_size,
                    if wanted.pin_workers { "on" } else { "off" },
                ),
            )),
        }
    }

    /// The settings in force, or `None` before the runtime has started.
    pub fn current() -> Option<Runtime> {
        *STARTED.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings in force, applying the defaults if none are yet: what a
    /// server calls before it starts.
    pub(crate) fn get_or_start() -> Runtime {
        if let Some(current) = Runtime::current() {
            return current;
        }
        // A start that lost a race to another with other settings: theirs
        // are in force, and are the answer.
        let _ = Runtime::new().start();
        Runtime::current().expect("the runtime has started")
    }

    /// The worker count resolved, the stack size checked.
    fn resolved(self) -> io::Result<Runtime> {
        if !(Runtime::MIN_STACK_SIZE..=Runtime::MAX_STACK_SIZE).contains(&self.stack_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a stack size of {} bytes is outside {}..={}",
                    self.stack_size,
                    Runtime::MIN_STACK_SIZE,
                    Runtime::MAX_STACK_SIZE
                ),
            ));
        }
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Runtime { workers, ..self })
    }

    /// The worker threads: as set, or, in [`Runtime::current`], as
    /// resolved (0, one per core, becomes the core count).
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// The coroutine stack size, in bytes.
    pub(crate) fn stack_bytes(&self) -> usize {
        self.stack_size
    }
}

/// may counts stack sizes in words, and only samples stack usage (instead
/// of touching every page) for an even count.
///
/// Built with `--cfg coserve_stack_report`, the count is odd instead: may
/// then fills each stack with a pattern and prints how much of it every
/// coroutine used when it ends (`scripts/bench/stack_use.sh`). Every page a
/// connection's coroutine touches stays resident while it runs.
pub(crate) fn stack_words(bytes: usize) -> usize {
    let words = bytes / std::mem::size_of::<usize>();
    if cfg!(coserve_stack_report) {
        words | 1
    } else {
        (words + 1) & !1
    }
}
