//! The authenticator's decisions, request by request, without sockets.

use super::*;
use crate::sip::endpoint::loopback_source;
use crate::sip::message::Message;
use crate::store::StoreOptions;

fn store() -> Store {
    let s = Store::open_temporary(StoreOptions::default()).unwrap();
    s.put_subscriber(&Subscriber::with_password(
        "alice",
        "example.com",
        "wonderland",
    ))
    .unwrap();
    s
}

fn auth(mode: Mode) -> Authenticator {
    let config = AuthConfig {
        mode,
        ..AuthConfig::default()
    };
    Authenticator::new(config, [3; 32])
}

fn publish(from: &str, uri: &str, authorization: Option<&str>) -> Request {
    let mut text = format!(
        "PUBLISH {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
         From: <{from}>;tag=1\r\nTo: <{uri}>\r\nCall-ID: c1\r\nCSeq: 1 PUBLISH\r\n\
         Max-Forwards: 70\r\nEvent: presence\r\n"
    );
    if let Some(a) = authorization {
        text.push_str(&format!("Authorization: {a}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn challenge_of(r: &Response) -> AuthValue {
    AuthValue::parse(r.headers.get("WWW-Authenticate").unwrap()).unwrap()
}

fn refused(v: Verdict) -> Response {
    match v {
        Verdict::Refuse(r) => r,
        Verdict::Pass(id) => panic!("passed as {id:?}"),
    }
}

const ALICE: &str = "sip:alice@example.com";

#[test]
fn none_mode_takes_the_from_header_and_lets_anyone_publish() {
    let mut a = auth(Mode::None);
    let req = publish(ALICE, "sip:bob@example.com", None);
    match a.check(&req, &loopback_source(5070), &store(), 1_000) {
        Verdict::Pass(id) => {
            assert_eq!(id.aor, ALICE);
            assert!(!id.authenticated);
            assert!(id.may_publish_for("sip:bob@example.com"));
        }
        Verdict::Refuse(r) => panic!("refused with {}", r.status),
    }
}

#[test]
fn digest_challenges_then_accepts_the_right_password_once_per_count() {
    let store = store();
    let mut a = auth(Mode::Digest);
    let src = loopback_source(5070);
    let r = refused(a.check(&publish(ALICE, ALICE, None), &src, &store, 1_000));
    assert_eq!(r.status, 401);
    // SHA-256 first, then MD5 (RFC 8760 §2.4), both with qop=auth.
    let offers: Vec<_> = r.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(offers.len(), 2);
    assert!(offers[0].contains("algorithm=SHA-256") && offers[1].contains("algorithm=MD5"));
    let ch = challenge_of(&r);
    assert_eq!(ch.param("realm"), Some("example.com"));

    let creds = digest::answer(&ch, "alice", "wonderland", "PUBLISH", ALICE, 1, "x").unwrap();
    let req = publish(ALICE, ALICE, Some(&creds));
    match a.check(&req, &src, &store, 1_001) {
        Verdict::Pass(id) => {
            assert_eq!(id.aor, ALICE);
            assert!(id.authenticated && !id.delegate);
            assert!(id.may_publish_for("sip:alice@example.com"));
            assert!(id.may_publish_for("sips:alice@EXAMPLE.com".to_lowercase().as_str()));
            assert!(!id.may_publish_for("sip:bob@example.com"));
        }
        Verdict::Refuse(r) => panic!("refused with {}", r.status),
    }
    // The same count again is a replay.
    let r = refused(a.check(&req, &src, &store, 1_002));
    assert_eq!(r.status, 401);
    assert_eq!(challenge_of(&r).param("stale"), None);
    // The next count passes.
    let creds = digest::answer(&ch, "alice", "wonderland", "PUBLISH", ALICE, 2, "x").unwrap();
    assert!(matches!(
        a.check(&publish(ALICE, ALICE, Some(&creds)), &src, &store, 1_002),
        Verdict::Pass(_)
    ));
}

#[test]
fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let store = store();
    let mut a = auth(Mode::Digest);
    let src = loopback_source(5070);
    let r = refused(a.check(&publish(ALICE, ALICE, None), &src, &store, 1_000));
    let ch = challenge_of(&r);
    let wrong = digest::answer(&ch, "alice", "looking-glass", "PUBLISH", ALICE, 1, "x").unwrap();
    let nobody = digest::answer(&ch, "mallory", "wonderland", "PUBLISH", ALICE, 1, "x").unwrap();
    let r1 = refused(a.check(&publish(ALICE, ALICE, Some(&wrong)), &src, &store, 1_001));
    let r2 = refused(a.check(&publish(ALICE, ALICE, Some(&nobody)), &src, &store, 1_001));
    assert_eq!((r1.status, r2.status), (401, 401));
    assert_eq!(r1.reason, r2.reason);
    assert_eq!(challenge_of(&r1).param("stale"), None);
    // A failed attempt does not use up the count: the right password with count 1 passes.
    let right = digest::answer(&ch, "alice", "wonderland", "PUBLISH", ALICE, 1, "x").unwrap();
    assert!(matches!(
        a.check(&publish(ALICE, ALICE, Some(&right)), &src, &store, 1_001),
        Verdict::Pass(_)
    ));
}

#[test]
fn an_expired_nonce_is_stale_and_a_forged_one_is_not() {
    let store = store();
    let mut a = auth(Mode::Digest);
    let src = loopback_source(5070);
    let ch = challenge_of(&refused(a.check(
        &publish(ALICE, ALICE, None),
        &src,
        &store,
        1_000,
    )));
    let creds = digest::answer(&ch, "alice", "wonderland", "PUBLISH", ALICE, 1, "x").unwrap();
    let r = refused(a.check(&publish(ALICE, ALICE, Some(&creds)), &src, &store, 1_400));
    assert_eq!(r.status, 401);
    assert_eq!(challenge_of(&r).param("stale"), Some("true"));

    let forged = creds.replace(ch.param("nonce").unwrap(), &"ab".repeat(32));
    let r = refused(a.check(&publish(ALICE, ALICE, Some(&forged)), &src, &store, 1_001));
    assert_eq!(challenge_of(&r).param("stale"), None);
}

#[test]
fn malformed_credentials_get_400_and_credentials_without_qop_403() {
    let store = store();
    let mut a = auth(Mode::Digest);
    let src = loopback_source(5070);
    let bad = publish(
        ALICE,
        ALICE,
        Some("Digest realm=\"example.com\", username=\"alice\""),
    );
    assert_eq!(refused(a.check(&bad, &src, &store, 1_000)).status, 400);
    let garbage = publish(ALICE, ALICE, Some("Digest ,,,=\"\""));
    assert_eq!(refused(a.check(&garbage, &src, &store, 1_000)).status, 400);
    let no_qop = publish(
        ALICE,
        ALICE,
        Some(
            "Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:alice@example.com\", \
             response=\"00112233445566778899aabbccddeeff\"",
        ),
    );
    assert_eq!(refused(a.check(&no_qop, &src, &store, 1_000)).status, 403);
    // Credentials for another realm are someone else's: challenge.
    let other = publish(
        ALICE,
        ALICE,
        Some("Digest username=\"alice\", realm=\"elsewhere\", nonce=\"n\""),
    );
    assert_eq!(refused(a.check(&other, &src, &store, 1_000)).status, 401);
}

#[test]
fn trusted_sources_assert_identities_and_delegates_publish_for_others() {
    let store = store();
    let config = AuthConfig {
        mode: Mode::Trusted,
        trusted: vec![parse_net("127.0.0.0/8").unwrap()],
        on_behalf: vec![Delegate::parse("sip:vm@example.com").unwrap()],
        ..AuthConfig::default()
    };
    let mut a = Authenticator::new(config, [3; 32]);
    let mut req = publish(ALICE, "sip:bob@example.com", None);
    req.headers
        .push("P-Asserted-Identity", "\"VM\" <sip:vm@example.com>");
    match a.check(&req, &loopback_source(5070), &store, 1_000) {
        Verdict::Pass(id) => {
            assert_eq!(id.aor, "sip:vm@example.com");
            assert!(id.delegate && id.may_publish_for("sip:bob@example.com"));
        }
        Verdict::Refuse(r) => panic!("refused with {}", r.status),
    }
    // From elsewhere: challenged like digest.
    let mut far = loopback_source(5070);
    far.peer.addr = "192.0.2.1:5060".parse().unwrap();
    assert_eq!(refused(a.check(&req, &far, &store, 1_000)).status, 401);
}

#[test]
fn proxy_mode_challenges_with_407_and_reads_proxy_authorization() {
    let store = store();
    let config = AuthConfig {
        mode: Mode::Digest,
        proxy_challenge: true,
        algorithms: vec![Algorithm::Md5],
        ..AuthConfig::default()
    };
    let mut a = Authenticator::new(config, [3; 32]);
    let src = loopback_source(5070);
    let r = refused(a.check(&publish(ALICE, ALICE, None), &src, &store, 1_000));
    assert_eq!(r.status, 407);
    let ch = AuthValue::parse(r.headers.get("Proxy-Authenticate").unwrap()).unwrap();
    let creds = digest::answer(&ch, "alice", "wonderland", "PUBLISH", ALICE, 1, "x").unwrap();
    let mut req = publish(ALICE, ALICE, None);
    req.headers.push("Proxy-Authorization", creds);
    assert!(matches!(
        a.check(&req, &src, &store, 1_001),
        Verdict::Pass(_)
    ));
}

#[test]
fn an_identity_outside_the_served_domains_is_refused() {
    let store = store();
    store
        .put_subscriber(&Subscriber::with_password("eve", "evil.example", "pw"))
        .unwrap();
    let config = AuthConfig {
        mode: Mode::Digest,
        domains: vec!["example.com".into()],
        ..AuthConfig::default()
    };
    let mut a = Authenticator::new(config, [3; 32]);
    let src = loopback_source(5070);
    let eve = "sip:eve@evil.example";
    let ch = challenge_of(&refused(a.check(
        &publish(eve, ALICE, None),
        &src,
        &store,
        1_000,
    )));
    let creds = digest::answer(&ch, "eve", "pw", "PUBLISH", ALICE, 1, "x").unwrap();
    let r = refused(a.check(&publish(eve, ALICE, Some(&creds)), &src, &store, 1_001));
    assert_eq!(r.status, 403);
}

#[test]
fn delegates_parse_as_identities_or_networks() {
    assert_eq!(
        Delegate::parse("sip:VM@Example.com"),
        Some(Delegate::Identity("VM@example.com".into()))
    );
    assert!(matches!(
        Delegate::parse("10.0.0.0/24"),
        Some(Delegate::Net(_))
    ));
    assert!(matches!(Delegate::parse("::1"), Some(Delegate::Net(_))));
    assert_eq!(Delegate::parse("example.com"), None);
    assert!(parse_net("10.0.0.300").is_err());
}
