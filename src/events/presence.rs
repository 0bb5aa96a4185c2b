//! The `presence` event package (RFC 3856) with PIDF bodies (RFC 3863): publications are
//! validated and aggregated by `events::pidf`.

use crate::events::package::{BodyError, EventPackage};
use crate::events::pidf;

/// RFC 3856 presence.
pub struct Presence {
    /// With no publication left, send a closed PIDF (true) or no body (false).
    pub closed_when_empty: bool,
    pub needs_authorization: bool,
}

impl EventPackage for Presence {
    fn name(&self) -> &str {
        "presence"
    }
    fn publish_types(&self) -> &[&str] {
        &["application/pidf+xml"]
    }
    fn notify_type(&self) -> &str {
        "application/pidf+xml"
    }
    fn validate(&self, body: &[u8]) -> Result<(), BodyError> {
        pidf::validate_pidf(body).map_err(|e| BodyError(format!("PIDF: {e}")))
    }
    fn aggregate(&self, resource: &str, bodies: &[&[u8]]) -> Vec<u8> {
        pidf::aggregate(resource, bodies)
    }
    fn empty_body(&self, resource: &str) -> Option<Vec<u8>> {
        self.closed_when_empty
            .then(|| pidf::closed_document(resource))
    }
    fn needs_authorization(&self) -> bool {
        self.needs_authorization
    }
}
