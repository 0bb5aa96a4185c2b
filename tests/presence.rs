//! The presence engine over real sockets: PUBLISH (RFC 3903), SUBSCRIBE/NOTIFY (RFC 6665)
//! for the presence event, fan-out, NOTIFY outcomes and sweeps, asserted on the wire.

mod common;

use std::time::Duration;

use common::*;

const ALICE: &str = "sip:alice@example.com";

#[test]
fn initial_publish_gets_200_with_etag_and_expires() {
    let srv = start(|_| {});
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "hi")),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers.sip_etag().is_some_and(|e| !e.is_empty()));
    assert_eq!(r.headers.expires().unwrap(), Some(600));
}

#[test]
fn publish_without_expires_gets_the_event_default_and_long_ones_are_lowered() {
    let srv = start(|c| c.max_expires = 1800);
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish(ALICE, None, None, Some(&pidf(ALICE, "t1", "open", "")));
    assert_eq!(
        r.headers.expires().unwrap(),
        Some(1800),
        "default 3600 capped by max_expires"
    );
    let r = ua.publish(
        ALICE,
        None,
        Some(100_000),
        Some(&pidf(ALICE, "t2", "open", "")),
    );
    assert_eq!(r.headers.expires().unwrap(), Some(1800));
}

#[test]
fn publish_expires_offset_is_subtracted_from_the_answer() {
    let srv = start(|c| c.expires_offset = 10);
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish(ALICE, None, Some(600), Some(&pidf(ALICE, "t1", "open", "")));
    assert_eq!(r.headers.expires().unwrap(), Some(590));
}

#[test]
fn publish_below_min_expires_gets_423_with_min_expires() {
    let srv = start(|c| c.min_expires = 60);
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish(ALICE, None, Some(30), Some(&pidf(ALICE, "t1", "open", "")));
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.min_expires().unwrap(), Some(60));
}

#[test]
fn publish_with_unknown_etag_gets_412() {
    let srv = start(|_| {});
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish(ALICE, Some("nope"), Some(600), None);
    assert_eq!(r.status, 412);
}

#[test]
fn publish_with_unknown_or_missing_event_gets_489_with_allow_events() {
    let srv = start(|_| {});
    let mut ua = Ua::new(srv.udp(), "alice");
    let body = pidf(ALICE, "t1", "open", "");
    for event in ["bogus", ""] {
        let r = ua.publish_raw(
            ALICE,
            event,
            None,
            Some(60),
            Some(("application/pidf+xml", &body)),
            "",
        );
        assert_eq!(r.status, 489, "event {event:?}");
        assert!(r.headers.get("Allow-Events").unwrap().contains("presence"));
    }
}

#[test]
fn publish_with_wrong_content_type_gets_415_with_accept() {
    let srv = start(|_| {});
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish_raw(
        ALICE,
        "presence",
        None,
        Some(60),
        Some(("text/plain", "hello")),
        "",
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.headers.get("Accept"), Some("application/pidf+xml"));
}

#[test]
fn initial_publish_without_body_gets_400() {
    let srv = start(|_| {});
    let mut ua = Ua::new(srv.udp(), "alice");
    assert_eq!(ua.publish(ALICE, None, Some(60), None).status, 400);
}

#[test]
fn publish_with_malformed_pidf_gets_400() {
    let srv = start(|_| {});
    let mut ua = Ua::new(srv.udp(), "alice");
    let r = ua.publish(ALICE, None, Some(60), Some("<presence><tuple"));
    assert_eq!(r.status, 400);
    let r = ua.publish(ALICE, None, Some(60), Some("<foo xmlns=\"urn:x\"/>"));
    assert_eq!(r.status, 400);
}

#[test]
fn publish_with_body_over_the_limit_gets_413() {
    let srv = start(|c| c.max_body_size = 1024);
    let mut ua = Ua::new(srv.udp(), "alice");
    let big = pidf(ALICE, "t1", "open", &"x".repeat(2000));
    assert_eq!(ua.publish(ALICE, None, Some(60), Some(&big)).status, 413);
}

