//! Memory stays bounded whatever a peer does: a client that keeps sending on a TCP
//! connection but never reads its answers is slowed down and then cut off, not
//! buffered; a subscriber that stops reading does not hold up anyone else's NOTIFYs.
//! The daemon runs as its own process so its resident size can be read.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "sip:alice@example.com";

/// How much the daemon may grow while a peer misbehaves.
const GROWTH_KIB: u64 = 24 * 1024;

#[test]
fn a_tcp_client_that_never_reads_is_cut_off_and_costs_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, udp, tcp) = spawn_daemon(&dir.path().join("db"), &[]);
    let before = rss_kib(child.id());

    let mut stream = TcpStream::connect(tcp).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let port = stream.local_addr().unwrap().port();
    // Requests as fast as the server takes them; their answers are never read. Once the
    // server stops reading, writes block; once its own write to us misses its deadline,
    // it hangs up and our writes fail.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0usize;
    let mut blocked: Option<(Instant, u64)> = None;
    let cut_off = loop {
        assert!(
            Instant::now() < deadline,
            "the server kept reading for 60 s"
        );
        let msg = options("TCP", port, &format!("flood{sent}"));
        match stream.write_all(msg.as_bytes()) {
            Ok(()) => sent += 1,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if blocked.is_none() {
                    blocked = Some((Instant::now(), rss_kib(child.id())));
                    // Everyone else is still served at once.
                    let probe = UdpPeer::new(udp);
                    probe.send(&options("UDP", probe.port(), "probe-while-flooded"));
                    assert_eq!(probe.recv_response().status, 200);
                }
            }
            Err(_) => break Instant::now(),
        }
    };
    let (since, rss) = blocked.expect("the server stopped reading before hanging up");
    let grown = rss.saturating_sub(before);
    assert!(
        grown < GROWTH_KIB,
        "{sent} unread answers grew the daemon by {grown} KiB"
    );
    assert!(
        cut_off.duration_since(since) < Duration::from_secs(20),
        "hung up {:?} after the writes blocked",
        cut_off.duration_since(since)
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn a_subscriber_that_stops_reading_holds_up_nobody_and_costs_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, udp, tcp) = spawn_daemon(&dir.path().join("db"), &[]);

    // The stuck one: subscribes over TCP, reads its 200, then never reads again.
    let mut stuck = TcpPeer::connect(tcp);
    let port = stuck.port();
    stuck.send(&format!(
        "SUBSCRIBE {ALICE} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKstuck\r\n\
         Max-Forwards: 70\r\nFrom: <sip:stuck@example.com>;tag=s1\r\nTo: <{ALICE}>\r\n\
         Call-ID: stuck@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:stuck@127.0.0.1:{port};transport=tcp>\r\n\
         Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(stuck.recv_response().status, 200);
    let mut healthy = Ua::new(udp, "healthy");
    healthy.subscribe(ALICE, "presence", Some(600), "");
    healthy.expect_notify();
    let before = rss_kib(child.id());

    // 100 state changes a second for 5 s; the healthy watcher answers each NOTIFY.
    let mut alice = Ua::new(udp, "alice");
    let start = Instant::now();
    let mut etag: Option<String> = None;
    for i in 0..500u32 {
        let due = start + Duration::from_millis(10 * u64::from(i));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            // Pacing the load generator, not synchronising with the server.
            std::thread::sleep(wait);
        }
        let body = pidf(ALICE, "t1", "open", &format!("change {i}"));
        let r = alice.publish(ALICE, etag.as_deref(), Some(600), Some(&body));
        assert_eq!(r.status, 200);
        etag = r.headers.sip_etag().map(str::to_owned);
        let n = healthy.expect_notify();
        assert!(
            body_str(&n).contains(&format!("change {i}")),
            "no lag behind the stuck one"
        );
    }
    let grown = rss_kib(child.id()).saturating_sub(before);
    assert!(
        grown < GROWTH_KIB,
        "the stuck subscriber grew the daemon by {grown} KiB"
    );
    drop(stuck);
    child.kill().unwrap();
    let _ = child.wait();
}
