//! Buddy lists over real sockets (RFC 4662 over RFC 4826 documents): the list is PUT
//! to the built-in XCAP server over HTTP, the owner subscribes to its service URI over
//! UDP, and every NOTIFY is taken apart the way a client would: multipart/related
//! split at its boundary, the RLMI document parsed, each instance's Content-ID matched
//! to its part.

mod common;

use std::collections::HashMap;

use common::*;
use presenced::sip::message::Request;

const JOE: &str = "sip:joe@example.com";
const LIST: &str = "sip:joe-buddies@example.com";
/// A second list of joe's (the back-end test).
const LIST2: &str = "sip:joe-work@example.com";
const SERVICES_PATH: &str = "/xcap-root/rls-services/users/sip:joe@example.com/index";
const LISTS_PATH: &str = "/xcap-root/resource-lists/users/sip:joe@example.com/index";

fn start_rls(force_active: bool) -> TestServer {
    start_rls_with(force_active, |_| {})
}

fn start_rls_with(
    force_active: bool,
    tweak: impl FnOnce(&mut presenced::config::Config),
) -> TestServer {
    start(|c| {
        c.force_active = force_active;
        c.rls = true;
        c.rls_batch_ms = 0;
        c.xcap_listen = "127.0.0.1:0".parse().unwrap();
        tweak(c);
    })
}

fn put(srv: &TestServer, path: &str, content_type: &str, doc: &str) {
    let addr = srv.handle.xcap_addr().expect("the XCAP server runs");
    let (status, _, body) = http(addr, "PUT", path, &[("Content-Type", content_type)], doc);
    assert!(
        status == 200 || status == 201,
        "PUT {path}: {status} {body}"
    );
}

fn put_services(srv: &TestServer, services: &str) {
    put(
        srv,
        SERVICES_PATH,
        "application/rls-services+xml",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">{services}</rls-services>"#
        ),
    );
}

