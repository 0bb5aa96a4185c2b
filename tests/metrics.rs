//! The Prometheus endpoint over its real socket: `GET /metrics` answers the text format
//! with counters that follow the SIP traffic, table gauges per event, and refusals for
//! anything else. (The interop suite parses it with prometheus_client's parser too.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const ALICE: &str = "sip:alice@example.com";

/// One HTTP request; the status code and the body.
fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_owned())
}

fn scrape(addr: SocketAddr) -> String {
    let (code, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample written exactly as `name{labels}` (or `name`).
fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

#[test]
fn counters_follow_the_traffic_and_gauges_the_tables() {
    let srv = start(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap()));
    let addr = srv.handle.metrics_addr().expect("metrics bound");
    let before = scrape(addr);
    assert_eq!(value(&before, "presenced_publish_total"), 0.0);

    let mut alice = Ua::new(srv.udp(), "alice");
    for note in ["in", "out", "away"] {
        let r = alice.publish(
            ALICE,
            None,
            Some(600),
            Some(&pidf(ALICE, "t1", "open", note)),
        );
        assert_eq!(r.status, 200);
    }
    let r = alice.publish(ALICE, Some("no-such-etag"), Some(600), None);
    assert_eq!(r.status, 412);
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 200);
    bob.expect_notify();
    srv.settle();

    let after = scrape(addr);
    let grew = |s: &str| value(&after, s) - value(&before, s);
    assert_eq!(value(&after, "presenced_publish_total"), 3.0);
    assert_eq!(
        value(
            &after,
            "presenced_sip_responses_total{method=\"PUBLISH\",code=\"200\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "presenced_sip_responses_total{method=\"PUBLISH\",code=\"412\"}"
        ),
        1.0
    );
    assert_eq!(grew("presenced_subscribe_total"), 1.0);
    assert!(grew("presenced_notify_sent_total") >= 1.0);
    assert!(grew("presenced_core_queue_delay_seconds_count") >= 5.0);
    // Three initial PUBLISHes (no SIP-If-Match): three publications.
    assert_eq!(
        value(&after, "presenced_publications{event=\"presence\"}"),
        3.0
    );
    assert_eq!(
        value(&after, "presenced_subscriptions{event=\"presence\"}"),
        1.0
    );
    assert!(value(&after, "presenced_store_size_bytes") > 0.0);

    assert_eq!(http(addr, "GET /other HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(
        http(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        405
    );
    assert_eq!(http(addr, "garbage\r\n\r\n").0, 400);
}
