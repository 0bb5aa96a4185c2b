//! Dialog identification (RFC 3261 §12): a dialog is named by its Call-ID and the two
//! tags. The endpoint carries a client transaction's dialog so that its outcome goes back
//! to the dialog that sent the request, with no table on the side.

/// The Call-ID and tags of a dialog, from this server's side: the To-tag is the one we
/// chose when the dialog was created, the From-tag the remote party's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}
