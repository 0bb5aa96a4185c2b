//! Deadlines: expired publications leave (their watchers get the new state) and expired
//! subscriptions get a final `terminated;reason=timeout` NOTIFY when their expiry
//! passes, found by range scans of the store's expiry indexes; and the housekeeping that
//! `clean_period` paces (watchers retention).

use std::collections::BTreeSet;

use log::{info, warn};

use super::Engine;
use super::subscription::{Body, Reason};

/// Rows handled per store read, so one round never holds a huge batch in memory.
const BATCH: usize = 512;

impl Engine {
    /// Ends everything whose expiry is at or before `now`.
    pub(super) fn expire(&mut self, now: u64) {
        let mut changed: BTreeSet<(String, String)> = BTreeSet::new();
        let mut publications = 0usize;
        loop {
            let batch = match self.store.expired_publications(now, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    warn!("expiry: {e}");
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
        for (resource, event) in changed {
            if let Some(package) = self.package_for_key(&event) {
                self.fan_out(&resource, package.as_ref(), now);
            }
        }

        let mut subscriptions = 0usize;
        loop {
            let batch = match self.store.expired_subscriptions(now, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    warn!("expiry: {e}");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            // Each one handled leaves the store; if none did (a store error), stop
            // rather than meet the same rows again forever.
            let before = self.store.subscriptions_count();
            for row in batch {
                subscriptions += 1;
                let id = super::subscription::id_of(&row);
                match self.take_subscription(row) {
                    Some(sub) => self.end(sub, Reason::Timeout, Body::None, now),
                    None => {
                        // An event no package serves any more: the row just goes.
                        if let Err(e) =
                            self.store
                                .delete_subscription(&id.call_id, &id.to_tag, &id.from_tag)
                        {
                            warn!("store: {e}");
                        }
                    }
                }
            }
            if self.store.subscriptions_count() >= before {
                warn!("expiry: expired subscriptions could not be removed; retrying later");
                break;
            }
        }
        // What is left at or before `now` could not be handled: look again in a second
        // rather than spin on it.
        self.next_expiry = match self.store.next_expiry() {
            Ok(t) => t.map(|t| t.max(now + 1)),
            Err(e) => {
                warn!("store: {e}");
                Some(now + 1)
            }
        };
        if publications + subscriptions > 0 {
            info!(
                "expiry: {publications} publication(s) and {subscriptions} subscription(s) ended"
            );
        }
    }

    /// The work `clean_period` paces.
    pub(super) fn housekeeping(&mut self, now: u64) {
        self.sweep_watchers(now);
        // Users whose documents were missing may be asked for again.
        self.fetch_asked.clear();
    }
}
