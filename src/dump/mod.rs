//! SQL dumps of the four tables, compatible with OpenSIPS 3.x's presence schema
//! (`schema/*.sql`): `presenced dump` writes one consistent snapshot as SQL for MySQL,
//! PostgreSQL or SQLite; `presenced restore` reads our dumps and real `mysqldump`,
//! `sqlite3 .dump` and `pg_dump --inserts` output back, all or nothing.
//!
//! Sans-I/O in spirit: both directions take a `Write`/`Read` and a `Store`, and know
//! nothing of sockets; the daemon's control channel (`mgmt`) feeds them.
//!
//! - [`spec`]: the tables as data (columns, record ⇄ row).
//! - [`write`]: the streaming SQL writer, and the consistency argument.
//! - [`read`]: the streaming INSERT reader (ours, not sqlparser: see its doc).
//! - [`restore`]: rows → records → staging → commit.
//! - [`parallel`]: loader threads for a restore into an empty database.

pub mod parallel;
pub mod read;
pub mod restore;
pub mod spec;
pub mod write;

use serde::{Deserialize, Serialize};

pub use restore::{RestoreError, RestoreErrorKind, RestoreOptions, RestoreReport};
pub use spec::Table;
pub use write::write_dump;

/// The SQL dialect of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dialect {
    Mysql,
    Postgres,
    Sqlite,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Mysql => "mysql",
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mysql" | "mariadb" => Ok(Dialect::Mysql),
            "postgres" | "postgresql" | "pg" => Ok(Dialect::Postgres),
            "sqlite" | "sqlite3" => Ok(Dialect::Sqlite),
            _ => Err(format!(
                "unknown dialect {s:?} (expected mysql, postgres or sqlite)"
            )),
        }
    }
}

/// What `presenced dump` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpOptions {
    pub dialect: Dialect,
    /// Emit `schema/<dialect>.sql` (all four tables and their `version` rows) first.
    pub schema: bool,
    /// Tables to dump; empty means all four.
    pub tables: Vec<Table>,
    /// Only OpenSIPS 3.x's columns (no presenced extensions), for OpenSIPS's own schema.
    pub opensips: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            dialect: Dialect::Mysql,
            schema: false,
            tables: Vec::new(),
            opensips: false,
        }
    }
}

/// Why a dump failed.
#[derive(Debug)]
pub enum DumpError {
    Io(std::io::Error),
    /// The store could not be read (a message naming the table and row).
    Store(String),
    /// A value the dialect cannot hold.
    Unrepresentable {
        table: &'static str,
        column: &'static str,
        why: &'static str,
    },
    /// The daemon went away in the middle of the dump.
    Aborted(String),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Io(e) => write!(f, "write error: {e}"),
            DumpError::Store(e) => write!(f, "database: {e}"),
            DumpError::Unrepresentable { table, column, why } => {
                write!(f, "{table}.{column}: {why}")
            }
            DumpError::Aborted(e) => write!(f, "dump aborted: {e}"),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<std::io::Error> for DumpError {
    fn from(e: std::io::Error) -> Self {
        DumpError::Io(e)
    }
}
