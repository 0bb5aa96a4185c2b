//! Limits that keep one abuser from starving everyone, over real sockets: a source over
//! its request rate gets 503 with Retry-After while another source is served; a
//! thousand kept-alive connections from one address leave room for others; a message
//! dribbled a byte at a time is cut off at its deadline; unreachable TCP Contacts
//! cannot crowd out inbound connections; and NOTIFY targets that could never be served
//! (multicast, sips: without TLS, unknown transports) are refused at SUBSCRIBE time.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use presenced::sip::message::Message;

const OTHER: &str = "127.0.0.2";

fn other() -> IpAddr {
    OTHER.parse().unwrap()
}

#[test]
fn a_source_over_its_rate_gets_503_and_another_source_is_still_served() {
    // A manual clock that never moves: the bucket never refills, so the count is exact.
    let s = start_manual(|c| c.max_requests_per_source = 20);
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = flood.local_addr().unwrap().port();
    for i in 0..100 {
        flood
            .send_to(options("UDP", port, &format!("fl{i}")).as_bytes(), s.udp())
            .unwrap();
    }
    let mut statuses = std::collections::HashMap::<u16, usize>::new();
    flood.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 65_536];
    // The burst allowance (twice the rate) is served, as many again are refused, and
    // the rest of the flood is dropped: answering it would cost more than serving it.
    for _ in 0..80 {
        let (n, _) = flood
            .recv_from(&mut buf)
            .expect("burst and refusals are answered");
        let Ok(Message::Response(r)) = Message::parse(&buf[..n]) else {
            panic!("not a response");
        };
        if r.status == 503 {
            assert_eq!(r.headers.get("Retry-After"), Some("2"));
        }
        *statuses.entry(r.status).or_default() += 1;
    }
    assert_eq!(statuses.get(&200), Some(&40), "{statuses:?}");
    assert_eq!(statuses.get(&503), Some(&40), "{statuses:?}");

    let quiet = UdpSocket::bind(format!("{OTHER}:0")).unwrap();
    let qport = quiet.local_addr().unwrap().port();
    quiet
        .send_to(options("UDP", qport, "quiet").as_bytes(), s.udp())
        .unwrap();
    quiet.set_read_timeout(Some(WAIT)).unwrap();
    let (n, _) = quiet
        .recv_from(&mut buf)
        .expect("the other source is answered");
    let Ok(Message::Response(r)) = Message::parse(&buf[..n]) else {
        panic!("not a response");
    };
    assert_eq!(r.status, 200);
    // The quiet source's request was read after the whole flood, so by now every
    // answer the flood will ever get has been sent: the last twenty got none.
    flood.set_nonblocking(true).unwrap();
    match flood.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the flood past its refusals is dropped, got {other:?}"),
    }
}

