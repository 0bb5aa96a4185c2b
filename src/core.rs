//! The whole SIP server as one sans-I/O state machine: the endpoint (transactions), the
//! dispatcher (server-wide policy) and the engine, wired together. Bytes, time, transport
//! failures and finished flushes go in; bytes to send ([`Core::poll_transmit`]), flushes
//! to run ([`Core::poll_flush`]) and documents to fetch ([`Core::poll_fetch`]) come out,
//! and [`Core::poll_timeout`] says when to call again. The daemon moves bytes between
//! this and the sockets and runs flushes on another thread; benchmarks, tests and the
//! fuzzer drive the complete server without any socket.
//!
//! Durability: the store's writes land in memory and reach the disk when a flush runs,
//! off the core loop. What must not leave before its writes are on disk waits here, in
//! order, until the flush covering them is reported: with `sync = "always"` every answer
//! and NOTIFY that follows a write, in every mode a NOTIFY whose CSeq reservation was
//! just written. Other requests are served meanwhile, and one flush covers every write
//! made before it started (group commit).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{AuthConfig, Authenticator, Verdict};
use crate::config::{Config, SyncMode};
use crate::dispatch::{Dispatcher, Route};
use crate::events::package::{EventPackage, Registry};
use crate::presence::{Action, Engine, EngineConfig};
use crate::sip::dialog::DialogId;
use crate::sip::endpoint::{
    ClientTxId, ConnId, Endpoint, EndpointConfig, Event, Peer, ServerTxId, Source, Transmit,
    TransportKind, random_token,
};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::TimerConfig;
use crate::store::Store;

/// Pending writes beyond this many bytes ask for a flush at once.
const FLUSH_AT_BYTES: usize = 16 * 1024 * 1024;
/// Requests for the engine held while a restore commits; more get 503.
const PAUSED_MAX: usize = 4096;
/// Messages that waited longer than this in the inbound queue mean the core loop is
/// behind: new work is refused (503) until it catches up. Well below T1 (500 ms), so
/// clients do not start retransmitting what is already queued.
const SHED_AFTER: Duration = Duration::from_millis(100);

/// How the core flushes.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    /// `sync = "always"`: answers and NOTIFYs wait for their writes to be durable.
    pub sync_always: bool,
    /// Flush at least this often while there are writes (`sync_period_ms`).
    pub flush_period: Duration,
    /// How long list subscriptions gather member changes (`rls_batch_ms`).
    pub list_batch: Duration,
    /// How long after a connection closes the subscriptions bound to it end
    /// (`connection_grace_ms`).
    pub connection_grace: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            sync_always: false,
            flush_period: Duration::from_millis(500),
            list_batch: Duration::from_millis(200),
            connection_grace: Duration::from_secs(5),
        }
    }
}

/// What waits for a flush. Both variants are common: no box per held message.
#[allow(clippy::large_enum_variant)]
enum Held {
    Response {
        id: ServerTxId,
        response: Response,
    },
    Notify {
        dialog: Option<DialogId>,
        request: Request,
        to: Peer,
    },
}

/// Endpoint + dispatcher + engine.
pub struct Core {
    endpoint: Endpoint,
    dispatcher: Dispatcher,
    /// Who asks: every request for the engine passes here first.
    auth: Authenticator,
    engine: Engine,
    store: Store,
    config: CoreConfig,
    draining: bool,
    /// The last (monotonic, Unix seconds) pair seen, to place the engine's deadlines.
    clock: Option<(Instant, u64)>,
    /// Outputs waiting for the write they follow to be durable, with that write.
    held: VecDeque<(u64, Held)>,
    /// Every write up to this one is durable.
    flushed: u64,
    /// When the next periodic flush is due (`None`: at the first write).
    next_flush: Option<Instant>,
    /// A flush asked for by [`Core::poll_flush`] has not been reported yet.
    flushing: bool,
    /// After a failed flush, the next is not tried before this.
    retry_flush: Option<Instant>,
    /// Users whose documents the engine asked for.
    fetches: VecDeque<(String, String)>,
    /// While a restore commits, requests for the engine wait here.
    paused: Option<VecDeque<(ServerTxId, Request, Source)>>,
    /// The core loop is behind (see [`Core::queue_delay`]).
    overloaded: bool,
    /// New requests refused while overloaded.
    shed: u64,
    /// When the list changes gathered so far go out (see `Engine::send_list_changes`).
    list_batch_at: Option<Instant>,
    /// Closed connections whose bound subscriptions end at the given time, oldest first.
    closed_conns: VecDeque<(Instant, ConnId)>,
}

