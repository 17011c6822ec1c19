//! The smallest useful coserve app: a few routes, each a plain closure that
//! takes a request and returns anything that converts into a response.
//!
//! ```sh
//! cargo run --example hello                    # http://127.0.0.1:8080/
//! cargo run --example hello -- 0               # a port the OS picks
//! cargo run --example hello --features json    # adds GET /json
//!
//! curl http://127.0.0.1:8080/
//! curl 'http://127.0.0.1:8080/hello?name=J%C3%BCrgen'
//! curl 'http://127.0.0.1:8080/square?n=12'
//! curl http://127.0.0.1:8080/json
//! curl -N http://127.0.0.1:8080/stream
//! curl --data 'ping' http://127.0.0.1:8080/echo
//! ```
//!
//! Every connection runs on its own may coroutine, so handlers are written
//! in blocking style: `/stream` simply sleeps between lines, and only its
//! own coroutine waits.
//!
//! `cargo test --example hello` runs the tests at the bottom, which serve
//! this same app and ask it over a socket.

use std::time::Duration;

use coserve::{Body, Config, Error, Response, Router, Server, StatusCode};

/// The routes. Whatever none of them matches is a 404; a path that matches
/// with another method is a 405 that lists the allowed ones.
fn app() -> Router {
    let app = Router::new()
        // GET / (and so HEAD /). A `&'static str` or a `String` is a
        // `200 OK` text/plain response.
        .get("/", |_| "hello, world\n")
        // GET /hello?name=X greets X, percent-decoded by `query_param`.
        .get("/hello", |req| {
            let name = req.query_param("name").unwrap_or_else(|| "world".into());
            Response::text(format!("hello, {name}\n"))
        })
        // GET /square?n=12 answers 144. A handler may return a `Result`, and
        // `?` turns the error into a response: a missing `n` is a 400, and
        // so is one that is not a number (`with_cause` puts why in the log,
        // not in the response). A plain `?` on any other error is a 500.
        .get("/square", |req| -> Result<String, Error> {
            let n = req.query_param("n").ok_or(StatusCode::BAD_REQUEST)?;
            let n: u32 = n
                .parse()
                .map_err(|e| Error::with_cause(StatusCode::BAD_REQUEST, e))?;
            Ok(format!("{}\n", u64::from(n) * u64::from(n)))
        })
        // GET /stream sends five lines, 100 ms apart, as a chunked body. The
        // closure runs after the head has gone out; each `flush` sends what
        // was written so far, and the sleep parks only this connection's
        // coroutine.
        .get("/stream", |_| {
            Response::new(StatusCode::OK)
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(Body::stream(|w| {
                    for i in 1..=5 {
                        writeln!(w, "line {i} of 5")?;
                        w.flush()?;
                        if i < 5 {
                            may::coroutine::sleep(Duration::from_millis(100));
                        }
                    }
                    Ok(())
                }))
        })
        // POST /echo answers with the request body (read whole, up to 1 MiB
        // by default: `Config::max_body`) and its content type. Cloning the
        // body's `Bytes` copies no data.
        .post("/echo", |req| {
            let content_type = req
                .header_str("Content-Type")
                .unwrap_or("application/octet-stream");
            Response::bytes(content_type, req.body().clone())
        });

    // GET /json answers a JSON document. `Response::json` serializes any
    // `serde::Serialize` value; it needs coserve's `json` feature.
    #[cfg(feature = "json")]
    let app = app.get("/json", |req| {
        Response::json(&serde_json::json!({
            "method": req.method().as_str(),
            "path": req.path(),
            "user_agent": req.header_str("User-Agent"),
        }))
    });

    app
}

fn main() -> std::io::Result<()> {
    // The port is the first argument: 8080 by default, 0 for any free port.
    let port: u16 = match std::env::args().nth(1) {
        None => 8080,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: hello [PORT]   (not a port: {arg:?})");
            std::process::exit(2);
        }),
    };

    let server = Server::bind(("127.0.0.1", port), Config::new())?;
    println!("listening on http://{}/", server.local_addr());
    // Serves until the process is stopped (Ctrl-C). To stop it from the
    // program instead, `server.spawn(app())?` returns a handle with
    // `shutdown()`, as the tests below do.
    server.serve(app())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    use super::*;

    /// Sends `request` (with `Connection: close`, so that the server closes
    /// after answering) and returns the response's head and its body,
    /// de-chunked.
    fn ask(addr: SocketAddr, request: &str) -> (String, String) {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete head");
        let body = if head.contains("\r\nTransfer-Encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (head.to_string(), body)
    }

    /// `GET target`: the status code and the body.
    fn get(addr: SocketAddr, target: &str) -> (u16, String) {
        let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let (head, body) = ask(addr, &request);
        (head[9..12].parse().unwrap(), body)
    }

    /// The data of a chunked body, which must end with the last chunk.
    fn dechunk(mut body: &str) -> String {
        let mut data = String::new();
        loop {
            let (size, rest) = body.split_once("\r\n").expect("a chunk size");
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                assert_eq!(rest, "\r\n", "nothing after the last chunk");
                return data;
            }
            data.push_str(&rest[..size]);
            body = rest[size..]
                .strip_prefix("\r\n")
                .expect("CRLF after a chunk");
        }
    }

    #[test]
    fn every_route_answers() {
        let handle = Server::bind("127.0.0.1:0", Config::new())
            .unwrap()
            .spawn(app())
            .unwrap();
        let addr = handle.local_addr();

        assert_eq!(get(addr, "/"), (200, "hello, world\n".into()));
        assert_eq!(get(addr, "/hello"), (200, "hello, world\n".into()));
        assert_eq!(
            get(addr, "/hello?name=J%C3%BCrgen"),
            (200, "hello, J\u{fc}rgen\n".into())
        );
        assert_eq!(get(addr, "/square?n=12"), (200, "144\n".into()));
        assert_eq!(
            get(addr, "/square?n=4294967295").1,
            "18446744065119617025\n"
        );
        assert_eq!(get(addr, "/square").0, 400);
        assert_eq!(get(addr, "/square?n=twelve").0, 400);
        let lines: String = (1..=5).map(|i| format!("line {i} of 5\n")).collect();
        assert_eq!(get(addr, "/stream"), (200, lines));
        let (head, body) = ask(
            addr,
            "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: text/x-ping\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\nping",
        );
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.lines().any(|l| l == "Content-Type: text/x-ping"),
            "{head}"
        );
        assert_eq!(body, "ping");
        assert_eq!(get(addr, "/nowhere").0, 404);
        assert_eq!(get(addr, "/echo").0, 405);

        #[cfg(feature = "json")]
        {
            let (status, body) = get(addr, "/json");
            assert_eq!(status, 200);
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["path"], "/json");
            assert_eq!(json["method"], "GET");
        }

        handle.shutdown();
    }
}
