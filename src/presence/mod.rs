//! The presence engine: the transaction user for PUBLISH (RFC 3903) and SUBSCRIBE /
//! NOTIFY (RFC 6665), independent of any one event package.
//!
//! Sans-I/O: it takes requests, NOTIFY outcomes and `now` (Unix seconds), reads and
//! writes the store, and returns responses and NOTIFY requests for the daemon to send.
//! It runs on the daemon's single core loop, so the publications of one presentity are
//! handled strictly one after another.

mod authz;
mod counters;
mod notify;
mod publish;
mod restore;
mod subscribe;
mod sweep;
mod watchers;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::events::package::{EventPackage, Registry};
use crate::sip::endpoint::{ClientTxId, ConnId, Peer, Source};
use crate::sip::message::{Request, Response};
use crate::store::Store;

pub use authz::split_aor;
pub use notify::DialogKey;

/// OpenSIPS status integers, kept in the store and in dumps.
pub mod status {
    pub const ACTIVE: u8 = 1;
    pub const PENDING: u8 = 2;
    pub const TERMINATED: u8 = 3;
    pub const WAITING: u8 = 4;
}

/// Engine settings (a view of `Config`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub expires_offset: u32,
    pub to_tag_pref: String,
    /// Contact for 200 responses and NOTIFYs; `None` uses the receiving socket.
    pub server_address: Option<String>,
    pub force_active: bool,
    pub end_sub_on_timeout: bool,
    pub replace_stale_subscriptions: bool,
    pub max_body_size: usize,
    /// Flush the store before a response leaves.
    pub sync_always: bool,
    /// Aggregate each user's pidf-manipulation document as a permanent publication
    /// (RFC 4827).
    pub pidf_manipulation: bool,
    /// pres-rules live on external XCAP servers: report missing ones through
    /// [`Engine::take_fetch_requests`].
    pub fetch_rules: bool,
    /// Seconds that pending, waiting and terminated watchers rows are kept; `None`
    /// keeps them for ever.
    pub watchers_retention: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            min_expires: 0,
            max_expires: 3600,
            expires_offset: 0,
            to_tag_pref: "10".into(),
            server_address: None,
            force_active: true,
            end_sub_on_timeout: true,
            replace_stale_subscriptions: true,
            max_body_size: 32 * 1024,
            sync_always: false,
            pidf_manipulation: false,
            fetch_rules: false,
            watchers_retention: Some(3 * 86_400),
        }
    }
}

/// A NOTIFY for the daemon to send as a client transaction.
#[derive(Debug)]
pub struct Outgoing {
    pub dialog: DialogKey,
    pub request: Request,
    pub to: Peer,
}

/// What handling one request produced.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    pub notifies: Vec<Outgoing>,
}

/// Counters for status and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub publishes: u64,
    pub subscribes: u64,
    pub notifies_sent: u64,
    pub notify_failures: u64,
    pub aggregations: u64,
}

/// The presence engine.
pub struct Engine {
    store: Store,
    packages: Registry,
    config: EngineConfig,
    /// Per dialog: the NOTIFY in flight and the newest one waiting behind it.
    queues: HashMap<DialogKey, notify::Queue>,
    /// Local CSeq and body version of the dialogs sending NOTIFYs now.
    counters: counters::Counters,
    in_flight: HashMap<ClientTxId, DialogKey>,
    /// TCP connections subscriptions arrived on, reused for their NOTIFYs.
    conns: HashMap<DialogKey, ConnId>,
    stats: EngineStats,
    /// NOTIFYs produced on the side (winfo reports of watcher changes), handed out with
    /// the outputs of the public call that caused them.
    pending_out: Vec<Outgoing>,
    /// Users whose pres-rules should be fetched (see `take_fetch_requests`).
    fetch_wanted: BTreeSet<(String, String)>,
}

impl Engine {
    pub fn new(store: Store, packages: Registry, config: EngineConfig) -> Engine {
        Engine {
            store,
            packages,
            config,
            queues: HashMap::new(),
            counters: counters::Counters::default(),
            in_flight: HashMap::new(),
            conns: HashMap::new(),
            stats: EngineStats::default(),
            pending_out: Vec::new(),
            fetch_wanted: BTreeSet::new(),
        }
    }

    pub fn packages(&self) -> &Registry {
        &self.packages
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Handles a PUBLISH or SUBSCRIBE that passed the dispatcher's checks.
    pub fn handle_request(&mut self, req: &Request, source: &Source, now: u64) -> Outcome {
        let mut outcome = match req.method {
            crate::sip::message::Method::Publish => self.publish(req, now),
            _ => self.subscribe(req, source, now),
        };
        outcome.notifies.append(&mut self.pending_out);
        if outcome.response.status < 300 {
            self.durable();
        }
        outcome
    }

    /// Writes the NOTIFY counters of dialogs idle since the previous call (of every
    /// dialog with `all`, at shutdown) back into their rows exactly, and lets them leave
    /// memory (see counters.rs).
    pub fn write_back_counters(&mut self, all: bool) {
        for (key, cseq, version) in self.counters.take_idle(all) {
            match self
                .store
                .get_subscription(&key.call_id, &key.to_tag, &key.from_tag)
            {
                Ok(Some(mut d)) if (d.local_cseq, d.version) != (cseq, version) => {
                    d.local_cseq = cseq;
                    d.version = version;
                    if let Err(e) = self.store.put_subscription(&d) {
                        log::warn!("store: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => log::warn!("store: {e}"),
            }
        }
    }

    /// sync = "always": what was just written is on disk before anyone hears about it.
    /// One flush per request or event, not one per row.
    fn durable(&self) {
        if self.config.sync_always
            && let Err(e) = self.store.flush()
        {
            log::error!("flush failed: {e}");
        }
    }

    /// Hands back the capacity per-dialog tables kept after a burst of NOTIFYs.
    pub fn release_idle_capacity(&mut self) {
        use crate::sip::endpoint::shrink_sparse;
        shrink_sparse(&mut self.queues);
        shrink_sparse(&mut self.in_flight);
        shrink_sparse(&mut self.conns);
    }

    /// The daemon started a client transaction for a NOTIFY.
    pub fn notify_started(&mut self, tx: ClientTxId, dialog: DialogKey) {
        self.in_flight.insert(tx, dialog);
    }

    fn package_for_key(&self, event: &str) -> Option<Arc<dyn EventPackage>> {
        let parsed = crate::sip::header::Event::parse(event).ok()?;
        self.packages.find(&parsed).cloned()
    }

    /// The Contact we give out: server_address, or the socket the request came in on.
    fn local_contact(&self, source: &Source) -> String {
        match &self.config.server_address {
            Some(a) => format!("<{a}>"),
            None => {
                let transport = match source.peer.kind {
                    crate::sip::endpoint::TransportKind::Udp => "",
                    crate::sip::endpoint::TransportKind::Tcp => ";transport=tcp",
                };
                format!("<sip:{}{transport}>", source.local)
            }
        }
    }

    /// The expiry a PUBLISH or SUBSCRIBE gets: its Expires (or the package default)
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
        let e = requested.unwrap_or(package.default_expires());
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
