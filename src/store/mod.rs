//! The durable state of presenced: publications, subscription dialogs and watcher
//! authorizations in sled, behind a narrow synchronous interface. This is the only module
//! that names sled. It never reads the clock: expiry questions take `now` (unix seconds).
//! Callers on the reactor run it through `smol::unblock`.
//!
//! Layout: one tree per table (`presentity`, `active_watchers`, `watchers`, `xcap`); inside each,
//! rows under tag `r`, the expiry index under `x` and the dialog index under `d` (see
//! [`keys`]). A row and its index entries are written in one batch, so they agree after
//! any crash.
//!
//! Durability: [`Store::flush`] returns once every write completed before it is on
//! disk in the sense of a power cut, not only of a process crash: it drains the
//! write-behind maps into sled, has sled write its log, then `fdatasync`s the files sled
//! wrote ([`durable`] says which and why sled's own flush is not enough). A temporary
//! store skips the last step. [`StoreOptions::sync_always`]:
//! - `true`: every write goes straight to sled and every write method flushes before
//!   it returns, so a reply sent after it describes state that survives `kill -9` or
//!   power loss.
//! - `false` (what the daemon uses, `sync = "always"` included: its core holds answers
//!   until a flush covers them): writes are write-behind ([`overlay`]): they are
//!   visible to every read at once and reach the disk when the daemon calls
//!   [`Store::flush`]. A crash loses at most the writes since the last completed flush;
//!   dropping the store drains and flushes.
//!
//! Cross-table write order (sled transactions across trees are avoided, see [`table`]),
//! chosen so that what a crash can leave half-done is either harmless or re-derivable:
//! 1. New or refreshed subscription: [`Store::put_subscription`] first, then
//!    [`Store::put_watcher`]. A crash between leaves a dialog without its watchers row;
//!    [`Store::repair`] recreates that row from the dialog.
//! 2. Subscription end: [`Store::delete_subscription`] first, then the watchers row if the engine
//!    removes it. A leftover watchers row is a valid state (a remembered authorization).
//! 3. Authorization change: the watchers row first (it is the decision), then the dialogs
//!    (derived from it). A crash leaves dialogs with the old status, which the engine
//!    re-derives on the next refresh; repair does not touch statuses.
//!
//! Concurrency: `Store` is `Clone + Send + Sync`; writes to one table are serialised
//! inside the store and reads never block, so no caller discipline is needed for index
//! consistency. Ordering between writes to the same row (e.g. one presentity's
//! PUBLISHes, RFC 3903 §6) is still the caller's job.

mod bulk;
mod compact;
mod durable;
mod error;
pub mod keys;
mod listing;
mod overlay;
pub mod records;
mod repair;
mod sketch;
pub mod subscriber;
mod table;
pub mod xcap;

pub use bulk::{BulkLoad, Staged, Staging, TableCounts};
pub use compact::Compacted;
pub use error::StoreError;
pub use records::{Publication, SubscriptionRow, Watcher, status};
pub use repair::RepairReport;
pub use subscriber::Subscriber;
pub use xcap::{Xcap, doc_type as xcap_doc_type};

use durable::Disk;
use keys::{DIALOG, ROW};
pub use listing::EventRows;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use table::{Record, Table};

/// Open-time settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache in bytes. sled's own default is 1 GiB; a router wants tens of MiB.
    pub cache_capacity: u64,
    /// Flush before every write returns (`sync = "always"`); otherwise writes are
    /// write-behind until [`Store::flush`].
    pub sync_always: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 32 * 1024 * 1024,
            sync_always: false,
        }
    }
}

