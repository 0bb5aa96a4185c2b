//! Bulk loading for `presenced restore`: a staging tree that collects a restore's rows
//! (and finds duplicate keys) before any live table changes, then applies them in the
//! store's cross-table write order. A restore that fails while staging leaves the live
//! tables untouched: the staging tree is dropped and nothing else was written.
//!
//! Memory stays flat: rows go to sled as they arrive, and sled's page cache is bounded
//! by `cache_capacity`.
//!
//! [`BulkLoad`] is the fast path for a database nobody else is using and that holds no
//! rows (a restore into a fresh presenced, offline): rows and their index entries go
//! straight into the live trees, one insert per key, with no staging copy. "As it was"
//! after a failure is then "empty", which is what abort restores.

use serde::{Deserialize, Serialize};

use std::sync::atomic::Ordering;

use super::keys::{self, ROW};
use super::records::{self, Publication, SubscriptionRow, Watcher};
use super::subscriber::Subscriber;
use super::table::{Record, index_entries};
use super::xcap::Xcap;
use super::{Store, StoreError};

/// The staging tree's name; a leftover from a crash mid-restore is dropped on reuse.
pub(super) const TREE: &str = "restore-staging";

// Tags in the staging tree; their order is the order rows are applied in.
const PRESENTITY: u8 = b'1';
const DIALOG: u8 = b'2';
const WATCHER: u8 = b'3';
const XCAP: u8 = b'4';
const SUBSCRIBER: u8 = b'5';
/// Dialog identity (Call-ID and tags) → already staged, so one dialog cannot appear
/// under two presentities.
const DIALOG_ID: u8 = b'9';

/// Rows per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    pub presentity: u64,
    pub active_watchers: u64,
    pub watchers: u64,
    pub xcap: u64,
    /// Accounts (absent in answers of older versions: 0).
    #[serde(default)]
    pub subscriber: u64,
}

impl std::ops::AddAssign for TableCounts {
    fn add_assign(&mut self, o: TableCounts) {
        self.presentity += o.presentity;
        self.active_watchers += o.active_watchers;
        self.watchers += o.watchers;
        self.xcap += o.xcap;
        self.subscriber += o.subscriber;
    }
}

impl TableCounts {
    pub fn total(&self) -> u64 {
        self.presentity + self.active_watchers + self.watchers + self.xcap + self.subscriber
    }
}

/// Whether a staged row was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    Added,
    /// A row with the same key is already staged (the dump has a duplicate key).
    Duplicate,
}

/// Rows collected for one restore.
pub struct Staging {
    store: Store,
    tree: sled::Tree,
    counts: TableCounts,
}

fn tagged(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(tag);
    out.extend_from_slice(key);
    out
}

impl Store {
    /// Starts a restore: an empty staging tree.
    pub fn staging(&self) -> Result<Staging, StoreError> {
        let _one = self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.inner.compacting.load(Ordering::Acquire) {
            return Err(StoreError::Busy(
                "the database is being compacted; restore when that is done",
            ));
        }
        self.inner.db().drop_tree(TREE)?;
        Ok(Staging {
            store: self.clone(),
            tree: self.inner.db().open_tree(TREE)?,
            counts: TableCounts::default(),
        })
    }

    /// Rows per table right now.
    pub fn counts(&self) -> Result<TableCounts, StoreError> {
        Ok(TableCounts {
            presentity: self.publications_count(),
            active_watchers: self.subscriptions_count(),
            watchers: self.watchers_count(),
            xcap: self.xcap_count(),
            subscriber: self.subscribers_count(),
        })
    }

