//! A count-min sketch of group sizes: a fixed-size table of counters that every write
//! keeps up to date, so "could this group have reached N rows?" is answered in a few
//! nanoseconds and without touching the tree. Rows only ever enter and leave groups they
//! are in, so each counter is the sum of the true sizes of the groups hashed onto it,
//! and the smallest of a group's counters is never below its true size: an estimate
//! under the cap proves the group is under it; only an estimate at or above it needs
//! the exact count (a scan of the group's index entries).
//!
//! The hash is keyed per process (`RandomState`), so a client cannot choose watcher
//! URIs that collide and push every check onto the exact path.
//!
//! Beside it, a [`Membership`] filter (a Bloom filter) of a table's row keys: "this row
//! cannot exist" without a read of the tree, for the look-ups that nearly always miss
//! (a new watcher's watchers row).

use std::hash::{BuildHasher, RandomState};

/// Counters per row; four rows of 32,768 `u32` are 512 KiB.
const WIDTH_BITS: u32 = 15;
const WIDTH: usize = 1 << WIDTH_BITS;
const ROWS: usize = 4;

pub(super) struct Sketch {
    hasher: RandomState,
    counters: Box<[u32]>,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            hasher: RandomState::new(),
            counters: vec![0; ROWS * WIDTH].into_boxed_slice(),
        }
    }
}

impl Sketch {
    /// The counter in each row that `group` maps to, from one 64-bit hash
    /// (four 15-bit slices of it).
    fn cells(&self, group: &[u8]) -> [usize; ROWS] {
        let h = self.hasher.hash_one(group);
        std::array::from_fn(|row| {
            let slice = (h >> (row as u32 * 16)) as usize & (WIDTH - 1);
            row * WIDTH + slice
        })
    }

    /// A row entered (`up`) or left `group`.
    pub fn adjust(&mut self, group: &[u8], up: bool) {
        for cell in self.cells(group) {
            let c = &mut self.counters[cell];
            *c = if up {
                c.saturating_add(1)
            } else {
                c.saturating_sub(1)
            };
        }
    }

    /// An upper bound of `group`'s size.
    pub fn estimate(&self, group: &[u8]) -> u64 {
        self.cells(group)
            .into_iter()
            .map(|cell| u64::from(self.counters[cell]))
            .min()
            .unwrap_or(0)
    }
}

/// Bits in a [`Membership`] filter: 1 MiB. With four probes that is a 0.2 % false
/// positive rate of 0.02 % at 250,000 keys and 2 % at a million; a false positive only costs the
/// read the filter was there to save.
const FILTER_BITS: usize = 1 << 23;
const PROBES: u64 = 4;

/// A Bloom filter of keys: every key ever added answers `true`; a key never added
/// nearly always answers `false`. Removals are not tracked (a removed key stays a
/// possible one), so it only ever errs towards a read.
pub(super) struct Membership {
    hasher: RandomState,
    bits: Box<[u64]>,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            hasher: RandomState::new(),
            bits: vec![0; FILTER_BITS / 64].into_boxed_slice(),
        }
    }
}

impl Membership {
    /// The bits `key` sets, by double hashing of one 64-bit hash.
    fn probes(&self, key: &[u8]) -> impl Iterator<Item = usize> + use<> {
        let h = self.hasher.hash_one(key);
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..PROBES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) as usize) % FILTER_BITS)
    }

    pub fn add(&mut self, key: &[u8]) {
        for bit in self.probes(key) {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// `false` only for a key never added.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// Where an index entry's group ends: the tag byte, then `parts` parts, each with its
/// separator. `None` when the entry has fewer parts (it names no group).
pub(super) fn group_of(entry: &[u8], parts: usize) -> Option<&[u8]> {
    let mut end = 1;
    for _ in 0..parts {
        let sep = entry.get(end..)?.iter().position(|b| *b == 0)?;
        end += sep + 1;
    }
    entry.get(..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_group_is_the_tag_and_its_leading_parts() {
        let entry = b"vsip:a@b\0sip:c@d\0presence\0call\0t1\0t2";
        assert_eq!(group_of(entry, 1), Some(&b"vsip:a@b\0"[..]));
        assert_eq!(group_of(entry, 2), Some(&b"vsip:a@b\0sip:c@d\0"[..]));
        assert_eq!(group_of(b"vonly", 1), None);
    }

    proptest! {
        /// Whatever rows come and go, the estimate is never below the true size.
        #[test]
        fn the_estimate_never_undercounts(
            ops in prop::collection::vec((0u16..2000, any::<bool>()), 1..3000)
        ) {
            let mut sketch = Sketch::default();
            let mut truth = std::collections::HashMap::<u16, u64>::new();
            for (group, up) in ops {
                let n = truth.entry(group).or_default();
                // A row only leaves a group it is in.
                if !up && *n == 0 {
                    continue;
                }
                *n = if up { *n + 1 } else { *n - 1 };
                sketch.adjust(&group.to_be_bytes(), up);
            }
            for (group, n) in truth {
                prop_assert!(sketch.estimate(&group.to_be_bytes()) >= n);
            }
        }
    }

    proptest! {
        /// A key that was added is always reported as possibly present.
        #[test]
        fn an_added_key_is_never_denied(
            keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..500)
        ) {
            let mut filter = Membership::default();
            for k in &keys {
                filter.add(k);
            }
            for k in &keys {
                prop_assert!(filter.may_contain(k));
            }
        }
    }

    #[test]
    fn keys_never_added_are_nearly_always_denied() {
        let mut filter = Membership::default();
        for i in 0..250_000u32 {
            filter.add(format!("watcher{i}").as_bytes());
        }
        let false_positives = (250_000..260_000u32)
            .filter(|i| filter.may_contain(format!("watcher{i}").as_bytes()))
            .count();
        // 0.02 % expected: 2 of 10,000.
        assert!(false_positives < 20, "{false_positives} of 10,000");
    }

    #[test]
    fn small_groups_among_many_are_estimated_small() {
        let mut sketch = Sketch::default();
        for i in 0..600_000u32 {
            sketch.adjust(format!("watcher{i}").as_bytes(), true);
        }
        let over = (0..1000u32)
            .filter(|i| sketch.estimate(format!("watcher{i}").as_bytes()) >= 100)
            .count();
        assert_eq!(
            over, 0,
            "600,000 one-row groups never look like 100-row ones"
        );
    }
}
