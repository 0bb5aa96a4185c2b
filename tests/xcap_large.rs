//! Large XCAP documents over real sockets. With `xcap_max_document_size` raised, a
//! pres-rules document of about 1 MB whose bulk is attributes, or namespace
//! declarations, must be answered within the tests' usual wait and then govern
//! subscriptions like any other. Reading XML used to cost time quadratic in those
//! counts: 1 MB of attributes took 26 s of CPU.

mod common;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::*;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const RULES_PATH: &str = "/xcap-root/pres-rules/users/sip:alice@example.com/index";
const DOC_SIZE: usize = 1 << 20;

fn start_xcap() -> TestServer {
    start(|c| {
        c.force_active = false;
        c.xcap_listen = "127.0.0.1:0".parse().unwrap();
        c.xcap_max_document_size = 2 << 20;
    })
}

/// A ruleset allowing bob, with `bulk(i)` repeated on the element `on` until the
/// document is about [`DOC_SIZE`] bytes.
fn ruleset_with(on: &str, bulk: impl Fn(usize) -> String) -> String {
    let mut filler = String::new();
    let mut i = 0;
    while filler.len() < DOC_SIZE {
        filler.push(' ');
        filler.push_str(&bulk(i));
        i += 1;
    }
    let (root_extra, rule_extra) = match on {
        "ruleset" => (filler.as_str(), ""),
        _ => ("", filler.as_str()),
    };
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        doc,
        "<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\"{root_extra}>\
         <cr:rule id=\"bob\"{rule_extra}><cr:conditions><cr:identity><cr:one id=\"{BOB}\"/>\
         </cr:identity></cr:conditions><cr:actions><pr:sub-handling>allow</pr:sub-handling>\
         </cr:actions></cr:rule></cr:ruleset>"
    );
    doc
}

/// PUTs `doc` as alice's rules and returns the answer's status; the whole answer must
/// arrive within [`WAIT`] of sending.
fn put_rules_within_wait(srv: &TestServer, doc: &str) -> u16 {
    let addr = srv.handle.xcap_addr().expect("the XCAP server runs");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "PUT {RULES_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/auth-policy+xml\r\nContent-Length: {}\r\n\r\n",
        doc.len()
    );
    let deadline = Instant::now() + WAIT;
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(doc.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no complete answer within {WAIT:?}");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no complete answer within {WAIT:?}")
            }
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"))
}

/// The document is stored and then decides: bob, whom it allows, is active at once.
fn large_rules_are_answered_and_applied(doc: &str) {
    assert!(doc.len() >= DOC_SIZE);
    let srv = start_xcap();
    assert_eq!(put_rules_within_wait(&srv, doc), 201);
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 200);
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("active"), "{}", sub_state(&n));
}

#[test]
fn a_megabyte_of_attributes_is_answered_within_the_wait() {
    let doc = ruleset_with("rule", |i| format!("a{i}=\"\""));
    large_rules_are_answered_and_applied(&doc);
}

#[test]
fn a_megabyte_of_namespace_declarations_is_answered_within_the_wait() {
    let doc = ruleset_with("ruleset", |i| format!("xmlns:n{i}=\"urn:n:{i}\""));
    large_rules_are_answered_and_applied(&doc);
}
