//! Completed UDP non-INVITE server transactions (RFC 3261 §17.2.2): once the final
//! response is sent, a retransmitted request must get that same response until Timer J
//! fires (64·T1 = 32 s), and nothing else is left of the transaction. At 20,000 requests
//! a second that is 640,000 transactions alive at once, almost all of them only waiting
//! out Timer J, so they leave the endpoint's live tables for this compact store.
//!
//! Every entry lives for the same Timer J, so entries expire in the order they were
//! stored. They are grouped in generations of a fraction of Timer J: each generation
//! holds its responses packed in large blocks and a small index from a keyed digest of
//! the transaction key to its entry, and is freed whole once its newest entry has
//! expired. No table ever grows with the whole 32 s of traffic, so no insert pays for a
//! rehash of hundreds of thousands of entries (with one map that was a one-second
//! stall of the core loop at every doubling), no timer heap entry is needed, and the
//! short-lived responses stay out of the general heap, where they would fragment it
//! between long-lived store pages.
//!
//! An entry keeps the encoded key next to its response and a hit is checked against it,
//! so a digest collision can never answer a new request with another one's response.
//! Two live keys with the same digest in one generation (keyed per process: a peer
//! cannot aim for it) would cost the older one its replay: its retransmission would be
//! taken as a new request, as after Timer J.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, RandomState};
use std::time::{Duration, Instant};

use crate::sip::absorb::Identity;
use crate::sip::endpoint::Peer;

/// Bytes per block: large enough that a block is one allocation of many responses.
const BLOCK: usize = 256 * 1024;

/// Generations per Timer J: a lookup visits at most this many (plus one) indexes, and
/// memory is held at most one generation's span beyond Timer J.
const GENERATIONS: u32 = 8;

struct Entry {
    block: u32,
    start: u32,
    key_len: u32,
    len: u32,
    until: Instant,
    to: Peer,
}

struct Generation {
    opened: Instant,
    /// The latest expiry of any entry in the generation.
    expires: Instant,
    blocks: Vec<Vec<u8>>,
    index: HashMap<u64, Entry, BuildHasherDefault<Identity>>,
}

impl Generation {
    fn new(now: Instant) -> Generation {
        Generation {
            opened: now,
            expires: now,
            blocks: Vec::new(),
            index: HashMap::default(),
        }
    }

    /// Appends `parts` contiguously; returns (block, start).
    fn append(&mut self, parts: [&[u8]; 2]) -> (u32, u32) {
        let len = parts[0].len() + parts[1].len();
        let fits = self
            .blocks
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= len);
        if !fits {
            self.blocks.push(Vec::with_capacity(BLOCK.max(len)));
        }
        let block = self.blocks.len() - 1;
        let bytes = &mut self.blocks[block];
        let start = bytes.len();
        bytes.extend_from_slice(parts[0]);
        bytes.extend_from_slice(parts[1]);
        // Both fit: a block holds at most max(BLOCK, one message) bytes and the endpoint
        // refuses messages anywhere near 4 GiB.
        (
            u32::try_from(block).unwrap_or(u32::MAX),
            u32::try_from(start).unwrap_or(u32::MAX),
        )
    }

    fn slice(&self, block: u32, start: u32, len: u32) -> Option<&[u8]> {
        let start = start as usize;
        self.blocks
            .get(block as usize)?
            .get(start..start + len as usize)
    }
}

/// The completed transactions, oldest generation first.
pub struct Completed {
    keyed: RandomState,
    span: Duration,
    generations: VecDeque<Generation>,
    len: usize,
}

/// A stored final response and where it goes.
pub struct Replay<'a> {
    pub to: Peer,
    pub bytes: &'a [u8],
}

impl Completed {
    /// A store for transactions that each live for `timer_j`.
    pub fn new(timer_j: Duration) -> Completed {
        Completed {
            keyed: RandomState::new(),
            span: (timer_j / GENERATIONS).max(Duration::from_millis(1)),
            generations: VecDeque::new(),
            len: 0,
        }
    }

    /// The digest under which a transaction key is stored.
    pub fn digest(&self, key: &impl Hash) -> u64 {
        self.keyed.hash_one(key)
    }

    /// Stores the final response of the transaction whose key encodes to `key` (with
    /// digest `digest`) until `until`.
    pub fn insert(
        &mut self,
        digest: u64,
        key: &[u8],
        response: &[u8],
        to: Peer,
        now: Instant,
        until: Instant,
    ) {
        let open_new = self
            .generations
            .back()
            .is_none_or(|g| now >= g.opened + self.span);
        if open_new {
            self.generations.push_back(Generation::new(now));
        }
        let Some(generation) = self.generations.back_mut() else {
            return;
        };
        let (block, start) = generation.append([key, response]);
        generation.expires = generation.expires.max(until);
        let entry = Entry {
            block,
            start,
            key_len: u32::try_from(key.len()).unwrap_or(u32::MAX),
            len: u32::try_from(response.len()).unwrap_or(u32::MAX),
            until,
            to,
        };
        if generation.index.insert(digest, entry).is_none() {
            self.len += 1;
        }
    }

