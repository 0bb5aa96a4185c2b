//! The event-package plug-in interface (RFC 6665 §7): everything that differs between
//! events lives behind `EventPackage`, so the engine holds no per-event branch and a new
//! event is a new implementation registered at start-up.

use std::sync::Arc;

use crate::sip::header::Event;

/// Why a published body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

/// One SIP event package.
pub trait EventPackage: Send + Sync {
    /// The package name as it appears in Event and Allow-Events, e.g. `presence`.
    fn name(&self) -> &str;

    /// Event header parameters (besides `id`) that select this package, all required,
    /// e.g. `["sla"]` for `dialog;sla`. Packages with none match only Events without them.
    fn selector_params(&self) -> &[&str] {
        &[]
    }

    /// Content types accepted in PUBLISH (lower-case `type/subtype`); empty when the
    /// package cannot be published (state comes from elsewhere).
    fn publish_types(&self) -> &[&str];

    /// The content type of NOTIFY bodies.
    fn notify_type(&self) -> &str;

    /// Checks a published body.
    fn validate(&self, body: &[u8]) -> Result<(), BodyError>;

    /// One document from all live publications of a resource, newest first.
    fn aggregate(&self, resource: &str, bodies: &[&[u8]]) -> Vec<u8>;

    /// What watchers get when nothing is published; `None` sends no body.
    fn empty_body(&self, resource: &str) -> Option<Vec<u8>>;

    /// Expires used when a request has none.
    fn default_expires(&self) -> u32 {
        3600
    }

    /// The longest Expires this package grants, below the server-wide `max_expires`;
    /// `None` leaves only the server-wide cap.
    fn max_expires(&self) -> Option<u32> {
        None
    }

    /// Whether new subscriptions go through the authorization policy.
    fn needs_authorization(&self) -> bool {
        false
    }

    /// Whether only the resource's owner may subscribe (the watcher's AOR equals the
    /// resource, e.g. message-summary, presence.winfo); others get 403.
    fn owner_only(&self) -> bool {
        false
    }

    /// The body one watcher receives, from the shared document computed once per
    /// change. `version` counts this subscription's NOTIFYs from 0 (RFC 4235 §4.1
    /// dialog-info `version`). `None` sends the shared body unchanged, which is the
    /// common case and costs nothing.
    fn watcher_body(&self, _shared: &[u8], _version: u32) -> Option<Vec<u8>> {
        None
    }
}

/// The registered packages, looked up by Event header.
#[derive(Clone, Default)]
pub struct Registry {
    packages: Vec<Arc<dyn EventPackage>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn register(&mut self, package: Arc<dyn EventPackage>) {
        self.packages.push(package);
    }

    /// The package an Event header names. Parameters other than `id` must match the
    /// package's selectors exactly (`dialog` and `dialog;sla` are different packages).
    pub fn find(&self, event: &Event) -> Option<&Arc<dyn EventPackage>> {
        self.packages.iter().find(|p| {
            if !p.name().eq_ignore_ascii_case(&event.package) {
                return false;
            }
            let given: Vec<&str> = event
                .params
                .0
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !k.eq_ignore_ascii_case("id"))
                .collect();
            let wanted = p.selector_params();
            given.len() == wanted.len()
                && wanted
                    .iter()
                    .all(|w| given.iter().any(|g| g.eq_ignore_ascii_case(w)))
        })
    }

    /// The Event value that names `package` in messages we send (`dialog;sla`).
    pub fn event_key(package: &dyn EventPackage) -> String {
        let mut s = package.name().to_string();
        for p in package.selector_params() {
            s.push(';');
            s.push_str(p);
        }
        s
    }

    /// Allow-Events: every registered package, in registration order.
    pub fn allow_events(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| Self::event_key(p.as_ref()))
            .collect()
    }

    /// Accept for PUBLISH: every publishable content type.
    pub fn publish_types(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in &self.packages {
            for t in p.publish_types() {
                if !v.iter().any(|x| x == t) {
                    v.push((*t).to_string());
                }
            }
        }
        v
    }
}
