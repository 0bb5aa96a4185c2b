//! The SIP core over real sockets: OPTIONS, method policy, retransmission absorption,
//! hostile input, and INVITE handling, asserted on the wire messages.

mod common;

use std::time::Duration;

use common::*;
use presenced::sip::message::Message;

#[test]
fn options_over_udp_gets_200_with_capabilities() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    peer.send(&options("UDP", peer.port(), "opt1"));
    let r = peer.recv_response();
    assert_eq!(r.status, 200);
    let allow = r.headers.get("Allow").expect("Allow");
    assert!(allow.contains("OPTIONS"), "{allow}");
    assert!(r.headers.get("Supported").is_some());
    // §8.2.6.2: the UAS adds a To tag; Via gets received/rport (RFC 3581).
    assert!(r.headers.to().unwrap().tag().is_some());
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.rport(), Some(Some(peer.port())));
    assert_eq!(r.headers.call_id().unwrap(), "opt1@test");
}

#[test]
fn options_over_tcp_gets_200_on_the_same_connection() {
    let srv = start(|_| {});
    let mut peer = TcpPeer::connect(srv.tcp());
    let port = peer.port();
    peer.send(&options("TCP", port, "opt2"));
    assert_eq!(peer.recv_response().status, 200);
    // A second request on the same connection is served too.
    peer.send(&options("TCP", port, "opt3"));
    let r = peer.recv_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.call_id().unwrap(), "opt3@test");
}

#[test]
fn retransmitted_request_gets_the_cached_response_and_is_processed_once() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    let msg = options("UDP", peer.port(), "retx1");
    peer.send(&msg);
    let first = peer.recv_within(WAIT).unwrap();
    peer.send(&msg);
    let second = peer.recv_within(WAIT).unwrap();
    // Processing twice would have drawn a new random To tag.
    assert_eq!(first, second);
}

#[test]
fn a_new_request_reusing_a_finished_transactions_branch_gets_its_own_answer() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    let body = pidf("sip:alice@example.com", "t1", "open", "x");
    let publish = |cseq: u32, etag: &str| {
        format!(
            "PUBLISH sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKreused;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\n\
             Call-ID: reused@test\r\nCSeq: {cseq} PUBLISH\r\nEvent: presence\r\nExpires: 600\r\n{etag}\
             Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            port = peer.port(),
        )
    };
    peer.send(&publish(1, ""));
    let first = peer.recv_response();
    assert_eq!(first.status, 200);
    let etag = first.headers.sip_etag().unwrap().to_owned();
    // Same branch, next CSeq, a modify: a new transaction, not a retransmission.
    peer.send(&publish(2, &format!("SIP-If-Match: {etag}\r\n")));
    let second = peer.recv_response();
    assert_eq!(second.status, 200);
    assert_eq!(second.headers.cseq().unwrap().seq, 2);
    let new_etag = second.headers.sip_etag().unwrap();
    assert_ne!(new_etag, etag, "its own answer, not the cached one");
    // A true retransmission of it still gets the cached answer.
    peer.send(&publish(2, &format!("SIP-If-Match: {etag}\r\n")));
    assert_eq!(peer.recv_response().headers.sip_etag(), Some(new_etag));
}

#[test]
fn known_method_not_served_gets_405_with_allow() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    peer.send(&request(
        "MESSAGE",
        "sip:bob@127.0.0.1",
        "UDP",
        peer.port(),
        "m405",
        "",
        "",
    ));
    let r = peer.recv_response();
    assert_eq!(r.status, 405);
    assert!(r.headers.get("Allow").unwrap().contains("OPTIONS"));
}

#[test]
fn unrecognised_method_gets_501() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    peer.send(&request(
        "FROBNICATE",
        "sip:bob@127.0.0.1",
        "UDP",
        peer.port(),
        "m501",
        "",
        "",
    ));
    assert_eq!(peer.recv_response().status, 501);
}

#[test]
fn max_forwards_zero_gets_483() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    let msg = request(
        "MESSAGE",
        "sip:bob@127.0.0.1",
        "UDP",
        peer.port(),
        "mf0",
        "",
        "",
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    peer.send(&msg);
    assert_eq!(peer.recv_response().status, 483);
}

#[test]
fn request_for_a_domain_not_served_gets_404() {
    let srv = start(|c| c.domains = vec!["example.com".into()]);
    let peer = UdpPeer::new(srv.udp());
    peer.send(&request(
        "OPTIONS",
        "sip:bob@other.org",
        "UDP",
        peer.port(),
        "dom1",
        "",
        "",
    ));
    assert_eq!(peer.recv_response().status, 404);
    peer.send(&request(
        "OPTIONS",
        "sip:bob@example.com",
        "UDP",
        peer.port(),
        "dom2",
        "",
        "",
    ));
    assert_eq!(peer.recv_response().status, 200);
}

