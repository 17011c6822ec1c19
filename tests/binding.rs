//! Where a server listens: the dual-stack any-address, ports shared between
//! servers (`Server::bind_shared`, what `coserve --processes` runs on), and
//! sockets bound elsewhere (`Server::from_listener`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use coserve::{Request, Server};

use crate::engine_tests;
use crate::util::{self, read_response, test_config};

/// One `GET /` on a new connection; the body.
fn body_at(addr: SocketAddr) -> String {
    let mut s = util::connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("a response");
    assert_eq!(r.status, 200);
    r.text()
}

engine_tests! {
    /// `[::]` takes IPv4 too, whatever `net.ipv6.bindv6only` says.
    #[test]
    fn the_ipv6_any_address_takes_ipv4_too() {
        if TcpListener::bind("[::1]:0").is_err() {
            eprintln!("[binding] no IPv6 here: nothing to check");
            return;
        }
        let server = Server::bind("[::]:0", test_config()).unwrap();
        let port = server.local_addr().port();
        let handle = server.spawn(|_: &Request| "both\n").unwrap();
        assert_eq!(body_at(SocketAddr::from(([127, 0, 0, 1], port))), "both\n");
        assert_eq!(body_at(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))), "both\n");
        handle.shutdown();
    }

    /// Two shared binds split the connections to one port between them; a
    /// plain bind of that port is refused; and one of them shutting down
    /// (its wake connection may land on the other's socket) returns, and
    /// leaves the other serving everything.
    #[test]
    fn shared_binds_split_a_port_and_shut_down_alone() {
        let a = Server::bind_shared("127.0.0.1:0", test_config()).unwrap();
        let addr = a.local_addr();
        let b = Server::bind_shared(addr, test_config()).unwrap();
        assert!(Server::bind(addr, test_config()).is_err(), "a plain bind shared the port");
        let a = a.spawn(|_: &Request| "a").unwrap();
        let b = b.spawn(|_: &Request| "b").unwrap();
        let seen: Vec<String> = (0..64).map(|_| body_at(addr)).collect();
        assert!(seen.iter().any(|s| s == "a") && seen.iter().any(|s| s == "b"), "{seen:?}");

        let started = Instant::now();
        a.shutdown();
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        for _ in 0..32 {
            assert_eq!(body_at(addr), "b");
        }
        b.shutdown();
    }

    /// A socket bound and listening elsewhere is served as it is.
    #[test]
    fn a_listener_bound_elsewhere_is_served() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::from_listener(listener, test_config()).unwrap();
        assert_eq!(server.local_addr(), addr);
        let handle = server.spawn(|_: &Request| "inherited").unwrap();
        assert_eq!(body_at(addr), "inherited");
        handle.shutdown();
    }
}
