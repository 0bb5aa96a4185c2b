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
//! remembered for two to four seconds, in two generations swapped every two seconds.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one generation of digests lasts.
const GENERATION: Duration = Duration::from_secs(2);

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

    /// Whether `digest` entered the queue within the last two to four seconds.
    pub fn seen(&self, digest: u64, now: Instant) -> bool {
        let g = self.lock(now);
        g.current.contains(&digest) || g.previous.contains(&digest)
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
    fn a_digest_is_remembered_for_two_to_four_seconds() {
        let r = Recent::default();
        let t0 = Instant::now();
        let a = r.digest(b"PUBLISH one");
        let b = r.digest(b"PUBLISH two");
        assert_ne!(a, b);
        assert_eq!(a, r.digest(b"PUBLISH one"));
        r.queued(a, t0);
        assert!(r.seen(a, t0));
        assert!(!r.seen(b, t0));
        assert!(r.seen(a, t0 + Duration::from_millis(1999)));
        // Swapped into the previous generation, still seen.
        r.queued(b, t0 + Duration::from_millis(2500));
        assert!(r.seen(a, t0 + Duration::from_millis(3000)));
        // Two swaps later it is gone; b is in the previous generation.
        assert!(!r.seen(a, t0 + Duration::from_millis(4600)));
        assert!(r.seen(b, t0 + Duration::from_millis(4600)));
        // A long quiet spell forgets everything.
        assert!(!r.seen(b, t0 + Duration::from_secs(60)));
    }
}
