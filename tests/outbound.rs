//! `coserve::client`: handlers that call an upstream coserve server, on
//! both engines (the upstream runs on the same engine as the server under
//! test). The client is ureq over may's sockets: these tests check that it
//! speaks HTTP (GET, POST, streams both ways), pools, times out, fails
//! fast on a dead port, parks coroutines rather than worker threads, and
//! speaks TLS to a server with a test CA.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use coserve::client::{Client, SendBody};
use coserve::{Config, Request, Response, Router, StatusCode, TlsConfig};

use crate::util::{TestServer, big_pattern, start, test_config};

/// 5 MiB: several times any buffer on the way (ureq's, the sockets').
const BIG: usize = 5 * 1024 * 1024;

/// An upstream: `/hello`, `/echo` (the body back), `/sum` (length and a
/// checksum of the body), `/big` (a 5 MiB pattern written in pieces as it
/// goes), `/slow?ms=N` (answers after sleeping), and `/peer` (the
/// client's address, which tells connections apart).
fn upstream(config: Config) -> TestServer {
    let app = Router::new()
        .get("/hello", |_| "hello from upstream")
        .post("/echo", |req| req.body().to_vec())
        .post("/sum", |req| {
            let body = req.body();
            let sum = body.iter().map(|&b| u64::from(b)).sum::<u64>();
            format!("{} {sum}", body.len())
        })
        .get("/big", |_| {
            Response::new(StatusCode::OK).body(coserve::Body::stream(|w| {
                let pattern = big_pattern(BIG);
                for piece in pattern.chunks(64 * 1024) {
                    w.write_all(piece)?;
                    w.flush()?;
                }
                Ok(())
            }))
        })
        .get("/slow", |req| {
            let ms = req
                .query_param("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            // Parks the upstream's coroutine (a thread sleep on the thread engine).
            may::coroutine::sleep(Duration::from_millis(ms));
            "slept"
        })
        .get("/peer", |req: &Request| {
            req.peer_addr().map(|a| a.to_string()).unwrap_or_default()
        });
    start(config.max_body(16 * 1024 * 1024), app)
}

/// `http://ADDR`.
fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// An error as the handlers report it: the ureq error and how long the
/// call took, in whole milliseconds.
fn failed(e: coserve::client::Error, started: Instant) -> String {
    format!("error {e:?} after {}", started.elapsed().as_millis())
}

/// How many milliseconds a `failed` report says the call took.
fn millis(report: &str) -> u128 {
    report.rsplit(' ').next().unwrap().parse().unwrap()
}

crate::engine_tests! {
    #[test]
    fn a_handler_gets_from_an_upstream() {
        let up = upstream(test_config());
        let client = Client::new();
        let url = format!("{}/hello", base(up.addr));
        let server = start(test_config(), move |_: &Request| {
            let mut res = client.get(&url).call().unwrap();
            let status = res.status();
            let text = res.body_mut().read_to_string().unwrap();
            format!("{} {text}", status.as_u16())
        });
        let r = server.get("/");
        assert_eq!((r.status, r.text().as_str()), (200, "200 hello from upstream"));
    }

    /// An error status is a response to read, not an error.
    #[test]
    fn an_error_status_is_a_response() {
        let up = upstream(test_config());
        let client = Client::new();
        let url = format!("{}/nowhere", base(up.addr));
        let server = start(test_config(), move |_: &Request| {
            let res = client.get(&url).call().unwrap();
            res.status().as_u16().to_string()
        });
        assert_eq!(server.get("/").text(), "404");
    }

    #[test]
    fn a_handler_posts_bytes_and_a_stream() {
        let up = upstream(test_config());
        let client = Client::new();
        let at = base(up.addr);
        let server = start(test_config(), move |_: &Request| {
            let mut echo = client
                .post(format!("{at}/echo"))
                .header("content-type", "text/plain")
                .send("posted bytes")
                .unwrap();
            let echoed = echo.body_mut().read_to_string().unwrap();
            // A reader of unknown length goes out chunked, read as it is sent.
            let stream = io::repeat(7).take(BIG as u64);
            let mut sum = client
                .post(format!("{at}/sum"))
                .send(SendBody::from_owned_reader(stream))
                .unwrap();
            let summed = sum.body_mut().read_to_string().unwrap();
            format!("{echoed}|{summed}")
        });
        let r = server.get("/");
        assert_eq!(r.text(), format!("posted bytes|{BIG} {}", 7 * BIG));
    }

    /// The handler copies the upstream's 5 MiB body to its client through
    /// a 16 KiB buffer: neither side holds the body whole.
    #[test]
    fn a_large_body_streams_through_a_handler() {
        let up = upstream(test_config());
        let client = Client::new();
        let url = format!("{}/big", base(up.addr));
        let server = start(test_config(), move |_: &Request| {
            let res = client.get(&url).call().unwrap();
            assert_eq!(res.headers().get("content-length"), None, "the upstream streams it");
            let mut body = res.into_body().into_reader();
            Response::new(StatusCode::OK).body(coserve::Body::stream(move |w| {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = body.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.write_all(&buf[..n])?;
                }
            }))
        });
        let r = server.get("/");
        assert_eq!(r.status, 200);
        assert!(r.body == big_pattern(BIG), "{} bytes came", r.body.len());
    }

    /// Two calls in a row go over one upstream connection: the upstream
    /// sees the same client port twice.
    #[test]
    fn calls_reuse_a_pooled_connection() {
        let up = upstream(test_config());
        let client = Client::new();
        let url = format!("{}/peer", base(up.addr));
        let server = start(test_config(), move |_: &Request| {
            let peers: Vec<String> = (0..3)
                .map(|_| client.get(&url).call().unwrap().body_mut().read_to_string().unwrap())
                .collect();
            peers.join(" ")
        });
        let text = server.get("/").text();
        let peers: HashSet<&str> = text.split(' ').collect();
        assert_eq!(peers.len(), 1, "{text}");
        // Without a pool every call has a connection of its own.
        let unpooled = Client::builder().max_idle_per_host(0).build();
        let url = format!("{}/peer", base(up.addr));
        let peers: HashSet<String> = (0..2)
            .map(|_| unpooled.get(&url).call().unwrap().body_mut().read_to_string().unwrap())
            .collect();
        assert_eq!(peers.len(), 2, "{peers:?}");
    }

    /// An upstream that answers after 3 s: a call limited to 300 ms, as a
    /// whole or per read, fails when its limit is up, not when the
    /// upstream answers.
    #[test]
    fn a_slow_upstream_times_out() {
        let up = upstream(test_config());
        let url = format!("{}/slow?ms=2000", base(up.addr));
        let whole = Client::builder().timeout(Some(Duration::from_millis(300))).build();
        let per_read = Client::builder().read_timeout(Some(Duration::from_millis(300))).build();
        let server = start(test_config(), move |_: &Request| {
            [&whole, &per_read]
                .iter()
                .map(|client| {
                    let started = Instant::now();
                    match client.get(&url).call() {
                        Ok(_) => "answered".to_string(),
                        Err(e) => failed(e, started),
                    }
                })
                .collect::<Vec<_>>()
                .join("|")
        });
        let text = server.get("/").text();
        let reports: Vec<&str> = text.split('|').collect();
        assert!(reports[0].starts_with("error Timeout(Global)"), "{text}");
        assert!(reports[1].starts_with("error Timeout(PerRead)"), "{text}");
        for report in reports {
            let ms = millis(report);
            // may's timers round to the millisecond, and can fire one early.
            assert!((250..1500).contains(&ms), "{text}");
        }
    }

    /// Nothing listens on the port: the call fails at once.
    #[test]
    fn a_dead_upstream_fails_fast() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::new();
        let url = format!("http://127.0.0.1:{port}/");
        let server = start(test_config(), move |_: &Request| {
            let started = Instant::now();
            match client.get(&url).call() {
                Ok(_) => "answered".to_string(),
                Err(e) => failed(e, started),
            }
        });
        let text = server.get("/").text();
        assert!(text.contains("ConnectionRefused"), "{text}");
        assert!(millis(&text) < 1000, "{text}");
    }

    /// 200 requests at once, each calling an upstream that takes 100 ms.
    /// Calls that blocked a worker thread would take 200 × 100 ms divided
    /// by the workers (10 s on two); parked coroutines overlap them all.
    #[test]
    fn two_hundred_handlers_call_upstream_at_once() {
        const N: usize = 200;
        let up = upstream(test_config());
        let client = Client::new();
        let url = format!("{}/slow?ms=100", base(up.addr));
        let server = start(test_config(), move |_: &Request| {
            client.get(&url).call().unwrap().body_mut().read_to_string().unwrap()
        });
        let addr = server.addr;
        let started = Instant::now();
        for c in crate::util::get_root_at_once(addr, N) {
            let r = c.join().unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "slept"));
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    /// https to a server whose certificate a test CA signed: trusted once
    /// the CA is given (PEM), refused by a client that knows only
    /// Mozilla's roots. `localhost` is looked up on the blocking pool.
    #[test]
    fn a_handler_calls_an_https_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::make_named(dir.path(), "", &["localhost", "127.0.0.1"]);
        let tls = TlsConfig::from_pem_files(dir.path().join("cert.pem"), dir.path().join("key.pem"))
            .unwrap();
        let up = upstream(test_config().tls(Some(tls)));
        let trusting = Client::builder().root_certificates_pem(&pem(&ca)).unwrap().build();
        let other = Client::new();
        let at = format!("https://localhost:{}", up.addr.port());
        let server = start(test_config(), move |_: &Request| {
            let mut res = trusting.get(format!("{at}/hello")).call().unwrap();
            let text = res.body_mut().read_to_string().unwrap();
            let peers: Vec<String> = (0..2)
                .map(|_| {
                    let mut res = trusting.get(format!("{at}/peer")).call().unwrap();
                    res.body_mut().read_to_string().unwrap()
                })
                .collect();
            let refused = other.get(format!("{at}/hello")).call().unwrap_err();
            format!("{text}|{}|{}|{refused}", peers[0], peers[1])
        });
        let text = server.get("/").text();
        let parts: Vec<&str> = text.split('|').collect();
        assert_eq!(parts[0], "hello from upstream");
        // The TLS connection is pooled too.
        assert_eq!(parts[1], parts[2], "{text}");
        assert!(parts[3].contains("UnknownIssuer"), "{text}");
    }
}

