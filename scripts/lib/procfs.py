"""What /proc/PID says about a server (Linux; Python 3 standard library
only): the one /proc reader and descriptor-limit raiser of the scripts, as
coserve-http1's procfs module and coserve::raise_open_files_limit are of
the Rust tools.

As a command, for shell scripts, it prints one number summed over the pids:

    python3 scripts/lib/procfs.py rss_kib PID...     # resident memory, KiB
    python3 scripts/lib/procfs.py cpu_ticks PID...   # utime + stime, clock ticks
    python3 scripts/lib/procfs.py switches PID...    # voluntary context switches, all threads
"""

import os
import resource
import sys


def status_field(pid, name, path=None):
    """The first number of a field of /proc/PID/status (`VmRSS` in KiB,
    `Threads`, ...); None if it has no such field."""
    with open(path or f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return int(value.split()[0])
    return None


def rss_kib(pid):
    """Resident memory, KiB."""
    return status_field(pid, "VmRSS") or 0


def cpu_ticks(pid):
    """User plus system CPU time so far, in clock ticks (os.sysconf("SC_CLK_TCK") a second)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name may hold spaces: fields count from after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of proc_pid_stat(5).
    return int(fields[11]) + int(fields[12])


def voluntary_switches(pid):
    """Voluntary context switches of all the process's threads so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += status_field(pid, "voluntary_ctxt_switches",
                                  f"/proc/{pid}/task/{task}/status") or 0
        except OSError:
            pass  # the thread ended meanwhile
    return total


def fd_targets(pid):
    """What each open descriptor points to ("socket:[123]", a path, ...),
    by descriptor number."""
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass  # closed meanwhile
    return targets


def raise_nofile():
    """Raises the soft descriptor limit to the hard one; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


COMMANDS = {"rss_kib": rss_kib, "cpu_ticks": cpu_ticks, "switches": voluntary_switches}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: procfs.py {'|'.join(COMMANDS)} PID...")
    print(sum(COMMANDS[sys.argv[1]](int(p)) for p in sys.argv[2:]))