    /// The response stored for the key encoded as `key` (digest `digest`), if its Timer
    /// J has not fired by `now`.
    pub fn find(&self, digest: u64, key: &[u8], now: Instant) -> Option<Replay<'_>> {
        self.generations.iter().rev().find_map(|g| {
            let e = g.index.get(&digest)?;
            if e.until <= now || g.slice(e.block, e.start, e.key_len)? != key {
                return None;
            }
            let bytes = g.slice(e.block, e.start + e.key_len, e.len)?;
            Some(Replay { to: e.to, bytes })
        })
    }

    /// Frees every leading generation whose entries have all expired by `now`.
    pub fn release(&mut self, now: Instant) {
        while self.generations.front().is_some_and(|g| g.expires <= now) {
            if let Some(g) = self.generations.pop_front() {
                self.len -= g.index.len();
            }
        }
    }

    /// When the oldest generation can be freed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.generations.front().map(|g| g.expires)
    }

    /// Transactions held (expired ones included until their generation is freed).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held in blocks (capacity, not just what is filled).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.generations
            .iter()
            .flat_map(|g| &g.blocks)
            .map(Vec::capacity)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::endpoint::TransportKind;

    const J: Duration = Duration::from_secs(32);

    fn peer() -> Peer {
        Peer {
            kind: TransportKind::Udp,
            addr: "127.0.0.1:5070".parse().unwrap(),
            conn: None,
        }
    }

    fn put(c: &mut Completed, key: &str, response: &str, now: Instant) -> u64 {
        let d = c.digest(&key);
        c.insert(d, key.as_bytes(), response.as_bytes(), peer(), now, now + J);
        d
    }

    fn get<'a>(c: &'a Completed, key: &str, now: Instant) -> Option<&'a [u8]> {
        c.find(c.digest(&key), key.as_bytes(), now).map(|r| r.bytes)
    }

    #[test]
    fn responses_come_back_until_timer_j_then_their_generation_is_freed() {
        let t0 = Instant::now();
        let mut c = Completed::new(J);
        put(&mut c, "a", "SIP/2.0 200 OK a", t0);
        put(&mut c, "b", "SIP/2.0 200 OK b", t0 + Duration::from_secs(1));
        assert_eq!(get(&c, "a", t0), Some(&b"SIP/2.0 200 OK a"[..]));
        assert_eq!(get(&c, "b", t0), Some(&b"SIP/2.0 200 OK b"[..]));
        assert_eq!(get(&c, "c", t0), None);
        // Exactly at Timer J the transaction is over, even while its generation lives.
        assert_eq!(get(&c, "a", t0 + J), None);
        assert_eq!(get(&c, "b", t0 + J), Some(&b"SIP/2.0 200 OK b"[..]));
        c.release(t0 + J);
        assert_eq!(
            c.len(),
            2,
            "one generation, alive until its newest entry expires"
        );
        assert_eq!(c.next_deadline(), Some(t0 + J + Duration::from_secs(1)));
        c.release(t0 + J + Duration::from_secs(1));
        assert_eq!(c.len(), 0);
        assert_eq!(c.held_bytes(), 0);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn generations_are_freed_oldest_first_and_later_entries_stay() {
        let t0 = Instant::now();
        let mut c = Completed::new(J);
        let body = "x".repeat(1000);
        for i in 0..3200u64 {
            let at = t0 + Duration::from_millis(i * 10);
            put(&mut c, &format!("k{i}"), &format!("{body}{i}"), at);
        }
        assert!(c.generations.len() >= GENERATIONS as usize);
        let held = c.held_bytes();
        let later = t0 + J + Duration::from_secs(10);
        c.release(later);
        assert!(c.held_bytes() < held);
        assert!(c.len() < 3200);
        for i in 0..3200u64 {
            let expires = t0 + Duration::from_millis(i * 10) + J;
            let found = get(&c, &format!("k{i}"), later);
            if expires > later {
                assert_eq!(
                    found,
                    Some(format!("{body}{i}").as_bytes()),
                    "entry {i} lost"
                );
            } else {
                assert_eq!(found, None, "entry {i} outlived Timer J");
            }
        }
    }

    #[test]
    fn a_digest_hit_with_another_key_is_not_an_answer() {
        let t0 = Instant::now();
        let mut c = Completed::new(J);
        let d = put(&mut c, "mine", "SIP/2.0 200 OK", t0);
        // The same digest presented with different key bytes: a collision.
        assert!(c.find(d, b"theirs", t0).is_none());
        assert!(c.find(d, b"mine", t0).is_some());
    }

    #[test]
    fn a_response_larger_than_a_block_gets_its_own() {
        let t0 = Instant::now();
        let mut c = Completed::new(J);
        let big = "y".repeat(BLOCK + 10);
        put(&mut c, "big", &big, t0);
        put(&mut c, "small", "after", t0);
        assert_eq!(get(&c, "big", t0).map(<[u8]>::len), Some(BLOCK + 10));
        assert_eq!(get(&c, "small", t0), Some(&b"after"[..]));
    }
}
