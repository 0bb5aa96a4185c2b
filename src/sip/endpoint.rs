//! The SIP endpoint: the sans-I/O layer between the transports and the transaction user.
//!
//! Bytes and their source go in (`handle_incoming`), time goes in (`handle_timeout`), and
//! the TU's answers go in (`respond`, `send_request`). Out come [`Transmit`]s, bytes for
//! the transport (`poll_transmit`), and [`Event`]s for the TU (`poll_event`): new requests
//! and the results of client transactions. The endpoint
//! owns parsing at the edge, stateless rejection of broken requests, Via receive
//! processing (RFC 3261 §18.2.1, RFC 3581), transaction matching (§17.1.3, §17.2.3),
//! response routing (§18.2.2) and the transaction timers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use log::debug;

use crate::sip::absorb::Absorber;
use crate::sip::dialog::DialogId;
use crate::sip::header::{Via, split_comma};
use crate::sip::message::{Message, Method, Request, Response};
use crate::sip::replay::Completed;
use crate::sip::transaction::{
    ClientNonInvite, ServerInvite, ServerNonInvite, TimerConfig, TxOutput,
};
use crate::sip::uri::Host;
#[cfg(test)]
use crate::sip::uri::Uri;

/// Magic cookie that marks an RFC 3261 branch (§8.1.1.7).
const BRANCH_COOKIE: &str = "z9hG4bK";

/// Transport protocols the endpoint knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    Udp,
    Tcp,
    /// SIP over TLS over TCP (RFC 3261 §26.2.1).
    Tls,
    /// SIP over WebSocket (RFC 7118), one message per frame.
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl TransportKind {
    /// Every transport, in listen order.
    pub const ALL: [TransportKind; 5] = [
        TransportKind::Udp,
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::Ws,
        TransportKind::Wss,
    ];

    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
    /// Whether messages on this transport are encrypted (TLS, WSS): what a `sips:` URI
    /// asks for (RFC 5630).
    pub fn is_secure(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }
    /// Whether a message can only reach a peer through the connection the peer opened:
    /// a WebSocket client is never connected to (RFC 7118 §5).
    pub fn inbound_only(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }
    /// Lower-case name as used in `udp:HOST:PORT` strings and `transport=` parameters.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }
    /// The transport a `transport=` URI parameter or a `udp:` prefix names.
    pub fn from_name(name: &str) -> Option<TransportKind> {
        TransportKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
    /// The `;transport=` parameter a URI of ours needs for this transport (none for UDP).
    pub fn uri_param(self) -> &'static str {
        match self {
            TransportKind::Udp => "",
            TransportKind::Tcp => ";transport=tcp",
            TransportKind::Tls => ";transport=tls",
            // RFC 7118 §5.2: `ws` for both; `sips:` says secure.
            TransportKind::Ws | TransportKind::Wss => ";transport=ws",
        }
    }
}

/// Identifies one TCP connection in the transport's connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a message goes: a transport, an address and, for connection-oriented
/// transports, the connection to prefer (the transport opens a new one to `addr` when it
/// is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub kind: TransportKind,
    pub addr: SocketAddr,
    pub conn: Option<ConnId>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.addr)
    }
}

/// Where a message came from and which of our sockets received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub peer: Peer,
    pub local: SocketAddr,
}

/// Identifies a server transaction to the TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

/// Identifies a client transaction to the TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

impl ClientTxId {
    /// An id for the transport's own tests.
    #[cfg(test)]
    pub(crate) fn for_test(n: u64) -> ClientTxId {
        ClientTxId(n)
    }
}

/// How a client transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResult {
    /// A final response arrived.
    Response(Response),
    /// Timer F fired (§17.1.2.2).
    Timeout,
    /// The transport could not deliver the request (§17.1.4).
    TransportError,
}

/// Bytes for the transport to deliver.
#[derive(Debug)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Vec<u8>,
    /// The client transaction to blame if delivery fails.
    pub tx: Option<ClientTxId>,
}

/// What the endpoint tells the transaction user.
#[derive(Debug)]
pub enum Event {
    /// A new request; answer it with `respond(id, ..)`.
    Request {
        id: ServerTxId,
        request: Request,
        source: Source,
    },
    /// A client transaction finished; `dialog` is the one given to `send_request`.
    ClientResult {
        id: ClientTxId,
        dialog: Option<DialogId>,
        result: ClientResult,
    },
}

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: TimerConfig,
    /// Largest message accepted; bigger requests get 513 when they can be answered.
    pub max_message_size: usize,
    /// `host:port` this endpoint writes into the Via of requests it sends, per
    /// transport; a transport missing here uses the first entry.
    pub sent_by: Vec<(TransportKind, String)>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: TimerConfig::default(),
            max_message_size: 65535,
            sent_by: vec![
                (TransportKind::Udp, "127.0.0.1:5060".into()),
                (TransportKind::Tcp, "127.0.0.1:5060".into()),
            ],
        }
    }
}

