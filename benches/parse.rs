//! Request-head parsing and path resolution, on realistic inputs.
//!
//! `cargo bench --bench parse`

use std::hint::black_box;

use coserve::__fuzz::{Limits, parse_head, resolve_path};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// What `wrk` sends.
const WRK: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// What a desktop browser sends for a stylesheet.
const BROWSER: &[u8] = b"GET /assets/css/site.min.css?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://www.example.com/blog/2024/01/a-post-about-coroutines.html\r\n\
Connection: keep-alive\r\n\
Sec-Fetch-Dest: style\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"5f2a-1700000000\"\r\n\
If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n";

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse_head");
    for (name, req) in [("wrk", WRK), ("browser", BROWSER)] {
        group.throughput(Throughput::Bytes(req.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_head(black_box(req), &limits)));
    }
    group.finish();

    c.bench_function("resolve_path", |b| {
        b.iter(|| resolve_path(black_box("/assets/%E2%9C%93/../css/site.min.css")))
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
