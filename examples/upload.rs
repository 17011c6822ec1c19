//! Uploads streamed to disk: `PUT /NAME` writes the request body to
//! `DIR/NAME` as it arrives, and `GET /NAME` serves it back. An upload of
//! any size (up to 64 GiB here) passes through one 256 KiB buffer, so the
//! server's memory stays flat however large the file or how many upload
//! at once.
//!
//! ```sh
//! cargo run --release --example upload -- 8080 /tmp/uploads
//! curl -T big.iso http://127.0.0.1:8080/big.iso      # 201 Created
//! curl -o copy.iso http://127.0.0.1:8080/big.iso
//! ```
//!
//! The route says it streams its body (`stream_body(MAX)`): the handler
//! runs as soon as the head is in, and each read of `req.body_reader()`
//! parks only its coroutine until the client sends more. Writing to the
//! file blocks a thread, so each piece is written on the blocking pool
//! (`coserve::blocking`), which parks only the coroutine too. The body
//! goes to a hidden `.NAME.partial` first and is renamed when complete, so
//! a cut-short upload never replaces a good file.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coserve::{
    Config, Error, FilesOptions, Handler, Method, Request, Response, Router, Server, StaticFiles,
    StatusCode, blocking,
};

/// The largest upload accepted.
const MAX: u64 = 64 << 30;
/// How much of the body is read before it is written.
const PIECE: usize = 256 * 1024;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(dir), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: upload PORT DIR   (PORT 0 for any free port)");
        std::process::exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("usage: upload PORT DIR   (not a port: {port:?})");
        std::process::exit(2);
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let app = app(&dir)?;
    let server = Server::bind(("127.0.0.1", port), Config::new())?;
    // The real port, when the OS picked it.
    println!("listening on http://{}/", server.local_addr());
    std::io::stdout().flush()?;
    server.serve(app)
}

/// The routes over `dir`.
fn app(dir: &Path) -> std::io::Result<Router> {
    let files = Arc::new(StaticFiles::new(dir, FilesOptions::default())?);
    let dir = Arc::new(dir.to_path_buf());
    let put = move |req: &Request| store(&dir, req);
    Ok(Router::new()
        .get("/", |_| "PUT /NAME stores a file, GET /NAME serves it\n")
        .handler(Method::Put, "/:name", put.stream_body(MAX))
        .handler(Method::Get, "/:name", files))
}

/// Streams the body of `PUT /NAME` to `dir/NAME`.
fn store(dir: &Path, req: &Request) -> Result<Response, Error> {
    let name = req.param("name").ok_or(StatusCode::NOT_FOUND)?;
    if !is_plain_name(&name) {
        return Err(Error::new(StatusCode::BAD_REQUEST));
    }
    let path = dir.join(&*name);
    let partial = Partial(dir.join(format!(".{name}.partial")));
    let mut file = {
        let at = partial.0.clone();
        blocking(move || File::create(at))?
    };
    let mut body = req.body_reader();
    let mut buf = vec![0u8; PIECE];
    let mut total = 0u64;
    loop {
        // Fills the piece; a failed read (a body cut short, too slow,
        // too large) returns its status with `?`.
        let mut filled = 0;
        while filled < buf.len() {
            match body.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        total += filled as u64;
        let (f, b, written) = blocking(move || {
            let written = file.write_all(&buf[..filled]);
            (file, buf, written)
        });
        (file, buf) = (f, b);
        written?;
        if filled < PIECE {
            break;
        }
    }
    let from = partial.0.clone();
    blocking(move || {
        file.sync_all()?;
        std::fs::rename(from, path)
    })?;
    std::mem::forget(partial);
    Ok(Response::text(format!("stored {total} bytes\n"))
        .with_status(StatusCode::CREATED)
        .header("Location", format!("/{name}")))
}

/// A name of letters, digits, `-`, `_` and `.`, not starting with a dot:
/// no path, no hidden file.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A partial upload, removed unless the upload completes.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
