//! Resource list server (RFC 4662) parts: the lists a service URI stands for
//! ([`lists`], from XCAP rls-services and resource-lists documents, RFC 4826), the list
//! NOTIFY body ([`rlmi`]), [`ListPackage`], the event package a list subscription runs
//! under, the back-end dialogs that watch members served elsewhere ([`backend`]), and
//! request-contained lists ([`adhoc`], RFC 5367).
//! The engine (`presence::lists`) ties them to subscriptions.

pub mod adhoc;
pub mod backend;
pub mod lists;
pub mod rlmi;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use crate::events::package::{BodyError, EventPackage};

/// A list subscription's package: the event of the package it wraps (`presence`,
/// `dialog`...), with RLMI multipart bodies. Its state is built by the engine from the
/// members' states, never aggregated from publications.
pub struct ListPackage {
    inner: Arc<dyn EventPackage>,
    boundary: String,
    notify_type: String,
}

impl ListPackage {
    pub fn new(inner: Arc<dyn EventPackage>) -> ListPackage {
        // Unguessable per process, so no member's document can contain it. A plain
        // token, so it goes unquoted (RFC 2045 §5.1 allows both): belle-sip, under
        // liblinphone, keeps the quotes as part of a quoted boundary, finds no part,
        // and the client crashes.
        let boundary = format!("presenced-{:016x}", RandomState::new().hash_one(0u8));
        let notify_type = format!(
            "multipart/related;type=\"{}\";boundary={boundary}",
            rlmi::RLMI_TYPE
        );
        ListPackage {
            inner,
            boundary,
            notify_type,
        }
    }

    /// The package of the list's resources.
    pub fn inner(&self) -> &Arc<dyn EventPackage> {
        &self.inner
    }

    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// A list NOTIFY body cut into bodies of at most `limit` bytes, a full state into
    /// a full state and partial ones ([`rlmi::split`]); `None` when it fits.
    pub fn split(&self, body: &[u8], limit: usize) -> Option<Vec<Vec<u8>>> {
        rlmi::split(body, &self.boundary, limit)
    }
}

impl EventPackage for ListPackage {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn selector_params(&self) -> &[&str] {
        self.inner.selector_params()
    }

    fn publish_types(&self) -> &[&str] {
        &[]
    }

    fn notify_type(&self) -> &str {
        &self.notify_type
    }

    fn validate(&self, _body: &[u8]) -> Result<(), BodyError> {
        Err(BodyError("a list is not published".into()))
    }

    fn aggregate(&self, _resource: &str, _bodies: &[&[u8]]) -> Vec<u8> {
        Vec::new()
    }

    fn empty_body(&self, _resource: &str) -> Option<Vec<u8>> {
        None
    }

    fn max_expires(&self) -> Option<u32> {
        self.inner.max_expires()
    }

    /// The RLMI version, and each resource's own per-watcher stamp (dialog-info's
    /// `version`, say) with the same number: it rises with every list NOTIFY, so it
    /// rises for each resource too, with gaps where a NOTIFY left the resource out
    /// (its documents are full state, so a gap loses nothing).
    fn watcher_body(&self, shared: &[u8], version: u32) -> Option<Vec<u8>> {
        let stamped = rlmi::stamp_parts(shared, &self.boundary, |part| {
            self.inner.watcher_body(part, version)
        });
        rlmi::stamp(stamped.as_deref().unwrap_or(shared), version)
    }

    fn as_list(&self) -> Option<&ListPackage> {
        Some(self)
    }
}
