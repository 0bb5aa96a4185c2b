//! Event packages over real sockets: message-summary (RFC 3842), dialog (RFC 4235) and
//! dialog;sla, Event-parameter matching and Allow-Events, and a package that exists only
//! in this file, to show the engine serves any event without knowing it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use presenced::clock::SystemClock;
use presenced::events::dialog::{self as dialog_info, DIALOG_INFO_NS};
use presenced::events::package::{BodyError, EventPackage};
use presenced::sip::message::Request;

const ALICE: &str = "sip:alice@example.com";
const MWI: &str = "application/simple-message-summary";
const DIALOG: &str = "application/dialog-info+xml";
const REGISTERED: [&str; 5] = [
    "presence",
    "message-summary",
    "dialog",
    "dialog;sla",
    "presence.winfo",
];

fn content_type(req: &Request) -> String {
    req.headers.content_type().unwrap().unwrap().essence()
}

fn mwi_publish(ua: &mut Ua, etag: Option<&str>, body: &str) -> presenced::sip::message::Response {
    ua.publish_raw(
        ALICE,
        "message-summary",
        etag,
        Some(600),
        Some((MWI, body)),
        "",
    )
}

// ---- message-summary -------------------------------------------------------------

#[test]
fn mwi_owner_with_nothing_published_gets_messages_waiting_no() {
    let srv = start(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    let (r, _) = alice.subscribe(ALICE, "message-summary", Some(300), "");
    assert_eq!(r.status, 200);
    let n = alice.expect_notify();
    assert_eq!(content_type(&n), MWI);
    assert_eq!(n.headers.get("Event"), Some("message-summary"));
    assert!(
        body_str(&n).starts_with("Messages-Waiting: no"),
        "{}",
        body_str(&n)
    );
}

#[test]
fn mwi_publication_reaches_the_owner_and_every_change_notifies() {
    let srv = start(|_| {});
    let mut vm = Ua::new(srv.udp(), "voicemail");
    let mut alice = Ua::new(srv.udp(), "alice");
    alice.subscribe(ALICE, "message-summary", Some(300), "");
    alice.expect_notify();

    let first = "Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\n\
                 Voice-Message: 2/8 (0/2)\r\n";
    let r = mwi_publish(&mut vm, None, first);
    assert_eq!(r.status, 200);
    let etag = r.headers.sip_etag().unwrap().to_string();
    let n = alice.expect_notify();
    assert_eq!(content_type(&n), MWI);
    assert_eq!(body_str(&n), first);

    let second = "Messages-Waiting: no\r\nVoice-Message: 0/10 (0/2)\r\n";
    assert_eq!(mwi_publish(&mut vm, Some(&etag), second).status, 200);
    assert_eq!(body_str(&alice.expect_notify()), second);
}

#[test]
fn mwi_last_publication_wins_over_an_older_one_from_another_source() {
    let srv = start(|_| {});
    let mut vm1 = Ua::new(srv.udp(), "vm1");
    let mut vm2 = Ua::new(srv.udp(), "vm2");
    mwi_publish(
        &mut vm1,
        None,
        "Messages-Waiting: yes\r\nvoice-message: 1/0\r\n",
    );
    let newest = "Messages-Waiting: yes\r\nfax-message: 3/0\r\n";
    mwi_publish(&mut vm2, None, newest);
    let mut alice = Ua::new(srv.udp(), "alice");
    alice.subscribe(ALICE, "message-summary", Some(300), "");
    assert_eq!(body_str(&alice.expect_notify()), newest);
}

#[test]
fn mwi_subscription_by_someone_else_gets_403() {
    let srv = Sim::new(|_| {});
    let mut bob = srv.ua("bob");
    let (r, _) = bob.subscribe(ALICE, "message-summary", Some(300), "");
    assert_eq!(r.status, 403);
    bob.expect_nothing();
}

#[test]
fn mwi_subscription_by_someone_else_is_allowed_when_owner_only_is_off() {
    let srv = start(|c| c.mwi_owner_only = false);
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "message-summary", Some(300), "");
    assert_eq!(r.status, 200);
    assert!(body_str(&bob.expect_notify()).starts_with("Messages-Waiting: no"));
}

