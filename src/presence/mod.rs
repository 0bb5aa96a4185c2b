//! The engine: the transaction user for PUBLISH (RFC 3903) and SUBSCRIBE / NOTIFY
//! (RFC 6665), independent of any one event package — everything that differs between
//! events is asked of the package (`events::package`).
//!
//! Sans-I/O and polled, like the SIP endpoint: requests, NOTIFY outcomes and time
//! (`now`, Unix seconds) go in; the answer to a request comes back at once, and
//! everything else the engine wants done leaves through [`Engine::poll_action`], the
//! one output path. [`Engine::poll_timeout`] names the next deadline: an expiry, the
//! housekeeping period, a retry. It reads and writes the store, whose writes land in
//! memory and reach the disk off the core loop.
//!
//! Subscriptions ([`subscription::Subscription`]) live in their rows; one is held in
//! memory ("resident") only while it has something its row does not: a NOTIFY in flight
//! or waiting, counters ahead of the row, a connection to reuse. It leaves memory as
//! soon as it has none of those, or at the next idle check.
//!
//! It runs on the daemon's single core loop, so the publications of one resource are
//! handled strictly one after another.

mod expiry;
mod lists;
mod manage;
mod message;
mod publish;
mod restore;
mod state;
mod subscribe;
mod subscription;
mod watchers;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use log::{error, warn};

use crate::auth::Identity;
use crate::events::package::{EventPackage, Registry};
use crate::sip::dialog::DialogId;
use crate::sip::endpoint::{ClientResult, ConnId, Peer, Source};
use crate::sip::message::{Method, Request, Response};
use crate::store::Store;

use lists::fit_datagram;
pub use manage::{Cleaned, Terminated};
use subscription::{Body, Delivery, Next, Subscription};
pub use subscription::{Reason, Status};

/// Engine settings (a view of `Config`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    /// Expires of a PUBLISH or SUBSCRIBE that carries none.
    pub default_expires: u32,
    pub expires_offset: u32,
    pub to_tag_pref: String,
    /// Contact for 200 responses and NOTIFYs; `None` uses the receiving socket.
    pub server_address: Option<String>,
    pub force_active: bool,
    pub end_sub_on_timeout: bool,
    pub replace_stale_subscriptions: bool,
    pub max_body_size: usize,
    /// `max_body_size` for the events listed (by event key).
    pub max_body_size_per_event: std::collections::BTreeMap<String, usize>,
    /// Live publications one presentity may have per event (new ones past it: 403).
    pub max_publications_per_presentity: usize,
    /// Dialogs one presentity may have per event (new ones past it: 403).
    pub max_subscriptions_per_presentity: u64,
    /// Dialogs one watcher identity may hold in all (new ones past it: 403).
    pub max_subscriptions_per_watcher: u64,
    /// Bytes the bodies of one presentity's live publications of an event may add up
    /// to (a PUBLISH past it: 413), which bounds the aggregated document.
    pub max_aggregate_size: usize,
    /// Rules documents live on external XCAP servers: ask for missing ones with
    /// [`Action::FetchDocuments`].
    pub fetch_rules: bool,
    /// Serve list subscriptions (RFC 4662) to the services of rls-services documents.
    pub rls: bool,
    /// Accept request-contained lists (RFC 5367).
    pub request_lists: bool,
    /// Seconds that pending, waiting and terminated watchers rows are kept; `None`
    /// keeps them for ever.
    pub watchers_retention: Option<u64>,
    /// Seconds between housekeeping rounds (OpenSIPS `clean_period`).
    pub clean_period: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            min_expires: 0,
            max_expires: 3600,
            default_expires: 3600,
            expires_offset: 0,
            to_tag_pref: "10".into(),
            server_address: None,
            force_active: true,
            end_sub_on_timeout: true,
            replace_stale_subscriptions: true,
            max_body_size: 32 * 1024,
            max_body_size_per_event: Default::default(),
            max_publications_per_presentity: 32,
            max_subscriptions_per_presentity: 1000,
            max_subscriptions_per_watcher: 1000,
            max_aggregate_size: 60_000,
            fetch_rules: false,
            rls: false,
            request_lists: false,
            watchers_retention: Some(3 * 86_400),
            clean_period: 100,
        }
    }
}

