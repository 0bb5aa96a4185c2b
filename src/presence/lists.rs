//! List subscriptions (RFC 4662) in the engine: a SUBSCRIBE to a service URI of the
//! subscriber's own rls-services document is a subscription like any other (one
//! dialog, one row, one state machine), run under a [`ListPackage`] whose state is its
//! resources'. Each resource is authorized for the list's owner by that resource's
//! own rules, exactly as a direct subscription would be, so a list shows nothing its
//! owner could not see directly.
//!
//! Nothing about list subscriptions is kept besides their rows: which rows are lists
//! follows from the lists themselves ([`Lists`], rebuilt from the store when an XCAP
//! document changed), so a restart finds them again. A change of a resource is told
//! to the lists naming it by a partial NOTIFY (only that resource); a change of a list
//! document by a partial NOTIFY of the resources that came and went. A list NOTIFY
//! too big for one datagram reaches a UDP subscriber as several ([`fit_datagram`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use log::warn;

use super::Engine;
use super::state::Change;
use super::subscription::{Body, Reason, Status, Subscription};
use crate::auth::{Identity, identity_key};
use crate::events::package::{EventPackage, Handling, Registry};
use crate::rls::backend::{BackendConfig, Backends, Key, Remote};
use crate::rls::lists::{Lists, Member};
use crate::rls::rlmi::{self, Instance, Resource};
use crate::rls::{ListPackage, adhoc};
use crate::sip::endpoint::{MAX_UDP_BODY, random_token};
use crate::sip::message::{Request, Response};
use crate::store::SubscriptionRow;
use crate::store::xcap::doc_type;

/// A member, its instance's state for the list's owner, and the body it carries.
type MemberState = (Member, Instance, Option<Arc<Vec<u8>>>);

/// A resource removed from a list: its instance ends with this reason.
const REMOVED: &str = "noresource";

