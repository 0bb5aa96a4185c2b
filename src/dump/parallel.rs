//! Parallel bulk loading for `presenced restore` into an empty database: the reader
//! stays on the calling thread and hands checked rows to one loader thread per core.
//! sled inserts from several threads into the same trees, and its insert path (not
//! parsing) is what a restore spends its time on.
//!
//! The result is the one a single loader gives, error for error:
//! - Rows that can conflict go to the same lane, in dump order: a dialog goes by its
//!   identity (Call-ID and tags, which its row key contains too), every other row by
//!   its row key. So the row a lane calls a duplicate is the one a sequential load
//!   would call a duplicate.
//! - Each lane stops at its first error; the restore's error is the one with the lowest
//!   line among the lanes' and the reader's. Every row before the reader's error was
//!   handed over, so a lane's error always comes first when there is one.
//! - Batches are bounded, so memory does not grow with the dump.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::restore::{Item, RestoreError, Sink, load};
use crate::store::{BulkLoad, TableCounts};

/// Rows handed to a lane at once.
const BATCH: usize = 256;
/// Batches queued per lane before the reader waits.
const QUEUED: usize = 4;
/// More lanes than this only contend inside sled.
const MAX_LANES: usize = 4;

/// How many loader threads to use: one per core, within [1, MAX_LANES].
pub fn lanes() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_LANES)
}

type Batch = Vec<(u64, Item)>;

struct Lane {
    tx: Option<SyncSender<Batch>>,
    pending: Batch,
    thread: Option<JoinHandle<Result<TableCounts, RestoreError>>>,
}

impl Lane {
    /// Sends what is pending. `Err` when the lane has stopped at an error.
    fn flush(&mut self) -> Result<(), ()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
        match &self.tx {
            Some(tx) => tx.send(batch).map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Waits for the lane to load everything sent and stop.
    fn join(&mut self) -> Result<TableCounts, RestoreError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(TableCounts::default()),
        }
    }
}

/// The loader threads of one restore.
pub struct Lanes {
    lanes: Vec<Lane>,
}

impl Lanes {
    /// Starts `n` loader threads, each with its own lane of `bulk`; `None` if the
    /// system would not start them (load on the calling thread instead).
    pub fn start(bulk: &BulkLoad, n: usize) -> Option<Lanes> {
        let mut lanes = Lanes { lanes: Vec::new() };
        for i in 0..n.max(1) {
            let (tx, rx) = sync_channel(QUEUED);
            let mut loader = bulk.lane();
            let thread = std::thread::Builder::new()
                .name(format!("presenced-restore-{i}"))
                .spawn(move || run(&mut loader, rx));
            match thread {
                Ok(t) => lanes.lanes.push(Lane {
                    tx: Some(tx),
                    pending: Vec::with_capacity(BATCH),
                    thread: Some(t),
                }),
                Err(e) => {
                    log::warn!("starting a restore thread: {e}; loading on one thread");
                    return None;
                }
            }
        }
        Some(lanes)
    }

