//! One table = one sled tree holding its rows and its own index entries, so a row and
//! its index entries change together in a single `apply_batch` (atomic within a tree).
//! Multi-tree transactions are avoided on purpose: sled 0.34 can deadlock in them
//! (spacejam/sled#1412).
//!
//! With write-behind (`sync = "periodic"`, see [`super::overlay`]) the batch goes to the
//! table's pending map instead and reaches the tree at the next drain; every read here
//! looks through that map first.
//!
//! Concurrency: writes to one table are serialised by a mutex held across "read the old
//! row, apply the batch", so index entries never go stale even with many writer threads;
//! reads take no lock and see either the old or the new row with its index entries.

use super::StoreError;
use super::keys::{self, BY_IDENTITY, BY_WATCHER, DIALOG, EXPIRY, ROW};
use super::overlay::{Merged, Ops, Overlay};
use super::records::{self, DecodeError};
use super::sketch::{self, Membership, Sketch};
use log::{error, warn};
use serde::{Serialize, de::DeserializeOwned};
use sled::{Batch, IVec};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a table needs to know about the record it stores.
pub(super) trait Record: Serialize + DeserializeOwned {
    /// The full row key, tag byte included.
    fn row_key(&self) -> Result<Vec<u8>, StoreError>;
    /// Unix seconds after which the sweeper should see this row.
    fn expires(&self) -> Option<u64> {
        None
    }
    /// A secondary key (tag [`DIALOG`]) whose index entry points at the row key.
    fn dialog_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    /// Further secondary keys whose entries point at the row key.
    fn extra_keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(Vec::new())
    }
    /// The groups this row is counted in, each named by the prefix its index entries
    /// share (see [`Table::count`]).
    fn count_groups(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(Vec::new())
    }
}

/// Groups whose size is remembered at most; past it one is forgotten (and counted
/// again, by a scan of its index entries, when next asked for).
const COUNTED_GROUPS: usize = 16_384;

/// Group sizes, kept right by every write (see [`Table::count`] and [`Table::at_least`]).
#[derive(Default)]
struct Counts {
    /// Exact sizes of the groups asked for lately.
    known: std::collections::HashMap<Vec<u8>, u64>,
    /// Upper bounds of every group's size; `None` until built from the index, and
    /// again after writes that bypassed this table (a bulk load).
    sketch: Option<Sketch>,
    /// Every row key written, for a table that asked for it ([`Table::filtered`]);
    /// `None` there until built, and again after writes that bypassed this table.
    rows_seen: Option<Membership>,
}

impl Counts {
    fn adjust<R: Record>(&mut self, rec: &R, up: bool) {
        if self.known.is_empty() && self.sketch.is_none() {
            return;
        }
        for group in rec.count_groups().unwrap_or_default() {
            if let Some(n) = self.known.get_mut(&group) {
                *n = if up { *n + 1 } else { n.saturating_sub(1) };
            }
            if let Some(sketch) = &mut self.sketch {
                sketch.adjust(&group, up);
            }
        }
    }

    fn forget(&mut self) {
        self.known.clear();
        self.sketch = None;
        self.rows_seen = None;
    }

    /// Whether the membership filter proves no row was ever written under `key`.
    fn surely_absent(&self, key: &[u8]) -> bool {
        key.first() == Some(&ROW) && self.rows_seen.as_ref().is_some_and(|f| !f.may_contain(key))
    }

    /// A row was written under `key`.
    fn seen(&mut self, key: &[u8]) {
        if let Some(filter) = &mut self.rows_seen {
            filter.add(key);
        }
    }
}

/// An index entry: (entry key, value).
type IndexEntry = (Vec<u8>, Vec<u8>);

/// The index entries a record owns.
pub(super) fn index_entries<R: Record>(
    rec: &R,
    row_key: &[u8],
) -> Result<Vec<IndexEntry>, StoreError> {
    let mut out = Vec::with_capacity(2);
    if let Some(when) = rec.expires() {
        out.push((keys::expiry(when, row_key), Vec::new()));
    }
    if let Some(dkey) = rec.dialog_key()? {
        out.push((dkey, row_key.to_vec()));
    }
    for k in rec.extra_keys()? {
        out.push((k, row_key.to_vec()));
    }
    Ok(out)
}