/// Counters for `status` and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub requests_in: u64,
    pub retransmissions_absorbed: u64,
    pub rejected_stateless: u64,
    pub dropped: u64,
    pub client_retransmissions: u64,
    pub client_timeouts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    /// RFC 3261 matching: branch, sent-by, method (ACK folded into INVITE), and also
    /// the CSeq number and Call-ID, which a retransmission (or its ACK or CANCEL) always
    /// repeats. A client that reuses a finished transaction's branch for a new request
    /// (a new CSeq) starts a new transaction instead of getting the old answer, which
    /// sends some clients into a retransmission loop; and a device that restarts its
    /// branch counter and is given its old source port again (a reboot behind a NAT)
    /// gets its new request handled, not another request's answer replayed.
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: String,
        cseq: u32,
        call_id: String,
    },
    /// RFC 2543 fallback (§17.2.3): the fields an old client keeps stable.
    Rfc2543 {
        request_uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        method: String,
        top_via: String,
    },
}

impl ServerKey {
    fn method(&self) -> &str {
        match self {
            ServerKey::Rfc3261 { method, .. } | ServerKey::Rfc2543 { method, .. } => method,
        }
    }

    /// An unambiguous byte form (each field length-prefixed), stored with a completed
    /// transaction so that a digest match is checked against the real key.
    fn encode(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, f: &str) {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        let mut out = Vec::with_capacity(96);
        match self {
            ServerKey::Rfc3261 {
                branch,
                sent_by,
                method,
                cseq,
                call_id,
            } => {
                out.push(0);
                for f in [branch, sent_by, method, call_id] {
                    field(&mut out, f);
                }
                out.extend_from_slice(&cseq.to_be_bytes());
            }
            ServerKey::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                method,
                top_via,
            } => {
                out.push(1);
                for f in [request_uri, from_tag, call_id, method, top_via] {
                    field(&mut out, f);
                }
                out.extend_from_slice(&cseq.to_be_bytes());
            }
        }
        out
    }
}

enum ServerMachine {
    NonInvite(ServerNonInvite),
    Invite(ServerInvite),
}

struct ServerEntry {
    key: ServerKey,
    machine: ServerMachine,
    /// Where responses go (§18.2.2), fixed when the request arrived.
    reply_to: Peer,
}

