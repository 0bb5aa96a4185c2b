//! The `presence` event package (RFC 3856): everything the engine asks about presence.
//!
//! - [`pidf`]: PIDF bodies (RFC 3863, RPID RFC 4480): what a PUBLISH may carry and how a
//!   presentity's publications merge into one document.
//! - [`rules`]: pres-rules (RFC 5025) on the generic common-policy evaluator (`policy`):
//!   who may watch, and what of the state each watcher may see.
//! - [`transform`]: those permissions applied to a PIDF document.
//!
//! With pidf-manipulation on, the owner's XCAP PIDF document is a permanent publication
//! (RFC 4827).

pub mod pidf;
pub mod rules;
#[cfg(test)]
mod tests;
pub mod transform;

use std::collections::HashMap;

use crate::events::package::{
    Authorization, BodyError, Decision, EventPackage, Handling, Rules, ViewId,
};
use crate::policy::Subject;
use crate::store::xcap_doc_type;
use rules::{PresRuleset, SubHandling, View};

/// RFC 3856 presence.
pub struct Presence {
    /// With no publication left, send a closed PIDF (true) or no body (false).
    closed_when_empty: bool,
    /// Aggregate each user's pidf-manipulation document (RFC 4827).
    pidf_manipulation: bool,
    rules: PresRules,
}

impl Presence {
    pub fn new(closed_when_empty: bool, pidf_manipulation: bool) -> Presence {
        Presence {
            closed_when_empty,
            pidf_manipulation,
            rules: PresRules,
        }
    }
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
    fn authorization(&self) -> Option<&dyn Authorization> {
        Some(&self.rules)
    }
    fn state_documents(&self) -> Option<u8> {
        self.pidf_manipulation
            .then_some(xcap_doc_type::PIDF_MANIPULATION)
    }
}

/// Authorization by pres-rules documents (RFC 5025).
struct PresRules;

impl Authorization for PresRules {
    fn rules_document(&self) -> u8 {
        xcap_doc_type::PRES_RULES
    }

    fn compile(&self, documents: &[&[u8]], state: Option<&[u8]>) -> Box<dyn Rules> {
        let rulesets = documents
            .iter()
            .filter_map(|d| match PresRuleset::parse(d) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!("pres-rules document unreadable: {e}");
                    None
                }
            })
            .collect();
        Box::new(CompiledPresRules {
            rulesets,
            // RFC 4480 §3.7 / RFC 4745 §7.2: the sphere the presentity is in now.
            sphere: state.and_then(|b| pidf::rpid_spheres(b).into_iter().next()),
            views: Vec::new(),
            ids: HashMap::new(),
        })
    }
}

/// One presentity's pres-rules with the distinct views handed out so far.
struct CompiledPresRules {
    rulesets: Vec<PresRuleset>,
    sphere: Option<String>,
    views: Vec<View>,
    ids: HashMap<View, ViewId>,
}

impl Rules for CompiledPresRules {
    fn decide(&mut self, watcher: &str, now: u64) -> Decision {
        let d = rules::decide(
            &self.rulesets,
            &Subject {
                watcher,
                now,
                sphere: self.sphere.as_deref(),
            },
        );
        let handling = match d.sub_handling {
            // Polite-block looks active to the watcher, with a neutral document.
            SubHandling::Allow | SubHandling::PoliteBlock => Handling::Allow,
            SubHandling::Confirm => Handling::Confirm,
            SubHandling::Block => Handling::Block,
        };
        let view = match d.view {
            View::Full => ViewId::FULL,
            view => {
                let next = ViewId(self.views.len() as u32 + 1);
                *self.ids.entry(view.clone()).or_insert_with(|| {
                    self.views.push(view);
                    next
                })
            }
        };
        Decision { handling, view }
    }

    fn view(&self, view: ViewId, state: Option<&[u8]>, resource: &str) -> Option<Vec<u8>> {
        let index = usize::try_from(view.0).ok()?.checked_sub(1)?;
        match (self.views.get(index)?, state) {
            (View::Neutral, _) => Some(pidf::closed_document(resource)),
            (v, Some(body)) => Some(transform::apply(body, resource, v)),
            (_, None) => None,
        }
    }
}
