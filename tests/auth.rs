//! Who may publish and watch what, over real UDP sockets: digest challenges and their
//! answers (MD5, SHA-256), wrong passwords, replayed nonce counts, stale nonces, owner
//! checks for PUBLISH, winfo and message-summary, delegates, and trusted proxies.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use presenced::auth::digest;
use presenced::clock::{Clock, ManualClock};
use presenced::config::{AuthMode, Config};
use presenced::daemon;
use presenced::sip::header::AuthValue;
use presenced::sip::message::Response;
use presenced::store::{Store, StoreOptions, Subscriber};

const ALICE: &str = "sip:alice@example.com";
const BOB: &str = "sip:bob@example.com";

/// A digest server on a manual clock with accounts alice/wonderland and bob/builder.
fn server(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(&dir);
    {
        let store = Store::open(&c.db, StoreOptions::default()).unwrap();
        for (user, pw) in [
            ("alice", "wonderland"),
            ("bob", "builder"),
            ("vm", "voicemail"),
        ] {
            store
                .put_subscriber(&Subscriber::with_password(user, "example.com", pw))
                .unwrap();
        }
    }
    c.auth = Some(AuthMode::Digest);
    tweak(&mut c);
    let clock = ManualClock::new();
    let dynclock: Arc<dyn Clock> = Arc::new(clock.clone());
    let handle = daemon::start(c, dynclock).expect("daemon starts");
    TestServer {
        handle,
        dir,
        clock: Some(clock),
    }
}

fn challenge(r: &Response, nth: usize) -> AuthValue {
    let v = r
        .headers
        .get_all("WWW-Authenticate")
        .nth(nth)
        .expect("a challenge");
    AuthValue::parse(v).unwrap()
}

fn creds(ch: &AuthValue, user: &str, pw: &str, method: &str, uri: &str, nc: u32) -> String {
    let a = digest::answer(ch, user, pw, method, uri, nc, "0a4f113b").unwrap();
    format!("Authorization: {a}\r\n")
}

fn pidf_of(who: &str) -> String {
    pidf(who, "t1", "open", "here")
}

/// Publishes with credentials answering `ch`.
fn publish_with(ua: &mut Ua, to: &str, auth: &str) -> Response {
    let body = pidf_of(to);
    ua.publish_raw(
        to,
        "presence",
        None,
        Some(60),
        Some(("application/pidf+xml", &body)),
        auth,
    )
}

#[test]
fn an_unauthenticated_publish_is_challenged_then_accepted_with_md5_or_sha256() {
    let s = server(|_| {});
    let mut alice = Ua::new(s.udp(), "alice");
    let r = publish_with(&mut alice, ALICE, "");
    assert_eq!(r.status, 401);
    let offers: Vec<_> = r.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(offers.len(), 2, "{offers:?}");
    for (nth, alg) in [(0, "SHA-256"), (1, "MD5")] {
        let ch = challenge(&r, nth);
        assert_eq!(ch.param("algorithm"), Some(alg));
        assert_eq!(ch.param("realm"), Some("example.com"));
        assert_eq!(ch.param("qop"), Some("auth"));
        let nc = nth as u32 + 1;
        let ok = publish_with(
            &mut alice,
            ALICE,
            &creds(&ch, "alice", "wonderland", "PUBLISH", ALICE, nc),
        );
        assert_eq!(ok.status, 200, "{alg}: {}", ok.reason);
        assert!(ok.headers.sip_etag().is_some());
    }
}

#[test]
fn a_wrong_password_gets_the_same_401_as_an_unknown_user() {
    let s = server(|_| {});
    let mut alice = Ua::new(s.udp(), "alice");
    let ch = challenge(&publish_with(&mut alice, ALICE, ""), 1);
    let wrong = publish_with(
        &mut alice,
        ALICE,
        &creds(&ch, "alice", "looking-glass", "PUBLISH", ALICE, 1),
    );
    let unknown = publish_with(
        &mut alice,
        ALICE,
        &creds(&ch, "mallory", "wonderland", "PUBLISH", ALICE, 2),
    );
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.reason, unknown.reason);
    for r in [&wrong, &unknown] {
        assert_eq!(challenge(r, 0).param("stale"), None);
    }
}

#[test]
fn a_replayed_nonce_count_is_refused() {
    let s = server(|_| {});
    let mut alice = Ua::new(s.udp(), "alice");
    let ch = challenge(&publish_with(&mut alice, ALICE, ""), 0);
    let auth = creds(&ch, "alice", "wonderland", "PUBLISH", ALICE, 1);
    assert_eq!(publish_with(&mut alice, ALICE, &auth).status, 200);
    // The same credentials again (a new transaction: a captured request replayed).
    let replay = publish_with(&mut alice, ALICE, &auth);
    assert_eq!(replay.status, 401);
    assert_eq!(challenge(&replay, 0).param("stale"), None);
    // The next count is fine.
    let next = creds(&ch, "alice", "wonderland", "PUBLISH", ALICE, 2);
    assert_eq!(publish_with(&mut alice, ALICE, &next).status, 200);
}

