//! Writing the tables as SQL: an optional schema, then every row as multi-row INSERTs
//! inside one transaction, quoted for the chosen dialect. Rows stream from the store
//! straight to the output through one reused line buffer, so memory does not grow with
//! the size of the dump.
//!
//! Consistency: sled has no multi-tree snapshot, so the dump reads the tables one after
//! another while the daemon may still write. What makes the result consistent is the
//! engine's write order (see `store`): a subscription's dialog row is written before its
//! watchers row, in the same core-loop step, and watchers rows are never deleted. The
//! dump reads `active_watchers` before `watchers` and, between the two, waits for a
//! barrier from the core loop (the caller's `between` hook): every step that wrote a
//! dialog we saw has finished, so its watchers row exists when `watchers` is read. Each
//! row itself is read atomically. Publications have no cross-table invariant.
//!
//! Quoting per dialect:
//! - MySQL: `'…'` with backslash escapes (`\\ \' \0 \n \r \Z`), blobs that are not clean
//!   text as `0x…`. Assumes the server's default (backslash escapes on).
//! - PostgreSQL: standard strings (`SET standard_conforming_strings = on` is in the
//!   dump), `E'…'` where control characters need escapes, bytea as `'\x…'` or, for clean
//!   text, bytea escape format (`\` doubled). Text cannot hold NUL there: such a row is
//!   an error, not a silent change.
//! - SQLite: standard strings, control characters other than tab and newline as
//!   `char(n)` concatenations, blobs as `X'…'`.

use std::io::{self, Write};

use super::spec::{self, Column, Table, Type, Val};
use super::{Dialect, DumpError, DumpOptions};
use crate::store::{Store, StoreError, TableCounts};

/// Rows per INSERT statement (sqlite's compound limit is 500 terms).
const ROWS_PER_INSERT: usize = 500;
/// A statement is closed once it reaches this many bytes (MySQL's max_allowed_packet
/// defaults to 16 MiB; one row may be up to 8 MiB).
const BYTES_PER_INSERT: usize = 1024 * 1024;

/// The first line of every dump; restore recognises it.
pub const MAGIC: &str = "-- presenced dump (format 1)";

fn schema_text(d: Dialect) -> &'static str {
    match d {
        Dialect::Mysql => include_str!("../../schema/mysql.sql"),
        Dialect::Postgres => include_str!("../../schema/postgres.sql"),
        Dialect::Sqlite => include_str!("../../schema/sqlite.sql"),
    }
}

/// Writes a dump of `store` to `out`. `between` runs after `active_watchers` and before
/// `watchers` were read (the daemon passes its core-loop barrier there).
pub fn write_dump<W: Write>(
    store: &Store,
    out: W,
    opts: &DumpOptions,
    between: &mut dyn FnMut() -> Result<(), DumpError>,
) -> Result<TableCounts, DumpError> {
    let mut w = io::BufWriter::with_capacity(256 * 1024, out);
    let d = opts.dialect;
    let tables: Vec<Table> = Table::ALL
        .into_iter()
        .filter(|t| opts.tables.is_empty() || opts.tables.contains(t))
        .collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
    writeln!(w, "{MAGIC}, dialect {}", d.name())?;
    writeln!(w, "-- tables: {}", names.join(", "))?;
    writeln!(
        w,
        "-- load into schema/{}.sql's tables; read back with `presenced restore`",
        d.name()
    )?;
    if opts.schema {
        // DDL stays outside the transaction: MySQL would commit implicitly anyway.
        w.write_all(schema_text(d).as_bytes())?;
        w.write_all(b"\n")?;
    }
    match d {
        Dialect::Mysql => w.write_all(b"SET NAMES utf8mb4;\nSTART TRANSACTION;\n")?,
        Dialect::Postgres => w.write_all(
            b"SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nBEGIN;\n",
        )?,
        Dialect::Sqlite => w.write_all(b"BEGIN TRANSACTION;\n")?,
    }
    let mut counts = TableCounts::default();
    let mut table_writer = TableWriter::new(d, opts.opensips);
    for t in [Table::Publication, Table::ActiveWatchers] {
        if tables.contains(&t) {
            let n = table_writer.table(&mut w, store, t)?;
            set_count(&mut counts, t, n);
        }
    }
    between()?;
    for t in [Table::Watchers, Table::Xcap, Table::Subscriber] {
        if tables.contains(&t) {
            let n = table_writer.table(&mut w, store, t)?;
            set_count(&mut counts, t, n);
        }
    }
    w.write_all(b"COMMIT;\n")?;
    writeln!(w, "-- presenced dump complete: {} rows", counts.total())?;
    w.flush()?;
    Ok(counts)
}

fn set_count(c: &mut TableCounts, t: Table, n: u64) {
    match t {
        Table::Publication => c.presentity = n,
        Table::ActiveWatchers => c.active_watchers = n,
        Table::Watchers => c.watchers = n,
        Table::Xcap => c.xcap = n,
        Table::Subscriber => c.subscriber = n,
    }
}