    /// Removes every row of the four tables, dialogs before watchers (the store's write
    /// order). Rows this version cannot read are left in place and counted.
    pub fn clear_tables(&self) -> Result<u64, StoreError> {
        let mut unreadable = 0;
        for p in self.iter_publications() {
            match p {
                Ok(p) => {
                    self.delete_publication(&p.event, &p.presentity_uri, &p.etag)?;
                }
                Err(StoreError::Corrupt { .. }) => unreadable += 1,
                Err(e) => return Err(e),
            }
        }
        for d in self.iter_subscriptions() {
            match d {
                Ok(d) => {
                    self.delete_subscription(&d.call_id, &d.to_tag, &d.from_tag)?;
                }
                Err(StoreError::Corrupt { .. }) => unreadable += 1,
                Err(e) => return Err(e),
            }
        }
        for w in self.iter_watchers() {
            match w {
                Ok(w) => {
                    self.delete_watcher(&w.presentity_uri, &w.event, &w.watcher_uri)?;
                }
                Err(StoreError::Corrupt { .. }) => unreadable += 1,
                Err(e) => return Err(e),
            }
        }
        self.xcap_tree()?.clear()?;
        self.xcap_written();
        Ok(unreadable)
    }
}

/// Counts `r` into a table's row count if the row was added.
fn counted(r: Staged, n: &mut u64) -> Staged {
    if r == Staged::Added {
        *n += 1;
    }
    r
}

impl Staging {
    /// Stages `rec` under `tag`. Every key the commit will write for it is built here,
    /// so a value that cannot be part of a key fails this row (and the restore, at its
    /// line) instead of the commit, half-way through the live tables.
    fn stage<R: Record + Serialize>(&mut self, tag: u8, rec: &R) -> Result<Staged, StoreError> {
        let key = rec.row_key()?;
        index_entries(rec, &key)?;
        let value = records::encode(rec).map_err(StoreError::Encode)?;
        match self.tree.insert(tagged(tag, &key), value)? {
            None => Ok(Staged::Added),
            Some(_) => Ok(Staged::Duplicate),
        }
    }

    pub fn add_presentity(&mut self, p: &Publication) -> Result<Staged, StoreError> {
        let r = self.stage(PRESENTITY, p)?;
        Ok(counted(r, &mut self.counts.presentity))
    }

    pub fn add_dialog(&mut self, d: &SubscriptionRow) -> Result<Staged, StoreError> {
        let id = keys::key(
            ROW,
            &[
                ("call_id", &d.call_id),
                ("to_tag", &d.to_tag),
                ("from_tag", &d.from_tag),
            ],
        )?;
        if self.tree.insert(tagged(DIALOG_ID, &id), &[])?.is_some() {
            return Ok(Staged::Duplicate);
        }
        let r = self.stage(DIALOG, d)?;
        Ok(counted(r, &mut self.counts.active_watchers))
    }

    pub fn add_watcher(&mut self, w: &Watcher) -> Result<Staged, StoreError> {
        let r = self.stage(WATCHER, w)?;
        Ok(counted(r, &mut self.counts.watchers))
    }

    pub fn add_xcap(&mut self, x: &Xcap) -> Result<Staged, StoreError> {
        let r = self.stage(XCAP, x)?;
        Ok(counted(r, &mut self.counts.xcap))
    }

    pub fn add_subscriber(&mut self, s: &Subscriber) -> Result<Staged, StoreError> {
        let r = self.stage(SUBSCRIBER, s)?;
        Ok(counted(r, &mut self.counts.subscriber))
    }

    pub fn counts(&self) -> TableCounts {
        self.counts
    }

    /// Applies the staged rows to the live tables (after emptying them when `replace`)
    /// and drops the staging tree. Dialogs go in before watchers rows, the store's write
    /// order, so a crash mid-commit leaves what [`Store::repair`] fixes.
    pub fn commit(self, replace: bool) -> Result<TableCounts, StoreError> {
        if replace {
            self.store.clear_tables()?;
        }
        for entry in self.tree.scan_prefix([PRESENTITY]) {
            let (k, v) = entry?;
            self.store.put_publication(&decode(&k, &v)?)?;
        }
        for entry in self.tree.scan_prefix([DIALOG]) {
            let (k, v) = entry?;
            self.store.put_subscription(&decode(&k, &v)?)?;
        }
        for entry in self.tree.scan_prefix([WATCHER]) {
            let (k, v) = entry?;
            self.store.put_watcher(&decode(&k, &v)?)?;
        }
        for entry in self.tree.scan_prefix([XCAP]) {
            let (k, v) = entry?;
            self.store.put_xcap(&decode(&k, &v)?)?;
        }
        // Accounts: a dump that carries them replaces them all under `replace`; one
        // without (a presence-only dump) leaves them alone, so nobody is locked out.
        if replace && self.counts.subscriber > 0 {
            self.store.subscriber_tree()?.clear()?;
        }
        for entry in self.tree.scan_prefix([SUBSCRIBER]) {
            let (k, v) = entry?;
            self.store.put_subscriber(&decode(&k, &v)?)?;
        }
        let counts = self.counts;
        self.discard()?;
        Ok(counts)
    }

