//! A JSON API for a todo list, kept in SQLite: blocking database calls
//! from blocking-style handlers, without blocking the server.
//!
//! ```sh
//! cargo run --release --example todo -- 8080 todos.db   # http://127.0.0.1:8080/
//! cargo run --release --example todo -- 0 todos.db      # a port the OS picks
//!
//! curl -i http://127.0.0.1:8080/todos
//! curl -i --json '{"title": "buy milk"}' http://127.0.0.1:8080/todos
//! curl -i http://127.0.0.1:8080/todos/1
//! curl -i -X PATCH --json '{"done": true}' http://127.0.0.1:8080/todos/1
//! curl -i -X DELETE http://127.0.0.1:8080/todos/1
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `GET /todos` | `200`, every todo in id order: `[{"id": 1, "title": "buy milk", "done": false}]` |
//! | `POST /todos` `{"title": "..."}` (and `"done"`, if not `false`) | `201`, `Location: /todos/ID`, the new todo |
//! | `GET /todos/ID` | `200`, the todo |
//! | `PATCH /todos/ID` `{"title": "...", "done": true}` (either or both) | `200`, the todo as updated |
//! | `DELETE /todos/ID` | `204` |
//!
//! A body that is not a JSON object, or a field of the wrong type (a
//! missing title, in a `POST`), is a `400`; a body over [`MAX_BODY`] a
//! `413`; an ID that names no todo a `404`, and so does one that is not a
//! number written plainly (`abc`, `007`, `+7`): `/todos/abc` is a resource
//! that does not exist, like `/todos/99`. Each error's body is
//! `{"error": "why"}`. Another method on these paths is a `405` with
//! `Allow`, from the router.
//!
//! SQLite calls block their thread, so each one runs on coserve's blocking
//! pool (`coserve::blocking`), which parks only the calling coroutine. The
//! database is in WAL mode: reads run beside the one writer. Writes take
//! one connection in turn, so the server's own writers never wait on
//! SQLite's lock; reads take any idle connection of a small pool. The
//! busy timeout is for other processes on the same file (the `sqlite3`
//! shell, say). Every change is one statement, committed on its own.
//!
//! `cargo test --test tests examples::` serves this same app (see
//! tests/examples.rs): every answer above, a restart on the same file, and
//! a thousand clients at once.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coserve::{Config, Request, Response, Router, Server, StatusCode};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value, json};

/// The largest request body a handler reads, in bytes; a larger one is a
/// `413` (the server's own limit, `Config::max_body`, is 1 MiB).
pub const MAX_BODY: usize = 64 * 1024;

/// How long a write waits for another process's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database: a file, its one write connection and its idle read
/// connections. The locks are std locks, taken only on the blocking pool's
/// threads, never on a coroutine.
struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// A todo as stored.
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

impl Todo {
    const COLUMNS: &str = "id, title, done";

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Todo> {
        Ok(Todo {
            id: row.get(0)?,
            title: row.get(1)?,
            done: row.get(2)?,
        })
    }

    fn to_json(&self) -> Value {
        json!({"id": self.id, "title": self.title, "done": self.done})
    }
}

/// Opens `path` (creating it) with the settings every connection needs.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers do not block the writer, nor it them. NORMAL: a commit
    // survives the process being killed; a power cut may lose the last
    // ones (FULL would sync the log on every commit).
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        eprintln!("todo: {} stays in {mode} mode, not WAL", path.display());
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