struct TableWriter {
    d: Dialect,
    opensips: bool,
    line: Vec<u8>,
}

impl TableWriter {
    fn new(d: Dialect, opensips: bool) -> TableWriter {
        TableWriter {
            d,
            opensips,
            line: Vec::with_capacity(4096),
        }
    }

    fn wanted(&self, c: &Column) -> bool {
        c.ty != Type::Id && !(self.opensips && c.ext)
    }

    fn table<W: Write>(&mut self, w: &mut W, store: &Store, t: Table) -> Result<u64, DumpError> {
        let width = t.columns().len();
        let mut n = 0u64;
        let mut in_stmt = 0usize;
        let mut stmt_bytes = 0usize;
        let mut header = Vec::new();
        self.header(&mut header, t);
        macro_rules! each {
            ($iter:expr, $values:path) => {
                for rec in $iter {
                    let rec = rec.map_err(|e| corrupt(t, e))?;
                    let mut vals = Vec::with_capacity(width);
                    $values(&rec, &mut vals);
                    self.row(t, &vals)?;
                    if in_stmt == 0 {
                        w.write_all(&header)?;
                    } else {
                        w.write_all(b",\n")?;
                    }
                    w.write_all(&self.line)?;
                    in_stmt += 1;
                    stmt_bytes += self.line.len();
                    n += 1;
                    if in_stmt >= ROWS_PER_INSERT || stmt_bytes >= BYTES_PER_INSERT {
                        w.write_all(b";\n")?;
                        in_stmt = 0;
                        stmt_bytes = 0;
                    }
                }
            };
        }
        match t {
            Table::Publication => each!(store.iter_publications(), spec::presentity_values),
            Table::ActiveWatchers => each!(store.iter_subscriptions(), spec::dialog_values),
            Table::Watchers => each!(store.iter_watchers(), spec::watcher_values),
            Table::Xcap => each!(store.iter_xcap(), spec::xcap_values),
            Table::Subscriber => each!(store.iter_subscribers(), spec::subscriber_values),
        }
        if in_stmt > 0 {
            w.write_all(b";\n")?;
        }
        Ok(n)
    }

    fn ident(&self, out: &mut Vec<u8>, name: &str) {
        let q = match self.d {
            Dialect::Mysql => b'`',
            Dialect::Postgres | Dialect::Sqlite => b'"',
        };
        out.push(q);
        out.extend_from_slice(name.as_bytes());
        out.push(q);
    }

    fn header(&self, out: &mut Vec<u8>, t: Table) {
        out.extend_from_slice(b"INSERT INTO ");
        self.ident(out, t.name());
        out.extend_from_slice(b" (");
        let mut first = true;
        for c in t.columns().iter().filter(|c| self.wanted(c)) {
            if !first {
                out.push(b',');
            }
            first = false;
            self.ident(out, c.name);
        }
        out.extend_from_slice(b") VALUES\n");
    }