/// The buddies service with these members, inline.
fn buddies(members: &[&str]) -> String {
    let entries: String = members
        .iter()
        .map(|m| format!(r#"<rl:entry uri="{m}"/>"#))
        .collect();
    format!(
        r#"<service uri="{LIST}"><list>{entries}</list><packages><package>presence</package></packages></service>"#
    )
}

fn user(name: &str) -> String {
    format!("sip:{name}@example.com")
}

/// One resource of a list NOTIFY: its instance state and reason, and the body its
/// instance's Content-ID points at.
#[derive(Debug)]
struct Instance {
    state: String,
    reason: Option<String>,
    body: Option<String>,
}

/// A list NOTIFY taken apart: (version, fullState, resources by URI). Panics on
/// anything RFC 4662 §5 does not allow: a missing boundary or RLMI root part, a cid
/// with no part, a part no cid refers to, a part that is not a PIDF document.
fn rlmi(req: &Request) -> (u32, bool, HashMap<String, Instance>) {
    rlmi_of(req, "application/pidf+xml", "presence")
}

/// [`rlmi`] for a list of another event package: its parts' type and root element.
fn rlmi_of(
    req: &Request,
    part_type: &str,
    part_root: &str,
) -> (u32, bool, HashMap<String, Instance>) {
    let ctype = req.headers.get("Content-Type").expect("a Content-Type");
    assert!(ctype.starts_with("multipart/related"), "{ctype}");
    assert!(ctype.contains("type=\"application/rlmi+xml\""), "{ctype}");
    let boundary = ctype
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let body = body_str(req);
    let delimiter = format!("--{boundary}");
    let mut sections: Vec<&str> = body.split(delimiter.as_str()).collect();
    assert_eq!(sections.remove(0), "", "nothing before the first part");
    assert!(
        sections.pop().unwrap().starts_with("--"),
        "a closing delimiter"
    );
    let mut parts: Vec<(String, String, String)> = sections
        .iter()
        .map(|s| {
            let (head, content) = s.trim_start_matches("\r\n").split_once("\r\n\r\n").unwrap();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let cid = header("Content-ID:")
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            (
                cid,
                header("Content-Type:"),
                content.strip_suffix("\r\n").unwrap_or(content).to_owned(),
            )
        })
        .collect();
    let (_, root_type, root) = parts.remove(0);
    assert!(root_type.starts_with("application/rlmi+xml"), "{root_type}");
    let list = presenced::xml::parse(root.as_bytes()).expect("RLMI is well-formed");
    assert_eq!(list.name(), "list");
    assert_eq!(list.ns(), "urn:ietf:params:xml:ns:rlmi");
    assert!(
        [Some(LIST), Some(LIST2)].contains(&list.attr("uri")),
        "{:?}",
        list.attr("uri")
    );
    let version = list.attr("version").unwrap().parse().unwrap();
    let full = list.attr("fullState") == Some("true");
    let mut by_cid: HashMap<String, String> = parts
        .into_iter()
        .map(|(cid, ty, content)| {
            assert_eq!(ty, part_type);
            let doc = presenced::xml::parse(content.as_bytes()).expect("each part parses");
            assert_eq!(doc.name(), part_root);
            (cid, content)
        })
        .collect();
    let mut resources = HashMap::new();
    for r in list.children().filter(|c| c.name() == "resource") {
        // No instance: state not known yet (RFC 4662 §4.5), "none" here.
        let Some(instance) = r.children().find(|c| c.name() == "instance") else {
            let none = Instance {
                state: "none".into(),
                reason: None,
                body: None,
            };
            resources.insert(r.attr("uri").unwrap().to_owned(), none);
            continue;
        };
        let body = instance.attr("cid").map(|cid| {
            by_cid
                .remove(cid)
                .unwrap_or_else(|| panic!("no part for cid {cid}"))
        });
        resources.insert(
            r.attr("uri").unwrap().to_owned(),
            Instance {
                state: instance.attr("state").unwrap().to_owned(),
                reason: instance.attr("reason").map(str::to_owned),
                body,
            },
        );
    }
    assert!(by_cid.is_empty(), "parts nothing refers to: {by_cid:?}");
    (version, full, resources)
}

fn publish(srv: &TestServer, name: &str, note: &str) {
    let mut ua = Ua::new(srv.udp(), name);
    let aor = user(name);
    let body = pidf(&aor, &format!("t-{name}"), "open", note);
    assert_eq!(ua.publish(&aor, None, Some(600), Some(&body)).status, 200);
}

fn subscribe_list(joe: &mut Ua) -> Sub {
    let (r, sub) = joe.subscribe(LIST, "presence", Some(600), "Supported: eventlist\r\n");
    assert_eq!(r.status, 200, "{:?}", r.reason);
    sub
}

#[test]
fn a_list_subscription_gets_full_state_first_then_each_change_as_a_partial_notify() {
    let srv = start_rls(true);
    put_services(
        &srv,
        &buddies(&[&user("bob"), &user("carol"), &user("dave")]),
    );
    publish(&srv, "bob", "at lunch");

    let mut joe = Ua::new(srv.udp(), "joe");
    let _sub = subscribe_list(&mut joe);
    let (version, full, resources) = rlmi(&joe.expect_notify());
    assert_eq!((version, full), (0, true));
    assert_eq!(resources.len(), 3, "{resources:?}");
    for r in resources.values() {
        assert_eq!(r.state, "active");
    }
    let bob = &resources[&user("bob")];
    assert!(bob.body.as_deref().unwrap().contains("at lunch"), "{bob:?}");

    publish(&srv, "carol", "in a meeting");
    let (version, full, resources) = rlmi(&joe.expect_notify());
    assert_eq!((version, full), (1, false));
    assert_eq!(resources.len(), 1, "only what changed: {resources:?}");
    assert!(
        resources[&user("carol")]
            .body
            .as_deref()
            .unwrap()
            .contains("in a meeting")
    );

    publish(&srv, "bob", "back");
    let (version, _, resources) = rlmi(&joe.expect_notify());
    assert_eq!(version, 2);
    assert!(
        resources[&user("bob")]
            .body
            .as_deref()
            .unwrap()
            .contains("back")
    );

    // Someone who is not in the list changes: nothing for joe.
    publish(&srv, "zed", "hello");
    srv.quiesce();
    joe.expect_nothing();
}

#[test]
fn a_list_notify_too_big_for_a_datagram_reaches_a_udp_only_subscriber_in_pieces() {
    // 150 members with 800-byte notes: a full state of about 160 kB. joe has UDP only
    // (nothing listens on TCP at his address), so one NOTIFY could never reach him.
    let srv = start_rls(true);
    let names: Vec<String> = (0..150).map(|i| format!("m{i}")).collect();
    let members: Vec<String> = names.iter().map(|n| user(n)).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    put_services(&srv, &buddies(&refs));
    let note = |n: &str, round: u32| format!("{n} round {round} {}", "x".repeat(800));
    for n in &names {
        publish(&srv, n, &note(n, 1));
    }

    let mut joe = Ua::new(srv.udp(), "joe");
    let _sub = subscribe_list(&mut joe);
    let first = joe.expect_notify();
    assert!(first.body.len() <= 65_507, "{} bytes", first.body.len());
    let (version, full, resources) = rlmi(&first);
    assert_eq!((version, full), (0, true));
    assert_eq!(resources.len(), 150, "the full state names every member");
    let mut known: HashMap<String, String> = HashMap::new();
    let absorb = |known: &mut HashMap<String, String>, resources: HashMap<String, Instance>| {
        for (uri, i) in resources {
            if i.state == "none" {
                continue;
            }
            assert_eq!(i.state, "active");
            let body = i.body.expect("an active member's document");
            assert!(known.insert(uri.clone(), body).is_none(), "{uri} twice");
        }
    };
    absorb(&mut known, resources);
    assert!(
        known.len() < 150,
        "the first piece cannot hold every document"
    );
    let mut expected = 1;
    while known.len() < 150 {
        let req = joe.expect_notify();
        assert!(req.body.len() <= 65_507);
        let (version, full, resources) = rlmi(&req);
        assert_eq!(
            (version, full),
            (expected, false),
            "the rest come as partial NOTIFYs"
        );
        expected += 1;
        absorb(&mut known, resources);
    }
    assert!(expected >= 3, "{expected} NOTIFYs");
    for (n, uri) in names.iter().zip(&members) {
        let body = &known[uri];
        assert!(
            body.contains(&format!("{n} round 1 ")),
            "{uri}: {}",
            &body[..body.len().min(600)]
        );
    }

    // After the pieces, a change comes as usual, with the next version.
    publish(&srv, "m7", "back");
    let (version, full, resources) = rlmi(&joe.expect_notify());
    assert_eq!((version, full), (expected, false));
    assert_eq!(resources.len(), 1);
    assert!(
        resources[&user("m7")]
            .body
            .as_deref()
            .unwrap()
            .contains("back")
    );
}

#[test]
fn changes_within_the_batch_window_go_out_as_one_notify() {
    // A window far longer than two PUBLISHes over loopback take.
    let srv = start_rls_with(true, |c| c.rls_batch_ms = 2_000);
    put_services(
        &srv,
        &buddies(&[&user("bob"), &user("carol"), &user("dave")]),
    );
    let mut joe = Ua::new(srv.udp(), "joe");
    subscribe_list(&mut joe);
    let (_, full, _) = rlmi(&joe.expect_notify());
    assert!(full);
    publish(&srv, "bob", "one");
    publish(&srv, "carol", "two");
    let (version, full, r) = rlmi(&joe.expect_notify());
    assert_eq!((version, full), (1, false));
    let mut uris: Vec<&String> = r.keys().collect();
    uris.sort();
    assert_eq!(uris, [&user("bob"), &user("carol")], "both in one NOTIFY");
    assert!(r[&user("carol")].body.as_deref().unwrap().contains("two"));
}

#[test]
fn a_list_needs_eventlist_support_and_its_owner() {
    let srv = start_rls(true);
    put_services(&srv, &buddies(&[&user("bob")]));
    let mut joe = Ua::new(srv.udp(), "joe");
    let (r, _) = joe.subscribe(LIST, "presence", Some(600), "");
    assert_eq!(r.status, 421);
    assert_eq!(r.headers.get("Require"), Some("eventlist"));

    let mut eve = Ua::new(srv.udp(), "eve");
    let (r, _) = eve.subscribe(LIST, "presence", Some(600), "Supported: eventlist\r\n");
    assert_eq!(r.status, 403);

    // The service offers presence only.
    let (r, _) = joe.subscribe(LIST, "dialog", Some(600), "Supported: eventlist\r\n");
    assert_eq!(r.status, 489);

    // An ordinary presentity is not a list, eventlist or not.
    let (r, _) = joe.subscribe(
        &user("bob"),
        "presence",
        Some(600),
        "Supported: eventlist\r\n",
    );
    assert_eq!(r.status, 200);
    let n = joe.expect_notify();
    assert!(
        n.headers
            .get("Content-Type")
            .unwrap()
            .starts_with("application/pidf+xml")
    );
}

#[test]
fn each_member_is_authorized_for_the_owner_by_its_own_rules() {
    let srv = start_rls(false);
    let rules = |handling: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules"><cr:rule id="r"><cr:conditions><cr:identity><cr:one id="{JOE}"/></cr:identity></cr:conditions><cr:actions><pr:sub-handling>{handling}</pr:sub-handling></cr:actions><cr:transformations><pr:provide-all-attributes/></cr:transformations></cr:rule></cr:ruleset>"#
        )
    };
    for (who, handling) in [("bob", "allow"), ("dave", "block")] {
        put(
            &srv,
            &format!("/xcap-root/pres-rules/users/sip:{who}@example.com/index"),
            "application/auth-policy+xml",
            &rules(handling),
        );
        publish(&srv, who, "here");
    }
    publish(&srv, "carol", "here");
    put_services(
        &srv,
        &buddies(&[&user("bob"), &user("carol"), &user("dave")]),
    );
    let mut joe = Ua::new(srv.udp(), "joe");
    subscribe_list(&mut joe);
    let (_, full, r) = rlmi(&joe.expect_notify());
    assert!(full);
    assert_eq!(r[&user("bob")].state, "active");
    assert!(r[&user("bob")].body.is_some());
    // No rules: carol has not decided (RFC 5025 default), and nothing of hers shows.
    assert_eq!(r[&user("carol")].state, "pending");
    assert!(r[&user("carol")].body.is_none());
    assert_eq!(r[&user("dave")].state, "terminated");
    assert_eq!(r[&user("dave")].reason.as_deref(), Some("rejected"));
    assert!(r[&user("dave")].body.is_none());

    // A blocked member's changes are not shown; they still say only "rejected".
    publish(&srv, "dave", "secret");
    let (_, _, r) = rlmi(&joe.expect_notify());
    assert!(r[&user("dave")].body.is_none());
}

