//! Restore: INSERT rows → typed fields → records → the store's staging tree, then one
//! commit. All or nothing: every row is read, checked and staged before any live table
//! changes, so a dump with any error (syntax, truncation, wrong column count, unknown
//! table, bad escape, invalid UTF-8 in a text column, duplicate key) restores nothing
//! and the error names the line.
//!
//! Defaults (documented in the README): merge — rows from the dump replace rows with the
//! same key and everything else stays; `replace` empties the four tables first. Rows
//! already expired at `now` are skipped unless `keep_expired`.

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::Dialect;
use super::parallel::{self, Lanes};
use super::read::{self, InsertHeader, Lit, ReadError, Reader};
use super::spec::{self, Field, Row, RowError, Table, Type};
use crate::store::{
    BulkLoad, Publication, Staged, Staging, Store, StoreError, Subscriber, SubscriptionRow,
    TableCounts, Watcher, Xcap,
};

/// How to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// The dump's dialect; `None` tells it from the dump's own markers.
    pub dialect: Option<Dialect>,
    /// Empty the four tables before applying the dump (default: merge).
    pub replace: bool,
    /// Keep publications and subscriptions whose `expires` has passed.
    pub keep_expired: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub restored: TableCounts,
    pub skipped_expired: u64,
    /// One line per ignored column, per table.
    pub warnings: Vec<String>,
}

