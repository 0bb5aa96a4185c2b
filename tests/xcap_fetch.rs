//! The XCAP fetcher against a real HTTP server on 127.0.0.1 run by the test: each
//! connection gets the next scripted answer (200, 304, 404, a slow body, an oversized
//! body, a malformed document), and the store shows what the fetcher kept.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presenced::store::xcap::{doc_type, source};
use presenced::store::{Store, StoreOptions};
use presenced::xcap::fetch::{FetchConfig, Fetcher};

const RULES: &str =
    r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a"/></ruleset>"#;
const RULES2: &str =
    r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="b"/></ruleset>"#;

/// One scripted answer.
#[derive(Clone)]
enum Answer {
    Doc(&'static str, &'static str),
    NotModified,
    NotFound,
    /// Headers promise a body that never comes.
    Stall,
    Huge(usize),
    Redirect,
}

/// A one-thread HTTP server; returns its base URL and the requests it saw.
fn server(script: Vec<Answer>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/xcap-root", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for answer in script {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let head = read_head(&mut s);
            log.lock().unwrap().push(head);
            let wire = match answer {
                Answer::Doc(body, tag) => format!(
                    "HTTP/1.1 200 OK\r\nETag: \"{tag}\"\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                Answer::NotModified => "HTTP/1.1 304 Not Modified\r\n\r\n".into(),
                Answer::NotFound => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
                Answer::Stall => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<ruleset".into(),
                Answer::Huge(n) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n{}",
                    "x".repeat(n)
                ),
                Answer::Redirect => {
                    "HTTP/1.1 302 Found\r\nLocation: http://evil/\r\nContent-Length: 0\r\n\r\n"
                        .into()
                }
            };
            let _ = s.write_all(wire.as_bytes());
            if matches!(answer, Answer::Stall) {
                // Keep the connection open past the client's deadline, off this thread
                // so the next scripted answer is served on time.
                std::thread::spawn(move || {
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest);
                });
            }
        }
    });
    (base, seen)
}

fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn fetcher(dir: &tempfile::TempDir, base: &str) -> (Store, Fetcher) {
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let cfg = FetchConfig {
        timeout: Duration::from_millis(500),
        max_size: 4096,
    };
    let f = Fetcher::new(store.clone(), &[base.to_owned()], cfg, false);
    (store, f)
}

fn stored(store: &Store) -> Option<(String, String, u8)> {
    store
        .xcap_for_user("alice", "example.com", Some(doc_type::PRES_RULES))
        .unwrap()
        .into_iter()
        .next()
        .map(|x| (String::from_utf8(x.doc).unwrap(), x.etag, x.source))
}

#[test]
fn fetched_documents_are_stored_revalidated_and_kept_through_failures() {
    use Answer::*;
    let (base, seen) = server(vec![
        Doc(RULES, "e1"),
        NotModified,
        Stall,
        Huge(10_000),
        Doc(
            "<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\">",
            "bad",
        ),
        Doc(
            "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"x\"/>",
            "wrong",
        ),
        Redirect,
        Doc(RULES2, "e2"),
        NotFound,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (store, f) = fetcher(&dir, &base);

    // 200: stored as fetched, reported as a change.
    let changed = smol::block_on(f.fetch_user("alice", "example.com"));
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].doc_type, doc_type::PRES_RULES);
    assert_eq!(
        stored(&store),
        Some((RULES.into(), "e1".into(), source::FETCHED))
    );
    let url = format!("{base}/pres-rules/users/sip:alice@example.com/index");
    let path = url.splitn(4, '/').nth(3).unwrap();
    assert!(seen.lock().unwrap()[0].starts_with(&format!("GET /{path} HTTP/1.1")));

    // 304 (asked with If-None-Match), a stalled body, an oversized body, a malformed
    // document, a document of the wrong usage and a redirect: nothing changes.
    for step in ["304", "slow", "huge", "malformed", "wrong root", "redirect"] {
        assert!(
            smol::block_on(f.refresh_all()).is_empty(),
            "{step} must not change anything"
        );
        assert_eq!(
            stored(&store),
            Some((RULES.into(), "e1".into(), source::FETCHED)),
            "{step} must keep the last good document"
        );
    }
    assert!(seen.lock().unwrap()[1].contains("If-None-Match: \"e1\""));

    // refreshXcapDoc by the stored URI: the new version replaces the old.
    let changed = smol::block_on(f.refresh_doc(&url, 0));
    assert_eq!(changed.len(), 1);
    assert_eq!(
        stored(&store),
        Some((RULES2.into(), "e2".into(), source::FETCHED))
    );

    // 404: the server dropped it, so do we.
    assert_eq!(smol::block_on(f.refresh_all()).len(), 1);
    assert_eq!(stored(&store), None);
}

#[test]
fn a_dead_server_is_a_logged_failure_not_a_hang() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/xcap-root", dead.local_addr().unwrap());
    drop(dead);
    let dir = tempfile::tempdir().unwrap();
    let (store, f) = fetcher(&dir, &base);
    let started = std::time::Instant::now();
    assert!(smol::block_on(f.fetch_user("alice", "example.com")).is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stored(&store), None);
}

#[test]
fn fetch_mode_daemon_fetches_rules_when_a_watcher_needs_them() {
    // The daemon asks the fetcher for alice's rules on bob's SUBSCRIBE; once they
    // arrive, bob is re-evaluated and becomes active.
    let doc = "<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
               xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\"><cr:rule id=\"a\"><cr:conditions>\
               <cr:identity><cr:one id=\"sip:bob@example.com\"/></cr:identity></cr:conditions>\
               <cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions></cr:rule></cr:ruleset>";
    let (base, _) = server(vec![Answer::Doc(doc, "r1")]);
    let dir = tempfile::tempdir().unwrap();
    let c = presenced::config::Config {
        listen: vec![presenced::config::ListenAddr::Udp(
            "127.0.0.1:0".parse().unwrap(),
        )],
        db: dir.path().join("db"),
        force_active: false,
        integrated_xcap_server: false,
        xcap_server: vec![base],
        ..Default::default()
    };
    let handle = presenced::daemon::start(c, Arc::new(presenced::clock::SystemClock)).unwrap();
    let udp = handle
        .addr(presenced::sip::endpoint::TransportKind::Udp)
        .unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let sub = format!(
        "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKf1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: fetch1@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:{port}>\r\n\
         Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(sub.as_bytes(), udp).unwrap();
    let mut states = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !states.iter().any(|s: &String| s.starts_with("active")) {
        let (n, _) = sock.recv_from(&mut buf).expect("the server keeps talking");
        let msg = presenced::sip::message::Message::parse(&buf[..n]).unwrap();
        if let presenced::sip::message::Message::Request(r) = msg {
            states.push(
                r.headers
                    .get("Subscription-State")
                    .unwrap_or_default()
                    .to_owned(),
            );
            let ok = presenced::sip::message::Response::for_request(&r, 200, None).to_bytes();
            sock.send_to(&ok, udp).unwrap();
        }
    }
    assert!(states[0].starts_with("pending"), "{states:?}");
}