#[test]
fn mwi_publish_with_a_malformed_summary_gets_400_and_a_wrong_type_415() {
    let srv = start(|_| {});
    let mut vm = Ua::new(srv.udp(), "voicemail");
    for bad in [
        "Voice-Message: 2/8\r\n",
        "Messages-Waiting: perhaps\r\n",
        "Messages-Waiting: yes\r\nvideo-message: 1/1\r\n",
        "Messages-Waiting: yes\r\nvoice-message: two/8\r\n",
    ] {
        assert_eq!(mwi_publish(&mut vm, None, bad).status, 400, "{bad:?}");
    }
    let r = vm.publish_raw(
        ALICE,
        "message-summary",
        None,
        Some(600),
        Some(("text/plain", "Messages-Waiting: yes\r\n")),
        "",
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.headers.get("Accept"), Some(MWI));
}

// ---- dialog ----------------------------------------------------------------------

fn dialog_doc(version: u32, id: &str, state: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"{DIALOG_INFO_NS}\" version=\"{version}\" \
         state=\"full\" entity=\"{ALICE}\"><dialog id=\"{id}\" direction=\"recipient\">\
         <state>{state}</state></dialog></dialog-info>"
    )
}

fn dialog_publish(
    ua: &mut Ua,
    event: &str,
    etag: Option<&str>,
    body: &str,
) -> presenced::sip::message::Response {
    ua.publish_raw(ALICE, event, etag, Some(600), Some((DIALOG, body)), "")
}

/// (root version, state, entity, [(dialog id, dialog state)]) of a NOTIFY body.
fn dialog_view(req: &Request) -> (u32, String, String, Vec<(String, String)>) {
    assert_eq!(content_type(req), DIALOG);
    let root = dialog_info::parse(&req.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&req.body)));
    let dialogs = root
        .children()
        .filter(|c| c.is("dialog", DIALOG_INFO_NS))
        .map(|d| {
            let state = d.get_child("state", DIALOG_INFO_NS).unwrap().text();
            (d.attr("id").unwrap().to_string(), state)
        })
        .collect();
    (
        root.attr("version").unwrap().parse().unwrap(),
        root.attr("state").unwrap().to_string(),
        root.attr("entity").unwrap().to_string(),
        dialogs,
    )
}

#[test]
fn dialog_with_nothing_published_gets_an_empty_full_document_at_version_0() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "dialog", Some(300), "");
    let (version, state, entity, dialogs) = dialog_view(&bob.expect_notify());
    assert_eq!(
        (version, state.as_str(), entity.as_str()),
        (0, "full", ALICE)
    );
    assert!(dialogs.is_empty());
}

#[test]
fn dialog_publications_from_two_sources_aggregate_with_versions_rising_by_one() {
    let srv = start(|_| {});
    let mut desk = Ua::new(srv.udp(), "alice");
    let mut pbx = Ua::new(srv.udp(), "pbx");
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "dialog", Some(300), "");
    assert_eq!(dialog_view(&bob.expect_notify()).0, 0);

    let r = dialog_publish(&mut desk, "dialog", None, &dialog_doc(5, "d1", "early"));
    assert_eq!(r.status, 200);
    let desk_etag = r.headers.sip_etag().unwrap().to_string();
    let (v1, state, _, dialogs) = dialog_view(&bob.expect_notify());
    assert_eq!((v1, state.as_str()), (1, "full"));
    assert_eq!(dialogs, [("d1".into(), "early".into())]);

    dialog_publish(&mut pbx, "dialog", None, &dialog_doc(40, "p7", "confirmed"));
    let (v2, state, entity, dialogs) = dialog_view(&bob.expect_notify());
    assert_eq!((v2, state.as_str(), entity.as_str()), (2, "full", ALICE));
    assert_eq!(
        dialogs,
        [
            ("p7".into(), "confirmed".into()),
            ("d1".into(), "early".into())
        ]
    );

    // A second watcher counts its own NOTIFYs from 0.
    let mut carol = Ua::new(srv.udp(), "carol");
    carol.subscribe(ALICE, "dialog", Some(300), "");
    let (v, _, _, dialogs) = dialog_view(&carol.expect_notify());
    assert_eq!((v, dialogs.len()), (0, 2));

    dialog_publish(
        &mut desk,
        "dialog",
        Some(&desk_etag),
        &dialog_doc(6, "d1", "terminated"),
    );
    let (v3, _, _, dialogs) = dialog_view(&bob.expect_notify());
    assert_eq!(v3, 3);
    assert!(dialogs.contains(&("d1".into(), "terminated".into())));
    assert_eq!(dialog_view(&carol.expect_notify()).0, 1);
}