impl Core {
    pub fn new(
        endpoint: Endpoint,
        dispatcher: Dispatcher,
        engine: Engine,
        config: CoreConfig,
    ) -> Core {
        let store = engine.store().clone();
        let flushed = store.write_seq();
        Core {
            endpoint,
            dispatcher,
            auth: Authenticator::new(AuthConfig::default(), [0; 32]),
            engine,
            store,
            config,
            draining: false,
            clock: None,
            held: VecDeque::new(),
            flushed,
            next_flush: None,
            flushing: false,
            retry_flush: None,
            fetches: VecDeque::new(),
            paused: None,
            overloaded: false,
            shed: 0,
            list_batch_at: None,
            closed_conns: VecDeque::new(),
        }
    }

    /// Builds the server a configuration describes, for sockets bound at `addrs`, with
    /// `extra` event packages registered after the built-in ones.
    pub fn from_config(
        config: &Config,
        store: Store,
        addrs: &[(TransportKind, SocketAddr)],
        extra: Vec<Arc<dyn EventPackage>>,
    ) -> Core {
        let endpoint = Endpoint::new(EndpointConfig {
            timers: TimerConfig {
                t1: Duration::from_millis(config.timer_t1_ms),
                t2: Duration::from_millis(config.timer_t2_ms),
                t4: Duration::from_millis(config.timer_t4_ms),
            },
            max_message_size: config.max_message_size,
            // Each transport's first listener; one without a listener (TCP for an
            // over-size NOTIFY to a UDP subscriber) uses the first listener's.
            sent_by: TransportKind::ALL
                .into_iter()
                .filter_map(|kind| {
                    let (_, a) = addrs.iter().find(|(k, _)| *k == kind)?;
                    Some((kind, a.to_string()))
                })
                .collect(),
        });
        let local_hosts = addrs.iter().map(|(_, a)| a.ip().to_string()).collect();
        let mut packages = registry(config);
        for p in extra {
            packages.register(p);
        }
        for event in config.max_body_size_per_event.keys() {
            if packages.by_key(event).is_none() {
                log::warn!(
                    "max_body_size_per_event: no event package is called {event:?}; \
                     known: {}",
                    packages.allow_events().join(", ")
                );
            }
        }
        let mut methods = vec![Method::Publish, Method::Subscribe];
        if config.authorize_messages {
            methods.push(Method::Message);
        }
        // Back-end dialogs of lists: their NOTIFYs come to us.
        let backends = config.rls && !config.domains.is_empty();
        if backends {
            methods.push(Method::Notify);
        }
        let mut dispatcher = Dispatcher::new(&config.domains, local_hosts).with_engine(
            methods,
            packages.allow_events(),
            packages.publish_types(),
        );
        if config.rls && config.rls_request_lists {
            dispatcher = dispatcher.with_supported(crate::dispatch::RECIPIENT_LIST_SUBSCRIBE);
        }
        let auth = authenticator(config, &store);
        let mut engine = Engine::new(store, packages, engine_config(config));
        if backends {
            let (kind, local) = addrs
                .iter()
                .find(|(k, _)| *k == TransportKind::Udp)
                .or(addrs.first())
                .copied()
                .unwrap_or((TransportKind::Udp, SocketAddr::from(([127, 0, 0, 1], 5060))));
            let contact = match &config.server_address {
                Some(a) => format!("<{a}>"),
                None => format!("<sip:rls@{local}{}>", kind.uri_param()),
            };
            engine.set_backends(crate::rls::backend::BackendConfig {
                server: config
                    .rls_backend_server
                    .as_deref()
                    .and_then(|s| crate::rls::backend::parse_server(s).ok()),
                contact,
                expires: config.max_expires.min(3600),
                domains: config.domains.clone(),
            });
        }
        let core = CoreConfig {
            sync_always: config.sync == SyncMode::Always,
            flush_period: Duration::from_millis(config.sync_period_ms.max(1)),
            list_batch: Duration::from_millis(config.rls_batch_ms),
            connection_grace: Duration::from_millis(config.connection_grace_ms),
        };
        Core::new(endpoint, dispatcher, engine, core).with_auth(auth)
    }

