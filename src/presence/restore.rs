//! After `presenced restore` changed the store under a running engine: subscriptions in
//! memory take their restored rows (or go, if the restore removed them), and every
//! restored active subscription is told its current state (RFC 6665 §4.2.2: a NOTIFY
//! carries the full state), so watchers resume without waiting for the next PUBLISH.

use super::Engine;

impl Engine {
    /// Re-reads what a restore changed and NOTIFYs every unexpired subscription once.
    /// Rows come in store key order (resource, then event), so each state is computed
    /// once.
    pub fn restored(&mut self, now: u64) {
        let ids: Vec<_> = self.resident.keys().cloned().collect();
        for id in ids {
            let row = self
                .store
                .get_subscription(&id.call_id, &id.to_tag, &id.from_tag);
            match row {
                Ok(Some(row)) => {
                    if let Some(sub) = self.resident.get_mut(&id) {
                        sub.adopt(row);
                    }
                }
                Ok(None) => {
                    // Terminated ones lost their rows already and finish their final
                    // NOTIFY; the others the restore removed.
                    if self.resident.get(&id).is_some_and(|s| !s.is_terminated()) {
                        self.resident.remove(&id);
                        self.stalled.remove(&id);
                    }
                }
                Err(e) => log::warn!("restored: {e}"),
            }
        }
        let mut last: Option<(String, String)> = None;
        for row in self.store.iter_subscriptions() {
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    log::warn!("restored: {e}");
                    continue;
                }
            };
            if last
                .as_ref()
                .is_some_and(|(u, e)| *u == row.presentity_uri && *e == row.event)
            {
                continue;
            }
            if let Some(package) = self.package_for_key(&row.event) {
                self.fan_out(&row.presentity_uri, package.as_ref(), now);
            }
            last = Some((row.presentity_uri, row.event));
        }
        self.next_expiry = Some(0);
    }
}
