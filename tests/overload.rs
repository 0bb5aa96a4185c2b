//! Overload control: when the core loop falls behind, new work is refused early with
//! 503 and Retry-After (RFC 3261 §21.5.4) while work under way is still served, so what
//! was accepted completes instead of everything slowing down. Runs on the in-memory
//! server, where the queueing delay the daemon measures is set by the test.

mod common;

use std::time::Duration;

use common::*;

const ALICE: &str = "sip:alice@example.com";

#[test]
fn behind_the_server_refuses_new_work_and_serves_work_under_way() {
    let srv = Sim::new(|_| {});
    let mut alice = srv.ua("alice");
    let mut bob = srv.ua("bob");
    let r = alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "a")),
    );
    let etag = r.headers.sip_etag().unwrap().to_owned();
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(600), "");
    bob.expect_notify();

    // Messages waited 300 ms in the queue: the core loop is behind.
    srv.pair()
        .core_mut()
        .queue_delay(Duration::from_millis(300));
    let mut carol = srv.ua("carol");
    let (r, _) = carol.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("Retry-After"), Some("1"));
    carol.expect_nothing();
    let r = carol.publish(
        "sip:carol@example.com",
        None,
        Some(600),
        Some(&pidf("sip:carol@example.com", "t1", "open", "c")),
    );
    assert_eq!(r.status, 503);
    // Work under way goes on: a refresh in an existing dialog, a publication's
    // modification, and the NOTIFYs they cause.
    sub.cseq += 1;
    assert_eq!(bob.send_subscribe(&sub, Some(600), "").status, 200);
    bob.expect_notify();
    let r = alice.publish(
        ALICE,
        Some(&etag),
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "b")),
    );
    assert_eq!(r.status, 200);
    assert!(body_str(&bob.expect_notify()).contains(">b<"));
    assert_eq!(srv.pair().core().shed(), 2);

    // Caught up: new work is taken again.
    srv.pair().core_mut().queue_delay(Duration::from_millis(5));
    let (r, _) = carol.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 200);
}

/// Over a real socket: a burst of new requests far faster than the core loop handles
/// them fills its queue; what does not fit is answered 503 with Retry-After at once,
/// not dropped into a retransmission storm, and no request is told both 503 and 200.
#[test]
fn a_burst_that_fills_the_new_work_queue_gets_503s_not_silence() {
    use presenced::clock::ManualClock;
    use presenced::sip::message::Message;
    use std::collections::HashMap;
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    // One source on purpose, without the per-source rate limit (tests/limits.rs): this
    // is about the queue.
    let mut config = test_config(&dir);
    config.max_requests_per_source = 0;
    let handle = presenced::daemon::start(config, Arc::new(ManualClock::new())).unwrap();
    let srv = handle
        .addr(presenced::sip::endpoint::TransportKind::Udp)
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    for i in 0..20_000 {
        sock.send_to(options("UDP", port, &format!("burst{i}")).as_bytes(), srv)
            .unwrap();
    }
    // Probe until one is served: then every burst request that reached the server has
    // had its answer sent (refusals leave at once, queued ones ahead of the probe).
    let mut answers: HashMap<String, Vec<u16>> = HashMap::new();
    let mut refused = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 65_536];
    'probing: for n in 0.. {
        let probe = format!("probe{n}");
        sock.send_to(options("UDP", port, &probe).as_bytes(), srv)
            .unwrap();
        loop {
            assert!(Instant::now() < deadline, "no probe served within 60 s");
            sock.set_read_timeout(Some(WAIT)).unwrap();
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                continue 'probing;
            };
            let Ok(Message::Response(r)) = Message::parse(&buf[..len]) else {
                panic!("not a response");
            };
            let call_id = r.headers.get("Call-ID").unwrap_or_default().to_owned();
            match r.status {
                200 => {}
                503 => {
                    refused += 1;
                    assert_eq!(r.headers.get("Retry-After"), Some("1"));
                }
                other => panic!("unexpected {other}"),
            }
            answers.entry(call_id.clone()).or_default().push(r.status);
            if call_id == format!("{probe}@test") {
                if r.status == 200 {
                    break 'probing;
                }
                continue 'probing;
            }
        }
    }
    assert!(
        refused > 0,
        "the queue never filled: the burst proves nothing"
    );
    for (call_id, statuses) in &answers {
        assert!(
            !(statuses.contains(&200) && statuses.contains(&503)),
            "{call_id} was told both: {statuses:?}"
        );
    }
    handle.shutdown().unwrap();
}
