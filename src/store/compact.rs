//! Compaction (`presenced ctl compact`): sled reclaims little of what is deleted, so a
//! table that grew and shrank keeps its size on disk. Compacting copies every tree into
//! a fresh database beside the old one and switches to it, while the daemon serves:
//!
//! 1. every tree of the old database is watched (sled's subscribers), then copied;
//!    writes go on meanwhile and the watchers record them;
//! 2. the tables' writes are held, the write-behind operations drained into the old
//!    trees, and what the watchers saw applied to the copy, which is then made durable;
//! 3. the `current` file in the database directory is replaced (written, synced,
//!    renamed) to name the copy, the tables are pointed at it, writes resume, and the
//!    old files are removed.
//!
//! Only step 2 holds writes, for the changes made during the copy. A crash before the
//! rename leaves the old database current (the half-made copy is removed at the next
//! open, [`tidy`]); after it, the copy is current and the old files are removed then.
//!
//! Layout: sled's files are in the database directory itself until the first
//! compaction, then in `compacted-N/` under it, named by `current`. sled's id generator
//! restarts in the copy, so the ids already handed out are kept as a base
//! ([`sequence_base`]) that later ids are added to.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use sled::IVec;

use super::durable::Disk;
use super::{Store, StoreError, open_db};

/// The file naming the directory of the current database.
const CURRENT: &str = "current";
const PREFIX: &str = "compacted-";
/// The key (in the default tree) of the ids handed out before the last compaction.
const SEQUENCE_BASE: &[u8] = b"sequence_base";
/// Entries per batch while copying.
const BATCH: usize = 10_000;

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    pub size_before: u64,
    pub size_after: u64,
    /// Entries (rows, index entries, settings) copied.
    pub entries: u64,
    /// Changes made while copying, applied to the copy at the end.
    pub changed_meanwhile: u64,
    /// How long writes were held (step 2), in milliseconds.
    pub held_ms: u64,
    pub took_ms: u64,
}

fn valid_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where sled's files are for the database at `root`.
pub(super) fn data_dir(root: &Path) -> PathBuf {
    match std::fs::read_to_string(root.join(CURRENT)) {
        Ok(name) if valid_name(name.trim()) => root.join(name.trim()),
        _ => root.to_path_buf(),
    }
}

/// sled's own files directly under a directory (the layout before a compaction).
fn is_sled_file(name: &str) -> bool {
    matches!(name, "db" | "conf" | "blobs") || name.starts_with("snap.")
}

/// Removes what an interrupted compaction left: copies that are not current, and the
/// first layout's files once a copy is current. Called with sled's lock held on `data`.
pub(super) fn tidy(root: &Path, data: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == data {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = (valid_name(&name) && path.is_dir())
            || (data != root && is_sled_file(&name))
            || name == format!("{CURRENT}.tmp");
        if stale {
            remove(&path);
        }
    }
}

fn remove(path: &Path) {
    let done = match path.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    };
    if let Err(e) = done {
        warn!("compaction: could not remove {}: {e}", path.display());
    }
}