/// Something the engine wants done, from [`Engine::poll_action`].
// NOTIFY is the common, large variant: boxing it would cost an allocation per NOTIFY.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Action {
    /// Send `request` (a NOTIFY, or a back-end SUBSCRIBE of a list) as a client
    /// transaction; its outcome goes back through [`Engine::handle_notify_result`] with
    /// `dialog` (`None`: a fetch's lone NOTIFY).
    Notify {
        dialog: Option<DialogId>,
        request: Request,
        to: Peer,
        /// The store write that reserved its CSeq and version: it may leave only once
        /// that write is durable (0: nothing to wait for).
        after_write: u64,
    },
    /// `user@domain`'s rules documents were needed and are not stored: fetch them.
    FetchDocuments { user: String, domain: String },
}

/// Counters for status and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub publishes: u64,
    pub subscribes: u64,
    pub notifies_sent: u64,
    pub notify_failures: u64,
    pub aggregations: u64,
    /// Changes folded into a NOTIFY already waiting (one NOTIFY instead of several).
    pub notifies_coalesced: u64,
}

/// Seconds between checks for resident subscriptions that can leave memory.
const IDLE_CHECK: u64 = 10;
/// Seconds before a NOTIFY whose counters could not be reserved is tried again.
const RETRY: u64 = 1;

/// The engine.
pub struct Engine {
    store: Store,
    packages: Registry,
    config: EngineConfig,
    /// Subscriptions with state their row does not hold (see the module doc).
    resident: HashMap<DialogId, Subscription>,
    /// The output path.
    actions: VecDeque<Action>,
    /// No row expires before this (a hint: it may be early, never late).
    next_expiry: Option<u64>,
    next_housekeeping: u64,
    next_idle_check: u64,
    /// Subscriptions whose waiting NOTIFY could not reserve its counters, and when to
    /// try again.
    stalled: BTreeSet<DialogId>,
    retry_at: Option<u64>,
    /// Users whose documents were asked for since the last housekeeping round.
    fetch_asked: HashSet<(String, String)>,
    /// Resources' state and rules sources by event key, then resource (see
    /// `Engine::sources`), and how many there are.
    sources: HashMap<String, HashMap<String, state::Cached>>,
    sources_cached: usize,
    lists: lists::ListState,
    /// Back-end dialogs for list members served elsewhere.
    backends: crate::rls::backend::Backends,
    stats: EngineStats,
}

impl Engine {
    pub fn new(store: Store, packages: Registry, config: EngineConfig) -> Engine {
        let next_expiry = match store.next_expiry() {
            Ok(t) => t,
            Err(e) => {
                warn!("store: {e}");
                Some(0)
            }
        };
        Engine {
            store,
            packages,
            config,
            resident: HashMap::new(),
            actions: VecDeque::new(),
            next_expiry,
            next_housekeeping: 0,
            next_idle_check: 0,
            stalled: BTreeSet::new(),
            retry_at: None,
            fetch_asked: HashSet::new(),
            sources: HashMap::new(),
            sources_cached: 0,
            lists: lists::ListState::default(),
            backends: crate::rls::backend::Backends::default(),
            stats: EngineStats::default(),
        }
    }

    pub fn packages(&self) -> &Registry {
        &self.packages
    }