/// Handle to the database; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced, with the tables' trees, when the database is compacted ([`compact`]).
    db: std::sync::RwLock<sled::Db>,
    publications: Table,
    subscriptions: Table,
    watchers: Table,
    xcap: Table,
    subscribers: Table,
    sync_always: bool,
    /// The files a flush syncs; `None` for a temporary store.
    disk: std::sync::RwLock<Option<Arc<Disk>>>,
    /// The directory the store was opened at (`None`: temporary). sled's files are in
    /// it, or, once compacted, in the subdirectory its `current` file names.
    root: Option<std::path::PathBuf>,
    cache_capacity: u64,
    /// Added to sled's ids: a compacted database's id generator starts again at 0.
    sequence_base: AtomicU64,
    /// Serialises the start of a restore and of a compaction (see [`compact`]).
    maintenance: std::sync::Mutex<()>,
    compacting: std::sync::atomic::AtomicBool,
    /// Writes so far: a flush that starts after a write has returned covers it.
    writes: AtomicU64,
    /// Writes so far to what a resource's state is computed from (publications and
    /// XCAP documents), bulk loads included; see [`Store::state_generation`].
    state_writes: AtomicU64,
    /// Writes so far to the XCAP documents alone; see [`Store::xcap_generation`].
    xcap_writes: AtomicU64,
    /// Writes still to refuse (fault injection for tests).
    failing: AtomicU32,
    /// Events that active_watchers may hold rows of (see [`Store::may_have_subscriptions`]).
    sub_events: std::sync::Mutex<EventsSeen>,
}

/// An over-estimate of the events active_watchers holds rows of: exact after
/// [`Store::repair`] has read every dialog, then grown by every dialog written, never
/// shrunk. Until repair has run, and after a bulk load, it is `Any`.
enum EventsSeen {
    Any,
    Only(std::collections::HashSet<String>),
}

fn presentity_key(event: &str, uri: &str, etag: &str) -> Result<Vec<u8>, StoreError> {
    keys::key(
        ROW,
        &[("event", event), ("presentity_uri", uri), ("etag", etag)],
    )
}

fn dialog_row_key(d: &SubscriptionRow) -> Result<Vec<u8>, StoreError> {
    keys::key(
        ROW,
        &[
            ("presentity_uri", &d.presentity_uri),
            ("event", &d.event),
            ("call_id", &d.call_id),
            ("to_tag", &d.to_tag),
            ("from_tag", &d.from_tag),
        ],
    )
}

fn dialog_index_key(call_id: &str, to_tag: &str, from_tag: &str) -> Result<Vec<u8>, StoreError> {
    keys::key(
        DIALOG,
        &[
            ("call_id", call_id),
            ("to_tag", to_tag),
            ("from_tag", from_tag),
        ],
    )
}

fn watcher_key(uri: &str, event: &str, watcher_uri: &str) -> Result<Vec<u8>, StoreError> {
    keys::key(
        ROW,
        &[
            ("presentity_uri", uri),
            ("event", event),
            ("watcher_uri", watcher_uri),
        ],
    )
}

impl Record for Publication {
    fn row_key(&self) -> Result<Vec<u8>, StoreError> {
        presentity_key(&self.event, &self.presentity_uri, &self.etag)
    }
    fn expires(&self) -> Option<u64> {
        Some(self.expires)
    }
}

impl Record for SubscriptionRow {
    fn row_key(&self) -> Result<Vec<u8>, StoreError> {
        dialog_row_key(self)
    }
    fn expires(&self) -> Option<u64> {
        Some(self.expires)
    }
    fn dialog_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        dialog_index_key(&self.call_id, &self.to_tag, &self.from_tag).map(Some)
    }
    fn extra_keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let dialog = [
            ("call_id", self.call_id.as_str()),
            ("to_tag", &self.to_tag),
            ("from_tag", &self.from_tag),
        ];
        let presentity = ("presentity_uri", self.presentity_uri.as_str());
        let event = ("event", self.event.as_str());
        let watcher = ("watcher_uri", self.watcher_uri.as_str());
        Ok(vec![
            keys::key(
                keys::BY_WATCHER,
                &[&[presentity, event, watcher][..], &dialog].concat(),
            )?,
            keys::key(
                keys::BY_IDENTITY,
                &[&[watcher, presentity, event][..], &dialog].concat(),
            )?,
        ])
    }
    /// A dialog counts towards its presentity's (per event) and its watcher's.
    fn count_groups(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(vec![
            presentity_group(&self.presentity_uri, &self.event)?,
            watcher_group(&self.watcher_uri)?,
        ])
    }
}