struct ClientEntry {
    key: (String, String),
    machine: ClientNonInvite,
    to: Peer,
    /// The dialog the request was sent in; handed back with the result.
    dialog: Option<DialogId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TxRef {
    Server(u64),
    Client(u64),
}

/// The sans-I/O SIP endpoint.
pub struct Endpoint {
    config: EndpointConfig,
    server_by_key: HashMap<ServerKey, u64>,
    servers: HashMap<u64, ServerEntry>,
    client_by_key: HashMap<(String, String), u64>,
    clients: HashMap<u64, ClientEntry>,
    timers: BinaryHeap<Reverse<(Instant, TxRef)>>,
    /// Completed UDP non-INVITE server transactions: their final responses, replayed to
    /// retransmissions until Timer J.
    completed: Completed,
    /// Completed UDP client transactions absorbing retransmitted finals until Timer K.
    completed_clients: Absorber,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_id: u64,
    stats: Stats,
    /// Final responses by method and status (see [`Endpoint::answered`]).
    answered: BTreeMap<(&'static str, u16), u64>,
}

/// The largest UDP payload over IPv4 (65,535 − 8 − 20).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// Room a request's start line and headers (our Via included) may take besides its
/// body: requests whose body leaves less are measured exactly.
const UDP_HEADROOM: usize = 8 * 1024;
/// The largest body a request is sure to carry in one UDP datagram.
pub const MAX_UDP_BODY: usize = MAX_UDP_PAYLOAD - UDP_HEADROOM;

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        let t4 = config.timers.t4;
        let timer_j = config.timers.timeout();
        Endpoint {
            config,
            server_by_key: HashMap::new(),
            servers: HashMap::new(),
            client_by_key: HashMap::new(),
            clients: HashMap::new(),
            timers: BinaryHeap::new(),
            completed: Completed::new(timer_j),
            completed_clients: Absorber::new(t4),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            stats: Stats::default(),
            answered: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Final responses sent so far, by request method (see
    /// [`crate::metrics::method_label`]) and status code.
    pub fn answered(&self) -> &BTreeMap<(&'static str, u16), u64> {
        &self.answered
    }

    fn count_answer(&mut self, method: &str, status: u16) {
        let method = crate::metrics::method_label(method);
        *self.answered.entry((method, status)).or_default() += 1;
    }

    /// Work that a graceful shutdown waits for: client transactions still waiting for an
    /// answer and server transactions the TU has not answered yet.
    pub fn in_flight(&self) -> usize {
        let unanswered = self
            .servers
            .values()
            .filter(|e| match &e.machine {
                ServerMachine::NonInvite(m) => !m.has_final(),
                ServerMachine::Invite(_) => false,
            })
            .count();
        unanswered
            + self
                .clients
                .values()
                .filter(|c| !c.machine.is_completed())
                .count()
    }

    /// Transactions still alive (server, client), completed server transactions waiting
    /// out Timer J included.
    pub fn live_transactions(&self) -> (usize, usize) {
        (
            self.servers.len() + self.completed.len(),
            self.clients.len(),
        )
    }

    /// The next bytes to send, in the order they were produced.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next request or client transaction result for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.peek().map(|Reverse((at, _))| *at),
            self.completed_clients.next_deadline(),
            self.completed.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One datagram or one framed stream message from `source`.
    pub fn handle_incoming(&mut self, bytes: &[u8], source: Source, now: Instant) {
        if bytes.len() > self.config.max_message_size {
            // RFC 3261 §18.1.1 lets a server refuse what it cannot handle; answer when
            // the head parses, otherwise drop.
            match Message::parse(bytes) {
                Ok(Message::Request(mut req)) => {
                    receive_via(&mut req, &source);
                    self.reject_stateless(&req, 513, Some("Message Too Large"), &source);
                }
                _ => self.drop_message(&source, "oversized message"),
            }
            return;
        }
        match Message::parse(bytes) {
            Ok(Message::Request(req)) => self.incoming_request(req, source, now),
            Ok(Message::Response(resp)) => self.incoming_response(resp, now),
            Err(err) => match (Request::salvage(bytes), err.response_status()) {
                (Some(mut req), Some((status, reason))) => {
                    debug!("{}: rejecting unparseable request: {err}", source.peer);
                    receive_via(&mut req, &source);
                    self.reject_stateless(&req, status, Some(&reason), &source);
                }
                _ => self.drop_message(&source, &err.to_string()),
            },
        }
    }

    fn drop_message(&mut self, source: &Source, why: &str) {
        self.stats.dropped += 1;
        debug!("{}: dropped message: {why}", source.peer);
    }

    fn incoming_request(&mut self, mut req: Request, source: Source, now: Instant) {
        if req.headers.top_via().is_err() {
            // Without a Via there is nowhere to send a response (§18.2.2).
            self.drop_message(&source, "request without a usable Via");
            return;
        }
        receive_via(&mut req, &source);
        if let Err(err) = req.check() {
            match err.response_status() {
                Some((status, reason)) if req.method != Method::Ack => {
                    self.reject_stateless(&req, status, Some(&reason), &source)
                }
                _ => self.drop_message(&source, &err.to_string()),
            }
            return;
        }
        let Some(key) = server_key(&req) else {
            self.drop_message(&source, "request without transaction identifiers");
            return;
        };
        if let Some(&id) = self.server_by_key.get(&key) {
            self.server_retransmission_or_ack(id, &req, now);
            return;
        }
        if self.replay_completed(&key, now) {
            return;
        }
        match req.method {
            // An ACK that matches nothing acknowledges a 2xx we never sent: absorb it.
            Method::Ack => {
                debug!("{}: absorbed stray ACK", source.peer);
                return;
            }
            // §9.2: CANCEL for an unknown transaction → 481. Ours never linger in a
            // cancellable state, so every CANCEL that matches is answered 200 by the TU.
            Method::Cancel => {
                let target = cancel_target_key(&req);
                if !target.is_some_and(|k| self.server_by_key.contains_key(&k)) {
                    self.reject_stateless(&req, 481, None, &source);
                    return;
                }
            }
            _ => {}
        }
        self.stats.requests_in += 1;
        let reply_to = response_destination(&req, &source);
        let reliable = source.peer.kind.is_reliable();
        let machine = if req.method == Method::Invite {
            ServerMachine::Invite(ServerInvite::new(reliable, self.config.timers))
        } else {
            ServerMachine::NonInvite(ServerNonInvite::new(reliable, self.config.timers))
        };
        let id = self.alloc_id();
        self.server_by_key.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerEntry {
                key,
                machine,
                reply_to,
            },
        );
        self.events.push_back(Event::Request {
            id: ServerTxId(id),
            request: req,
            source,
        });
    }

    fn server_retransmission_or_ack(&mut self, id: u64, req: &Request, now: Instant) {
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        let outs = match (&mut entry.machine, &req.method) {
            (ServerMachine::Invite(m), Method::Ack) => m.on_ack(now),
            (ServerMachine::Invite(m), _) => m.on_request_retransmission(),
            (ServerMachine::NonInvite(m), _) => m.on_request_retransmission(),
        };
        self.stats.retransmissions_absorbed += 1;
        self.apply_server_outputs(id, outs, now);
    }

    /// A retransmission of a completed transaction gets its final response again.
    fn replay_completed(&mut self, key: &ServerKey, now: Instant) -> bool {
        if self.completed.len() == 0 {
            return false;
        }
        let digest = self.completed.digest(key);
        let Some(replay) = self.completed.find(digest, &key.encode(), now) else {
            return false;
        };
        self.stats.retransmissions_absorbed += 1;
        self.transmits.push_back(Transmit {
            to: replay.to,
            bytes: replay.bytes.to_vec(),
            tx: None,
        });
        true
    }

    fn reject_stateless(
        &mut self,
        req: &Request,
        status: u16,
        reason: Option<&str>,
        source: &Source,
    ) {
        self.stats.rejected_stateless += 1;
        self.count_answer(req.method.as_str(), status);
        let mut resp = Response::for_request(req, status, reason);
        resp.set_to_tag(&random_token(10));
        self.transmits.push_back(Transmit {
            to: response_destination(req, source),
            bytes: resp.to_bytes(),
            tx: None,
        });
    }

    /// The TU answers a request it was given. Extra answers after the final are ignored.
    pub fn respond(&mut self, id: ServerTxId, response: Response, now: Instant) {
        let Some(entry) = self.servers.get_mut(&id.0) else {
            debug!("response for a finished transaction dropped");
            return;
        };
        let status = response.status;
        let bytes = response.to_bytes();
        if status >= 200 {
            let method = crate::metrics::method_label(entry.key.method());
            *self.answered.entry((method, status)).or_default() += 1;
        }
        let outs = match &mut entry.machine {
            ServerMachine::NonInvite(m) => {
                let outs = m.send_response(status, bytes, now);
                if let (Some(until), Some(bytes)) = (m.deadline(), m.take_final()) {
                    // Completed over UDP: only Timer J is left, which the compact store
                    // waits out instead of the live tables.
                    self.complete(id.0, outs, &bytes, now, until);
                    return;
                }
                outs
            }
            ServerMachine::Invite(m) => m.send_response(status, bytes, now),
        };
        self.apply_server_outputs(id.0, outs, now);
    }

    /// Moves a server transaction that sent its final over UDP to the completed store.
    fn complete(
        &mut self,
        id: u64,
        outs: Vec<TxOutput>,
        last: &[u8],
        now: Instant,
        until: Instant,
    ) {
        let Some(entry) = self.servers.remove(&id) else {
            return;
        };
        self.server_by_key.remove(&entry.key);
        for out in outs {
            if let TxOutput::Transmit(bytes) = out {
                self.transmits.push_back(Transmit {
                    to: entry.reply_to,
                    bytes,
                    tx: None,
                });
            }
        }
        let digest = self.completed.digest(&entry.key);
        self.completed.insert(
            digest,
            &entry.key.encode(),
            last,
            entry.reply_to,
            now,
            until,
        );
    }

    fn apply_server_outputs(&mut self, id: u64, outs: Vec<TxOutput>, now: Instant) {
        let Some(entry) = self.servers.get(&id) else {
            return;
        };
        let to = entry.reply_to;
        let mut terminated = false;
        for out in outs {
            match out {
                TxOutput::Transmit(bytes) => self.transmits.push_back(Transmit {
                    to,
                    bytes,
                    tx: None,
                }),
                TxOutput::Terminated => terminated = true,
                _ => {}
            }
        }
        if terminated {
            if let Some(e) = self.servers.remove(&id) {
                self.server_by_key.remove(&e.key);
            }
        } else if let Some(deadline) = self.server_deadline(id) {
            let _ = now;
            self.timers.push(Reverse((deadline, TxRef::Server(id))));
        }
    }

    fn server_deadline(&self, id: u64) -> Option<Instant> {
        self.servers.get(&id).and_then(|e| match &e.machine {
            ServerMachine::NonInvite(m) => m.deadline(),
            ServerMachine::Invite(m) => m.deadline(),
        })
    }

    /// Starts a client transaction for `request` towards `to`, inside `dialog` if given
    /// (its result names it). The endpoint writes the top Via (transport, sent-by, a
    /// fresh branch, `rport`).
    pub fn send_request(
        &mut self,
        mut request: Request,
        mut to: Peer,
        dialog: Option<DialogId>,
        now: Instant,
    ) -> ClientTxId {
        // RFC 3261 §18.1.1: a request that cannot go in one datagram goes over TCP (a
        // new connection to the same address when there is none); if that fails, the
        // transaction fails like any other and the subscription ends on it, logged.
        if to.kind == TransportKind::Udp
            && request.body.len() + UDP_HEADROOM > MAX_UDP_PAYLOAD
            && request.to_bytes().len() + UDP_HEADROOM / 8 > MAX_UDP_PAYLOAD
        {
            log::info!(
                "{} of {} bytes to {} does not fit a UDP datagram: sending it over TCP",
                request.method.as_str(),
                request.body.len(),
                to.addr
            );
            to = Peer {
                kind: TransportKind::Tcp,
                addr: to.addr,
                conn: None,
            };
        }
        let branch = format!("{BRANCH_COOKIE}{}", random_token(16));
        let sent_by = self
            .config
            .sent_by
            .iter()
            .find(|(k, _)| *k == to.kind)
            .or(self.config.sent_by.first())
            .map_or("127.0.0.1", |(_, s)| s.as_str());
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            to.kind.via_token(),
            sent_by,
            branch
        );
        request.headers.push_front("Via", via);
        let method = request.method.as_str().to_string();
        let id = self.alloc_id();
        let (machine, outs) = ClientNonInvite::start(
            request.to_bytes(),
            to.kind.is_reliable(),
            self.config.timers,
            now,
        );
        let key = (branch, method);
        self.client_by_key.insert(key.clone(), id);
        self.clients.insert(
            id,
            ClientEntry {
                key,
                machine,
                to,
                dialog,
            },
        );
        self.apply_client_outputs(id, outs, None, now);
        ClientTxId(id)
    }

