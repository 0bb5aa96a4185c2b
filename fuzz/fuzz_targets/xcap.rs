//! Fuzzes the XCAP server (RFC 4825) the way a client on a socket would reach it:
//! arbitrary bytes as a stream of pipelined HTTP requests, each answered against a
//! fresh in-memory store. Nothing may panic, and every answer must be a well-formed
//! HTTP response.
#![no_main]

use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use libfuzzer_sys::fuzz_target;
use presenced::store::{Store, StoreOptions};
use presenced::xcap::http::{read_request, response_bytes};
use presenced::xcap::server::{ServerConfig, handle};

fuzz_target!(|data: &[u8]| {
    let store = Store::open_temporary(StoreOptions {
        cache_capacity: 1 << 20,
        sync_always: false,
    })
    .expect("temporary store");
    let cfg = ServerConfig {
        max_document_size: 16 * 1024,
        port: 8080,
    };
    let mut stream = Cursor::new(data);
    let mut buf = Vec::new();
    // Each request consumes at least its head, so this ends; the bound is a backstop.
    for _ in 0..64 {
        let Ok(req) = block_on(read_request(&mut stream, &mut buf, 8 * 1024, 64 * 1024)) else {
            break;
        };
        let (reply, _changed) = handle(&store, &cfg, &req);
        let bytes = response_bytes(reply.status, &reply.headers, &reply.body);
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(&bytes) {
            Ok(httparse::Status::Complete(head)) => {
                assert_eq!(parsed.code, Some(reply.status));
                assert_eq!(bytes.len() - head, reply.body.len(), "body length");
            }
            other => panic!(
                "answer is not an HTTP response ({other:?}):\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
});
