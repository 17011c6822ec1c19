//! Running the `coserve` binary as a child process: the command, and
//! threads that read its output so that it never blocks on a full pipe.

use std::io::{BufRead, BufReader, Read};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

/// A command for the `coserve` binary, without `RUST_LOG`, with stdin
/// empty and stdout and stderr piped. The caller adds the arguments.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coserve"));
    cmd.env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if crate::util::cache_off() {
        cmd.arg("--no-cache");
    }
    cmd
}

/// Makes the child start with a descriptor limit of `soft` (and `hard`).
pub fn limit_descriptors(cmd: &mut Command, soft: libc::rlim_t, hard: libc::rlim_t) {
    // SAFETY: the closure runs in the child between fork and exec, and only
    // calls setrlimit(2), which is async-signal-safe; it allocates nothing
    // and touches no lock.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reads `out` line by line on a thread of its own; the lines arrive on
/// the receiver, which disconnects at EOF.
pub fn stdout_lines(out: ChildStdout) -> Receiver<String> {
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Reads `err` to its end on a thread of its own; everything arrives on
/// the receiver, at once, at EOF.
pub fn stderr_to_end(mut err: ChildStderr) -> Receiver<String> {
    let (tx, all) = channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    all
}

/// The port a startup line (`Serving HTTP on 127.0.0.1 port N ...`)
/// announces; panics on any other line.
pub fn announced_port(line: &str) -> u16 {
    line.strip_prefix("Serving HTTP on 127.0.0.1 port ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
}