fn presentity_group(uri: &str, event: &str) -> Result<Vec<u8>, StoreError> {
    keys::prefix(
        keys::BY_WATCHER,
        &[("presentity_uri", uri), ("event", event)],
    )
}

fn watcher_group(watcher_uri: &str) -> Result<Vec<u8>, StoreError> {
    keys::prefix(keys::BY_IDENTITY, &[("watcher_uri", watcher_uri)])
}

impl Record for Watcher {
    fn row_key(&self) -> Result<Vec<u8>, StoreError> {
        watcher_key(&self.presentity_uri, &self.event, &self.watcher_uri)
    }
    /// Only rows that are not active are ever removed (after the retention period,
    /// counted from `inserted_time`), so only they are indexed, by that time.
    fn expires(&self) -> Option<u64> {
        (self.status != status::ACTIVE).then_some(self.inserted_time)
    }
}

impl Inner {
    /// Drain order follows the cross-table write order above: dialogs before watchers
    /// rows.
    fn tables(&self) -> [&Table; 5] {
        [
            &self.subscriptions,
            &self.watchers,
            &self.publications,
            &self.xcap,
            &self.subscribers,
        ]
    }

    fn drain(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for t in self.tables() {
            n += t.drain()?;
        }
        Ok(n)
    }

    /// Drain, sled's flush (the log written), then the files synced.
    fn flush(&self) -> Result<(), StoreError> {
        self.drain()?;
        self.db().flush()?;
        if let Some(disk) = self.disk() {
            disk.sync()?;
        }
        Ok(())
    }

    /// The current database (a handle: sled's are reference-counted).
    fn db(&self) -> sled::Db {
        self.db
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn disk(&self) -> Option<Arc<Disk>> {
        self.disk
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for Inner {
    /// Nothing written is lost by dropping the last handle without a flush.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("store: writes lost at close: {e}");
        }
    }
}

/// How long [`Store::open`] waits for a lock that sled itself still holds.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens sled. After a database closes, sled's background writers can keep its lock
/// file open for a moment; a reopen in the same process (a restart of the daemon
/// inside `presenced`, or a test) would then fail at random, so a held lock is retried
/// for up to [`LOCK_WAIT`]. Another process holding the database still fails, just
/// that much later.
fn open_db(path: &Path, cache_capacity: u64) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .open()
        {
            // sled reports a held lock only in its message.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl Store {
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        let data = compact::data_dir(path);
        Disk::before_open(&data)?;
        let db = open_db(&data, opts.cache_capacity)?;
        let disk = Disk::open(&data)?;
        // Only now, holding sled's lock: what an interrupted compaction left behind.
        compact::tidy(path, &data);
        Store::with_db(db, Some(disk), Some(path.to_path_buf()), opts)
    }