impl Db {
    /// Opens the database at `path`, creating the file and the table if
    /// they are not there.
    fn open(path: &Path) -> rusqlite::Result<Db> {
        let writer = open(path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS todos (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 title TEXT NOT NULL,
                 done INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1))
             )",
        )?;
        Ok(Db {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` with the write connection, on the blocking pool.
    fn write<T, F>(self: &Arc<Db>, f: F) -> rusqlite::Result<T>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        coserve::blocking(move || f(&db.writer.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// Runs `f` with an idle read connection (or a new one), on the
    /// blocking pool. There are at most as many as the pool has threads.
    fn read<T, F>(self: &Arc<Db>, f: F) -> rusqlite::Result<T>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        coserve::blocking(move || {
            let idle = db.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open(&db.path)?,
            };
            let result = f(&conn);
            db.readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            result
        })
    }
}

/// `value` as `application/json` with `status`.
fn json_response(status: StatusCode, value: &Value) -> Response {
    Response::bytes("application/json", value.to_string()).with_status(status)
}

/// An error answer: `{"error": why}`.
fn error(status: StatusCode, why: &str) -> Response {
    json_response(status, &json!({ "error": why }))
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such todo")
}

/// A database failure: the client learns only that it was ours.
fn db_error(e: rusqlite::Error) -> Response {
    eprintln!("todo: database error: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "database error")
}

/// A found todo as `200`, none as `404`.
fn found(todo: rusqlite::Result<Option<Todo>>) -> Response {
    match todo {
        Ok(Some(todo)) => json_response(StatusCode::OK, &todo.to_json()),
        Ok(None) => not_found(),
        Err(e) => db_error(e),
    }
}

/// The `:id` of the path, if it is a number written plainly: digits, no
/// sign, no leading zero, so that each todo has one URL.
fn todo_id(req: &Request) -> Option<i64> {
    let text = req.param("id")?;
    let id: i64 = text.parse().ok()?;
    (id.to_string() == text).then_some(id)
}

/// The request body as a JSON object: a `413` past [`MAX_BODY`] (checked
/// before parsing), a `400` if it is not JSON or not an object.
fn json_object(req: &Request) -> Result<Map<String, Value>, Response> {
    if req.body().len() > MAX_BODY {
        return Err(error(
            StatusCode::CONTENT_TOO_LARGE,
            "the body is over 64 KiB",
        ));
    }
    match serde_json::from_slice(req.body()) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "the body is not a JSON object",
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {e}"),
        )),
    }
}

/// The changes a `PATCH` (or a `POST`) asks for: each field, if present,
/// must have its type.
struct Changes {
    title: Option<String>,
    done: Option<bool>,
}

impl Changes {
    fn from_json(mut fields: Map<String, Value>) -> Result<Changes, Response> {
        let title = match fields.remove("title") {
            None => None,
            Some(Value::String(title)) => Some(title),
            Some(_) => return Err(error(StatusCode::BAD_REQUEST, "title must be a string")),
        };
        let done = match fields.remove("done") {
            None => None,
            Some(Value::Bool(done)) => Some(done),
            Some(_) => return Err(error(StatusCode::BAD_REQUEST, "done must be true or false")),
        };
        Ok(Changes { title, done })
    }
}

fn list(db: &Arc<Db>) -> Response {
    let todos = db.read(|conn| {
        let mut query =
            conn.prepare_cached(&format!("SELECT {} FROM todos ORDER BY id", Todo::COLUMNS))?;
        let rows = query.query_map([], Todo::from_row)?;
        rows.map(|todo| todo.map(|t| t.to_json()))
            .collect::<rusqlite::Result<Vec<Value>>>()
    });
    match todos {
        Ok(todos) => json_response(StatusCode::OK, &Value::Array(todos)),
        Err(e) => db_error(e),
    }
}

fn create(db: &Arc<Db>, req: &Request) -> Response {
    let changes = match json_object(req).and_then(Changes::from_json) {
        Ok(changes) => changes,
        Err(resp) => return resp,
    };
    let Some(title) = changes.title else {
        return error(StatusCode::BAD_REQUEST, "title is missing");
    };
    let done = changes.done.unwrap_or(false);
    let todo = db.write(move |conn| {
        conn.prepare_cached(&format!(
            "INSERT INTO todos (title, done) VALUES (?1, ?2) RETURNING {}",
            Todo::COLUMNS
        ))?
        .query_row(params![title, done], Todo::from_row)
    });
    match todo {
        Ok(todo) => json_response(StatusCode::CREATED, &todo.to_json())
            .header("Location", format!("/todos/{}", todo.id)),
        Err(e) => db_error(e),
    }
}

fn get(db: &Arc<Db>, req: &Request) -> Response {
    let Some(id) = todo_id(req) else {
        return not_found();
    };
    found(db.read(move |conn| {
        conn.prepare_cached(&format!(
            "SELECT {} FROM todos WHERE id = ?1",
            Todo::COLUMNS
        ))?
        .query_row([id], Todo::from_row)
        .optional()
    }))
}

fn update(db: &Arc<Db>, req: &Request) -> Response {
    let Some(id) = todo_id(req) else {
        return not_found();
    };
    let changes = match json_object(req).and_then(Changes::from_json) {
        Ok(changes) => changes,
        Err(resp) => return resp,
    };
    // One statement: a field not asked for keeps its value, and the
    // answer is the row as this update left it.
    found(db.write(move |conn| {
        conn.prepare_cached(&format!(
            "UPDATE todos SET title = coalesce(?2, title), done = coalesce(?3, done) \
             WHERE id = ?1 RETURNING {}",
            Todo::COLUMNS
        ))?
        .query_row(params![id, changes.title, changes.done], Todo::from_row)
        .optional()
    }))
}

fn delete(db: &Arc<Db>, req: &Request) -> Response {
    let Some(id) = todo_id(req) else {
        return not_found();
    };
    let deleted = db.write(move |conn| {
        conn.prepare_cached("DELETE FROM todos WHERE id = ?1")?
            .execute([id])
    });
    match deleted {
        Ok(0) => not_found(),
        Ok(_) => Response::new(StatusCode::NO_CONTENT),
        Err(e) => db_error(e),
    }
}

/// The API on the database at `path`, which is created if it is not
/// there. Fails if it cannot be opened or is not a database.
pub fn app(path: impl AsRef<Path>) -> rusqlite::Result<Router> {
    let db = Arc::new(Db::open(path.as_ref())?);
    let route = |f: fn(&Arc<Db>, &Request) -> Response| {
        let db = db.clone();
        move |req: &Request| f(&db, req)
    };
    Ok(Router::new()
        .get("/todos", route(|db, _| list(db)))
        .post("/todos", route(create))
        .get("/todos/:id", route(get))
        .patch("/todos/:id", route(update))
        .delete("/todos/:id", route(delete)))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(path), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: todo PORT DB_FILE   (PORT 0 for any free port)");
        std::process::exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("usage: todo PORT DB_FILE   (not a port: {port:?})");
        std::process::exit(2);
    };
    let app = app(&path).unwrap_or_else(|e| {
        eprintln!("todo: cannot open the database {path:?}: {e}");
        std::process::exit(1);
    });

    let server = Server::bind(("127.0.0.1", port), Config::new())?;
    // The real port, when the OS picked it.
    println!("listening on http://{}/", server.local_addr());
    std::io::stdout().flush()?;
    server.serve(app)
}