    /// Replaces the authenticator (the default lets everyone in as their From AOR).
    pub fn with_auth(mut self, auth: Authenticator) -> Core {
        self.auth = auth;
        self
    }

    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// From now on new requests get 503; in-flight transactions finish.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Work a graceful shutdown waits for: unanswered requests, unanswered NOTIFYs, and
    /// what waits for a flush.
    pub fn in_flight(&self) -> usize {
        self.endpoint.in_flight() + self.held.len()
    }

    /// How long the message about to be handled waited between its socket and the core
    /// loop. Past [`SHED_AFTER`] new work is refused with 503 and Retry-After (RFC 3261
    /// §21.5.4) before any body is read, so the work already accepted finishes instead
    /// of everything slowing down; work under way (responses, in-dialog requests,
    /// refreshes) is always served.
    pub fn queue_delay(&mut self, waited: Duration) {
        self.overloaded = waited > SHED_AFTER;
    }

    /// New requests refused because the core loop was behind.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// A datagram or framed stream message. `unix` is wall-clock seconds for expiry.
    pub fn handle_incoming(&mut self, bytes: &[u8], source: Source, now: Instant, unix: u64) {
        self.clock = Some((now, unix));
        self.endpoint.handle_incoming(bytes, source, now);
        self.process(now, unix);
    }

    /// Fires what is due: transaction timers, the engine's deadlines, housekeeping.
    pub fn handle_timeout(&mut self, now: Instant, unix: u64) {
        self.clock = Some((now, unix));
        self.endpoint.handle_timeout(now);
        // A draining server finishes what is in flight and starts nothing new.
        let engine_due = self.engine.poll_timeout().is_some_and(|t| t <= unix);
        if engine_due && self.paused.is_none() && !self.draining {
            self.engine.handle_timeout(unix);
            self.drain_engine(now);
        }
        if self.list_batch_at.is_some_and(|t| t <= now) && self.paused.is_none() {
            self.list_batch_at = None;
            self.engine.send_list_changes(unix);
            self.drain_engine(now);
        }
        while self.paused.is_none()
            && let Some(&(at, conn)) = self.closed_conns.front()
            && at <= now
        {
            self.closed_conns.pop_front();
            self.engine.connection_closed(conn, unix);
            self.drain_engine(now);
        }
        self.process(now, unix);
    }

    /// A connection closed: the subscriptions that can only be reached through it end
    /// after `connection_grace` (unless refreshed over another connection by then).
    pub fn connection_closed(&mut self, conn: ConnId, now: Instant, unix: u64) {
        self.closed_conns
            .push_back((now + self.config.connection_grace, conn));
        self.handle_timeout(now, unix);
    }