#[test]
fn subscribe_creates_a_dialog_and_gets_an_immediate_notify_with_current_state() {
    let srv = start(|c| c.to_tag_pref = "pz".into());
    let mut alice = Ua::new(srv.udp(), "alice");
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "at desk")),
    );
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    assert_eq!(r.status, 200);
    assert!(sub.to_tag.starts_with("pz"), "to_tag_pref: {}", sub.to_tag);
    assert_eq!(r.headers.expires().unwrap(), Some(300));
    assert!(!r.headers.contacts().unwrap().is_empty());
    let n = bob.expect_notify();
    assert_eq!(n.headers.call_id().unwrap(), sub.call_id);
    assert_eq!(n.headers.from().unwrap().tag(), Some(sub.to_tag.as_str()));
    assert_eq!(n.headers.to().unwrap().tag(), Some(sub.from_tag.as_str()));
    assert!(
        sub_state(&n).starts_with("active;expires="),
        "{}",
        sub_state(&n)
    );
    assert_eq!(
        n.headers.content_type().unwrap().unwrap().essence(),
        "application/pidf+xml"
    );
    assert!(body_str(&n).contains("at desk"));
    assert_eq!(n.headers.event().unwrap().unwrap().package, "presence");
}

#[test]
fn subscribe_with_nothing_published_gets_a_closed_document() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(300), "");
    let n = bob.expect_notify();
    assert!(body_str(&n).contains("closed"), "{}", body_str(&n));
}

#[test]
fn subscribe_with_nothing_published_gets_no_body_when_configured() {
    let srv = start(|c| c.notify_closed_when_empty = false);
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(300), "");
    let n = bob.expect_notify();
    assert!(n.body.is_empty());
    assert!(n.headers.get("Content-Type").is_none());
}

#[test]
fn publish_refresh_modify_and_remove_reach_the_watcher() {
    let srv = Sim::new(|_| {});
    let mut alice = srv.ua("alice");
    let mut bob = srv.ua("bob");
    let (_, _sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    bob.expect_notify();

    let r = alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "first")),
    );
    let etag1 = r.headers.sip_etag().unwrap().to_string();
    let n1 = bob.expect_notify();
    assert!(body_str(&n1).contains("first"));

    // Refresh: new ETag, same state, so no NOTIFY.
    let r = alice.publish(ALICE, Some(&etag1), Some(600), None);
    assert_eq!(r.status, 200);
    let etag2 = r.headers.sip_etag().unwrap().to_string();
    assert_ne!(etag1, etag2);
    bob.expect_nothing();
    // The old tag is gone.
    assert_eq!(
        alice.publish(ALICE, Some(&etag1), Some(600), None).status,
        412
    );

    // Modify.
    let r = alice.publish(
        ALICE,
        Some(&etag2),
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "second")),
    );
    let etag3 = r.headers.sip_etag().unwrap().to_string();
    let n2 = bob.expect_notify();
    assert!(body_str(&n2).contains("second") && !body_str(&n2).contains("first"));
    assert!(cseq_of(&n2) > cseq_of(&n1));

    // Remove.
    let r = alice.publish(ALICE, Some(&etag3), Some(0), None);
    assert_eq!(r.status, 200);
    let n3 = bob.expect_notify();
    assert!(body_str(&n3).contains("closed"));
    assert_eq!(
        alice.publish(ALICE, Some(&etag3), Some(600), None).status,
        412
    );
}

#[test]
fn in_dialog_refresh_gets_200_and_a_notify() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    bob.expect_notify();
    sub.cseq += 1;
    let r = bob.send_subscribe(&sub, Some(600), "");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(600));
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("active"));
}

#[test]
fn unsubscribe_gets_200_and_a_final_notify_then_the_dialog_is_gone() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    bob.expect_notify();
    sub.cseq += 1;
    assert_eq!(bob.send_subscribe(&sub, Some(0), "").status, 200);
    let n = bob.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=timeout");
    sub.cseq += 1;
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 481);
}

#[test]
fn out_of_dialog_expires_zero_is_a_fetch() {
    let srv = Sim::new(|_| {});
    let mut alice = srv.ua("alice");
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "fetched")),
    );
    let mut bob = srv.ua("bob");
    let (r, mut sub) = bob.subscribe(ALICE, "presence", Some(0), "");
    assert_eq!(r.status, 200);
    let n = bob.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=timeout");
    assert!(body_str(&n).contains("fetched"));
    // Nothing was stored: a later PUBLISH notifies nobody, a refresh is 481.
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t2", "open", "x")),
    );
    bob.expect_nothing();
    sub.cseq += 1;
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 481);
}

#[test]
fn subscribe_in_an_unknown_dialog_gets_481() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let sub = Sub {
        call_id: "nosuch@test".into(),
        from_tag: "a".into(),
        to_tag: "b".into(),
        cseq: 1,
        target: ALICE.into(),
        event: "presence".into(),
    };
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 481);
}

#[test]
fn in_dialog_subscribe_with_a_lower_cseq_gets_500() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    bob.expect_notify();
    sub.cseq = 5;
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 200);
    bob.expect_notify();
    sub.cseq = 3;
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 500);
}

