//! Privacy rules over real sockets: SIP through the tests/common helpers, XCAP through a
//! tiny HTTP/1.1 client on std's TcpStream. force_active is off in every test here, so
//! the presentity's pres-rules (RFC 5025) decide, and presence.winfo (RFC 3857) shows
//! each watcher's state.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use presenced::sip::message::Request;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const RULES_PATH: &str = "/xcap-root/pres-rules/users/sip:alice@example.com/index";
const RULES_TYPE: &str = "application/auth-policy+xml";

fn start_private(tweak: impl FnOnce(&mut presenced::config::Config)) -> TestServer {
    start(|c| {
        c.force_active = false;
        c.xcap_listen = "127.0.0.1:0".parse().unwrap();
        tweak(c);
    })
}

fn xcap(srv: &TestServer) -> SocketAddr {
    srv.handle.xcap_addr().expect("the XCAP server runs")
}

fn etag(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(n, _)| n == "etag")
        .map(|(_, v)| v.clone())
        .expect("an ETag")
}

fn ruleset(rules: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">{rules}</cr:ruleset>"#
    )
}

fn rule(id: &str, conditions: &str, handling: &str, transformations: &str) -> String {
    format!(
        "<cr:rule id=\"{id}\"><cr:conditions>{conditions}</cr:conditions>\
         <cr:actions><pr:sub-handling>{handling}</pr:sub-handling></cr:actions>{transformations}</cr:rule>"
    )
}

fn identity(id: &str) -> String {
    format!("<cr:identity><cr:one id=\"{id}\"/></cr:identity>")
}

fn put_rules(srv: &TestServer, doc: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut h = vec![("Content-Type", RULES_TYPE)];
    h.extend_from_slice(headers);
    let (status, headers, _) = http(xcap(srv), "PUT", RULES_PATH, &h, doc);
    let tag = if status < 300 {
        etag(&headers)
    } else {
        String::new()
    };
    (status, tag)
}

/// A winfo NOTIFY's (version, state, [(watcher, status, event)]).
fn winfo(req: &Request) -> (u32, String, Vec<(String, String, String)>) {
    let body = body_str(req);
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[start..].split('"').next().unwrap().to_owned()
    };
    let root = body.split("<watcherinfo").nth(1).unwrap();
    let root_tag = root.split('>').next().unwrap();
    let watchers = body
        .split("<watcher ")
        .skip(1)
        .map(|w| {
            let (tag, rest) = w.split_once('>').unwrap();
            let tag = format!(" {tag}");
            let uri = rest.split('<').next().unwrap().to_owned();
            (uri, attr(&tag, "status"), attr(&tag, "event"))
        })
        .collect();
    (
        attr(&format!(" {root_tag}"), "version").parse().unwrap(),
        attr(&format!(" {root_tag}"), "state"),
        watchers,
    )
}

fn w(uri: &str, status: &str, event: &str) -> (String, String, String) {
    (uri.into(), status.into(), event.into())
}

fn two_tuples() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{ALICE}\">\
         <tuple id=\"t1\"><status><basic>open</basic></status><contact>sip:alice@10.0.0.1</contact></tuple>\
         <tuple id=\"t2\"><status><basic>open</basic></status><contact>im:alice@example.com</contact></tuple>\
         </presence>"
    )
}

