//! Property tests for the message layer: hostile input never panics the parser, the
//! checks or the framer; generated valid requests survive serialize → parse; and the
//! framer cuts a stream the same way however the stream is split.

use presenced::sip::framing::{Frame, StreamFramer};
use presenced::sip::header::{NameAddr, Params};
use presenced::sip::message::{Message, Method, Request};
use presenced::sip::uri::{Host, Scheme, SipUri, Uri};
use proptest::prelude::*;

/// Whatever the parser accepted serializes to bytes that parse back to the same bytes.
fn assert_serialization_is_a_fixed_point(msg: &Message) {
    let bytes = msg.to_bytes();
    let again = Message::parse(&bytes)
        .unwrap_or_else(|e| panic!("{e:?} re-parsing {:?}", String::from_utf8_lossy(&bytes)));
    assert_eq!(
        String::from_utf8_lossy(&again.to_bytes()),
        String::from_utf8_lossy(&bytes)
    );
}

/// Exercises everything a transport would do with untrusted bytes.
fn poke(bytes: &[u8]) {
    match Message::parse(bytes) {
        Ok(Message::Request(r)) => {
            let _ = r.check();
            let h = &r.headers;
            let _ = (
                h.vias(),
                h.contacts(),
                h.routes(),
                h.record_routes(),
                h.event(),
            );
            let _ = (
                h.subscription_state(),
                h.content_type(),
                h.accept(),
                h.authorization(),
            );
            let _ = (
                h.expires(),
                h.allow_events(),
                h.supported(),
                h.to(),
                h.from(),
            );
            assert_serialization_is_a_fixed_point(&Message::Request(r));
        }
        Ok(Message::Response(r)) => {
            let _ = (r.headers.cseq(), r.headers.vias());
            assert_serialization_is_a_fixed_point(&Message::Response(r));
        }
        Err(e) => {
            let _ = e.response_status();
            let _ = Request::salvage(bytes);
        }
    }
    let mut framer = StreamFramer::new(4096);
    framer.push(bytes);
    while let Ok(Some(Frame::Message(m))) = framer.next_frame() {
        let _ = Message::parse(&m);
    }
}

/// Bytes drawn mostly from characters that mean something to a SIP parser.
fn sipish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> =
        b"INVITE SUBSCRIBE sip:a@b;lr?x=y SIP/2.0\r\n\r\n:;,<>\"\\%=[]::1 0123456789vVlLiImM\t\xff\x00".to_vec();
    prop::collection::vec(prop::sample::select(alphabet), 0..600)
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z][a-z0-9-]{0,8}", 1..4).prop_map(|labels| labels.join("."))
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        domain().prop_map(Host::Domain),
        any::<[u8; 4]>().prop_map(|o| Host::V4(o.into())),
        any::<[u16; 8]>().prop_map(|s| Host::V6(s.into())),
    ]
}

/// Any text without CR/LF (which cannot survive a header line).
fn line_text() -> impl Strategy<Value = String> {
    "[^\r\n]{0,24}"
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        any::<bool>(),
        prop::option::of("[^\r\n]{1,12}"),
        prop::option::of("[^\r\n]{0,6}"),
        host(),
        prop::option::of(any::<u16>()),
        prop::collection::vec(("[a-z][a-z0-9-]{0,6}", prop::option::of(line_text())), 0..3),
    )
        .prop_map(|(secure, user, password, host, port, params)| SipUri {
            scheme: if secure { Scheme::Sips } else { Scheme::Sip },
            password: user.as_ref().and(password),
            user,
            host,
            port,
            params,
            headers: Vec::new(),
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Publish),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Options),
        Just(Method::Register),
        "[A-Z][A-Z0-9_]{0,8}".prop_map(|m| Method::from_token(&m)),
    ]
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (
        prop::option::of("[^\r\n]{0,16}"),
        sip_uri(),
        prop::option::of(token()),
    )
        .prop_map(|(display, uri, tag)| {
            let mut params = Params::default();
            if let Some(t) = tag {
                params.set("tag", Some(t));
            }
            NameAddr {
                display,
                uri: Uri::Sip(uri),
                params,
            }
        })
}