#[test]
fn subscribe_expires_bounds_apply() {
    let srv = start(|c| {
        c.min_expires = 60;
        c.max_expires = 1000;
    });
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(10), "");
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.min_expires().unwrap(), Some(60));
    let (r, _) = bob.subscribe(ALICE, "presence", Some(5000), "");
    assert_eq!(r.headers.expires().unwrap(), Some(1000));
    bob.expect_notify();
    let (r, _) = bob.subscribe(ALICE, "presence", None, "");
    assert_eq!(r.headers.expires().unwrap(), Some(1000));
    bob.expect_notify();
}

#[test]
fn subscribe_accepting_nothing_we_send_gets_406() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(300), "Accept: text/plain\r\n");
    assert_eq!(r.status, 406);
    let (r, _) = bob.subscribe(ALICE, "presence", Some(300), "Accept: application/*\r\n");
    assert_eq!(r.status, 200);
    bob.expect_notify();
}

#[test]
fn subscribe_for_an_unknown_event_gets_489() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "nonsense", Some(300), "");
    assert_eq!(r.status, 489);
    assert!(r.headers.get("Allow-Events").unwrap().contains("presence"));
}

#[test]
fn event_id_keeps_subscriptions_in_one_dialog_apart() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence;id=1", Some(300), "");
    let n = bob.expect_notify();
    assert_eq!(n.headers.event().unwrap().unwrap().id(), Some("1"));
    // The same dialog with another id is not this subscription.
    sub.cseq += 1;
    sub.event = "presence;id=2".into();
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 481);
    sub.cseq += 1;
    sub.event = "presence;id=1".into();
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 200);
    bob.expect_notify();
}

#[test]
fn rebooted_watcher_resubscribing_from_the_same_contact_replaces_its_stale_subscription() {
    let srv = Sim::new(|_| {});
    let mut alice = srv.ua("alice");
    let mut bob = srv.ua("bob");
    bob.subscribe(ALICE, "presence", Some(300), "");
    bob.expect_notify();
    // New Call-ID, same contact.
    bob.subscribe(ALICE, "presence", Some(300), "");
    bob.expect_notify();
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "once")),
    );
    bob.expect_notify();
    bob.expect_nothing();
}

#[test]
fn one_publish_notifies_every_watcher_with_the_same_body() {
    let srv = start(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    let mut watchers: Vec<Ua> = (0..8)
        .map(|i| Ua::new(srv.udp(), &format!("w{i}")))
        .collect();
    for w in &mut watchers {
        w.subscribe(ALICE, "presence", Some(300), "");
        w.expect_notify();
    }
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "fan-out")),
    );
    let bodies: Vec<String> = watchers
        .iter()
        .map(|w| body_str(&w.expect_notify()))
        .collect();
    assert!(bodies[0].contains("fan-out"));
    assert!(bodies.iter().all(|b| b == &bodies[0]));
}

#[test]
fn two_devices_show_two_tuples_until_one_publication_expires() {
    let srv = start_manual(|c| c.clean_period = 5);
    let mut phone = Ua::new(srv.udp(), "alice");
    let mut laptop = Ua::new(srv.udp(), "alice");
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(3600), "");
    bob.expect_notify();
    phone.publish(
        ALICE,
        None,
        Some(60),
        Some(&pidf(ALICE, "phone", "open", "on the phone")),
    );
    bob.expect_notify();
    laptop.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "laptop", "open", "typing")),
    );
    let n = bob.expect_notify();
    let body = body_str(&n);
    assert!(
        body.contains("id=\"phone\"") && body.contains("id=\"laptop\""),
        "{body}"
    );
    srv.advance(Duration::from_secs(70));
    let n = bob.expect_notify();
    let body = body_str(&n);
    assert!(
        !body.contains("id=\"phone\"") && body.contains("id=\"laptop\""),
        "{body}"
    );
}

#[test]
fn expired_subscription_gets_a_terminated_notify_at_its_expiry() {
    let srv = start_manual(|c| c.clean_period = 5);
    let mut bob = Ua::new(srv.udp(), "bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(60), "");
    bob.expect_notify();
    srv.advance(Duration::from_secs(66));
    let n = bob.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=timeout");
    sub.cseq += 1;
    assert_eq!(bob.send_subscribe(&sub, Some(60), "").status, 481);
}

#[test]
fn notify_answered_481_ends_the_subscription() {
    let srv = Sim::new(|_| {});
    let mut alice = srv.ua("alice");
    let mut bob = srv.ua("bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    let n = bob.next_notify();
    bob.peer
        .send_bytes(&presenced::sip::message::Response::for_request(&n, 481, None).to_bytes());
    sub.cseq += 1;
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t2", "open", "y")),
    );
    bob.expect_nothing();
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 481);
}

