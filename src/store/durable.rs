//! What makes a flush survive a power cut, not only the death of the process.
//!
//! What sled 0.34.7 writes under the database directory, and how far it syncs it:
//! - `db`: the log (every tree's pages). `Db::flush` writes the log buffers with
//!   `pwrite` and `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`: that starts and
//!   waits for the writeback of those bytes, but saves neither the metadata that finds
//!   them (the file's size when it grew, its block allocation) nor the disk's volatile
//!   write cache. A real `fsync` of `db` comes only from sled's flusher thread (every
//!   500 ms), a segment truncation, recovery, and close.
//! - `conf`: the storage parameters, written once when the database is created, never
//!   synced. A restart needs it (an empty one is rewritten, a torn one refused).
//! - `blobs/<lsn>`: a page too large for the log (over ~128 KiB, a quarter of a 512 KiB
//!   segment) goes to a file of its own, written with `write(2)` before the log record
//!   that points at it, never synced, nor is the `blobs` directory.
//! - `snap.<lsn>`: the page-table snapshot, written during recovery at open (0.34.7
//!   takes no snapshot while running): fsynced, renamed from `snap.<lsn>.generating`,
//!   older ones removed; the directory is not synced.
//!
//! So a [`Disk`] makes the store durable at three points:
//! - before sled opens ([`Disk::before_open`]): `fdatasync` of an existing `db` and
//!   `fsync` of the directory. Recovery trusts whatever log it reads, page cache
//!   included, and writes a snapshot that records how far it got; if that log were
//!   lost to a power cut after the snapshot, the next open would refuse the database.
//! - after sled opens ([`Disk::open`]): `fdatasync` of `conf` and `db`, `fsync` of
//!   `blobs/`, the database directory and its parent (sled may just have created them
//!   all, and written a snapshot).
//! - at every flush ([`Disk::sync`]), after sled's flush has written the log: each blob
//!   file not synced before gets `fdatasync` and `blobs/` an `fsync` (only when blobs
//!   came or went), then `db` gets `fdatasync` — last, so a log made durable here never
//!   points at a blob that is not. `fdatasync` is enough for both: it writes the size
//!   of a grown file and flushes the disk's cache, and nothing else a restart reads
//!   (timestamps) is metadata it needs.
//!
//! What this cannot close, short of changing sled: sled writes a blob before the log
//! record pointing at it but never syncs the blob, and its own flusher thread `fsync`s
//! `db` whenever it likes. Between a flush's drain and its blob step, a power cut can
//! therefore find a durable log record whose blob is not, and sled then cannot read
//! that page. The window is that short, and only pages over ~128 KiB (large XCAP
//! documents or bodies) have blobs.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// The files of one open database that a durable flush syncs.
pub(super) struct Disk {
    dir: PathBuf,
    /// A descriptor of sled's log file of our own: an fsync on any descriptor of a
    /// file covers what every descriptor wrote.
    db: File,
    /// Blob files already synced (names in `blobs/`).
    blobs: Mutex<HashSet<OsString>>,
}

fn sync_error(path: &Path, error: io::Error) -> StoreError {
    StoreError::Sync {
        path: path.to_path_buf(),
        error,
    }
}

/// `fsync` of a directory, so the entries created or renamed in it are durable.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| sync_error(path, e))
}

/// `fdatasync` of a file that may not exist.
fn sync_file_if_any(path: &Path) -> Result<(), StoreError> {
    match File::open(path) {
        Ok(f) => f.sync_data().map_err(|e| sync_error(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(sync_error(path, e)),
    }
}

impl Disk {
    /// Makes what a previous run left in the page cache durable before sled's recovery
    /// reads it (see the module doc).
    pub(super) fn before_open(dir: &Path) -> Result<(), StoreError> {
        if !dir.is_dir() {
            return Ok(());
        }
        sync_file_if_any(&dir.join("db"))?;
        sync_dir(dir)
    }

    /// After sled opened the database in `dir`: syncs what opening wrote and keeps a
    /// descriptor of the log for [`Disk::sync`].
    pub(super) fn open(dir: &Path) -> Result<Disk, StoreError> {
        let db_path = dir.join("db");
        let db = File::open(&db_path).map_err(|e| sync_error(&db_path, e))?;
        sync_file_if_any(&dir.join("conf"))?;
        db.sync_data().map_err(|e| sync_error(&db_path, e))?;
        let disk = Disk {
            dir: dir.to_path_buf(),
            db,
            blobs: Mutex::new(HashSet::new()),
        };
        disk.sync_blobs(true)?;
        sync_dir(dir)?;
        // The database directory itself may be new; a relative path's parent is "".
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Not ours: a parent we may not open (execute-only) must not stop the daemon.
        if let Err(e) = sync_dir(parent) {
            log::warn!("{e}: the database directory's entry may not survive a power cut");
        }
        Ok(disk)
    }

    /// Makes everything sled has written so far durable. Call after `Db::flush`.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        self.sync_blobs(false)?;
        let db_path = || self.dir.join("db");
        self.db.sync_data().map_err(|e| sync_error(&db_path(), e))
    }

    /// The blob files synced so far (tests).
    #[cfg(test)]
    pub(super) fn synced_blobs(&self) -> HashSet<OsString> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `fdatasync` of every blob file not synced yet, then `fsync` of `blobs/` if its
    /// entries changed (or `always`).
    fn sync_blobs(&self, always: bool) -> Result<(), StoreError> {
        let dir = self.dir.join("blobs");
        let mut synced = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // sled creates `blobs/` at open; without it there is nothing to sync.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(sync_error(&dir, e)),
        };
        let mut now = HashSet::with_capacity(synced.len());
        let mut changed = always;
        for entry in entries {
            let name = entry.map_err(|e| sync_error(&dir, e))?.file_name();
            if !synced.contains(&name) {
                // Removed in the meantime (sled collects blobs): nothing to keep.
                sync_file_if_any(&dir.join(&name))?;
                changed = true;
            }
            now.insert(name);
        }
        changed |= now.len() != synced.len();
        if changed {
            sync_dir(&dir)?;
        }
        *synced = now;
        Ok(())
    }
}
