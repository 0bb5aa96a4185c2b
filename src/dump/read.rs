//! A streaming reader of SQL dumps that yields the rows of INSERT statements and skips
//! everything else (CREATE, SET, LOCK, PRAGMA, comments, `/*!…*/`, psql `\` lines).
//!
//! Ours rather than a parser crate: sqlparser wants whole statements in memory (one
//! mysqldump extended INSERT can be megabytes), allocates a full AST per value and does
//! not evaluate sqlite3's `replace(…,char(10))` or MySQL's `_binary` forms. This reader
//! holds one value at a time, so memory is flat in the size of the dump, and it knows
//! exactly the literal forms the three dumpers write:
//! - MySQL/MariaDB: `'…'` with backslash escapes, `"…"` strings, `0x…`, `X'…'`,
//!   charset introducers (`_binary '…'`), `#` comments, `/*!…*/`.
//! - PostgreSQL: standard strings, `E'…'`, `::type` casts; bytea text (`'\x…'` or escape
//!   format) is decoded by the caller, which knows the column is a blob.
//! - SQLite: `X'…'`, `char(…)`, `replace(…)`, `unistr(…)` and `||` concatenation.
//!
//! Line numbers are 1-based and name where the failing row or statement starts.

use std::io::Read;

use super::Dialect;

/// One literal from a VALUES tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    /// `DEFAULT`: the column's default.
    Default,
    Int(i128),
    Float(f64),
    /// A string's bytes after the dialect's escapes were applied.
    Str(Vec<u8>),
    /// A hex or blob literal's bytes.
    Hex(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadErrorKind {
    Io(String),
    /// The input stopped in the middle of something.
    Eof(&'static str),
    /// The input stopped between statements but the dump says it is not complete.
    Truncated(&'static str),
    Syntax(String),
    BadEscape(String),
}

/// What went wrong, and on which line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub line: u64,
    pub kind: ReadErrorKind,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ReadErrorKind::Io(e) => write!(f, "read error: {e}"),
            ReadErrorKind::Eof(what) => write!(f, "input ends inside {what} (truncated?)"),
            ReadErrorKind::Truncated(why) => write!(f, "dump is truncated: {why}"),
            ReadErrorKind::Syntax(e) => write!(f, "syntax error: {e}"),
            ReadErrorKind::BadEscape(e) => write!(f, "bad escape: {e}"),
        }
    }
}

/// The start of one INSERT statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertHeader {
    /// Unqualified, unquoted table name.
    pub table: String,
    pub columns: Option<Vec<String>>,
    pub line: u64,
}

/// Which dumper wrote the input, as far as its comments tell, and so which last line a
/// complete dump has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Producer {
    Presenced,
    MySql,
    Postgres,
}

const BUF: usize = 64 * 1024;

pub struct Reader<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    line: u64,
    dialect: Option<Dialect>,
    forced: bool,
    producer: Option<Producer>,
    completed: bool,
    open_tx: bool,
    /// Inside a VALUES list: the next tuple may follow.
    in_values: bool,
}

fn err<T>(line: u64, kind: ReadErrorKind) -> Result<T, ReadError> {
    Err(ReadError { line, kind })
}

impl<R: Read> Reader<R> {
    /// `dialect`: forced, or `None` to tell from the dump's own markers.
    pub fn new(src: R, dialect: Option<Dialect>) -> Reader<R> {
        Reader {
            src,
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            line: 1,
            dialect,
            forced: dialect.is_some(),
            producer: None,
            completed: false,
            open_tx: false,
            in_values: false,
        }
    }

    /// The dialect in force (forced, detected, or not yet known).
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    pub fn line(&self) -> u64 {
        self.line
    }

    fn detect(&mut self, d: Dialect) {
        if !self.forced && self.dialect.is_none() {
            self.dialect = Some(d);
        }
    }

