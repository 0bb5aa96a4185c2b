//! A resource's state and who may see what of it: the document computed once per change
//! (from its publications, or for a template package from the watchers table), the
//! owner's rules read once per change, one body per distinct view, and the fan-out that
//! gives every subscription what its decision allows (OpenSIPS refreshWatchers).

use std::collections::HashMap;
use std::sync::Arc;

use log::{debug, warn};

use super::subscription::{Body, Reason, Status, Subscription};
use super::{Action, Engine, split_aor};
use crate::events::package::{Decision, EventPackage, Handling, Registry, Rules, ViewId};
use crate::sip::header::Event;
use crate::store::{Publication, Watcher};

/// Resources whose [`Sources`] are kept at most; past it the cache starts again empty.
const SOURCES_CACHED: usize = 4096;

/// What a resource's state and its owner's rules are computed from.
#[derive(Clone)]
pub(super) struct Sources {
    state: Option<Arc<Vec<u8>>>,
    /// The rules documents; `None` when no rules apply (force_active, a package
    /// without authorization).
    rules: Option<Arc<Vec<Vec<u8>>>>,
}

/// [`Sources`] as read at one store generation, good until `valid_until`.
pub(super) struct Cached {
    sources: Sources,
    generation: u64,
    valid_until: u64,
}

/// What one change of a resource gives its watchers: the shared state, the owner's
/// rules, and the bodies already built for each view.
pub(super) struct Change {
    pub state: Option<Arc<Vec<u8>>>,
    rules: Option<Box<dyn Rules>>,
    views: HashMap<ViewId, Option<Arc<Vec<u8>>>>,
}

impl Change {
    /// A state that is the same for every watcher and asks no rules (a list's, built
    /// for its one watcher).
    pub fn fixed(state: Option<Arc<Vec<u8>>>) -> Change {
        Change {
            state,
            rules: None,
            views: HashMap::new(),
        }
    }

    pub fn decide(&mut self, watcher: &str, now: u64) -> Decision {
        match &mut self.rules {
            None => Decision::ALLOW_ALL,
            Some(rules) => rules.decide(watcher, now),
        }
    }

    /// The body a watcher with `view` gets, built at most once per view.
    pub fn body(&mut self, view: ViewId, resource: &str) -> Option<Arc<Vec<u8>>> {
        if view == ViewId::FULL {
            return self.state.clone();
        }
        let (state, rules) = (&self.state, &self.rules);
        self.views
            .entry(view)
            .or_insert_with(|| {
                rules
                    .as_ref()
                    .and_then(|r| r.view(view, state.as_deref().map(|b| b.as_slice()), resource))
                    .map(Arc::new)
            })
            .clone()
    }
}

impl Engine {
    /// What `resource`'s state for `package` and its owner's rules are made of. The
    /// state is the aggregate of its live publications newest first (with the owner's
    /// state documents as the oldest, permanent ones), the package's empty body when
    /// there are none, or for a template package the full list of the watched event's
    /// watchers. It is computed once and reused until a publication or document may
    /// have changed (the store's state generation moved) or a publication it used
    /// expires: a burst of new watchers of one presentity costs one aggregation, not
    /// one each.
    fn sources(&mut self, resource: &str, package: &dyn EventPackage, now: u64) -> Sources {
        if package.watches().is_some() {
            // A template package's state is the watchers table, which this does not track.
            return self.compute_sources(resource, package, now).0;
        }
        let generation = self.store.state_generation();
        let event = Registry::event_key(package);
        if let Some(hit) = self
            .sources
            .get(event.as_str())
            .and_then(|m| m.get(resource))
            .filter(|c| c.generation == generation && now < c.valid_until)
        {
            let hit = hit.sources.clone();
            if hit.rules.as_ref().is_some_and(|d| d.is_empty()) {
                self.missing_rules(resource);
            }
            return hit;
        }
        let (sources, valid_until) = self.compute_sources(resource, package, now);
        if self.sources_cached >= SOURCES_CACHED {
            self.sources.clear();
            self.sources_cached = 0;
        }
        let cached = Cached {
            sources: sources.clone(),
            generation,
            valid_until,
        };
        let previous = self
            .sources
            .entry(event)
            .or_default()
            .insert(resource.to_owned(), cached);
        if previous.is_none() {
            self.sources_cached += 1;
        }
        sources
    }