    /// A database in memory (sled's temporary mode, under /dev/shm on Linux), gone when
    /// the last handle drops: for the fuzz targets, which need a fresh store per input.
    pub fn open_temporary(opts: StoreOptions) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(opts.cache_capacity)
            .open()?;
        Store::with_db(db, None, None, opts)
    }

    fn with_db(
        db: sled::Db,
        disk: Option<Disk>,
        root: Option<std::path::PathBuf>,
        opts: StoreOptions,
    ) -> Result<Store, StoreError> {
        let behind = !opts.sync_always;
        let sequence_base = compact::sequence_base(&db)?;
        let inner = Inner {
            publications: Table::open(&db, "presentity", behind)?,
            subscriptions: Table::open(&db, "active_watchers", behind)?
                .counting(&[(keys::BY_WATCHER, 2), (keys::BY_IDENTITY, 1)]),
            watchers: Table::open(&db, "watchers", behind)?.filtered()?,
            xcap: Table::open(&db, "xcap", behind)?,
            subscribers: Table::open(&db, "subscriber", behind)?,
            db: std::sync::RwLock::new(db),
            sync_always: opts.sync_always,
            disk: std::sync::RwLock::new(disk.map(Arc::new)),
            root,
            cache_capacity: opts.cache_capacity,
            sequence_base: AtomicU64::new(sequence_base),
            maintenance: std::sync::Mutex::new(()),
            compacting: std::sync::atomic::AtomicBool::new(false),
            writes: AtomicU64::new(0),
            state_writes: AtomicU64::new(0),
            xcap_writes: AtomicU64::new(0),
            failing: AtomicU32::new(0),
            sub_events: std::sync::Mutex::new(EventsSeen::Any),
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Makes every completed write durable, power cut included: drains the
    /// write-behind operations into sled, flushes sled (its log written), then
    /// `fdatasync`s the log and any new blob files ([`durable`]). Blocks for the disk:
    /// keep it off the reactor.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    /// Bytes of write-behind operations not yet in sled.
    pub fn pending_bytes(&self) -> usize {
        self.inner.tables().iter().map(|t| t.pending_bytes()).sum()
    }

    /// A number larger than any this database returned before, across restarts (sled's
    /// persisted id generator): publication order for aggregation.
    pub fn next_sequence(&self) -> Result<u64, StoreError> {
        let id = self.inner.db().generate_id()?;
        Ok(self.inner.sequence_base.load(Ordering::Acquire) + id)
    }

    /// Bytes the database occupies on disk (sled reclaims little on delete).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db().size_on_disk()?)
    }

    /// Counts a completed write; with `sync_always`, makes it durable first.
    /// Changes whenever a publication or an XCAP document may have changed (it is
    /// bumped after the write is visible): a state computed from what was read after
    /// this returned `g` is current for as long as it still returns `g`.
    pub fn state_generation(&self) -> u64 {
        self.inner.state_writes.load(Ordering::Acquire)
    }

    /// Like [`Store::state_generation`], for the XCAP documents alone.
    pub fn xcap_generation(&self) -> u64 {
        self.inner.xcap_writes.load(Ordering::Acquire)
    }

    fn xcap_written(&self) {
        self.inner.xcap_writes.fetch_add(1, Ordering::AcqRel);
        self.state_written();
    }

    fn state_written(&self) {
        self.inner.state_writes.fetch_add(1, Ordering::AcqRel);
    }

    fn written(&self) -> Result<(), StoreError> {
        self.inner.writes.fetch_add(1, Ordering::Release);
        if self.inner.sync_always {
            self.flush()?;
        }
        Ok(())
    }

    /// Refuses the write about to happen when faults are being injected.
    fn may_write(&self) -> Result<(), StoreError> {
        let refused = self
            .inner
            .failing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            Err(StoreError::Injected)
        } else {
            Ok(())
        }
    }

    /// How many writes have completed on this handle's database. Writes are made
    /// durable in order: a [`Store::flush`] begun after reading `n` here makes every
    /// write up to `n` durable.
    pub fn write_seq(&self) -> u64 {
        self.inner.writes.load(Ordering::Acquire)
    }

    /// Rows decoded since the store was opened: what reads cost, for tests that show a
    /// query reads what it needs and not a whole table.
    #[doc(hidden)]
    pub fn rows_read(&self) -> u64 {
        self.inner.tables().iter().map(|t| t.decoded()).sum()
    }

    /// Makes the next `n` writes fail with [`StoreError::Injected`], so tests can show
    /// what the engine does when the disk refuses a write.
    #[doc(hidden)]
    pub fn fail_next_writes(&self, n: u32) {
        self.inner.failing.store(n, Ordering::Release);
    }

    /// The earliest expiry among publications and subscriptions, if any: when the
    /// engine next has rows to expire. A look at the first entry of each expiry index.
    pub fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        let a = self.inner.publications.first_expiry()?;
        let b = self.inner.subscriptions.first_expiry()?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    // --- presentity ---------------------------------------------------------------

    /// Inserts or replaces the publication (event, uri, etag) and its expiry entry.
    pub fn put_publication(&self, p: &Publication) -> Result<(), StoreError> {
        self.may_write()?;
        let put = self.inner.publications.put(p);
        self.state_written();
        put?;
        self.written()
    }

    /// Inserts a publication under an entity-tag this server has just generated (see
    /// `Table::insert_new`): nothing is read first.
    pub fn insert_publication(&self, p: &Publication) -> Result<(), StoreError> {
        self.may_write()?;
        let put = self.inner.publications.insert_new(p);
        self.state_written();
        put?;
        self.written()
    }

    /// RFC 3903 §4.1: an ETag names one publication of one resource and event.
    pub fn get_publication(
        &self,
        event: &str,
        uri: &str,
        etag: &str,
    ) -> Result<Option<Publication>, StoreError> {
        self.inner
            .publications
            .get(&presentity_key(event, uri, etag)?)
    }

    pub fn delete_publication(
        &self,
        event: &str,
        uri: &str,
        etag: &str,
    ) -> Result<Option<Publication>, StoreError> {
        self.may_write()?;
        let old = self
            .inner
            .publications
            .delete(&presentity_key(event, uri, etag)?);
        self.state_written();
        let old = old?;
        self.written()?;
        Ok(old)
    }

    /// Every publication of `uri` for exactly `event`, in etag order; unreadable rows are
    /// logged and skipped.
    pub fn publications_of(&self, event: &str, uri: &str) -> Result<Vec<Publication>, StoreError> {
        let prefix = keys::prefix(ROW, &[("event", event), ("presentity_uri", uri)])?;
        self.inner.publications.collect(prefix)
    }

    /// Counts rows a bulk load wrote past the tables.
    fn loaded(&self, n: TableCounts) {
        self.xcap_written();
        self.inner.publications.loaded(n.presentity);
        self.inner.subscriptions.loaded(n.active_watchers);
        if n.active_watchers > 0 {
            *self.sub_events() = EventsSeen::Any;
        }
        self.inner.watchers.loaded(n.watchers);
        self.inner.xcap.loaded(n.xcap);
        self.inner.subscribers.loaded(n.subscriber);
    }

    pub fn publications_count(&self) -> u64 {
        self.inner.publications.len()
    }

    // --- active_watchers ----------------------------------------------------------

    /// Inserts or replaces a subscription dialog, its expiry entry and its dialog index
    /// entry. Write it before its watchers row (see the module doc).
    pub fn put_subscription(&self, d: &SubscriptionRow) -> Result<(), StoreError> {
        self.may_write()?;
        self.seen_event(&d.event);
        self.inner.subscriptions.put(d)?;
        self.written()
    }

    /// Inserts a new dialog, whose To tag this server has just generated (see
    /// `Table::insert_new`): nothing is read first.
    pub fn insert_subscription(&self, d: &SubscriptionRow) -> Result<(), StoreError> {
        self.may_write()?;
        self.seen_event(&d.event);
        self.inner.subscriptions.insert_new(d)?;
        self.written()
    }

    /// The dialog an in-dialog request belongs to (RFC 3261 §12: Call-ID and both tags).
    pub fn get_subscription(
        &self,
        call_id: &str,
        to_tag: &str,
        from_tag: &str,
    ) -> Result<Option<SubscriptionRow>, StoreError> {
        let dkey = dialog_index_key(call_id, to_tag, from_tag)?;
        let Some(row_key) = self.inner.subscriptions.lookup(&dkey)? else {
            return Ok(None);
        };
        let found: Option<SubscriptionRow> = self.inner.subscriptions.get(&row_key)?;
        // An index entry left over by an older bug must not hand out another dialog.
        Ok(found.filter(|d| d.call_id == call_id && d.to_tag == to_tag && d.from_tag == from_tag))
    }

    pub fn delete_subscription(
        &self,
        call_id: &str,
        to_tag: &str,
        from_tag: &str,
    ) -> Result<Option<SubscriptionRow>, StoreError> {
        self.may_write()?;
        let dkey = dialog_index_key(call_id, to_tag, from_tag)?;
        let Some(row_key) = self.inner.subscriptions.lookup(&dkey)? else {
            return Ok(None);
        };
        // Same guard as get_subscription; an unreadable row is still deleted on request.
        if let Ok(Some(d)) = self.inner.subscriptions.get::<SubscriptionRow>(&row_key)
            && (d.call_id != call_id || d.to_tag != to_tag || d.from_tag != from_tag)
        {
            return Ok(None);
        }
        let old = self.inner.subscriptions.delete(&row_key)?;
        self.written()?;
        Ok(old)
    }

    /// False only when no dialog of `event` can exist, so a look-up of its subscribers
    /// (a page read on a table larger than sled's cache) can be skipped: the watcher
    /// information packages are rarely used, and every new watcher would otherwise look
    /// for their subscribers.
    pub fn may_have_subscriptions(&self, event: &str) -> bool {
        match &*self.sub_events() {
            EventsSeen::Any => true,
            EventsSeen::Only(seen) => seen.contains(event),
        }
    }

    /// Repair has read every dialog: these are all the events they are of. Repair runs
    /// before serving, so no dialog was written meanwhile.
    fn events_found(&self, events: std::collections::HashSet<String>) {
        *self.sub_events() = EventsSeen::Only(events);
    }

    fn seen_event(&self, event: &str) {
        if let EventsSeen::Only(seen) = &mut *self.sub_events()
            && !seen.contains(event)
        {
            seen.insert(event.to_owned());
        }
    }

    fn sub_events(&self) -> std::sync::MutexGuard<'_, EventsSeen> {
        // Every change is one insert or one assignment: a panic elsewhere cannot have
        // left it half-done.
        self.inner
            .sub_events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The subscriptions to `uri` for exactly `event` (the NOTIFY fan-out list).
    pub fn subscriptions_to(
        &self,
        uri: &str,
        event: &str,
    ) -> Result<Vec<SubscriptionRow>, StoreError> {
        let prefix = keys::prefix(ROW, &[("presentity_uri", uri), ("event", event)])?;
        self.inner.subscriptions.collect(prefix)
    }

    /// One watcher's dialogs for a presentity and event, through the by-watcher index
    /// (no scan of the presentity's other watchers).
    pub fn subscriptions_of_watcher(
        &self,
        uri: &str,
        event: &str,
        watcher_uri: &str,
    ) -> Result<Vec<SubscriptionRow>, StoreError> {
        let prefix = keys::prefix(
            keys::BY_WATCHER,
            &[
                ("presentity_uri", uri),
                ("event", event),
                ("watcher_uri", watcher_uri),
            ],
        )?;
        let mut out = Vec::new();
        for row_key in self.inner.subscriptions.pointed(prefix)? {
            if let Some(d) = self.inner.subscriptions.get::<SubscriptionRow>(&row_key)?
                && d.watcher_uri == watcher_uri
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// How many dialogs watch `uri` for `event`; remembered after the first call, so
    /// the per-presentity cap costs a scan once per presentity, not once per SUBSCRIBE.
    pub fn subscriptions_to_count(&self, uri: &str, event: &str) -> Result<u64, StoreError> {
        self.inner
            .subscriptions
            .count(presentity_group(uri, event)?)
    }

    /// How many dialogs `watcher_uri` holds, whatever they watch (remembered likewise).
    pub fn subscriptions_of_identity_count(&self, watcher_uri: &str) -> Result<u64, StoreError> {
        self.inner.subscriptions.count(watcher_group(watcher_uri)?)
    }

    /// Whether `n` dialogs or more watch `uri` for `event`: the cap check, answered
    /// from a sketch of group sizes unless the presentity is near `n`.
    pub fn subscriptions_to_at_least(
        &self,
        uri: &str,
        event: &str,
        n: u64,
    ) -> Result<bool, StoreError> {
        self.inner
            .subscriptions
            .at_least(presentity_group(uri, event)?, n)
    }

    /// Whether `watcher_uri` holds `n` dialogs or more (likewise).
    pub fn subscriptions_of_identity_at_least(
        &self,
        watcher_uri: &str,
        n: u64,
    ) -> Result<bool, StoreError> {
        self.inner
            .subscriptions
            .at_least(watcher_group(watcher_uri)?, n)
    }

    /// Builds what the cap checks count with now (a scan of the subscription index),
    /// so the daemon's first SUBSCRIBE does not pay for it.
    pub fn prepare_counts(&self) -> Result<(), StoreError> {
        self.inner.subscriptions.prepare_counts()?;
        self.inner.watchers.prepare_counts()
    }

    pub fn subscriptions_count(&self) -> u64 {
        self.inner.subscriptions.len()
    }

    // --- watchers -----------------------------------------------------------------

    pub fn put_watcher(&self, w: &Watcher) -> Result<(), StoreError> {
        self.may_write()?;
        self.inner.watchers.put(w)?;
        self.written()
    }

    pub fn get_watcher(
        &self,
        uri: &str,
        event: &str,
        watcher_uri: &str,
    ) -> Result<Option<Watcher>, StoreError> {
        self.inner
            .watchers
            .get(&watcher_key(uri, event, watcher_uri)?)
    }

    pub fn delete_watcher(
        &self,
        uri: &str,
        event: &str,
        watcher_uri: &str,
    ) -> Result<Option<Watcher>, StoreError> {
        self.may_write()?;
        let old = self
            .inner
            .watchers
            .delete(&watcher_key(uri, event, watcher_uri)?)?;
        self.written()?;
        Ok(old)
    }

    /// The watchers of `uri` for exactly `event` (the winfo list).
    pub fn watchers_for(&self, uri: &str, event: &str) -> Result<Vec<Watcher>, StoreError> {
        let prefix = keys::prefix(ROW, &[("presentity_uri", uri), ("event", event)])?;
        self.inner.watchers.collect(prefix)
    }

    pub fn watchers_count(&self) -> u64 {
        self.inner.watchers.len()
    }

    /// Up to `limit` watchers rows that are not active and were inserted at or before
    /// `inserted_before`, oldest first: what the retention period lets go, read from
    /// the index. Pages on from the cursor `after` the previous call returned; the
    /// cursor returned is `None` when nothing further is that old.
    pub fn stale_watchers(
        &self,
        inserted_before: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Watcher>, Option<Vec<u8>>), StoreError> {
        self.inner
            .watchers
            .expired_page(inserted_before, after, limit)
    }

    // --- expiry -------------------------------------------------------------------

    /// Up to `limit` publications with `expires <= now`, soonest first. They stay stored
    /// until the caller deletes them.
    pub fn expired_publications(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Publication>, StoreError> {
        self.inner.publications.expired(now, limit)
    }

    /// Up to `limit` dialogs with `expires <= now`, soonest first. They stay stored until
    /// the caller deletes them (after the final NOTIFY, RFC 6665 §4.4.1).
    pub fn expired_subscriptions(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<SubscriptionRow>, StoreError> {
        self.inner.subscriptions.expired(now, limit)
    }

    // --- dumps --------------------------------------------------------------------

    /// Every publication, streamed in key order; unreadable rows come out as errors.
    pub fn iter_publications(
        &self,
    ) -> impl Iterator<Item = Result<Publication, StoreError>> + use<> {
        self.inner.publications.scan(vec![ROW])
    }

    pub fn iter_subscriptions(
        &self,
    ) -> impl Iterator<Item = Result<SubscriptionRow, StoreError>> + use<> {
        self.inner.subscriptions.scan(vec![ROW])
    }

    pub fn iter_watchers(&self) -> impl Iterator<Item = Result<Watcher, StoreError>> + use<> {
        self.inner.watchers.scan(vec![ROW])
    }
}

#[cfg(test)]
mod tests;