#[test]
fn an_expired_nonce_gets_stale_true_and_the_new_one_works() {
    let s = server(|c| c.nonce_expire = 30);
    let mut alice = Ua::new(s.udp(), "alice");
    let ch = challenge(&publish_with(&mut alice, ALICE, ""), 0);
    s.advance(Duration::from_secs(31));
    let r = publish_with(
        &mut alice,
        ALICE,
        &creds(&ch, "alice", "wonderland", "PUBLISH", ALICE, 1),
    );
    assert_eq!(r.status, 401);
    let fresh = challenge(&r, 0);
    assert_eq!(fresh.param("stale"), Some("true"));
    let ok = publish_with(
        &mut alice,
        ALICE,
        &creds(&fresh, "alice", "wonderland", "PUBLISH", ALICE, 1),
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn publishing_another_users_presentity_is_forbidden_unless_a_delegate() {
    let s = server(|c| {
        c.publish_on_behalf = vec![presenced::auth::Delegate::parse("sip:vm@example.com").unwrap()]
    });
    let mut alice = Ua::new(s.udp(), "alice");
    let ch = challenge(&publish_with(&mut alice, BOB, ""), 0);
    let r = publish_with(
        &mut alice,
        BOB,
        &creds(&ch, "alice", "wonderland", "PUBLISH", BOB, 1),
    );
    assert_eq!(r.status, 403);
    // A forged From changes nothing: the identity is the account's.
    let mut forger = Ua::new(s.udp(), "bob");
    let r = publish_with(
        &mut forger,
        BOB,
        &creds(&ch, "alice", "wonderland", "PUBLISH", BOB, 2),
    );
    assert_eq!(r.status, 403);

    let mut vm = Ua::new(s.udp(), "vm");
    let ch = challenge(&publish_with(&mut vm, BOB, ""), 0);
    let mwi = "Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n";
    let r = vm.publish_raw(
        BOB,
        "message-summary",
        None,
        Some(60),
        Some(("application/simple-message-summary", mwi)),
        &creds(&ch, "vm", "voicemail", "PUBLISH", BOB, 1),
    );
    assert_eq!(r.status, 200, "{}", r.reason);
}

#[test]
fn winfo_and_message_summary_are_for_their_owner_only() {
    let s = server(|_| {});
    let mut alice = Ua::new(s.udp(), "alice");
    for event in ["presence.winfo", "message-summary"] {
        let (r, _) = alice.subscribe(BOB, event, Some(60), "");
        assert_eq!(r.status, 401);
        let ch = challenge(&r, 0);
        let auth = creds(&ch, "alice", "wonderland", "SUBSCRIBE", BOB, 1);
        let (r, _) = alice.subscribe(BOB, event, Some(60), &auth);
        assert_eq!(r.status, 403, "{event}");
        // Bob's own subscription passes.
        let mut bob = Ua::new(s.udp(), "bob");
        let (r, _) = bob.subscribe(BOB, event, Some(60), "");
        let ch = challenge(&r, 0);
        let auth = creds(&ch, "bob", "builder", "SUBSCRIBE", BOB, 1);
        let (r, _) = bob.subscribe(BOB, event, Some(60), &auth);
        assert_eq!(r.status, 200, "{event}: {}", r.reason);
        bob.expect_notify();
    }
}

#[test]
fn the_watcher_is_the_authenticated_identity_and_only_it_refreshes_the_dialog() {
    let s = server(|_| {});
    // Alice subscribes to Bob's presence with From claiming to be Carol.
    let mut carol = Ua::new(s.udp(), "carol");
    let (r, _) = carol.subscribe(BOB, "presence", Some(60), "");
    let ch = challenge(&r, 0);
    let (r, mut sub) = carol.subscribe(
        BOB,
        "presence",
        Some(60),
        &creds(&ch, "alice", "wonderland", "SUBSCRIBE", BOB, 1),
    );
    assert_eq!(r.status, 200);
    carol.expect_notify();
    // The refresh with Bob's credentials is not the watcher's.
    sub.cseq += 1;
    let r = carol.send_subscribe(&sub, Some(60), "");
    let ch = challenge(&r, 0);
    sub.cseq += 1;
    let r = carol.send_subscribe(
        &sub,
        Some(60),
        &creds(&ch, "bob", "builder", "SUBSCRIBE", BOB, 1),
    );
    assert_eq!(r.status, 403);
    // With Alice's it is (the next count: nonce counts belong to the nonce).
    sub.cseq += 1;
    let r = carol.send_subscribe(
        &sub,
        Some(60),
        &creds(&ch, "alice", "wonderland", "SUBSCRIBE", BOB, 2),
    );
    assert_eq!(r.status, 200, "{}", r.reason);
    // Its NOTIFY answered, so the manual-clock server has nothing in flight at stop.
    carol.expect_notify();
}

#[test]
fn only_the_same_identity_replaces_a_subscription_from_the_same_contact() {
    let s = server(|_| {});
    let mut alice = Ua::new(s.udp(), "alice");
    let (r, _) = alice.subscribe(BOB, "presence", Some(60), "");
    let ch = challenge(&r, 0);
    let as_alice = |nc| creds(&ch, "alice", "wonderland", "SUBSCRIBE", BOB, nc);
    let (r, mut first) = alice.subscribe(BOB, "presence", Some(60), &as_alice(1));
    assert_eq!(r.status, 200);
    alice.expect_notify();
    // Bob forges Alice's From and Contact on a new dialog, with his own credentials: a
    // "rebooted phone" look-alike that must not evict Alice's subscription. (Nonce
    // counts belong to the nonce, whoever answers it.)
    let (r, _) = alice.subscribe(
        BOB,
        "presence",
        Some(60),
        &creds(&ch, "bob", "builder", "SUBSCRIBE", BOB, 2),
    );
    assert_eq!(r.status, 200);
    alice.expect_notify();
    first.cseq += 1;
    let r = alice.send_subscribe(&first, Some(60), &as_alice(3));
    assert_eq!(r.status, 200, "Alice's dialog survives: {}", r.reason);
    alice.expect_notify();
    // Alice herself, rebooted (same Contact, new Call-ID), does replace it.
    let (r, _) = alice.subscribe(BOB, "presence", Some(60), &as_alice(4));
    assert_eq!(r.status, 200);
    alice.expect_notify();
    first.cseq += 1;
    let r = alice.send_subscribe(&first, Some(60), &as_alice(5));
    assert_eq!(r.status, 481, "the stale dialog is gone: {}", r.reason);
}

#[test]
fn trusted_proxies_assert_the_identity_and_others_are_challenged() {
    let s = server(|c| {
        c.auth = Some(AuthMode::Trusted);
        c.trusted_proxies = vec![presenced::auth::parse_net("127.0.0.0/8").unwrap()];
    });
    let mut proxy = Ua::new(s.udp(), "anyone");
    let body = pidf_of(ALICE);
    let r = proxy.publish_raw(
        ALICE,
        "presence",
        None,
        Some(60),
        Some(("application/pidf+xml", &body)),
        "P-Asserted-Identity: <sip:alice@example.com>\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.reason);
    let r = proxy.publish_raw(
        BOB,
        "presence",
        None,
        Some(60),
        Some(("application/pidf+xml", &body)),
        "P-Asserted-Identity: <sip:alice@example.com>\r\n",
    );
    assert_eq!(r.status, 403);
}

/// Runs `presenced user ...` with `stdin` piped in.
fn user_cmd(db: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("user")
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_commands_work_on_a_stopped_database_and_through_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // Stopped: the command opens the database itself.
    let out = user_cmd(&db, &["add", "alice@Example.com"], "wonderland\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = user_cmd(&db, &["add", "alice@example.com"], "x\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let list = user_cmd(&db, &["list"], "");
    assert_eq!(String::from_utf8_lossy(&list.stdout), "alice@example.com\n");
    let none = user_cmd(&db, &["add", "bob@example.com"], "\n");
    assert!(!none.status.success(), "an empty password is refused");

    // Running (digest on loopback): the same commands go over the control socket, and
    // take effect at once.
    let config = dir.path().join("p.toml");
    std::fs::write(&config, "auth = \"digest\"\n").unwrap();
    let (_daemon, udp, _) = spawn_daemon(&db, &["--config", config.to_str().unwrap()]);
    let out = user_cmd(&db, &["add", "bob@example.com"], "builder\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = user_cmd(&db, &["list"], "");
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "alice@example.com\nbob@example.com\n"
    );
    let mut bob = Ua::new(udp, "bob");
    let ch = challenge(&publish_with(&mut bob, BOB, ""), 0);
    let ok = publish_with(
        &mut bob,
        BOB,
        &creds(&ch, "bob", "builder", "PUBLISH", BOB, 1),
    );
    assert_eq!(ok.status, 200);
    // A new password: the old one stops working.
    let out = user_cmd(&db, &["passwd", "bob@example.com"], "fixer\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = publish_with(
        &mut bob,
        BOB,
        &creds(&ch, "bob", "builder", "PUBLISH", BOB, 2),
    );
    assert_eq!(old.status, 401);
    let new = publish_with(
        &mut bob,
        BOB,
        &creds(&ch, "bob", "fixer", "PUBLISH", BOB, 3),
    );
    assert_eq!(new.status, 200);
    // Deleted: challenged for ever after.
    let out = user_cmd(&db, &["del", "bob@example.com"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = publish_with(
        &mut bob,
        BOB,
        &creds(&ch, "bob", "fixer", "PUBLISH", BOB, 4),
    );
    assert_eq!(gone.status, 401);
}
