//! Bulk loading for `presenced restore`: a staging tree that collects a restore's rows
//! (and finds duplicate keys) before any live table changes, then applies them in the
//! store's cross-table write order. A restore that fails while staging leaves the live
//! tables untouched: the staging tree is dropped and nothing else was written.
//!
//! Memory stays flat: rows go to sled as they arrive, and sled's page cache is bounded
//! by `cache_capacity`.

use serde::{Deserialize, Serialize};

use super::keys::{self, ROW};
use super::records::{self, ActiveWatcher, Presentity, Watcher};
use super::table::Record;
use super::xcap::Xcap;
use super::{Store, StoreError};

/// The staging tree's name; a leftover from a crash mid-restore is dropped on reuse.
const TREE: &str = "restore-staging";

// Tags in the staging tree; their order is the order rows are applied in.
const PRESENTITY: u8 = b'1';
const DIALOG: u8 = b'2';
const WATCHER: u8 = b'3';
const XCAP: u8 = b'4';
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
}

impl TableCounts {
    pub fn total(&self) -> u64 {
        self.presentity + self.active_watchers + self.watchers + self.xcap
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
        self.inner.db.drop_tree(TREE)?;
        Ok(Staging {
            store: self.clone(),
            tree: self.inner.db.open_tree(TREE)?,
            counts: TableCounts::default(),
        })
    }

    /// Rows per table right now.
    pub fn counts(&self) -> Result<TableCounts, StoreError> {
        Ok(TableCounts {
            presentity: self.presentities_count(),
            active_watchers: self.dialogs_count(),
            watchers: self.watchers_count(),
            xcap: self.xcap_count()?,
        })
    }

    /// Removes every row of the four tables, dialogs before watchers (the store's write
    /// order). Rows this version cannot read are left in place and counted.
    pub fn clear_tables(&self) -> Result<u64, StoreError> {
        let mut unreadable = 0;
        for p in self.iter_presentities() {
            match p {
                Ok(p) => {
                    self.delete_presentity(&p.event, &p.presentity_uri, &p.etag)?;
                }
                Err(StoreError::Corrupt { .. }) => unreadable += 1,
                Err(e) => return Err(e),
            }
        }
        for d in self.iter_dialogs() {
            match d {
                Ok(d) => {
                    self.delete_dialog(&d.call_id, &d.to_tag, &d.from_tag)?;
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
        Ok(unreadable)
    }
}

impl Staging {
    fn stage<R: Serialize>(&mut self, key: Vec<u8>, rec: &R) -> Result<Staged, StoreError> {
        let value = records::encode(rec).map_err(StoreError::Encode)?;
        match self.tree.insert(key, value)? {
            None => Ok(Staged::Added),
            Some(_) => Ok(Staged::Duplicate),
        }
    }

    pub fn add_presentity(&mut self, p: &Presentity) -> Result<Staged, StoreError> {
        let r = self.stage(tagged(PRESENTITY, &p.row_key()?), p)?;
        if r == Staged::Added {
            self.counts.presentity += 1;
        }
        Ok(r)
    }

    pub fn add_dialog(&mut self, d: &ActiveWatcher) -> Result<Staged, StoreError> {
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
        let r = self.stage(tagged(DIALOG, &d.row_key()?), d)?;
        if r == Staged::Added {
            self.counts.active_watchers += 1;
        }
        Ok(r)
    }

    pub fn add_watcher(&mut self, w: &Watcher) -> Result<Staged, StoreError> {
        let r = self.stage(tagged(WATCHER, &w.row_key()?), w)?;
        if r == Staged::Added {
            self.counts.watchers += 1;
        }
        Ok(r)
    }

    pub fn add_xcap(&mut self, x: &Xcap) -> Result<Staged, StoreError> {
        let key = keys::key(
            ROW,
            &[
                ("username", &x.username),
                ("domain", &x.domain),
                ("doc_type", &x.doc_type.to_string()),
                ("doc_uri", &x.doc_uri),
            ],
        )?;
        let r = self.stage(tagged(XCAP, &key), x)?;
        if r == Staged::Added {
            self.counts.xcap += 1;
        }
        Ok(r)
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
            self.store.put_presentity(&decode(&k, &v)?)?;
        }
        for entry in self.tree.scan_prefix([DIALOG]) {
            let (k, v) = entry?;
            self.store.put_watcher_dialog(&decode(&k, &v)?)?;
        }
        for entry in self.tree.scan_prefix([WATCHER]) {
            let (k, v) = entry?;
            self.store.put_watcher(&decode(&k, &v)?)?;
        }
        for entry in self.tree.scan_prefix([XCAP]) {
            let (k, v) = entry?;
            self.store.put_xcap(&decode(&k, &v)?)?;
        }
        let counts = self.counts;
        self.discard()?;
        Ok(counts)
    }

    /// Forgets the staged rows; the live tables were never touched.
    pub fn discard(self) -> Result<(), StoreError> {
        drop(self.tree);
        self.store.inner.db.drop_tree(TREE)?;
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
        s.put_presentity(&presentity("sip:a@b", "presence", "old", 9))
            .unwrap();
        let mut st = s.staging().unwrap();
        st.add_presentity(&presentity("sip:x@y", "presence", "e1", 9))
            .unwrap();
        st.discard().unwrap();
        assert_eq!(s.presentities_count(), 1);
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
    fn replace_empties_the_tables_before_applying() {
        let (_d, s) = open();
        s.put_presentity(&presentity("sip:a@b", "presence", "old", 9))
            .unwrap();
        s.put_watcher(&watcher("sip:a@b", "presence", "sip:c@d"))
            .unwrap();
        let mut st = s.staging().unwrap();
        st.add_presentity(&presentity("sip:x@y", "presence", "e1", 9))
            .unwrap();
        st.commit(true).unwrap();
        assert_eq!(s.presentities_count(), 1);
        assert_eq!(s.watchers_count(), 0);
        assert!(
            s.get_presentity("presence", "sip:x@y", "e1")
                .unwrap()
                .is_some()
        );
    }
}
