//! Event packages (RFC 6665 §7): the per-event knowledge of bodies — what a PUBLISH may
//! carry, how several publications of one presentity merge into one NOTIFY body, what a
//! watcher is allowed to see. The subscription engine stays event-independent; each
//! package lives in its own module here and plugs in through `package::EventPackage`.

pub mod dialog;
pub mod mwi;
pub mod package;
pub mod presence;
pub mod winfo;
