//! The whole server without sockets (sans-I/O `Core` on a real sled store): the hot
//! paths a presence box lives on — PUBLISH, SUBSCRIBE with its NOTIFY, and one PUBLISH
//! fanned out to ten watchers with every NOTIFY answered.

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use presenced::config::Config;
use presenced::core::Core;
use presenced::sip::endpoint::{Peer, Source, TransportKind};
use presenced::sip::message::{Message, Method, Response};
use presenced::store::{Store, StoreOptions};

const SERVER: &str = "127.0.0.1:5060";

fn source(port: u16) -> Source {
    Source {
        peer: Peer {
            kind: TransportKind::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conn: None,
        },
        local: SERVER.parse().unwrap(),
    }
}

fn server(dir: &tempfile::TempDir) -> Core {
    let config = Config::default();
    let store = Store::open(
        &dir.path().join("db"),
        StoreOptions {
            cache_capacity: config.cache_capacity,
            sync_always: false,
        },
    )
    .unwrap();
    Core::from_config(
        &config,
        store,
        &[(TransportKind::Udp, SERVER.parse().unwrap())],
        Vec::new(),
    )
}

fn pidf(note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" \
         entity=\"sip:alice@example.com\"><tuple id=\"t1\"><status><basic>open</basic></status>\
         <note>{note}</note></tuple><dm:person id=\"p1\"><rpid:activities><rpid:busy/></rpid:activities>\
         </dm:person></presence>"
    )
}

fn publish(n: u64, etag: Option<&str>, body: &str) -> Vec<u8> {
    let ifm = etag
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKp{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: p{n}@bench\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n{ifm}\
         Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn subscribe(n: u64, port: u16) -> Vec<u8> {
    format!(
        "SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKs{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:w{n}@example.com>;tag=w{n}\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: s{n}@bench\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w{n}@127.0.0.1:{port}>\r\n\
         Event: presence\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Drains what the server sends; answers every NOTIFY with 200 (as the watcher would).
/// Returns the ETag of the last PUBLISH response seen and the NOTIFY count.
fn pump(s: &mut Core, now: Instant) -> (Option<String>, usize) {
    let mut etag = None;
    let mut notifies = 0;
    loop {
        // A flush the core asks for runs here, as the daemon's flush thread would.
        if let Some(seq) = s.poll_flush(now) {
            s.engine().store().flush().unwrap();
            s.flushed(seq, now, 1_000_000);
        }
        let mut answers = Vec::new();
        while let Some(t) = s.poll_transmit() {
            match Message::parse(&t.bytes) {
                Ok(Message::Response(r)) => {
                    if let Some(e) = r.headers.sip_etag() {
                        etag = Some(e.to_string());
                    }
                }
                Ok(Message::Request(r)) if r.method == Method::Notify => {
                    notifies += 1;
                    answers.push((
                        Response::for_request(&r, 200, None).to_bytes(),
                        t.to.addr.port(),
                    ));
                }
                _ => {}
            }
        }
        if answers.is_empty() {
            return (etag, notifies);
        }
        for (bytes, port) in answers {
            s.handle_incoming(&bytes, source(port), now, 1_000_000);
        }
    }
}

fn benches(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(1));

    let dir = tempfile::tempdir().unwrap();
    let mut s = server(&dir);
    s.handle_incoming(
        &publish(0, None, &pidf("start")),
        source(7000),
        now,
        1_000_000,
    );
    let mut etag = pump(&mut s, now).0.unwrap();
    let mut n = 1u64;
    g.bench_function("publish_modify", |b| {
        b.iter(|| {
            n += 1;
            s.handle_incoming(
                &publish(n, Some(&etag), &pidf("busy")),
                source(7000),
                now,
                1_000_000,
            );
            etag = pump(&mut s, now).0.unwrap();
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let mut s = server(&dir);
    let mut n = 0u64;
    g.bench_function("subscribe_and_notify", |b| {
        b.iter(|| {
            n += 1;
            s.handle_incoming(&subscribe(n, 8000), source(8000), now, 1_000_000);
            assert_eq!(pump(&mut s, now).1, 1);
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let mut s = server(&dir);
    for w in 0..10 {
        s.handle_incoming(
            &subscribe(w, 9000 + w as u16),
            source(9000 + w as u16),
            now,
            1_000_000,
        );
        pump(&mut s, now);
    }
    s.handle_incoming(
        &publish(0, None, &pidf("start")),
        source(7000),
        now,
        1_000_000,
    );
    let mut etag = pump(&mut s, now).0.unwrap();
    let mut n = 1u64;
    g.throughput(Throughput::Elements(10));
    g.bench_function("publish_fanout_10_notifies", |b| {
        b.iter_batched(
            || (),
            |_| {
                n += 1;
                s.handle_incoming(
                    &publish(n, Some(&etag), &pidf(&format!("n{n}"))),
                    source(7000),
                    now,
                    1_000_000,
                );
                let (e, notifies) = pump(&mut s, now);
                assert_eq!(notifies, 10);
                etag = e.unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(server_benches, benches);
criterion_main!(server_benches);