#[test]
fn pending_watcher_is_approved_then_rejected_by_rules_and_winfo_sees_each_step() {
    let srv = start_private(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    assert_eq!(
        alice
            .publish(
                ALICE,
                None,
                Some(600),
                Some(&pidf(ALICE, "t1", "open", "at desk"))
            )
            .status,
        200
    );

    // The presentity watches its own watcher list: full state, version 0, empty.
    let (r, _) = alice.subscribe(ALICE, "presence.winfo", Some(600), "");
    assert_eq!(r.status, 200);
    let n = alice.expect_notify();
    assert!(sub_state(&n).starts_with("active"));
    assert_eq!(
        n.headers.get("Content-Type"),
        Some("application/watcherinfo+xml")
    );
    assert_eq!(winfo(&n), (0, "full".into(), vec![]));

    // No rule for bob: pending, an empty NOTIFY.
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 200);
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("pending"), "{}", sub_state(&n));
    assert!(n.body.is_empty());
    let n = alice.expect_notify();
    assert_eq!(
        winfo(&n),
        (1, "partial".into(), vec![w(BOB, "pending", "subscribe")])
    );

    // Alice allows bob over HTTP: bob's full NOTIFY within one second.
    let (status, tag) = put_rules(&srv, &ruleset(&rule("a", &identity(BOB), "allow", "")), &[]);
    assert_eq!(status, 201);
    let bytes = bob
        .peer
        .recv_within(Duration::from_secs(1))
        .expect("a NOTIFY within one second of the PUT");
    let Ok(presenced::sip::message::Message::Request(n)) =
        presenced::sip::message::Message::parse(&bytes)
    else {
        panic!("expected a NOTIFY")
    };
    bob.peer.send_bytes(&ok_for(&n));
    assert!(sub_state(&n).starts_with("active"), "{}", sub_state(&n));
    assert!(body_str(&n).contains("at desk"));
    let n = alice.expect_notify();
    assert_eq!(
        winfo(&n),
        (2, "partial".into(), vec![w(BOB, "active", "approved")])
    );

    // Alice now blocks bob: his subscription ends with reason=rejected.
    let (status, _) = put_rules(
        &srv,
        &ruleset(&rule("a", &identity(BOB), "block", "")),
        &[("If-Match", &tag)],
    );
    assert_eq!(status, 200);
    let n = bob.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=rejected");
    let n = alice.expect_notify();
    assert_eq!(
        winfo(&n),
        (3, "partial".into(), vec![w(BOB, "terminated", "rejected")])
    );

    // A new attempt is refused outright, and still reported.
    let (r, _) = bob.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 403);
    let n = alice.expect_notify();
    assert_eq!(winfo(&n).0, 4);

    // A refresh of the winfo subscription gets the full list again: bob was rejected,
    // so nobody is watching.
    let (r, _) = alice.subscribe(ALICE, "presence.winfo", Some(600), "");
    assert_eq!(r.status, 200);
    let n = alice.expect_notify();
    assert_eq!(winfo(&n), (0, "full".into(), vec![]));
}

#[test]
fn removing_the_rules_document_puts_an_allowed_watcher_back_to_pending() {
    let srv = start_private(|_| {});
    let (status, _) = put_rules(&srv, &ruleset(&rule("a", &identity(BOB), "allow", "")), &[]);
    assert_eq!(status, 201);
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    assert!(sub_state(&bob.expect_notify()).starts_with("active"));
    let (status, _, _) = http(xcap(&srv), "DELETE", RULES_PATH, &[], "");
    assert_eq!(status, 200);
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("pending"), "{}", sub_state(&n));
    assert!(n.body.is_empty());
}

#[test]
fn only_the_presentity_may_watch_its_watchers() {
    let srv = start_private(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence.winfo", Some(600), "");
    assert_eq!(r.status, 403);
}

#[test]
fn polite_block_is_active_with_a_neutral_document() {
    let srv = start_private(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "secret note")),
    );
    put_rules(
        &srv,
        &ruleset(&rule("p", &identity(BOB), "polite-block", "")),
        &[],
    );
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("active"));
    let body = body_str(&n);
    assert!(body.contains("<basic>closed</basic>"), "{body}");
    assert!(
        !body.contains("secret note") && !body.contains("\"t1\""),
        "{body}"
    );
}

#[test]
fn provide_services_shows_only_the_permitted_tuple_to_each_watcher() {
    let srv = start_private(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    alice.publish(ALICE, None, Some(600), Some(&two_tuples()));
    let only = |id: &str| {
        format!(
            "<cr:transformations><pr:provide-services><pr:occurrence-id>{id}</pr:occurrence-id>\
             </pr:provide-services></cr:transformations>"
        )
    };
    let rules = format!(
        "{}{}",
        rule("b", &identity(BOB), "allow", &only("t1")),
        rule(
            "c",
            &identity("sip:carol@example.com"),
            "allow",
            &only("t2")
        )
    );
    put_rules(&srv, &ruleset(&rules), &[]);
    let mut bob = Ua::new(srv.udp(), "bob");
    let mut carol = Ua::new(srv.udp(), "carol");
    bob.subscribe(ALICE, "presence", Some(600), "");
    carol.subscribe(ALICE, "presence", Some(600), "");
    let (b, c) = (
        body_str(&bob.expect_notify()),
        body_str(&carol.expect_notify()),
    );
    assert!(b.contains("\"t1\"") && !b.contains("\"t2\""), "{b}");
    assert!(c.contains("\"t2\"") && !c.contains("\"t1\""), "{c}");

    // A new publication reaches each through its own filter.
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t2", "closed", "")),
    );
    let (b, c) = (
        body_str(&bob.expect_notify()),
        body_str(&carol.expect_notify()),
    );
    assert!(!b.contains("\"t2\""), "{b}");
    assert!(c.contains("<basic>closed</basic>"), "{c}");
}