/// What [`Table::reindex`] found and fixed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reindexed {
    pub removed: usize,
    pub added: usize,
    pub unreadable: usize,
}

/// Pending writes beyond this many bytes are drained by the writer itself. The daemon
/// asks for a flush off its core loop long before (see `Core::poll_flush`), so this
/// only bounds memory for a writer that never flushes (a command-line tool, a bug).
const DRAIN_AT_BYTES: usize = 256 * 1024 * 1024;

pub(super) struct Table {
    name: &'static str,
    /// Replaced by [`Table::swap_tree`] when the database is compacted into new files.
    tree: std::sync::RwLock<sled::Tree>,
    /// Serialises writes, and holds the group sizes they keep up to date.
    writes: Mutex<Counts>,
    /// The kinds of group rows are counted in: (index tag, leading key parts).
    groups: &'static [(u8, usize)],
    /// Whether row reads consult a membership filter first ([`Table::filtered`]).
    filtered: bool,
    rows: AtomicU64,
    /// Values decoded so far (reads of rows and of what index entries point at).
    decoded: std::sync::Arc<AtomicU64>,
    /// Write-behind; `None` writes every batch through at once.
    overlay: Option<Overlay>,
}

impl Table {
    pub fn open(
        db: &sled::Db,
        name: &'static str,
        write_behind: bool,
    ) -> Result<Table, StoreError> {
        let tree = db.open_tree(name)?;
        let mut rows = 0;
        for entry in tree.scan_prefix([ROW]) {
            entry?;
            rows += 1;
        }
        Ok(Table {
            name,
            tree: std::sync::RwLock::new(tree),
            writes: Mutex::new(Counts::default()),
            groups: &[],
            filtered: false,
            rows: AtomicU64::new(rows),
            decoded: std::sync::Arc::new(AtomicU64::new(0)),
            overlay: write_behind.then(Overlay::default),
        })
    }

    /// Counts rows in groups of these kinds (index tag, leading key parts), which
    /// [`Record::count_groups`] names; see [`Table::at_least`].
    pub fn counting(mut self, groups: &'static [(u8, usize)]) -> Table {
        self.groups = groups;
        self
    }

    /// Keeps a membership filter of this table's row keys, so that reading a row that
    /// does not exist (most of a table's reads, for the watchers table: every new
    /// watcher) costs no read of the tree. Built now from the rows, rebuilt by
    /// [`Table::prepare_counts`] after a bulk load; until then reads go to the tree.
    pub fn filtered(mut self) -> Result<Table, StoreError> {
        self.filtered = true;
        let filter = self.filter_rows()?;
        self.lock().rows_seen = Some(filter);
        Ok(self)
    }

    fn filter_rows(&self) -> Result<Membership, StoreError> {
        let mut filter = Membership::default();
        for entry in self.scan_raw(vec![ROW]) {
            filter.add(&entry?.0);
        }
        Ok(filter)
    }

    /// The tree itself, for bulk loading (which keeps the same key layout), after the
    /// pending writes have reached it.
    pub fn tree(&self) -> Result<sled::Tree, StoreError> {
        self.drain()?;
        // What is written there bypasses the counts.
        self.lock().forget();
        Ok(self.t())
    }