    fn mysql(&self) -> bool {
        self.dialect == Some(Dialect::Mysql)
    }

    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.pos < self.len {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.src.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return err(self.line, ReadErrorKind::Io(e.to_string())),
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, ReadError> {
        if self.fill()? {
            Ok(self.buf.get(self.pos).copied())
        } else {
            Ok(None)
        }
    }

    fn bump(&mut self) -> Result<Option<u8>, ReadError> {
        let b = self.peek()?;
        if let Some(b) = b {
            self.pos += 1;
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(b)
    }

    /// The next byte, which must exist.
    /// After an item of a parenthesised list: `,` means another item follows, `)` ends
    /// the list, anything else is a syntax error naming the list.
    fn more_in_list(&mut self, what: &'static str, place: &str) -> Result<bool, ReadError> {
        self.trivia()?;
        match self.need(what)? {
            b',' => Ok(true),
            b')' => Ok(false),
            b => err(
                self.line,
                ReadErrorKind::Syntax(format!("unexpected '{}' in {place}", b.escape_ascii())),
            ),
        }
    }

    fn need(&mut self, what: &'static str) -> Result<u8, ReadError> {
        match self.bump()? {
            Some(b) => Ok(b),
            None => err(self.line, ReadErrorKind::Eof(what)),
        }
    }

    fn expect(&mut self, want: u8, what: &'static str) -> Result<(), ReadError> {
        self.trivia()?;
        let line = self.line;
        match self.bump()? {
            Some(b) if b == want => Ok(()),
            Some(b) => err(
                line,
                ReadErrorKind::Syntax(format!(
                    "expected '{}' {what}, found '{}'",
                    want as char,
                    b.escape_ascii()
                )),
            ),
            None => err(line, ReadErrorKind::Eof(what)),
        }
    }

    /// Skips whitespace and comments; notes the markers dumpers put in comments.
    fn trivia(&mut self) -> Result<(), ReadError> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\t' | b'\r' | b'\n' | 0x0c) => {
                    self.bump()?;
                }
                Some(b'-') => {
                    if !self.second_is(b'-')? {
                        return Ok(());
                    }
                    let comment = self.line_comment()?;
                    self.note_comment(&comment);
                }
                Some(b'#') if self.dialect != Some(Dialect::Postgres) => {
                    self.line_comment()?;
                }
                Some(b'/') => {
                    if !self.second_is(b'*')? {
                        return Ok(());
                    }
                    let line = self.line;
                    self.bump()?;
                    self.bump()?;
                    if self.peek()? == Some(b'!') {
                        self.detect(Dialect::Mysql);
                    }
                    let mut star = false;
                    loop {
                        let Some(b) = self.bump()? else {
                            return err(line, ReadErrorKind::Eof("a /* comment */"));
                        };
                        if star && b == b'/' {
                            break;
                        }
                        star = b == b'*';
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Whether the byte after the current one is `b` (the current one is in the buffer).
    fn second_is(&mut self, b: u8) -> Result<bool, ReadError> {
        if self.pos + 1 < self.len {
            return Ok(self.buf.get(self.pos + 1) == Some(&b));
        }
        // Move the one byte we have to the front and read more behind it.
        let first = self.buf.get(self.pos).copied();
        let Some(first) = first else {
            return Ok(false);
        };
        if self.eof {
            return Ok(false);
        }
        if let Some(slot) = self.buf.get_mut(0) {
            *slot = first;
        }
        self.pos = 0;
        self.len = 1;
        loop {
            let Some(rest) = self.buf.get_mut(1..) else {
                return Ok(false);
            };
            match self.src.read(rest) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len = 1 + n;
                    return Ok(self.buf.get(1) == Some(&b));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return err(self.line, ReadErrorKind::Io(e.to_string())),
            }
        }
    }

    /// Consumes a comment up to its end of line; returns its first bytes.
    fn line_comment(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut head = Vec::new();
        while let Some(b) = self.bump()? {
            if b == b'\n' {
                break;
            }
            if head.len() < 64 {
                head.push(b);
            }
        }
        Ok(head)
    }

    fn note_comment(&mut self, c: &[u8]) {
        let text = String::from_utf8_lossy(c);
        let text = text.trim_start_matches('-').trim();
        if let Some(rest) = text.strip_prefix("presenced dump") {
            if rest.trim_start().starts_with("complete") {
                self.completed = true;
            } else {
                self.producer = Some(Producer::Presenced);
                self.completed = false;
                for (name, d) in [
                    ("mysql", Dialect::Mysql),
                    ("postgres", Dialect::Postgres),
                    ("sqlite", Dialect::Sqlite),
                ] {
                    if rest.contains(&format!("dialect {name}")) {
                        self.detect(d);
                    }
                }
            }
        } else if text.starts_with("MySQL dump") || text.starts_with("MariaDB dump") {
            self.producer = Some(Producer::MySql);
            self.detect(Dialect::Mysql);
        } else if (text.starts_with("Dump completed") && self.producer == Some(Producer::MySql))
            || text.starts_with("PostgreSQL database dump complete")
        {
            self.completed = true;
        } else if text.starts_with("PostgreSQL database dump") {
            self.producer = Some(Producer::Postgres);
            self.detect(Dialect::Postgres);
        }
    }

    /// A bare word (keyword or unquoted identifier), or `None` if none starts here.
    fn word(&mut self) -> Result<Option<String>, ReadError> {
        let mut w = String::new();
        while let Some(b) = self.peek()? {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' {
                w.push(b as char);
                self.bump()?;
            } else {
                break;
            }
        }
        Ok((!w.is_empty()).then_some(w))
    }

    fn keyword(&mut self) -> Result<Option<String>, ReadError> {
        self.trivia()?;
        match self.peek()? {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.word(),
            _ => Ok(None),
        }
    }

    /// An identifier, possibly quoted and schema-qualified; returns the last part.
    fn ident(&mut self) -> Result<String, ReadError> {
        let mut part;
        loop {
            self.trivia()?;
            let line = self.line;
            part = match self.peek()? {
                Some(q @ (b'`' | b'"' | b'[')) => {
                    if q == b'`' {
                        self.detect(Dialect::Mysql);
                    }
                    let close = if q == b'[' { b']' } else { q };
                    self.bump()?;
                    let mut s = Vec::new();
                    loop {
                        let b = self.need("a quoted identifier")?;
                        if b == close {
                            if self.peek()? == Some(close) {
                                self.bump()?;
                            } else {
                                break;
                            }
                        }
                        s.push(b);
                    }
                    String::from_utf8(s).map_err(|_| ReadError {
                        line,
                        kind: ReadErrorKind::Syntax("identifier is not UTF-8".into()),
                    })?
                }
                _ => match self.word()? {
                    Some(w) => w,
                    None => {
                        return err(line, ReadErrorKind::Syntax("expected an identifier".into()));
                    }
                },
            };
            if self.peek()? == Some(b'.') {
                self.bump()?;
                continue;
            }
            return Ok(part);
        }
    }

    /// Consumes the rest of a statement up to and including its `;`.
    fn skip_statement(&mut self, line: u64) -> Result<(), ReadError> {
        let mut depth = 0usize;
        loop {
            self.trivia()?;
            let Some(b) = self.peek()? else {
                return err(line, ReadErrorKind::Eof("a statement"));
            };
            match b {
                b';' if depth == 0 => {
                    self.bump()?;
                    return Ok(());
                }
                b'(' => {
                    depth += 1;
                    self.bump()?;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    self.bump()?;
                }
                b'\'' => {
                    self.bump()?;
                    let backslash = self.mysql();
                    self.string_body(b'\'', backslash, &mut Vec::new())?;
                }
                b'"' | b'`' => {
                    self.ident()?;
                }
                _ => {
                    self.bump()?;
                }
            }
        }
    }

    /// Skips statements until the next INSERT; `None` at the end of a complete dump.
    pub fn next_insert(&mut self) -> Result<Option<InsertHeader>, ReadError> {
        if self.in_values {
            // The caller stopped reading rows early: drain them.
            let mut scratch = Vec::new();
            while self.next_row(&mut scratch)?.is_some() {}
        }
        loop {
            self.trivia()?;
            let line = self.line;
            match self.peek()? {
                None => return self.finish().map(|()| None),
                Some(b';') => {
                    self.bump()?;
                    continue;
                }
                // psql meta-commands (`\restrict`, `\connect`) end at the end of the line.
                Some(b'\\') => {
                    self.line_comment()?;
                    continue;
                }
                _ => {}
            }
            let Some(kw) = self.keyword()? else {
                let b = self.peek()?.unwrap_or(b' ');
                return err(
                    line,
                    ReadErrorKind::Syntax(format!(
                        "unexpected '{}' at the start of a statement",
                        b.escape_ascii()
                    )),
                );
            };
            let kw = kw.to_ascii_uppercase();
            match kw.as_str() {
                "INSERT" | "REPLACE" => return self.insert_header(line).map(Some),
                "BEGIN" | "START" => {
                    self.open_tx = true;
                    if let Some(next) = self.keyword()?
                        && next.eq_ignore_ascii_case("TRANSACTION")
                        && kw == "BEGIN"
                    {
                        self.detect(Dialect::Sqlite);
                    }
                }
                "COMMIT" | "END" => self.open_tx = false,
                "ROLLBACK" => {
                    return err(
                        line,
                        ReadErrorKind::Syntax("the dump rolls its transaction back".into()),
                    );
                }
                "PRAGMA" => self.detect(Dialect::Sqlite),
                "LOCK" | "UNLOCK" => self.detect(Dialect::Mysql),
                "SET" => {
                    if let Some(next) = self.keyword()? {
                        let next = next.to_ascii_lowercase();
                        if next == "names" {
                            self.detect(Dialect::Mysql);
                        } else if next == "standard_conforming_strings"
                            || next == "statement_timeout"
                        {
                            self.detect(Dialect::Postgres);
                        }
                    }
                }
                "SELECT" => {
                    if let Some(next) = self.keyword()?
                        && next.eq_ignore_ascii_case("pg_catalog")
                    {
                        self.detect(Dialect::Postgres);
                    }
                }
                _ => {}
            }
            self.skip_statement(line)?;
        }
    }

    fn finish(&mut self) -> Result<(), ReadError> {
        if self.open_tx {
            return err(
                self.line,
                ReadErrorKind::Truncated("a transaction is opened but never committed"),
            );
        }
        if self.producer.is_some() && !self.completed {
            return err(
                self.line,
                ReadErrorKind::Truncated("the dumper's closing comment is missing"),
            );
        }
        Ok(())
    }

    fn insert_header(&mut self, line: u64) -> Result<InsertHeader, ReadError> {
        // INSERT [IGNORE | OR REPLACE | OR IGNORE] INTO name [(cols)] VALUES
        loop {
            let Some(w) = self.keyword()? else {
                return err(line, ReadErrorKind::Syntax("expected INTO".into()));
            };
            if w.eq_ignore_ascii_case("INTO") {
                break;
            }
            if ![
                "IGNORE",
                "OR",
                "REPLACE",
                "LOW_PRIORITY",
                "DELAYED",
                "HIGH_PRIORITY",
            ]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&w))
            {
                return err(
                    line,
                    ReadErrorKind::Syntax(format!("unexpected {w} in INSERT")),
                );
            }
        }
        let table = self.ident()?;
        self.trivia()?;
        let mut columns = None;
        if self.peek()? == Some(b'(') {
            self.bump()?;
            let mut cols = Vec::new();
            loop {
                cols.push(self.ident()?);
                if !self.more_in_list("a column list", "column list")? {
                    break;
                }
            }
            columns = Some(cols);
        }
        match self.keyword()? {
            Some(w) if w.eq_ignore_ascii_case("VALUES") || w.eq_ignore_ascii_case("VALUE") => {}
            Some(w) => {
                return err(
                    line,
                    ReadErrorKind::Syntax(format!(
                        "expected VALUES, found {w} (INSERT … SELECT is not a dump)"
                    )),
                );
            }
            None => return err(line, ReadErrorKind::Syntax("expected VALUES".into())),
        }
        self.in_values = true;
        Ok(InsertHeader {
            table,
            columns,
            line,
        })
    }

    /// The next tuple of the current INSERT into `out`; returns its line, or `None`
    /// once the statement has ended.
    pub fn next_row(&mut self, out: &mut Vec<Lit>) -> Result<Option<u64>, ReadError> {
        out.clear();
        if !self.in_values {
            return Ok(None);
        }
        self.trivia()?;
        let line = self.line;
        match self.need("a VALUES list")? {
            b'(' => {}
            b => {
                return err(
                    line,
                    ReadErrorKind::Syntax(format!(
                        "expected '(' to start a row, found '{}'",
                        b.escape_ascii()
                    )),
                );
            }
        }
        self.trivia()?;
        if self.peek()? == Some(b')') {
            self.bump()?;
        } else {
            loop {
                out.push(self.value(line)?);
                if !self.more_in_list("a row", "a row")? {
                    break;
                }
            }
        }
        self.trivia()?;
        match self.peek()? {
            Some(b',') => {
                self.bump()?;
            }
            Some(b';') => {
                self.bump()?;
                self.in_values = false;
            }
            // ON CONFLICT … / ON DUPLICATE KEY …: not ours to apply; skip to the end.
            Some(b) if b.is_ascii_alphabetic() => {
                self.skip_statement(line)?;
                self.in_values = false;
            }
            Some(b) => {
                return err(
                    self.line,
                    ReadErrorKind::Syntax(format!("unexpected '{}' after a row", b.escape_ascii())),
                );
            }
            None => return err(self.line, ReadErrorKind::Eof("an INSERT statement")),
        }
        Ok(Some(line))
    }

    /// A value: a primary, then `||` concatenations and `::type` casts.
    fn value(&mut self, row_line: u64) -> Result<Lit, ReadError> {
        let mut v = self.primary(row_line)?;
        loop {
            self.trivia()?;
            match self.peek()? {
                Some(b'|') if self.second_is(b'|')? => {
                    self.bump()?;
                    self.bump()?;
                    let rhs = self.primary(row_line)?;
                    v = match (v, rhs) {
                        (Lit::Null, _) | (_, Lit::Null) => Lit::Null,
                        (a, b) => {
                            let mut bytes = lit_bytes(a, self.line)?;
                            bytes.extend(lit_bytes(b, self.line)?);
                            Lit::Str(bytes)
                        }
                    };
                }
                Some(b':') if self.second_is(b':')? => {
                    self.bump()?;
                    self.bump()?;
                    self.cast_type()?;
                }
                _ => return Ok(v),
            }
        }
    }

    /// A type name after `::` (`bytea`, `character varying(64)`, `text[]`).
    fn cast_type(&mut self) -> Result<(), ReadError> {
        let mut any = false;
        while let Some(_w) = self.keyword()? {
            any = true;
        }
        if !any {
            return err(
                self.line,
                ReadErrorKind::Syntax("expected a type after ::".into()),
            );
        }
        self.trivia()?;
        if self.peek()? == Some(b'(') {
            while self.need("a type")? != b')' {}
        }
        while self.peek()? == Some(b'[') {
            while self.need("a type")? != b']' {}
        }
        Ok(())
    }

    fn primary(&mut self, row_line: u64) -> Result<Lit, ReadError> {
        self.trivia()?;
        let line = self.line;
        let Some(b) = self.peek()? else {
            return err(row_line, ReadErrorKind::Eof("a row"));
        };
        match b {
            b'\'' => {
                self.bump()?;
                let mut s = Vec::new();
                let backslash = self.mysql();
                self.string_body(b'\'', backslash, &mut s)?;
                Ok(Lit::Str(s))
            }
            b'"' if self.mysql() => {
                self.bump()?;
                let mut s = Vec::new();
                self.string_body(b'"', true, &mut s)?;
                Ok(Lit::Str(s))
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(line),
            b'(' => {
                self.bump()?;
                let v = self.value(row_line)?;
                self.expect(b')', "to close a parenthesis")?;
                Ok(v)
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let w = self.word()?.unwrap_or_default();
                self.after_word(&w, line, row_line)
            }
            b => err(
                line,
                ReadErrorKind::Syntax(format!("unexpected '{}' in a value", b.escape_ascii())),
            ),
        }
    }

    fn after_word(&mut self, w: &str, line: u64, row_line: u64) -> Result<Lit, ReadError> {
        let upper = w.to_ascii_uppercase();
        // A literal prefix must touch its quote: X'…', E'…', N'…'.
        if self.peek()? == Some(b'\'') {
            match upper.as_str() {
                "X" => {
                    self.bump()?;
                    let mut s = Vec::new();
                    self.string_body(b'\'', false, &mut s)?;
                    return hex_decode(&s, line).map(Lit::Hex);
                }
                "E" => {
                    self.bump()?;
                    let mut s = Vec::new();
                    self.string_body(b'\'', true, &mut s)?;
                    return Ok(Lit::Str(s));
                }
                "N" => {
                    self.bump()?;
                    let mut s = Vec::new();
                    let backslash = self.mysql();
                    self.string_body(b'\'', backslash, &mut s)?;
                    return Ok(Lit::Str(s));
                }
                _ => {}
            }
        }
        match upper.as_str() {
            "NULL" => return Ok(Lit::Null),
            "DEFAULT" => return Ok(Lit::Default),
            "TRUE" => return Ok(Lit::Int(1)),
            "FALSE" => return Ok(Lit::Int(0)),
            _ => {}
        }
        // MySQL charset introducer: `_binary '…'`, `_utf8mb4 0x…`.
        if w.starts_with('_') {
            self.detect(Dialect::Mysql);
            return self.primary(row_line);
        }
        self.trivia()?;
        if self.peek()? != Some(b'(') {
            return err(
                line,
                ReadErrorKind::Syntax(format!("unexpected word {w} in a value")),
            );
        }
        self.bump()?;
        match upper.as_str() {
            "CHAR" => {
                let mut s = String::new();
                loop {
                    match self.value(row_line)? {
                        Lit::Int(n) => match u32::try_from(n).ok().and_then(char::from_u32) {
                            Some(c) => s.push(c),
                            None => {
                                return err(
                                    line,
                                    ReadErrorKind::BadEscape(format!("char({n}) is no character")),
                                );
                            }
                        },
                        _ => {
                            return err(
                                line,
                                ReadErrorKind::Syntax("char() takes integers".into()),
                            );
                        }
                    }
                    self.trivia()?;
                    match self.need("char()")? {
                        b',' => continue,
                        b')' => break,
                        _ => return err(line, ReadErrorKind::Syntax("bad char() call".into())),
                    }
                }
                Ok(Lit::Str(s.into_bytes()))
            }
            "REPLACE" => {
                let hay = self.value(row_line)?;
                self.expect(b',', "in replace()")?;
                let from = self.value(row_line)?;
                self.expect(b',', "in replace()")?;
                let to = self.value(row_line)?;
                self.expect(b')', "to close replace()")?;
                let (hay, from, to) = (
                    lit_bytes(hay, line)?,
                    lit_bytes(from, line)?,
                    lit_bytes(to, line)?,
                );
                Ok(Lit::Str(replace_all(&hay, &from, &to)))
            }
            "UNISTR" => {
                let s = lit_bytes(self.value(row_line)?, line)?;
                self.expect(b')', "to close unistr()")?;
                unistr(&s, line).map(Lit::Str)
            }
            "CAST" => {
                let v = self.value(row_line)?;
                match self.keyword()? {
                    Some(a) if a.eq_ignore_ascii_case("AS") => {}
                    _ => return err(line, ReadErrorKind::Syntax("expected AS in CAST".into())),
                }
                self.cast_type()?;
                self.expect(b')', "to close CAST")?;
                Ok(v)
            }
            _ => err(
                line,
                ReadErrorKind::Syntax(format!("unsupported function {w}() in a value")),
            ),
        }
    }

    fn number(&mut self, line: u64) -> Result<Lit, ReadError> {
        let mut s = String::new();
        while let Some(b) = self.peek()? {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.') {
                // A sign only leads or follows an exponent.
                if matches!(b, b'-' | b'+')
                    && !(s.is_empty() || s.ends_with('e') || s.ends_with('E'))
                {
                    break;
                }
                s.push(b as char);
                self.bump()?;
            } else {
                break;
            }
        }
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            self.detect(Dialect::Mysql);
            return hex_decode(hex.as_bytes(), line).map(Lit::Hex);
        }
        if let Ok(n) = s.parse::<i128>() {
            return Ok(Lit::Int(n));
        }
        match s.parse::<f64>() {
            Ok(f) => Ok(Lit::Float(f)),
            Err(_) => err(line, ReadErrorKind::Syntax(format!("bad number {s}"))),
        }
    }

    /// A quoted string's body after its opening quote, through the closing quote.
    /// A doubled quote is one quote; with `backslash`, MySQL / E'' escapes apply.
    fn string_body(&mut self, q: u8, backslash: bool, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let line = self.line;
        loop {
            // Copy runs of plain bytes straight out of the buffer.
            if !self.fill()? {
                return err(line, ReadErrorKind::Eof("a quoted string"));
            }
            let chunk = self.buf.get(self.pos..self.len).unwrap_or(&[]);
            let run = chunk
                .iter()
                .position(|&b| b == q || (backslash && b == b'\\'))
                .unwrap_or(chunk.len());
            if let Some(plain) = chunk.get(..run) {
                self.line += plain.iter().filter(|&&b| b == b'\n').count() as u64;
                out.extend_from_slice(plain);
            }
            self.pos += run;
            if self.pos >= self.len {
                continue;
            }
            let b = self.need("a quoted string")?;
            if b == q {
                if self.peek()? == Some(q) {
                    self.bump()?;
                    out.push(q);
                    continue;
                }
                return Ok(());
            }
            // A backslash escape.
            let e = self.need("a quoted string")?;
            let mysql = self.mysql();
            match e {
                b'0' if mysql => out.push(0),
                b'\'' | b'"' | b'\\' => out.push(e),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'b' => out.push(8),
                b'Z' if mysql => out.push(0x1a),
                // MySQL keeps the backslash of \% and \_ (they are LIKE escapes).
                b'%' | b'_' if mysql => out.extend_from_slice(&[b'\\', e]),
                b'f' if !mysql => out.push(0x0c),
                b'x' if !mysql => {
                    let mut v = 0u8;
                    let mut n = 0;
                    while n < 2 {
                        match self.peek()? {
                            Some(h) if h.is_ascii_hexdigit() => {
                                v = v * 16 + hex_val(h);
                                self.bump()?;
                                n += 1;
                            }
                            _ => break,
                        }
                    }
                    if n == 0 {
                        return err(
                            self.line,
                            ReadErrorKind::BadEscape("\\x without hex digits".into()),
                        );
                    }
                    out.push(v);
                }
                b'0'..=b'7' if !mysql => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.peek()? {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.bump()?;
                            }
                            _ => break,
                        }
                    }
                    out.push((v & 0xff) as u8);
                }
                other => {
                    return err(
                        self.line,
                        ReadErrorKind::BadEscape(format!(
                            "unknown escape \\{} in a string",
                            other.escape_ascii()
                        )),
                    );
                }
            }
        }
    }
}

