//! The smallest useful coserve app: a few routes, each a plain closure that
//! takes a request and returns a response.
//!
//! ```sh
//! cargo run --example hello            # http://127.0.0.1:8080/
//! cargo run --example hello -- 0       # a port the OS picks
//!
//! curl http://127.0.0.1:8080/
//! curl 'http://127.0.0.1:8080/hello?name=J%C3%BCrgen'
//! curl -N http://127.0.0.1:8080/stream
//! curl --data 'ping' http://127.0.0.1:8080/echo
//! ```
//!
//! Every connection runs on its own may coroutine, so handlers are written
//! in blocking style: `/stream` simply sleeps between lines, and only its
//! own coroutine waits.

use std::time::Duration;

use coserve::{Body, Config, Request, Response, Server};
use percent_encoding::percent_decode_str;

fn main() -> std::io::Result<()> {
    // The port is the first argument: 8080 by default, 0 for any free port.
    let port: u16 = match std::env::args().nth(1) {
        None => 8080,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("usage: hello [PORT]   (not a port: {arg:?})");
            std::process::exit(2);
        }),
    };

    // Whatever no route below matches is a 404. (`Server::bind` would serve
    // a directory here instead.)
    let mut server =
        Server::bind_with(("127.0.0.1", port), Config::default(), |_req: &Request| {
            Response::error(404)
        })?;

    // GET / (and HEAD /). Other methods on `/` get 405 with `Allow`.
    server.get("/", |_req: &Request| text("hello, world\n".to_string()));

    // GET /hello?name=X greets X. The query arrives still percent-encoded.
    server.get("/hello", |req: &Request| {
        let name = query_param(req.query(), "name").unwrap_or_else(|| "world".into());
        text(format!("hello, {name}\n"))
    });

    // GET /stream sends five lines, 100 ms apart, as a chunked body. The
    // closure runs after the head has gone out; each `flush` sends what was
    // written so far, and the sleep parks only this connection's coroutine.
    server.get("/stream", |_req: &Request| {
        Response::new(200)
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
    });

    // POST /echo answers with the request body (read whole, up to 1 MiB).
    server.post("/echo", |req: &Request| {
        let content_type = req
            .header_str("Content-Type")
            .unwrap_or("application/octet-stream");
        Response::new(200)
            .header("Content-Type", content_type)
            .body(Body::Bytes(req.body().clone()))
    });

    println!("listening on http://{}/", server.local_addr());
    // Serves until the process is stopped (Ctrl-C).
    server.run()
}

/// A 200 response with a plain-text body.
fn text(body: String) -> Response {
    Response::new(200)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Body::Bytes(body.into()))
}

/// The decoded value of `key` in a query string such as `a=1&name=J%C3%BCrgen`
/// (`+` counts as a space, as in HTML forms).
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}