#[test]
fn editing_the_list_over_xcap_adds_and_removes_members_of_a_running_subscription() {
    let srv = start_rls(true);
    put_services(&srv, &buddies(&[&user("bob"), &user("dave")]));
    publish(&srv, "erin", "new here");
    let mut joe = Ua::new(srv.udp(), "joe");
    subscribe_list(&mut joe);
    let (_, _, r) = rlmi(&joe.expect_notify());
    assert_eq!(r.len(), 2);

    put_services(&srv, &buddies(&[&user("bob"), &user("erin")]));
    let (version, full, r) = rlmi(&joe.expect_notify());
    assert_eq!((version, full), (1, false));
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[&user("erin")].state, "active");
    assert!(
        r[&user("erin")]
            .body
            .as_deref()
            .unwrap()
            .contains("new here")
    );
    assert_eq!(r[&user("dave")].state, "terminated");
    assert!(r[&user("dave")].reason.is_some());

    // The removed member's changes no longer reach the list; the added one's do.
    publish(&srv, "dave", "gone");
    publish(&srv, "erin", "still here");
    let (_, _, r) = rlmi(&joe.expect_notify());
    assert_eq!(r.keys().collect::<Vec<_>>(), [&user("erin")]);

    // The service itself goes: the list subscription ends.
    put_services(&srv, "");
    let n = joe.expect_notify();
    let state = n.headers.get("Subscription-State").unwrap();
    assert!(state.starts_with("terminated"), "{state}");
}