fn hex_val(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        b'A'..=b'F' => h - b'A' + 10,
        _ => 0,
    }
}

/// Hex digits → bytes; odd length or a non-hex digit is an error.
pub fn hex_decode(s: &[u8], line: u64) -> Result<Vec<u8>, ReadError> {
    if !s.len().is_multiple_of(2) || !s.iter().all(u8::is_ascii_hexdigit) {
        return err(
            line,
            ReadErrorKind::BadEscape(format!(
                "bad hex literal {}",
                String::from_utf8_lossy(s.get(..s.len().min(32)).unwrap_or(&[]))
            )),
        );
    }
    Ok(s.chunks_exact(2)
        .map(|p| match p {
            [a, b] => hex_val(*a) * 16 + hex_val(*b),
            _ => 0,
        })
        .collect())
}

/// PostgreSQL bytea input: `\x` + hex, else the escape format (`\\`, `\ooo`).
pub fn bytea_decode(s: &[u8], line: u64) -> Result<Vec<u8>, ReadError> {
    if let Some(hex) = s.strip_prefix(b"\\x") {
        return hex_decode(hex, line);
    }
    if !s.contains(&b'\\') {
        return Ok(s.to_vec());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match (s.get(i + 1), s.get(i + 2), s.get(i + 3)) {
            (Some(b'\\'), _, _) => {
                out.push(b'\\');
                i += 2;
            }
            (Some(a @ b'0'..=b'3'), Some(b @ b'0'..=b'7'), Some(c @ b'0'..=b'7')) => {
                out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
                i += 4;
            }
            _ => {
                return err(
                    line,
                    ReadErrorKind::BadEscape("invalid bytea escape (want \\\\ or \\ooo)".into()),
                );
            }
        }
    }
    Ok(out)
}