    /// Forgets the staged rows; the live tables were never touched.
    pub fn discard(self) -> Result<(), StoreError> {
        drop(self.tree);
        self.store.inner.db().drop_tree(TREE)?;
        Ok(())
    }
}

/// Inserts `key → value` unless the key is already there (a duplicate in the dump).
fn insert_new(tree: &sled::Tree, key: &[u8], value: &[u8]) -> Result<Staged, StoreError> {
    Ok(
        match tree.compare_and_swap(key, None::<&[u8]>, Some(value))? {
            Ok(()) => Staged::Added,
            Err(_) => Staged::Duplicate,
        },
    )
}

/// Straight-to-the-tables loading into an empty, otherwise unused database: use it
/// only where no daemon shares the [`Store`]. The store's row counters learn the
/// loaded rows at [`Self::finish`], so the same handle can go on (another restore
/// included) as if the rows had been put one by one.
///
/// Rows go in one key at a time: sled's plain inserts cost about half of what the
/// same keys cost in batches (`apply_batch` takes a global write lock and re-walks
/// the tree per key), and an insert-if-absent finds duplicates without a read first.
/// Nothing here needs a batch's atomicity: a failed load is undone by [`Self::abort`].
pub struct BulkLoad {
    store: Store,
    presentity: sled::Tree,
    dialogs: sled::Tree,
    watchers: sled::Tree,
    xcap: sled::Tree,
    subscriber: sled::Tree,
    counts: TableCounts,
}

impl Store {
    /// A [`BulkLoad`] if all five tables are empty, else `None` (use [`Store::staging`]).
    pub fn bulk_load(&self) -> Result<Option<BulkLoad>, StoreError> {
        if self.inner.compacting.load(Ordering::Acquire) {
            return Err(StoreError::Busy(
                "the database is being compacted; restore when that is done",
            ));
        }
        if self.counts()?.total() != 0 {
            return Ok(None);
        }
        // Pending removals must not land on top of the loaded rows.
        self.inner.drain()?;
        // Through the tables, which stop trusting their counts and filters for what
        // is written past them.
        Ok(Some(BulkLoad {
            store: self.clone(),
            presentity: self.inner.publications.tree()?,
            dialogs: self.inner.subscriptions.tree()?,
            watchers: self.inner.watchers.tree()?,
            xcap: self.xcap_tree()?,
            subscriber: self.subscriber_tree()?,
            counts: TableCounts::default(),
        }))
    }
}

/// A record's row and the index entries it owns, as the table writes them. The row
/// and the dialog identity (unique across presentities) are claimed first; if either
/// is taken the record is a duplicate and nothing of it stays.
fn load<R: Record>(tree: &sled::Tree, rec: &R) -> Result<Staged, StoreError> {
    let key = rec.row_key()?;
    // Every key first: one that cannot be built fails the row before any of it is in.
    let entries = index_entries(rec, &key)?;
    let value = records::encode(rec).map_err(StoreError::Encode)?;
    if insert_new(tree, &key, &value)? == Staged::Duplicate {
        return Ok(Staged::Duplicate);
    }
    let dialog = rec.dialog_key()?;
    if let Some(d) = &dialog
        && insert_new(tree, d, &key)? == Staged::Duplicate
    {
        tree.remove(&key)?;
        return Ok(Staged::Duplicate);
    }
    // The same index entries the table itself writes (one rule, in table.rs); the
    // others all embed the row key, so they are new when the row is.
    for (entry, v) in entries {
        if dialog.as_ref() != Some(&entry) {
            tree.insert(entry, v)?;
        }
    }
    Ok(Staged::Added)
}

