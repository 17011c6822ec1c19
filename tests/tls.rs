//! HTTPS: the same server over rustls, with certificates made here by a
//! test CA (rcgen), on both engines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coserve::{TlsConfig, TlsError};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::util::{TestServer, start_site};

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1, as
/// PEM files in `dir`; returns the CA certificate.
fn make_certificates(dir: &Path) -> CertificateDer<'static> {
    make_named(dir, "", &["localhost", "127.0.0.1"])
}

/// A new CA, and a certificate it signed for `names`, as `{prefix}cert.pem`
/// and `{prefix}key.pem` in `dir`; returns the CA certificate.
pub(crate) fn make_named(dir: &Path, prefix: &str, names: &[&str]) -> CertificateDer<'static> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "coserve test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let params = rcgen::CertificateParams::new(names).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{prefix}cert.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{prefix}key.pem")), key.serialize_pem()).unwrap();
    ca_cert.der().clone()
}

/// A server on the standard test site, over TLS, and the CA that signed
/// its certificate.
fn tls_site(header_timeout: Duration) -> (TestServer, CertificateDer<'static>) {
    tls_site_with(|c| c.header_timeout(header_timeout))
}

/// [`tls_site`] with settings of the test's own.
fn tls_site_with(
    configure: impl FnOnce(coserve::Config) -> coserve::Config,
) -> (TestServer, CertificateDer<'static>) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let tls =
        TlsConfig::from_pem_files(dir.path().join("cert.pem"), dir.path().join("key.pem")).unwrap();
    let server = start_site(|c, f| (configure(c.tls(Some(tls))), f));
    (server, ca)
}

/// Waits until `n` connections have given back their buffers: parked with
/// their TLS sessions on the coroutine engine, waiting without buffers on
/// the thread engine, which never parks.
fn wait_released(s: &TestServer, n: usize) {
    let released = crate::util::eventually(Duration::from_secs(10), || {
        s.handle.released_connections() == n
    });
    assert!(
        released,
        "{} released, expected {n}",
        s.handle.released_connections()
    );
    let parked = if crate::util::engine() == coserve::EngineKind::Thread {
        0
    } else {
        n
    };
    assert_eq!(s.handle.parked_connections(), parked);
}

pub(crate) fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    client_config_with(ca, versions, rustls::crypto::aws_lc_rs::default_provider())
}

/// [`client_config`] with a provider of the test's own (key exchanges).
pub(crate) fn client_config_with(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    provider: rustls::crypto::CryptoProvider,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(provider);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

pub(crate) type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    try_connect(addr, config, "localhost").unwrap()
}

/// A handshake asking for `name`; the error if the client refuses the
/// server's certificate (or anything else fails).
pub(crate) fn try_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> Result<Tls, String> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// A response: status, header fields (names lowercased) and body.
#[derive(Debug)]
pub(crate) struct Resp {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response framed by `Content-Length` (or none, for `HEAD`
/// and `304`).
pub(crate) fn read_response(r: &mut impl Read, head: bool) -> Resp {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            r.read(&mut byte).unwrap(),
            1,
            "the head ended early: {buf:?}"
        );
        buf.push(byte[0]);
    }
    let text = String::from_utf8(buf).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = match resp.header("content-length") {
        Some(n) if !head && status != 304 => n.parse().unwrap(),
        _ => 0,
    };
    resp.body = vec![0u8; len];
    r.read_exact(&mut resp.body).unwrap();
    resp
}

