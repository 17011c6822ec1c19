//! What `/proc/PID` says about a process (Linux): the fields of `status`
//! (`VmRSS`, `VmHWM`, `Threads`, ...), the state and CPU time in `stat`,
//! the open descriptors; and a [`Sampler`] that keeps their peaks.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A process: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// This process (`/proc/self`).
    Current,
    /// Process `pid`.
    Pid(u32),
}

impl From<u32> for Process {
    fn from(pid: u32) -> Process {
        Process::Pid(pid)
    }
}

impl fmt::Display for Process {
    /// Its directory's name under `/proc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Current => f.write_str("self"),
            Process::Pid(pid) => write!(f, "{pid}"),
        }
    }
}

/// `/proc/PID/status`, as read at one moment.
#[derive(Debug, Clone)]
pub struct Status {
    text: String,
}

/// Reads `/proc/PID/status`.
pub fn status(process: Process) -> io::Result<Status> {
    std::fs::read_to_string(format!("/proc/{process}/status")).map(|text| Status { text })
}

impl Status {
    /// A field's value, trimmed: `field("VmHWM")` is `Some("2048 kB")`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    /// A size field (`VmRSS`, `VmHWM`, `VmSize`, ...) in KiB.
    pub fn kib(&self, name: &str) -> Option<u64> {
        self.field(name)?.strip_suffix("kB")?.trim().parse().ok()
    }

    /// A numeric field's first number (`Threads`, `voluntary_ctxt_switches`, ...).
    pub fn number(&self, name: &str) -> Option<u64> {
        self.field(name)?.split_whitespace().next()?.parse().ok()
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// What `/proc/PID/stat` says about a process's state and CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R` running, `S` sleeping, `T` stopped, `Z` zombie, ...
    pub state: char,
    /// User CPU time, in clock ticks.
    pub utime: u64,
    /// System CPU time, in clock ticks.
    pub stime: u64,
}

/// Reads `/proc/PID/stat`.
pub fn stat(process: Process) -> io::Result<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{process}/stat"))?;
    parse_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("stat {text:?}")))
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: the fields count
    // from after its last ')'.
    let after = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = after.split(' ').collect();
    // state, utime and stime are fields 3, 14 and 15 of proc_pid_stat(5).
    Some(Stat {
        state: f.first()?.chars().next()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

impl Stat {
    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).unwrap_or(100).max(1);
        Duration::from_nanos((self.utime + self.stime).saturating_mul(1_000_000_000) / hz)
    }
}

/// How many descriptors a process has open.
pub fn open_fds(process: Process) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{process}/fd"))?.count())
}

/// Resets a process's peak resident memory (`VmHWM`) to its current
/// resident memory (`clear_refs`; needs the right to write it).
pub fn reset_peak_rss(process: Process) -> io::Result<()> {
    std::fs::write(format!("/proc/{process}/clear_refs"), "5")
}

/// A process's resident memory, threads and (when counted) open descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `Threads`.
    pub threads: u64,
    /// 0 unless counted.
    pub fds: usize,
}

/// Takes one [`Sample`]; an error once the process is gone.
pub fn sample(process: Process, count_fds: bool) -> io::Result<Sample> {
    let fds = if count_fds { open_fds(process)? } else { 0 };
    let st = status(process)?;
    Ok(Sample {
        rss_kib: st.kib("VmRSS").unwrap_or(0),
        threads: st.number("Threads").unwrap_or(0),
        fds,
    })
}

/// Samples a process on a thread of its own until finished, keeping the
/// peaks.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peaks>,
}

/// What a [`Sampler`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peaks {
    /// How many samples were taken.
    pub samples: u64,
    /// The most resident memory sampled, KiB.
    pub rss_max_kib: u64,
    /// The most threads sampled.
    pub threads_max: u64,
    /// Descriptors in the first sample (0 unless counted).
    pub fds_first: usize,
    /// The most descriptors sampled (0 unless counted).
    pub fds_max: usize,
    /// Descriptors in the last sample (0 unless counted).
    pub fds_last: usize,
    /// Whether the process was still there at the last sample.
    pub alive: bool,
}

impl Peaks {
    fn note(&mut self, s: Sample) {
        self.samples += 1;
        self.fds_last = s.fds;
        self.fds_max = self.fds_max.max(s.fds);
        self.threads_max = self.threads_max.max(s.threads);
        self.rss_max_kib = self.rss_max_kib.max(s.rss_kib);
    }
}

impl Sampler {
    /// Takes a first sample now, then one every `every` until
    /// [`finish`](Sampler::finish) (or until the process is gone).
    /// Counting descriptors reads a directory entry per descriptor.
    pub fn start(process: Process, every: Duration, count_fds: bool) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let first = sample(process, count_fds).ok();
        let thread = std::thread::Builder::new()
            .name("procfs-sampler".into())
            .spawn(move || {
                let mut peaks = Peaks::default();
                let Some(first) = first else {
                    return peaks;
                };
                peaks.alive = true;
                peaks.fds_first = first.fds;
                peaks.note(first);
                loop {
                    // Read before the sample, so that one is taken after
                    // `finish` asked.
                    let done = flag.load(Ordering::Acquire);
                    match sample(process, count_fds) {
                        Ok(s) => peaks.note(s),
                        Err(_) => {
                            peaks.alive = false;
                            return peaks;
                        }
                    }
                    if done {
                        return peaks;
                    }
                    // The sampling period, not a wait for anything.
                    std::thread::sleep(every);
                }
            })
            .expect("start the sampler thread");
        Sampler { stop, thread }
    }

    /// Takes a last sample and returns the peaks.
    pub fn finish(self) -> Peaks {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() {
        let st = status(Process::Current).unwrap();
        assert!(st.kib("VmRSS").unwrap() > 0);
        assert!(st.kib("VmHWM").unwrap() >= st.kib("VmRSS").unwrap() / 2);
        assert!(st.number("Threads").unwrap() >= 1);
        assert!(st.field("VmHWM").unwrap().ends_with(" kB"));
        assert_eq!(st.kib("Threads"), None);
        assert_eq!(st.field("NoSuchField"), None);
        let me = stat(Process::Pid(std::process::id())).unwrap();
        assert!(matches!(me.state, 'R' | 'S'), "{me:?}");
        assert_eq!(me.cpu().is_zero(), me.utime + me.stime == 0);
        assert!(open_fds(Process::Current).unwrap() >= 3);
    }

    #[test]
    fn stat_counts_fields_after_the_command_name() {
        let s = parse_stat("42 (a) b) c) T 1 2 3 4 5 6 7 8 9 10 250 50 0 0").unwrap();
        assert_eq!((s.state, s.utime, s.stime), ('T', 250, 50));
        assert_eq!(parse_stat("42 (x"), None);
    }

    #[test]
    fn a_sampler_keeps_peaks_until_finished() {
        let sampler = Sampler::start(Process::Current, Duration::from_millis(1), true);
        let peaks = sampler.finish();
        assert!(peaks.alive && peaks.samples >= 2, "{peaks:?}");
        assert!(peaks.rss_max_kib > 0 && peaks.threads_max >= 2, "{peaks:?}");
        assert!(
            peaks.fds_first >= 3 && peaks.fds_max >= peaks.fds_last,
            "{peaks:?}"
        );
    }
}
