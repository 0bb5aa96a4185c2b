//! The subscription layer: deadlines instead of sweeps, nothing left behind per dialog,
//! NOTIFYs that never leave with a CSeq the disk has not reserved, answers that wait
//! for their flush without holding anyone else up. Most run on the in-memory server
//! (`presenced::testing::Pair` through `common::Sim`), where time is virtual and
//! "nothing was sent" is exact; the flush test also runs against a real daemon.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use presenced::clock::SystemClock;
use presenced::config::SyncMode;
use presenced::sip::message::Message;
use presenced::store::{Store, StoreOptions, Watcher, status};
use presenced::testing::Pair;

const ALICE: &str = "sip:alice@example.com";

fn open_pidf(note: &str) -> String {
    pidf(ALICE, "t1", "open", note)
}

#[test]
fn a_5_s_subscription_gets_its_final_notify_at_expiry_not_at_the_next_clean_period() {
    let srv = Sim::new(|c| c.clean_period = 100);
    let mut bob = srv.ua("bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(5), "");
    assert_eq!(r.status, 200);
    bob.expect_notify();
    srv.advance(Duration::from_millis(4_999));
    bob.expect_nothing();
    srv.advance(Duration::from_millis(1_000));
    let n = bob.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=timeout");
    assert_eq!(srv.pair().core().engine().resident_subscriptions(), 0);
}

#[test]
fn an_expiring_publication_changes_the_state_at_its_deadline() {
    let srv = Sim::new(|c| c.clean_period = 100);
    let mut alice = srv.ua("alice");
    let mut bob = srv.ua("bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    bob.expect_notify();
    assert_eq!(
        alice
            .publish(ALICE, None, Some(8), Some(&open_pidf("brb")))
            .status,
        200
    );
    assert!(body_str(&bob.expect_notify()).contains("brb"));
    srv.advance(Duration::from_millis(7_999));
    bob.expect_nothing();
    srv.advance(Duration::from_millis(1_000));
    let n = bob.expect_notify();
    assert!(body_str(&n).contains("closed"), "{}", body_str(&n));
}

#[test]
fn requests_without_expires_get_default_expires() {
    let srv = Sim::new(|c| c.default_expires = 120);
    let mut bob = srv.ua("bob");
    let (r, _) = bob.subscribe(ALICE, "presence", None, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(120));
    bob.expect_notify();
    let r = bob.publish(ALICE, None, None, Some(&open_pidf("x")));
    assert_eq!(r.headers.expires().unwrap(), Some(120));

    // With min_expires above 3600, a request without Expires is not refused with 423:
    // default_expires, left out of the file, moves into the allowed range.
    let file = presenced::config::Config::from_toml_str("min_expires = 4000\nmax_expires = 7200\n")
        .unwrap();
    let srv = Sim::new(|c| {
        c.min_expires = file.min_expires;
        c.max_expires = file.max_expires;
        c.default_expires = file.default_expires;
    });
    let mut bob = srv.ua("bob");
    let (r, _) = bob.subscribe(ALICE, "presence", None, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.expires().unwrap(), Some(4000));
}

/// A SUBSCRIBE over TCP connection `conn` from `port`, in the dialog of `to_tag` if any.
fn tcp_subscribe(port: u16, n: u32, to_tag: Option<&str>, expires: u32) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKt{n}x{expires}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:w{n}@example.com>;tag=f{n}\r\nTo: <sip:alice@example.com>{to_tag}\r\n\
         Call-ID: tcp{n}@test\r\nCSeq: {} SUBSCRIBE\r\nContact: <sip:w{n}@127.0.0.1:{port};transport=tcp>\r\n\
         Event: presence\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
        if expires == 0 { 2 } else { 1 }
    )
}

/// Answers every NOTIFY waiting for `to` with 200, over its connection.
fn answer_notifies(pair: &mut Pair, from: std::net::SocketAddr, conn: u64) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(sent) = pair.take(from) {
        match Message::parse(&sent.bytes) {
            Ok(Message::Request(n)) => {
                seen.push(sub_state(&n));
                pair.deliver(Pair::tcp(from, conn), &ok_for(&n));
            }
            Ok(Message::Response(r)) => seen.push(format!("{}", r.status)),
            Err(e) => panic!("unparseable: {e}"),
        }
    }
    seen
}