/// The ids handed out before the last compaction (0 for a database never compacted).
pub(super) fn sequence_base(db: &sled::Db) -> Result<u64, StoreError> {
    Ok(db
        .get(SEQUENCE_BASE)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Records the writes one tree sees until told to stop.
struct Watch {
    name: IVec,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<IVec, Option<IVec>>>,
}

fn watch(tree: &sled::Tree, name: IVec) -> Result<Watch, StoreError> {
    let mut events = tree.watch_prefix(Vec::<u8>::new());
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("presenced-compact".into())
        .spawn(move || {
            use futures_lite::FutureExt;
            let mut seen = BTreeMap::new();
            // Writers fill their event before their write returns, so once writes are
            // held everything is queued: the end is two waits in a row, once writes
            // are held, that find nothing. The wait is sled's `Future`, not
            // `next_timeout`: in sled 0.34 the latter, after a write that reserved an
            // event and then did not happen (a no-op or a retried write), returns that
            // dead reservation for ever and never reads on.
            let mut idle = 0;
            loop {
                let next = smol::block_on(async { Some((&mut events).await) }.or(async {
                    smol::Timer::after(Duration::from_millis(20)).await;
                    None
                }));
                match next {
                    Some(Some(sled::Event::Insert { key, value })) => {
                        idle = 0;
                        seen.insert(key, Some(value));
                    }
                    Some(Some(sled::Event::Remove { key })) => {
                        idle = 0;
                        seen.insert(key, None);
                    }
                    // The database is gone (it outlives the watch, so: never).
                    Some(None) => return seen,
                    None => {
                        if stopping.load(Ordering::Acquire) {
                            idle += 1;
                            if idle >= 2 {
                                return seen;
                            }
                        }
                    }
                }
            }
        })
        .map_err(|e| StoreError::Sled(sled::Error::Io(e)))?;
    Ok(Watch { name, stop, thread })
}

/// Copies `from` into `to` in batches; returns how many entries.
fn copy(from: &sled::Tree, to: &sled::Tree) -> Result<u64, StoreError> {
    let mut n = 0;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for entry in from.iter() {
        let (k, v) = entry?;
        batch.insert(k, v);
        in_batch += 1;
        n += 1;
        if in_batch == BATCH {
            to.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    to.apply_batch(batch)?;
    Ok(n)
}

/// Writes `current` naming `dir`, durably: a temporary file synced, renamed over the
/// old one, the directory synced.
fn point_at(root: &Path, dir: &str) -> Result<(), StoreError> {
    let io = |path: &Path, error: std::io::Error| StoreError::Sync {
        path: path.to_path_buf(),
        error,
    };
    let tmp = root.join(format!("{CURRENT}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(format!("{dir}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    let current = root.join(CURRENT);
    std::fs::rename(&tmp, &current).map_err(|e| io(&current, e))?;
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(root, e))
}

/// Clears the compacting flag however the compaction ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Store {
    /// Rewrites the database into fresh files and switches to them; see the module doc.
    /// Blocks for as long as the copy takes: run it off the core loop.
    pub fn compact(&self) -> Result<Compacted, StoreError> {
        let inner = &self.inner;
        let root = inner
            .root
            .clone()
            .ok_or(StoreError::Busy("a temporary database is not compacted"))?;
        {
            let _one = inner
                .maintenance
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if inner.compacting.swap(true, Ordering::AcqRel) {
                return Err(StoreError::Busy("a compaction is already running"));
            }
            let restoring = inner
                .db()
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == super::bulk::TREE.as_bytes());
            if restoring {
                inner.compacting.store(false, Ordering::Release);
                return Err(StoreError::Busy(
                    "a restore is in progress; compact when it is done",
                ));
            }
        }
        let _running = Running(&inner.compacting);
        let started = Instant::now();
        self.flush()?;
        let size_before = self.size_on_disk()?;
        let old = inner.db();
        let old_dir = data_dir(&root);
        let number = old_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let name = format!("{PREFIX}{}", number + 1);
        let target = root.join(&name);
        if target.exists() {
            remove(&target);
        }

        // 1. Watch, then copy.
        let mut watches = Vec::new();
        for tree_name in old.tree_names() {
            watches.push(watch(&old.open_tree(&tree_name)?, tree_name)?);
        }
        let new = open_db(&target, inner.cache_capacity)?;
        let mut entries = 0;
        for w in &watches {
            entries += copy(&old.open_tree(&w.name)?, &new.open_tree(&w.name)?)?;
        }

        // 2. Hold writes; what changed meanwhile goes into the copy.
        let held = Instant::now();
        let holds: Vec<_> = inner.tables().iter().map(|t| t.hold_writes()).collect();
        inner.drain()?;
        let mut changed_meanwhile = 0;
        for w in watches {
            w.stop.store(true, Ordering::Release);
            let seen = w
                .thread
                .join()
                .map_err(|_| StoreError::Busy("a compaction watcher failed"))?;
            let to = new.open_tree(&w.name)?;
            let mut batch = sled::Batch::default();
            for (k, v) in seen {
                changed_meanwhile += 1;
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            to.apply_batch(batch)?;
        }
        // Every id handed out so far stays below the copy's.
        let base = self.next_sequence()?.saturating_add(1);
        new.insert(SEQUENCE_BASE, &base.to_be_bytes())?;
        new.flush()?;
        let disk = Disk::open(&target)?;

        // 3. Switch.
        point_at(&root, &name)?;
        for t in inner.tables() {
            t.swap_tree(new.open_tree(t.tree_name())?);
        }
        *inner.db.write().unwrap_or_else(|p| p.into_inner()) = new;
        *inner.disk.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(disk));
        inner.sequence_base.store(base, Ordering::Release);
        drop(holds);
        let held_ms = held.elapsed().as_millis() as u64;
        drop(old);

        // The old files: the first layout's, or the previous copy.
        if old_dir == root {
            tidy(&root, &target);
        } else {
            remove(&old_dir);
        }
        let size_after = self.size_on_disk()?;
        let done = Compacted {
            size_before,
            size_after,
            entries,
            changed_meanwhile,
            held_ms,
            took_ms: started.elapsed().as_millis() as u64,
        };
        info!("compacted {}: {done:?}", root.display());
        Ok(done)
    }
}