#[test]
fn empty_all_pending_nested_and_looping_lists_give_well_formed_notifies() {
    let srv = start_rls(false);
    put(
        &srv,
        LISTS_PATH,
        "application/resource-lists+xml",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="a"><entry uri="{}"/><list name="inner"><entry uri="{}"/></list>
    <external anchor="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22b%22%5d"/></list>
  <list name="b"><entry uri="{}"/>
    <external anchor="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22a%22%5d"/></list>
</resource-lists>"#,
            user("p1"),
            user("p2"),
            user("p3")
        ),
    );
    put_services(
        &srv,
        &format!(
            r#"<service uri="{LIST}"><resource-list>resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22a%22%5d</resource-list></service>
            <service uri="sip:joe-empty@example.com"><list/></service>"#
        ),
    );
    let mut joe = Ua::new(srv.udp(), "joe");
    // Nested and looping: p1, p2 (nested), p3 (the loop back to a is cut); nobody has
    // rules for joe, so every member is pending and no part is sent.
    subscribe_list(&mut joe);
    let (_, full, r) = rlmi(&joe.expect_notify());
    assert!(full);
    let mut uris: Vec<&String> = r.keys().collect();
    uris.sort();
    assert_eq!(uris, [&user("p1"), &user("p2"), &user("p3")]);
    assert!(r.values().all(|i| i.state == "pending" && i.body.is_none()));

    // The empty list: a full-state RLMI document with no resource.
    let (resp, _) = joe.subscribe(
        "sip:joe-empty@example.com",
        "presence",
        Some(600),
        "Supported: eventlist\r\n",
    );
    assert_eq!(resp.status, 200);
    let n = joe.expect_notify();
    let body = body_str(&n);
    assert!(body.contains("fullState=\"true\""), "{body}");
    assert!(!body.contains("<resource"), "{body}");
}