#[test]
fn dialog_lamp_never_shows_early_after_terminated() {
    let srv = Sim::new(|_| {});
    let mut phone = srv.ua("alice");
    let mut bob = srv.ua("bob");
    bob.subscribe(ALICE, "dialog", Some(300), "");
    let first = bob.next_notify(); // held unanswered, so later states queue behind it
    let r = dialog_publish(&mut phone, "dialog", None, &dialog_doc(1, "c1", "early"));
    let etag = r.headers.sip_etag().unwrap().to_string();
    dialog_publish(
        &mut phone,
        "dialog",
        Some(&etag),
        &dialog_doc(2, "c1", "terminated"),
    );
    bob.peer.send_bytes(&ok_for(&first));
    let mut seen = vec![dialog_view(&first)];
    // Every NOTIFY after the first, until the terminated state shows up.
    while !seen
        .last()
        .unwrap()
        .3
        .contains(&("c1".into(), "terminated".into()))
    {
        let n = bob.expect_notify();
        let view = dialog_view(&n);
        // Retransmissions of an answered NOTIFY carry its old version; skip them.
        if view.0 < seen.last().unwrap().0 + 1 {
            continue;
        }
        seen.push(view);
    }
    let versions: Vec<u32> = seen.iter().map(|v| v.0).collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
    // Nothing new follows: at most retransmissions of what was already seen.
    let last = versions.last().copied().unwrap();
    while let Some(bytes) = bob.peer.recv_within(Duration::from_millis(300)) {
        let Ok(presenced::sip::message::Message::Request(n)) =
            presenced::sip::message::Message::parse(&bytes)
        else {
            panic!("unexpected {}", String::from_utf8_lossy(&bytes));
        };
        bob.peer.send_bytes(&ok_for(&n));
        assert!(dialog_view(&n).0 <= last, "a NOTIFY after terminated");
    }
}

#[test]
fn dialog_and_dialog_sla_are_separate_packages() {
    let srv = Sim::new(|_| {});
    let mut phone = srv.ua("alice");
    let mut plain = srv.ua("bob");
    let mut shared = srv.ua("carol");
    plain.subscribe(ALICE, "dialog", Some(300), "");
    plain.expect_notify();
    shared.subscribe(ALICE, "dialog;sla", Some(300), "");
    let n = shared.expect_notify();
    assert_eq!(n.headers.get("Event"), Some("dialog;sla"));

    let r = dialog_publish(
        &mut phone,
        "dialog;sla",
        None,
        &dialog_doc(1, "line1", "confirmed"),
    );
    assert_eq!(r.status, 200);
    let n = shared.expect_notify();
    assert_eq!(n.headers.get("Event"), Some("dialog;sla"));
    let (v, _, _, dialogs) = dialog_view(&n);
    assert_eq!(
        (v, dialogs),
        (1, vec![("line1".into(), "confirmed".into())])
    );
    plain.expect_nothing();

    dialog_publish(
        &mut phone,
        "dialog",
        None,
        &dialog_doc(1, "private", "early"),
    );
    let (_, _, _, dialogs) = dialog_view(&plain.expect_notify());
    assert_eq!(dialogs, [("private".into(), "early".into())]);
    shared.expect_nothing();
}

