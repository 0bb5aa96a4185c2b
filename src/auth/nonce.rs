//! Nonces that need no table to check and a bounded one to stop replays.
//!
//! A nonce is `hex(issued (8 bytes BE) | run (4 bytes) | random (4 bytes) |
//! HMAC-SHA256(secret, those 16 bytes | realm)[..16])`: the server recognises its own
//! nonces, bound to the realm, without remembering them, and knows their age (RFC 7616
//! §3.3 suggests exactly this). The secret is kept in the database, so a restart does
//! not turn every client's nonce into a stranger's; instead, nonces of an earlier run
//! (another `run` number) count as stale, because that run's replay record is gone.
//!
//! Replays: for each nonce in use we keep the highest nonce count seen and a 64-bit
//! window below it (as IPsec does), so requests that overtake each other are accepted
//! once each, and no count is accepted twice. The record is bounded; when it is full the
//! oldest nonce is forgotten and every nonce issued no later than it is treated as stale
//! from then on, so forgetting never opens a replay.

use std::collections::{HashMap, VecDeque};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::digest::hex;

/// Nonces whose replay windows are kept at most; about 100 bytes each.
const MAX_TRACKED: usize = 65_536;

/// What a nonce and count amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, fresh, and this count was not used before.
    Fresh,
    /// Ours but too old (or from before the last restart): challenge with stale=true.
    Stale,
    /// Ours, and this count was already used with it.
    Replay,
    /// Not a nonce we issued (or not for this realm).
    Foreign,
}

/// One nonce's replay window.
#[derive(Debug, Clone, Copy)]
struct Window {
    top: u32,
    /// Bit i set: count `top - i` was seen.
    seen: u64,
}