    /// The sled tree's name.
    pub fn tree_name(&self) -> &'static str {
        self.name
    }

    /// The current tree (a handle: sled trees are reference-counted).
    fn t(&self) -> sled::Tree {
        self.tree
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Holds this table's writes (for a compaction's last step): while the guard lives,
    /// no row is written.
    pub fn hold_writes(&self) -> std::sync::MutexGuard<'_, impl Sized> {
        self.lock()
    }

    /// Points the table at `tree`, which holds the same entries (a compacted copy).
    /// The caller holds [`Table::hold_writes`] and has drained the pending writes.
    pub fn swap_tree(&self, tree: sled::Tree) {
        *self
            .tree
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = tree;
    }

    /// How many index entries start with `group` (a prefix some [`Record::count_groups`]
    /// names), that is, how many rows are in the group: a scan of the entries' keys
    /// the first time, then remembered and kept right by every write.
    pub fn count(&self, group: Vec<u8>) -> Result<u64, StoreError> {
        let mut counts = self.lock();
        self.count_locked(&mut counts, group)
    }

    /// Whether `group` holds `n` rows or more. Nearly always answered by the sketch
    /// alone (its estimate is under `n`), so a new watcher or presentity costs no scan
    /// and no remembered entry; the exact count is taken only near `n`.
    pub fn at_least(&self, group: Vec<u8>, n: u64) -> Result<bool, StoreError> {
        let mut counts = self.lock();
        if !self.groups.is_empty() {
            if counts.sketch.is_none() {
                counts.sketch = Some(self.sketch_index()?);
            }
            if counts
                .sketch
                .as_ref()
                .is_some_and(|s| s.estimate(&group) < n)
            {
                return Ok(false);
            }
        }
        Ok(self.count_locked(&mut counts, group)? >= n)
    }

    /// Builds a sketch from the index entries of every counted group kind.
    pub fn sketch_index(&self) -> Result<Sketch, StoreError> {
        let mut sketch = Sketch::default();
        for &(tag, parts) in self.groups {
            for entry in self.scan_raw(vec![tag]) {
                let (key, _) = entry?;
                if let Some(group) = sketch::group_of(&key, parts) {
                    sketch.adjust(group, true);
                }
            }
        }
        Ok(sketch)
    }

    /// Builds the sketch now, so the first [`Table::at_least`] does not pay for it.
    pub fn prepare_counts(&self) -> Result<(), StoreError> {
        let mut counts = self.lock();
        if counts.sketch.is_none() && !self.groups.is_empty() {
            counts.sketch = Some(self.sketch_index()?);
        }
        if counts.rows_seen.is_none() && self.filtered {
            counts.rows_seen = Some(self.filter_rows()?);
        }
        Ok(())
    }

    fn count_locked(&self, counts: &mut Counts, group: Vec<u8>) -> Result<u64, StoreError> {
        if let Some(n) = counts.known.get(&group) {
            return Ok(*n);
        }
        let mut n = 0;
        for entry in self.scan_raw(group.clone()) {
            entry?;
            n += 1;
        }
        if counts.known.len() >= COUNTED_GROUPS
            && let Some(any) = counts.known.keys().next().cloned()
        {
            counts.known.remove(&any);
        }
        counts.known.insert(group, n);
        Ok(n)
    }

    /// Writes the pending operations to the tree; returns how many.
    pub fn drain(&self) -> Result<usize, StoreError> {
        match &self.overlay {
            Some(o) => Ok(o.drain(&self.t())?),
            None => Ok(0),
        }
    }

    /// Bytes of writes waiting for the next drain.
    pub fn pending_bytes(&self) -> usize {
        self.overlay.as_ref().map_or(0, Overlay::bytes)
    }

    /// The current value of `key`: pending writes first, then the tree.
    fn read(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(o) = &self.overlay
            && let Some(pending) = o.get(key)
        {
            return Ok(pending);
        }
        Ok(self.t().get(key)?)
    }

    /// Entries under `prefix`, pending writes laid over the tree.
    fn scan_raw(&self, prefix: Vec<u8>) -> Merged {
        let pending = self
            .overlay
            .as_ref()
            .map(|o| o.range(&prefix))
            .unwrap_or_default();
        Merged::new(self.t().scan_prefix(prefix), pending)
    }

    /// Entries under `prefix` after the key `after`, pending writes laid over the tree.
    fn scan_after(&self, prefix: Vec<u8>, after: &[u8]) -> Merged {
        use std::ops::Bound;
        let pending = self
            .overlay
            .as_ref()
            .map(|o| o.range_from(&prefix, Bound::Excluded(after)))
            .unwrap_or_default();
        let tree = self
            .t()
            .range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded));
        Merged::new(tree, pending).with_prefix(prefix)
    }

    /// Applies one row's operations: atomically to the tree, or to the pending map.
    /// `absent(key)` says the writer knows the tree lacks the key (see [`Overlay`]).
    fn commit(&self, ops: Ops, absent: impl Fn(&[u8]) -> bool) -> Result<(), StoreError> {
        match &self.overlay {
            Some(o) => {
                if o.extend(ops, absent) > DRAIN_AT_BYTES {
                    o.drain(&self.t())?;
                }
            }
            None => {
                let mut batch = Batch::default();
                for (k, v) in ops {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                self.t().apply_batch(batch)?;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Counts `n` rows that were written straight into the tree (a bulk load).
    pub fn loaded(&self, n: u64) {
        self.lock().forget();
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The mutex guards no data, so a panic elsewhere cannot have left anything
        // half-done behind it.
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decode<R: DeserializeOwned>(&self, key: &[u8], bytes: &[u8]) -> Result<R, StoreError> {
        self.decoded.fetch_add(1, Ordering::Relaxed);
        records::decode(bytes).map_err(|why| self.corrupt(key, why))
    }

    /// Values decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    fn corrupt(&self, key: &[u8], why: DecodeError) -> StoreError {
        StoreError::Corrupt {
            tree: self.name,
            key: key.to_vec(),
            why,
        }
    }

    pub fn get<R: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<R>, StoreError> {
        if self.filtered && self.lock().surely_absent(key) {
            return Ok(None);
        }
        match self.read(key)? {
            Some(bytes) => self.decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The time of the first expiry index entry, pending writes included.
    pub fn first_expiry(&self) -> Result<Option<u64>, StoreError> {
        let prefix = [EXPIRY];
        let pending = self.overlay.as_ref().and_then(|o| o.first_written(&prefix));
        let mut in_tree = None;
        for entry in self.t().scan_prefix(prefix) {
            let (key, _) = entry?;
            let removed = self
                .overlay
                .as_ref()
                .is_some_and(|o| matches!(o.get(&key), Some(None)));
            if !removed {
                in_tree = Some(key.to_vec());
                break;
            }
        }
        let first = match (pending, in_tree) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(first
            .as_deref()
            .and_then(keys::parse_expiry)
            .map(|(when, _)| when))
    }

    /// The row keys that index entries under `prefix` point at.
    pub fn pointed(&self, prefix: Vec<u8>) -> Result<Vec<IVec>, StoreError> {
        let mut out = Vec::new();
        for entry in self.scan_raw(prefix) {
            out.push(entry?.1);
        }
        Ok(out)
    }

    /// The keys under `prefix` (rows or index entries), pending writes laid over the
    /// tree; values are not decoded.
    pub fn keys(&self, prefix: Vec<u8>) -> impl Iterator<Item = Result<IVec, StoreError>> + use<> {
        self.scan_raw(prefix)
            .map(|entry| entry.map(|(k, _)| k).map_err(StoreError::from))
    }

    /// The row key a dialog index entry points at.
    pub fn lookup(&self, dialog_key: &[u8]) -> Result<Option<IVec>, StoreError> {
        self.read(dialog_key)
    }

    /// Queues removal of the index entries an existing row owns. A pointer entry is only
    /// removed while it still points at this row.
    /// Returns the row, when it could be read.
    fn unindex<R: Record>(
        &self,
        key: &[u8],
        bytes: &[u8],
        batch: &mut Ops,
    ) -> Result<Option<R>, StoreError> {
        let old: R = match self.decode(key, bytes) {
            Ok(old) => old,
            Err(e) => {
                // Its index entries cannot be known; `repair` drops them later.
                warn!("{e}; its index entries are left for repair");
                return Ok(None);
            }
        };
        for (entry, value) in index_entries(&old, key)? {
            if value.is_empty() || self.read(&entry)?.is_some_and(|v| v == value) {
                batch.insert(entry, None);
            }
        }
        Ok(Some(old))
    }

    /// Inserts or replaces a row and its index entries in one batch. A row that held the
    /// same dialog key under another row key is removed, so a dialog has one row.
    pub fn put<R: Record>(&self, rec: &R) -> Result<(), StoreError> {
        let key = rec.row_key()?;
        let value = records::encode(rec).map_err(StoreError::Encode)?;
        let entries = index_entries(rec, &key)?;
        let mut counts = self.lock();
        // Removals go in first: a batch is a map, so a later insert of the same key wins.
        let mut batch = Ops::new();
        let existed = if counts.surely_absent(&key) {
            None
        } else {
            self.read(&key)?
        };
        // The common rewrite (a NOTIFY's CSeq, a refresh at the same expiry) leaves every
        // index entry as it was: then only the row is written.
        let unchanged = match &existed {
            Some(bytes) => match self.decode::<R>(&key, bytes) {
                Ok(old) => index_entries(&old, &key)? == entries,
                Err(_) => false,
            },
            None => false,
        };
        // Rows leaving their groups (an unchanged row stays in the same ones).
        let mut gone: Vec<R> = Vec::new();
        if let Some(bytes) = &existed
            && !unchanged
        {
            gone.extend(self.unindex::<R>(&key, bytes, &mut batch)?);
        }
        let mut displaced = None;
        // A row rewritten under its own key keeps its dialog key (the key contains it).
        if existed.is_none()
            && let Some(dkey) = rec.dialog_key()?
            && let Some(prev) = self.read(&dkey)?
            && prev != key
            && let Some(bytes) = self.read(&prev)?
        {
            gone.extend(self.unindex::<R>(&prev, &bytes, &mut batch)?);
            batch.insert(prev.to_vec(), None);
            displaced = Some(prev);
        }
        if !unchanged {
            for (entry, v) in entries {
                batch.insert(entry, Some(IVec::from(v)));
            }
        }
        let fresh = existed.is_none().then(|| key.clone());
        counts.seen(&key);
        batch.insert(key, Some(IVec::from(value)));
        self.commit(batch, |k| fresh.as_deref() == Some(k))?;
        for old in &gone {
            counts.adjust(old, false);
        }
        if !unchanged {
            counts.adjust(rec, true);
        }
        match (existed.is_some(), displaced.is_some()) {
            (false, false) => self.rows.fetch_add(1, Ordering::Relaxed),
            (true, true) => self.rows.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        Ok(())
    }

    /// Inserts a row whose key, and every index entry's key, contains a token this
    /// server has just generated (a new dialog's To tag, a new publication's entity-tag),
    /// so no row or entry can exist under it: nothing is read, which on a table larger
    /// than sled's cache saves the core loop a page read per key. Any other row goes
    /// through [`Table::put`].
    pub fn insert_new<R: Record>(&self, rec: &R) -> Result<(), StoreError> {
        let key = rec.row_key()?;
        let value = records::encode(rec).map_err(StoreError::Encode)?;
        let mut batch = Ops::new();
        for (entry, v) in index_entries(rec, &key)? {
            batch.insert(entry, Some(IVec::from(v)));
        }
        let mut counts = self.lock();
        counts.seen(&key);
        batch.insert(key, Some(IVec::from(value)));
        self.commit(batch, |_| true)?;
        counts.adjust(rec, true);
        self.rows.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes a row and its index entries in one batch. An unreadable row is removed
    /// too (the caller asked for it gone) and reported as absent.
    pub fn delete<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StoreError> {
        let mut counts = self.lock();
        let Some(bytes) = self.read(key)? else {
            return Ok(None);
        };
        let mut batch = Ops::new();
        let old = self.unindex::<R>(key, &bytes, &mut batch)?;
        batch.insert(key.to_vec(), None);
        self.commit(batch, |_| false)?;
        if let Some(old) = &old {
            counts.adjust(old, false);
        }
        self.rows.fetch_sub(1, Ordering::Relaxed);
        Ok(old)
    }

    /// Streams decoded rows whose key starts with `prefix`.
    pub fn scan<R: DeserializeOwned>(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<R, StoreError>> + use<R> {
        let name = self.name;
        let decoded = self.decoded.clone();
        self.scan_raw(prefix).map(move |entry| {
            let (key, bytes) = entry?;
            decoded.fetch_add(1, Ordering::Relaxed);
            records::decode(&bytes).map_err(|why| StoreError::Corrupt {
                tree: name,
                key: key.to_vec(),
                why,
            })
        })
    }

    /// Rows under `prefix` for the engine: an unreadable row is logged and skipped so one
    /// bad row does not take a whole presentity down with it.
    pub fn collect<R: DeserializeOwned>(&self, prefix: Vec<u8>) -> Result<Vec<R>, StoreError> {
        let mut out = Vec::new();
        for rec in self.scan(prefix) {
            match rec {
                Ok(rec) => out.push(rec),
                Err(e @ StoreError::Corrupt { .. }) => error!("{e}; skipped"),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Up to `limit` rows with `expires <= now`, soonest first, read by walking the
    /// expiry index (never the table). Entries whose row is gone or moved on are skipped.
    pub fn expired<R: Record>(&self, now: u64, limit: usize) -> Result<Vec<R>, StoreError> {
        Ok(self.expired_page(now, None, limit)?.0)
    }

    /// [`Table::expired`] from after the index entry `after`, with the entry to go on
    /// from when `limit` rows were found (`None`: nothing further is due).
    pub fn expired_page<R: Record>(
        &self,
        now: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<R>, Option<Vec<u8>>), StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok((out, None));
        }
        let entries = match after {
            None => self.scan_raw(vec![EXPIRY]),
            Some(a) => self.scan_after(vec![EXPIRY], a),
        };
        for entry in entries {
            let (entry, _) = entry?;
            let Some((when, row_key)) = keys::parse_expiry(&entry) else {
                warn!("{}: malformed expiry entry {entry:?}", self.name);
                continue;
            };
            if when > now {
                break;
            }
            let Some(bytes) = self.read(row_key)? else {
                continue;
            };
            match self.decode::<R>(row_key, &bytes) {
                Ok(rec) if rec.expires() == Some(when) => out.push(rec),
                Ok(_) => {}
                Err(e) => error!("{e}; not swept"),
            }
            if out.len() >= limit {
                return Ok((out, Some(entry.to_vec())));
            }
        }
        Ok((out, None))
    }

    /// Rebuilds the index from the rows: drops entries that point at nothing or at a row
    /// that no longer owns them, adds entries a row owns but lacks. Unreadable rows and
    /// unknown entries are left alone (a newer version may be able to read them).
    pub fn reindex<R: Record>(&self) -> Result<Reindexed, StoreError> {
        let mut counts = self.lock();
        counts.forget();
        self.drain()?;
        let mut report = Reindexed::default();
        let mut batch = Batch::default();
        for entry in self.t().iter() {
            let (key, value) = entry?;
            match key.first() {
                Some(&ROW) => match self.decode::<R>(&key, &value) {
                    Ok(rec) => {
                        for (e, v) in index_entries(&rec, &key)? {
                            if self.t().get(&e)?.is_none_or(|have| have != v) {
                                batch.insert(e, v);
                                report.added += 1;
                            }
                        }
                    }
                    Err(e) => {
                        error!("{e}; left in place");
                        report.unreadable += 1;
                    }
                },
                Some(&EXPIRY) | Some(&DIALOG) | Some(&BY_WATCHER) | Some(&BY_IDENTITY) => {
                    let row_key: &[u8] = match keys::parse_expiry(&key) {
                        Some((_, row_key)) => row_key,
                        None => &value,
                    };
                    let owned = match self.t().get(row_key)? {
                        None => false,
                        Some(bytes) => match self.decode::<R>(row_key, &bytes) {
                            Ok(rec) => index_entries(&rec, row_key)?
                                .iter()
                                .any(|(e, v)| *e == *key && *v == *value),
                            // Cannot tell; keep it with its row.
                            Err(_) => true,
                        },
                    };
                    if !owned {
                        batch.remove(key);
                        report.removed += 1;
                    }
                }
                _ => {
                    warn!("{}: unknown entry {key:?} left in place", self.name);
                    report.unreadable += 1;
                }
            }
        }
        self.t().apply_batch(batch)?;
        Ok(report)
    }

    #[cfg(test)]
    pub fn raw_insert(&self, key: &[u8], value: &[u8]) {
        self.drain().unwrap();
        self.lock().seen(key);
        self.t().insert(key, value).unwrap();
    }

    #[cfg(test)]
    pub fn raw_remove(&self, key: &[u8]) {
        self.drain().unwrap();
        self.t().remove(key).unwrap();
    }

    #[cfg(test)]
    pub fn raw_len(&self) -> usize {
        self.drain().unwrap();
        self.t().len()
    }
}