    /// Reads and aggregates; also says until when the result holds (the first expiry
    /// among the publications it used).
    fn compute_sources(
        &mut self,
        resource: &str,
        package: &dyn EventPackage,
        now: u64,
    ) -> (Sources, u64) {
        let mut valid_until = u64::MAX;
        let state = if let Some(watched) = package.watches() {
            Some(Arc::new(self.watcher_list(resource, package, watched)))
        } else {
            let event = Registry::event_key(package);
            let mut rows: Vec<Publication> = match self.store.publications_of(&event, resource) {
                Ok(rows) => rows.into_iter().filter(|p| p.expires > now).collect(),
                Err(e) => {
                    warn!("store: {e}");
                    Vec::new()
                }
            };
            valid_until = rows.iter().map(|p| p.expires).min().unwrap_or(u64::MAX);
            let permanent = self.state_documents(resource, package);
            self.stats.aggregations += 1;
            if rows.is_empty() && permanent.is_empty() {
                package.empty_body(resource).map(Arc::new)
            } else {
                rows.sort_by_key(|p| std::cmp::Reverse(p.priority));
                let bodies: Vec<&[u8]> = rows
                    .iter()
                    .map(|p| p.body.as_slice())
                    .chain(permanent.iter().map(Vec::as_slice))
                    .collect();
                Some(Arc::new(package.aggregate(resource, &bodies)))
            }
        };
        let rules = self.rule_documents(resource, package);
        (Sources { state, rules }, valid_until)
    }

    /// The owner's documents that take part in the state (RFC 4827), valid ones only.
    fn state_documents(&self, resource: &str, package: &dyn EventPackage) -> Vec<Vec<u8>> {
        let (Some(doc_type), Some((user, domain))) =
            (package.state_documents(), split_aor(resource))
        else {
            return Vec::new();
        };
        match self.store.xcap_for_user(user, domain, Some(doc_type)) {
            Ok(docs) => docs
                .into_iter()
                .filter(|d| package.validate(&d.doc).is_ok())
                .map(|d| d.doc)
                .collect(),
            Err(e) => {
                warn!("store: {e}");
                Vec::new()
            }
        }
    }

    /// The owner's rules documents for `package`, or `None` when every watcher is let
    /// in (force_active, or a package without authorization).
    fn rule_documents(
        &mut self,
        resource: &str,
        package: &dyn EventPackage,
    ) -> Option<Arc<Vec<Vec<u8>>>> {
        if self.config.force_active {
            return None;
        }
        let auth = package.authorization()?;
        let mut documents = Vec::new();
        if let Some((user, domain)) = split_aor(resource) {
            match self
                .store
                .xcap_for_user(user, domain, Some(auth.rules_document()))
            {
                Ok(docs) => documents = docs.into_iter().map(|d| d.doc).collect(),
                Err(e) => warn!("store: {e}"),
            }
        }
        if documents.is_empty() {
            self.missing_rules(resource);
        }
        Some(Arc::new(documents))
    }

    /// A resource whose owner has no rules document: ask for it where rules live on
    /// external XCAP servers.
    fn missing_rules(&mut self, resource: &str) {
        if self.config.fetch_rules
            && let Some((user, domain)) = split_aor(resource)
        {
            self.ask_fetch(user, domain);
        }
    }

    /// Asks once per housekeeping period for a user's documents.
    fn ask_fetch(&mut self, user: &str, domain: &str) {
        let key = (user.to_owned(), domain.to_owned());
        if self.fetch_asked.insert(key) {
            self.actions.push_back(Action::FetchDocuments {
                user: user.to_owned(),
                domain: domain.to_owned(),
            });
        }
    }

    /// The state of `resource` and its owner's rules, for one change.
    pub(super) fn change(
        &mut self,
        resource: &str,
        package: &dyn EventPackage,
        now: u64,
    ) -> Change {
        if let Some(list) = package.as_list() {
            return self.list_change(resource, list, now);
        }
        let Sources { state, rules } = self.sources(resource, package, now);
        let rules = rules.and_then(|docs| {
            let refs: Vec<&[u8]> = docs.iter().map(Vec::as_slice).collect();
            let state = state.as_deref().map(|b| b.as_slice());
            Some(package.authorization()?.compile(&refs, state))
        });
        Change {
            state,
            rules,
            views: HashMap::new(),
        }
    }

    /// The current body one subscription should get (for a NOTIFY that must carry the
    /// full state).
    pub(super) fn body_for(&mut self, sub: &Subscription, now: u64) -> Body {
        if sub.status() != Status::Active {
            return Body::None;
        }
        let package = sub.package().clone();
        let mut change = self.change(sub.resource(), package.as_ref(), now);
        let decision = change.decide(sub.watcher(), now);
        Body::full(change.body(decision.view, sub.resource()))
    }

