//! OpenSIPS's management commands `refreshWatchers` and `refreshXcapDoc` as an operator
//! uses them: `presenced ctl ...` over the daemon's real control socket. A pres-rules
//! rule whose validity (RFC 4745 §7.3) starts later is the change that nothing but a
//! refresh brings into effect: the daemon runs on a manual clock that the test moves
//! past the rule's start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use presenced::clock::Clock;

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";
const RULES_PATH: &str = "/xcap-root/pres-rules/users/sip:alice@example.com/index";

fn start_private() -> TestServer {
    start_manual(|c| {
        c.force_active = false;
        c.xcap_listen = "127.0.0.1:0".parse().unwrap();
    })
}

/// `presenced ctl --db <the daemon's db> <args>`.
fn ctl(srv: &TestServer, args: &[&str]) -> Output {
    let db = srv.dir.path().join("db");
    Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("ctl")
        .arg("--db")
        .arg(&db)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The JSON a successful command prints.
fn answer(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "ctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ctl prints JSON")
}

/// The message a failed command prints.
fn error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "ctl succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn date_time_formats_known_instants() {
    assert_eq!(date_time(0), "1970-01-01T00:00:00Z");
    assert_eq!(date_time(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(date_time(1_700_000_000), "2023-11-14T22:13:20Z");
}

/// Alice's pres-rules: bob is allowed from `from` to `until` (Unix seconds), written
/// through the built-in XCAP server.
fn allow_bob_between(srv: &TestServer, from: u64, until: u64) {
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" \
         xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\"><cr:rule id=\"later\"><cr:conditions>\
         <cr:identity><cr:one id=\"{BOB}\"/></cr:identity>\
         <cr:validity><cr:from>{}</cr:from><cr:until>{}</cr:until></cr:validity>\
         </cr:conditions><cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>\
         </cr:rule></cr:ruleset>",
        date_time(from),
        date_time(until)
    );
    let addr = srv.handle.xcap_addr().expect("the XCAP server runs");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "PUT {RULES_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/auth-policy+xml\r\nContent-Length: {}\r\n\r\n{doc}",
        doc.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
}

/// Alice publishes, a rule lets bob in from a minute from now, bob subscribes and
/// waits (pending). Returns bob.
fn bob_pending_on_a_rule_starting_in_a_minute(srv: &TestServer) -> Ua {
    let now = srv.clock.as_ref().unwrap().unix_now();
    let mut alice = Ua::new(srv.udp(), "alice");
    let r = alice.publish(
        ALICE,
        None,
        Some(3600),
        Some(&pidf(ALICE, "t1", "open", "in")),
    );
    assert_eq!(r.status, 200);
    allow_bob_between(srv, now + 60, now + 3600);
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe(ALICE, "presence", Some(3600), "");
    assert_eq!(r.status, 200);
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("pending"), "{}", sub_state(&n));
    bob
}

#[test]
fn refresh_watchers_brings_a_rule_that_became_valid_into_effect() {
    let srv = start_private();
    let bob = bob_pending_on_a_rule_starting_in_a_minute(&srv);

    // Before the rule applies, a refresh changes nothing and sends nothing.
    let a = answer(&ctl(&srv, &["refreshWatchers", ALICE, "presence"]));
    assert_eq!(a["notifies"], 0, "{a}");

    srv.advance(Duration::from_secs(120));
    // Time alone re-evaluates nothing: after a round trip through the core loop, bob
    // has heard nothing; the refresh is what lets him in.
    srv.settle();
    assert!(bob.peer.recv_within(Duration::ZERO).is_none());
    let a = answer(&ctl(&srv, &["refreshWatchers", ALICE, "presence"]));
    assert_eq!(a["notifies"], 1, "{a}");
    assert_eq!(a["fetching"], false, "{a}");
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("active"), "{}", sub_state(&n));
    assert!(body_str(&n).contains("<note>in</note>"), "{}", body_str(&n));
}

#[test]
fn refresh_watchers_for_an_unknown_event_is_an_error_naming_it() {
    let srv = start_private();
    let e = error(&ctl(&srv, &["refreshWatchers", ALICE, "no-such-event"]));
    assert!(e.contains("unknown event \"no-such-event\""), "{e}");
}