impl BulkLoad {
    pub fn add_presentity(&mut self, p: &Publication) -> Result<Staged, StoreError> {
        let r = load(&self.presentity, p)?;
        Ok(counted(r, &mut self.counts.presentity))
    }

    pub fn add_dialog(&mut self, d: &SubscriptionRow) -> Result<Staged, StoreError> {
        let r = load(&self.dialogs, d)?;
        Ok(counted(r, &mut self.counts.active_watchers))
    }

    pub fn add_watcher(&mut self, w: &Watcher) -> Result<Staged, StoreError> {
        let r = load(&self.watchers, w)?;
        Ok(counted(r, &mut self.counts.watchers))
    }

    pub fn add_xcap(&mut self, x: &Xcap) -> Result<Staged, StoreError> {
        let key = x.row_key()?;
        let value = records::encode(x).map_err(StoreError::Encode)?;
        let r = insert_new(&self.xcap, &key, &value)?;
        Ok(counted(r, &mut self.counts.xcap))
    }

    pub fn add_subscriber(&mut self, s: &Subscriber) -> Result<Staged, StoreError> {
        let key = s.row_key()?;
        let value = records::encode(s).map_err(StoreError::Encode)?;
        let r = insert_new(&self.subscriber, &key, &value)?;
        Ok(counted(r, &mut self.counts.subscriber))
    }

    pub fn counts(&self) -> TableCounts {
        self.counts
    }

    /// Another loader into the same tables, for another thread; it counts its own rows.
    /// Two loaders never report the same row twice, but which of two conflicting rows
    /// is the duplicate depends on their order, so conflicting rows must go through
    /// one loader (see `dump::parallel`).
    pub fn lane(&self) -> BulkLoad {
        BulkLoad {
            store: self.store.clone(),
            presentity: self.presentity.clone(),
            dialogs: self.dialogs.clone(),
            watchers: self.watchers.clone(),
            xcap: self.xcap.clone(),
            subscriber: self.subscriber.clone(),
            counts: TableCounts::default(),
        }
    }

    /// Makes what was loaded, through this loader and its lanes, durable, and counts
    /// it: `loaded` is the sum of their [`Self::counts`].
    pub fn finish(self, loaded: TableCounts) -> Result<(), StoreError> {
        self.store.loaded(loaded);
        self.store.flush()?;
        Ok(())
    }

    /// Empties the four trees again: the database was empty before.
    pub fn abort(self) -> Result<(), StoreError> {
        for t in [
            &self.presentity,
            &self.dialogs,
            &self.watchers,
            &self.xcap,
            &self.subscriber,
        ] {
            t.clear()?;
        }
        self.store.xcap_written();
        self.store.flush()?;
        Ok(())
    }
}

