//! The `coserve` binary: flags, logging and signals around a
//! [`coserve::Server`] of [`coserve::StaticFiles`].

mod cli;
mod supervisor;

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use clap::Parser;
use coserve::{Handler, Protected, Request, Response, Server, StaticFiles};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let mut cli = cli::Cli::parse();
    init_logging(cli.quiet);

    // Signals are registered before the runtime starts its threads, so that
    // every thread inherits the same handling.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("coserve: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    raise_descriptor_limit(cli.max_connections);
    if let Err(e) = cli.load_tls() {
        eprintln!("coserve: TLS: {e}");
        return ExitCode::FAILURE;
    }
    // Under --processes both ports are shared with SO_REUSEPORT, which
    // would let them share one port, the kernel sending half the HTTPS
    // clients to the redirect.
    if let Some(port) = cli.redirect_http
        && port != 0
        && port == cli.port
    {
        eprintln!("coserve: --redirect-http {port}: the HTTPS port itself");
        return ExitCode::FAILURE;
    }
    if let Some(tls) = cli.tls.clone()
        && supervisor::worker_slot().is_none()
        && cli.processes <= 1
        && let Err(e) = reload_on_sighup(tls)
    {
        eprintln!("coserve: cannot install a SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    let files = match StaticFiles::new(&cli.directory, cli.files()) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("coserve: cannot serve {}: {e}", cli.directory.display());
            return ExitCode::FAILURE;
        }
    };
    // Checked before any process starts, so that a bad user fails here,
    // once.
    let site = match cli.auth() {
        Ok(None) => Site::Open(files),
        Ok(Some(auth)) => match auth.wrap(files) {
            Ok(protected) => Site::Protected(protected),
            Err(e) => {
                eprintln!("coserve: --auth: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("coserve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let worker = supervisor::worker_slot();
    if worker.is_none() && cli.processes > 1 {
        // The supervisor serves nothing itself: the workers open the site
        // (checked above, so that a bad directory fails here, once).
        drop(site);
        let n = usize::from(cli.processes);
        let sockets = match bind(&cli, n) {
            Ok(sockets) => sockets,
            Err(e) => return cannot_bind(&cli, &e),
        };
        // The redirect's sockets too, one per worker like the others.
        let redirects = match cli.redirect_http {
            Some(port) => match bind_port(&cli, port, &redirect_config(&cli), n) {
                Ok(redirects) => redirects,
                Err(e) => {
                    eprintln!("coserve: --redirect-http {port}: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => Vec::new(),
        };
        let https = sockets[0].local_addr();
        announce(https, cli.tls.is_some());
        if let Some(redirect) = redirects.first() {
            announce_redirect(redirect.local_addr(), https.port());
        }
        return supervisor::run(sockets, redirects, signals);
    }
    if let Err(e) = cli.runtime().start() {
        eprintln!("coserve: cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let server = match worker {
        Some(_) => supervisor::inherited_server(cli.config()),
        None => bind(&cli, 1).map(|mut s| s.remove(0)),
    };
    let server = match server {
        Ok(server) => server,
        Err(e) => return cannot_bind(&cli, &e),
    };
    if worker.is_none() {
        announce(server.local_addr(), cli.tls.is_some());
    }

    let handle = match server.spawn(site) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("coserve: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The plain-HTTP port that sends everyone to HTTPS: a worker's comes
    // from its supervisor, as its HTTPS one does.
    let redirect = match cli.redirect_http {
        Some(port) => {
            let https = handle.local_addr().port();
            let server = match worker {
                Some(_) => supervisor::inherited_redirect(redirect_config(&cli)),
                None => bind_port(&cli, port, &redirect_config(&cli), 1).map(|mut s| s.remove(0)),
            };
            let started = server.and_then(|s| s.spawn(coserve::RedirectToHttps::new(https)));
            match started {
                Ok(redirect) => {
                    if worker.is_none() {
                        announce_redirect(redirect.local_addr(), https);
                    }
                    Some(redirect)
                }
                Err(e) => {
                    eprintln!("coserve: --redirect-http {port}: {e}");
                    handle.shutdown();
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    if worker.is_some() {
        supervisor::report_ready();
    }
    let stopper = handle.clone();
    let redirect_stopper = redirect.clone();
    let grace = cli.shutdown_grace;
    let who = worker.map_or(String::new(), |slot| format!("worker {slot}: "));
    let watching = std::thread::Builder::new()
        .name("coserve-signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            if let Some(sig) = signals.next() {
                let active = stopper.active_connections();
                let draining = match active {
                    0 => String::new(),
                    1 => format!("; draining 1 connection for up to {grace} s"),
                    n => format!("; draining {n} connections for up to {grace} s"),
                };
                // A worker's signals come from its supervisor, which says
                // how to hurry them.
                let hint = if who.is_empty() {
                    " (a second Ctrl-C exits at once)"
                } else {
                    ""
                };
                eprintln!(
                    "coserve: {who}{}: shutting down{draining}{hint}",
                    signal_name(sig)
                );
                // The redirect stops with the site (a replaced worker
                // leaves its redirect socket to the new one), on a thread
                // of its own so that neither waits for the other.
                let redirecting = match redirect_stopper {
                    Some(redirect) => std::thread::Builder::new()
                        .name("coserve-shutdown-redirect".into())
                        .spawn(move || redirect.shutdown())
                        .map(drop),
                    None => Ok(()),
                };
                let shutting = redirecting.and_then(|()| {
                    std::thread::Builder::new()
                        .name("coserve-shutdown".into())
                        .spawn(move || stopper.shutdown())
                });
                if let Err(e) = shutting {
                    eprintln!("coserve: cannot start the shutdown ({e}): exiting at once");
                    std::process::exit(1);
                }
            }
            // A second signal means "now": skip what is left of the grace period.
            if let Some(sig) = signals.next() {
                eprintln!("coserve: {who}second signal ({sig}): exiting at once");
                std::process::exit(1);
            }
        });
    if let Err(e) = watching {
        // Without it no signal could stop the server gracefully.
        eprintln!("coserve: cannot start: {e}");
        return ExitCode::FAILURE;
    }
    handle.join();
    if let Some(redirect) = redirect {
        redirect.join();
    }
    ExitCode::SUCCESS
}

/// The `--redirect-http` server's configuration: the site's, in plain
/// HTTP.
fn redirect_config(cli: &cli::Cli) -> coserve::Config {
    cli.config().tls(None)
}

/// The static files, behind Basic auth when `--auth` asks for it.
enum Site {
    Open(StaticFiles),
    Protected(Protected<StaticFiles>),
}

impl Handler for Site {
    fn handle(&self, req: &Request) -> Response {
        match self {
            Site::Open(files) => files.handle(req),
            Site::Protected(files) => files.handle(req),
        }
    }
}

/// Binds the address the flags name, `n` times on one port (sharing it
/// with SO_REUSEPORT when `n` > 1): a host name or address (the first of
/// its addresses that binds), or with none, `::` taking IPv4 too, or
/// `0.0.0.0` where the system has no IPv6.
fn bind(cli: &cli::Cli, n: usize) -> std::io::Result<Vec<Server>> {
    bind_port(cli, cli.port, &cli.config(), n)
}

/// [`bind`] on another port, with another configuration.
fn bind_port(
    cli: &cli::Cli,
    port: u16,
    config: &coserve::Config,
    n: usize,
) -> std::io::Result<Vec<Server>> {
    let one = |addr: &[SocketAddr]| {
        if n > 1 {
            Server::bind_shared(addr, config.clone())
        } else {
            Server::bind(addr, config.clone())
        }
    };
    let first = match cli.bind.as_deref() {
        Some(host) => {
            // `[::1]`, as written in URLs, is taken too.
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
            one(&addrs)?
        }
        None => {
            one(&[(Ipv6Addr::UNSPECIFIED, port).into()]).or_else(|e| match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT) => {
                    one(&[(Ipv4Addr::UNSPECIFIED, port).into()])
                }
                _ => Err(e),
            })?
        }
    };
    let addr = first.local_addr();
    let mut servers = vec![first];
    for _ in 1..n {
        servers.push(one(&[addr])?);
    }
    Ok(servers)
}

fn cannot_bind(cli: &cli::Cli, e: &std::io::Error) -> ExitCode {
    eprintln!(
        "coserve: cannot serve {} on {} port {}: {e}",
        cli.directory.display(),
        cli.bind.as_deref().unwrap_or("::"),
        cli.port
    );
    ExitCode::FAILURE
}

/// SIGHUP reads the certificates again (certbot's renewals): new
/// handshakes get the new ones; a broken file keeps the old ones, and
/// says why. (With `--processes`, SIGHUP replaces the workers instead,
/// and each new one reads the files.)
fn reload_on_sighup(tls: coserve::TlsConfig) -> std::io::Result<()> {
    let mut hups = Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("coserve-reload".into())
        .spawn(move || {
            for _ in hups.forever() {
                match tls.reload() {
                    Ok(()) => eprintln!("coserve: SIGHUP: certificates reloaded"),
                    Err(e) => eprintln!("coserve: SIGHUP: keeping the old certificates: {e}"),
                }
            }
        })?;
    Ok(())
}

/// The line `python3 -m http.server` prints, for the address bound.
fn announce(bound: SocketAddr, https: bool) {
    let host = match bound {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Serving {} on {} port {} ({}://{host}:{}/) ...",
        if https { "HTTPS" } else { "HTTP" },
        bound.ip(),
        bound.port(),
        if https { "https" } else { "http" },
        bound.port()
    );
    let _ = out.flush();
}

/// The line that says where `--redirect-http` listens.
fn announce_redirect(bound: SocketAddr, https: u16) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Redirecting HTTP on {} port {} to HTTPS port {https}",
        bound.ip(),
        bound.port()
    );
    let _ = out.flush();
}

/// What a person pressed or sent.
pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "interrupted",
        SIGTERM => "terminated",
        _ => "signal",
    }
}

/// Raises the soft limit on open descriptors to the hard one (see
/// [`coserve::raise_open_files_limit`]), and says so if even that
/// leaves too few: connections past it wait in the backlog until others
/// close.
fn raise_descriptor_limit(max_connections: usize) {
    let Ok(limit) = coserve::raise_open_files_limit() else {
        return;
    };
    // The listener, the log, may's and the parking lot's epolls, a file
    // being sent, and the like.
    let needed = (max_connections as u64).saturating_add(64);
    if limit < needed {
        log::warn!(
            "--max-connections {max_connections} needs about {needed} descriptors, but the \
             limit is {limit}: connections past it wait until others close (raise `ulimit -n`)"
        );
    }
}

/// Access lines go to stderr as they are (Common Log Format); everything
/// else is prefixed with its level. `RUST_LOG` can override the filter.
fn init_logging(quiet: bool) {
    let access = if quiet {
        log::LevelFilter::Off
    } else {
        log::LevelFilter::Info
    };
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("coserve::access", access)
        .parse_env("RUST_LOG")
        .format(|buf, record| {
            if record.target() == "coserve::access" {
                writeln!(buf, "{}", record.args())
            } else {
                writeln!(buf, "coserve: {}: {}", record.level(), record.args())
            }
        })
        .init();
}
