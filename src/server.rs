//! The whole SIP server as one sans-I/O state machine: endpoint (transactions), dispatcher
//! (server-wide policy) and presence engine wired together. Bytes, time and transport
//! failures go in; datagrams and stream writes come out through `poll_transmit`. The
//! daemon only moves bytes between this and the sockets, and benchmarks and tests can
//! drive the complete server without any socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, SyncMode};
use crate::dispatch::{Dispatcher, Route};
use crate::events::package::{EventPackage, Registry};
use crate::presence::{Engine, EngineConfig, Outgoing};
use crate::sip::endpoint::{
    ClientTxId, Endpoint, EndpointConfig, Output, Peer, Source, TransportKind, random_token,
};
use crate::sip::message::{Method, Response};
use crate::sip::transaction::TimerConfig;
use crate::store::Store;

/// Bytes for the transport.
#[derive(Debug)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Vec<u8>,
    /// The client transaction to blame if delivery fails.
    pub tx: Option<ClientTxId>,
}

/// Endpoint + dispatcher + engine.
pub struct Server {
    endpoint: Endpoint,
    dispatcher: Dispatcher,
    engine: Engine,
    transmits: VecDeque<Transmit>,
    draining: bool,
}

impl Server {
    pub fn new(endpoint: Endpoint, dispatcher: Dispatcher, engine: Engine) -> Server {
        Server {
            endpoint,
            dispatcher,
            engine,
            transmits: VecDeque::new(),
            draining: false,
        }
    }

    /// Builds the server a configuration describes, for sockets bound at `addrs`, with
    /// `extra` event packages registered after the built-in ones.
    pub fn from_config(
        config: &Config,
        store: Store,
        addrs: &[(TransportKind, SocketAddr)],
        extra: Vec<Arc<dyn EventPackage>>,
    ) -> Server {
        let sent_by = |kind| {
            addrs
                .iter()
                .find(|(k, _)| *k == kind)
                .or(addrs.first())
                .map(|(_, a)| a.to_string())
                .unwrap_or_default()
        };
        let endpoint = Endpoint::new(EndpointConfig {
            timers: TimerConfig {
                t1: Duration::from_millis(config.timer_t1_ms),
                t2: Duration::from_millis(config.timer_t2_ms),
                t4: Duration::from_millis(config.timer_t4_ms),
            },
            max_message_size: config.max_message_size,
            sent_by_udp: sent_by(TransportKind::Udp),
            sent_by_tcp: sent_by(TransportKind::Tcp),
        });
        let local_hosts = addrs.iter().map(|(_, a)| a.ip().to_string()).collect();
        let mut packages = registry(config);
        for p in extra {
            packages.register(p);
        }
        let dispatcher = Dispatcher::new(&config.domains, local_hosts).with_engine(
            vec![Method::Publish, Method::Subscribe],
            packages.allow_events(),
            packages.publish_types(),
        );
        let engine = Engine::new(store, packages, engine_config(config));
        Server::new(endpoint, dispatcher, engine)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// For engine work that sends nothing (e.g. collecting fetch requests).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Runs `f` on the engine (a control command, a rules change) and sends the NOTIFYs
    /// it returns.
    pub fn with_engine(
        &mut self,
        now: Instant,
        unix: u64,
        f: impl FnOnce(&mut Engine) -> Vec<Outgoing>,
    ) {
        let notifies = f(&mut self.engine);
        self.send_notifies(notifies, now);
        self.process(now, unix);
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// From now on new requests get 503; in-flight transactions finish.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// A datagram or framed stream message. `unix` is wall-clock seconds for expiry.
    pub fn handle_incoming(&mut self, bytes: &[u8], source: Source, now: Instant, unix: u64) {
        self.endpoint.handle_incoming(bytes, source, now);
        self.process(now, unix);
    }

    /// Fires due transaction timers.
    pub fn handle_timeout(&mut self, now: Instant, unix: u64) {
        self.endpoint.handle_timeout(now);
        self.process(now, unix);
    }

    /// The transport could not deliver a client transaction's request.
    pub fn transport_error(&mut self, tx: ClientTxId, now: Instant, unix: u64) {
        self.endpoint.transport_error(tx, now);
        self.process(now, unix);
    }

    /// One clean_period sweep.
    pub fn sweep(&mut self, now: Instant, unix: u64) {
        let notifies = self.engine.sweep(unix);
        self.send_notifies(notifies, now);
        self.process(now, unix);
    }

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    /// Work a graceful shutdown waits for.
    pub fn in_flight(&self) -> usize {
        self.endpoint.in_flight()
    }

    /// Runs the endpoint's outputs through the dispatcher and engine until quiet.
    fn process(&mut self, now: Instant, unix: u64) {
        while let Some(out) = self.endpoint.poll_output() {
            match out {
                Output::Transmit { to, bytes, tx } => {
                    self.transmits.push_back(Transmit { to, bytes, tx })
                }
                Output::Request {
                    id,
                    request,
                    source,
                } => {
                    let (mut response, notifies) = if self.draining {
                        let mut r = Response::for_request(&request, 503, Some("Shutting Down"));
                        r.headers.push("Retry-After", "5");
                        (r, Vec::new())
                    } else {
                        match self.dispatcher.route(&request) {
                            Route::Respond(r) => (r, Vec::new()),
                            Route::Engine => {
                                let outcome = self.engine.handle_request(&request, &source, unix);
                                (outcome.response, outcome.notifies)
                            }
                        }
                    };
                    if response.status > 100 {
                        response.set_to_tag(&random_token(10));
                    }
                    self.endpoint.respond(id, response, now);
                    // NOTIFYs leave after the response that created their dialog.
                    self.send_notifies(notifies, now);
                }
                Output::ClientResult { id, result } => {
                    let next = self.engine.notify_finished(id, &result, unix);
                    self.send_notifies(next, now);
                }
            }
        }
    }

    fn send_notifies(&mut self, notifies: Vec<Outgoing>, now: Instant) {
        for n in notifies {
            let tx = self.endpoint.send_request(n.request, n.to, now);
            self.engine.notify_started(tx, n.dialog);
        }
    }
}

/// The event packages this server offers, in Allow-Events order.
fn registry(config: &Config) -> Registry {
    use crate::events::{dialog::DialogInfo, mwi::MessageSummary, presence::Presence};
    let mut r = Registry::new();
    r.register(Arc::new(Presence {
        closed_when_empty: config.notify_closed_when_empty,
        needs_authorization: true,
    }));
    r.register(Arc::new(MessageSummary {
        owner_only: config.mwi_owner_only,
    }));
    r.register(Arc::new(DialogInfo { sla: false }));
    r.register(Arc::new(DialogInfo { sla: true }));
    r.register(Arc::new(crate::events::winfo::PresenceWinfo));
    r
}

fn engine_config(c: &Config) -> EngineConfig {
    EngineConfig {
        min_expires: c.min_expires,
        max_expires: c.max_expires,
        expires_offset: c.expires_offset,
        to_tag_pref: c.to_tag_pref.clone(),
        server_address: c.server_address.clone(),
        force_active: c.force_active,
        end_sub_on_timeout: c.end_sub_on_timeout,
        replace_stale_subscriptions: c.replace_stale_subscriptions,
        max_body_size: c.max_body_size,
        sync_always: c.sync == SyncMode::Always,
        pidf_manipulation: c.pidf_manipulation,
        fetch_rules: !c.integrated_xcap_server,
        watchers_retention: (c.watchers_retention_days > 0)
            .then(|| c.watchers_retention_days.saturating_mul(86_400)),
    }
}
