//! What a full queue for new work does with a UDP request. Dropping it would have its
//! client retransmit into the overload, again and again for 32 s (RFC 3261 §17.1.2.2),
//! so that the server spends more and more on requests it never answers; instead a new
//! request is refused with 503 and Retry-After at once (RFC 3261 §21.5.4), which ends
//! its client transaction. A retransmission is the exception: its request is queued or
//! was answered a moment ago, and a 503 would contradict that answer, so it is dropped
//! (the original's answer, or the replay of it, reaches the client).
//!
//! Retransmissions are recognised by the digest of their bytes (RFC 3261 §17.1.2.2: a
//! retransmission is the same message): every new request that enters the queue is
//! remembered, in two generations swapped every five seconds, and every later sighting
//! of it (queued again, or dropped) remembers it afresh. A client retransmits at most
//! T2 (4 s) apart, so a request stays known for as long as its client keeps sending it;
//! the server's replay of its answer (Timer J, 32 s) covers the copies that get queued.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one generation of digests lasts.
const GENERATION: Duration = Duration::from_secs(5);

/// Digests of the new requests queued recently.
pub struct Recent {
    hasher: std::collections::hash_map::RandomState,
    gens: Mutex<Generations>,
}

struct Generations {
    current: HashSet<u64>,
    previous: HashSet<u64>,
    started: Option<Instant>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            hasher: std::collections::hash_map::RandomState::new(),
            gens: Mutex::new(Generations {
                current: HashSet::new(),
                previous: HashSet::new(),
                started: None,
            }),
        }
    }
}

impl Recent {
    /// The digest of a message's bytes (keyed per process, so a peer cannot aim at it).
    pub fn digest(&self, bytes: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(bytes);
        h.finish()
    }

    /// Remembers a request that entered the queue.
    pub fn queued(&self, digest: u64, now: Instant) {
        let mut g = self.lock(now);
        g.current.insert(digest);
    }

    /// Whether `digest` was seen within the last five to ten seconds; if so it is
    /// remembered afresh.
    pub fn seen(&self, digest: u64, now: Instant) -> bool {
        let mut g = self.lock(now);
        if g.current.contains(&digest) {
            return true;
        }
        if g.previous.contains(&digest) {
            g.current.insert(digest);
            return true;
        }
        false
    }

    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, Generations> {
        // Each step leaves the sets usable: a panic elsewhere cannot have broken them.
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        match g.started {
            Some(t) if now.saturating_duration_since(t) < GENERATION => {}
            Some(t) => {
                let old = std::mem::take(&mut g.current);
                // A quiet spell longer than a generation forgets both.
                g.previous = if now.saturating_duration_since(t) < 2 * GENERATION {
                    old
                } else {
                    HashSet::new()
                };
                g.started = Some(now);
            }
            None => g.started = Some(now),
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_remembered_while_it_keeps_being_seen() {
        let r = Recent::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let a = r.digest(b"PUBLISH one");
        let b = r.digest(b"PUBLISH two");
        assert_ne!(a, b);
        assert_eq!(a, r.digest(b"PUBLISH one"));
        r.queued(a, t0);
        assert!(r.seen(a, t0));
        assert!(!r.seen(b, t0));
        // Seen every 4 s (T2, the longest gap between retransmissions): never forgotten.
        for k in 1..=10 {
            assert!(r.seen(a, t0 + s(4 * k)), "forgotten after {} s", 4 * k);
        }
        // Not seen again: gone within two generations.
        assert!(!r.seen(a, t0 + s(51)));
        r.queued(b, t0 + s(52));
        assert!(r.seen(b, t0 + s(58)));
        // A long quiet spell forgets everything.
        assert!(!r.seen(b, t0 + s(600)));
    }
}
