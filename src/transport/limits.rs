//! Per-source limits that keep one abuser from starving everyone: a token bucket of
//! requests per source address, checked before a message is queued for the core loop
//! (past it, a request is refused with 503 and Retry-After, RFC 3261 §21.5.4, without
//! being parsed), and a count of TCP connections per source address. The refusals have
//! a bucket of their own, as large as the request one: a source sending many times its
//! rate gets 503s at its rate and the rest of its flood is dropped (and counted), so
//! answering a flood never costs more than serving the source would. Responses are never
//! limited: they answer our own NOTIFYs. Configured proxies (`trusted_proxies`), which
//! carry many users' traffic, are exempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use ipnet::IpNet;

/// Sources whose buckets are kept; beyond this, idle (full) buckets are forgotten, and
/// if that is not enough every bucket is (failing open for a moment, never growing).
const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// 503s this source may still be sent.
    refusals: f64,
    at: Instant,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the rate: answer 503.
    Refuse,
    /// Over the rate and over the refusals too: drop it.
    Drop,
}

/// The request-rate limiter.
pub struct SourceLimiter {
    /// Requests per second; 0 disables the limit.
    rate: f64,
    /// Most tokens a bucket holds: the burst a quiet source may send at once.
    burst: f64,
    exempt: Vec<IpNet>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl SourceLimiter {
    /// `rate` requests a second per source (0: unlimited), bursts of up to `burst`.
    pub fn new(rate: u32, burst: u32, exempt: Vec<IpNet>) -> SourceLimiter {
        SourceLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(rate).max(1)),
            exempt,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// No limit at all.
    pub fn unlimited() -> SourceLimiter {
        SourceLimiter::new(0, 0, Vec::new())
    }

    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.exempt.iter().any(|n| n.contains(&ip))
    }

    /// Takes one token from `ip`'s bucket, or, when it has none, one refusal.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Admit {
        if self.rate <= 0.0 || self.is_exempt(ip) {
            return Admit::Yes;
        }
        let ip = ip.to_canonical();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&ip) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_SOURCES {
                buckets.clear();
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            refusals: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.refusals = (b.refusals + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admit::Yes
        } else if b.refusals >= 1.0 {
            b.refusals -= 1.0;
            Admit::Refuse
        } else {
            Admit::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let l = SourceLimiter::new(10, 20, Vec::new());
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let verdicts: Vec<Admit> = (0..100).map(|_| l.check(a, t0)).collect();
        // The burst passes, as many again are refused, the rest is dropped.
        assert!(
            verdicts[..20].iter().all(|x| *x == Admit::Yes),
            "{verdicts:?}"
        );
        assert!(
            verdicts[20..40].iter().all(|x| *x == Admit::Refuse),
            "{verdicts:?}"
        );
        assert!(
            verdicts[40..].iter().all(|x| *x == Admit::Drop),
            "{verdicts:?}"
        );
        assert_eq!(
            l.check(b, t0),
            Admit::Yes,
            "another source has its own bucket"
        );
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            (0..100).filter(|_| l.check(a, t1) == Admit::Yes).count(),
            10
        );
    }

    #[test]
    fn exempt_sources_and_a_zero_rate_are_never_limited() {
        let l = SourceLimiter::new(1, 1, vec!["10.0.0.0/8".parse().unwrap()]);
        let t = Instant::now();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert!((0..1000).all(|_| l.check(proxy, t) == Admit::Yes));
        let off = SourceLimiter::unlimited();
        assert!((0..1000).all(|_| off.check("192.0.2.9".parse().unwrap(), t) == Admit::Yes));
    }

    #[test]
    fn the_table_of_sources_stays_bounded() {
        let l = SourceLimiter::new(1, 1, Vec::new());
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            l.check(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_SOURCES);
    }
}