fn lit_bytes(l: Lit, line: u64) -> Result<Vec<u8>, ReadError> {
    match l {
        Lit::Str(b) | Lit::Hex(b) => Ok(b),
        Lit::Int(n) => Ok(n.to_string().into_bytes()),
        Lit::Float(f) => Ok(f.to_string().into_bytes()),
        Lit::Null | Lit::Default => err(
            line,
            ReadErrorKind::Syntax("NULL or DEFAULT inside an expression".into()),
        ),
    }
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay.get(i..i + from.len()) == Some(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            if let Some(&b) = hay.get(i) {
                out.push(b);
            }
            i += 1;
        }
    }
    out
}

/// sqlite's `unistr()`: `\XXXX`, `\uXXXX`, `\+XXXXXX`, `\UXXXXXXXX` and `\\`.
fn unistr(s: &[u8], line: u64) -> Result<Vec<u8>, ReadError> {
    let bad = || ReadError {
        line,
        kind: ReadErrorKind::BadEscape("bad unistr() escape".into()),
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let (skip, digits) = match s.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
                continue;
            }
            Some(b'u') => (2, 4),
            Some(b'+') => (2, 6),
            Some(b'U') => (2, 8),
            Some(_) => (1, 4),
            None => return Err(bad()),
        };
        let hex = s.get(i + skip..i + skip + digits).ok_or_else(bad)?;
        let text = std::str::from_utf8(hex).map_err(|_| bad())?;
        let cp = u32::from_str_radix(text, 16).map_err(|_| bad())?;
        let c = char::from_u32(cp).ok_or_else(bad)?;
        let mut tmp = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        i += skip + digits;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(sql: &str, d: Option<Dialect>) -> Result<Vec<(String, Vec<Lit>)>, ReadError> {
        let mut r = Reader::new(sql.as_bytes(), d);
        let mut out = Vec::new();
        while let Some(h) = r.next_insert()? {
            let mut row = Vec::new();
            while r.next_row(&mut row)?.is_some() {
                out.push((h.table.clone(), row.clone()));
            }
        }
        Ok(out)
    }

    fn s(v: &str) -> Lit {
        Lit::Str(v.as_bytes().to_vec())
    }

    #[test]
    fn mysqldump_lines_are_skipped_and_multi_row_inserts_read() {
        let sql = "-- MySQL dump 10.13\n/*!40101 SET NAMES utf8mb4 */;\nLOCK TABLES `w` WRITE;\n\
                   /*!40000 ALTER TABLE `w` DISABLE KEYS */;\n\
                   INSERT INTO `w` VALUES (1,'a\\'b\\n',_binary 'x\\0y',0x00FF,NULL),(2,\"q\",'',X'41',-5);\n\
                   UNLOCK TABLES;\n-- Dump completed on 2024-01-01\n";
        let got = rows(sql, None).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].1,
            vec![
                Lit::Int(1),
                s("a'b\n"),
                Lit::Str(b"x\0y".to_vec()),
                Lit::Hex(vec![0, 255]),
                Lit::Null
            ]
        );
        assert_eq!(got[1].1[1], s("q"));
        assert_eq!(got[1].1[4], Lit::Int(-5));
    }

    #[test]
    fn sqlite_replace_and_char_forms_are_evaluated() {
        let sql = "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t(a);\n\
                   INSERT INTO t VALUES(replace('x''y\\nz\\','\\n',char(10)),X'00ff41',-3);\n\
                   INSERT INTO \"t\" VALUES('a'||char(13,10)||'b',unistr('\\u0041\\\\'));\nCOMMIT;\n";
        let got = rows(sql, None).unwrap();
        assert_eq!(got[0].1[0], s("x'y\nz\\"));
        assert_eq!(got[0].1[1], Lit::Hex(vec![0, 0xff, 0x41]));
        assert_eq!(got[1].1, vec![s("a\r\nb"), s("A\\")]);
    }

    #[test]
    fn pg_dump_inserts_are_read_with_e_strings_and_casts() {
        let sql = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET standard_conforming_strings = on;\n\
                   SELECT pg_catalog.set_config('search_path', '', false);\n\
                   INSERT INTO public.w (id, a, b) VALUES (1, E'it''s\\n\\x41', '\\x0001'::bytea);\n\
                   SELECT pg_catalog.setval('public.w_id_seq', 1, true);\n\\unrestrict abc\n\
                   --\n-- PostgreSQL database dump complete\n--\n";
        let mut r = Reader::new(sql.as_bytes(), None);
        let h = r.next_insert().unwrap().unwrap();
        assert_eq!(h.table, "w");
        assert_eq!(h.columns.as_deref().unwrap(), ["id", "a", "b"]);
        let mut row = Vec::new();
        assert_eq!(r.next_row(&mut row).unwrap(), Some(7));
        assert_eq!(row[1], s("it's\nA"));
        assert_eq!(row[2], s("\\x0001"));
        assert_eq!(bytea_decode(b"\\x0001", 1).unwrap(), vec![0, 1]);
        assert_eq!(r.dialect(), Some(Dialect::Postgres));
        assert!(r.next_row(&mut row).unwrap().is_none());
        assert!(r.next_insert().unwrap().is_none());
    }

    #[test]
    fn a_dump_cut_inside_a_string_names_the_row_line() {
        let e = rows("BEGIN;\nINSERT INTO t VALUES\n(1,'abc", None).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(matches!(e.kind, ReadErrorKind::Eof(_)), "{e}");
    }

    #[test]
    fn a_dump_cut_between_statements_is_truncated() {
        let e = rows("BEGIN;\nINSERT INTO t VALUES (1);\n", None).unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::Truncated(_)), "{e}");
        let e = rows("-- MySQL dump 10\nINSERT INTO t VALUES (1);\n", None).unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::Truncated(_)), "{e}");
    }

    #[test]
    fn unknown_escapes_and_bad_hex_are_errors() {
        let e = rows("-- MySQL dump\nINSERT INTO t VALUES ('a\\qb');", None).unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::BadEscape(_)), "{e}");
        let e = rows("INSERT INTO t VALUES (X'4');", None).unwrap_err();
        assert!(matches!(e.kind, ReadErrorKind::BadEscape(_)), "{e}");
        assert!(bytea_decode(b"a\\qb", 1).is_err());
        assert_eq!(bytea_decode(b"a\\\\b\\001", 1).unwrap(), b"a\\b\x01");
    }

    #[test]
    fn strings_spanning_buffer_refills_keep_line_count() {
        let long = "x\n".repeat(BUF);
        let sql = format!("INSERT INTO t VALUES ('{long}');\nINSERT INTO t VALUES (");
        let e = rows(&sql, None).unwrap_err();
        assert_eq!(e.line, BUF as u64 + 2);
    }
}
