//! The control channel to a running daemon: a Unix stream socket next to the database
//! (`<db>/control.sock`, or `control_socket` in the configuration). sled lets one
//! process open a database, so every command that needs the data while the daemon runs
//! (`dump`, `restore`, `ctl status`) goes through it, as do OpenSIPS's management
//! commands `refreshWatchers` and `refreshXcapDoc`, and the account changes of
//! `presenced user` ([`users`]).
//!
//! - [`protocol`]: frames and requests.
//! - [`listener`]: the daemon side; hands core-loop work over as a [`crate::daemon::Command`].
//! - [`client`]: the command-line side.
//! - [`inspect`]: what `ctl presentity|watcher|publish` read and build.

pub mod client;
pub mod inspect;
pub(crate) mod listener;
pub mod protocol;
pub mod users;

use std::path::{Path, PathBuf};

/// Where the control socket of the daemon using `db` lives.
pub fn socket_path(db: &Path, configured: Option<&Path>) -> PathBuf {
    match configured {
        Some(p) => p.to_path_buf(),
        None => db.join("control.sock"),
    }
}
