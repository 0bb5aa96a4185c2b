//! Fuzzes the XCAP server (RFC 4825) the way a client on a socket reaches it: arbitrary
//! bytes as one connection's stream of pipelined HTTP requests, read with the server's
//! own limits and answered against one in-memory store per input (so a PUT can be read
//! back by a later GET). Nothing may panic, and every answer, the refusal of an
//! unreadable request included, must be a well-formed HTTP response.
#![no_main]

use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use libfuzzer_sys::fuzz_target;
use presenced::config::Config;
use presenced::store::{Store, StoreOptions};
use presenced::xcap::http::{ReadError, read_request, response_bytes};
use presenced::xcap::integrated::{MAX_HEAD, ServerConfig, handle, refusal};

/// `bytes` must be one complete HTTP response with `status`, `headers` headers and a
/// body of `body_len` bytes.
fn check(bytes: &[u8], status: u16, headers: usize, body_len: usize) {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => {
            assert_eq!(parsed.code, Some(status), "status");
            assert_eq!(bytes.len() - head, body_len, "body length");
            // Our headers plus Content-Length: a header value cannot smuggle in another.
            assert_eq!(parsed.headers.len(), headers + 1, "header count");
        }
        other => panic!(
            "answer is not an HTTP response ({other:?}):\n{}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let store = Store::open_temporary(StoreOptions {
        cache_capacity: 1 << 20,
        sync_always: false,
    })
    .expect("temporary store");
    let cfg = ServerConfig {
        max_document_size: Config::default().xcap_max_document_size,
        port: 8080,
    };
    let mut stream = Cursor::new(data);
    let mut buf = Vec::new();
    // Every request read consumes at least its head and the end of input is an error,
    // so this ends; the bound is a backstop.
    for _ in 0..64 {
        match block_on(read_request(
            &mut stream,
            &mut buf,
            MAX_HEAD,
            cfg.max_document_size,
        )) {
            Ok(req) => {
                let (reply, _changed) = handle(&store, &cfg, &req);
                let bytes = response_bytes(reply.status, &reply.headers, &reply.body);
                check(&bytes, reply.status, reply.headers.len(), reply.body.len());
            }
            Err(ReadError::Closed) => break,
            Err(e) => {
                let status = refusal(&e);
                let bytes = response_bytes(status, &[("Connection", "close".into())], b"");
                check(&bytes, status, 1, 0);
                break;
            }
        }
    }
});