    /// Loads everything handed over, stops the threads, and gives the restore's result:
    /// the rows loaded, or the first error by line among `read`'s and the lanes'.
    pub fn finish(mut self, read: Result<(), RestoreError>) -> Result<TableCounts, RestoreError> {
        let mut first = read.err();
        let mut counts = TableCounts::default();
        for lane in &mut self.lanes {
            // A lane that stopped early has its own error, which join returns.
            let _ = lane.flush();
            match lane.join() {
                Ok(c) => counts += c,
                Err(e) => first = Some(earlier(first, e)),
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(counts),
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            let _ = lane.join();
        }
    }
}

impl Sink for Lanes {
    fn add(&mut self, line: u64, item: Item) -> Result<(), RestoreError> {
        let i = lane_of(&item, self.lanes.len());
        // In range by construction: `lane_of` is below the count, and `start` made ≥ 1.
        let lane = &mut self.lanes[i];
        lane.pending.push((line, item));
        if lane.pending.len() >= BATCH && lane.flush().is_err() {
            // The lane stopped at an error; the others may hold an earlier one, which
            // `finish` finds.
            return lane.join().map(|_| ());
        }
        Ok(())
    }
}

/// The earlier of two errors by line; an error without a line (the database failed)
/// wins over any error in the dump.
fn earlier(a: Option<RestoreError>, b: RestoreError) -> RestoreError {
    match a {
        None => b,
        Some(a) => match (a.line(), b.line()) {
            (Some(la), Some(lb)) if lb < la => b,
            (Some(_), None) => b,
            _ => a,
        },
    }
}

/// The lane for a row: rows that can conflict share one.
fn lane_of(item: &Item, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    match item {
        Item::Publication(p) => (&p.event, &p.presentity_uri, &p.etag).hash(&mut h),
        Item::Dialog(d) => (&d.call_id, &d.to_tag, &d.from_tag).hash(&mut h),
        Item::Watcher(w) => (&w.presentity_uri, &w.event, &w.watcher_uri).hash(&mut h),
        Item::Xcap(x) => (&x.username, &x.domain, x.doc_type, &x.doc_uri).hash(&mut h),
        Item::Subscriber(s) => (&s.username, &s.domain).hash(&mut h),
    }
    (h.finish() % n as u64) as usize
}

fn run(loader: &mut BulkLoad, rx: Receiver<Batch>) -> Result<TableCounts, RestoreError> {
    for batch in rx {
        for (line, item) in &batch {
            load(loader, *line, item)?;
        }
    }
    Ok(loader.counts())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::restore::{RestoreErrorKind, RestoreOptions, RestoreReport, stage_into};
    use crate::dump::{Dialect, DumpOptions, write_dump};
    use crate::store::records::tests::{dialog, presentity, watcher};
    use crate::store::{Store, StoreOptions};

    const ROWS: usize = 1_500;
    const FUTURE: u64 = 4_000_000_000;

    /// A dump of ROWS rows per table, one row per line.
    fn dump() -> String {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        for i in 0..ROWS {
            let uri = format!("sip:u{i:05}@example.com");
            s.put_publication(&presentity(&uri, "presence", "e", FUTURE))
                .unwrap();
            s.put_subscription(&dialog(&uri, "presence", &format!("c{i:05}"), FUTURE))
                .unwrap();
            s.put_watcher(&watcher(&uri, "presence", "sip:w@example.org"))
                .unwrap();
        }
        let mut out = Vec::new();
        let opts = DumpOptions {
            dialect: Dialect::Mysql,
            ..DumpOptions::default()
        };
        write_dump(&s, &mut out, &opts, &mut || Ok(())).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Loads `sql` into an empty store with `n` lanes.
    fn load_with(n: usize, sql: &str) -> (Result<TableCounts, RestoreError>, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let bulk = s.bulk_load().unwrap().unwrap();
        let mut lanes = Lanes::start(&bulk, n).unwrap();
        let mut report = RestoreReport::default();
        let read = stage_into(
            &mut lanes,
            sql.as_bytes(),
            &RestoreOptions::default(),
            1_700_000_000,
            &mut report,
        );
        let r = lanes.finish(read);
        bulk.finish(*r.as_ref().unwrap_or(&TableCounts::default()))
            .unwrap();
        (r, s)
    }

    /// `text` with the first `from` replaced by `to`, and the line it was on.
    fn swap(text: &str, from: &str, to: &str) -> (String, u64) {
        let at = text.find(from).unwrap();
        let line = text[..at].matches('\n').count() as u64 + 1;
        (text.replacen(from, to, 1), line)
    }

    fn failure(r: Result<TableCounts, RestoreError>) -> (u64, RestoreErrorKind) {
        let e = r.unwrap_err();
        (e.line().unwrap(), e.kind().unwrap().clone())
    }

    #[test]
    fn every_lane_count_loads_the_same_rows() {
        let sql = dump();
        for n in [1, 2, 3] {
            let (r, s) = load_with(n, &sql);
            let c = r.unwrap();
            assert_eq!(
                (c.presentity, c.active_watchers, c.watchers),
                (1500, 1500, 1500)
            );
            let opts = DumpOptions {
                dialect: Dialect::Mysql,
                ..DumpOptions::default()
            };
            let mut again = Vec::new();
            write_dump(&s, &mut again, &opts, &mut || Ok(())).unwrap();
            assert!(again == sql.as_bytes(), "{n} lanes changed the content");
        }
    }

    #[test]
    fn the_first_error_by_line_is_reported_whatever_the_lanes() {
        let sql = dump();
        // A dialog late in the dump reuses an early dialog's identity under another
        // presentity; a presentity row later still repeats an early one's key.
        let (dup_dialog, dialog_line) = swap(&sql, "'c01400'", "'c00003'");
        let (both, presentity_line) = swap(&dup_dialog, "('u01450'", "('u00002'");
        assert!(presentity_line < dialog_line, "presentity rows come first");
        // Only the dialog duplicate, then both: the presentity one comes first.
        for n in [1, 2, 3, 4] {
            assert_eq!(
                failure(load_with(n, &dup_dialog).0),
                (
                    dialog_line,
                    RestoreErrorKind::DuplicateKey {
                        table: "active_watchers"
                    }
                ),
                "{n} lanes"
            );
            assert_eq!(
                failure(load_with(n, &both).0),
                (
                    presentity_line,
                    RestoreErrorKind::DuplicateKey {
                        table: "presentity"
                    }
                ),
                "{n} lanes"
            );
        }
    }

    #[test]
    fn a_read_error_and_a_duplicate_report_whichever_comes_first() {
        let sql = dump();
        let (dup, dup_line) = swap(&sql, "('u01000'", "('u00001'");
        // A bad escape after the duplicate, and one before it.
        let (late, late_line) = swap(&dup, "'c00500'", "'c\\q500'");
        let (early, early_line) = swap(&dup, "('u00100'", "('u\\q100'");
        assert!(early_line < dup_line && dup_line < late_line);
        for n in [1, 2, 3] {
            let (line, kind) = failure(load_with(n, &late).0);
            assert_eq!(line, dup_line, "{n} lanes: {kind:?}");
            let (line, kind) = failure(load_with(n, &early).0);
            assert_eq!(line, early_line, "{n} lanes: {kind:?}");
            assert!(matches!(kind, RestoreErrorKind::Read(_)), "{kind:?}");
        }
    }
}
