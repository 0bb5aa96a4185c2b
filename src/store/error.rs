//! The store's one error type: what failed, in which tree, under which key.

use super::records::{DecodeError, EncodeError};
use std::fmt;

#[derive(Debug)]
pub enum StoreError {
    /// The database itself failed (I/O, corruption sled detected, …).
    Sled(sled::Error),
    /// A record could not be encoded (too large).
    Encode(EncodeError),
    /// Stored bytes are not a record this version can read.
    Corrupt {
        tree: &'static str,
        key: Vec<u8>,
        why: DecodeError,
    },
    /// A key part contains a NUL byte, which the key layout reserves as separator.
    InvalidKey { field: &'static str },
    /// A write refused on purpose by [`super::Store::fail_next_writes`] (tests).
    Injected,
    /// Making a file of the database durable (`fdatasync`/`fsync`) failed: what sled
    /// wrote may not survive a power cut.
    Sync {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// Maintenance that cannot run now (a compaction while a restore is staged, …).
    Busy(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sled(e) => write!(f, "database error: {e}"),
            StoreError::Busy(why) => f.write_str(why),
            StoreError::Encode(e) => e.fmt(f),
            StoreError::Corrupt { tree, key, why } => {
                write!(
                    f,
                    "{tree}: unreadable value under key {:?}: {why}",
                    key.escape_ascii().to_string()
                )
            }
            StoreError::InvalidKey { field } => write!(f, "{field} contains a NUL byte"),
            StoreError::Injected => write!(f, "write refused (injected fault)"),
            StoreError::Sync { path, error } => write!(f, "syncing {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sled(e) => Some(e),
            StoreError::Sync { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e)
    }
}