    /// The transport could not deliver a client transaction's request.
    pub fn transport_error(&mut self, tx: ClientTxId, now: Instant, unix: u64) {
        self.clock = Some((now, unix));
        self.endpoint.transport_error(tx, now);
        self.process(now, unix);
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.endpoint.poll_transmit()
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at = self.endpoint.poll_timeout();
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a: Instant| a.min(t)));
        if let (Some((now, unix)), Some(deadline), None) =
            (self.clock, self.engine.poll_timeout(), &self.paused)
        {
            earliest(now + Duration::from_secs(deadline.saturating_sub(unix)));
        }
        if !self.flushing
            && self.store.write_seq() > self.flushed
            && let Some((now, _)) = self.clock
        {
            earliest(self.next_flush.unwrap_or(now));
        }
        if let Some(t) = self.list_batch_at {
            earliest(t);
        }
        if let Some(&(t, _)) = self.closed_conns.front() {
            earliest(t);
        }
        at
    }

    /// A flush to run now, if one is wanted and none is running: the write it covers
    /// (every write made so far). The caller runs [`Store::flush`] off the core loop
    /// and reports back with [`Core::flushed`] or [`Core::flush_failed`].
    pub fn poll_flush(&mut self, now: Instant) -> Option<u64> {
        let written = self.store.write_seq();
        if self.flushing || written <= self.flushed || self.retry_flush.is_some_and(|t| now < t) {
            return None;
        }
        let waiting = self
            .held
            .front()
            .is_some_and(|(seq, _)| *seq > self.flushed);
        let periodic = self.next_flush.is_none_or(|t| t <= now);
        let big = self.store.pending_bytes() > FLUSH_AT_BYTES;
        if !(waiting || periodic || big) {
            return None;
        }
        self.flushing = true;
        self.next_flush = Some(now + self.config.flush_period);
        Some(written)
    }

    /// A flush begun at write `seq` (from [`Core::poll_flush`]) finished: what waited
    /// for it leaves.
    pub fn flushed(&mut self, seq: u64, now: Instant, unix: u64) {
        self.clock = Some((now, unix));
        self.flushing = false;
        self.retry_flush = None;
        self.flushed = self.flushed.max(seq);
        while let Some((seq, _)) = self.held.front() {
            if *seq > self.flushed {
                break;
            }
            let Some((_, held)) = self.held.pop_front() else {
                break;
            };
            match held {
                Held::Response { id, response } => self.endpoint.respond(id, response, now),
                Held::Notify {
                    dialog,
                    request,
                    to,
                } => {
                    self.endpoint.send_request(request, to, dialog, now);
                }
            }
        }
        self.process(now, unix);
    }

    /// A flush failed: what waits for it keeps waiting, and the next one is tried after
    /// a period.
    pub fn flush_failed(&mut self, now: Instant) {
        self.flushing = false;
        let at = now + self.config.flush_period;
        self.next_flush = Some(at);
        self.retry_flush = Some(at);
    }

    /// A user whose documents the engine needs fetched.
    pub fn poll_fetch(&mut self) -> Option<(String, String)> {
        self.fetches.pop_front()
    }

    /// OpenSIPS refreshWatchers; `None` for an event no package serves.
    pub fn refresh_watchers(
        &mut self,
        resource: &str,
        event: &str,
        now: Instant,
        unix: u64,
    ) -> Option<usize> {
        let n = self.engine.refresh_watchers(resource, event, unix);
        self.drain_engine(now);
        self.process(now, unix);
        n
    }

    /// Runs a management operation (`presenced ctl`) on the engine, then sends what it
    /// caused; `None` while a restore holds the engine.
    pub fn manage<T>(
        &mut self,
        now: Instant,
        unix: u64,
        op: impl FnOnce(&mut Engine, u64) -> T,
    ) -> Option<T> {
        if self.paused.is_some() {
            return None;
        }
        let out = op(&mut self.engine, unix);
        self.drain_engine(now);
        self.process(now, unix);
        Some(out)
    }

    /// An XCAP document changed; returns how many NOTIFYs that caused.
    pub fn xcap_changed(
        &mut self,
        user: &str,
        domain: &str,
        doc_type: u8,
        now: Instant,
        unix: u64,
    ) -> usize {
        let n = self.engine.xcap_changed(user, domain, doc_type, unix);
        self.drain_engine(now);
        self.process(now, unix);
        n
    }

    /// A restore is about to change the store: requests for the engine wait (up to a
    /// bound; beyond it they get 503) and its deadlines stand still until
    /// [`Core::restored`].
    pub fn pause_engine(&mut self) {
        self.paused.get_or_insert_with(VecDeque::new);
    }

    /// The restore committed (or failed, `changed` false): the engine re-reads the
    /// store and notifies, then the requests that waited are handled in order.
    pub fn restored(&mut self, changed: bool, now: Instant, unix: u64) {
        self.clock = Some((now, unix));
        let waiting = self.paused.take().unwrap_or_default();
        if changed {
            self.engine.restored(unix);
            self.drain_engine(now);
        }
        for (id, request, source) in waiting {
            self.engine_request(id, request, source, now, unix);
        }
        self.process(now, unix);
    }

    /// Writes exact NOTIFY counters back into the rows (before a clean stop).
    pub fn settle(&mut self) {
        self.engine.settle_all();
    }

    /// Hands the endpoint's requests and results to the dispatcher and the engine until
    /// nothing is left. Whatever the engine asked for before (even before this core was
    /// built around it) is carried out first.
    fn process(&mut self, now: Instant, unix: u64) {
        self.drain_engine(now);
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::Request {
                    id,
                    request,
                    source,
                } => self.request(id, request, source, now, unix),
                Event::ClientResult {
                    dialog: Some(dialog),
                    result,
                    ..
                } => {
                    self.engine.handle_notify_result(&dialog, &result, unix);
                    self.drain_engine(now);
                }
                Event::ClientResult { dialog: None, .. } => {}
            }
        }
    }

    fn request(
        &mut self,
        id: ServerTxId,
        request: Request,
        source: Source,
        now: Instant,
        unix: u64,
    ) {
        if self.draining {
            let r = unavailable(&request, "Shutting Down", 5);
            return self.answer(id, r, false, now);
        }
        match self.dispatcher.route(&request) {
            Route::Respond(r) => self.answer(id, r, false, now),
            Route::Engine => match &mut self.paused {
                Some(queue) if queue.len() < PAUSED_MAX => queue.push_back((id, request, source)),
                Some(_) => self.answer(id, unavailable(&request, "Restoring", 1), false, now),
                None if self.overloaded && starts_new_work(&request) => {
                    self.shed += 1;
                    self.answer(id, unavailable(&request, "Overloaded", 1), false, now)
                }
                None => self.engine_request(id, request, source, now, unix),
            },
        }
    }

    fn engine_request(
        &mut self,
        id: ServerTxId,
        request: Request,
        source: Source,
        now: Instant,
        unix: u64,
    ) {
        // A NOTIFY can only be for one of our back-end dialogs: the dialog (Call-ID and
        // our unguessable tag) is what admits it, as for any UAC (RFC 6665 §4.1.3).
        if request.method == Method::Notify {
            let response = self.engine.backend_notify(&request, unix);
            self.answer(id, response, false, now);
            return self.drain_engine(now);
        }
        let identity = match self.auth.check(&request, &source, &self.store, unix) {
            Verdict::Pass(identity) => identity,
            Verdict::Refuse(r) => return self.answer(id, r, false, now),
        };
        // Only the presentity's owner publishes its state, or a configured delegate.
        if request.method == Method::Publish
            && let Some(presentity) = request.uri.as_sip().map(|u| u.aor())
            && !identity.may_publish_for(&presentity)
        {
            let r = Response::for_request(&request, 403, Some("Forbidden - not your presentity"));
            return self.answer(id, r, false, now);
        }
        let before = self.store.write_seq();
        let response = self
            .engine
            .handle_request_as(&request, &source, &identity, unix);
        let wrote = self.store.write_seq() != before;
        self.answer(id, response, wrote, now);
        // NOTIFYs leave after the response that created their dialog.
        self.drain_engine(now);
    }

    /// Sends an answer, or holds it until the writes it follows are durable.
    fn answer(&mut self, id: ServerTxId, mut response: Response, wrote: bool, now: Instant) {
        if response.status > 100 {
            response.set_to_tag(&random_token(10));
        }
        if self.config.sync_always && wrote {
            let seq = self.store.write_seq();
            self.held.push_back((seq, Held::Response { id, response }));
        } else {
            self.endpoint.respond(id, response, now);
        }
    }

    /// Carries out what the engine asked for.
    fn drain_engine(&mut self, now: Instant) {
        if self.list_batch_at.is_none() && self.engine.list_changes_waiting() {
            self.list_batch_at = Some(now + self.config.list_batch);
        }
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Notify {
                    dialog,
                    request,
                    to,
                    after_write,
                } => {
                    // With sync=always a NOTIFY shows state only once it is durable; in
                    // every mode its CSeq only once its reservation is.
                    let seq = match self.config.sync_always {
                        true => self.store.write_seq(),
                        false => after_write,
                    };
                    let must_wait = seq > self.flushed;
                    // With sync=always nothing overtakes what waits (its 200 first).
                    let behind = self.config.sync_always && !self.held.is_empty();
                    if must_wait || behind {
                        self.held.push_back((
                            seq,
                            Held::Notify {
                                dialog,
                                request,
                                to,
                            },
                        ));
                    } else {
                        self.endpoint.send_request(request, to, dialog, now);
                    }
                }
                Action::FetchDocuments { user, domain } => self.fetches.push_back((user, domain)),
            }
        }
    }
}