#[test]
fn dialog_publish_with_malformed_dialog_info_gets_400() {
    let srv = start(|_| {});
    let mut phone = Ua::new(srv.udp(), "alice");
    for bad in [
        "<dialog-info",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@b\"/>",
        "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" state=\"full\" entity=\"sip:a@b\"/>",
    ] {
        assert_eq!(
            dialog_publish(&mut phone, "dialog", None, bad).status,
            400,
            "{bad}"
        );
    }
}

// ---- Event parameters and Allow-Events ---------------------------------------------

fn allow_events(r: &presenced::sip::message::Response) -> Vec<String> {
    r.headers.allow_events()
}

#[test]
fn unsupported_event_parameter_gets_489_listing_exactly_the_registered_packages() {
    let srv = Sim::new(|_| {});
    let mut bob = srv.ua("bob");
    for event in [
        "dialog;foo",
        "dialog;sla;foo",
        "presence;sla",
        "message-summary;x=1",
    ] {
        let (r, _) = bob.subscribe(ALICE, event, Some(300), "");
        assert_eq!(r.status, 489, "{event}");
        assert_eq!(allow_events(&r), REGISTERED, "{event}");
    }
    let r = dialog_publish(&mut bob, "dialog;bogus", None, &dialog_doc(1, "a", "early"));
    assert_eq!(r.status, 489);
    assert_eq!(allow_events(&r), REGISTERED);
    bob.expect_nothing();
}

#[test]
fn event_id_is_not_a_selector_parameter() {
    let srv = start(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "dialog;sla;id=7", Some(300), "");
    assert_eq!(r.status, 200);
    let n = bob.expect_notify();
    assert_eq!(n.headers.get("Event"), Some("dialog;sla;id=7"));
}

#[test]
fn options_allow_events_lists_exactly_the_registered_packages() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    peer.send(&options("UDP", peer.port(), "opt1"));
    assert_eq!(allow_events(&peer.recv_response()), REGISTERED);
}

// ---- a package defined only here -----------------------------------------------------

/// `x-tally`: each source publishes a count; watchers get the sum and their NOTIFY
/// number. Nothing in the engine knows this event. Counts its aggregations.
#[derive(Default)]
struct Tally {
    aggregations: Arc<AtomicUsize>,
}

impl EventPackage for Tally {
    fn name(&self) -> &str {
        "x-tally"
    }
    fn publish_types(&self) -> &[&str] {
        &["text/x-tally"]
    }
    fn notify_type(&self) -> &str {
        "text/x-tally"
    }
    fn validate(&self, body: &[u8]) -> Result<(), BodyError> {
        std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|_| ())
            .ok_or_else(|| BodyError("not a count".into()))
    }
    fn aggregate(&self, _resource: &str, bodies: &[&[u8]]) -> Vec<u8> {
        self.aggregations.fetch_add(1, Ordering::SeqCst);
        let sum: u64 = bodies
            .iter()
            .filter_map(|b| std::str::from_utf8(b).ok()?.trim().parse::<u64>().ok())
            .sum();
        sum.to_string().into_bytes()
    }
    fn empty_body(&self, _resource: &str) -> Option<Vec<u8>> {
        Some(b"0".to_vec())
    }
    fn max_expires(&self) -> Option<u32> {
        Some(120)
    }
    fn watcher_body(&self, shared: &[u8], version: u32) -> Option<Vec<u8>> {
        let mut b = shared.to_vec();
        b.extend_from_slice(format!(" #{version}").as_bytes());
        Some(b)
    }
}

fn start_with_tally() -> (TestServer, Arc<AtomicUsize>) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir);
    let tally = Tally::default();
    let aggregations = tally.aggregations.clone();
    let handle = presenced::daemon::start_with_packages(
        config,
        Arc::new(SystemClock),
        vec![Arc::new(tally)],
    )
    .expect("daemon starts");
    let srv = TestServer {
        handle,
        dir,
        clock: None,
    };
    (srv, aggregations)
}

fn publish_tally(ua: &mut Ua, to: &str, body: &str) -> presenced::sip::message::Response {
    ua.publish_raw(
        to,
        "x-tally",
        None,
        Some(60),
        Some(("text/x-tally", body)),
        "",
    )
}

