//! A warm keep-alive connection allocates nothing per request. Its own test
//! binary: it replaces the global allocator with one that counts, for the
//! whole process.

mod memory;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use coserve::{Request, Response, StatusCode};

/// Counts the allocations each thread makes.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations made on this thread while serving `n` pipelined keep-alive
/// requests, with a handler that allocates nothing itself.
fn allocations_serving(n: usize) -> u64 {
    let request =
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n";
    let mut io = memory::Memory::new(request.repeat(n), 4096);
    io.output.reserve(1 << 20);
    let handler = |_: &Request| Response::new(StatusCode::OK).body("hello");
    let config = coserve::Config::new();
    let before = ALLOCATIONS.with(|a| a.get());
    coserve::serve_connection(&mut io, None, &config, &handler);
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

#[test]
fn a_warm_keep_alive_connection_allocates_nothing_per_request() {
    // The first run also builds what is built once (the regex).
    allocations_serving(1);
    let one = allocations_serving(1);
    let many = allocations_serving(501);
    // The buffers grow while 500 pipelined responses are batched: a few
    // allocations in all, never one per request.
    assert!(
        many <= one + 16,
        "{one} allocations for one request, {many} for 501: the hot path allocates per request"
    );
}
