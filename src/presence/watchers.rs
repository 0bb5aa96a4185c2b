//! The watchers table as the presentity sees it: every change of a watcher's status is
//! written there and reported to the presentity's `*.winfo` subscribers (RFC 3857) as a
//! partial watcherinfo document; a winfo subscription's first NOTIFY (and any refresh)
//! carries the full list. Rows that are not active are kept for the retention period
//! and then swept.

use std::sync::Arc;

use log::{info, warn};

use crate::events::package::EventPackage;
use crate::events::winfo::{self, DocState};
use crate::presence::{Engine, status};
use crate::store::{SubscriptionRow, Watcher};

impl Engine {
    /// Writes a dialog's watcher's new status and tells the winfo subscribers.
    pub(super) fn set_watcher_status(
        &mut self,
        dialog: &SubscriptionRow,
        new_status: u8,
        reason: &str,
        now: u64,
    ) {
        let existing = self
            .store
            .get_watcher(&dialog.presentity_uri, &dialog.event, &dialog.watcher_uri)
            .ok()
            .flatten();
        let row = Watcher {
            presentity_uri: dialog.presentity_uri.clone(),
            watcher_uri: dialog.watcher_uri.clone(),
            event: dialog.event.clone(),
            status: new_status,
            reason: Some(reason.to_owned()),
            inserted_time: existing.map_or(now, |w| w.inserted_time),
        };
        self.put_watcher_row(row, now);
    }

    /// Writes a watchers row and queues the partial winfo NOTIFYs it calls for.
    pub(super) fn put_watcher_row(&mut self, row: Watcher, now: u64) {
        if let Err(e) = self.store.put_watcher(&row) {
            warn!("store: {e}");
        }
        self.watcher_changed(&row, now);
    }

    /// RFC 3857 §3.7: each change of a watcher's state goes to the presentity's winfo
    /// subscribers, as a partial document (RFC 3858 §4.4).
    fn watcher_changed(&mut self, row: &Watcher, now: u64) {
        let winfo_event = format!("{}{}", row.event, winfo::SUFFIX);
        let Some(package) = self.package_for_key(&winfo_event) else {
            return;
        };
        let dialogs = match self
            .store
            .subscriptions_to(&row.presentity_uri, &winfo_event)
        {
            Ok(d) => d,
            Err(e) => {
                warn!("store: {e}");
                return;
            }
        };
        if dialogs.is_empty() {
            return;
        }
        let body = Arc::new(winfo::document(
            &row.presentity_uri,
            &row.event,
            DocState::Partial,
            std::slice::from_ref(row),
        ));
        for d in dialogs {
            if d.status != status::ACTIVE || d.expires <= now {
                continue;
            }
            let out = self.queue_notify(d, package.as_ref(), Some(body.clone()), now);
            self.pending_out.extend(out);
        }
    }

    /// The full watcherinfo document of `presentity`'s `event` watchers. Terminated
    /// rows are history, not watchers, so they are left out.
    pub(super) fn winfo_full(&self, presentity: &str, event: &str) -> Vec<u8> {
        let rows: Vec<Watcher> = match self.store.watchers_for(presentity, event) {
            Ok(rows) => rows
                .into_iter()
                .filter(|w| w.status != status::TERMINATED)
                .collect(),
            Err(e) => {
                warn!("store: {e}");
                Vec::new()
            }
        };
        winfo::document(presentity, event, DocState::Full, &rows)
    }

    /// Whether `package` is a winfo template package; its watched event if so.
    pub(super) fn winfo_of(package: &dyn EventPackage) -> Option<String> {
        winfo::watched_event(package.name()).map(str::to_owned)
    }

    /// Drops pending, waiting and terminated watchers rows older than the retention
    /// period that no live subscription uses any more.
    pub(super) fn sweep_watchers(&mut self, now: u64) {
        let Some(keep) = self.config.watchers_retention else {
            return;
        };
        let mut stale = Vec::new();
        for row in self.store.iter_watchers() {
            let Ok(w) = row else { continue };
            if w.status != status::ACTIVE && w.inserted_time.saturating_add(keep) <= now {
                stale.push(w);
            }
        }
        let mut removed = 0usize;
        for w in stale {
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
        if removed > 0 {
            info!("sweep: {removed} old watcher record(s) removed");
        }
    }
}