/// A request that would create state (a subscription, a publication) rather than
/// continue what exists.
fn starts_new_work(request: &Request) -> bool {
    match request.method {
        Method::Subscribe => request.headers.to().is_ok_and(|to| to.tag().is_none()),
        Method::Publish => request.headers.sip_if_match().is_none(),
        _ => false,
    }
}

/// RFC 3261 §21.5.4: not now, try again in `seconds`.
fn unavailable(request: &Request, why: &str, seconds: u32) -> Response {
    let mut r = Response::for_request(request, 503, Some(why));
    r.headers.push("Retry-After", seconds.to_string());
    r
}

/// The authenticator a configuration describes; its nonce key comes from the store.
pub(crate) fn authenticator(c: &Config, store: &Store) -> Authenticator {
    let mode = c.auth_mode();
    let secret = match mode {
        crate::auth::Mode::None => [0; 32],
        _ => store.auth_secret().unwrap_or_else(|e| {
            log::warn!("store: no stored nonce key ({e}); nonces will not survive a restart");
            let mut k = [0u8; 32];
            if getrandom::fill(&mut k).is_err() {
                k.iter_mut().for_each(|b| *b = fastrand::u8(..));
            }
            k
        }),
    };
    let config = AuthConfig {
        mode,
        realm: c.auth_realm.clone(),
        proxy_challenge: c.auth_as_proxy,
        algorithms: c.auth_algorithms.clone(),
        nonce_expire: c.nonce_expire,
        trusted: c.trusted_proxies.clone(),
        on_behalf: c.publish_on_behalf.clone(),
        domains: c.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
    };
    Authenticator::new(config, secret)
}

