//! MESSAGE authorization (the SER handbook's fourth part): a MESSAGE to a user
//! of the served domains is checked against the recipient's im-rules documents
//! (`policy::im`). A blocked one is answered 403. presenced does not store or forward
//! instant messages, so an allowed one is answered 480: the sender learns nobody took
//! it, never that it was delivered. A proxy that delivers messages itself asks for the
//! decision on the control socket instead (`ctl authorize-message FROM TO`).

use log::warn;

use super::{Engine, split_aor};
use crate::auth::Identity;
use crate::sip::message::{Request, Response};
use crate::store::xcap::doc_type;
use crate::store::{Store, StoreError};

/// Whether `sender` may send instant messages to `recipient` (an AOR of a served
/// user), by the recipient's im-rules documents at `now`.
pub fn message_allowed(
    store: &Store,
    sender: &str,
    recipient: &str,
    now: u64,
) -> Result<bool, String> {
    let Some((user, domain)) = split_aor(recipient) else {
        return Err(format!("{recipient} is not a user's address"));
    };
    let docs = store
        .xcap_for_user(user, domain, Some(doc_type::IM_RULES))
        .map_err(|e: StoreError| e.to_string())?;
    let docs: Vec<&[u8]> = docs.iter().map(|d| d.doc.as_slice()).collect();
    Ok(crate::policy::im::allows(&docs, sender, now))
}

impl Engine {
    /// A MESSAGE the dispatcher passed: 403 when the recipient's rules block its
    /// sender (the authenticated identity, else its From), 480 otherwise.
    pub(super) fn authorize_message(
        &mut self,
        req: &Request,
        identity: &Identity,
        now: u64,
    ) -> Response {
        let Some(recipient) = req.uri.as_sip().map(|u| u.aor()) else {
            return Response::for_request(req, 416, None);
        };
        match message_allowed(&self.store, &identity.aor, &recipient, now) {
            Ok(false) => {
                Response::for_request(req, 403, Some("Forbidden - blocked by the recipient"))
            }
            Ok(true) => Response::for_request(
                req,
                480,
                Some("Temporarily Unavailable - messages are not delivered here"),
            ),
            Err(e) => {
                warn!("MESSAGE to {recipient}: {e}");
                Response::for_request(req, 500, Some("Server Internal Error - store"))
            }
        }
    }
}
