//! `coserve --processes N`: a supervisor and N worker processes, nginx's
//! model.
//!
//! The supervisor binds N listening sockets on the same port with
//! `SO_REUSEPORT`, so that the kernel spreads new connections over them,
//! and starts one worker per socket: this same program, again, with the
//! same flags, its socket as descriptor 3 and a readiness pipe as 4. Each
//! worker runs the usual engine on its socket.
//!
//! With `--redirect-http`, the supervisor binds N sockets on that port too,
//! the same way, and each worker gets its slot's as descriptor 5 and serves
//! the redirect to HTTPS on it: a port in use fails once, at start, and a
//! replaced worker takes over its slot's redirect socket like its main one.
//!
//! The supervisor keeps every socket open itself. A worker that dies (and
//! is started again) or is replaced leaves its socket listening: connections
//! that arrive meanwhile wait in its queue for the next worker instead of
//! being refused. So SIGHUP can replace the workers one by one (a new one
//! is started on the socket, and once it is serving the old one drains)
//! with no connection lost: a new binary, and new certificates when HTTPS
//! lands, without downtime.
//!
//! Workers sit in process groups of their own, so a terminal's Ctrl-C
//! reaches the supervisor only, which passes SIGINT and SIGTERM on; and
//! they ask the kernel for a SIGTERM if the supervisor dies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use coserve::{Config, Server};
use signal_hook::consts::{SIGHUP, SIGTERM};
use signal_hook::iterator::Signals;

/// Set in a worker's environment: its slot, from 0.
pub const WORKER_ENV: &str = "COSERVE_WORKER";
/// Where a worker finds its listening socket.
const LISTEN_FD: RawFd = 3;
/// Where a worker writes one byte once it is serving.
const READY_FD: RawFd = 4;
/// Where a worker finds its `--redirect-http` socket, when there is one.
const REDIRECT_FD: RawFd = 5;
/// A worker that dies younger than this is started again only after it.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How long a reload waits for a new worker to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// This process's slot, if a supervisor started it as a worker.
pub fn worker_slot() -> Option<usize> {
    std::env::var(WORKER_ENV).ok()?.parse().ok()
}

/// In a worker: the listening socket the supervisor handed over.
pub fn inherited_server(config: Config) -> std::io::Result<Server> {
    // SAFETY: the supervisor started this process with its listening
    // socket as LISTEN_FD (and WORKER_ENV set, which is how we got here);
    // nothing else in this process owns that descriptor.
    unsafe { inherited(LISTEN_FD, config) }
}

/// In a worker started with `--redirect-http`: the plain-HTTP socket the
/// supervisor handed over for it.
pub fn inherited_redirect(config: Config) -> std::io::Result<Server> {
    // SAFETY: a supervisor whose flags (the same as this worker's) have
    // `--redirect-http` starts every worker with that port's socket as
    // REDIRECT_FD; nothing else in this process owns that descriptor.
    unsafe { inherited(REDIRECT_FD, config) }
}

/// The listening socket at `fd`, inherited.
///
/// # Safety
///
/// `fd` must be open, owned by nothing else in this process.
unsafe fn inherited(fd: RawFd, config: Config) -> std::io::Result<Server> {
    // SAFETY: as the caller promises.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    socket2::SockRef::from(&listener).set_cloexec(true)?;
    Server::from_listener(listener, config)
}

/// In a worker: tells the supervisor it is serving.
pub fn report_ready() {
    // SAFETY: the supervisor started this process with the write end of
    // its readiness pipe as READY_FD; nothing else here owns it, and it is
    // closed when the file drops.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(READY_FD) };
    let _ = pipe.write_all(b"1");
}

/// What the supervisor waits for.
enum Event {
    Signal(i32),
    Ready(u32),
    Exited(u32, ExitStatus),
    /// Start a worker in this slot (after a restart delay).
    Start(usize),
    /// A reload's new worker has had its time to get ready.
    ReadyTimeout(u32),
}

/// A reload in progress: the slots still to replace, and the one being
/// replaced now (its new worker, and the old one to retire once the new
/// one serves).
struct Reload {
    queue: VecDeque<usize>,
    pending: Option<(usize, u32, Option<u32>)>,
}

struct Supervisor {
    exe: PathBuf,
    args: Vec<OsString>,
    /// One listening socket per slot; dropped when shutting down.
    sockets: Vec<Server>,
    /// One `--redirect-http` socket per slot, or none; dropped with
    /// `sockets`.
    redirects: Vec<Server>,
    /// The worker serving each slot.
    slots: Vec<Option<u32>>,
    started: HashMap<u32, Instant>,
    /// Old workers draining after a reload.
    retiring: HashSet<u32>,
    reload: Option<Reload>,
    /// The signals received that stop the server (0, 1 or 2).
    stops: u32,
    tx: Sender<Event>,
}