    /// The transport failed to deliver a client transaction's request.
    pub fn transport_error(&mut self, id: ClientTxId, _now: Instant) {
        let Some(entry) = self.clients.get_mut(&id.0) else {
            return;
        };
        let outs = entry.machine.on_transport_error();
        if !outs.is_empty() {
            let dialog = entry.dialog.take();
            self.events.push_back(Event::ClientResult {
                id,
                dialog,
                result: ClientResult::TransportError,
            });
        }
        if let Some(e) = self.clients.remove(&id.0) {
            self.client_by_key.remove(&e.key);
        }
    }

    fn incoming_response(&mut self, resp: Response, now: Instant) {
        // §17.1.3: match on the top Via branch and the CSeq method.
        let (Ok(via), Ok(cseq)) = (resp.headers.top_via(), resp.headers.cseq()) else {
            debug!("response without Via/CSeq dropped");
            self.stats.dropped += 1;
            return;
        };
        let Some(branch) = via.branch() else {
            self.stats.dropped += 1;
            return;
        };
        let key = (branch.to_string(), cseq.method.as_str().to_string());
        let Some(&id) = self.client_by_key.get(&key) else {
            if self
                .completed_clients
                .absorbs(self.completed_clients.digest(branch, cseq.method.as_str()))
            {
                // A retransmitted final of a transaction in Completed (§17.1.2.2).
                return;
            }
            debug!("response matching no transaction dropped");
            self.stats.dropped += 1;
            return;
        };
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        let outs = entry.machine.on_response(resp.status, now);
        self.apply_client_outputs(id, outs, Some(resp), now);
    }