#[test]
fn refresh_xcap_doc_re_evaluates_the_documents_owner() {
    let srv = start_private();
    let bob = bob_pending_on_a_rule_starting_in_a_minute(&srv);
    srv.advance(Duration::from_secs(120));
    let port = srv.handle.xcap_addr().unwrap().port().to_string();
    let a = answer(&ctl(&srv, &["refreshXcapDoc", RULES_PATH, &port]));
    assert_eq!(a["notifies"], 1, "{a}");
    let n = bob.expect_notify();
    assert!(sub_state(&n).starts_with("active"), "{}", sub_state(&n));
    // Port 0 matches the document wherever it came from; bob is already active, so
    // he hears the current state again.
    let a = answer(&ctl(&srv, &["refreshXcapDoc", RULES_PATH, "0"]));
    assert_eq!(a["notifies"], 1, "{a}");
    assert!(sub_state(&bob.expect_notify()).starts_with("active"));
}

#[test]
fn refresh_xcap_doc_of_a_document_not_held_is_an_error_naming_it() {
    let srv = start_private();
    let missing = "/xcap-root/pres-rules/users/sip:nobody@example.com/index";
    let e = error(&ctl(&srv, &["refreshXcapDoc", missing, "0"]));
    assert!(e.contains(&format!("no XCAP document {missing}")), "{e}");

    allow_bob_between(&srv, 0, 1);
    let wrong_port = (srv.handle.xcap_addr().unwrap().port() ^ 1).to_string();
    let e = error(&ctl(&srv, &["refreshXcapDoc", RULES_PATH, &wrong_port]));
    assert!(e.contains(&format!("on port {wrong_port}")), "{e}");
}

#[test]
fn ctl_refresh_commands_check_their_arguments() {
    let srv = start_private();
    let e = error(&ctl(&srv, &["refreshXcapDoc", RULES_PATH, "port"]));
    assert!(e.contains("port"), "{e}");
    let e = error(&ctl(&srv, &["refreshWatchers", ALICE]));
    assert!(e.contains("event"), "{e}");
}

/// A MESSAGE from `from` to `to` over UDP; its final answer's status.
fn message(srv: &TestServer, from: &str, to: &str) -> u16 {
    let peer = UdpPeer::new(srv.udp());
    let msg = request(
        "MESSAGE",
        to,
        "UDP",
        peer.port(),
        &format!("m{from}"),
        "",
        "hi",
    )
    .replace("<sip:tester@example.com>", &format!("<{from}>"))
    .replace(
        "Content-Length: 2",
        "Content-Type: text/plain\r\nContent-Length: 2",
    );
    peer.send(&msg);
    peer.recv_response().status
}

#[test]
fn messages_are_authorized_by_the_recipients_im_rules_over_sip_and_ctl() {
    let srv = start(|c| {
        c.authorize_messages = true;
        c.xcap_listen = "127.0.0.1:0".parse().unwrap();
    });
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">
 <rule id="friends"><conditions><identity><one id="{BOB}"/></identity></conditions>
  <actions><im:im-handling>allow</im:im-handling></actions></rule>
 <rule id="pest"><conditions><identity><one id="sip:smith@example.com"/></identity></conditions>
  <actions><im:im-handling>block</im:im-handling></actions></rule>
</ruleset>"#
    );
    let addr = srv.handle.xcap_addr().expect("the XCAP server runs");
    let (status, _, body) = http(
        addr,
        "PUT",
        "/xcap-root/im-rules/users/sip:alice@example.com/im-rules.xml",
        &[("Content-Type", "application/auth-policy+xml")],
        &doc,
    );
    assert_eq!(status, 201, "{body}");

    // Allowed: through the check, then 480 (presenced delivers no messages).
    assert_eq!(message(&srv, BOB, ALICE), 480);
    assert_eq!(message(&srv, "sip:smith@example.com", ALICE), 403);
    assert_eq!(
        message(&srv, "sip:stranger@example.com", ALICE),
        403,
        "no rule: block"
    );
    // Carol has no im-rules: no policy, nobody blocked.
    assert_eq!(
        message(&srv, "sip:smith@example.com", "sip:carol@example.com"),
        480
    );

    let decision = |from: &str, to: &str| {
        answer(&ctl(&srv, &["authorize-message", from, to]))["decision"].clone()
    };
    assert_eq!(decision(BOB, ALICE), "allow");
    assert_eq!(decision("sip:smith@example.com", ALICE), "block");
    assert_eq!(
        decision("sip:smith@example.com", "sip:carol@example.com"),
        "allow"
    );
    assert!(error(&ctl(&srv, &["authorize-message", BOB, "not-an-aor"])).contains("not a user"));
}

#[test]
fn without_authorize_messages_a_message_gets_405() {
    let srv = start(|_| {});
    assert_eq!(message(&srv, BOB, ALICE), 405);
}
