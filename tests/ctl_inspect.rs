//! What an operator sees and does with `presenced ctl` on a running daemon, through the
//! real binary and control socket: `status`, `presentity list|show`, `watcher list`
//! (JSON lines, and `--table`), `publish` as the presentity (the watcher gets the
//! NOTIFY), `subscription terminate` (the watcher gets the terminated NOTIFY with the
//! reason), `cleanup`, and the errors for what cannot be done.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;

const ALICE: &str = "sip:alice@example.com";

/// `presenced ctl --db <the daemon's db> <args>`, `stdin` on standard input.
fn ctl_with(srv: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("ctl")
        .arg("--db")
        .arg(srv.dir.path().join("db"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ctl(srv: &TestServer, args: &[&str]) -> Output {
    ctl_with(srv, args, "")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("ctl prints JSON")
}

/// A listing: one JSON object per line.
fn lines(out: &Output) -> Vec<serde_json::Value> {
    ok(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn error(out: &Output) -> String {
    assert!(!out.status.success(), "ctl succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_operator_lists_publishes_and_terminates_through_ctl() {
    let srv = start_manual(|_| {});
    let mut alice = Ua::new(srv.udp(), "alice");
    let r = alice.publish(
        ALICE,
        None,
        Some(600),
        Some(&pidf(ALICE, "t1", "open", "in")),
    );
    assert_eq!(r.status, 200);
    let etag = r.headers.sip_etag().unwrap().to_owned();
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, sub) = bob.subscribe(ALICE, "presence", Some(600), "");
    assert_eq!(r.status, 200);
    bob.expect_notify();

    let list = lines(&ctl(&srv, &["presentity", "list"]));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["presentity"], ALICE);
    assert_eq!(list[0]["event"], "presence");
    assert_eq!(list[0]["publications"], 1);
    assert_eq!(list[0]["etags"][0], etag.as_str());
    assert!(lines(&ctl(&srv, &["presentity", "list", "--event", "dialog"])).is_empty());
    let show = lines(&ctl(&srv, &["presentity", "show", ALICE]));
    assert_eq!(show.len(), 1);
    assert!(
        show[0]["body"]
            .as_str()
            .unwrap()
            .contains("<basic>open</basic>")
    );
    assert_eq!(lines(&ctl(&srv, &["pres_phtable_list"])), list);

    let watchers = lines(&ctl(&srv, &["watcher", "list", ALICE]));
    assert_eq!(watchers.len(), 1, "{watchers:?}");
    let w = &watchers[0];
    assert_eq!(w["watcher"], "sip:bob@example.com");
    assert_eq!(w["status"], "active");
    assert_eq!(w["transport"], "udp");
    assert_eq!(w["call_id"], sub.call_id.as_str());
    assert_eq!(w["from_tag"], sub.from_tag.as_str());
    assert_eq!(w["to_tag"], sub.to_tag.as_str());
    assert_eq!(lines(&ctl(&srv, &["watcher", "list"])), watchers);
    assert!(lines(&ctl(&srv, &["watcher", "list", "sip:nobody@example.com"])).is_empty());
    let table = ok(&ctl(&srv, &["--table", "watcher", "list"]));
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].starts_with("presentity") && rows[0].contains("call_id"));
    assert!(rows[1].contains("sip:bob@example.com") && rows[1].contains(&sub.call_id));

    // A script publishes as Alice: Bob hears it.
    let closed = pidf(ALICE, "t2", "closed", "away");
    let done = json(&ctl_with(
        &srv,
        &["publish", ALICE, "--expires", "300"],
        &closed,
    ));
    assert_eq!(done["status"], 200);
    assert!(done["etag"].as_str().is_some_and(|e| !e.is_empty()));
    let n = bob.expect_notify();
    let body = String::from_utf8_lossy(&n.body).into_owned();
    assert!(body.contains("closed") && body.contains("open"), "{body}");
    assert_eq!(
        lines(&ctl(&srv, &["presentity", "list"]))[0]["publications"],
        2
    );

    let status = json(&ctl(&srv, &["status"]));
    assert_eq!(status["events"]["presence"]["publications"], 2);
    assert_eq!(status["events"]["presence"]["subscriptions"], 1);
    assert_eq!(status["engine"]["sync"], "periodic");
    assert!(status["engine"]["uptime_s"].is_u64());
    assert!(ok(&ctl(&srv, &["--table", "status"])).contains("uptime_s: "));

    // The operator ends Bob's subscription: a terminated NOTIFY with the reason.
    let done = json(&ctl(
        &srv,
        &[
            "subscription",
            "terminate",
            &sub.call_id,
            &sub.to_tag,
            &sub.from_tag,
            "--reason",
            "noresource",
        ],
    ));
    assert_eq!(done["watcher"], "sip:bob@example.com");
    let n = bob.expect_notify();
    assert_eq!(sub_state(&n), "terminated;reason=noresource");
    assert!(lines(&ctl(&srv, &["watcher", "list"])).is_empty());
    let e = error(&ctl(
        &srv,
        &[
            "subscription",
            "terminate",
            &sub.call_id,
            &sub.to_tag,
            &sub.from_tag,
        ],
    ));
    assert!(e.contains("no subscription"), "{e}");

    let cleaned = json(&ctl(&srv, &["cleanup"]));
    assert_eq!(cleaned["publications"], 0, "nothing is due yet");
}

#[test]
fn ctl_refuses_what_it_cannot_do_and_says_why() {
    let srv = start_manual(|_| {});
    let e = error(&ctl_with(&srv, &["publish", "not a uri"], "x"));
    assert!(e.contains("PUBLISH") || e.contains("URI"), "{e}");
    let e = error(&ctl_with(
        &srv,
        &["publish", ALICE, "--event", "no-such"],
        "x",
    ));
    assert!(e.contains("content type"), "{e}");
    let e = error(&ctl_with(
        &srv,
        &[
            "publish",
            ALICE,
            "--event",
            "no-such",
            "--content-type",
            "text/plain",
        ],
        "x",
    ));
    assert!(e.contains("489"), "{e}");
    let e = error(&ctl_with(&srv, &["publish", ALICE], "<not-pidf/>"));
    assert!(e.contains("400"), "{e}");
    let e = error(&ctl(
        &srv,
        &[
            "subscription",
            "terminate",
            "a",
            "b",
            "c",
            "--reason",
            "approved",
        ],
    ));
    assert!(e.contains("not a reason"), "{e}");
    // Nothing was stored by any of them.
    assert!(lines(&ctl(&srv, &["presentity", "list"])).is_empty());
}
