//! Fuzzes the network edge: datagram parsing, request checks, serialization and the
//! stream framer must never panic, and serialization must be a fixed point. Credentials
//! and challenges (Authorization, Proxy-Authorization, WWW-Authenticate) are parsed and
//! read as digest credentials too. The same bytes are also read as a WebSocket client's
//! frames (RFC 6455, with the listeners' limits), and each SIP message they carry is
//! parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::auth::digest::Credentials;
use presenced::sip::framing::{Frame, StreamFramer};
use presenced::sip::header::AuthValue;
use presenced::sip::message::{Message, Request};
use presenced::transport::ws::{self, Received};

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(msg) => {
            if let Message::Request(r) = &msg {
                let _ = r.check();
                let _ = (r.headers.vias(), r.headers.contacts(), r.headers.event());
                for name in ["Authorization", "Proxy-Authorization", "WWW-Authenticate"] {
                    for raw in r.headers.get_all(name) {
                        if let Ok(v) = AuthValue::parse(raw) {
                            let _ = Credentials::from_header(&v);
                        }
                    }
                }
            }
            let bytes = msg.to_bytes();
            let again = Message::parse(&bytes).expect("serialized message parses");
            assert_eq!(again.to_bytes(), bytes, "serialization is a fixed point");
        }
        Err(e) => {
            let _ = e.response_status();
            let _ = Request::salvage(data);
        }
    }

    // Feed the same bytes as a stream, split in two at a data-dependent point.
    let split = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut framer = StreamFramer::new(8 * 1024);
    for chunk in [&data[..split], &data[split..]] {
        framer.push(chunk);
        while let Ok(Some(frame)) = framer.next_frame() {
            if let Frame::Message(m) = frame {
                let _ = Message::parse(&m);
            }
        }
    }

    // As WebSocket frames: one SIP message per data frame (RFC 7118 §5).
    let (messages, _) = ws::decode(data, 8 * 1024);
    for m in messages {
        if let Received::Sip(bytes) = m {
            assert!(
                bytes.len() <= 8 * 1024,
                "a message past the limit got through"
            );
            let _ = Message::parse(&bytes);
        }
    }
});