    fn apply_client_outputs(
        &mut self,
        id: u64,
        outs: Vec<TxOutput>,
        mut resp: Option<Response>,
        now: Instant,
    ) {
        let Some(entry) = self.clients.get(&id) else {
            return;
        };
        let to = entry.to;
        let mut terminated = false;
        for out in outs {
            match out {
                TxOutput::Transmit(bytes) => self.transmits.push_back(Transmit {
                    to,
                    bytes,
                    tx: Some(ClientTxId(id)),
                }),
                TxOutput::Final(_) => {
                    if let Some(r) = resp.take() {
                        let dialog = self.take_dialog(id);
                        self.events.push_back(Event::ClientResult {
                            id: ClientTxId(id),
                            dialog,
                            result: ClientResult::Response(r),
                        });
                    }
                }
                TxOutput::Timeout => {
                    self.stats.client_timeouts += 1;
                    let dialog = self.take_dialog(id);
                    self.events.push_back(Event::ClientResult {
                        id: ClientTxId(id),
                        dialog,
                        result: ClientResult::Timeout,
                    });
                }
                TxOutput::Provisional(_) => {}
                TxOutput::Terminated => terminated = true,
            }
        }
        let completed = !terminated
            && self
                .clients
                .get(&id)
                .is_some_and(|e| e.machine.is_completed());
        if terminated || completed {
            if let Some(e) = self.clients.remove(&id) {
                self.client_by_key.remove(&e.key);
                if completed {
                    // Only Timer K is left: keep the key's digest, not the transaction.
                    let digest = self.completed_clients.digest(&e.key.0, &e.key.1);
                    self.completed_clients.insert(digest, now);
                }
            }
        } else if let Some(d) = self.clients.get(&id).and_then(|e| e.machine.deadline()) {
            self.timers.push(Reverse((d, TxRef::Client(id))));
        }
    }

    /// A client transaction's dialog, handed out with its one result.
    fn take_dialog(&mut self, id: u64) -> Option<DialogId> {
        self.clients.get_mut(&id).and_then(|e| e.dialog.take())
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, tx))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match tx {
                TxRef::Server(id) => {
                    // Stale heap entries (the machine moved on) are skipped.
                    if self.server_deadline(id).is_some_and(|d| d <= now) {
                        let outs = match self.servers.get_mut(&id).map(|e| &mut e.machine) {
                            Some(ServerMachine::NonInvite(m)) => m.on_timer(now),
                            Some(ServerMachine::Invite(m)) => m.on_timer(now),
                            None => continue,
                        };
                        self.apply_server_outputs(id, outs, now);
                    }
                }
                TxRef::Client(id) => {
                    let due = self
                        .clients
                        .get(&id)
                        .and_then(|e| e.machine.deadline())
                        .is_some_and(|d| d <= now);
                    if due {
                        let outs = match self.clients.get_mut(&id) {
                            Some(e) => e.machine.on_timer(now),
                            None => continue,
                        };
                        self.stats.client_retransmissions +=
                            outs.iter()
                                .filter(|o| matches!(o, TxOutput::Transmit(_)))
                                .count() as u64;
                        self.apply_client_outputs(id, outs, None, now);
                    }
                }
            }
        }
        self.completed.release(now);
        self.completed_clients.release(now);
        self.release_idle_capacity();
    }

    /// After a burst the transaction tables keep the capacity it needed (every completed
    /// UDP transaction lives for Timer J, 32 s); hand it back once they are mostly empty,
    /// so a box that saw a load peak does not hold its memory for ever.
    fn release_idle_capacity(&mut self) {
        shrink_sparse(&mut self.server_by_key);
        shrink_sparse(&mut self.servers);
        shrink_sparse(&mut self.client_by_key);
        shrink_sparse(&mut self.clients);
        if self.timers.capacity() > 4 * self.timers.len() + SPARSE_SLACK {
            self.timers.shrink_to(2 * self.timers.len());
        }
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Capacity a table may keep beyond what it holds without being shrunk.
const SPARSE_SLACK: usize = 1024;

/// Shrinks `map` to twice its length once its capacity is more than four times that:
/// amortised O(1) per removal, and no shrink/grow flapping at a steady load.
pub(crate) fn shrink_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 4 * map.len() + SPARSE_SLACK {
        map.shrink_to(2 * map.len());
    }
}

