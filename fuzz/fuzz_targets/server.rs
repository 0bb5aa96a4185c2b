//! Fuzzes the whole sans-I/O server on a fresh in-memory store: a script of datagrams
//! from a handful of peers, clock jumps (timers and expiry deadlines), answers to the
//! NOTIFYs it sent, and delivery failures. It must never panic, and every message it
//! sends must parse back (we never put a malformed message on the wire).
//!
//! Input: steps separated by two NUL bytes. A step's first byte picks what it is:
//! - `op % 4 < 2`: the rest is one datagram from peer `op / 4 % 4` (UDP, or TCP for odd
//!   peers). `$ETAG` and `$TAG` in it become the last SIP-ETag the server answered with
//!   and the To-tag of its last answer to a SUBSCRIBE, so refreshes, modifications and in-dialog requests are
//!   reachable;
//! - `op % 4 == 2`: the clock moves on by the next byte × 8 s, then timers and the deadlines
//!   run;
//! - `op % 4 == 3`: every unanswered NOTIFY gets a response whose status the next byte
//!   picks, or (status 0) its client transaction reports a transport error.
//!
//! The random tokens (tags, ETags, branches) come from a generator seeded per input, so
//! a crash replays.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use presenced::config::Config;
use presenced::sip::endpoint::{ClientTxId, Peer, Source};
use presenced::sip::message::{Message, Method, Request, Response};
use presenced::testing::Pair;

const STATUSES: [u16; 7] = [0, 200, 202, 408, 481, 489, 500];

fn source(peer: u8) -> Source {
    // A TCP peer comes with its connection, as the transport reports it.
    let addr = SocketAddr::from(([127, 0, 0, 1], 5070 + u16::from(peer)));
    if peer % 2 == 0 {
        Pair::udp(addr)
    } else {
        Pair::tcp(addr, u64::from(peer))
    }
}

/// What the script can refer back to.
#[derive(Default)]
struct Seen {
    /// NOTIFYs not answered yet, with their transaction and where they went.
    pending: Vec<(Request, Option<ClientTxId>, Peer)>,
    etag: Option<String>,
    to_tag: Option<String>,
}

/// Takes what the server sent; every message must parse.
fn drain(pair: &mut Pair, seen: &mut Seen) {
    for t in pair.take_all() {
        match Message::parse(&t.bytes) {
            Ok(Message::Request(r)) if r.method == Method::Notify => {
                seen.pending.push((r, t.tx, t.to))
            }
            Ok(Message::Request(_)) => {}
            Ok(Message::Response(r)) => {
                if let Some(etag) = r.headers.sip_etag() {
                    seen.etag = Some(etag.to_owned());
                }
                let to_subscribe = r
                    .headers
                    .cseq()
                    .is_ok_and(|c| c.method == Method::Subscribe);
                if let Some(tag) = r
                    .headers
                    .to()
                    .ok()
                    .and_then(|to| to.tag().map(str::to_owned))
                    && to_subscribe
                {
                    seen.to_tag = Some(tag);
                }
            }
            Err(e) => panic!(
                "server sent a message that does not parse ({e:?}):\n{}",
                String::from_utf8_lossy(&t.bytes)
            ),
        }
    }
}

/// `datagram` with `$ETAG` and `$TAG` replaced by what the server last answered with.
fn substitute(datagram: &[u8], seen: &Seen) -> Vec<u8> {
    let mut out = datagram.to_vec();
    for (mark, value) in [("$ETAG", &seen.etag), ("$TAG", &seen.to_tag)] {
        let value = value.as_deref().unwrap_or("none");
        while let Some(at) = out.windows(mark.len()).position(|w| w == mark.as_bytes()) {
            out.splice(at..at + mark.len(), value.bytes());
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    fastrand::seed(0);
    let mut pair = Pair::new(&Config::default());
    let mut seen = Seen::default();

    for step in steps(data) {
        let Some((&op, rest)) = step.split_first() else {
            continue;
        };
        match op % 4 {
            0 | 1 => {
                let datagram = substitute(rest, &seen);
                pair.deliver(source(op / 4 % 4), &datagram);
            }
            2 => {
                let secs = u64::from(rest.first().copied().unwrap_or(1)) * 8;
                pair.advance(Duration::from_secs(secs));
            }
            _ => {
                let pick = rest.first().copied().unwrap_or(1);
                let status = STATUSES[usize::from(pick) % STATUSES.len()];
                for (notify, tx, to) in std::mem::take(&mut seen.pending) {
                    if status == 0 {
                        if let Some(tx) = tx {
                            pair.transport_error(tx);
                        }
                        continue;
                    }
                    let answer = Response::for_request(&notify, status, None).to_bytes();
                    let from = Source {
                        peer: to,
                        local: presenced::testing::SERVER.parse().expect("literal address"),
                    };
                    pair.deliver(from, &answer);
                }
            }
        }
        drain(&mut pair, &mut seen);
    }
});

/// The steps of one input: split at every pair of NUL bytes.
fn steps(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 {
            out.push(&data[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}