#[test]
fn validity_decides_whether_a_rule_applies_now() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let valid = |from: u64, until: u64| {
        format!(
            "{}<cr:validity><cr:from>{}</cr:from><cr:until>{}</cr:until></cr:validity>",
            identity(BOB),
            date_time(from),
            date_time(until)
        )
    };
    let srv = start_private(|_| {});
    // Valid yesterday only: no rule applies, bob waits.
    put_rules(
        &srv,
        &ruleset(&rule("v", &valid(now - 86_400, now - 3600), "allow", "")),
        &[],
    );
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    assert!(sub_state(&bob.expect_notify()).starts_with("pending"));
    // Valid around now: the same rule lets him in.
    put_rules(
        &srv,
        &ruleset(&rule("v", &valid(now - 3600, now + 3600), "allow", "")),
        &[],
    );
    assert!(sub_state(&bob.expect_notify()).starts_with("active"));
}

fn pidf_in_sphere(sphere: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{ALICE}\">\
         <tuple id=\"t1\"><status><basic>open</basic></status></tuple>\
         <dm:person id=\"p1\"><rpid:sphere>{sphere}</rpid:sphere></dm:person></presence>"
    )
}

#[test]
fn sphere_condition_follows_the_presentitys_published_sphere() {
    let srv = start_private(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    let r = alice.publish(ALICE, None, Some(600), Some(&pidf_in_sphere("work")));
    let etag = r.headers.sip_etag().unwrap().to_string();
    let cond = format!("{}<cr:sphere value=\"work\"/>", identity(BOB));
    put_rules(&srv, &ruleset(&rule("s", &cond, "allow", "")), &[]);
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    assert!(sub_state(&bob.expect_notify()).starts_with("active"));
    // Alice goes home: the work-only rule no longer applies.
    alice.publish(ALICE, Some(&etag), Some(600), Some(&pidf_in_sphere("home")));
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("pending"), "{}", sub_state(&n));
    assert!(n.body.is_empty());
}

#[test]
fn pidf_manipulation_document_shows_a_state_with_and_without_devices() {
    let srv = start_private(|c| c.pidf_manipulation = true);
    put_rules(&srv, &ruleset(&rule("a", &identity(BOB), "allow", "")), &[]);
    let permanent = pidf(ALICE, "perm", "open", "on holiday");
    let (status, _, _) = http(
        xcap(&srv),
        "PUT",
        "/xcap-root/pidf-manipulation/users/sip:alice@example.com/index",
        &[("Content-Type", "application/pidf+xml")],
        &permanent,
    );
    assert_eq!(status, 201);
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    let body = body_str(&bob.expect_notify());
    assert!(body.contains("on holiday"), "no device online: {body}");
    let mut alice = Ua::new(srv.udp(), "alice");
    alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "phone", "open", "on a call")),
    );
    let body = body_str(&bob.expect_notify());
    assert!(
        body.contains("on a call") && body.contains("on holiday"),
        "{body}"
    );
    assert!(
        body.find("on a call") < body.find("on holiday"),
        "devices first, the permanent document last: {body}"
    );
}

#[test]
fn refresh_watchers_on_the_control_channel_re_evaluates_at_once() {
    let srv = start_private(|_| {});
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    assert!(sub_state(&bob.expect_notify()).starts_with("pending"));
    assert!(srv.handle.refresh_watchers(ALICE, "presence"));
    // Nothing changed: a pending watcher hears nothing.
    srv.quiesce();
    bob.expect_nothing();
    put_rules(&srv, &ruleset(&rule("a", &identity(BOB), "allow", "")), &[]);
    assert!(sub_state(&bob.expect_notify()).starts_with("active"));
    assert!(srv.handle.refresh_watchers(ALICE, "presence"));
    assert!(sub_state(&bob.expect_notify()).starts_with("active"));
}