#[test]
fn unsupported_require_gets_420_with_unsupported() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    peer.send(&request(
        "OPTIONS",
        "sip:bob@127.0.0.1",
        "UDP",
        peer.port(),
        "req1",
        "Require: foo, 100rel\r\n",
        "",
    ));
    let r = peer.recv_response();
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get("Unsupported"), Some("foo, 100rel"));
}

#[test]
fn invite_gets_a_final_response_that_stops_after_the_ack() {
    let srv = start_manual(|_| {});
    let peer = UdpPeer::new(srv.udp());
    let invite = request(
        "INVITE",
        "sip:bob@127.0.0.1",
        "UDP",
        peer.port(),
        "inv1",
        "Contact: <sip:t@127.0.0.1>\r\n",
        "",
    );
    peer.send(&invite);
    let first = peer.recv_response();
    assert_eq!(first.status, 405);
    // Timer G: without an ACK the response is retransmitted after T1.
    srv.advance(Duration::from_millis(600));
    assert_eq!(peer.recv_response().status, 405);
    let to = first.headers.get("To").unwrap();
    let ack = format!(
        "ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKinv1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@example.com>;tag=ftinv1\r\nTo: {to}\r\n\
         Call-ID: inv1@test\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        peer.port()
    );
    peer.send(&ack);
    // Make sure the ACK was consumed before time moves on: a fresh OPTIONS round trip.
    peer.send(&options("UDP", peer.port(), "afterack"));
    assert_eq!(peer.recv_response().status, 200);
    srv.advance(Duration::from_secs(10));
    assert!(
        peer.recv_within(Duration::from_millis(300)).is_none(),
        "no retransmission after ACK"
    );
}

/// Hostile and broken input: each case gets the listed status, or is dropped (None), and
/// the server keeps serving afterwards.
#[test]
fn malformed_messages_get_the_right_4xx_or_are_dropped_and_the_server_keeps_serving() {
    let srv = start(|c| c.max_message_size = 8192);
    let peer = UdpPeer::new(srv.udp());
    let p = peer.port();
    let ok = |b: &str| request("OPTIONS", "sip:bob@127.0.0.1", "UDP", p, b, "", "");
    let mut cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "truncated body",
            ok("t1")
                .replace("Content-Length: 0", "Content-Length: 50")
                .into_bytes(),
            Some(400),
        ),
        (
            "bad CSeq",
            ok("t2")
                .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS")
                .into_bytes(),
            Some(400),
        ),
        (
            "CSeq method mismatch",
            ok("t3")
                .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")
                .into_bytes(),
            Some(400),
        ),
        (
            "missing Via",
            remove_line(&ok("t4"), "Via:").into_bytes(),
            None,
        ),
        (
            "missing From",
            remove_line(&ok("t5"), "From:").into_bytes(),
            Some(400),
        ),
        (
            "missing To",
            remove_line(&ok("t6"), "To:").into_bytes(),
            Some(400),
        ),
        (
            "missing Call-ID",
            remove_line(&ok("t7"), "Call-ID:").into_bytes(),
            Some(400),
        ),
        (
            "conflicting Content-Length",
            ok("t8")
                .replace(
                    "Content-Length: 0\r\n",
                    "Content-Length: 0\r\nContent-Length: 4\r\n",
                )
                .into_bytes(),
            Some(400),
        ),
        (
            "SIP/3.0",
            ok("t9")
                .replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia")
                .into_bytes(),
            Some(505),
        ),
        (
            "unsupported URI scheme",
            ok("t10")
                .replacen("sip:bob@127.0.0.1", "http://bob@127.0.0.1", 1)
                .into_bytes(),
            Some(416),
        ),
        (
            "garbage",
            b"\x00\x01\x02 not sip at all\r\n\r\n".to_vec(),
            None,
        ),
        (
            "start line only",
            b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n\r\n".to_vec(),
            None,
        ),
    ];
    let mut non_utf8 = ok("t11")
        .replace(
            "From: <sip:tester@example.com>",
            "From: \"\u{1}X\" <sip:tester@example.com>",
        )
        .into_bytes();
    if let Some(pos) = non_utf8.windows(2).position(|w| w == b"\x01X") {
        non_utf8[pos] = 0xff;
    }
    cases.push(("non-UTF-8 header value", non_utf8, Some(400)));
    let big_header = format!("X-Big: {}\r\n", "a".repeat(9000));
    cases.push((
        "oversized header section",
        request(
            "OPTIONS",
            "sip:bob@127.0.0.1",
            "UDP",
            p,
            "t12",
            &big_header,
            "",
        )
        .into_bytes(),
        Some(513),
    ));
    let mut huge = request("OPTIONS", "sip:bob@127.0.0.1", "UDP", p, "t13", "", "").into_bytes();
    huge.extend(std::iter::repeat_n(b'x', 60_000));
    cases.push(("60 KB datagram", huge, Some(513)));

    for (name, bytes, expected) in cases {
        peer.send_bytes(&bytes);
        match expected {
            Some(status) => {
                let got = peer
                    .recv_within(WAIT)
                    .unwrap_or_else(|| panic!("{name}: no response"));
                let Ok(Message::Response(r)) = Message::parse(&got) else {
                    panic!("{name}: unparseable reply")
                };
                assert_eq!(r.status, status, "{name}: {}", r.reason);
            }
            None => {
                // A dropped message leaves nothing to read; prove the server is alive.
                peer.send(&ok(&format!("alive-{}", name.len())));
                let r = peer.recv_response();
                assert_eq!(r.status, 200, "{name}: expected a drop, then service");
            }
        }
    }
    peer.send(&ok("final"));
    assert_eq!(peer.recv_response().status, 200);
}