    /// Replaces the limits and policies (a configuration reload). What is stored stays
    /// as it is: a shorter `max_expires` applies to the next refresh, a lower cap to the
    /// next new dialog.
    pub fn set_config(&mut self, config: EngineConfig) {
        self.config = config;
        // force_active decides whether rules are read at all.
        self.sources.clear();
        self.sources_cached = 0;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Subscriptions held in memory now (see the module doc); 0 when nothing is in
    /// flight, waiting or bound to a connection.
    pub fn resident_subscriptions(&self) -> usize {
        self.resident.len()
    }

    /// The next thing to do, in the order the engine decided it.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest Unix second at which [`Engine::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let idle = (!self.resident.is_empty()).then_some(self.next_idle_check);
        [
            self.next_expiry,
            Some(self.next_housekeeping),
            idle,
            self.retry_at,
            self.backends.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles a PUBLISH or SUBSCRIBE that passed the dispatcher's checks; returns its
    /// answer. NOTIFYs it causes follow through [`Engine::poll_action`].
    /// The watcher of a SUBSCRIBE is its From AOR (no authentication: `auth = "none"`).
    pub fn handle_request(&mut self, req: &Request, source: &Source, now: u64) -> Response {
        let Ok(from) = req.headers.from() else {
            return Response::for_request(req, 400, None);
        };
        let identity = Identity {
            aor: match from.uri.as_sip() {
                Some(u) => u.aor(),
                None => from.uri.to_string(),
            },
            authenticated: false,
            delegate: true,
        };
        self.handle_request_as(req, source, &identity, now)
    }

    /// Like [`Engine::handle_request`], for a request whose sender `auth` identified:
    /// the identity is the watcher, not the From header. (Whether it may publish for
    /// the Request-URI was decided before.)
    pub fn handle_request_as(
        &mut self,
        req: &Request,
        source: &Source,
        identity: &Identity,
        now: u64,
    ) -> Response {
        match req.method {
            Method::Publish => self.publish(req, now),
            Method::Message => self.authorize_message(req, identity, now),
            Method::Notify => self.backend_notify(req, now),
            _ => self.subscribe(req, source, identity, now),
        }
    }

    /// A NOTIFY's (or a back-end SUBSCRIBE's) client transaction ended.
    pub fn handle_notify_result(&mut self, dialog: &DialogId, result: &ClientResult, now: u64) {
        if self.backends.owns(dialog) {
            return self.backend_result(dialog, result, now);
        }
        if !matches!(result, ClientResult::Response(r) if (200..300).contains(&r.status)) {
            self.stats.notify_failures += 1;
            log::debug!("NOTIFY in dialog {} ended with {result:?}", dialog.call_id);
        }
        let Some(mut sub) = self.resident.remove(dialog) else {
            return;
        };
        match sub.delivered(result, self.config.end_sub_on_timeout) {
            Delivery::Ended => {
                if !sub.is_terminated() {
                    log::info!(
                        "subscription of {} to {} ({}) ends: its NOTIFY {}",
                        sub.watcher(),
                        sub.resource(),
                        sub.event(),
                        match result {
                            ClientResult::Response(r) => format!("was answered {}", r.status),
                            ClientResult::Timeout => "timed out".to_owned(),
                            ClientResult::TransportError => "could not be sent".to_owned(),
                        }
                    );
                    self.forget(&sub, Reason::Deactivated, now);
                }
            }
            Delivery::Delivered | Delivery::Failed => self.pump(sub, now),
        }
    }

    /// A connection is gone: the subscriptions that could only be reached through it
    /// end (no final NOTIFY can reach them; their watchers rows say deactivated and
    /// watcher-info subscribers are told). Those refreshed over another connection since
    /// are not on it any more and stay. Returns how many ended.
    pub fn connection_closed(&mut self, conn: ConnId, now: u64) -> usize {
        let gone: Vec<DialogId> = self
            .resident
            .iter()
            .filter(|(_, sub)| sub.conn() == Some(conn) && sub.connection_bound())
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            let Some(sub) = self.resident.remove(id) else {
                continue;
            };
            self.stalled.remove(id);
            if !sub.is_terminated() {
                log::info!(
                    "subscription of {} to {} ({}) ends: its connection closed",
                    sub.watcher(),
                    sub.resource(),
                    sub.event(),
                );
                self.forget(&sub, Reason::Deactivated, now);
            }
        }
        gone.len()
    }

    /// Does what is due at `now`: expiries, retries, housekeeping.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.next_expiry.is_some_and(|t| t <= now) {
            self.expire(now);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            for id in std::mem::take(&mut self.stalled) {
                if let Some(sub) = self.resident.remove(&id) {
                    self.pump(sub, now);
                }
            }
        }
        if self.next_idle_check <= now {
            self.idle_check();
            self.next_idle_check = now + IDLE_CHECK;
        }
        if self.next_housekeeping <= now {
            self.housekeeping(now);
            self.next_housekeeping = now + self.config.clean_period.max(1);
        }
        if self.backends.poll_timeout().is_some_and(|t| t <= now) {
            self.backends_due(now);
        }
    }

    /// Writes the exact counters of every resident subscription into its row (at
    /// shutdown), so a clean restart continues without a jump.
    pub fn settle_all(&mut self) {
        for sub in self.resident.values_mut() {
            if !sub.is_exact() && !sub.is_terminated() {
                sub.settle();
                if let Err(e) = self.store.put_subscription(sub.row()) {
                    warn!("store: {e}");
                }
            }
        }
    }

    /// No row expires before `at` any more than it did: keep the earliest deadline.
    fn expiry_at(&mut self, at: u64) {
        self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
    }

    /// The package a stored Event value names.
    fn package_for_key(&self, event: &str) -> Option<Arc<dyn EventPackage>> {
        self.packages.by_key(event).cloned()
    }

    /// The subscription of `row`: the resident one (which is newer than its row) taken
    /// out of memory, or one read from the row. `None` for an unknown event.
    fn take_subscription(&mut self, row: crate::store::SubscriptionRow) -> Option<Subscription> {
        let id = subscription::id_of(&row);
        if let Some(sub) = self.resident.remove(&id) {
            return Some(sub);
        }
        let package = self.package_of_row(&row)?;
        Some(Subscription::from_row(row, package))
    }

    /// Sends the subscription's waiting NOTIFY if nothing is in flight, then keeps it in
    /// memory or lets it go.
    fn pump(&mut self, mut sub: Subscription, now: u64) {
        let Some(next) = sub.next_to_send() else {
            return self.keep(sub);
        };
        let body = match next {
            Next::Send(body) => body,
            Next::FullState => self.body_for(&sub, now),
        };
        let (body, rest) = fit_datagram(&sub, body);
        // A terminated subscription's row is gone: nothing to reserve.
        if !sub.is_terminated()
            && let Some(reservation) = sub.reservation_needed()
        {
            let row = sub.row_reserving(reservation);
            if let Err(e) = self.store.put_subscription(&row) {
                // Never send a CSeq the disk has not reserved (RFC 3261 §12.2.2 across
                // a crash): the NOTIFY waits and is tried again.
                error!(
                    "store: cannot reserve NOTIFY counters of {}: {e}",
                    sub.id().call_id
                );
                if !sub.next_is_reserved() {
                    self.stall(sub, now);
                    return;
                }
            } else {
                sub.reserved(reservation, self.store.write_seq());
            }
        }
        let id = sub.id().clone();
        match sub.send(body, now) {
            Some((request, to, after_write)) => {
                sub.send_pieces_after(rest);
                self.stats.notifies_sent += 1;
                self.actions.push_back(Action::Notify {
                    dialog: Some(id.clone()),
                    request,
                    to,
                    after_write,
                });
                self.resident.insert(id, sub);
            }
            None => {
                warn!("no usable target for dialog {}; ending it", id.call_id);
                if !sub.is_terminated() {
                    self.forget(&sub, Reason::Noresource, now);
                }
            }
        }
    }

    /// After a step: a subscription with nothing of its own in memory leaves (its row
    /// is current); a terminated one with nothing left to send is dropped.
    fn keep(&mut self, sub: Subscription) {
        let done =
            sub.is_quiet() && (sub.is_terminated() || (sub.conn().is_none() && sub.is_exact()));
        if !done {
            self.resident.insert(sub.id().clone(), sub);
        }
    }

    fn stall(&mut self, sub: Subscription, now: u64) {
        self.stalled.insert(sub.id().clone());
        self.resident.insert(sub.id().clone(), sub);
        let at = now + RETRY;
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    /// Ends a subscription: its row leaves the store now and a final NOTIFY with
    /// `Subscription-State: terminated;reason=…` and `body` follows any NOTIFY in flight.
    fn end(&mut self, mut sub: Subscription, reason: Reason, body: Body, now: u64) {
        self.forget(&sub, reason, now);
        sub.terminate(reason, body);
        self.pump(sub, now);
    }

    /// Removes a subscription's row and records the end in its watchers row:
    /// terminated, or waiting when a subscription still pending consent timed out
    /// (RFC 3857 §3.3: the owner may still approve it). Template packages hear of it.
    fn forget(&mut self, sub: &Subscription, reason: Reason, now: u64) {
        let id = sub.id();
        if let Err(e) = self
            .store
            .delete_subscription(&id.call_id, &id.to_tag, &id.from_tag)
        {
            warn!("store: {e}");
        }
        let status = if sub.status() == Status::Pending && reason == Reason::Timeout {
            Status::Waiting
        } else {
            Status::Terminated(reason)
        };
        self.set_watcher_status(sub, status, reason, now);
        if sub.package().as_list().is_some() {
            self.drop_request_list(sub.resource(), sub.watcher());
            self.prune_backends(now);
        }
    }

    /// Subscriptions left idle since the last check leave memory, their exact counters
    /// written back; connection-bound ones stay.
    fn idle_check(&mut self) {
        let mut leaving = Vec::new();
        for (id, sub) in self.resident.iter_mut() {
            let busy = sub.take_busy();
            if busy || !sub.is_quiet() || self.stalled.contains(id) {
                continue;
            }
            if !sub.is_exact() && !sub.is_terminated() {
                sub.settle();
                if let Err(e) = self.store.put_subscription(sub.row()) {
                    warn!("store: {e}");
                    continue;
                }
            }
            if sub.conn().is_none() || sub.is_terminated() {
                leaving.push(id.clone());
            }
        }
        for id in leaving {
            self.resident.remove(&id);
        }
        crate::sip::endpoint::shrink_sparse(&mut self.resident);
    }

    /// The Contact we give out: server_address, or the socket the request came in on.
    fn local_contact(&self, source: &Source) -> String {
        match &self.config.server_address {
            Some(a) => format!("<{a}>"),
            None => {
                format!("<sip:{}{}>", source.local, source.peer.kind.uri_param())
            }
        }
    }

    /// The expiry a PUBLISH or SUBSCRIBE gets: its Expires (or `default_expires`)
    /// within the configured range and the package's own cap. `Err` is the answer to
    /// send instead: 400 for a malformed Expires, 423 with Min-Expires for a short one.
    fn expires_for(&self, req: &Request, package: &dyn EventPackage) -> Result<u32, Response> {
        let Ok(requested) = req.headers.expires() else {
            return Err(Response::for_request(
                req,
                400,
                Some("Bad Request - malformed Expires"),
            ));
        };
        let e = requested.unwrap_or(self.config.default_expires);
        // RFC 3903 §6 step 5, RFC 6665 §4.2.1.1: too short → 423 with Min-Expires.
        if e != 0 && e < self.config.min_expires {
            let mut r = Response::for_request(req, 423, None);
            r.headers
                .push("Min-Expires", self.config.min_expires.to_string());
            return Err(r);
        }
        let max = package
            .max_expires()
            .map_or(self.config.max_expires, |m| m.min(self.config.max_expires));
        Ok(e.min(max))
    }
}

pub use message::message_allowed;

/// `sip:alice@example.com` → (`alice`, `example.com`), the xcap table's user key.
pub fn split_aor(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let (user, host) = rest.split_once('@')?;
    let host = host.split([';', '?', '>']).next().unwrap_or(host);
    (!user.is_empty() && !host.is_empty()).then_some((user, host))
}