#[test]
fn thousands_of_tcp_subscribe_unsubscribe_cycles_leave_no_per_dialog_state() {
    let srv = Sim::new(|_| {});
    let mut pair = srv.pair();
    for n in 0..2_000u32 {
        let port = 30_000 + (n % 500) as u16;
        let from = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let conn = u64::from(n) + 1;
        pair.deliver(
            Pair::tcp(from, conn),
            tcp_subscribe(port, n, None, 300).as_bytes(),
        );
        let to_tag = {
            let sent = pair.take(from).expect("a 200");
            let Ok(Message::Response(r)) = Message::parse(&sent.bytes) else {
                panic!("expected the 200 first");
            };
            assert_eq!(r.status, 200);
            r.headers.to().unwrap().tag().unwrap().to_owned()
        };
        assert_eq!(
            answer_notifies(&mut pair, from, conn),
            ["active;expires=300"]
        );
        // A TCP subscription stays in memory for its connection while it lives.
        assert_eq!(pair.core().engine().resident_subscriptions(), 1);
        pair.deliver(
            Pair::tcp(from, conn),
            tcp_subscribe(port, n, Some(&to_tag), 0).as_bytes(),
        );
        let seen = answer_notifies(&mut pair, from, conn);
        assert_eq!(seen, ["200", "terminated;reason=timeout"]);
        assert_eq!(
            pair.core().engine().resident_subscriptions(),
            0,
            "cycle {n} left its subscription behind"
        );
    }
    assert_eq!(pair.store().subscriptions_count(), 0);
}

