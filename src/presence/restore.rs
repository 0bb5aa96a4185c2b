//! After `presenced restore` changed the store under a running engine, every restored
//! active subscription is told its current state (RFC 6665 §4.2.2: a NOTIFY carries the
//! full state), so watchers resume without waiting for the next PUBLISH.

use crate::presence::{Engine, Outgoing};

impl Engine {
    /// One NOTIFY with the current aggregate for every active, unexpired subscription.
    /// Dialogs come in store key order (presentity, then event), so each presentity's
    /// aggregate is computed once.
    pub fn notify_all(&mut self, now: u64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut last: Option<(String, String)> = None;
        for d in self.store.iter_subscriptions() {
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("notify_all: {e}");
                    continue;
                }
            };
            if last
                .as_ref()
                .is_some_and(|(u, e)| *u == d.presentity_uri && *e == d.event)
            {
                continue;
            }
            if let Some(package) = self.package_for_key(&d.event) {
                out.extend(self.state_changed(&d.presentity_uri, package.as_ref(), now));
            }
            last = Some((d.presentity_uri, d.event));
        }
        out
    }
}
