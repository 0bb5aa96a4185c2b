//! The one command type into the core loop: what management (the control socket, a
//! [`super::Handle`]), the XCAP side and the daemon's own blocking tasks ask of the core,
//! each with where to send the answer.

use smol::channel::Sender;

use crate::mgmt::protocol::Refreshed;
use crate::store::{Staging, TableCounts};

/// A request for the core loop, handled in the order it arrived among SIP messages.
pub enum Command {
    /// An XCAP document was written, replaced or removed; the sender, if any, hears
    /// when the watchers were re-evaluated.
    XcapChanged(crate::xcap::Notice),
    /// OpenSIPS `refreshWatchers <presentity_uri> <event>`.
    RefreshWatchers {
        presentity: String,
        event: String,
        reply: Option<Sender<Result<Refreshed, String>>>,
    },
    /// OpenSIPS `refreshXcapDoc <doc_uri> <port>`.
    RefreshXcapDoc {
        doc_uri: String,
        port: u32,
        reply: Option<Sender<Result<Refreshed, String>>>,
    },
    /// Answered when the core loop reaches it: every step queued before has finished.
    Barrier(Sender<()>),
    /// Apply a staged restore (off the core loop), then NOTIFY every active
    /// subscription.
    Restore {
        staging: Staging,
        replace: bool,
        reply: Sender<Result<TableCounts, String>>,
    },
    /// A management operation on the engine; the answer is what `presenced ctl` prints.
    Manage {
        op: Manage,
        reply: Sender<Result<serde_json::Value, String>>,
    },
    /// Engine counters for `status`.
    Status(Sender<serde_json::Value>),
    /// The core loop's figures for the metrics endpoint.
    Metrics(Sender<crate::metrics::CoreFigures>),
    /// A flush the core asked for finished (from the daemon's flush task), and how
    /// long it took.
    Flushed {
        seq: u64,
        ok: bool,
        took: std::time::Duration,
    },
    /// A restore's commit finished (from its blocking task).
    Restored {
        result: Result<TableCounts, String>,
        reply: Sender<Result<TableCounts, String>>,
    },
}

/// What `presenced ctl` asks the engine to do.
pub enum Manage {
    /// A PUBLISH made by the server (`ctl publish`), already parsed.
    Publish(Box<crate::sip::message::Request>),
    /// End one dialog with a terminated NOTIFY (`ctl subscription terminate`).
    Terminate {
        call_id: String,
        to_tag: String,
        from_tag: String,
        reason: crate::presence::Reason,
    },
    /// Expire what is due and run housekeeping now (`ctl cleanup`).
    Cleanup,
    /// Apply a configuration read again (`ctl reload`, SIGHUP).
    Reload(Box<crate::config::Config>),
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// No event package serves this Event header value.
    UnknownEvent(String),
    /// No stored XCAP document has this URI (on this port, unless 0).
    UnknownDocument { doc_uri: String, port: u32 },
    /// The fetcher's queue is full; the request was dropped.
    FetcherBusy,
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::UnknownEvent(e) => write!(f, "refreshWatchers: unknown event {e:?}"),
            CommandError::UnknownDocument { doc_uri, port: 0 } => {
                write!(f, "refreshXcapDoc: no XCAP document {doc_uri}")
            }
            CommandError::UnknownDocument { doc_uri, port } => {
                write!(
                    f,
                    "refreshXcapDoc: no XCAP document {doc_uri} on port {port}"
                )
            }
            CommandError::FetcherBusy => {
                write!(f, "refreshXcapDoc: the XCAP fetcher is busy; try again")
            }
        }
    }
}

impl std::error::Error for CommandError {}