impl Window {
    fn accept(&mut self, nc: u32) -> bool {
        if nc > self.top {
            let shift = nc - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = nc;
            return true;
        }
        let back = self.top - nc;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// Issues and checks nonces.
pub struct Nonces {
    secret: [u8; 32],
    lifetime: u64,
    /// This run's number, in every nonce it issues.
    run: [u8; 4],
    /// Nonces issued at or before this second are stale unless tracked (the newest
    /// forgotten nonce's issue time).
    stale_before: u64,
    windows: HashMap<String, Window>,
    /// Tracked nonces in the order they were first used, with their issue time.
    order: VecDeque<(u64, String)>,
    max_tracked: usize,
}

impl Nonces {
    /// `secret` keys the HMAC; `lifetime` is in seconds.
    pub fn new(secret: [u8; 32], lifetime: u64) -> Nonces {
        Nonces {
            secret,
            lifetime: lifetime.max(1),
            run: fastrand::u32(..).to_be_bytes(),
            stale_before: 0,
            windows: HashMap::new(),
            order: VecDeque::new(),
            max_tracked: MAX_TRACKED,
        }
    }

    #[cfg(test)]
    fn with_capacity(mut self, n: usize) -> Nonces {
        self.max_tracked = n;
        self
    }

    fn mac(&self, head: &[u8; 16], realm: &str) -> [u8; 16] {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            // HMAC takes a key of any length.
            return [0; 16];
        };
        m.update(head);
        m.update(realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A new nonce for `realm`, issued at `now`.
    pub fn issue(&self, realm: &str, now: u64) -> String {
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(&now.to_be_bytes());
        head[8..12].copy_from_slice(&self.run);
        head[12..].copy_from_slice(&fastrand::u32(..).to_be_bytes());
        let mut all = head.to_vec();
        all.extend_from_slice(&self.mac(&head, realm));
        hex(&all)
    }

    /// Checks `nonce` with count `nc` for `realm` at `now`, and records the count when
    /// the answer is [`NonceCheck::Fresh`]. Call it only once the response hash has
    /// been verified, so that a forged request cannot use up a count.
    pub fn check(&mut self, nonce: &str, realm: &str, nc: u32, now: u64) -> NonceCheck {
        let Some((issued, run)) = self.decode(nonce, realm) else {
            return NonceCheck::Foreign;
        };
        if run != self.run {
            return NonceCheck::Stale;
        }
        if issued.saturating_add(self.lifetime) < now || issued > now.saturating_add(5) {
            self.windows.remove(nonce);
            return NonceCheck::Stale;
        }
        if let Some(w) = self.windows.get_mut(nonce) {
            return match w.accept(nc) {
                true => NonceCheck::Fresh,
                false => NonceCheck::Replay,
            };
        }
        if issued <= self.stale_before {
            return NonceCheck::Stale;
        }
        self.forget_old(now);
        let mut w = Window { top: 0, seen: 0 };
        w.accept(nc);
        self.windows.insert(nonce.to_owned(), w);
        self.order.push_back((issued, nonce.to_owned()));
        NonceCheck::Fresh
    }

    /// Whether `nonce` is one of ours for `realm` without looking at its age or count
    /// (to tell a wrong password from a stranger's nonce).
    pub fn issued(&self, nonce: &str, realm: &str) -> Option<u64> {
        self.decode(nonce, realm).map(|(issued, _)| issued)
    }

    /// The issue time and run of one of our nonces.
    fn decode(&self, nonce: &str, realm: &str) -> Option<(u64, [u8; 4])> {
        if nonce.len() != 64 {
            return None;
        }
        let mut raw = [0u8; 32];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::from_str_radix(nonce.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let (head, mac) = raw.split_at(16);
        let head: [u8; 16] = head.try_into().ok()?;
        let want = self.mac(&head, realm);
        // Constant time: the MAC is a secret-derived value.
        if want.iter().zip(mac).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
            return None;
        }
        let issued: [u8; 8] = head[..8].try_into().ok()?;
        let run: [u8; 4] = head[8..12].try_into().ok()?;
        Some((u64::from_be_bytes(issued), run))
    }

    /// Drops windows of nonces past their lifetime, then the oldest while full.
    fn forget_old(&mut self, now: u64) {
        while let Some((issued, nonce)) = self.order.front() {
            let expired = issued.saturating_add(self.lifetime) < now;
            let full = self.order.len() >= self.max_tracked;
            if !expired && !full {
                break;
            }
            if !expired {
                self.stale_before = self.stale_before.max(*issued);
            }
            self.windows.remove(nonce);
            self.order.pop_front();
        }
    }

    /// Nonces whose replay windows are held now.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces() -> Nonces {
        Nonces::new([7; 32], 300)
    }

    #[test]
    fn a_nonce_is_ours_only_for_its_realm_and_intact() {
        let n = nonces();
        let nonce = n.issue("example.com", 1_000);
        assert_eq!(n.issued(&nonce, "example.com"), Some(1_000));
        assert_eq!(n.issued(&nonce, "example.org"), None);
        let mut bad = nonce.clone().into_bytes();
        bad[40] = if bad[40] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            n.issued(&String::from_utf8(bad).unwrap(), "example.com"),
            None
        );
        assert_eq!(n.issued("zz", "example.com"), None);
        let other = Nonces::new([8; 32], 300);
        assert_eq!(other.issued(&nonce, "example.com"), None);
    }

    #[test]
    fn counts_are_accepted_once_each_even_out_of_order() {
        let mut n = nonces();
        let nonce = n.issue("r", 1_001);
        assert_eq!(n.check(&nonce, "r", 1, 1_001), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, "r", 1, 1_002), NonceCheck::Replay);
        assert_eq!(n.check(&nonce, "r", 3, 1_002), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, "r", 2, 1_002), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, "r", 2, 1_002), NonceCheck::Replay);
        assert_eq!(n.check(&nonce, "r", 200, 1_002), NonceCheck::Fresh);
        // More than 64 behind the newest: cannot be told from a replay.
        assert_eq!(n.check(&nonce, "r", 100, 1_002), NonceCheck::Replay);
    }

    #[test]
    fn old_nonces_and_those_of_an_earlier_run_are_stale() {
        let mut n = nonces();
        let nonce = n.issue("r", 1_001);
        assert_eq!(n.check(&nonce, "r", 1, 1_301), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, "r", 2, 1_302), NonceCheck::Stale);
        // A restart: same secret, another run. Its nonce is ours (not a stranger's)
        // but its replay record is gone.
        let earlier = nonces();
        let before = earlier.issue("r", 1_000);
        assert_eq!(n.issued(&before, "r"), Some(1_000));
        assert_eq!(n.check(&before, "r", 1, 1_000), NonceCheck::Stale);
        assert_eq!(n.check("00", "r", 1, 1_000), NonceCheck::Foreign);
    }

    #[test]
    fn a_forgotten_nonce_is_stale_never_replayable() {
        let mut n = nonces().with_capacity(2);
        let a = n.issue("r", 1_010);
        let b = n.issue("r", 1_011);
        let c = n.issue("r", 1_012);
        assert_eq!(n.check(&a, "r", 1, 1_020), NonceCheck::Fresh);
        assert_eq!(n.check(&b, "r", 1, 1_020), NonceCheck::Fresh);
        assert_eq!(n.check(&c, "r", 1, 1_020), NonceCheck::Fresh);
        assert_eq!(n.tracked(), 2);
        // `a` was forgotten: replaying its count 1 must not pass.
        assert_eq!(n.check(&a, "r", 1, 1_021), NonceCheck::Stale);
        assert_eq!(n.check(&c, "r", 1, 1_021), NonceCheck::Replay);
    }
}
