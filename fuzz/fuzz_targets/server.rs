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
//!
//! An input whose first byte has its top bit set runs with `auth = "digest"` and one
//! account, alice@example.com / pw: `$AUTH` in a datagram becomes a correct
//! Authorization value for it (its method and Request-URI, the last challenge's nonce,
//! the next nonce count), so the authenticated paths are reachable, and `$NONCE` the
//! last nonce as it was sent.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use presenced::auth::digest;
use presenced::config::{AuthMode, Config};
use presenced::sip::endpoint::{ClientTxId, Peer, Source};
use presenced::sip::header::AuthValue;
use presenced::sip::message::{Message, Method, Request, Response};
use presenced::store::{Store, StoreOptions, Subscriber};
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
    /// The last WWW-Authenticate the server sent, and the nonce counts used on it.
    challenge: Option<String>,
    nc: u32,
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
                if let Some(c) = r.headers.get("WWW-Authenticate") {
                    seen.challenge = Some(c.to_owned());
                    seen.nc = 0;
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

/// `datagram` with `$ETAG`, `$TAG`, `$NONCE` and `$AUTH` replaced (see the module doc).
fn substitute(datagram: &[u8], seen: &mut Seen) -> Vec<u8> {
    let challenge = seen
        .challenge
        .as_deref()
        .and_then(|c| AuthValue::parse(c).ok());
    let nonce = challenge
        .as_ref()
        .and_then(|c| c.param("nonce").map(str::to_owned));
    let mut out = datagram.to_vec();
    for (mark, value) in [
        ("$ETAG", &seen.etag),
        ("$TAG", &seen.to_tag),
        ("$NONCE", &nonce),
    ] {
        let value = value.as_deref().unwrap_or("none");
        replace(&mut out, mark, value);
    }
    const AUTH: &str = "$AUTH";
    if out.windows(AUTH.len()).any(|w| w == AUTH.as_bytes()) {
        // The request line names the method and the URI the credentials are for.
        let line = out.split(|b| *b == b'\r').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line).into_owned();
        let mut parts = line.split(' ');
        let (method, uri) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        seen.nc += 1;
        let value = challenge
            .as_ref()
            .and_then(|c| digest::answer(c, "alice", "pw", method, uri, seen.nc, "f"))
            .unwrap_or_default();
        replace(&mut out, AUTH, &value);
    }
    out
}

fn replace(out: &mut Vec<u8>, mark: &str, value: &str) {
    let mut from = 0;
    while let Some(at) = out[from..]
        .windows(mark.len())
        .position(|w| w == mark.as_bytes())
    {
        let at = from + at;
        out.splice(at..at + mark.len(), value.bytes());
        from = at + value.len();
    }
}

fuzz_target!(|data: &[u8]| {
    fastrand::seed(0);
    let mut config = Config::default();
    let store = Store::open_temporary(StoreOptions {
        cache_capacity: 1 << 20,
        sync_always: false,
    })
    .expect("a temporary store");
    if data.first().is_some_and(|b| b & 0x80 != 0) {
        config.auth = Some(AuthMode::Digest);
        store
            .put_subscriber(&Subscriber::with_password("alice", "example.com", "pw"))
            .expect("an account");
    }
    let mut pair = Pair::on_store(&config, store, Vec::new());
    let mut seen = Seen::default();

    for step in steps(data) {
        let Some((&op, rest)) = step.split_first() else {
            continue;
        };
        match op % 4 {
            0 | 1 => {
                let datagram = substitute(rest, &mut seen);
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
