//! The watchers table as the resource's owner sees it: every change of a watcher's
//! status is written there and reported to the subscribers of the template packages
//! that watch that event (RFC 6665 §5.4.8; RFC 3857) as a change document; their first
//! NOTIFY (and any refresh) carries the full list. Rows that are not active are kept for
//! the retention period and then swept, found through the table's index.

use std::sync::Arc;

use log::{info, warn};

use super::Engine;
use super::subscription::{Body, Reason, Status, Subscription};
use crate::events::package::{EventPackage, Registry};
use crate::store::Watcher;

/// Rows handled per store read, so one sweep never holds a huge batch in memory.
const BATCH: usize = 512;

impl Engine {
    /// Writes the new status of a subscription's watcher and tells the template
    /// packages' subscribers.
    pub(super) fn set_watcher_status(
        &mut self,
        sub: &Subscription,
        status: Status,
        reason: Reason,
        now: u64,
    ) {
        let existing = self
            .store
            .get_watcher(sub.resource(), sub.event(), sub.watcher())
            .ok()
            .flatten();
        let row = Watcher {
            presentity_uri: sub.resource().to_owned(),
            watcher_uri: sub.watcher().to_owned(),
            event: sub.event().to_owned(),
            status: status.code(),
            reason: Some(reason.as_str().to_owned()),
            inserted_time: existing.map_or(now, |w| w.inserted_time),
        };
        self.put_watcher_row(row, now);
    }

    /// Writes a watchers row and sends the change documents it calls for.
    pub(super) fn put_watcher_row(&mut self, row: Watcher, now: u64) {
        if let Err(e) = self.store.put_watcher(&row) {
            warn!("store: {e}");
        }
        self.watcher_changed(&row, now);
    }

    /// Each change of a watcher's state goes to the active subscribers of every package
    /// that watches its event, as a change document (RFC 3857 §3.7, RFC 3858 §4.4).
    fn watcher_changed(&mut self, row: &Watcher, now: u64) {
        let reporters: Vec<Arc<dyn EventPackage>> = self
            .packages
            .iter()
            .filter(|p| p.watches() == Some(row.event.as_str()))
            .cloned()
            .collect();
        for package in reporters {
            let event = Registry::event_key(package.as_ref());
            if !self.store.may_have_subscriptions(&event) {
                continue;
            }
            let rows = match self.store.subscriptions_to(&row.presentity_uri, &event) {
                Ok(rows) => rows,
                Err(e) => {
                    warn!("store: {e}");
                    continue;
                }
            };
            if rows.is_empty() {
                continue;
            }
            let doc = Arc::new(package.watcher_document(
                &row.presentity_uri,
                std::slice::from_ref(row),
                false,
            ));
            for r in rows {
                if r.expires <= now {
                    continue;
                }
                let Some(mut sub) = self.take_subscription(r) else {
                    continue;
                };
                if sub.status() == Status::Active {
                    sub.notify(Body::Delta(doc.clone()));
                    self.pump(sub, now);
                } else {
                    self.keep(sub);
                }
            }
        }
    }

    /// Drops pending, waiting and terminated watchers rows older than the retention
    /// period that no live subscription uses any more. Reads only the rows old enough,
    /// through the index of rows that are not active.
    pub(super) fn sweep_watchers(&mut self, now: u64) {
        let Some(keep) = self.config.watchers_retention else {
            return;
        };
        let Some(cutoff) = now.checked_sub(keep) else {
            return;
        };
        let mut removed = 0usize;
        let mut after = None;
        loop {
            let (page, next) = match self.store.stale_watchers(cutoff, after.as_deref(), BATCH) {
                Ok(p) => p,
                Err(e) => {
                    warn!("sweep: {e}");
                    break;
                }
            };
            for w in page {
                let live = self
                    .store
                    .subscriptions_of_watcher(&w.presentity_uri, &w.event, &w.watcher_uri)
                    .map(|d| d.iter().any(|d| d.expires > now))
                    .unwrap_or(true);
                if live {
                    continue;
                }
                match self
                    .store
                    .delete_watcher(&w.presentity_uri, &w.event, &w.watcher_uri)
                {
                    Ok(_) => removed += 1,
                    Err(e) => warn!("store: {e}"),
                }
            }
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        if removed > 0 {
            info!("sweep: {removed} old watcher record(s) removed");
        }
    }
}