    /// Re-evaluates every subscription to `resource`'s `package` and NOTIFYs: active
    /// ones get the current state as their rules let them see it, pending ones that are
    /// now allowed get their first full state, blocked ones end with `rejected`.
    pub(super) fn fan_out(&mut self, resource: &str, package: &dyn EventPackage, now: u64) {
        let event = Registry::event_key(package);
        let rows = match self.store.subscriptions_to(resource, &event) {
            Ok(rows) => rows,
            Err(e) => {
                warn!("store: {e}");
                return;
            }
        };
        let lists = self.lists_naming(resource, package);
        if !lists.is_empty() {
            self.note_list_change(&lists, resource, package);
        }
        // Nobody to tell: the aggregate would be built for nothing (the common case for
        // a device publishing before anyone watches it).
        if rows.iter().all(|d| d.expires <= now) {
            return;
        }
        let mut change = self.change(resource, package, now);
        for row in rows {
            if row.expires <= now {
                continue;
            }
            let Some(sub) = self.take_subscription(row) else {
                continue;
            };
            let decision = change.decide(sub.watcher(), now);
            self.apply(sub, decision, &mut change, false, now);
        }
        if change.views.len() > 1 {
            debug!("{resource}: {} distinct views", change.views.len());
        }
    }

    /// Puts one subscription in the state `decision` gives and sends what that calls
    /// for. `always_notify`: a SUBSCRIBE refresh, which gets a NOTIFY even when pending.
    pub(super) fn apply(
        &mut self,
        mut sub: Subscription,
        decision: Decision,
        change: &mut Change,
        always_notify: bool,
        now: u64,
    ) {
        let status = match decision.handling {
            // RFC 5025 §3.2.1 block: the subscription ends, RFC 6665 §4.2.2 reason
            // rejected.
            Handling::Block => return self.end(sub, Reason::Rejected, Body::None, now),
            Handling::Allow => Status::Active,
            Handling::Confirm => Status::Pending,
        };
        if sub.set_status(status) {
            if let Err(e) = self.store.put_subscription(sub.row()) {
                warn!("store: {e}");
            }
            let reason = match status {
                Status::Active => Reason::Approved,
                _ => Reason::Subscribe,
            };
            self.set_watcher_status(&sub, status, reason, now);
        } else if status != Status::Active && !always_notify {
            return self.keep(sub);
        }
        let body = match status {
            Status::Active => Body::full(change.body(decision.view, sub.resource())),
            _ => Body::None,
        };
        if sub.notify(body) {
            self.stats.notifies_coalesced += 1;
        }
        self.pump(sub, now);
    }

    /// OpenSIPS `refreshWatchers <presentity_uri> <event>`: re-reads the resource's
    /// rules and state and updates its watchers at once. Returns how many NOTIFYs that
    /// queued, or `None` for an event no package serves.
    pub fn refresh_watchers(&mut self, resource: &str, event: &str, now: u64) -> Option<usize> {
        let package = Event::parse(event)
            .ok()
            .and_then(|e| self.packages.find(&e).cloned())?;
        let before = self.actions.len();
        self.fan_out(resource, package.as_ref(), now);
        Some(self.notifies_since(before))
    }

    /// An XCAP document of `username@domain` was written, replaced or removed: the
    /// packages whose rules or state it holds re-evaluate that user's watchers. Returns
    /// how many NOTIFYs that queued.
    pub fn xcap_changed(&mut self, username: &str, domain: &str, doc_type: u8, now: u64) -> usize {
        let resource = format!("sip:{username}@{domain}");
        let affected: Vec<Arc<dyn EventPackage>> = self
            .packages
            .iter()
            .filter(|p| {
                p.state_documents() == Some(doc_type)
                    || p.authorization()
                        .is_some_and(|a| a.rules_document() == doc_type)
            })
            .cloned()
            .collect();
        let before = self.actions.len();
        for package in affected {
            self.fan_out(&resource, package.as_ref(), now);
        }
        if doc_type == crate::store::xcap::doc_type::RLS_SERVICES
            || doc_type == crate::store::xcap::doc_type::RESOURCE_LISTS
        {
            self.lists_changed(now);
        }
        self.notifies_since(before)
    }

    fn notifies_since(&self, before: usize) -> usize {
        self.actions
            .iter()
            .skip(before)
            .filter(|a| matches!(a, Action::Notify { .. }))
            .count()
    }

    /// The full list of `watched`'s watchers of `resource`, as `package` writes it.
    /// Terminated rows are history, not watchers, so they are left out.
    pub(super) fn watcher_list(
        &self,
        resource: &str,
        package: &dyn EventPackage,
        watched: &str,
    ) -> Vec<u8> {
        let rows: Vec<Watcher> = match self.store.watchers_for(resource, watched) {
            Ok(rows) => rows
                .into_iter()
                .filter(|w| !matches!(Status::from_code(w.status, None), Status::Terminated(_)))
                .collect(),
            Err(e) => {
                warn!("store: {e}");
                Vec::new()
            }
        };
        package.watcher_document(resource, &rows, true)
    }
}
