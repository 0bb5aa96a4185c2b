//! Parse and serialize cost of the two messages a presence server sees most: a PUBLISH
//! carrying a PIDF document and a SUBSCRIBE refresh.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use presenced::sip::message::Message;
use std::hint::black_box;

const PIDF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@example.com">
  <tuple id="t8a2b3c4">
    <status><basic>open</basic></status>
    <contact priority="0.8">sip:alice@192.0.2.10:5060;transport=tcp</contact>
    <note xml:lang="en">Available for calls</note>
    <timestamp>2024-05-01T10:22:31Z</timestamp>
  </tuple>
  <dm:person id="p1">
    <rpid:activities><rpid:on-the-phone/></rpid:activities>
    <rpid:mood><rpid:happy/></rpid:mood>
    <dm:note>In a meeting until noon</dm:note>
  </dm:person>
</presence>
"#;

fn publish() -> Vec<u8> {
    let head = format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
User-Agent: bench/1.0\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: {}\r\n\r\n",
        PIDF.len()
    );
    [head.as_bytes(), PIDF.as_bytes()].concat()
}

const SUBSCRIBE: &[u8] = b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.20:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Watcher\" <sip:watcher@example.com>;tag=xfg9\r\n\
To: <sip:bob@example.com>;tag=ffd2\r\n\
Call-ID: 12345678@192.0.2.20\r\n\
CSeq: 17766 SUBSCRIBE\r\n\
Contact: <sip:watcher@192.0.2.20:5060;transport=tcp>\r\n\
Event: presence\r\n\
Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n\
Supported: eventlist\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

fn bench_message(c: &mut Criterion, name: &str, bytes: &[u8]) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse", |b| b.iter(|| Message::parse(black_box(bytes))));
    group.bench_function("parse+check", |b| {
        b.iter(|| match Message::parse(black_box(bytes)) {
            Ok(Message::Request(r)) => r.check().is_ok(),
            _ => false,
        })
    });
    let parsed = Message::parse(bytes).expect("benchmark message parses");
    group.bench_function("serialize", |b| b.iter(|| black_box(&parsed).to_bytes()));
    group.bench_function("parse+serialize", |b| {
        b.iter(|| Message::parse(black_box(bytes)).map(|m| m.to_bytes()))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_message(c, "publish_pidf", &publish());
    bench_message(c, "subscribe", SUBSCRIBE);
}

criterion_group!(parse, benches);
criterion_main!(parse);
