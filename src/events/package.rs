//! The event-package plug-in interface (RFC 6665 §7): everything that differs between
//! events lives behind `EventPackage`, so the engine holds no per-event branch and a new
//! event is a new implementation registered at start-up.

use std::sync::Arc;

use crate::sip::header::Event;
use crate::store::Watcher;

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

    /// The longest Expires this package grants, below the server-wide `max_expires`;
    /// `None` leaves only the server-wide cap.
    fn max_expires(&self) -> Option<u32> {
        None
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

    /// A template package reporting on the watchers of another event (RFC 6665 §5.4.8,
    /// RFC 3857 `.winfo`): that event's name. Its state is then the watchers table of
    /// that event, never publications.
    fn watches(&self) -> Option<&str> {
        None
    }

    /// For a package that [`watches`](EventPackage::watches): the document listing
    /// `rows`, the watchers of `resource`, either all of them (`full`) or only those
    /// that just changed (a partial document, applied by the subscriber on top of the
    /// previous one, RFC 3858 §4.4).
    fn watcher_document(&self, _resource: &str, _rows: &[Watcher], _full: bool) -> Vec<u8> {
        Vec::new()
    }

    /// How the resource's owner authorizes watchers (RFC 5025 pres-rules for
    /// presence). `None`: every watcher is let in and sees everything.
    fn authorization(&self) -> Option<&dyn Authorization> {
        None
    }

    /// An XCAP application usage whose documents, stored by the resource's owner, take
    /// part in the state as permanent publications older than any other (RFC 4827
    /// pidf-manipulation). `None`: state comes from PUBLISH only.
    fn state_documents(&self) -> Option<u8> {
        None
    }

    /// A list subscription's package (RFC 4662): its state is its resources', built by
    /// the engine. Every other package says `None`.
    fn as_list(&self) -> Option<&crate::rls::ListPackage> {
        None
    }
}

/// Authorization of watchers by rules the resource's owner keeps as XCAP documents.
pub trait Authorization: Send + Sync {
    /// The XCAP application usage (`store::xcap_doc_type`) holding the rules.
    fn rules_document(&self) -> u8;

    /// Reads the owner's rules documents once per change, with the resource's current
    /// state (rules may depend on it: RFC 4745 §7.2 sphere).
    fn compile(&self, documents: &[&[u8]], state: Option<&[u8]>) -> Box<dyn Rules>;
}

/// One owner's rules, compiled: asked once per watcher, and once per distinct view for
/// the body its watchers receive.
pub trait Rules {
    /// The decision for `watcher` at `now` (Unix seconds).
    fn decide(&mut self, watcher: &str, now: u64) -> Decision;

    /// What a watcher given `view` receives of the shared `state` of `resource`;
    /// `None` sends no body. Never called with [`ViewId::FULL`].
    fn view(&self, view: ViewId, state: Option<&[u8]>, resource: &str) -> Option<Vec<u8>>;
}

/// Whether a watcher may subscribe (RFC 5025 §3.2.1, in terms any package can use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handling {
    /// Active: NOTIFYs carry the state as the decision's view shows it.
    Allow,
    /// Pending until the owner decides (RFC 3857 §3.3).
    Confirm,
    /// Refused: a new subscription gets 403, a running one ends with `rejected`.
    Block,
}

/// A permission set of one compiled [`Rules`]: watchers with the same view get the same
/// body, built once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewId(pub u32);

impl ViewId {
    /// The shared state as it is.
    pub const FULL: ViewId = ViewId(0);
}

/// The outcome of a package's rules for one watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    pub handling: Handling,
    pub view: ViewId,
}

impl Decision {
    /// Everything, for everyone (no rules, or force_active).
    pub const ALLOW_ALL: Decision = Decision {
        handling: Handling::Allow,
        view: ViewId::FULL,
    };
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

    /// Every registered package, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn EventPackage>> {
        self.packages.iter()
    }

    /// The package a stored Event value names: one we wrote (an
    /// [`Registry::event_key`]) or one a restored dump spells its own way.
    pub fn by_key(&self, key: &str) -> Option<&Arc<dyn EventPackage>> {
        self.packages
            .iter()
            .find(|p| p.selector_params().is_empty() && p.name() == key)
            .or_else(|| self.find(&Event::parse(key).ok()?))
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
