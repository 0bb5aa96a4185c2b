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