#[test]
fn a_thousand_kept_alive_connections_from_one_source_leave_another_sources_options_answered() {
    let s = start(|_| {});
    let mut held = Vec::new();
    for _ in 0..1024 {
        let mut c = TcpPeer::connect(s.tcp());
        c.send("\r\n\r\n");
        held.push(c);
    }
    // Beyond its share the source's connections are closed at once.
    let mut closed = 0;
    for c in held.iter_mut().rev().take(100) {
        if c.closed_within(WAIT) {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 100,
        "connections past the per-source cap are closed"
    );

    let mut other = TcpPeer::connect_from(other(), s.tcp());
    let port = other.port();
    other.send(&options("TCP", port, "other-source"));
    assert_eq!(other.recv_response().status, 200);
    // And the first source's early connections still work.
    let first = &mut held[0];
    let port = first.port();
    first.send(&options("TCP", port, "kept"));
    assert_eq!(first.recv_response().status, 200);
}

#[test]
fn a_message_dribbled_a_byte_at_a_time_is_cut_off_at_its_deadline() {
    let s = start(|c| c.tcp_message_timeout = 1);
    let mut slow = TcpPeer::connect(s.tcp());
    let port = slow.port();
    let msg = options("TCP", port, "dribble").into_bytes();
    let mut writer = slow.stream.try_clone().unwrap();
    let started = Instant::now();
    // The client: one byte every 50 ms, 15 s for the whole message if it were let be.
    let dribbler = std::thread::spawn(move || {
        use std::io::Write;
        for b in msg {
            if writer.write_all(&[b]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(
        slow.closed_within(Duration::from_secs(5)),
        "still open after 5 s"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before its deadline"
    );
    assert!(dribbler.join().unwrap(), "the whole message went through");
    // Messages that arrive whole are not affected, on a connection kept open longer.
    let mut fine = TcpPeer::connect(s.tcp());
    let port = fine.port();
    for i in 0..3 {
        fine.send(&options("TCP", port, &format!("fine{i}")));
        assert_eq!(fine.recv_response().status, 200);
    }
}

#[test]
fn unreachable_tcp_contacts_cannot_crowd_out_inbound_connections() {
    let s = start(|c| c.max_connections = 16);
    let watcher = Ua::new(s.udp(), "w");
    // Each SUBSCRIBE's NOTIFY goes to a TCP Contact that never answers (TEST-NET-1).
    for i in 0..40 {
        let port = watcher.peer.port();
        let msg = format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKun{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:w{i}@example.com>;tag=u{i}\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: unreach{i}@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w{i}@192.0.2.{}:5060;transport=tcp>\r\n\
             Event: presence\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
            i + 1
        );
        watcher.peer.send(&msg);
        assert_eq!(watcher.expect_response().status, 200);
    }
    s.settle();
    // Connections being opened are capped (a quarter of max_connections): the rest of
    // the NOTIFYs fail at once instead of each holding a descriptor for the connect
    // timeout. The kernel's table shows the attempts in flight.
    let opening = syn_sent_to_test_net();
    assert!(
        opening >= 1,
        "no connection attempt seen: the test proves nothing"
    );
    assert!(opening <= 4, "{opening} connections being opened at once");
    // Inbound clients still get in and are served, up to what the cap leaves them.
    let mut clients: Vec<TcpPeer> = (0..8)
        .map(|_| TcpPeer::connect_from(other(), s.tcp()))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let port = c.port();
        c.send(&options("TCP", port, &format!("in{i}")));
        assert_eq!(c.recv_response().status, 200, "inbound connection {i}");
    }
}

/// Sockets of this process's network namespace in SYN_SENT towards 192.0.2.0/24.
fn syn_sent_to_test_net() -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // rem_address is the IPv4 address as a little-endian hex u32: 192.0.2.x
            // reads "xx0200C0".
            f.len() > 3 && f[3] == "02" && f[2].get(2..8) == Some("0200C0")
        })
        .count()
}

#[test]
fn notify_targets_that_could_never_be_served_are_refused_at_subscribe_time() {
    let s = start(|_| {});
    let mut ua = Ua::new(s.udp(), "bob");
    for (contact, why) in [
        ("<sip:bob@224.0.0.1:5060>", "multicast"),
        ("<sip:bob@255.255.255.255>", "broadcast"),
        ("<sip:bob@[ff02::1]:5060>", "multicast"),
        ("<sips:bob@127.0.0.1:5061;transport=tcp>", "sips"),
        ("<sip:bob@127.0.0.1:5060;transport=sctp>", "transport"),
    ] {
        let port = ua.peer.port();
        let msg = format!(
            "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{why}{};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=t\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: target-{why}-{}@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: {contact}\r\n\
             Event: presence\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
            contact.len(),
            contact.len()
        );
        ua.peer.send(&msg);
        let r = ua.expect_response();
        assert_eq!(r.status, 400, "{contact}");
        assert!(r.reason.contains(why), "{contact}: {}", r.reason);
    }
    // A Record-Route whose first hop is multicast is refused the same way.
    let (r, _) = ua.subscribe(
        "sip:alice@example.com",
        "presence",
        Some(60),
        "Record-Route: <sip:239.1.2.3;lr>\r\n",
    );
    assert_eq!(r.status, 400);
    // And a good one still works.
    let (r, _) = ua.subscribe("sip:alice@example.com", "presence", Some(60), "");
    assert_eq!(r.status, 200);
    ua.expect_notify();
}

#[test]
fn the_publication_and_aggregate_size_caps_answer_with_their_codes() {
    let s = start(|c| {
        c.max_publications_per_presentity = 3;
        c.max_aggregate_size = 4000;
    });
    let mut alice = Ua::new(s.udp(), "alice");
    let aor = "sip:alice@example.com";
    let mut etags = Vec::new();
    for i in 0..3 {
        let r = alice.publish(
            aor,
            None,
            Some(60),
            Some(&pidf(aor, &format!("t{i}"), "open", "")),
        );
        assert_eq!(r.status, 200);
        etags.push(r.headers.sip_etag().unwrap().to_owned());
    }
    let r = alice.publish(aor, None, Some(60), Some(&pidf(aor, "t3", "open", "")));
    assert_eq!(r.status, 403, "{}", r.reason);
    // A refresh and a modification of an existing one are still fine.
    assert_eq!(
        alice.publish(aor, Some(&etags[0]), Some(60), None).status,
        200
    );
    let r = alice.publish(
        aor,
        Some(&etags[1]),
        Some(60),
        Some(&pidf(aor, "t1", "closed", "")),
    );
    assert_eq!(r.status, 200);
    // A body that would take the aggregate past 4000 bytes.
    let big = pidf(aor, "t2", "open", &"x".repeat(3500));
    let r = alice.publish(aor, Some(&etags[2]), Some(60), Some(&big));
    assert_eq!(r.status, 413, "{}", r.reason);
}

/// A presentity whose state does not fit a UDP datagram: the watcher's NOTIFY goes
/// over TCP to the same address (RFC 3261 §18.1.1); where nothing listens there, the
/// subscription ends, and the owner's presence.winfo subscription is told.
#[test]
fn an_aggregate_over_the_udp_limit_goes_over_tcp_or_ends_the_subscription_visibly() {
    let s = start(|c| {
        c.max_message_size = 400_000;
        c.max_body_size = 200_000;
        c.max_aggregate_size = 200_000;
    });
    let aor = "sip:alice@example.com";
    // Alice watches her own watchers.
    let mut owner = Ua::new(s.udp(), "alice");
    let (r, _) = owner.subscribe(aor, "presence.winfo", Some(300), "");
    assert_eq!(r.status, 200);
    owner.expect_notify();

    // Bob listens for TCP on the port his UDP Contact names; Carol does not.
    let mut bob = Ua::new(s.udp(), "bob");
    let bob_tcp = std::net::TcpListener::bind(("127.0.0.1", bob.peer.port())).unwrap();
    let mut carol = Ua::new(s.udp(), "carol");
    for w in [&mut bob, &mut carol] {
        let (r, _) = w.subscribe(aor, "presence", Some(300), "");
        assert_eq!(r.status, 200);
        w.expect_notify();
        owner.expect_notify(); // winfo: a new active watcher
    }

    // The PUBLISH itself is too large for UDP too: it comes over TCP.
    let mut publisher = TcpPeer::connect(s.tcp());
    let big = pidf(aor, "t1", "open", &"n".repeat(80_000));
    let port = publisher.port();
    publisher.send(&request(
        "PUBLISH",
        aor,
        "TCP",
        port,
        "bigpub",
        "Event: presence\r\nExpires: 60\r\nContent-Type: application/pidf+xml\r\n",
        &big,
    ));
    assert_eq!(publisher.recv_response().status, 200);

    // Bob's NOTIFY arrives over TCP, whole.
    bob_tcp.set_nonblocking(false).unwrap();
    let (stream, _) = bob_tcp.accept().unwrap();
    let mut conn = TcpPeer::from_stream(stream);
    let Message::Request(notify) = conn.recv() else {
        panic!("expected a NOTIFY over TCP");
    };
    assert!(body_str(&notify).contains(&"n".repeat(80_000)));
    conn.send_bytes(&ok_for(&notify));

    // Carol's cannot be delivered: her subscription ends and the winfo says so.
    let winfo = owner.expect_notify();
    let doc = body_str(&winfo);
    assert!(
        doc.contains("sip:carol@example.com") && doc.contains("terminated"),
        "{doc}"
    );
}

#[test]
fn a_body_over_its_events_size_limit_gets_413_and_other_events_keep_theirs() {
    let s = start(|c| {
        c.max_body_size_per_event = [("message-summary".to_owned(), 200)].into();
    });
    let mut alice = Ua::new(s.udp(), "alice");
    let aor = "sip:alice@example.com";
    let summary = |pad: usize| {
        format!(
            "Messages-Waiting: yes\r\nMessage-Account: {aor};x={}\r\nVoice-Message: 2/8 (0/2)\r\n",
            "p".repeat(pad)
        )
    };
    let small = summary(10);
    let r = alice.publish_raw(
        aor,
        "message-summary",
        None,
        Some(60),
        Some(("application/simple-message-summary", &small)),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.reason);
    let large = summary(300);
    let r = alice.publish_raw(
        aor,
        "message-summary",
        None,
        Some(60),
        Some(("application/simple-message-summary", &large)),
        "",
    );
    assert_eq!(r.status, 413, "{}", r.reason);
    // Presence still takes max_body_size: a body far past 200 bytes is fine.
    let presence = pidf(aor, "t1", "open", &"x".repeat(1000));
    assert!(presence.len() > 1000);
    assert_eq!(
        alice.publish(aor, None, Some(60), Some(&presence)).status,
        200
    );
}

#[test]
fn subscriptions_past_a_presentitys_or_a_watchers_cap_get_403_and_the_caps_follow_ends() {
    let s = start(|c| {
        c.max_subscriptions_per_presentity = 3;
        c.max_subscriptions_per_watcher = 4;
    });
    let alice = "sip:alice@example.com";
    let mut watchers: Vec<Ua> = (0..4).map(|i| Ua::new(s.udp(), &format!("w{i}"))).collect();
    let mut dialogs = Vec::new();
    for w in watchers.iter_mut().take(3) {
        let (r, sub) = w.subscribe(alice, "presence", Some(600), "");
        assert_eq!(r.status, 200);
        w.expect_notify();
        dialogs.push(sub);
    }
    let (r, _) = watchers[3].subscribe(alice, "presence", Some(600), "");
    assert_eq!(r.status, 403);
    assert!(r.reason.contains("this presentity"), "{}", r.reason);
    // Another event of the same presentity has a cap of its own.
    let (r, _) = watchers[3].subscribe(alice, "dialog", Some(600), "");
    assert_eq!(r.status, 200);
    watchers[3].expect_notify();
    // A refresh is not a new dialog; a rebooted phone (same Contact, new Call-ID)
    // replaces its dialog rather than adding one.
    dialogs[0].cseq += 1;
    assert_eq!(
        watchers[0]
            .send_subscribe(&dialogs[0], Some(600), "")
            .status,
        200
    );
    watchers[0].expect_notify();
    let (r, rebooted) = watchers[0].subscribe(alice, "presence", Some(600), "");
    assert_eq!(r.status, 200, "{}", r.reason);
    watchers[0].expect_notify();
    dialogs[0] = rebooted;
    // An unsubscribe frees its place.
    dialogs[1].cseq += 1;
    assert_eq!(
        watchers[1].send_subscribe(&dialogs[1], Some(0), "").status,
        200
    );
    watchers[1].expect_notify();
    let (r, _) = watchers[3].subscribe(alice, "presence", Some(600), "");
    assert_eq!(r.status, 200, "{}", r.reason);
    watchers[3].expect_notify();

    // One watcher across presentities: w3 holds two dialogs, two more fit, then 403.
    for p in ["sip:p1@example.com", "sip:p2@example.com"] {
        let (r, _) = watchers[3].subscribe(p, "presence", Some(600), "");
        assert_eq!(r.status, 200);
        watchers[3].expect_notify();
    }
    let (r, _) = watchers[3].subscribe("sip:p3@example.com", "presence", Some(600), "");
    assert_eq!(r.status, 403);
    assert!(r.reason.contains("this watcher"), "{}", r.reason);
    // Someone else may still watch p3.
    let (r, _) = watchers[2].subscribe("sip:p3@example.com", "presence", Some(600), "");
    assert_eq!(r.status, 200);
    watchers[2].expect_notify();
}