/// Rewrites the first Via value (which may share its line with others).
fn replace_top_via(req: &mut Request, via: &Via) {
    if let Some(line) = req.headers.first_mut("Via") {
        let rest: Vec<String> = split_comma(&line.value)
            .into_iter()
            .skip(1)
            .map(str::to_string)
            .collect();
        let mut value = via.to_string();
        for r in rest {
            value.push_str(", ");
            value.push_str(&r);
        }
        line.value = value;
    }
}

/// RFC 3261 §17.2.3 server transaction key.
fn server_key(req: &Request) -> Option<ServerKey> {
    let via = req.headers.top_via().ok()?;
    let method = match &req.method {
        Method::Ack => "INVITE".to_string(),
        m => m.as_str().to_string(),
    };
    match via.branch() {
        Some(b) if b.starts_with(BRANCH_COOKIE) => Some(ServerKey::Rfc3261 {
            branch: b.to_string(),
            sent_by: sent_by(&via),
            method,
            cseq: req.headers.cseq().ok()?.seq,
            call_id: req.headers.call_id().ok()?.to_string(),
        }),
        _ => {
            let cseq = req.headers.cseq().ok()?;
            Some(ServerKey::Rfc2543 {
                request_uri: req.uri.to_string(),
                from_tag: req
                    .headers
                    .from()
                    .ok()
                    .and_then(|f| f.tag().map(str::to_string))
                    .unwrap_or_default(),
                call_id: req.headers.call_id().ok()?.to_string(),
                cseq: cseq.seq,
                method,
                top_via: format!("{}{}", sent_by(&via), via.branch().unwrap_or("")),
            })
        }
    }
}

/// The key of the transaction a CANCEL refers to: same branch, method INVITE (§9.2).
fn cancel_target_key(req: &Request) -> Option<ServerKey> {
    match server_key(req)? {
        ServerKey::Rfc3261 {
            branch,
            sent_by,
            cseq,
            call_id,
            ..
        } => Some(ServerKey::Rfc3261 {
            branch,
            sent_by,
            method: "INVITE".into(),
            cseq,
            call_id,
        }),
        ServerKey::Rfc2543 {
            request_uri,
            from_tag,
            call_id,
            cseq,
            top_via,
            ..
        } => Some(ServerKey::Rfc2543 {
            request_uri,
            from_tag,
            call_id,
            cseq,
            method: "INVITE".into(),
            top_via,
        }),
    }
}

