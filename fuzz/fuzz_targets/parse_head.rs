//! Arbitrary bytes as a request head: `parse_head` with the default limits,
//! then every accessor of the `Request` built from a complete head. Nothing
//! may panic, and a complete head must lie inside the input and parse the
//! same on its own (the bytes after it cannot change it).

#![no_main]

use coserve::__fuzz::{Limits, Status, framing, parse_head, resolve_path};
use coserve::{ParseError, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let head = match parse_head(data, &limits) {
        Ok(Status::Complete(head)) => head,
        Ok(Status::Partial) => return,
        Err(e) => {
            assert!(matches!(
                e.status().as_u16(),
                400 | 413 | 414 | 417 | 431 | 501 | 505
            ));
            return;
        }
    };
    assert!(
        head.len <= data.len(),
        "head.len {} > input {}",
        head.len,
        data.len()
    );
    let bytes = &data[..head.len];
    assert!(bytes.ends_with(b"\r\n\r\n"), "{bytes:?}");
    // The head alone parses to the same head.
    assert_eq!(
        parse_head(bytes, &limits),
        Ok(Status::Complete(head.clone()))
    );

    let req: Request = Request::parse(bytes).expect("a complete head parses as a Request");
    match framing(&req) {
        Ok(_) => {}
        Err(e) => assert!(matches!(
            e,
            ParseError::Host
                | ParseError::ContentLength
                | ParseError::TransferEncoding
                | ParseError::UnsupportedTransferCoding
        )),
    }
    let path = req.path();
    assert!(
        path == "*" || path.starts_with('/'),
        "path {path:?} of target {:?}",
        req.target()
    );
    assert!(req.target().len() <= limits.max_request_line);
    if let Some(q) = req.query() {
        assert!(req.target().ends_with(q));
    }
    let mut fields = 0;
    for (name, value) in req.headers() {
        assert!(!name.is_empty());
        assert!(!value.contains(&b'\r') && !value.contains(&b'\n'));
        fields += 1;
    }
    assert!(fields <= limits.max_headers);
    let _ = req.wants_keep_alive();
    let _ = req.method().as_str();
    let _ = req.request_line();
    let _ = req.decoded_path();
    let _ = req.header_str("host");
    let _ = resolve_path(path);
});