/// The event packages this server offers, in Allow-Events order.
fn registry(config: &Config) -> Registry {
    use crate::events::{dialog::DialogInfo, mwi::MessageSummary, presence::Presence};
    let mut r = Registry::new();
    r.register(Arc::new(Presence::new(
        config.notify_closed_when_empty,
        config.pidf_manipulation,
    )));
    r.register(Arc::new(MessageSummary {
        owner_only: config.mwi_owner_only,
    }));
    r.register(Arc::new(DialogInfo { sla: false }));
    r.register(Arc::new(DialogInfo { sla: true }));
    r.register(Arc::new(crate::events::winfo::PresenceWinfo));
    r
}

/// Settings a reload applies to the running server (they live in the engine's
/// configuration); a change of any other needs a restart.
pub const RELOADABLE_KEYS: &[&str] = &[
    "min_expires",
    "max_expires",
    "default_expires",
    "expires_offset",
    "to_tag_pref",
    "server_address",
    "force_active",
    "end_sub_on_timeout",
    "replace_stale_subscriptions",
    "max_body_size",
    "max_body_size_per_event",
    "max_publications_per_presentity",
    "max_subscriptions_per_presentity",
    "max_subscriptions_per_watcher",
    "max_aggregate_size",
    "watchers_retention_days",
    "clean_period",
    "connection_grace_ms",
    // Read again by the daemon on every reload, changed or not (a renewed certificate
    // keeps its file name).
    "tls_certificate",
    "tls_private_key",
    "tls_ca_list",
    "tls_verify_client",
];

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Settings that changed and are in effect now.
    pub applied: Vec<&'static str>,
    /// Settings that differ from the running server's and take effect at the next start.
    pub restart_needed: Vec<&'static str>,
    /// What could not be applied, and why (the TLS files could not be read: the
    /// credentials in use stay).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl Core {
    /// Applies the reloadable settings of `new`. `started` is the configuration the
    /// server was started with, `current` the one in effect (the last reload's).
    pub fn reload(&mut self, started: &Config, current: &Config, new: &Config) -> Reloaded {
        let reloadable = |k: &&str| RELOADABLE_KEYS.contains(k);
        let applied: Vec<_> = current
            .changed_keys(new)
            .into_iter()
            .filter(reloadable)
            .collect();
        let restart_needed = started
            .changed_keys(new)
            .into_iter()
            .filter(|k| !reloadable(k))
            .collect();
        let mut engine = engine_config(new);
        // Whether rules are fetched follows `integrated_xcap_server`, a restart setting.
        engine.fetch_rules = !started.integrated_xcap_server;
        self.engine.set_config(engine);
        self.config.connection_grace = Duration::from_millis(new.connection_grace_ms);
        Reloaded {
            applied,
            restart_needed,
            failed: Vec::new(),
        }
    }
}