#[test]
fn list_documents_that_break_rfc_4826_get_409_with_the_xcap_error() {
    let srv = start_rls(true);
    let addr = srv.handle.xcap_addr().expect("the XCAP server runs");
    let put_raw = |path: &str, ctype: &str, doc: &str| {
        let (status, _, body) = http(addr, "PUT", path, &[("Content-Type", ctype)], doc);
        (status, body)
    };
    let (status, body) = put_raw(
        LISTS_PATH,
        "application/resource-lists+xml",
        r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry/></list></resource-lists>"#,
    );
    assert_eq!(status, 409);
    assert!(body.contains("<schema-validation-error/>"), "{body}");

    put_services(&srv, &buddies(&[&user("bob")]));
    // Another user claims joe's service URI: refused, with free alternatives.
    let (status, body) = put_raw(
        "/xcap-root/rls-services/users/sip:eve@example.com/index",
        "application/rls-services+xml",
        &format!(
            r#"<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">{}</rls-services>"#,
            buddies(&[&user("carol")])
        ),
    );
    assert_eq!(status, 409);
    assert!(body.contains("<uniqueness-failure>"), "{body}");
    assert!(
        body.contains("field=\"rls-services/service/@uri\""),
        "{body}"
    );
    assert!(
        body.contains("<alt-value>sip:joe-buddies-1@example.com</alt-value>"),
        "{body}"
    );
    // joe may rewrite his own document with the same service.
    put_services(&srv, &buddies(&[&user("carol")]));
}

#[test]
fn a_list_subscription_survives_a_restart_and_keeps_its_rlmi_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(&dir);
    cfg.rls = true;
    cfg.rls_batch_ms = 0;
    cfg.xcap_listen = "127.0.0.1:0".parse().unwrap();
    let clock: std::sync::Arc<dyn presenced::clock::Clock> =
        std::sync::Arc::new(presenced::clock::SystemClock);
    let srv = TestServer {
        handle: presenced::daemon::start(cfg.clone(), clock.clone()).unwrap(),
        dir,
        clock: None,
    };
    put_services(&srv, &buddies(&[&user("bob"), &user("carol")]));
    let mut joe = Ua::new(srv.udp(), "joe");
    subscribe_list(&mut joe);
    assert_eq!(rlmi(&joe.expect_notify()).0, 0);
    publish(&srv, "bob", "before");
    assert_eq!(rlmi(&joe.expect_notify()).0, 1);

    let TestServer { handle, dir, .. } = srv;
    handle.shutdown().unwrap();
    let srv = TestServer {
        handle: presenced::daemon::start(cfg, clock).unwrap(),
        dir,
        clock: None,
    };
    joe.peer.set_server(srv.udp());
    // Read back from its row: still a list, its NOTIFYs still counting up.
    publish(&srv, "carol", "after");
    let (version, full, r) = rlmi(&joe.expect_notify());
    assert!(!full);
    assert!(version >= 2, "version {version} after 1");
    assert!(r[&user("carol")].body.as_deref().unwrap().contains("after"));
}