    fn row(&mut self, t: Table, vals: &[Val<'_>]) -> Result<(), DumpError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        line.push(b'(');
        let mut first = true;
        for (c, v) in t.columns().iter().zip(vals) {
            if !self.wanted(c) {
                continue;
            }
            if !first {
                line.push(b',');
            }
            first = false;
            let r = match v {
                Val::Null => {
                    line.extend_from_slice(b"NULL");
                    Ok(())
                }
                Val::Int(n) => {
                    push_int(&mut line, *n);
                    Ok(())
                }
                Val::Text(s) => push_text(&mut line, self.d, s.as_bytes()),
                Val::Blob(b) => {
                    push_blob(&mut line, self.d, b);
                    Ok(())
                }
            };
            if r.is_err() {
                self.line = line;
                return Err(DumpError::Unrepresentable {
                    table: t.name(),
                    column: c.name,
                    why: "PostgreSQL text cannot hold a NUL byte",
                });
            }
        }
        line.push(b')');
        self.line = line;
        Ok(())
    }
}

fn corrupt(t: Table, e: StoreError) -> DumpError {
    DumpError::Store(format!("{}: {e}", t.name()))
}

fn push_int(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        if let Some(slot) = tmp.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or(&[]));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// Valid UTF-8 with no control characters but tab, CR and LF.
fn is_clean_text(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok() && !b.iter().any(|&c| is_control(c) && c != b'\r')
}

/// Control bytes that cannot stay raw inside a one-line-per-row literal. Tab and LF are
/// fine raw in PostgreSQL and SQLite literals.
fn is_control(c: u8) -> bool {
    (c < 0x20 && c != b'\t' && c != b'\n') || c == 0x7f
}

/// A text value as a string literal. `Err` only for NUL in PostgreSQL.
fn push_text(out: &mut Vec<u8>, d: Dialect, s: &[u8]) -> Result<(), ()> {
    match d {
        Dialect::Mysql => {
            out.push(b'\'');
            for &b in s {
                match b {
                    0 => out.extend_from_slice(b"\\0"),
                    b'\'' => out.extend_from_slice(b"\\'"),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    0x1a => out.extend_from_slice(b"\\Z"),
                    _ => out.push(b),
                }
            }
            out.push(b'\'');
        }
        Dialect::Postgres => {
            if s.contains(&0) {
                return Err(());
            }
            if s.iter().any(|&c| is_control(c)) {
                out.extend_from_slice(b"E'");
                for &b in s {
                    match b {
                        b'\'' => out.extend_from_slice(b"''"),
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        c if is_control(c) => {
                            out.extend_from_slice(b"\\x");
                            push_hex(out, &[c]);
                        }
                        _ => out.push(b),
                    }
                }
                out.push(b'\'');
            } else {
                push_standard(out, s);
            }
        }
        Dialect::Sqlite => {
            let mut open = false;
            let mut any = false;
            for &b in s {
                if is_control(b) {
                    if open {
                        out.push(b'\'');
                        open = false;
                    }
                    if any {
                        out.extend_from_slice(b"||");
                    }
                    out.extend_from_slice(b"char(");
                    push_int(out, b.into());
                    out.push(b')');
                } else {
                    if !open {
                        if any {
                            out.extend_from_slice(b"||");
                        }
                        out.push(b'\'');
                        open = true;
                    }
                    if b == b'\'' {
                        out.push(b'\'');
                    }
                    out.push(b);
                }
                any = true;
            }
            if open {
                out.push(b'\'');
            } else if !any {
                out.extend_from_slice(b"''");
            }
        }
    }
    Ok(())
}

fn push_standard(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'\'');
    for &b in s {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out.push(b'\'');
}

/// A blob: clean text as a string literal, anything else in the dialect's hex form.
fn push_blob(out: &mut Vec<u8>, d: Dialect, b: &[u8]) {
    let clean = is_clean_text(b);
    match (d, clean) {
        // Clean text has no NUL, so push_text cannot fail here.
        (Dialect::Mysql | Dialect::Sqlite, true) => {
            let _ = push_text(out, d, b);
        }
        (Dialect::Mysql, false) => {
            out.extend_from_slice(b"0x");
            push_hex(out, b);
        }
        (Dialect::Sqlite, false) => {
            out.extend_from_slice(b"X'");
            push_hex(out, b);
            out.push(b'\'');
        }
        (Dialect::Postgres, true) => {
            // bytea's escape format doubles backslashes, then the literal is quoted.
            if b.contains(&b'\\') {
                let doubled: Vec<u8> = b
                    .iter()
                    .flat_map(|&c| if c == b'\\' { vec![c, c] } else { vec![c] })
                    .collect();
                let _ = push_text(out, d, &doubled);
            } else {
                let _ = push_text(out, d, b);
            }
        }
        (Dialect::Postgres, false) => {
            out.extend_from_slice(b"'\\x");
            push_hex(out, b);
            out.push(b'\'');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: Dialect, s: &str) -> String {
        let mut out = Vec::new();
        push_text(&mut out, d, s.as_bytes()).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn blob(d: Dialect, b: &[u8]) -> String {
        let mut out = Vec::new();
        push_blob(&mut out, d, b);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_quoted_per_dialect() {
        let s = "it's a\\b\r\nc";
        assert_eq!(text(Dialect::Mysql, s), "'it\\'s a\\\\b\\r\\nc'");
        assert_eq!(text(Dialect::Postgres, s), "E'it''s a\\\\b\\r\nc'");
        assert_eq!(text(Dialect::Sqlite, s), "'it''s a\\b'||char(13)||'\nc'");
        assert_eq!(text(Dialect::Postgres, "a\\b"), "'a\\b'");
        assert_eq!(text(Dialect::Sqlite, ""), "''");
        assert_eq!(text(Dialect::Sqlite, "\r"), "char(13)");
    }

    #[test]
    fn nul_in_postgres_text_is_refused() {
        assert!(push_text(&mut Vec::new(), Dialect::Postgres, b"a\0b").is_err());
    }

    #[test]
    fn binary_blobs_use_hex_and_clean_ones_stay_text() {
        let bin = [0u8, 0xff, b'A'];
        assert_eq!(blob(Dialect::Mysql, &bin), "0x00ff41");
        assert_eq!(blob(Dialect::Sqlite, &bin), "X'00ff41'");
        assert_eq!(blob(Dialect::Postgres, &bin), "'\\x00ff41'");
        assert_eq!(blob(Dialect::Postgres, b"<a>\\</a>"), "'<a>\\\\</a>'");
        assert_eq!(blob(Dialect::Mysql, b"<a/>\n"), "'<a/>\\n'");
    }

    #[test]
    fn integers_print_in_decimal() {
        for n in [0u64, 7, 10, 1_700_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