fn engine_config(c: &Config) -> EngineConfig {
    EngineConfig {
        min_expires: c.min_expires,
        max_expires: c.max_expires,
        default_expires: c.default_expires,
        expires_offset: c.expires_offset,
        to_tag_pref: c.to_tag_pref.clone(),
        server_address: c.server_address.clone(),
        force_active: c.force_active,
        end_sub_on_timeout: c.end_sub_on_timeout,
        replace_stale_subscriptions: c.replace_stale_subscriptions,
        max_body_size: c.max_body_size,
        max_body_size_per_event: c.max_body_size_per_event.clone(),
        max_publications_per_presentity: c.max_publications_per_presentity,
        max_subscriptions_per_presentity: c.max_subscriptions_per_presentity,
        max_subscriptions_per_watcher: c.max_subscriptions_per_watcher,
        max_aggregate_size: c.max_aggregate_size,
        fetch_rules: !c.integrated_xcap_server,
        rls: c.rls,
        request_lists: c.rls && c.rls_request_lists,
        watchers_retention: (c.watchers_retention_days > 0)
            .then(|| c.watchers_retention_days.saturating_mul(86_400)),
        clean_period: c.clean_period.max(1),
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    #[test]
    fn reloadable_keys_are_settings_and_are_documented() {
        let every = Config::default().to_toml_string();
        let doc = include_str!("../docs/configuration.md");
        let reloading = doc
            .split("## Reloading")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap_or_default();
        for key in RELOADABLE_KEYS {
            assert!(every.contains(key), "{key} is no setting");
            assert!(
                reloading.contains(&format!("`{key}`")),
                "{key} undocumented"
            );
        }
    }
}
