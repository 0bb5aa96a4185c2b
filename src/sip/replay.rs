//! Final responses kept for replay while a UDP server transaction sits in Completed
//! (RFC 3261 §17.2.2: a retransmitted request gets the same final response until Timer J
//! fires, 64·T1 = 32 s).
//!
//! Every completed transaction holds its response for the same Timer J, so responses
//! expire in the order they were stored. They are packed into large blocks in that
//! order and a block is freed whole once its newest response has expired. Under a load
//! peak this keeps tens of thousands of short-lived responses out of the general heap,
//! where one ~500-byte buffer each, freed between long-lived store pages, would leave
//! the heap fragmented (and the daemon's RSS high) long after the peak.

use std::collections::VecDeque;
use std::time::Instant;

/// Bytes per block: large enough that a block is one allocation of many responses.
const BLOCK: usize = 256 * 1024;

/// Where a stored response lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    block: u64,
    start: u32,
    len: u32,
}

struct Block {
    bytes: Vec<u8>,
    /// The latest expiry of any response in the block.
    expires: Instant,
}

/// The FIFO of stored responses.
#[derive(Default)]
pub struct ReplayLog {
    blocks: VecDeque<Block>,
    /// Sequence number of `blocks[0]`.
    first: u64,
}

impl ReplayLog {
    /// Stores `bytes` until `expires`. Expiries should not decrease from one call to the
    /// next (a constant Timer J guarantees it); an earlier one is still honoured, it
    /// only keeps its block alive for as long as the block's latest.
    pub fn push(&mut self, bytes: &[u8], expires: Instant) -> Slot {
        let fits = self
            .blocks
            .back()
            .is_some_and(|b| b.bytes.capacity() - b.bytes.len() >= bytes.len());
        if !fits {
            self.blocks.push_back(Block {
                bytes: Vec::with_capacity(BLOCK.max(bytes.len())),
                expires,
            });
        }
        let seq = self.first + self.blocks.len() as u64 - 1;
        let block = self
            .blocks
            .back_mut()
            .expect("a block was pushed above if none was there");
        let start = block.bytes.len();
        block.bytes.extend_from_slice(bytes);
        block.expires = block.expires.max(expires);
        Slot {
            block: seq,
            // Both fit: a block holds at most max(BLOCK, one message) bytes, and the
            // endpoint refuses messages anywhere near 4 GiB.
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        }
    }

    /// The response in `slot`, unless its block has been released.
    pub fn get(&self, slot: Slot) -> Option<&[u8]> {
        let index = usize::try_from(slot.block.checked_sub(self.first)?).ok()?;
        let block = self.blocks.get(index)?;
        let start = slot.start as usize;
        block.bytes.get(start..start + slot.len as usize)
    }

    /// Frees every leading block whose responses have all expired by `now`.
    pub fn release(&mut self, now: Instant) {
        while self.blocks.front().is_some_and(|b| b.expires <= now) {
            self.blocks.pop_front();
            self.first += 1;
        }
    }

    /// Bytes held in blocks (capacity, not just what is filled).
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.bytes.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn responses_come_back_until_their_block_expires() {
        let t0 = Instant::now();
        let mut log = ReplayLog::default();
        let a = log.push(b"SIP/2.0 200 OK a", t0 + Duration::from_secs(32));
        let b = log.push(b"SIP/2.0 200 OK b", t0 + Duration::from_secs(33));
        assert_eq!(log.get(a), Some(&b"SIP/2.0 200 OK a"[..]));
        assert_eq!(log.get(b), Some(&b"SIP/2.0 200 OK b"[..]));
        // One block: it lives as long as its latest response.
        log.release(t0 + Duration::from_secs(32));
        assert_eq!(log.get(a), Some(&b"SIP/2.0 200 OK a"[..]));
        log.release(t0 + Duration::from_secs(33));
        assert_eq!(log.get(a), None);
        assert_eq!(log.get(b), None);
        assert_eq!(log.held_bytes(), 0);
    }

    #[test]
    fn full_blocks_are_freed_oldest_first_and_later_slots_stay_valid() {
        let t0 = Instant::now();
        let mut log = ReplayLog::default();
        let msg = vec![b'x'; 1000];
        let slots: Vec<(Slot, Instant)> = (0..1000u64)
            .map(|i| {
                let at = t0 + Duration::from_millis(i);
                let mut m = msg.clone();
                m.extend_from_slice(&i.to_be_bytes());
                (log.push(&m, at), at)
            })
            .collect();
        assert!(log.blocks.len() >= 3);
        let held = log.held_bytes();
        log.release(t0 + Duration::from_millis(600));
        assert!(log.held_bytes() < held);
        for (i, (slot, at)) in slots.iter().enumerate() {
            match log.get(*slot) {
                Some(bytes) => assert_eq!(&bytes[1000..], &(i as u64).to_be_bytes()),
                // Only responses that expired may be gone.
                None => assert!(*at <= t0 + Duration::from_millis(600), "slot {i} lost"),
            }
        }
        log.release(t0 + Duration::from_secs(1));
        assert_eq!(log.held_bytes(), 0);
        // Sequence numbers keep counting, so a stale slot never reads a new block.
        let fresh = log.push(b"new", t0 + Duration::from_secs(40));
        assert_eq!(log.get(slots[0].0), None);
        assert_eq!(log.get(fresh), Some(&b"new"[..]));
    }

    #[test]
    fn a_response_larger_than_a_block_gets_its_own() {
        let t0 = Instant::now();
        let mut log = ReplayLog::default();
        let big = vec![7u8; BLOCK + 10];
        let s = log.push(&big, t0);
        let small = log.push(b"after", t0);
        assert_eq!(log.get(s).map(<[u8]>::len), Some(BLOCK + 10));
        assert_eq!(log.get(small), Some(&b"after"[..]));
    }
}
