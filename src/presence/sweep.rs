//! The clean_period sweep: expired publications leave (their watchers get the new
//! aggregate) and expired subscriptions get a final `terminated;reason=timeout` NOTIFY.
//! Both are range scans of the store's expiry index up to `now`, never table scans.

use std::collections::BTreeSet;

use log::{info, warn};

use crate::presence::notify::SubState;
use crate::presence::{Engine, Outgoing};

/// Rows handled per store scan, so one sweep never holds a huge batch in memory.
const BATCH: usize = 512;

impl Engine {
    /// Runs one sweep at `now` (Unix seconds).
    pub fn sweep(&mut self, now: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut changed: BTreeSet<(String, String)> = BTreeSet::new();
        let mut publications = 0usize;
        loop {
            let batch = match self.store.expired_publications(now, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    warn!("sweep: {e}");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut progressed = false;
            for p in batch {
                if let Ok(Some(_)) =
                    self.store
                        .delete_publication(&p.event, &p.presentity_uri, &p.etag)
                {
                    progressed = true;
                }
                publications += 1;
                changed.insert((p.presentity_uri, p.event));
            }
            if !progressed {
                break;
            }
        }
        for (uri, event) in changed {
            if let Some(package) = self.package_for_key(&event) {
                out.extend(self.state_changed(&uri, package.as_ref(), now));
            }
        }

        let mut subscriptions = 0usize;
        loop {
            let batch = match self.store.expired_subscriptions(now, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    warn!("sweep: {e}");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            // Each handled dialog leaves the store; if none did (a store error), stop
            // rather than meet the same rows again forever.
            let before = self.store.subscriptions_count();
            for d in batch {
                subscriptions += 1;
                match self.package_for_key(&d.event) {
                    Some(package) => out.extend(self.terminate(
                        d,
                        package.as_ref(),
                        SubState::Terminated("timeout"),
                        None,
                        now,
                    )),
                    None => self.forget_dialog(&d, "timeout", now),
                }
            }
            if self.store.subscriptions_count() >= before {
                warn!("sweep: expired subscriptions could not be removed; retrying next period");
                break;
            }
        }
        self.sweep_watchers(now);
        self.write_back_counters(false);
        out.append(&mut self.pending_out);
        if publications + subscriptions > 0 {
            self.durable();
            info!(
                "sweep: {publications} publication(s) and {subscriptions} subscription(s) expired"
            );
        }
        out
    }
}