prop_compose! {
    fn valid_request()(
        method in method(),
        uri in sip_uri(),
        from in name_addr(),
        to in name_addr(),
        call_id in "[a-zA-Z0-9.-]{1,20}(@[a-z0-9.]{1,10})?",
        seq in any::<u32>(),
        branch in "[a-zA-Z0-9]{1,16}",
        extra in prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[^\r\n]{0,30}"), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) -> Request {
        let mut r = Request::new(method.clone(), Uri::Sip(uri));
        r.headers.push("Via", format!("SIP/2.0/TCP host.example.com;branch=z9hG4bK{branch}"));
        r.headers.push("From", from.to_string());
        r.headers.push("To", to.to_string());
        r.headers.push("Call-ID", call_id);
        r.headers.push("CSeq", format!("{seq} {method}"));
        r.headers.push("Max-Forwards", "70");
        for (name, value) in extra {
            r.headers.push(&name, value);
        }
        r.body = body;
        r
    }
}

/// A valid message to corrupt.
fn seed_message() -> Vec<u8> {
    b"PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: 18\r\n\
\r\n\
<presence></presence>"
        .to_vec()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    DuplicateLine(usize),
    Insert(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (
            any::<usize>(),
            prop::sample::select(b"\r\n \t:;,<>\"\\%\x00".to_vec())
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match *m {
        Mutation::Flip(i, b) => {
            let i = i % bytes.len();
            bytes[i] ^= b;
        }
        Mutation::Truncate(i) => bytes.truncate(i % bytes.len()),
        Mutation::DuplicateLine(i) => {
            let starts: Vec<usize> = std::iter::once(0)
                .chain(
                    bytes
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .filter(|s| *s < bytes.len())
                .collect();
            let start = starts[i % starts.len()];
            let end = bytes[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |p| start + p + 1);
            let line = bytes[start..end].to_vec();
            bytes.splice(start..start, line);
        }
        Mutation::Insert(i, b) => {
            let i = i % bytes.len();
            bytes.insert(i, b);
        }
    }
}

fn frames_of(chunks: &[&[u8]]) -> Result<Vec<Frame>, presenced::sip::error::ParseError> {
    let mut framer = StreamFramer::new(64 * 1024);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(f) = framer.next_frame()? {
            out.push(f);
        }
    }
    Ok(out)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        poke(&bytes);
    }

    #[test]
    fn sip_shaped_noise_never_panics(bytes in sipish_bytes()) {
        poke(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(muts in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = seed_message();
        for m in &muts {
            apply(&mut bytes, m);
        }
        poke(&bytes);
    }

    #[test]
    fn generated_requests_round_trip(req in valid_request()) {
        prop_assert_eq!(req.check(), Ok(()));
        let bytes = req.to_bytes();
        let parsed = match Message::parse(&bytes) {
            Ok(Message::Request(r)) => r,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(&parsed.method, &req.method);
        prop_assert_eq!(&parsed.uri, &req.uri);
        prop_assert_eq!(&parsed.body, &req.body);
        prop_assert_eq!(parsed.check(), Ok(()));
        let mut expected = req.headers.clone();
        expected.push("Content-Length", req.body.len().to_string());
        prop_assert_eq!(&parsed.headers, &expected);
        prop_assert_eq!(parsed.headers.from().unwrap().to_string(), req.headers.get("From").unwrap());
        prop_assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn name_addr_display_parses_back(na in name_addr()) {
        prop_assert_eq!(NameAddr::parse(&na.to_string()), Ok(na));
    }

    #[test]
    fn uri_display_parses_back(u in sip_uri()) {
        let uri = Uri::Sip(u);
        prop_assert_eq!(Uri::parse(&uri.to_string()), Ok(uri));
    }

    #[test]
    fn framer_is_independent_of_how_the_stream_is_split(
        reqs in prop::collection::vec((valid_request(), any::<bool>()), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (req, ping) in &reqs {
            let bytes = req.to_bytes();
            stream.extend_from_slice(&bytes);
            expected.push(Frame::Message(bytes));
            if *ping {
                stream.extend_from_slice(b"\r\n\r\n");
                expected.push(Frame::Keepalive);
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&stream[last..p]);
            last = p;
        }
        chunks.push(&stream[last..]);
        prop_assert_eq!(frames_of(&[&stream]), Ok(expected.clone()));
        prop_assert_eq!(frames_of(&chunks), Ok(expected));
    }
}