/// Why one row or statement cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreErrorKind {
    Read(read::ReadErrorKind),
    UnknownTable(String),
    ColumnCount { expected: usize, got: usize },
    InvalidUtf8 { column: &'static str },
    BadValue { column: &'static str, why: String },
    Row(RowError),
    DuplicateKey { table: &'static str },
}

#[derive(Debug)]
pub enum RestoreError {
    /// The dump is bad at `line`.
    At {
        line: u64,
        kind: RestoreErrorKind,
    },
    Store(StoreError),
}

impl RestoreError {
    pub fn line(&self) -> Option<u64> {
        match self {
            RestoreError::At { line, .. } => Some(*line),
            RestoreError::Store(_) => None,
        }
    }

    pub fn kind(&self) -> Option<&RestoreErrorKind> {
        match self {
            RestoreError::At { kind, .. } => Some(kind),
            RestoreError::Store(_) => None,
        }
    }
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (line, kind) = match self {
            RestoreError::Store(e) => return write!(f, "database: {e}; nothing was restored"),
            RestoreError::At { line, kind } => (line, kind),
        };
        write!(f, "line {line}: ")?;
        match kind {
            RestoreErrorKind::Read(k) => {
                let e = ReadError {
                    line: *line,
                    kind: k.clone(),
                };
                let text = e.to_string();
                let text = text.split_once(": ").map_or(text.as_str(), |(_, t)| t);
                write!(f, "{text}")?;
            }
            RestoreErrorKind::UnknownTable(t) => write!(
                f,
                "unknown table {t} (expected presentity, active_watchers, watchers, xcap or \
                 subscriber)"
            )?,
            RestoreErrorKind::ColumnCount { expected, got } => {
                write!(f, "wrong column count: {got} values for {expected} columns")?
            }
            RestoreErrorKind::InvalidUtf8 { column } => {
                write!(f, "invalid UTF-8 in text column {column}")?
            }
            RestoreErrorKind::BadValue { column, why } => write!(f, "column {column}: {why}")?,
            RestoreErrorKind::Row(e) => write!(f, "{e}")?,
            RestoreErrorKind::DuplicateKey { table } => write!(
                f,
                "duplicate key in {table} (a row with the same key came earlier)"
            )?,
        }
        write!(f, "; nothing was restored")
    }
}

impl std::error::Error for RestoreError {}

impl From<ReadError> for RestoreError {
    fn from(e: ReadError) -> Self {
        RestoreError::At {
            line: e.line,
            kind: RestoreErrorKind::Read(e.kind),
        }
    }
}

impl From<StoreError> for RestoreError {
    fn from(e: StoreError) -> Self {
        RestoreError::Store(e)
    }
}

fn at(line: u64, kind: RestoreErrorKind) -> RestoreError {
    RestoreError::At { line, kind }
}

/// Reads and checks the whole dump into a fresh staging tree; the live tables are not
/// touched. On error the staging tree is discarded.
pub fn stage<R: Read>(
    store: &Store,
    input: R,
    opts: &RestoreOptions,
    now: u64,
) -> Result<(Staging, RestoreReport), RestoreError> {
    let mut staging = store.staging()?;
    let mut report = RestoreReport::default();
    match stage_into(&mut staging, input, opts, now, &mut report) {
        Ok(()) => {
            report.restored = staging.counts();
            Ok((staging, report))
        }
        Err(e) => {
            if let Err(d) = staging.discard() {
                log::warn!("discarding the restore's staging tree: {d}");
            }
            Err(e)
        }
    }
}

/// The whole restore for a database no daemon holds: straight into the tables when
/// they are empty ([`BulkLoad`], on one loader thread per core), else [`stage`] then
/// commit.
pub fn restore<R: Read>(
    store: &Store,
    input: R,
    opts: &RestoreOptions,
    now: u64,
) -> Result<RestoreReport, RestoreError> {
    let Some(bulk) = store.bulk_load()? else {
        let (staging, mut report) = stage(store, input, opts, now)?;
        report.restored = staging.commit(opts.replace)?;
        store.flush()?;
        return Ok(report);
    };
    let mut report = RestoreReport::default();
    let loaded = match Lanes::start(&bulk, parallel::lanes()) {
        Some(mut lanes) => {
            let read = stage_into(&mut lanes, input, opts, now, &mut report);
            lanes.finish(read)
        }
        None => {
            let mut one = bulk.lane();
            stage_into(&mut one, input, opts, now, &mut report).map(|()| one.counts())
        }
    };
    match loaded {
        Ok(counts) => {
            bulk.finish(counts)?;
            report.restored = counts;
            Ok(report)
        }
        Err(e) => {
            if let Err(d) = bulk.abort() {
                log::warn!("emptying the tables after a failed restore: {d}");
            }
            Err(e)
        }
    }
}

/// One checked row of the dump, ready for a [`Sink`]. Unboxed: items live in
/// preallocated batches on their way to a loader, and a box would be one more
/// allocation per row.
#[allow(clippy::large_enum_variant)]
pub(super) enum Item {
    Publication(Publication),
    Dialog(SubscriptionRow),
    Watcher(Watcher),
    Xcap(Xcap),
    Subscriber(Subscriber),
}

/// Where checked rows go: a staging tree, the empty live tables, or loader threads
/// that fill the empty live tables ([`super::parallel`]).
pub(super) trait Sink {
    /// Adds the row read at `line`. An error names that line (or, for a sink that
    /// works behind the reader, an earlier one).
    fn add(&mut self, line: u64, item: Item) -> Result<(), RestoreError>;
}

/// What staging and bulk loading have in common: one row in, added or a duplicate.
pub(super) trait Loader {
    fn presentity(&mut self, p: &Publication) -> Result<Staged, StoreError>;
    fn dialog(&mut self, d: &SubscriptionRow) -> Result<Staged, StoreError>;
    fn watcher(&mut self, w: &Watcher) -> Result<Staged, StoreError>;
    fn xcap(&mut self, x: &Xcap) -> Result<Staged, StoreError>;
    fn subscriber(&mut self, s: &Subscriber) -> Result<Staged, StoreError>;
}

macro_rules! loader {
    ($t:ty) => {
        impl Loader for $t {
            fn presentity(&mut self, p: &Publication) -> Result<Staged, StoreError> {
                self.add_presentity(p)
            }
            fn dialog(&mut self, d: &SubscriptionRow) -> Result<Staged, StoreError> {
                self.add_dialog(d)
            }
            fn watcher(&mut self, w: &Watcher) -> Result<Staged, StoreError> {
                self.add_watcher(w)
            }
            fn xcap(&mut self, x: &Xcap) -> Result<Staged, StoreError> {
                self.add_xcap(x)
            }
            fn subscriber(&mut self, s: &Subscriber) -> Result<Staged, StoreError> {
                self.add_subscriber(s)
            }
        }
        impl Sink for $t {
            fn add(&mut self, line: u64, item: Item) -> Result<(), RestoreError> {
                load(self, line, &item)
            }
        }
    };
}

loader!(Staging);
loader!(BulkLoad);

/// Adds one row to `loader`; a duplicate key, or a value the store cannot key (a NUL
/// inside a key part), is the dump's fault at `line`.
pub(super) fn load<L: Loader>(loader: &mut L, line: u64, item: &Item) -> Result<(), RestoreError> {
    let (staged, table) = match item {
        Item::Publication(p) => (loader.presentity(p), Table::Publication),
        Item::Dialog(d) => (loader.dialog(d), Table::ActiveWatchers),
        Item::Watcher(w) => (loader.watcher(w), Table::Watchers),
        Item::Xcap(x) => (loader.xcap(x), Table::Xcap),
        Item::Subscriber(s) => (loader.subscriber(s), Table::Subscriber),
    };
    match staged {
        Ok(Staged::Added) => Ok(()),
        Ok(Staged::Duplicate) => Err(at(
            line,
            RestoreErrorKind::DuplicateKey {
                table: table.name(),
            },
        )),
        Err(StoreError::InvalidKey { field }) => Err(at(
            line,
            RestoreErrorKind::BadValue {
                column: field,
                why: "contains a NUL byte".into(),
            },
        )),
        Err(e) => Err(e.into()),
    }
}

/// Where each input column goes.
#[derive(Clone, Copy)]
enum Slot {
    Column(usize),
    Ignored,
}

pub(super) fn stage_into<R: Read, S: Sink>(
    staging: &mut S,
    input: R,
    opts: &RestoreOptions,
    now: u64,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    let mut reader = Reader::new(input, opts.dialect);
    let mut warned: BTreeSet<(Table, String)> = BTreeSet::new();
    let mut lits = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    while let Some(h) = reader.next_insert()? {
        if spec::is_ignored_table(&h.table) {
            while reader.next_row(&mut lits)?.is_some() {}
            continue;
        }
        let Some(table) = Table::from_name(&h.table) else {
            return Err(at(h.line, RestoreErrorKind::UnknownTable(h.table)));
        };
        let slots = slots_for(table, &h, &mut warned, report);
        while let Some(line) = reader.next_row(&mut lits)? {
            let owned;
            let slots: &[Slot] = match &slots {
                Some(s) => s,
                None => {
                    owned = positional(table, lits.len(), line)?;
                    &owned
                }
            };
            if lits.len() != slots.len() {
                return Err(at(
                    line,
                    RestoreErrorKind::ColumnCount {
                        expected: slots.len(),
                        got: lits.len(),
                    },
                ));
            }
            fields.clear();
            fields.resize(table.columns().len(), Field::Missing);
            let dialect = reader.dialect();
            for (lit, slot) in lits.drain(..).zip(slots.iter()) {
                let Slot::Column(i) = *slot else { continue };
                let (Some(col), Some(f)) = (table.columns().get(i), fields.get_mut(i)) else {
                    continue;
                };
                *f = field(lit, col.name, col.ty, dialect, line)?;
            }
            let row = Row {
                table,
                fields: &mut fields,
            };
            let bad = |e: RowError| at(line, RestoreErrorKind::Row(e));
            let expired = |expires: u64| !opts.keep_expired && expires <= now;
            let item = match table {
                Table::Publication => {
                    let p = spec::presentity_from(row).map_err(bad)?;
                    if expired(p.expires) {
                        report.skipped_expired += 1;
                        continue;
                    }
                    Item::Publication(p)
                }
                Table::ActiveWatchers => {
                    let d = spec::dialog_from(row).map_err(bad)?;
                    if expired(d.expires) {
                        report.skipped_expired += 1;
                        continue;
                    }
                    Item::Dialog(d)
                }
                Table::Watchers => Item::Watcher(spec::watcher_from(row).map_err(bad)?),
                Table::Xcap => Item::Xcap(spec::xcap_from(row).map_err(bad)?),
                Table::Subscriber => Item::Subscriber(spec::subscriber_from(row).map_err(bad)?),
            };
            staging.add(line, item)?;
        }
    }
    Ok(())
}

/// The column mapping of an INSERT with a column list; `None` for a positional INSERT.
fn slots_for(
    table: Table,
    h: &InsertHeader,
    warned: &mut BTreeSet<(Table, String)>,
    report: &mut RestoreReport,
) -> Option<Vec<Slot>> {
    let cols = h.columns.as_ref()?;
    Some(
        cols.iter()
            .map(|name| match table.column_index(name) {
                Some(i) => Slot::Column(i),
                None => {
                    if warned.insert((table, name.to_ascii_lowercase())) {
                        let w = format!(
                            "{}.{name}: column not kept by presenced; its values are ignored",
                            table.name()
                        );
                        log::warn!("{w}");
                        report.warnings.push(w);
                    }
                    Slot::Ignored
                }
            })
            .collect(),
    )
}

/// An INSERT without a column list follows our schema's order: all columns, or only
/// OpenSIPS's (a table created from OpenSIPS's own schema).
fn positional(table: Table, got: usize, line: u64) -> Result<Vec<Slot>, RestoreError> {
    let all = table.columns().len();
    let opensips = table.columns().iter().filter(|c| !c.ext).count();
    if got == all || got == opensips {
        Ok((0..got).map(Slot::Column).collect())
    } else {
        Err(at(
            line,
            RestoreErrorKind::ColumnCount { expected: all, got },
        ))
    }
}

fn field(
    lit: Lit,
    column: &'static str,
    ty: Type,
    dialect: Option<Dialect>,
    line: u64,
) -> Result<Field, RestoreError> {
    let bad = |why: String| at(line, RestoreErrorKind::BadValue { column, why });
    let utf8 = |b: Vec<u8>| {
        String::from_utf8(b).map_err(|_| at(line, RestoreErrorKind::InvalidUtf8 { column }))
    };
    Ok(match (ty, lit) {
        (_, Lit::Default) => Field::Missing,
        (Type::Id, _) => Field::Missing,
        (_, Lit::Null) => Field::Null,
        (Type::Text, Lit::Str(b) | Lit::Hex(b)) => Field::Text(utf8(b)?),
        (Type::Text, Lit::Int(n)) => Field::Text(n.to_string()),
        (Type::Text, Lit::Float(f)) => Field::Text(f.to_string()),
        (Type::Int, Lit::Int(n)) => Field::Int(
            u64::try_from(n).map_err(|_| bad(format!("{n} is not a non-negative integer")))?,
        ),
        (Type::Int, Lit::Str(b)) => {
            let s = String::from_utf8_lossy(&b);
            Field::Int(
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{s:?} is not a non-negative integer")))?,
            )
        }
        (Type::Int, Lit::Float(f)) => return Err(bad(format!("{f} is not an integer"))),
        (Type::Int, Lit::Hex(_)) => return Err(bad("a blob is not an integer".into())),
        (Type::Blob, Lit::Str(b)) => match dialect {
            Some(Dialect::Postgres) => Field::Blob(read::bytea_decode(&b, line)?),
            _ => Field::Blob(b),
        },
        (Type::Blob, Lit::Hex(b)) => Field::Blob(b),
        (Type::Blob, Lit::Int(n)) => Field::Blob(n.to_string().into_bytes()),
        (Type::Blob, Lit::Float(f)) => Field::Blob(f.to_string().into_bytes()),
    })
}