#[test]
fn folded_line_cannot_inject_a_header() {
    let srv = start(|_| {});
    let peer = UdpPeer::new(srv.udp());
    let msg = request(
        "OPTIONS",
        "sip:bob@127.0.0.1",
        "UDP",
        peer.port(),
        "fold1",
        "Subject: hello\r\n Via: SIP/2.0/UDP 10.0.0.66:5060;branch=z9hG4bKevil\r\n",
        "",
    );
    peer.send(&msg);
    let r = peer.recv_response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.vias().unwrap().len(),
        1,
        "the folded text stays inside Subject"
    );
}

#[test]
fn oversized_tcp_message_closes_the_connection_and_service_continues() {
    let srv = start(|c| c.max_message_size = 8192);
    let mut peer = TcpPeer::connect(srv.tcp());
    let port = peer.port();
    let big = request(
        "OPTIONS",
        "sip:bob@127.0.0.1",
        "TCP",
        port,
        "big1",
        &format!("X-Big: {}\r\n", "b".repeat(70_000)),
        "",
    );
    let _ = peer.stream.set_write_timeout(Some(WAIT));
    let _ = std::io::Write::write_all(&mut peer.stream, big.as_bytes());
    assert!(peer.closed_within(WAIT));
    let mut again = TcpPeer::connect(srv.tcp());
    let port = again.port();
    again.send(&options("TCP", port, "big2"));
    assert_eq!(again.recv_response().status, 200);
}

#[test]
fn tcp_connections_over_the_cap_are_refused_and_idle_ones_are_closed() {
    let srv = start_manual(|c| {
        c.max_connections = 1;
        c.tcp_idle_timeout = 30;
    });
    let mut first = TcpPeer::connect(srv.tcp());
    let port = first.port();
    first.send(&options("TCP", port, "cap1"));
    assert_eq!(first.recv_response().status, 200);
    let mut second = TcpPeer::connect(srv.tcp());
    assert!(second.closed_within(WAIT), "over the cap");
    srv.advance(Duration::from_secs(31));
    assert!(first.closed_within(WAIT), "idle connection closed");
}

fn remove_line(msg: &str, prefix: &str) -> String {
    msg.split("\r\n")
        .filter(|l| !l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn ipv6_listen_addresses_serve_options() {
    let srv = start(|c| {
        c.listen = vec![
            "udp:[::1]:0".parse().unwrap(),
            "tcp:[::1]:0".parse().unwrap(),
        ]
    });
    let sock = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let msg = options("UDP", port, "v6").replace("127.0.0.1", "[::1]");
    sock.send_to(msg.as_bytes(), srv.udp()).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let Ok(Message::Response(r)) = Message::parse(&buf[..n]) else {
        panic!("no response")
    };
    assert_eq!(r.status, 200);
    let mut tcp = TcpPeer::connect(srv.tcp());
    let port = tcp.port();
    tcp.send(&options("TCP", port, "v6t").replace("127.0.0.1", "[::1]"));
    assert_eq!(tcp.recv_response().status, 200);
}