fn decode<R: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<R, StoreError> {
    records::decode(bytes).map_err(|why| StoreError::Corrupt {
        tree: TREE,
        key: key.to_vec(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::store::records::tests::{dialog, presentity, watcher};

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, s)
    }

    #[test]
    fn staged_rows_reach_the_tables_only_on_commit() {
        let (_d, s) = open();
        let mut st = s.staging().unwrap();
        st.add_presentity(&presentity("sip:a@b", "presence", "e1", 9))
            .unwrap();
        st.add_dialog(&dialog("sip:a@b", "presence", "c1", 9))
            .unwrap();
        st.add_watcher(&watcher("sip:a@b", "presence", "sip:bob@example.org"))
            .unwrap();
        assert_eq!(s.counts().unwrap().total(), 0);
        let n = st.commit(false).unwrap();
        assert_eq!(n.total(), 3);
        assert_eq!(s.counts().unwrap(), n);
    }

    #[test]
    fn a_discarded_staging_changes_nothing() {
        let (_d, s) = open();
        s.put_publication(&presentity("sip:a@b", "presence", "old", 9))
            .unwrap();
        let mut st = s.staging().unwrap();
        st.add_presentity(&presentity("sip:x@y", "presence", "e1", 9))
            .unwrap();
        st.discard().unwrap();
        assert_eq!(s.publications_count(), 1);
        assert!(s.staging().unwrap().counts().total() == 0);
    }

    #[test]
    fn duplicate_keys_and_reused_dialog_ids_are_reported() {
        let (_d, s) = open();
        let mut st = s.staging().unwrap();
        let p = presentity("sip:a@b", "presence", "e1", 9);
        assert_eq!(st.add_presentity(&p).unwrap(), Staged::Added);
        assert_eq!(st.add_presentity(&p).unwrap(), Staged::Duplicate);
        let d = dialog("sip:a@b", "presence", "c1", 9);
        assert_eq!(st.add_dialog(&d).unwrap(), Staged::Added);
        let mut other = d.clone();
        other.presentity_uri = "sip:z@b".into();
        assert_eq!(st.add_dialog(&other).unwrap(), Staged::Duplicate);
    }

    #[test]
    fn a_bulk_load_writes_rows_with_their_index_entries() {
        let (dir, s) = open();
        let mut bl = s.bulk_load().unwrap().unwrap();
        for i in 0..2058 {
            let d = dialog("sip:a@b", "presence", &format!("c{i}"), 5);
            assert_eq!(bl.add_dialog(&d).unwrap(), Staged::Added);
        }
        let d = dialog("sip:a@b", "presence", "c3", 5);
        assert_eq!(bl.add_dialog(&d).unwrap(), Staged::Duplicate);
        // The same dialog under another presentity: refused, and no row left behind.
        let mut other = dialog("sip:a@b", "presence", "c4", 5);
        other.presentity_uri = "sip:z@b".into();
        assert_eq!(bl.add_dialog(&other).unwrap(), Staged::Duplicate);
        assert_eq!(bl.counts().active_watchers, 2058);
        let loaded = bl.counts();
        bl.finish(loaded).unwrap();
        assert_eq!(s.subscriptions_count(), 2058);
        assert!(s.get_subscription("c7", "tt", "ft").unwrap().is_some());
        assert_eq!(s.expired_subscriptions(5, usize::MAX).unwrap().len(), 2058);
        // Nothing for repair to fix: the index entries are exactly the table's own.
        drop(s);
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(s.repair(0, |_| false).unwrap().changed_nothing());
        assert_eq!(s.subscriptions_count(), 2058);
    }

    #[test]
    fn a_bulk_load_is_only_offered_for_an_empty_store_and_abort_empties_it() {
        let (_d, s) = open();
        let mut bl = s.bulk_load().unwrap().unwrap();
        bl.add_watcher(&watcher("sip:a@b", "presence", "sip:c@d"))
            .unwrap();
        bl.abort().unwrap();
        assert_eq!(s.iter_watchers().count(), 0);
        s.put_watcher(&watcher("sip:a@b", "presence", "sip:c@d"))
            .unwrap();
        assert!(s.bulk_load().unwrap().is_none());
    }

    #[test]
    fn replace_empties_the_tables_before_applying() {
        let (_d, s) = open();
        s.put_publication(&presentity("sip:a@b", "presence", "old", 9))
            .unwrap();
        s.put_watcher(&watcher("sip:a@b", "presence", "sip:c@d"))
            .unwrap();
        let mut st = s.staging().unwrap();
        st.add_presentity(&presentity("sip:x@y", "presence", "e1", 9))
            .unwrap();
        st.commit(true).unwrap();
        assert_eq!(s.publications_count(), 1);
        assert_eq!(s.watchers_count(), 0);
        assert!(
            s.get_publication("presence", "sip:x@y", "e1")
                .unwrap()
                .is_some()
        );
    }
}
