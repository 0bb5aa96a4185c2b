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