#[test]
fn silent_udp_watcher_gets_retransmissions_on_schedule_then_its_subscription_ends() {
    // T1 = 500 ms on a manual clock: the schedule is exact and the test never sleeps.
    let srv = Sim::new(|_| {});
    let mut bob = srv.ua("bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(300), "");
    let first = bob.next_notify();
    let mut seen = 0;
    for step_ms in [500u64, 1000, 2000, 4000, 4000] {
        srv.advance(Duration::from_millis(step_ms));
        let again = bob.next_notify();
        assert_eq!(again.headers.cseq().unwrap(), first.headers.cseq().unwrap());
        seen += 1;
    }
    assert_eq!(seen, 5);
    // 64·T1 after the first send the transaction times out and the subscription ends.
    srv.advance(Duration::from_millis(32_000 - 11_500));
    // Every 4 s (T2) until then, the same NOTIFY; nothing else, no final NOTIFY after.
    while let Some(b) = bob.peer.recv_within(Duration::ZERO) {
        let Ok(presenced::sip::message::Message::Request(again)) =
            presenced::sip::message::Message::parse(&b)
        else {
            panic!("unexpected {}", String::from_utf8_lossy(&b));
        };
        assert_eq!(cseq_of(&again), cseq_of(&first));
        seen += 1;
    }
    assert_eq!(
        seen, 10,
        "retransmissions at 0.5, 1.5, 3.5, 7.5, 11.5 … 31.5 s"
    );
    sub.cseq += 1;
    assert_eq!(bob.send_subscribe(&sub, Some(300), "").status, 481);
}

#[test]
fn notifies_of_one_dialog_never_overtake_each_other() {
    let srv = Sim::new(|_| {});
    let mut alice = srv.ua("alice");
    let mut bob = srv.ua("bob");
    bob.subscribe(ALICE, "presence", Some(300), "");
    let n0 = bob.next_notify(); // not answered yet
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "one")),
    );
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t2", "open", "two")),
    );
    // Nothing new while the first is unanswered.
    bob.expect_nothing();
    bob.peer.send_bytes(&ok_for(&n0));
    let n1 = bob.expect_notify();
    assert_eq!(cseq_of(&n1), cseq_of(&n0) + 1);
    // The waiting NOTIFY carries the newest state: both publications.
    assert!(body_str(&n1).contains("two") && body_str(&n1).contains("one"));
}

#[test]
fn tcp_watcher_gets_its_notify_on_its_own_connection() {
    let srv = start(|_| {});
    let mut peer = TcpPeer::connect(srv.tcp());
    let port = peer.port();
    let subscribe = |branch: &str, cseq: u32, to_tag: &str, expires: u32| {
        format!(
            "SUBSCRIBE {ALICE} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=tf1\r\nTo: <{ALICE}>{to_tag}\r\n\
             Call-ID: tcp1@test\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:{port};transport=tcp>\r\n\
             Event: presence\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    peer.send(&subscribe("tcp1", 1, "", 300));
    let ok = peer.recv_response();
    assert_eq!(ok.status, 200);
    let tag = ok.headers.to().unwrap().tag().unwrap().to_owned();
    let notify = |peer: &mut TcpPeer| match peer.recv() {
        presenced::sip::message::Message::Request(n) => {
            assert_eq!(n.method, presenced::sip::message::Method::Notify);
            assert!(
                n.headers
                    .top_via()
                    .unwrap()
                    .transport
                    .eq_ignore_ascii_case("TCP")
            );
            peer.send_bytes(&ok_for(&n));
            n
        }
        other => panic!("expected NOTIFY, got {other:?}"),
    };
    notify(&mut peer);
    // It stays in memory for its connection while it lives, and leaves with its end.
    let resident = || srv.handle.status().unwrap()["resident_subscriptions"].clone();
    assert_eq!(resident(), 1);
    peer.send(&subscribe("tcp2", 2, &format!(";tag={tag}"), 0));
    assert_eq!(peer.recv_response().status, 200);
    assert_eq!(sub_state(&notify(&mut peer)), "terminated;reason=timeout");
    // An OPTIONS on the same connection is handled after the final NOTIFY's 200.
    peer.send(&options("TCP", port, "tcp3"));
    assert_eq!(peer.recv_response().status, 200);
    assert_eq!(resident(), 0);
}