fn get(tls: &mut Tls, target: &str, extra: &str) -> Resp {
    write!(
        tls,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    read_response(tls, false)
}

pub(crate) const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

crate::engine_tests! {
    /// GET, HEAD, a range and a 304 on one kept-alive TLS connection.
    #[test]
    fn https_serves_the_site_as_http_does() {
        let (server, ca) = tls_site(Duration::from_secs(10));
        let mut tls = connect(server.addr, client_config(&ca, BOTH));
        let page = std::fs::read(server.root().join("index.html")).unwrap();
        let r = get(&mut tls, "/index.html", "");
        assert_eq!((r.status, &r.body), (200, &page));
        let etag = r.header("etag").unwrap().to_string();
        write!(tls, "HEAD /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let head = read_response(&mut tls, true);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some(&*page.len().to_string()));
        let r = get(&mut tls, "/big.bin", "Range: bytes=251-260\r\n");
        assert_eq!(r.status, 206);
        assert_eq!(r.body, (0..10).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let r = get(&mut tls, "/index.html", &format!("If-None-Match: {etag}\r\n"));
        assert_eq!(r.status, 304);
        // A whole file larger than the socket's buffers.
        let r = get(&mut tls, "/big.bin", "");
        assert_eq!(r.body.len(), 1024 * 1024);
        assert!(r.body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }

    /// TLS 1.3 and 1.2 each, with ALPN `http/1.1`.
    #[test]
    fn tls_1_2_and_1_3_both_negotiate_http_1_1() {
        let (server, ca) = tls_site(Duration::from_secs(10));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut tls = connect(server.addr, client_config(&ca, &[version]));
            assert_eq!(tls.conn.protocol_version(), Some(version.version));
            assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            assert_eq!(get(&mut tls, "/", "").status, 200);
        }
    }

    /// `Connection: close` ends with close_notify, not just a FIN: the
    /// client can tell the response was not cut short.
    #[test]
    fn a_close_sends_close_notify() {
        let (server, ca) = tls_site(Duration::from_secs(10));
        let mut tls = connect(server.addr, client_config(&ca, BOTH));
        let r = get(&mut tls, "/index.html", "Connection: close\r\n");
        assert_eq!(r.status, 200);
        let mut rest = Vec::new();
        // rustls reports a close without close_notify as UnexpectedEof.
        tls.read_to_end(&mut rest).expect("a clean close_notify");
        assert!(rest.is_empty());
    }

    /// Plain HTTP to the TLS port: a plaintext 400 that says why.
    #[test]
    fn plain_http_to_the_tls_port_gets_a_plaintext_400() {
        let (server, _) = tls_site(Duration::from_secs(10));
        let mut s = server.connect();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let r = read_response(&mut s, false);
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("HTTPS"));
        assert_eq!(r.header("connection"), Some("close"));
    }

    /// Clients that vanish mid-handshake (after part of a ClientHello, or
    /// with a reset) leave nothing behind, and others are served.
    #[test]
    fn clients_vanishing_mid_handshake_leave_nothing_behind() {
        let (server, ca) = tls_site(Duration::from_secs(10));
        for i in 0..300 {
            let mut s = server.connect();
            let _ = s.write_all(&b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..3 + i % 9]);
            if i % 2 == 0 {
                // SO_LINGER 0: the close is a reset.
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            drop(s);
        }
        let mut tls = connect(server.addr, client_config(&ca, BOTH));
        assert_eq!(get(&mut tls, "/", "").status, 200);
        drop(tls);
        let gone = crate::util::eventually(Duration::from_secs(10), || {
            server.handle.active_connections() == 0
        });
        assert!(gone, "{} connections left", server.handle.active_connections());
    }

    /// Shutting the server down closes an idle kept-alive HTTPS
    /// connection with close_notify.
    #[test]
    fn shutdown_closes_idle_connections_with_close_notify() {
        let (server, ca) = tls_site(Duration::from_secs(10));
        let mut tls = connect(server.addr, client_config(&ca, BOTH));
        assert_eq!(get(&mut tls, "/", "").status, 200);
        server.handle.shutdown();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).expect("a clean close_notify");
        assert!(rest.is_empty());
    }

    /// An idle HTTPS connection parks with its session (coroutine engine)
    /// and goes on with it, without a new handshake, any number of times;
    /// many at once all come back.
    #[test]
    fn idle_tls_connections_park_and_come_back_on_the_same_session() {
        let (server, ca) =
            tls_site_with(|c| c.release_idle_after(Duration::from_millis(50)));
        let config = client_config(&ca, BOTH);
        let mut conns: Vec<Tls> = (0..50).map(|_| connect(server.addr, config.clone())).collect();
        for round in 0..3 {
            for tls in &mut conns {
                let r = get(tls, "/style.css", "");
                assert_eq!((r.status, r.body.as_slice()), (200, &b"body { color: black; }\n"[..]));
            }
            wait_released(&server, conns.len());
            // Pipelined, and over more than one record: the session's
            // state (keys, sequence numbers) came back whole.
            let tls = &mut conns[round];
            write!(tls, "GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            tls.flush().unwrap();
            assert_eq!(read_response(tls, false).body.len(), 1024 * 1024);
            assert_eq!(read_response(tls, false).status, 200);
            wait_released(&server, conns.len());
        }
    }

    /// A parked HTTPS connection closed at its idle timeout, or by
    /// shutdown, gets close_notify like one that was not parked.
    #[test]
    fn parked_tls_connections_close_with_close_notify() {
        let (server, ca) = tls_site_with(|c| {
            c.release_idle_after(Duration::from_millis(50))
                .idle_timeout(Duration::from_millis(700))
        });
        let config = client_config(&ca, BOTH);
        let mut timed_out = connect(server.addr, config.clone());
        assert_eq!(get(&mut timed_out, "/", "").status, 200);
        let mut rest = Vec::new();
        timed_out.read_to_end(&mut rest).expect("close_notify at the idle timeout");
        assert!(rest.is_empty());
        let mut stopped = connect(server.addr, config);
        assert_eq!(get(&mut stopped, "/", "").status, 200);
        wait_released(&server, 1);
        server.handle.shutdown();
        stopped.read_to_end(&mut rest).expect("close_notify at shutdown");
        assert!(rest.is_empty());
    }

    /// A handler sees the TLS version and the SNI name of its request's
    /// connection, also after the connection parked; plain HTTP has none.
    #[test]
    fn handlers_see_the_tls_version_and_server_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_certificates(dir.path());
        let tls = TlsConfig::from_pem_files(dir.path().join("cert.pem"), dir.path().join("key.pem"))
            .unwrap();
        let describe = |req: &coserve::Request| {
            let text = match req.tls() {
                Some(t) => format!("{} {}", t.version(), t.server_name().unwrap_or("-")),
                None => "plain".to_string(),
            };
            coserve::Response::text(text)
        };
        let config = crate::util::test_config().release_idle_after(Duration::from_millis(50));
        let server = crate::util::start(config.clone().tls(Some(tls)), describe);
        for (version, name, want) in [
            (&rustls::version::TLS13, "localhost", "TLSv1.3 localhost"),
            (&rustls::version::TLS12, "localhost", "TLSv1.2 localhost"),
            // No SNI is sent for an address.
            (&rustls::version::TLS13, "127.0.0.1", "TLSv1.3 -"),
        ] {
            let mut tls = try_connect(server.addr, client_config(&ca, &[version]), name).unwrap();
            assert_eq!(String::from_utf8(get(&mut tls, "/", "").body).unwrap(), want);
            wait_released(&server, 1);
            assert_eq!(String::from_utf8(get(&mut tls, "/", "").body).unwrap(), want);
        }
        let plain = crate::util::start(config, describe);
        assert_eq!(crate::util::request(&plain, "GET", "/", &[]).text(), "plain");
    }

    /// A streamed upload over TLS, sized and then chunked on one
    /// connection, with `100 Continue`, read through a small buffer by a
    /// handler that streams: the body comes through whole, and the
    /// connection goes on after each.
    #[test]
    fn a_streamed_upload_over_tls() {
        use coserve::Handler as _;
        let dir = tempfile::tempdir().unwrap();
        let ca = make_certificates(dir.path());
        let tls = TlsConfig::from_pem_files(dir.path().join("cert.pem"), dir.path().join("key.pem"))
            .unwrap();
        let count = |req: &coserve::Request| -> std::io::Result<String> {
            let mut body = req.body_reader();
            let (mut buf, mut len, mut sum) = ([0u8; 777], 0usize, 0u64);
            loop {
                match body.read(&mut buf)? {
                    0 => return Ok(format!("{len} {sum}")),
                    n => {
                        len += n;
                        sum += buf[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
                    }
                }
            }
        };
        let server = crate::util::start(
            crate::util::test_config().tls(Some(tls)),
            count.stream_body(16 << 20),
        );
        let body = crate::util::big_pattern(3 << 20);
        let want = format!("{} {}", body.len(), body.iter().map(|&b| u64::from(b)).sum::<u64>());
        let mut tls = connect(server.addr, client_config(&ca, BOTH));
        write!(
            tls,
            "PUT /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .unwrap();
        tls.flush().unwrap();
        assert_eq!(read_response(&mut tls, true).status, 100);
        tls.write_all(&body).unwrap();
        tls.flush().unwrap();
        let r = read_response(&mut tls, false);
        assert_eq!((r.status, String::from_utf8(r.body).unwrap()), (200, want.clone()));

        write!(tls, "PUT /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        for piece in body.chunks(50_000) {
            write!(tls, "{:x}\r\n", piece.len()).unwrap();
            tls.write_all(piece).unwrap();
            tls.write_all(b"\r\n").unwrap();
        }
        tls.write_all(b"0\r\n\r\n").unwrap();
        tls.flush().unwrap();
        let r = read_response(&mut tls, false);
        assert_eq!((r.status, String::from_utf8(r.body).unwrap()), (200, want));
    }

    /// A connection over the cap (overall, or per client address) gets its
    /// 503 over TLS, after a handshake, with close_notify; the others are
    /// served, and a freed slot is taken again.
    #[test]
    fn connections_over_the_caps_get_a_503_over_tls() {
        for per_ip in [false, true] {
            let (server, ca) = tls_site_with(|c| {
                if per_ip {
                    c.max_connections_per_ip(Some(1))
                } else {
                    c.max_connections(1)
                }
            });
            let config = client_config(&ca, BOTH);
            let mut first = connect(server.addr, config.clone());
            assert_eq!(get(&mut first, "/", "").status, 200);
            let mut over = connect(server.addr, config.clone());
            let r = read_response(&mut over, false);
            assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
            let mut rest = Vec::new();
            over.read_to_end(&mut rest).expect("a clean close_notify");
            assert!(rest.is_empty());
            assert_eq!(get(&mut first, "/", "").status, 200);
            drop(first);
            let freed = crate::util::eventually(Duration::from_secs(10), || {
                server.handle.active_connections() == 0
            });
            assert!(freed);
            let mut again = connect(server.addr, config);
            assert_eq!(get(&mut again, "/", "").status, 200);
        }
    }

    /// A client that stops half-way through its ClientHello is closed at
    /// the header timeout, and others are served meanwhile.
    #[test]
    fn a_stalled_handshake_is_closed_at_the_header_timeout() {
        let (server, ca) = tls_site(Duration::from_millis(500));
        let mut stalled = server.connect();
        stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // A handshake record header that promises 512 bytes, and five.
        stalled.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc").unwrap();
        let started = Instant::now();
        let mut tls = connect(server.addr, client_config(&ca, BOTH));
        assert_eq!(get(&mut tls, "/", "").status, 200);
        let mut buf = [0u8; 64];
        let n = stalled.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the server sent {:?}", &buf[..n]);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(5), "{waited:?}");
    }
}

#[test]
fn bad_files_are_refused_with_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let missing = dir.path().join("missing.pem");
    match TlsConfig::from_pem_files(&missing, &key) {
        Err(e @ TlsError::Read(..)) => assert!(e.to_string().contains("missing.pem"), "{e}"),
        other => panic!("{other:?}"),
    }
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    match TlsConfig::from_pem_files(&empty, &key) {
        Err(e @ TlsError::NoCertificate(_)) => assert!(e.to_string().contains("empty.pem"), "{e}"),
        other => panic!("{other:?}"),
    }
    match TlsConfig::from_pem_files(&cert, &empty) {
        Err(e @ TlsError::NoKey(_)) => assert!(e.to_string().contains("empty.pem"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Another key than the certificate's.
    let other = dir.path().join("other.pem");
    std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    match TlsConfig::from_pem_files(&cert, &other) {
        Err(e @ TlsError::Refused(_)) => {
            assert!(e.to_string().contains("does not match"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(TlsConfig::from_pem_files(&cert, &key).is_ok());
}

/// Two names, two certificates from two CAs: each client gets the one for
/// the name it asks for, and a name neither has gets the first.
#[test]
fn each_name_gets_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_a = make_named(dir.path(), "a-", &["a.test"]);
    let ca_b = make_named(dir.path(), "b-", &["b.test"]);
    let p = |f: &str| dir.path().join(f);
    let tls = TlsConfig::from_pem_pairs([
        (p("a-cert.pem"), p("a-key.pem")),
        (p("b-cert.pem"), p("b-key.pem")),
    ])
    .unwrap();
    let server = start_site(|c, f| (c.tls(Some(tls)), f));
    let (a, b) = (client_config(&ca_a, BOTH), client_config(&ca_b, BOTH));
    let mut tls = try_connect(server.addr, b.clone(), "b.test").unwrap();
    assert_eq!(get(&mut tls, "/", "").status, 200);
    assert!(try_connect(server.addr, a.clone(), "a.test").is_ok());
    // The wrong CA for the name refuses the certificate the server chose.
    assert!(try_connect(server.addr, a.clone(), "b.test").is_err());
    // An unknown name gets the first pair's certificate (for a.test), which
    // a client that trusts A but asked for c.test refuses by name only.
    let err = try_connect(server.addr, a, "c.test").unwrap_err();
    assert!(err.contains("valid for DnsName(\"a.test\")"), "{err}");
    let err = try_connect(server.addr, b, "c.test").unwrap_err();
    // (Both test CAs have one name, so B's looks like A's issuer, and the
    // signature tells them apart.)
    assert!(
        err.contains("BadSignature") || err.contains("UnknownIssuer"),
        "{err}"
    );
}

/// `reload` reads the files again for new handshakes; a broken file keeps
/// the old certificate.
#[test]
fn reload_takes_new_certificates_and_keeps_the_old_on_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = make_certificates(dir.path());
    let tls =
        TlsConfig::from_pem_files(dir.path().join("cert.pem"), dir.path().join("key.pem")).unwrap();
    let server = start_site(|c, f| (c.tls(Some(tls.clone())), f));
    let (old, new) = (client_config(&old_ca, BOTH), None::<Arc<ClientConfig>>);
    let mut kept = connect(server.addr, old.clone());
    // A renewal from another CA.
    let new_ca = make_certificates(dir.path());
    let new = new.unwrap_or_else(|| client_config(&new_ca, BOTH));
    assert!(
        try_connect(server.addr, new.clone(), "localhost").is_err(),
        "not yet reloaded"
    );
    tls.reload().unwrap();
    assert!(try_connect(server.addr, new.clone(), "localhost").is_ok());
    assert!(try_connect(server.addr, old, "localhost").is_err());
    // The connection made before goes on with its own.
    assert_eq!(get(&mut kept, "/", "").status, 200);
    // A half-written key: refused, and the certificate in use stays.
    std::fs::write(
        dir.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n",
    )
    .unwrap();
    assert!(tls.reload().is_err());
    assert!(try_connect(server.addr, new, "localhost").is_ok());
}

#[test]
fn the_redirect_keeps_host_path_and_query_and_swaps_the_port() {
    let at = |port: u16, raw: &str| {
        let req = coserve::Request::parse(raw.as_bytes()).unwrap();
        coserve::RedirectToHttps::new(port).location(&req)
    };
    assert_eq!(
        at(
            8443,
            "GET /a/b?c=d HTTP/1.1\r\nHost: example.test:8080\r\n\r\n"
        )
        .as_deref(),
        Some("https://example.test:8443/a/b?c=d")
    );
    assert_eq!(
        at(443, "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n").as_deref(),
        Some("https://example.test/")
    );
    assert_eq!(
        at(443, "GET /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").as_deref(),
        Some("https://[::1]/x")
    );
    // Absolute-form: the path only; the Host field names the host.
    assert_eq!(
        at(
            443,
            "GET http://other.test/p HTTP/1.1\r\nHost: example.test\r\n\r\n"
        )
        .as_deref(),
        Some("https://example.test/p")
    );
    assert_eq!(at(443, "GET / HTTP/1.0\r\n\r\n"), None);
}

/// `key.pem` of `dir` (from [`make_named`]) encrypted with `password` as
/// OpenSSL 3 encrypts keys (PKCS#8, PBES2: PBKDF2-SHA256 and AES-256-CBC).
pub(crate) fn encrypt_key(dir: &Path, prefix: &str, password: &str) {
    use pkcs8::der::pem::LineEnding;
    let path = dir.join(format!("{prefix}key.pem"));
    let pem = std::fs::read_to_string(&path).unwrap();
    let (_, doc) = pkcs8::SecretDocument::from_pem(&pem).unwrap();
    let info = pkcs8::PrivateKeyInfoRef::try_from(doc.as_bytes()).unwrap();
    let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
        2048,
        b"sixteen byte salt",
        [7; 16],
    )
    .unwrap();
    let encrypted = info.encrypt_with_params(params, password).unwrap();
    let pem = encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .unwrap();
    std::fs::write(&path, pem.as_bytes()).unwrap();
}

/// An encrypted key is read with its password; without one, with a wrong
/// one, or in OpenSSL's legacy format, the error says so and names the file.
#[test]
fn encrypted_keys_need_their_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    encrypt_key(dir.path(), "", "correct horse");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let with = |password: Option<&str>| {
        TlsConfig::from_pem_pairs_with_password([(&cert, &key)], password.map(str::as_bytes))
    };
    let tls = with(Some("correct horse")).unwrap();
    let server = start_site(|c, f| (c.tls(Some(tls)), f));
    let mut conn = connect(server.addr, client_config(&ca, BOTH));
    assert_eq!(get(&mut conn, "/", "").status, 200);
    for (password, why) in [
        (None, "the key is encrypted"),
        (Some("wrong"), "wrong password"),
        (Some(""), "wrong password"),
    ] {
        match with(password) {
            Err(e @ TlsError::Password(..)) => {
                let e = e.to_string();
                assert!(
                    e.contains("key.pem") && e.contains(why),
                    "{password:?}: {e}"
                );
            }
            other => panic!("{password:?}: {other:?}"),
        }
    }
    let legacy = dir.path().join("legacy.pem");
    std::fs::write(
        &legacy,
        "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
         DEK-Info: AES-256-CBC,00000000000000000000000000000000\n\nAAAA\n\
         -----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    match TlsConfig::from_pem_pairs_with_password([(&cert, &legacy)], Some(b"x")) {
        Err(e @ TlsError::Password(..)) => {
            assert!(e.to_string().contains("openssl pkcs8 -topk8"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

/// `from_pem_dir`: every NAME.crt with its NAME.key, chosen by SNI, the
/// first name the default; a reload picks up a pair added since; a .crt
/// without its .key, or no pair at all, is an error naming the file.
#[test]
fn a_directory_of_pairs_serves_each_name_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let rename = |prefix: &str, name: &str| {
        for (from, to) in [("cert.pem", "crt"), ("key.pem", "key")] {
            std::fs::rename(
                dir.path().join(format!("{prefix}{from}")),
                dir.path().join(format!("{name}.{to}")),
            )
            .unwrap();
        }
    };
    let a = make_named(dir.path(), "a-", &["a.test"]);
    rename("a-", "a.test");
    let b = make_named(dir.path(), "b-", &["b.test"]);
    rename("b-", "b.test");
    let tls = TlsConfig::from_pem_dir(dir.path(), None).unwrap();
    let server = start_site(|c, f| (c.tls(Some(tls.clone())), f));
    let ok = |ca: &CertificateDer<'static>, name: &str| {
        try_connect(server.addr, client_config(ca, BOTH), name).is_ok()
    };
    assert!(ok(&a, "a.test") && ok(&b, "b.test"));
    // Another name gets the first certificate (a.test's), which it refuses.
    assert!(!ok(&a, "c.test"));
    let c = make_named(dir.path(), "c-", &["c.test"]);
    rename("c-", "c.test");
    assert!(!ok(&c, "c.test"));
    tls.reload().unwrap();
    assert!(ok(&c, "c.test") && ok(&a, "a.test"));

    std::fs::copy(dir.path().join("c.test.crt"), dir.path().join("d.crt")).unwrap();
    match TlsConfig::from_pem_dir(dir.path(), None) {
        Err(e @ TlsError::Read(..)) => assert!(e.to_string().contains("d.key"), "{e}"),
        other => panic!("{other:?}"),
    }
    let empty = tempfile::tempdir().unwrap();
    match TlsConfig::from_pem_dir(empty.path(), None) {
        Err(e) => assert!(
            e.to_string().contains("no NAME.crt and NAME.key pairs"),
            "{e}"
        ),
        Ok(_) => panic!("an empty directory made a configuration"),
    }
}