#[test]
fn a_blf_list_carries_dialog_info_parts_whose_versions_rise() {
    let srv = start_rls(true);
    put_services(
        &srv,
        &format!(
            r#"<service uri="{LIST}"><list><rl:entry uri="{}"/><rl:entry uri="{}"/></list><packages><package>dialog</package></packages></service>"#,
            user("bob"),
            user("carol")
        ),
    );
    let dialog_publish = |name: &str, state: &str| {
        let mut ua = Ua::new(srv.udp(), name);
        let aor = user(name);
        let doc = format!(
            r#"<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="{aor}"><dialog id="d1" direction="recipient"><state>{state}</state></dialog></dialog-info>"#
        );
        let r = ua.publish_raw(
            &aor,
            "dialog",
            None,
            Some(600),
            Some(("application/dialog-info+xml", &doc)),
            "",
        );
        assert_eq!(r.status, 200);
    };
    dialog_publish("bob", "confirmed");
    let mut joe = Ua::new(srv.udp(), "joe");
    let (r, _) = joe.subscribe(LIST, "dialog", Some(600), "Supported: eventlist\r\n");
    assert_eq!(r.status, 200);
    let version_of = |doc: &str| -> u32 {
        let root = presenced::xml::parse(doc.as_bytes()).unwrap();
        root.attr("version").unwrap().parse().unwrap()
    };
    let (v0, full, r) = rlmi_of(
        &joe.expect_notify(),
        "application/dialog-info+xml",
        "dialog-info",
    );
    assert!(full);
    let bob0 = version_of(r[&user("bob")].body.as_deref().unwrap());
    assert!(
        r[&user("bob")]
            .body
            .as_deref()
            .unwrap()
            .contains("confirmed")
    );

    dialog_publish("bob", "terminated");
    let (v1, _, r) = rlmi_of(
        &joe.expect_notify(),
        "application/dialog-info+xml",
        "dialog-info",
    );
    let bob1 = version_of(r[&user("bob")].body.as_deref().unwrap());
    assert!(v1 > v0);
    assert!(
        bob1 > bob0,
        "dialog-info version {bob1} after {bob0}: a BLF client would drop it"
    );
}

/// A member served by a second presenced is watched through one back-end SUBSCRIBE
/// dialog of the list server's (From the list's owner), shared by both of the owner's
/// lists that name it; its NOTIFYs reach both list subscriptions, before and after the
/// second server restarts.
#[test]
fn a_remote_member_is_watched_through_one_back_end_dialog_across_its_servers_restart() {
    let bob = "sip:bob@remote.example";
    let remote_dir = tempfile::tempdir().unwrap();
    let mut remote_cfg = test_config(&remote_dir);
    remote_cfg.listen = vec![presenced::config::ListenAddr::Udp(
        "127.0.0.1:0".parse().unwrap(),
    )];
    remote_cfg.domains = vec!["remote.example".into()];
    let clock: std::sync::Arc<dyn presenced::clock::Clock> =
        std::sync::Arc::new(presenced::clock::SystemClock);
    let remote = presenced::daemon::start(remote_cfg.clone(), clock.clone()).unwrap();
    let remote_addr = remote
        .addr(presenced::sip::endpoint::TransportKind::Udp)
        .unwrap();
    let publish_bob = |at: std::net::SocketAddr, note: &str| {
        let mut ua = Ua::new(at, "bob");
        ua.aor = bob.to_owned();
        let body = pidf(bob, "t-bob", "open", note);
        assert_eq!(ua.publish(bob, None, Some(600), Some(&body)).status, 200);
    };
    publish_bob(remote_addr, "on the other server");

    let srv = start_rls_with(true, |c| {
        c.domains = vec!["example.com".into()];
        c.rls_backend_server = Some(format!("sip:{remote_addr}"));
    });
    let entries = format!(
        r#"<rl:entry uri="{bob}"/><rl:entry uri="{}"/>"#,
        user("carol")
    );
    put_services(
        &srv,
        &format!(
            r#"<service uri="{LIST}"><list>{entries}</list><packages><package>presence</package></packages></service><service uri="{LIST2}"><list>{entries}</list><packages><package>presence</package></packages></service>"#
        ),
    );
    let mut joe = Ua::new(srv.udp(), "joe");
    subscribe_list(&mut joe);
    let (_, full, first) = rlmi(&joe.expect_notify());
    assert!(full);
    // Until the other server answers, bob is pending; then his state arrives.
    let bob_state = if first[bob].state == "active" {
        first
    } else {
        assert_eq!(first[bob].state, "pending");
        rlmi(&joe.expect_notify()).2
    };
    assert_eq!(bob_state[bob].state, "active");
    assert!(
        bob_state[bob]
            .body
            .as_deref()
            .unwrap()
            .contains("on the other server"),
        "{bob_state:?}"
    );

    // The second list: bob's state at once, from the same back-end dialog.
    let (r, _) = joe.subscribe(LIST2, "presence", Some(600), "Supported: eventlist\r\n");
    assert_eq!(r.status, 200);
    let (_, _, second) = rlmi(&joe.expect_notify());
    assert!(
        second[bob]
            .body
            .as_deref()
            .unwrap()
            .contains("on the other server")
    );
    srv.quiesce();
    let remote_status = remote.status().unwrap();
    assert_eq!(
        remote_status["subscribes"], 1,
        "one back-end SUBSCRIBE for two lists: {remote_status}"
    );
    assert_eq!(srv.handle.status().unwrap()["backend_dialogs"], 1);

    // A change at the other server reaches both lists.
    publish_bob(remote_addr, "changed over there");
    for _ in 0..2 {
        let (_, full, r) = rlmi(&joe.expect_notify());
        assert!(!full);
        assert!(
            r[bob]
                .body
                .as_deref()
                .unwrap()
                .contains("changed over there"),
            "{r:?}"
        );
    }

    // The other server restarts (on the same address, its database kept): the
    // back-end dialog carries on.
    remote.shutdown().unwrap();
    remote_cfg.listen = vec![presenced::config::ListenAddr::Udp(remote_addr)];
    let remote = presenced::daemon::start(remote_cfg, clock).unwrap();
    publish_bob(remote_addr, "after its restart");
    for _ in 0..2 {
        let (_, _, r) = rlmi(&joe.expect_notify());
        assert!(
            r[bob]
                .body
                .as_deref()
                .unwrap()
                .contains("after its restart"),
            "{r:?}"
        );
    }
    drop(remote);
}