/// Runs the supervisor over `sockets` (bound and listening, sharing a
/// port) until every worker has exited after SIGINT or SIGTERM.
/// `redirects`, if not empty, has one `--redirect-http` socket per slot
/// (bound and listening, sharing that port).
pub fn run(sockets: Vec<Server>, redirects: Vec<Server>, mut signals: Signals) -> ExitCode {
    assert!(
        redirects.is_empty() || redirects.len() == sockets.len(),
        "one redirect socket per slot, or none"
    );
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("coserve: cannot find this program to start workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = signals.add_signal(SIGHUP) {
        eprintln!("coserve: cannot install a SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    let (tx, rx) = mpsc::channel();
    let to_loop = tx.clone();
    let watching = std::thread::Builder::new()
        .name("coserve-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if to_loop.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = watching {
        eprintln!("coserve: cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let n = sockets.len();
    let mut sup = Supervisor {
        exe,
        args: std::env::args_os().skip(1).collect(),
        sockets,
        redirects,
        slots: vec![None; n],
        started: HashMap::new(),
        retiring: HashSet::new(),
        reload: None,
        stops: 0,
        tx,
    };
    for slot in 0..n {
        sup.start(slot);
    }
    for event in rx {
        match event {
            Event::Signal(SIGHUP) => sup.begin_reload(),
            Event::Signal(sig) => sup.stop(sig),
            Event::Ready(pid) => sup.ready(pid),
            Event::Exited(pid, status) => sup.exited(pid, status),
            Event::Start(slot) => {
                if sup.stops == 0 && sup.slots[slot].is_none() {
                    sup.start(slot);
                }
            }
            Event::ReadyTimeout(pid) => sup.ready_timeout(pid),
        }
        if sup.stops > 0 && sup.all_exited() {
            break;
        }
    }
    if sup.stops > 1 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

impl Supervisor {
    /// Starts a worker for `slot`.
    fn start(&mut self, slot: usize) {
        match self.spawn(slot) {
            Ok(pid) => {
                self.started.insert(pid, Instant::now());
                self.slots[slot] = Some(pid);
            }
            Err(e) => {
                log::error!("cannot start worker {slot}: {e}; trying again in a second");
                self.later(Event::Start(slot), RESTART_DELAY);
            }
        }
    }

    fn spawn(&self, slot: usize) -> std::io::Result<u32> {
        let (mut ready_rx, ready_tx) = std::io::pipe()?;
        let listen = self.sockets[slot].as_fd().as_raw_fd();
        let redirect = self.redirects.get(slot).map(|s| s.as_fd().as_raw_fd());
        let ready = ready_tx.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(WORKER_ENV, slot.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: the closure runs in the child between fork and exec, and
        // makes only async-signal-safe system calls on descriptors that
        // are open in the parent (and so in the child) at fork.
        unsafe {
            cmd.pre_exec(move || prepare_worker(listen, ready, redirect));
        }
        let mut child = cmd.spawn()?;
        drop(ready_tx);
        let pid = child.id();
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("coserve-worker-{slot}"))
            .spawn(move || {
                // One byte once it serves; nothing (the pipe closes) if it
                // dies first.
                let mut byte = [0u8; 1];
                if matches!(ready_rx.read(&mut byte), Ok(1)) {
                    let _ = tx.send(Event::Ready(pid));
                }
                drop(ready_rx);
                if let Ok(status) = child.wait() {
                    let _ = tx.send(Event::Exited(pid, status));
                }
            })?;
        Ok(pid)
    }

    /// Sends `event` to the loop after `delay`.
    fn later(&self, event: Event, delay: Duration) {
        let tx = self.tx.clone();
        let _ = std::thread::Builder::new()
            .name("coserve-timer".into())
            .spawn(move || {
                std::thread::sleep(delay);
                let _ = tx.send(event);
            });
    }

    fn workers(&self) -> impl Iterator<Item = u32> + '_ {
        let pending = self.reload.as_ref().and_then(|r| r.pending).map(|p| p.1);
        self.slots
            .iter()
            .flatten()
            .copied()
            .chain(self.retiring.iter().copied())
            .chain(pending)
    }

    fn all_exited(&self) -> bool {
        self.workers().next().is_none()
    }

    /// SIGINT or SIGTERM: the first stops accepting and lets every worker
    /// drain; a second makes them exit at once.
    fn stop(&mut self, sig: i32) {
        self.stops += 1;
        if self.stops == 1 {
            let n = self.workers().count();
            eprintln!(
                "coserve: {}: stopping {n} worker{} (a second Ctrl-C exits at once)",
                crate::signal_name(sig),
                if n == 1 { "" } else { "s" }
            );
            // New connections are refused from now on; each worker closes
            // its own copy of its sockets when it stops accepting.
            self.sockets.clear();
            self.redirects.clear();
            self.reload = None;
        } else {
            eprintln!("coserve: second signal: workers exit at once");
        }
        // Passed on as it came, so each worker says what happened.
        for pid in self.workers().collect::<Vec<_>>() {
            send(pid, sig);
        }
    }

    fn begin_reload(&mut self) {
        if self.stops > 0 {
            return;
        }
        if self.reload.is_some() {
            eprintln!("coserve: hangup: a reload is already under way");
            return;
        }
        let n = self.slots.len();
        eprintln!("coserve: hangup: replacing {n} worker(s) one by one");
        self.reload = Some(Reload {
            queue: (0..n).collect(),
            pending: None,
        });
        self.next_replacement();
    }

    /// Starts the next slot's new worker, or ends the reload.
    fn next_replacement(&mut self) {
        let Some(reload) = self.reload.as_mut() else {
            return;
        };
        let Some(slot) = reload.queue.pop_front() else {
            self.reload = None;
            eprintln!("coserve: reload done: every worker replaced");
            return;
        };
        let old = self.slots[slot];
        match self.spawn(slot) {
            Ok(pid) => {
                self.started.insert(pid, Instant::now());
                if let Some(reload) = self.reload.as_mut() {
                    reload.pending = Some((slot, pid, old));
                }
                self.later(Event::ReadyTimeout(pid), READY_TIMEOUT);
            }
            Err(e) => {
                eprintln!("coserve: reload stopped: cannot start a worker: {e}");
                self.reload = None;
            }
        }
    }

    fn ready(&mut self, pid: u32) {
        let Some((slot, new, old)) = self.reload.as_ref().and_then(|r| r.pending) else {
            return;
        };
        if pid != new {
            return;
        }
        self.slots[slot] = Some(new);
        if let Some(old) = old {
            self.retiring.insert(old);
            send(old, SIGTERM);
        }
        if let Some(reload) = self.reload.as_mut() {
            reload.pending = None;
        }
        self.next_replacement();
    }

    fn ready_timeout(&mut self, pid: u32) {
        let pending = self.reload.as_ref().and_then(|r| r.pending);
        if pending.is_some_and(|p| p.1 == pid) {
            eprintln!(
                "coserve: reload stopped: a new worker (pid {pid}) did not serve within {} s; \
                 the old one keeps serving",
                READY_TIMEOUT.as_secs()
            );
            send(pid, SIGKILL);
        }
    }

    fn exited(&mut self, pid: u32, status: ExitStatus) {
        let lived = self
            .started
            .remove(&pid)
            .map_or(Duration::ZERO, |t| t.elapsed());
        if self.retiring.remove(&pid) {
            return;
        }
        let pending = self.reload.as_ref().and_then(|r| r.pending);
        if let Some((slot, new, _)) = pending
            && new == pid
        {
            if self.stops == 0 {
                eprintln!(
                    "coserve: reload stopped: the new worker {slot} (pid {pid}) {}; \
                     the old one keeps serving",
                    describe(status)
                );
            }
            self.reload = None;
            return;
        }
        let Some(slot) = self.slots.iter().position(|&p| p == Some(pid)) else {
            return;
        };
        self.slots[slot] = None;
        if self.stops > 0 {
            return;
        }
        // A reload about to replace this slot starts its worker anyway.
        if pending.is_some_and(|p| p.0 == slot) {
            return;
        }
        if lived < RESTART_DELAY {
            log::warn!(
                "worker {slot} (pid {pid}) {} after {} ms; starting another in a second",
                describe(status),
                lived.as_millis()
            );
            self.later(Event::Start(slot), RESTART_DELAY);
        } else {
            log::warn!(
                "worker {slot} (pid {pid}) {}; starting another",
                describe(status)
            );
            self.start(slot);
        }
    }
}

/// How a worker ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({status})"),
    }
}

const SIGKILL: i32 = libc::SIGKILL;

fn send(pid: u32, sig: i32) {
    // SAFETY: kill(2) touches no memory of ours. (`pid` is a child this
    // process started; between its waiting thread reaping it and the loop
    // hearing so the number could in principle be reused, a window of
    // microseconds against the kernel cycling through every pid.)
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// In the child, before exec: the socket becomes LISTEN_FD, the pipe
/// READY_FD and the redirect socket, if any, REDIRECT_FD (without
/// close-on-exec), in a process group of its own, with a SIGTERM should
/// the supervisor die.
fn prepare_worker(listen: RawFd, ready: RawFd, redirect: Option<RawFd>) -> std::io::Result<()> {
    fn check(r: libc::c_int) -> std::io::Result<libc::c_int> {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }
    // SAFETY: async-signal-safe calls on descriptors open in this child;
    // copying them all above the targets first keeps one from overwriting
    // another, and dup2 leaves the copies without close-on-exec.
    unsafe {
        let listen_hi = check(libc::fcntl(listen, libc::F_DUPFD_CLOEXEC, 10))?;
        let ready_hi = check(libc::fcntl(ready, libc::F_DUPFD_CLOEXEC, 10))?;
        let redirect_hi = match redirect {
            Some(fd) => Some(check(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10))?),
            None => None,
        };
        check(libc::dup2(listen_hi, LISTEN_FD))?;
        check(libc::dup2(ready_hi, READY_FD))?;
        if let Some(fd) = redirect_hi {
            check(libc::dup2(fd, REDIRECT_FD))?;
        }
        check(libc::setpgid(0, 0))?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM))?;
    }
    Ok(())
}
