//! A warm keep-alive connection allocates nothing per request. Its own test
//! binary: it replaces the global allocator with one that counts, for the
//! whole process.

mod memory;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use coserve::{Handler, Request, Response, Router, StatusCode};

/// Counts the allocations each thread makes.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated on this thread and not yet freed (on this thread).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add_live(bytes: i64) {
    let _ = LIVE.try_with(|n| n.set(n.get() + bytes));
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        add_live(layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        add_live(new_size as i64 - layout.size() as i64);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations made on this thread while serving `n` pipelined keep-alive
/// requests for `/index.html`, with a handler that allocates nothing
/// itself.
fn allocations_serving(n: usize, handler: &dyn Handler) -> u64 {
    let request =
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n";
    let mut io = memory::Memory::new(request.repeat(n), 4096);
    io.output.reserve(1 << 20);
    let config = coserve::Config::new();
    let before = ALLOCATIONS.with(|a| a.get());
    coserve::serve_connection(&mut io, None, &config, handler);
    let after = ALLOCATIONS.with(|a| a.get());
    assert_eq!(
        io.output
            .windows(15)
            .filter(|w| w == b"HTTP/1.1 200 OK")
            .count(),
        n
    );
    after - before
}

fn hello(_: &Request) -> Response {
    Response::new(StatusCode::OK).body("hello")
}

#[test]
fn a_warm_keep_alive_connection_allocates_nothing_per_request() {
    // The first run also builds what is built once (the regex).
    allocations_serving(1, &hello);
    let one = allocations_serving(1, &hello);
    let many = allocations_serving(501, &hello);
    // The buffers grow while 500 pipelined responses are batched: a few
    // allocations in all, never one per request.
    assert!(
        many <= one + 16,
        "{one} allocations for one request, {many} for 501: the hot path allocates per request"
    );
}

/// A router finds an exact route without allocating, whatever patterns
/// and prefixes it has beside it.
#[test]
fn a_router_allocates_nothing_for_an_exact_route() {
    let router = Router::new()
        .get("/:page", hello)
        .get("/*path", hello)
        .prefix("/", hello)
        .get("/about", hello)
        .get("/index.html", hello);
    allocations_serving(1, &router);
    let one = allocations_serving(1, &router);
    let many = allocations_serving(501, &router);
    assert!(
        many <= one + 16,
        "{one} allocations for one request, {many} for 501: the router allocates per request"
    );
}

/// An upgraded connection runs once the HTTP loop has let go of its
/// buffers: what it holds is the protocol's, not a 4 KiB read buffer kept
/// alive by the upgraded request's bytes (an idle WebSocket held both).
#[test]
fn an_upgraded_connection_holds_no_http_buffers() {
    use std::sync::atomic::{AtomicI64, Ordering};
    static HELD: AtomicI64 = AtomicI64::new(i64::MIN);
    let request = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n\
                    Upgrade: test\r\nUser-Agent: t\r\n\r\nearly";
    let mut io = memory::Memory::new(request.to_vec(), 4096);
    io.output.reserve(1 << 16);
    let handler = |req: &Request| {
        assert_eq!(req.path(), "/chat");
        Response::upgrade("test", |mut conn| {
            use std::io::Read;
            let mut early = [0u8; 5];
            conn.read_exact(&mut early)
                .expect("the bytes after the head");
            assert_eq!(&early, b"early");
            assert_eq!(conn.request().path(), "/chat");
            HELD.store(LIVE.with(|n| n.get()), Ordering::SeqCst);
        })
    };
    let config = coserve::Config::new();
    // The first connection also builds what is built once (the regex).
    let mut first = memory::Memory::new(request.to_vec(), 4096);
    coserve::serve_connection(&mut first, None, &config, &handler);
    HELD.store(i64::MIN, Ordering::SeqCst);
    let before = LIVE.with(|n| n.get());
    coserve::serve_connection(&mut io, None, &config, &handler);
    let held = HELD.load(Ordering::SeqCst);
    assert_ne!(held, i64::MIN, "the upgrade did not run");
    assert!(io.output.starts_with(b"HTTP/1.1 101 "));
    // The request's copy, its field list and the closure: well under the
    // read buffer's 4 KiB.
    let grown = held - before;
    assert!(
        grown < 2048,
        "an upgraded connection holds {grown} bytes more than before it was served"
    );
}