#[test]
fn a_notify_whose_cseq_cannot_be_reserved_does_not_leave_until_it_can() {
    let srv = Sim::new(|_| {});
    let mut bob = srv.ua("bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    let first = bob.expect_notify();
    // The next NOTIFY needs a reservation written ahead; the disk refuses it.
    {
        let mut pair = srv.pair();
        pair.store().fail_next_writes(1);
        let (now, unix) = (pair.now(), pair.unix());
        let refreshed = pair
            .core_mut()
            .refresh_watchers(ALICE, "presence", now, unix);
        assert_eq!(refreshed, Some(0), "nothing may leave unreserved");
        pair.drive();
    }
    bob.expect_nothing();
    // The next try, a second later, succeeds: the NOTIFY leaves with a CSeq the row
    // now reserves.
    srv.advance(Duration::from_secs(1));
    let n = bob.expect_notify();
    assert_eq!(cseq_of(&n), cseq_of(&first) + 1);
    let row = srv
        .pair()
        .store()
        .iter_subscriptions()
        .next()
        .unwrap()
        .unwrap();
    assert!(row.local_cseq >= cseq_of(&n), "reserved {}", row.local_cseq);
}

#[test]
fn the_retention_sweep_reads_only_the_rows_old_enough_to_go() {
    let srv = Sim::new(|c| {
        c.clean_period = 60;
        c.watchers_retention_days = 1;
    });
    let start = presenced::testing::UNIX_START;
    {
        let pair = srv.pair();
        let store = pair.store();
        for i in 0..5_000 {
            store
                .put_watcher(&Watcher {
                    presentity_uri: format!("sip:p{i}@example.com"),
                    watcher_uri: "sip:w@example.com".into(),
                    event: "presence".into(),
                    status: status::ACTIVE,
                    reason: Some("subscribe".into()),
                    inserted_time: start,
                })
                .unwrap();
        }
        for i in 0..3 {
            store
                .put_watcher(&Watcher {
                    presentity_uri: format!("sip:old{i}@example.com"),
                    watcher_uri: "sip:w@example.com".into(),
                    event: "presence".into(),
                    status: status::TERMINATED,
                    reason: Some("timeout".into()),
                    inserted_time: start,
                })
                .unwrap();
        }
    }
    let read_before = srv.pair().store().rows_read();
    srv.advance(Duration::from_secs(86_400 + 60));
    let pair = srv.pair();
    assert_eq!(pair.store().watchers_count(), 5_000, "the old ones went");
    let read = pair.store().rows_read() - read_before;
    assert!(read < 100, "the sweep read {read} rows for 3 old ones");
}

#[test]
fn a_core_built_around_an_engine_with_work_queued_carries_it_out() {
    use presenced::core::{Core, CoreConfig};
    use presenced::dispatch::Dispatcher;
    use presenced::events::package::Registry;
    use presenced::presence::{Engine, EngineConfig};
    use presenced::sip::endpoint::{Endpoint, EndpointConfig};
    use presenced::sip::message::Method;

    let store = Store::open_temporary(StoreOptions::default()).unwrap();
    let mut packages = Registry::new();
    packages.register(Arc::new(presenced::events::presence::Presence::new(
        true, false,
    )));
    let mut engine = Engine::new(store, packages, EngineConfig::default());
    let sub = "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKe1\r\n\
        Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b\r\nTo: <sip:alice@example.com>\r\n\
        Call-ID: e1@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:7000>\r\n\
        Event: presence\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n";
    let Ok(Message::Request(req)) = Message::parse(sub.as_bytes()) else {
        panic!()
    };
    let from = std::net::SocketAddr::from(([127, 0, 0, 1], 7000));
    let r = engine.handle_request(&req, &Pair::udp(from), presenced::testing::UNIX_START);
    assert_eq!(r.status, 200);
    // The engine holds the NOTIFY; a core built around it sends it at its first step.
    let dispatcher = Dispatcher::new(&[], vec![]).with_engine(
        vec![Method::Publish, Method::Subscribe],
        vec!["presence".into()],
        vec![],
    );
    let mut core = Core::new(
        Endpoint::new(EndpointConfig::default()),
        dispatcher,
        engine,
        CoreConfig::default(),
    );
    core.handle_timeout(std::time::Instant::now(), presenced::testing::UNIX_START);
    let t = core.poll_transmit().expect("the queued NOTIFY");
    assert_eq!(t.to.addr, from);
    assert!(String::from_utf8_lossy(&t.bytes).starts_with("NOTIFY "));
}

// --- durability without holding anyone up ----------------------------------------------

#[test]
fn with_sync_always_a_publish_answer_waits_for_its_flush_while_others_are_served() {
    let srv = Sim::new(|c| c.sync = SyncMode::Always);
    let alice = srv.ua("alice");
    let probe = srv.wire();
    srv.pair().hold_flushes();
    alice.peer.send(&publish_request(&alice, 1));
    assert!(srv.pair().flush_blocked(), "the PUBLISH asked for a flush");
    alice.expect_nothing();
    // Another client is served while the flush is blocked.
    probe.send(&options("UDP", probe.port(), "opt-while-flushing"));
    assert_eq!(probe.recv_response().status, 200);
    alice.expect_nothing();
    srv.pair().release_flushes();
    let r = alice.peer.recv_response();
    assert_eq!(r.status, 200);
    assert!(r.headers.sip_etag().is_some());
}

/// An initial PUBLISH for ALICE from `ua`, as wire text.
fn publish_request(ua: &Ua, n: u32) -> String {
    let port = ua.peer.port();
    let body = open_pidf("at the desk");
    format!(
        "PUBLISH {ALICE} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsync{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{ALICE}>;tag=s{n}\r\nTo: <{ALICE}>\r\nCall-ID: sync{n}@test\r\n\
         CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_daemon_with_sync_always_answers_others_while_a_publish_waits_for_the_disk() {
    // The flush thread blocks on this gate until the test lets it through.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let entered_tx = std::sync::Mutex::new(entered_tx);
    let gate = move || {
        let _ = entered_tx.lock().unwrap().send(());
        // Once the test drops its end, flushes pass freely (the final one at shutdown).
        let _ = go_rx.lock().unwrap().recv();
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.sync = SyncMode::Always;
    let handle = presenced::daemon::start_with(
        config,
        Arc::new(SystemClock),
        presenced::daemon::Options {
            before_flush: Some(Arc::new(gate)),
            ..Default::default()
        },
    )
    .unwrap();
    let srv = TestServer {
        handle,
        dir,
        clock: None,
    };
    let alice = Ua::new(srv.udp(), "alice");
    alice.peer.send(&publish_request(&alice, 2));
    entered_rx
        .recv_timeout(WAIT)
        .expect("the PUBLISH's write is being flushed");
    // The flush is blocked: another client's OPTIONS is answered meanwhile...
    let probe = UdpPeer::new(srv.udp());
    probe.send(&options("UDP", probe.port(), "opt-during-flush"));
    assert_eq!(probe.recv_response().status, 200);
    // ...and the PUBLISH's 200 has not left: it cannot, before the flush is through.
    alice.expect_nothing();
    go_tx.send(()).unwrap();
    let r = alice.peer.recv_response();
    assert_eq!(r.status, 200);
    drop(go_tx);
}