/// RFC 5367: a SUBSCRIBE carrying its own resource-lists body subscribes to an ad-hoc
/// list of those resources; unsubscribing removes the list.
#[test]
fn a_subscribe_carrying_its_own_list_gets_that_list() {
    let srv = start_rls_with(true, |c| c.rls_request_lists = true);
    publish(&srv, "bob", "carried");
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry uri="{}"/><entry uri="{}"/></list></resource-lists>"#,
        user("bob"),
        user("carol")
    );
    let mut joe = Ua::new(srv.udp(), "joe");
    let headers = |body: &str| {
        format!(
            "Supported: eventlist\r\nRequire: recipient-list-subscribe\r\n\
             Content-Type: application/resource-lists+xml\r\n\
             Content-Disposition: recipient-list\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let send = |joe: &mut Ua, call: &str, to_tag: &str, expires: u32, extra: &str| {
        let port = joe.peer.port();
        let tag = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let cseq = if to_tag.is_empty() { 1 } else { 2 };
        // The request's own Content-Length comes with `extra` when it carries a body.
        let tail = if extra.is_empty() {
            "Content-Length: 0\r\n\r\n".to_owned()
        } else {
            extra.to_owned()
        };
        joe.peer.send(&format!(
            "SUBSCRIBE sip:rls@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:joe@example.com>;tag=jt\r\nTo: <sip:rls@example.com>{tag}\r\n\
             Call-ID: {call}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:joe@127.0.0.1:{port}>\r\n\
             Event: presence\r\nExpires: {expires}\r\n{tail}"
        ));
        joe.expect_response()
    };
    let ok = send(&mut joe, "carried1", "", 600, &headers(&body));
    assert_eq!(ok.status, 200, "{:?}", ok.reason);
    let n = joe.expect_notify();
    let ctype = n.headers.get("Content-Type").unwrap();
    assert!(ctype.contains("application/rlmi+xml"), "{ctype}");
    let text = String::from_utf8_lossy(&n.body).to_string();
    assert!(text.contains("fullState=\"true\""), "{text}");
    assert!(
        text.contains(&user("bob")) && text.contains(&user("carol")),
        "{text}"
    );
    assert!(text.contains("carried"), "bob's state is in it: {text}");
    // The list is kept as a document of joe's, named after its URI.
    let service = text
        .split("uri=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert!(service.starts_with("sip:adhoc-"), "{service}");
    let name = service
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    let doc_path = format!("/xcap-root/rls-services/users/sip:joe@example.com/{name}");
    let xcap = srv.handle.xcap_addr().unwrap();
    assert_eq!(http(xcap, "GET", &doc_path, &[], "").0, 200);

    // A change of a member: a partial NOTIFY of the ad-hoc list.
    publish(&srv, "carol", "also carried");
    let partial = String::from_utf8_lossy(&joe.expect_notify().body).to_string();
    assert!(
        partial.contains("also carried") && partial.contains("fullState=\"false\""),
        "{partial}"
    );

    // Unsubscribing ends it, and the list is gone with it.
    let tag = ok.headers.to().unwrap().tag().unwrap().to_string();
    assert_eq!(send(&mut joe, "carried1", &tag, 0, "").status, 200);
    joe.expect_notify();
    srv.quiesce();
    assert_eq!(
        http(xcap, "GET", &doc_path, &[], "").0,
        404,
        "the ad-hoc list is gone"
    );

    // Refused (no Supported: eventlist): 421, and no list is left behind.
    let without_eventlist = headers(&body).replace("Supported: eventlist\r\n", "");
    assert_eq!(
        send(&mut joe, "carried3", "", 600, &without_eventlist).status,
        421
    );
    let TestServer { handle, dir, .. } = srv;
    handle.shutdown().unwrap();
    let store = presenced::store::Store::open(
        &dir.path().join("db"),
        presenced::store::StoreOptions::default(),
    )
    .unwrap();
    let adhoc: Vec<String> = store
        .iter_xcap()
        .filter_map(Result::ok)
        .map(|x| x.doc_uri)
        .filter(|u| u.contains("adhoc-"))
        .collect();
    assert!(adhoc.is_empty(), "{adhoc:?}");

    // Without the option tag's support: 420; when the server does not serve them: 403.
    let off = start_rls(true);
    let mut joe = Ua::new(off.udp(), "joe");
    let r = send(&mut joe, "carried2", "", 600, &headers(&body));
    assert_eq!(r.status, 420);
    assert_eq!(
        r.headers.get("Unsupported"),
        Some("recipient-list-subscribe")
    );
}

/// Waiting-message state is its owner's only (mwi_owner_only): a list cannot show
/// someone else's, whether the list is a document or carried in the SUBSCRIBE.
#[test]
fn a_list_shows_no_one_elses_waiting_messages() {
    let srv = start_rls_with(true, |c| c.rls_request_lists = true);
    put_services(
        &srv,
        &format!(
            r#"<service uri="{LIST}"><list><rl:entry uri="{}"/><rl:entry uri="{JOE}"/></list><packages><package>message-summary</package></packages></service>"#,
            user("bob")
        ),
    );
    let mut bob = Ua::new(srv.udp(), "bob");
    let summary = "Messages-Waiting: yes\r\nVoice-Message: 3/0\r\n";
    let r = bob.publish_raw(
        &user("bob"),
        "message-summary",
        None,
        Some(600),
        Some(("application/simple-message-summary", summary)),
        "",
    );
    assert_eq!(r.status, 200);
    let mut joe = Ua::new(srv.udp(), "joe");
    let (r, _) = joe.subscribe(
        LIST,
        "message-summary",
        Some(600),
        "Supported: eventlist\r\n",
    );
    assert_eq!(r.status, 200);
    let n = joe.expect_notify();
    let text = body_str(&n);
    let bob_at = text
        .find(&format!("uri=\"{}\"", user("bob")))
        .expect("bob listed");
    let bob_part = &text[bob_at..];
    assert!(
        bob_part.contains("state=\"terminated\"") && bob_part.contains("reason=\"rejected\""),
        "{text}"
    );
    assert!(!text.contains("3/0"), "bob's messages shown to joe: {text}");

    let body = format!(
        r#"<?xml version="1.0"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry uri="{}"/></list></resource-lists>"#,
        user("bob")
    );
    let port = joe.peer.port();
    joe.peer.send(&format!(
        "SUBSCRIBE sip:rls@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKmwiadhoc;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:joe@example.com>;tag=jm\r\nTo: <sip:rls@example.com>\r\n\
         Call-ID: mwiadhoc\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:joe@127.0.0.1:{port}>\r\n\
         Event: message-summary\r\nSupported: eventlist\r\nRequire: recipient-list-subscribe\r\n\
         Content-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(joe.expect_response().status, 403);
}
