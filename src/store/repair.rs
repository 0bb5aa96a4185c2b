//! Open-time repair: puts back what a crash between two single-tree writes can leave
//! half-done (see the write order in the module doc of [`super`]). Idempotent: a second
//! run finds nothing to do.

use super::records::{SubscriptionRow, Watcher};
use super::{Store, StoreError};
use log::info;

/// What [`Store::repair`] changed or could not read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RepairReport {
    /// Watchers rows recreated from dialogs that had none.
    pub watchers_recreated: usize,
    /// Index entries pointing at a missing row or at a row that no longer owns them.
    pub index_entries_removed: usize,
    /// Index entries a row owned but lacked.
    pub index_entries_added: usize,
    /// Rows or entries this version cannot read; left in place, not a change.
    pub unreadable: usize,
}

impl RepairReport {
    /// Nothing was changed.
    pub fn changed_nothing(&self) -> bool {
        self.watchers_recreated == 0
            && self.index_entries_removed == 0
            && self.index_entries_added == 0
    }
}

impl Store {
    /// Run once after [`Store::open`], before serving. Rebuilds each table's index from
    /// its rows, then recreates the watchers row of every dialog for which
    /// `needs_watcher_row` says so (the event packages that keep authorization state),
    /// copying status and reason and stamping `inserted_time = now`.
    pub fn repair(
        &self,
        now: u64,
        needs_watcher_row: impl Fn(&SubscriptionRow) -> bool,
    ) -> Result<RepairReport, StoreError> {
        let mut report = RepairReport::default();
        for idx in [
            self.inner.publications.reindex::<super::Publication>()?,
            self.inner.subscriptions.reindex::<SubscriptionRow>()?,
            self.inner.watchers.reindex::<Watcher>()?,
            self.inner.xcap.reindex::<super::Xcap>()?,
        ] {
            report.index_entries_removed += idx.removed;
            report.index_entries_added += idx.added;
            report.unreadable += idx.unreadable;
        }
        // The events dialogs exist for; an unreadable row might be of any.
        let mut events = Some(std::collections::HashSet::new());
        for dialog in self.iter_subscriptions() {
            // Unreadable rows were counted by reindex and are left alone.
            let d = match dialog {
                Ok(d) => d,
                Err(StoreError::Corrupt { .. }) => {
                    events = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(seen) = &mut events
                && !seen.contains(&d.event)
            {
                seen.insert(d.event.clone());
            }
            if !needs_watcher_row(&d) {
                continue;
            }
            match self.get_watcher(&d.presentity_uri, &d.event, &d.watcher_uri) {
                Ok(None) => {}
                Ok(Some(_)) | Err(StoreError::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            }
            self.put_watcher(&Watcher {
                presentity_uri: d.presentity_uri,
                watcher_uri: d.watcher_uri,
                event: d.event,
                status: d.status,
                reason: d.reason,
                inserted_time: now,
            })?;
            report.watchers_recreated += 1;
        }
        if let Some(seen) = events {
            self.events_found(seen);
        }
        if !report.changed_nothing() || report.unreadable > 0 {
            info!("store repair: {report:?}");
        }
        Ok(report)
    }
}