#[test]
fn xcap_server_checks_documents_and_preconditions() {
    let srv = start_private(|_| {});
    let addr = xcap(&srv);
    let doc = ruleset(&rule("a", &identity(BOB), "allow", ""));
    let (status, _, body) = http(
        addr,
        "PUT",
        RULES_PATH,
        &[("Content-Type", RULES_TYPE)],
        "<cr:ruleset",
    );
    assert_eq!(status, 409);
    assert!(body.contains("not-well-formed"), "{body}");
    let wrong = "<ruleset xmlns=\"urn:example:not-policy\"/>";
    let (status, _, body) = http(addr, "PUT", RULES_PATH, &[], wrong);
    assert_eq!(status, 409);
    assert!(body.contains("schema-validation-error"), "{body}");
    assert_eq!(http(addr, "GET", RULES_PATH, &[], "").0, 404);
    let (status, tag) = put_rules(&srv, &doc, &[("If-None-Match", "*")]);
    assert_eq!(status, 201);
    assert_eq!(put_rules(&srv, &doc, &[("If-None-Match", "*")]).0, 412);
    assert_eq!(put_rules(&srv, &doc, &[("If-Match", "\"nope\"")]).0, 412);
    let (status, headers, body) = http(addr, "GET", RULES_PATH, &[], "");
    assert_eq!((status, etag(&headers)), (200, tag.clone()));
    assert_eq!(body, doc);
    assert_eq!(
        http(addr, "GET", RULES_PATH, &[("If-None-Match", &tag)], "").0,
        304
    );
    assert_eq!(
        http(addr, "DELETE", RULES_PATH, &[("If-Match", "\"x\"")], "").0,
        412
    );
    assert_eq!(
        http(addr, "DELETE", RULES_PATH, &[("If-Match", &tag)], "").0,
        200
    );
    assert_eq!(http(addr, "GET", RULES_PATH, &[], "").0, 404);
    let big = format!(
        "<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\">{}</ruleset>",
        " ".repeat(70_000)
    );
    assert_eq!(http(addr, "PUT", RULES_PATH, &[], &big).0, 413);
    let (status, _, caps) = http(addr, "GET", "/xcap-root/xcap-caps/global/index", &[], "");
    assert_eq!(status, 200);
    assert!(caps.contains("<auid>pres-rules</auid>"));
}

#[test]
fn force_active_default_runs_no_xcap_server() {
    let srv = start(|_| {});
    assert_eq!(srv.handle.xcap_addr(), None);
}

#[test]
fn a_restore_that_approves_a_pending_watcher_tells_the_winfo_subscriber_at_once() {
    use presenced::dump::{self, DumpOptions, RestoreOptions};
    use presenced::mgmt::{self, client::Client};
    use presenced::store::{Store, StoreOptions, Xcap, xcap};

    let srv = start_private(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    let (r, _) = alice.subscribe(ALICE, "presence.winfo", Some(600), "");
    assert_eq!(r.status, 200);
    alice.expect_notify();
    let mut bob = Ua::new(srv.udp(), "bob");
    bob.subscribe(ALICE, "presence", Some(600), "");
    assert!(sub_state(&bob.expect_notify()).starts_with("pending"));
    let (_, _, watchers) = winfo(&alice.expect_notify());
    assert_eq!(watchers, [w(BOB, "pending", "subscribe")]);

    // A dump holding only Alice's pres-rules, which allow Bob.
    let src_dir = tempfile::tempdir().unwrap();
    let src = Store::open(src_dir.path(), StoreOptions::default()).unwrap();
    src.put_xcap(&Xcap {
        username: "alice".into(),
        domain: "example.com".into(),
        doc_type: xcap::doc_type::PRES_RULES,
        doc_uri: RULES_PATH.into(),
        doc: ruleset(&rule("a", &identity(BOB), "allow", "")).into_bytes(),
        etag: "restored".into(),
        source: xcap::source::INTEGRATED,
        port: 0,
    })
    .unwrap();
    let mut sql = Vec::new();
    dump::write_dump(&src, &mut sql, &DumpOptions::default(), &mut || Ok(())).unwrap();
    drop(src);

    let sock = mgmt::socket_path(&srv.dir.path().join("db"), None);
    Client::connect(&sock)
        .unwrap()
        .restore(&RestoreOptions::default(), &mut &sql[..])
        .unwrap();
    // With no other request, both hear of it at once: Bob is active, and Alice's
    // watcher list shows him approved. Bob does not answer, so nothing reaches the
    // daemon after the restore that could carry a stalled NOTIFY out by accident.
    assert!(sub_state(&bob.next_notify()).starts_with("active"));
    let (_, _, watchers) = winfo(&alice.expect_notify());
    assert!(
        watchers.contains(&w(BOB, "active", "approved")),
        "{watchers:?}"
    );
}
