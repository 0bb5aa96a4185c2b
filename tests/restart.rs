//! State survives restarts: graceful (SIGTERM, in-process shutdown) and abrupt (`kill -9`
//! with sync = "always"). Subscriptions keep working in their old dialogs, NOTIFY CSeqs
//! keep rising, and rows that expired while the daemon was down are swept with NOTIFYs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use presenced::clock::{Clock, ManualClock};
use presenced::daemon;

const ALICE: &str = "sip:alice@example.com";

fn restart_keeps_state(sig: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (mut child, addr) = spawn_binary(&db, extra);
    let mut alice = Ua::new(addr, "alice");
    let r = alice.publish(
        ALICE,
        None,
        Some(3600),
        Some(&pidf(ALICE, "t1", "open", "first")),
    );
    let mut etag = r.headers.sip_etag().expect("an etag").to_string();
    let mut bob = Ua::new(addr, "bob");
    let (_, mut sub) = bob.subscribe(ALICE, "presence", Some(3600), "");
    let mut n1 = bob.expect_notify();
    // More NOTIFYs than one CSeq reservation covers (counters.rs), so the row's CSeq is
    // neither the first value nor the last one sent.
    for i in 0..70 {
        let note = if i == 69 {
            "before restart"
        } else {
            "changing"
        };
        let r = alice.publish(
            ALICE,
            Some(&etag),
            Some(3600),
            Some(&pidf(ALICE, "t1", "open", note)),
        );
        assert_eq!(r.status, 200);
        etag = r.headers.sip_etag().expect("an etag").to_string();
        let n = bob.expect_notify();
        assert!(cseq_of(&n) > cseq_of(&n1));
        n1 = n;
    }
    assert!(body_str(&n1).contains("before restart"));
    signal(&child, sig);
    let status = child.wait().unwrap();
    if sig == "-TERM" {
        assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    }

    let (mut child, addr) = spawn_binary(&db, extra);
    bob.peer.set_server(addr);
    sub.cseq += 1;
    let r = bob.send_subscribe(&sub, Some(3600), "");
    assert_eq!(r.status, 200, "in-dialog refresh of an old dialog");
    let n2 = bob.expect_notify();
    assert!(cseq_of(&n2) > cseq_of(&n1), "NOTIFY CSeq keeps rising");
    if sig == "-TERM" {
        // A clean stop writes the exact counters back: no jump.
        assert_eq!(cseq_of(&n2), cseq_of(&n1) + 1);
    }
    assert!(
        body_str(&n2).contains("before restart"),
        "publication survived"
    );
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigterm_restart_keeps_publications_and_subscriptions() {
    restart_keeps_state("-TERM", &[]);
}

#[test]
fn kill_9_with_sync_always_keeps_publications_and_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("presenced.toml");
    std::fs::write(&cfg, "sync = \"always\"\n").unwrap();
    restart_keeps_state("-KILL", &["--config", cfg.to_str().unwrap()]);
}

#[test]
fn rows_that_expired_while_down_are_swept_with_their_notifies_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let dynclock: Arc<dyn Clock> = Arc::new(clock.clone());
    let mut cfg = test_config(&dir);
    cfg.clean_period = 3600;
    let handle = daemon::start(cfg.clone(), dynclock.clone()).unwrap();
    let srv = handle
        .addr(presenced::sip::endpoint::TransportKind::Udp)
        .unwrap();
    let mut alice = Ua::new(srv, "alice");
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "short")),
    );
    let mut bob = Ua::new(srv, "bob");
    bob.subscribe(ALICE, "presence", Some(3000), "");
    bob.expect_notify();
    let mut carol = Ua::new(srv, "carol");
    carol.subscribe(ALICE, "presence", Some(100), "");
    carol.expect_notify();
    handle.shutdown().unwrap();

    clock.advance(Duration::from_secs(700));
    let handle = daemon::start(cfg, dynclock).unwrap();
    let srv = handle
        .addr(presenced::sip::endpoint::TransportKind::Udp)
        .unwrap();
    carol.peer.set_server(srv);
    bob.peer.set_server(srv);
    // Carol's subscription expired while down: a final NOTIFY, not silence.
    let n = carol.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=timeout");
    // Alice's publication expired too: Bob hears the new (closed) state.
    let n = bob.expect_notify();
    assert!(body_str(&n).contains("closed"), "{}", body_str(&n));
}