#[test]
fn one_change_is_aggregated_once_for_all_watchers_and_not_at_all_without_watchers() {
    let (srv, aggregations) = start_with_tally();
    let mut watchers: Vec<Ua> = (0..3)
        .map(|i| Ua::new(srv.udp(), &format!("w{i}")))
        .collect();
    for w in &mut watchers {
        assert_eq!(w.subscribe(ALICE, "x-tally", Some(60), "").0.status, 200);
        assert_eq!(body_str(&w.expect_notify()), "0 #0");
    }
    let mut publisher = Ua::new(srv.udp(), "counter");

    let before = aggregations.load(Ordering::SeqCst);
    assert_eq!(publish_tally(&mut publisher, ALICE, "7").status, 200);
    for w in &mut watchers {
        assert_eq!(body_str(&w.expect_notify()), "7 #1");
    }
    assert_eq!(aggregations.load(Ordering::SeqCst) - before, 1);

    let before = aggregations.load(Ordering::SeqCst);
    let r = publish_tally(&mut publisher, "sip:nobody@example.com", "4");
    assert_eq!(r.status, 200);
    assert_eq!(aggregations.load(Ordering::SeqCst), before);
}

#[test]
fn new_watchers_of_an_unchanged_resource_share_one_aggregation_until_it_changes() {
    let (srv, aggregations) = start_with_tally();
    let mut publisher = Ua::new(srv.udp(), "counter");
    assert_eq!(publish_tally(&mut publisher, ALICE, "5").status, 200);
    let before = aggregations.load(Ordering::SeqCst);
    for i in 0..4 {
        let mut w = Ua::new(srv.udp(), &format!("n{i}"));
        assert_eq!(w.subscribe(ALICE, "x-tally", Some(60), "").0.status, 200);
        assert_eq!(body_str(&w.expect_notify()), "5 #0");
    }
    assert_eq!(aggregations.load(Ordering::SeqCst) - before, 1);
    // A change is seen by the next new watcher at once.
    assert_eq!(publish_tally(&mut publisher, ALICE, "6").status, 200);
    let mut late = Ua::new(srv.udp(), "late");
    assert_eq!(late.subscribe(ALICE, "x-tally", Some(60), "").0.status, 200);
    assert_eq!(
        body_str(&late.expect_notify()),
        "11 #0",
        "5 + 6: two publications"
    );
}

#[test]
fn a_package_defined_in_the_test_works_end_to_end_without_engine_changes() {
    let (srv, _) = start_with_tally();
    let mut a = Ua::new(srv.udp(), "counter-a");
    let mut b = Ua::new(srv.udp(), "counter-b");
    let mut bob = Ua::new(srv.udp(), "bob");

    let (r, _) = bob.subscribe(ALICE, "x-tally", Some(3600), "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.expires().unwrap(),
        Some(120),
        "the package's max_expires"
    );
    let n = bob.expect_notify();
    assert_eq!(n.headers.get("Event"), Some("x-tally"));
    assert_eq!(content_type(&n), "text/x-tally");
    assert_eq!(body_str(&n), "0 #0");

    let publish = |ua: &mut Ua, body: &str| {
        ua.publish_raw(
            ALICE,
            "x-tally",
            None,
            Some(60),
            Some(("text/x-tally", body)),
            "",
        )
    };
    assert_eq!(publish(&mut a, "2").status, 200);
    assert_eq!(body_str(&bob.expect_notify()), "2 #1");
    assert_eq!(publish(&mut b, "3").status, 200);
    assert_eq!(body_str(&bob.expect_notify()), "5 #2");
    assert_eq!(publish(&mut b, "three").status, 400);

    let peer = UdpPeer::new(srv.udp());
    peer.send(&options("UDP", peer.port(), "opt2"));
    let mut want: Vec<&str> = REGISTERED.to_vec();
    want.push("x-tally");
    assert_eq!(allow_events(&peer.recv_response()), want);
}
