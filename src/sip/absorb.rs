//! Completed client transactions over UDP (RFC 3261 §17.1.2.2). Once the final response
//! has arrived, a non-INVITE client transaction only waits out Timer K (T4) so that
//! retransmissions of that response are absorbed instead of reaching the core. The
//! request, the peer and the timers are no longer needed, so the endpoint keeps just a
//! 64-bit digest of the transaction key in a FIFO: every entry lives for the same T4, so
//! they expire in insertion order. At tens of thousands of NOTIFYs a second this is a
//! few bytes per transaction instead of a full one, and no timer heap entry.
//!
//! A digest collision could only absorb a response that matches no live transaction,
//! which the endpoint would drop anyway; the digests are keyed per process, so a peer
//! cannot aim for one.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::time::{Duration, Instant};

/// The digests are already uniform, so sets and maps keyed by them use them as their
/// own hash.
#[derive(Default)]
pub(crate) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Digests of completed client transactions, each kept for `ttl`.
pub struct Absorber {
    ttl: Duration,
    keyed: RandomState,
    live: HashSet<u64, BuildHasherDefault<Identity>>,
    fifo: VecDeque<(Instant, u64)>,
}

impl Absorber {
    pub fn new(ttl: Duration) -> Absorber {
        Absorber {
            ttl,
            keyed: RandomState::new(),
            live: HashSet::default(),
            fifo: VecDeque::new(),
        }
    }

    /// The digest of a client transaction key (top Via branch, CSeq method).
    pub fn digest(&self, branch: &str, method: &str) -> u64 {
        self.keyed.hash_one((branch, method))
    }

    /// The transaction with this digest completed at `now`.
    pub fn insert(&mut self, digest: u64, now: Instant) {
        if self.live.insert(digest) {
            self.fifo.push_back((now + self.ttl, digest));
        }
    }

    /// Whether a response with this digest belongs to a completed transaction.
    pub fn absorbs(&self, digest: u64) -> bool {
        self.live.contains(&digest)
    }

    /// Forgets every transaction whose Timer K fired by `now`.
    pub fn release(&mut self, now: Instant) {
        while let Some(&(at, digest)) = self.fifo.front() {
            if at > now {
                break;
            }
            self.fifo.pop_front();
            self.live.remove(&digest);
        }
        if self.fifo.capacity() > 4 * self.fifo.len() + 1024 {
            self.fifo.shrink_to(2 * self.fifo.len());
            self.live.shrink_to(2 * self.live.len());
        }
    }

    /// When the oldest entry expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.fifo.front().map(|&(at, _)| at)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.fifo.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbs_until_timer_k_then_forgets_in_order() {
        let t0 = Instant::now();
        let mut a = Absorber::new(Duration::from_secs(5));
        let first = a.digest("z9hG4bKone", "NOTIFY");
        let second = a.digest("z9hG4bKtwo", "NOTIFY");
        assert_ne!(first, second);
        assert_ne!(first, a.digest("z9hG4bKone", "SUBSCRIBE"));
        a.insert(first, t0);
        a.insert(second, t0 + Duration::from_secs(2));
        assert!(a.absorbs(first) && a.absorbs(second));
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(5)));
        a.release(t0 + Duration::from_millis(4999));
        assert_eq!(a.len(), 2);
        a.release(t0 + Duration::from_secs(5));
        assert!(!a.absorbs(first) && a.absorbs(second));
        a.release(t0 + Duration::from_secs(7));
        assert_eq!(a.len(), 0);
        assert!(!a.absorbs(second));
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn the_same_transaction_twice_is_one_entry() {
        let t0 = Instant::now();
        let mut a = Absorber::new(Duration::from_secs(5));
        let d = a.digest("z9hG4bKx", "NOTIFY");
        a.insert(d, t0);
        a.insert(d, t0 + Duration::from_secs(1));
        assert_eq!(a.len(), 1);
    }
}