fn sent_by(via: &Via) -> String {
    match via.port {
        Some(p) => format!("{}:{}", via.host, p),
        None => via.host.to_string(),
    }
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: note where the request really came from.
fn receive_via(req: &mut Request, source: &Source) {
    let Ok(mut via) = req.headers.top_via() else {
        return;
    };
    let src_ip = source.peer.addr.ip();
    let sent_by_matches = match &via.host {
        Host::V4(ip) => IpAddr::V4(*ip) == src_ip,
        Host::V6(ip) => IpAddr::V6(*ip) == src_ip,
        Host::Domain(_) => false,
    };
    let mut changed = false;
    if !sent_by_matches {
        via.params.set("received", Some(src_ip.to_string()));
        changed = true;
    }
    if via.params.get("rport").is_some() {
        via.params.set("received", Some(src_ip.to_string()));
        via.params
            .set("rport", Some(source.peer.addr.port().to_string()));
        changed = true;
    }
    if changed {
        replace_top_via(req, &via);
    }
}

/// Refuses a request without a transaction and before any body is looked at: 503 with
/// Retry-After (RFC 3261 §21.5.4), for the transport to send when the core loop's queue
/// for new work is full. `tag` is the To tag, the same for every copy of the request
/// (§8.2.7). `None` for what gets no answer: a response, an ACK or a CANCEL (left to
/// their retransmission), a request without a Via to answer along, bytes that are not a
/// request.
pub fn refuse_unparsed(
    bytes: &[u8],
    source: &Source,
    retry_after: u32,
    tag: &str,
) -> Option<(Peer, Vec<u8>)> {
    let Ok(Message::Request(mut req)) = Message::parse(bytes) else {
        return None;
    };
    if matches!(req.method, Method::Ack | Method::Cancel) || req.headers.top_via().is_err() {
        return None;
    }
    receive_via(&mut req, source);
    let mut resp = Response::for_request(&req, 503, Some("Overloaded"));
    resp.set_to_tag(tag);
    resp.headers.push("Retry-After", retry_after.to_string());
    Some((response_destination(&req, source), resp.to_bytes()))
}

/// RFC 3261 §18.2.2 with RFC 3581 §4: where a response to `req` goes.
fn response_destination(req: &Request, source: &Source) -> Peer {
    if source.peer.kind.is_reliable() {
        return source.peer;
    }
    let Ok(via) = req.headers.top_via() else {
        return source.peer;
    };
    if via.rport().is_some() {
        // rport: reply to the exact source address and port.
        return source.peer;
    }
    let port = via.port.unwrap_or(5060);
    Peer {
        kind: source.peer.kind,
        addr: SocketAddr::new(source.peer.addr.ip(), port),
        conn: None,
    }
}

/// A random token for tags and branches (RFC 3261 §19.3 asks for 32 bits of
/// randomness; this gives more).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// A UDP peer on 127.0.0.1:`port` talking to 127.0.0.1:5060, for unit tests.
#[cfg(test)]
pub(crate) fn loopback_source(port: u16) -> Source {
    Source {
        peer: Peer {
            kind: TransportKind::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conn: None,
        },
        local: SocketAddr::from(([127, 0, 0, 1], 5060)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(port: u16) -> Source {
        loopback_source(port)
    }

    fn req(via: &str, method: &str, branch: &str) -> Vec<u8> {
        format!(
            "{method} sip:p@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:p@example.com>\r\n\
             Call-ID: {branch}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Nothing to send and nothing for the TU.
    fn quiet(ep: &mut Endpoint) -> bool {
        ep.poll_transmit().is_none() && ep.poll_event().is_none()
    }

    fn take_request(ep: &mut Endpoint) -> (ServerTxId, Request) {
        match ep.poll_event() {
            Some(Event::Request { id, request, .. }) => (id, request),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn a_table_emptied_after_a_burst_gives_back_its_capacity() {
        let mut m: HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        // After the burst: the capacity goes back, the contents stay.
        m.retain(|k, _| *k < 10);
        shrink_sparse(&mut m);
        assert!(m.capacity() < 2 * 10 + SPARSE_SLACK, "{}", m.capacity());
        assert_eq!(m.len(), 10);
    }
    #[test]
    fn via_gets_received_when_sent_by_differs_and_rport_is_filled() {
        let mut ep = Endpoint::new(EndpointConfig::default());
        let now = Instant::now();
        ep.handle_incoming(
            &req("10.9.9.9:5070;rport", "OPTIONS", "a"),
            source(4000),
            now,
        );
        let (_, r) = take_request(&mut ep);
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.received(), Some("127.0.0.1"));
        assert_eq!(via.rport(), Some(Some(4000)));
    }

    #[test]
    fn without_rport_the_response_goes_to_the_source_ip_and_the_via_port() {
        let mut ep = Endpoint::new(EndpointConfig::default());
        let now = Instant::now();
        ep.handle_incoming(&req("127.0.0.1:5070", "OPTIONS", "b"), source(4000), now);
        let (id, r) = take_request(&mut ep);
        ep.respond(id, Response::for_request(&r, 200, None), now);
        match ep.poll_transmit() {
            Some(Transmit { to, .. }) => assert_eq!(to.addr.port(), 5070),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retransmission_is_absorbed_then_answered_from_the_cache() {
        let mut ep = Endpoint::new(EndpointConfig::default());
        let now = Instant::now();
        let bytes = req("127.0.0.1:4000;rport", "OPTIONS", "c");
        ep.handle_incoming(&bytes, source(4000), now);
        let (id, r) = take_request(&mut ep);
        // Retransmission before the TU answered: absorbed silently.
        ep.handle_incoming(&bytes, source(4000), now);
        assert!(quiet(&mut ep));
        ep.respond(id, Response::for_request(&r, 200, None), now);
        let Some(Transmit { bytes: first, .. }) = ep.poll_transmit() else {
            panic!()
        };
        ep.handle_incoming(&bytes, source(4000), now);
        let Some(Transmit { bytes: again, .. }) = ep.poll_transmit() else {
            panic!()
        };
        assert_eq!(first, again);
        assert_eq!(ep.stats().requests_in, 1);
        // Timer J: the transaction ends and the stored response is freed with it; the
        // same bytes now start a new transaction.
        assert!(ep.completed.held_bytes() > 0);
        let after_j = now + ep.config().timers.timeout();
        assert_eq!(ep.poll_timeout(), Some(after_j));
        ep.handle_timeout(after_j);
        assert_eq!(ep.completed.held_bytes(), 0);
        assert_eq!(ep.live_transactions(), (0, 0));
        ep.handle_incoming(&bytes, source(4000), after_j);
        assert!(matches!(ep.poll_event(), Some(Event::Request { .. })));
        assert_eq!(ep.stats().requests_in, 2);
    }

    #[test]
    fn a_new_request_reusing_another_calls_branch_is_handled_not_answered_from_the_cache() {
        // A phone that restarts its branch counter and is given its old source port
        // again: same branch, sent-by, method and CSeq, but another call.
        let mut ep = Endpoint::new(EndpointConfig::default());
        let now = Instant::now();
        let first = req("127.0.0.1:4000;rport", "PUBLISH", "same");
        ep.handle_incoming(&first, source(4000), now);
        let (id, r) = take_request(&mut ep);
        ep.respond(id, Response::for_request(&r, 200, None), now);
        assert!(ep.poll_transmit().is_some());
        let text = String::from_utf8(first).expect("ascii");
        let second = text.replace("Call-ID: same", "Call-ID: another");
        assert_ne!(second, text);
        ep.handle_incoming(second.as_bytes(), source(4000), now);
        let (_, r2) = take_request(&mut ep);
        assert_eq!(r2.headers.call_id().ok(), Some("another"));
        assert_eq!(ep.stats().requests_in, 2);
        // The first call's own retransmission still gets its answer from the cache.
        ep.handle_incoming(text.as_bytes(), source(4000), now);
        assert!(ep.poll_transmit().is_some());
        assert!(ep.poll_event().is_none());
        assert_eq!(ep.stats().requests_in, 2);
    }

    #[test]
    fn cancel_for_an_unknown_transaction_gets_481() {
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.handle_incoming(
            &req("127.0.0.1:4000;rport", "CANCEL", "d"),
            source(4000),
            Instant::now(),
        );
        let Some(Transmit { bytes, .. }) = ep.poll_transmit() else {
            panic!()
        };
        let Ok(Message::Response(r)) = Message::parse(&bytes) else {
            panic!()
        };
        assert_eq!(r.status, 481);
    }

    #[test]
    fn stray_ack_is_absorbed() {
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.handle_incoming(
            &req("127.0.0.1:4000;rport", "ACK", "e"),
            source(4000),
            Instant::now(),
        );
        assert!(quiet(&mut ep));
    }

    #[test]
    fn client_transaction_matches_its_response_and_reports_it_once() {
        let mut ep = Endpoint::new(EndpointConfig::default());
        let now = Instant::now();
        let mut notify = Request::new(Method::Notify, Uri::parse("sip:w@127.0.0.1:4000").unwrap());
        notify.headers.push("CSeq", "1 NOTIFY");
        notify.headers.push("Call-ID", "n1");
        notify.headers.push("From", "<sip:p@x>;tag=a");
        notify.headers.push("To", "<sip:w@x>;tag=b");
        let to = source(4000).peer;
        let dialog = DialogId {
            call_id: "n1".into(),
            to_tag: "a".into(),
            from_tag: "b".into(),
        };
        let id = ep.send_request(notify, to, Some(dialog.clone()), now);
        let Some(Transmit { bytes, tx, .. }) = ep.poll_transmit() else {
            panic!()
        };
        assert_eq!(tx, Some(id));
        let Ok(Message::Request(sent)) = Message::parse(&bytes) else {
            panic!()
        };
        assert!(
            sent.headers
                .top_via()
                .unwrap()
                .branch()
                .unwrap()
                .starts_with(BRANCH_COOKIE)
        );
        let resp = Response::for_request(&sent, 200, None).to_bytes();
        ep.handle_incoming(&resp, source(4000), now);
        match ep.poll_event() {
            Some(Event::ClientResult {
                id: got,
                dialog: got_dialog,
                result: ClientResult::Response(r),
            }) => {
                assert_eq!(got, id);
                assert_eq!(got_dialog, Some(dialog), "the result names its dialog");
                assert_eq!(r.status, 200);
            }
            other => panic!("{other:?}"),
        }
        ep.handle_incoming(&resp, source(4000), now);
        assert!(quiet(&mut ep), "retransmitted final absorbed");
        assert_eq!(ep.stats().dropped, 0, "absorbed, not dropped as unmatched");
        // In Completed only the key's digest is left, and only until Timer K (T4).
        assert!(ep.clients.is_empty());
        assert_eq!(ep.completed_clients.len(), 1);
        let t4 = ep.config().timers.t4;
        assert_eq!(ep.poll_timeout(), Some(now + ep.config().timers.t1));
        ep.handle_timeout(now + ep.config().timers.t1);
        assert!(quiet(&mut ep), "no retransmission after the final");
        assert_eq!(ep.poll_timeout(), Some(now + t4));
        ep.handle_timeout(now + t4);
        assert_eq!(ep.completed_clients.len(), 0);
        assert_eq!(ep.poll_timeout(), None);
        ep.handle_incoming(&resp, source(4000), now + t4);
        assert!(quiet(&mut ep));
        assert_eq!(ep.stats().dropped, 1, "after Timer K it matches nothing");
    }
}