/// The engine's view of the lists: built from the store at a generation of its XCAP
/// documents, and the list package of each event package.
#[derive(Default)]
pub(super) struct ListState {
    lists: Arc<Lists>,
    generation: Option<u64>,
    /// The lists as running subscriptions were last told of them (see
    /// [`Engine::lists_changed`]); the lists themselves follow the store at once.
    told: Option<Arc<Lists>>,
    packages: HashMap<String, Arc<dyn EventPackage>>,
    /// Members that changed since the last batch went out, by (service, event key).
    changed: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Engine {
    /// The lists as the stored documents define them now.
    pub(super) fn lists(&mut self) -> Arc<Lists> {
        let generation = self.store.xcap_generation();
        if self.lists.generation != Some(generation) {
            let docs: Vec<_> = self
                .store
                .iter_xcap()
                .filter_map(|d| match d {
                    Ok(d) => Some(d),
                    Err(e) => {
                        warn!("store: {e}");
                        None
                    }
                })
                .filter(|d| {
                    d.doc_type == doc_type::RLS_SERVICES || d.doc_type == doc_type::RESOURCE_LISTS
                })
                .collect();
            self.lists.lists = Arc::new(Lists::build(&docs));
            self.lists.generation = Some(generation);
            if self.lists.told.is_none() {
                self.lists.told = Some(self.lists.lists.clone());
            }
        }
        self.lists.lists.clone()
    }

    /// The list package running lists of `inner`'s event (one per event, so its
    /// multipart boundary stays the same for the process's life).
    fn list_package(&mut self, inner: &Arc<dyn EventPackage>) -> Arc<dyn EventPackage> {
        let key = Registry::event_key(inner.as_ref());
        self.lists
            .packages
            .entry(key)
            .or_insert_with(|| Arc::new(ListPackage::new(inner.clone())))
            .clone()
    }

    /// For a new SUBSCRIBE to `resource`: `Ok(None)` when it is no service, the list
    /// package when it is one of the subscriber's services and the request may have it,
    /// or the answer refusing it: 403 for someone else's list, 489 for an event the
    /// service does not offer, 421 without `Supported: eventlist` (RFC 4662 §4.2).
    pub(super) fn list_subscription(
        &mut self,
        req: &Request,
        resource: &str,
        identity: &Identity,
        package: &Arc<dyn EventPackage>,
    ) -> Result<Option<Arc<dyn EventPackage>>, Response> {
        if !self.config.rls || package.watches().is_some() {
            return Ok(None);
        }
        let lists = self.lists();
        let Some(service) = lists.service(resource) else {
            return Ok(None);
        };
        if !identity.is(&service.owner) {
            return Err(Response::for_request(
                req,
                403,
                Some("Forbidden - not a list of yours"),
            ));
        }
        if !service.offers(package.name()) {
            return Err(self.bad_event(req));
        }
        let supported = req.headers.supported();
        if !supported
            .iter()
            .any(|s| s.eq_ignore_ascii_case("eventlist"))
        {
            let mut r = Response::for_request(req, 421, None);
            r.headers.push("Require", "eventlist");
            return Err(r);
        }
        Ok(Some(self.list_package(package)))
    }

    /// A new SUBSCRIBE that carries its own list (RFC 5367 §4): stores it as an
    /// ad-hoc service of the subscriber's and returns its URI, the subscription's
    /// resource from here on. `Ok(None)` for any other SUBSCRIBE; 415 or 400 for a
    /// carried list that cannot be read, 403 when request-contained lists are off.
    pub(super) fn request_list(
        &mut self,
        req: &Request,
        identity: &Identity,
        package: &Arc<dyn EventPackage>,
    ) -> Result<Option<String>, Response> {
        let entries = match adhoc::carried(req) {
            Ok(None) => return Ok(None),
            Ok(Some(entries)) => entries,
            Err(adhoc::Refused::Type) => {
                let mut r = Response::for_request(req, 415, None);
                r.headers.push("Accept", adhoc::RESOURCE_LISTS_TYPE);
                return Err(r);
            }
            Err(adhoc::Refused::Invalid(why)) => {
                let why = format!("Bad Request - the carried list: {why}");
                return Err(Response::for_request(req, 400, Some(&why)));
            }
        };
        if !self.config.request_lists || package.watches().is_some() || package.owner_only() {
            return Err(Response::for_request(
                req,
                403,
                Some("Forbidden - request-contained lists are not served"),
            ));
        }
        let Some((user, domain)) = identity
            .aor
            .strip_prefix("sip:")
            .and_then(|a| a.split_once('@'))
        else {
            return Err(Response::for_request(req, 400, None));
        };
        let uri = format!("sip:{}{}@{domain}", adhoc::PREFIX, random_token(12));
        let x = crate::store::Xcap {
            username: user.to_owned(),
            domain: domain.to_owned(),
            doc_type: doc_type::RLS_SERVICES,
            doc_uri: adhoc::doc_uri(&identity.aor, &uri),
            etag: random_token(16),
            doc: adhoc::document(&uri, &entries, package.name()),
            source: crate::store::xcap::source::INTEGRATED,
            port: 0,
        };
        if let Err(e) = self.store.put_xcap(&x) {
            warn!("store: {e}");
            return Err(Response::for_request(req, 500, None));
        }
        Ok(Some(uri))
    }

    /// Deletes the document behind `service` when it is a request-contained list
    /// (its subscription ended); nothing for any other service.
    pub(super) fn drop_request_list(&mut self, service: &str, owner: &str) {
        if !adhoc::is_adhoc(service) {
            return;
        }
        let Some((user, domain)) = owner.strip_prefix("sip:").and_then(|a| a.split_once('@'))
        else {
            return;
        };
        let doc_uri = adhoc::doc_uri(owner, service);
        if let Err(e) = self
            .store
            .delete_xcap(user, domain, doc_type::RLS_SERVICES, &doc_uri)
        {
            warn!("store: {e}");
        }
    }

    /// The package a stored row runs under: its event's, or that event's list package
    /// when the row is its owner's subscription to one of their services.
    pub(super) fn package_of_row(
        &mut self,
        row: &SubscriptionRow,
    ) -> Option<Arc<dyn EventPackage>> {
        let package = self.packages.by_key(&row.event).cloned()?;
        if !self.config.rls || package.watches().is_some() {
            return Some(package);
        }
        let lists = self.lists();
        match lists.service(&row.presentity_uri) {
            Some(s) if identity_key(&s.owner) == identity_key(&row.watcher_uri) => {
                Some(self.list_package(&package))
            }
            _ => Some(package),
        }
    }

    /// The full state of `service` as its owner sees it.
    pub(super) fn list_change(&mut self, service: &str, list: &ListPackage, now: u64) -> Change {
        let lists = self.lists();
        let body = lists.service(service).map(|s| {
            let members: Vec<&Member> = s.members.iter().collect();
            let states = self.member_states(&members, &s.owner, list.inner().as_ref(), now);
            Arc::new(self.list_body(service, true, &states, list))
        });
        Change::fixed(body)
    }

    /// Each member's instance state and body for `owner`: a local one's as its rules
    /// let the owner see it, a remote one's as its back-end dialog last heard.
    fn member_states(
        &mut self,
        members: &[&Member],
        owner: &str,
        package: &dyn EventPackage,
        now: u64,
    ) -> Vec<MemberState> {
        let states: Vec<MemberState> = members
            .iter()
            .map(|m| {
                // A package only its owner may watch (waiting messages) shows a list
                // owner nothing of anyone else's, exactly as a direct SUBSCRIBE would.
                if package.owner_only() && identity_key(&m.uri) != identity_key(owner) {
                    let refused = Instance::Terminated(Reason::Rejected.as_str());
                    return ((*m).clone(), refused, None);
                }
                if self.backends.is_remote(&m.uri) {
                    let (remote, body) = self.backends.state(
                        &m.uri,
                        package.name(),
                        &Registry::event_key(package),
                        package.notify_type(),
                        owner,
                        now,
                    );
                    let instance = match remote {
                        Remote::Active => Instance::Active,
                        Remote::Waiting | Remote::Pending => Instance::Pending,
                        Remote::Terminated(why) => Instance::Terminated(why),
                    };
                    let body = body.filter(|_| instance == Instance::Active);
                    return ((*m).clone(), instance, body);
                }
                let mut change = self.change(&m.uri, package, now);
                let (instance, body) = member_state(&mut change, owner, &m.uri, now);
                ((*m).clone(), instance, body)
            })
            .collect();
        self.send_backend_requests();
        states
    }

    /// Where back-end dialogs go and what they say about us (Contact, domains).
    pub fn set_backends(&mut self, config: BackendConfig) {
        self.backends = Backends::new(config);
    }

    /// Back-end dialogs (for status and tests).
    pub fn backend_dialogs(&self) -> usize {
        self.backends.len()
    }

    /// Hands the back-end SUBSCRIBEs waiting to the output path.
    fn send_backend_requests(&mut self) {
        while let Some(out) = self.backends.poll_outgoing() {
            self.actions.push_back(super::Action::Notify {
                dialog: Some(out.dialog),
                request: out.request,
                to: out.to,
                after_write: 0,
            });
        }
    }

    /// A NOTIFY in one of our back-end dialogs; what it changed goes to the lists
    /// naming its resource in their next batch.
    pub fn backend_notify(&mut self, req: &Request, now: u64) -> Response {
        let (response, changed) = self.backends.on_notify(req, now);
        if let Some(key) = changed {
            self.backend_changed(&key);
        }
        self.send_backend_requests();
        response
    }

    pub(super) fn backend_result(
        &mut self,
        dialog: &crate::sip::dialog::DialogId,
        result: &crate::sip::endpoint::ClientResult,
        now: u64,
    ) {
        if let Some(key) = self.backends.on_result(dialog, result, now) {
            self.backend_changed(&key);
        }
        self.send_backend_requests();
    }

    fn backend_changed(&mut self, key: &Key) {
        let (resource, event, _) = key;
        let Some(package) = self.packages.by_key(event).cloned() else {
            return;
        };
        let services = self.lists_naming(resource, package.as_ref());
        self.note_list_change(&services, resource, package.as_ref());
    }

    /// The back-end dialogs some live list subscription still needs.
    fn backends_needed(&mut self, now: u64) -> HashSet<Key> {
        let lists = self.lists();
        let mut needed = HashSet::new();
        for key in self.backends.states().into_keys() {
            let (resource, event, owner) = &key;
            let Some(package) = self.packages.by_key(event).cloned() else {
                continue;
            };
            let wanted = lists.services_of(resource).iter().any(|uri| {
                lists.service(uri).is_some_and(|s| {
                    identity_key(&s.owner) == identity_key(owner)
                        && s.offers(package.name())
                        && !self.list_rows(uri, owner, package.as_ref(), now).is_empty()
                })
            });
            if wanted {
                needed.insert(key);
            }
        }
        needed
    }

    /// Refreshes or retries the back-end dialogs that are due, ending those no list
    /// needs any more.
    pub(super) fn backends_due(&mut self, now: u64) {
        let needed = self.backends_needed(now);
        self.backends.handle_timeout(now, |k| needed.contains(k));
        self.send_backend_requests();
    }

    /// Ends at once the back-end dialogs no list needs (a list edited, a list
    /// subscription ended).
    pub(super) fn prune_backends(&mut self, now: u64) {
        if self.backends.is_empty() {
            return;
        }
        let needed = self.backends_needed(now);
        self.backends.prune(now, |k| needed.contains(k));
        self.send_backend_requests();
    }

    fn list_body(
        &self,
        service: &str,
        full: bool,
        states: &[MemberState],
        list: &ListPackage,
    ) -> Vec<u8> {
        let resources: Vec<Resource<'_>> = states
            .iter()
            .map(|(m, instance, body)| Resource {
                uri: &m.uri,
                name: m.name.as_deref(),
                instance: *instance,
                body: body.as_ref().map(|b| b.as_slice()),
            })
            .collect();
        rlmi::body(
            service,
            full,
            &resources,
            list.inner().notify_type(),
            list.boundary(),
        )
    }

    /// The services naming `resource` that offer `package`, for its fan-out.
    pub(super) fn lists_naming(
        &mut self,
        resource: &str,
        package: &dyn EventPackage,
    ) -> Vec<String> {
        if !self.config.rls || package.watches().is_some() || package.as_list().is_some() {
            return Vec::new();
        }
        let lists = self.lists();
        lists
            .services_of(resource)
            .iter()
            .filter(|s| lists.service(s).is_some_and(|s| s.offers(package.name())))
            .cloned()
            .collect()
    }

    /// `resource` changed: the lists of `services` with a subscription will tell it in
    /// their next batch ([`Engine::send_list_changes`]).
    pub(super) fn note_list_change(
        &mut self,
        services: &[String],
        resource: &str,
        package: &dyn EventPackage,
    ) {
        let event = Registry::event_key(package);
        for service in services {
            self.lists
                .changed
                .entry((service.clone(), event.clone()))
                .or_default()
                .insert(resource.to_owned());
        }
    }

    /// Whether list changes wait for [`Engine::send_list_changes`].
    pub fn list_changes_waiting(&self) -> bool {
        !self.lists.changed.is_empty()
    }

    /// Every list subscription whose members changed since the last call gets one
    /// partial NOTIFY with those members' states now, as each one's rules let the
    /// list's owner see them (RFC 4662 §5.2). Changes that arrive together (within
    /// `rls_batch_ms`, which the caller keeps) so go out as one NOTIFY.
    pub fn send_list_changes(&mut self, now: u64) {
        let changed = std::mem::take(&mut self.lists.changed);
        let lists = self.lists();
        for ((uri, event), members) in changed {
            let (Some(service), Some(package)) =
                (lists.service(&uri), self.packages.by_key(&event).cloned())
            else {
                continue;
            };
            let rows = self.list_rows(&service.uri, &service.owner, package.as_ref(), now);
            if rows.is_empty() {
                continue;
            }
            let members: Vec<&Member> = service
                .members
                .iter()
                .filter(|m| members.contains(&m.uri))
                .collect();
            if members.is_empty() {
                continue;
            }
            let states = self.member_states(&members, &service.owner, package.as_ref(), now);
            let list = self.list_package(&package);
            let Some(list_ref) = list.as_list() else {
                continue;
            };
            let body = Arc::new(self.list_body(&service.uri, false, &states, list_ref));
            self.send_to_lists(rows, Body::Delta(body), now);
        }
    }

    /// The live list subscriptions of `owner` to `service` for `package`.
    fn list_rows(
        &self,
        service: &str,
        owner: &str,
        package: &dyn EventPackage,
        now: u64,
    ) -> Vec<SubscriptionRow> {
        let event = Registry::event_key(package);
        match self.store.subscriptions_to(service, &event) {
            Ok(rows) => rows
                .into_iter()
                .filter(|r| r.expires > now && identity_key(&r.watcher_uri) == identity_key(owner))
                .collect(),
            Err(e) => {
                warn!("store: {e}");
                Vec::new()
            }
        }
    }

    fn send_to_lists(&mut self, rows: Vec<SubscriptionRow>, body: Body, now: u64) {
        for row in rows {
            let Some(mut sub) = self.take_subscription(row) else {
                continue;
            };
            if sub.status() != Status::Active || sub.package().as_list().is_none() {
                self.keep(sub);
                continue;
            }
            if sub.notify(body.clone()) {
                self.stats.notifies_coalesced += 1;
            }
            self.pump(sub, now);
        }
    }

    /// A list document changed: each running list subscription learns which of its
    /// resources came (with their state) and went (terminated), and a subscription to
    /// a service that no longer exists ends.
    pub(super) fn lists_changed(&mut self, now: u64) {
        if !self.config.rls {
            return;
        }
        let after = self.lists();
        let before = self
            .lists
            .told
            .replace(after.clone())
            .unwrap_or_else(|| after.clone());
        let services: HashSet<&String> = before
            .services()
            .chain(after.services())
            .map(|s| &s.uri)
            .collect();
        for uri in services {
            let (old, new) = (before.service(uri), after.service(uri));
            if old == new {
                continue;
            }
            let Some(old) = old else {
                // A new service: nobody can have subscribed to it as a list yet.
                continue;
            };
            let packages: Vec<Arc<dyn EventPackage>> = self
                .packages
                .iter()
                .filter(|p| p.watches().is_none() && old.offers(p.name()))
                .cloned()
                .collect();
            for package in packages {
                let rows = self.list_rows(uri, &old.owner, package.as_ref(), now);
                if rows.is_empty() {
                    continue;
                }
                let Some(new) = new.filter(|n| n.owner == old.owner && n.offers(package.name()))
                else {
                    for row in rows {
                        if let Some(sub) = self.take_subscription(row) {
                            self.end(sub, Reason::Noresource, Body::None, now);
                        }
                    }
                    continue;
                };
                let kept: HashSet<&str> = new.members.iter().map(|m| m.uri.as_str()).collect();
                let had: HashSet<&str> = old.members.iter().map(|m| m.uri.as_str()).collect();
                let added: Vec<&Member> = new
                    .members
                    .iter()
                    .filter(|m| !had.contains(m.uri.as_str()))
                    .collect();
                let mut states = self.member_states(&added, &new.owner, package.as_ref(), now);
                states.extend(
                    old.members
                        .iter()
                        .filter(|m| !kept.contains(m.uri.as_str()))
                        .map(|m| (m.clone(), Instance::Terminated(REMOVED), None)),
                );
                if states.is_empty() {
                    continue;
                }
                let list = self.list_package(&package);
                let Some(list_ref) = list.as_list() else {
                    continue;
                };
                let body = Arc::new(self.list_body(uri, false, &states, list_ref));
                self.send_to_lists(rows, Body::Delta(body), now);
            }
        }
        self.prune_backends(now);
    }
}

/// A resource's instance for `owner`, and the body an active one carries.
fn member_state(
    change: &mut Change,
    owner: &str,
    resource: &str,
    now: u64,
) -> (Instance, Option<Arc<Vec<u8>>>) {
    let decision = change.decide(owner, now);
    match decision.handling {
        Handling::Allow => (Instance::Active, change.body(decision.view, resource)),
        Handling::Confirm => (Instance::Pending, None),
        Handling::Block => (Instance::Terminated(Reason::Rejected.as_str()), None),
    }
}

/// A list NOTIFY too big for one datagram, to a subscriber over UDP, leaves as several
/// NOTIFYs: the first piece now, the rest after it (see [`ListPackage::split`]). Any
/// other NOTIFY leaves whole (one too big for UDP goes over TCP, RFC 3261 §18.1.1), and
/// so does a final one: nothing may follow a terminated NOTIFY.
pub(super) fn fit_datagram(sub: &Subscription, body: Body) -> (Body, Vec<Arc<Vec<u8>>>) {
    let (bytes, full) = match &body {
        Body::Full(b) => (b, true),
        Body::Delta(b) => (b, false),
        Body::None => return (body, Vec::new()),
    };
    if bytes.len() <= MAX_UDP_BODY || sub.is_terminated() || !sub.over_udp() {
        return (body, Vec::new());
    }
    let Some(pieces) = sub
        .package()
        .as_list()
        .and_then(|l| l.split(bytes, MAX_UDP_BODY))
    else {
        return (body, Vec::new());
    };
    let mut pieces = pieces.into_iter().map(Arc::new);
    let Some(first) = pieces.next() else {
        return (body, Vec::new());
    };
    let first = if full {
        Body::Full(first)
    } else {
        Body::Delta(first)
    };
    (first, pieces.collect())
}
