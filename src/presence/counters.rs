//! A dialog's NOTIFY counters, the local CSeq and the body version, without a store write
//! per NOTIFY.
//!
//! Both must keep rising across restarts, a `kill -9` included: a CSeq going backwards
//! makes a phone reject the NOTIFY (RFC 3261 §12.2.2), and a winfo or dialog-info version
//! going backwards looks like an old document (RFC 3858 §4.2, RFC 4235 §4.1). Writing the
//! dialog row for every NOTIFY did that, at the price of a store write per NOTIFY (a
//! tenth of the core loop during fan-out).
//!
//! Instead the store holds a reservation: when a dialog's counters reach what its row
//! says, the row is rewritten `STEP` ahead, and the next `STEP` NOTIFYs take their values
//! from memory. After a crash the daemon starts from the reservation, above anything it
//! sent; the only trace is a jump. Counters of dialogs left idle for a sweep period, and
//! all of them at shutdown, are written back exactly and leave memory, so memory holds
//! only the dialogs that are busy now and a clean restart shows no jump at all.

use std::collections::HashMap;

use crate::presence::notify::DialogKey;

/// NOTIFYs a reservation covers.
pub(super) const STEP: u32 = 64;

struct Live {
    /// The CSeq of the last NOTIFY sent.
    cseq: u32,
    /// The body version the next NOTIFY carries.
    version: u32,
    /// NOTIFYs that may still go out before the row needs a new reservation.
    left: u32,
    /// Sent a NOTIFY since the last write-back round.
    touched: bool,
}

impl Live {
    /// Takes the values for one more NOTIFY, reserving ahead when the last reservation
    /// is used up.
    fn advance(&mut self) -> Next {
        self.cseq = self.cseq.saturating_add(1);
        let version = self.version;
        self.version = self.version.wrapping_add(1);
        self.touched = true;
        let reserve = if self.left == 0 {
            self.left = STEP;
            Some((
                self.cseq.saturating_add(STEP),
                self.version.wrapping_add(STEP),
            ))
        } else {
            None
        };
        self.left -= 1;
        Next {
            cseq: self.cseq,
            version,
            reserve,
        }
    }
}

/// What the next NOTIFY of a dialog carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Next {
    pub cseq: u32,
    /// The version for this NOTIFY's body.
    pub version: u32,
    /// Write the row with these counters (cseq, version) before the NOTIFY leaves.
    pub reserve: Option<(u32, u32)>,
}

/// Counters of the dialogs that sent NOTIFYs since their row was last written exactly.
#[derive(Default)]
pub(super) struct Counters {
    live: HashMap<DialogKey, Live>,
}

impl Counters {
    /// Takes the counters for the next NOTIFY of `key`, whose row holds `stored_cseq`
    /// (the last CSeq or a reservation above it) and `stored_version` (the next version,
    /// or a reservation). `reserve` says the row must be written first.
    pub fn next(&mut self, key: &DialogKey, stored_cseq: u32, stored_version: u32) -> Next {
        if stored_cseq == 0 && !self.live.contains_key(key) {
            // A new dialog's first NOTIFY writes the row anyway (that creates it): with
            // the exact values, and nothing stays in memory. Most subscriptions only
            // ever get this one until their next refresh.
            let next_version = stored_version.wrapping_add(1);
            return Next {
                cseq: 1,
                version: stored_version,
                reserve: Some((1, next_version)),
            };
        }
        // Looked up first: the key is cloned only for a dialog's first entry, not on
        // every NOTIFY.
        if let Some(live) = self.live.get_mut(key) {
            return live.advance();
        }
        self.live
            .entry(key.clone())
            .or_insert(Live {
                cseq: stored_cseq,
                version: stored_version,
                left: 0,
                touched: false,
            })
            .advance()
    }

    /// The dialog is gone; its counters with it.
    pub fn forget(&mut self, key: &DialogKey) {
        self.live.remove(key);
    }

    /// Counters not used since the previous call (all of them with `all`), removed and
    /// returned as (dialog, last CSeq, next version) for an exact write-back.
    pub fn take_idle(&mut self, all: bool) -> Vec<(DialogKey, u32, u32)> {
        let mut out = Vec::new();
        self.live.retain(|key, live| {
            if all || !live.touched {
                out.push((key.clone(), live.cseq, live.version));
                false
            } else {
                live.touched = false;
                true
            }
        });
        if self.live.capacity() > 4 * self.live.len() + 64 {
            self.live.shrink_to(2 * self.live.len());
        }
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> DialogKey {
        DialogKey {
            call_id: format!("c{n}"),
            to_tag: "t".into(),
            from_tag: "f".into(),
        }
    }

    #[test]
    fn a_new_dialogs_first_notify_is_written_exactly_and_kept_nowhere() {
        let mut c = Counters::default();
        let first = c.next(&key(9), 0, 0);
        assert_eq!(
            first,
            Next {
                cseq: 1,
                version: 0,
                reserve: Some((1, 1))
            }
        );
        assert_eq!(c.len(), 0);
        // The next one starts from that row and reserves ahead.
        let second = c.next(&key(9), 1, 1);
        assert_eq!((second.cseq, second.version), (2, 1));
        assert_eq!(second.reserve, Some((2 + STEP, 2 + STEP)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn one_reservation_covers_step_notifies() {
        let mut c = Counters::default();
        let k = key(1);
        let first = c.next(&k, 4, 10);
        assert_eq!(first.cseq, 5);
        assert_eq!(first.version, 10);
        assert_eq!(first.reserve, Some((5 + STEP, 11 + STEP)));
        for i in 1..STEP {
            let n = c.next(&k, 999, 999);
            assert_eq!((n.cseq, n.version, n.reserve), (5 + i, 10 + i, None));
        }
        // Every value sent so far stays at or below the reservation written first.
        let (rc, rv) = first.reserve.unwrap();
        assert!(5 + STEP - 1 <= rc && 10 + STEP - 1 < rv);
        let renewed = c.next(&k, 999, 999);
        assert_eq!(renewed.cseq, 5 + STEP);
        assert_eq!(renewed.reserve, Some((5 + 2 * STEP, 11 + 2 * STEP)));
    }

    #[test]
    fn after_a_crash_the_reservation_is_above_everything_sent() {
        let mut before = Counters::default();
        let k = key(2);
        let mut stored = (0, 1);
        let mut sent = Vec::new();
        for _ in 0..(STEP * 2 + 7) {
            let n = before.next(&k, stored.0, stored.1);
            if let Some(r) = n.reserve {
                stored = r;
            }
            sent.push((n.cseq, n.version));
        }
        // Restart without a write-back: a fresh map starts from the stored row.
        let mut after = Counters::default();
        let n = after.next(&k, stored.0, stored.1);
        assert!(sent.iter().all(|&(c, v)| c < n.cseq && v < n.version));
    }

    #[test]
    fn idle_counters_are_handed_back_and_busy_ones_stay() {
        let mut c = Counters::default();
        c.next(&key(1), 1, 1);
        c.next(&key(2), 1, 1);
        assert!(c.take_idle(false).is_empty(), "both were just used");
        c.next(&key(2), 1, 1);
        let idle = c.take_idle(false);
        assert_eq!(idle, vec![(key(1), 2, 2)]);
        assert_eq!(c.len(), 1);
        let all = c.take_idle(true);
        assert_eq!(all, vec![(key(2), 3, 3)]);
        assert_eq!(c.len(), 0);
        c.next(&key(3), 1, 1);
        c.forget(&key(3));
        assert_eq!(c.len(), 0);
    }
}