/// A certificate as PEM.
fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

/// Off coroutines the client works too: a call blocks the calling thread.
#[test]
fn a_plain_thread_calls_an_upstream() {
    let up = upstream(test_config());
    let client = Client::new();
    let mut res = client
        .get(format!("{}/hello", base(up.addr)))
        .call()
        .unwrap();
    assert_eq!(
        res.body_mut().read_to_string().unwrap(),
        "hello from upstream"
    );
    let err = Client::builder()
        .root_certificates_pem(b"not a certificate")
        .unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

/// The blocking pool's size is set before its first use, in a process of
/// its own (this one's pool has long started): the child runs
/// [`blocking_pool_of_seven`].
#[test]
fn the_blocking_pool_takes_its_size_before_first_use() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "outbound::blocking_pool_of_seven", "--ignored"])
        .env("COSERVE_TEST_POOL_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sets a pool of 7 threads, then runs 7 jobs that each wait until all 7
/// run at once, which only 7 threads can do; a later size is refused.
#[test]
#[ignore = "run by the_blocking_pool_takes_its_size_before_first_use"]
fn blocking_pool_of_seven() {
    if std::env::var_os("COSERVE_TEST_POOL_CHILD").is_none() {
        return;
    }
    coserve::set_blocking_pool_size(7).unwrap();
    assert_eq!(coserve::blocking_pool_size(), 7);
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    let callers: Vec<_> = (0..7)
        .map(|_| {
            let arrived = arrived.clone();
            std::thread::spawn(move || {
                coserve::blocking(move || {
                    let (count, changed) = &*arrived;
                    let mut n = count.lock().unwrap();
                    *n += 1;
                    changed.notify_all();
                    let (n, _) = changed
                        .wait_timeout_while(n, Duration::from_secs(10), |n| *n < 7)
                        .unwrap();
                    (*n, std::thread::current().name().map(str::to_owned))
                })
            })
        })
        .collect();
    let mut names = HashSet::new();
    for c in callers {
        let (n, name) = c.join().unwrap();
        assert_eq!(n, 7, "only {n} jobs ran at once");
        names.insert(name.unwrap());
    }
    assert_eq!(names.len(), 7, "{names:?}");
    let err = coserve::set_blocking_pool_size(8).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
}

/// A pooled connection that the upstream closed while it sat idle is not
/// used again: the next call opens a new one and succeeds. The upstream
/// (std sockets, a thread per connection) answers each request with
/// keep-alive, closes a connection idle for 200 ms, and says so; the
/// second call comes after that. Without the check before reuse
/// (`is_open`), the second call would go over the closed connection and
/// fail, since ureq does not retry.
#[test]
fn a_pooled_connection_the_upstream_closed_is_not_reused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let closed = closed_tx.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                // Until idle for 200 ms, or closed: then close and say so.
                while let Ok(1) = stream.read(&mut byte) {
                    head.push(byte[0]);
                    if head.ends_with(b"\r\n\r\n") {
                        let body = format!("connection {}", n + 1);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(answer.as_bytes()).unwrap();
                        head.clear();
                    }
                }
                drop(stream);
                let _ = closed.send(n + 1);
            });
        }
    });
    let client = Client::new();
    let url = format!("http://{addr}/");
    let call = || {
        client
            .get(&url)
            .call()
            .map(|mut r| r.body_mut().read_to_string().unwrap())
    };
    assert_eq!(call().unwrap(), "connection 1");
    assert_eq!(
        closed_rx.recv_timeout(Duration::from_secs(10)),
        Ok(1),
        "the upstream closes its idle connection"
    );
    assert_eq!(call().unwrap(), "connection 2");
}
