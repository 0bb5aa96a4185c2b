//! The thin smol I/O shell around the sans-I/O SIP core: UDP sockets, TCP, TLS and
//! WebSocket listeners and a connection table. It turns sockets into `Inbound` messages
//! for the daemon's core loop and sends what the core asks it to send; it never
//! interprets SIP beyond stream framing.

mod admission;
mod conn;
mod limits;
pub mod tls;
mod udp;
mod udp_send;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info};
use smol::channel::Sender;

use crate::clock::Clock;
use crate::sip::endpoint::{ClientTxId, ConnId, Peer, Source, TransportKind};

pub use admission::Recent;
pub use conn::ConnTable;
pub use limits::{Admit, SourceLimiter};
pub use tls::TlsContext;
pub use udp_send::UdpOut;

/// What the transports tell the core loop.
#[derive(Debug)]
pub enum Inbound {
    /// One complete SIP message (a datagram or a framed stream message), with when it
    /// was received (how long it queued is the core loop's measure of load).
    Message {
        bytes: Vec<u8>,
        source: Source,
        received: std::time::Instant,
    },
    /// A send for a client transaction failed (connect refused, connection reset, ...).
    SendFailed { tx: ClientTxId },
    /// A connection (TCP, TLS, WebSocket) is gone; nothing more can be sent on it.
    Closed { conn: ConnId },
}

/// The two bounded queues from the sockets to the core loop: work under way (responses,
/// requests inside dialogs, publication refreshes, send failures) is served first; new
/// work second (see `sip::triage`).
#[derive(Clone)]
pub struct InboundQueues {
    pub under_way: Sender<Inbound>,
    pub new_work: Sender<Inbound>,
    /// Retransmissions of new requests dropped because their queue was full.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
    /// New requests refused with 503 because their queue was full.
    pub refused: Arc<std::sync::atomic::AtomicU64>,
    /// New UDP requests queued lately (see `admission`).
    pub recent: Arc<Recent>,
    /// Requests per source (see `limits`).
    pub limiter: Arc<SourceLimiter>,
    /// Requests refused with 503 because their source was over its rate.
    pub limited: Arc<std::sync::atomic::AtomicU64>,
    /// Requests dropped because their source was over its rate and its refusals.
    pub limited_dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Messages each queue holds: at the rates this box sustains, a few tenths of a second.
pub const UNDER_WAY_QUEUE: usize = 4096;
pub const NEW_WORK_QUEUE: usize = 2048;

/// Retry-After, in seconds, of a request refused because the new-work queue was full.
const REFUSED_RETRY_AFTER: u32 = 1;
/// Retry-After, in seconds, of a request refused because its source was over its rate.
const SOURCE_RETRY_AFTER: u32 = 2;

/// What became of a received message.
#[derive(Debug)]
pub enum Delivery {
    Queued,
    /// A retransmission that found no room: its original is queued or answered.
    Dropped,
    /// New work that found no room: send this 503 to this peer.
    Refused(Peer, Vec<u8>),
    /// The core loop is gone.
    Closed,
}

impl InboundQueues {
    pub fn new(under_way: Sender<Inbound>, new_work: Sender<Inbound>) -> InboundQueues {
        InboundQueues {
            under_way,
            new_work,
            dropped: Arc::default(),
            refused: Arc::default(),
            recent: Arc::default(),
            limiter: Arc::new(SourceLimiter::unlimited()),
            limited: Arc::default(),
            limited_dropped: Arc::default(),
        }
    }

    /// Limits each source's request rate (see `limits`).
    pub fn with_limiter(mut self, limiter: SourceLimiter) -> InboundQueues {
        self.limiter = Arc::new(limiter);
        self
    }

    /// Queues a received message. New work over UDP that does not fit is refused with
    /// 503 (a retransmission of it is dropped; see `admission`); the rest waits for
    /// room, which over TCP slows the sending connection down.
    pub async fn deliver(
        &self,
        bytes: Vec<u8>,
        source: Source,
        received: std::time::Instant,
    ) -> Delivery {
        use std::sync::atomic::Ordering::Relaxed;
        let closed = |ok: bool| {
            if ok {
                Delivery::Queued
            } else {
                Delivery::Closed
            }
        };
        // A request over its source's rate is refused before it is parsed; a copy of
        // one queued moments ago is dropped instead (its answer is on the way), and so
        // is what a source sends past its refusals too.
        let verdict = match bytes.starts_with(b"SIP/2.0 ") {
            true => Admit::Yes,
            false => self.limiter.check(source.peer.addr.ip(), received),
        };
        if verdict == Admit::Drop {
            self.limited_dropped.fetch_add(1, Relaxed);
            return Delivery::Dropped;
        }
        if verdict == Admit::Refuse {
            let reliable = source.peer.kind.is_reliable();
            let digest = self.recent.digest(&bytes);
            if !reliable && self.recent.seen(digest, received) {
                self.dropped.fetch_add(1, Relaxed);
                return Delivery::Dropped;
            }
            let tag = format!("{digest:016x}");
            return match crate::sip::endpoint::refuse_unparsed(
                &bytes,
                &source,
                SOURCE_RETRY_AFTER,
                &tag,
            ) {
                Some((to, reply)) => {
                    self.limited.fetch_add(1, Relaxed);
                    Delivery::Refused(to, reply)
                }
                None => {
                    self.dropped.fetch_add(1, Relaxed);
                    Delivery::Dropped
                }
            };
        }
        let continues = crate::sip::triage::continues_work(&bytes);
        if continues || source.peer.kind.is_reliable() {
            let queue = if continues {
                &self.under_way
            } else {
                &self.new_work
            };
            let message = Inbound::Message {
                bytes,
                source,
                received,
            };
            return closed(queue.send(message).await.is_ok());
        }
        let digest = self.recent.digest(&bytes);
        let message = Inbound::Message {
            bytes,
            source,
            received,
        };
        match self.new_work.try_send(message) {
            Ok(()) => {
                self.recent.queued(digest, received);
                Delivery::Queued
            }
            Err(smol::channel::TrySendError::Full(Inbound::Message { bytes, source, .. })) => {
                if self.recent.seen(digest, received) {
                    self.dropped.fetch_add(1, Relaxed);
                    return Delivery::Dropped;
                }
                let tag = format!("{digest:016x}");
                match crate::sip::endpoint::refuse_unparsed(
                    &bytes,
                    &source,
                    REFUSED_RETRY_AFTER,
                    &tag,
                ) {
                    Some((to, reply)) => {
                        self.refused.fetch_add(1, Relaxed);
                        Delivery::Refused(to, reply)
                    }
                    None => {
                        self.dropped.fetch_add(1, Relaxed);
                        Delivery::Dropped
                    }
                }
            }
            Err(smol::channel::TrySendError::Full(_)) => Delivery::Dropped,
            Err(smol::channel::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Reports a failed send (work under way); never waits.
    pub fn send_failed(&self, tx: ClientTxId) -> bool {
        self.under_way.try_send(Inbound::SendFailed { tx }).is_ok()
    }
}

/// Transport limits.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub max_message_size: usize,
    pub max_connections: usize,
    pub tcp_idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// A write to a TCP connection not done by then closes it (a failed delivery).
    pub write_timeout: Duration,
    /// Most TCP connections one source address may hold (`exempt` aside).
    pub max_connections_per_source: usize,
    /// A message begun on a TCP connection and not complete by then closes it.
    pub message_timeout: Duration,
    /// Addresses no per-source limit applies to (`trusted_proxies`).
    pub exempt: Vec<ipnet::IpNet>,
    /// A TLS handshake or WebSocket upgrade not done by then closes the connection.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once (a quarter of them per source address).
    pub max_handshakes: usize,
    /// Origins a WebSocket may be opened from; empty allows any.
    pub ws_origins: Vec<String>,
    /// A quiet WebSocket is pinged this often.
    pub ws_ping_interval: Duration,
}

impl TransportConfig {
    /// The limits a configuration sets (`write_timeout` and `connect_timeout` are not
    /// settings).
    pub fn from_config(c: &crate::config::Config, write_timeout: Duration) -> TransportConfig {
        TransportConfig {
            max_message_size: c.max_message_size,
            max_connections: c.max_connections,
            tcp_idle_timeout: Duration::from_secs(c.tcp_idle_timeout),
            connect_timeout: Duration::from_secs(5),
            write_timeout,
            max_connections_per_source: c.max_connections_per_source,
            message_timeout: Duration::from_secs(c.tcp_message_timeout),
            exempt: c.trusted_proxies.clone(),
            handshake_timeout: Duration::from_millis(c.tls_handshake_timeout_ms),
            max_handshakes: c.tls_max_handshakes,
            ws_origins: c.ws_origins.clone(),
            ws_ping_interval: Duration::from_secs(c.ws_ping_interval),
        }
    }
}

/// The bound sockets and the connection table.
pub struct Transport {
    udp: Vec<Arc<smol::net::UdpSocket>>,
    /// TCP, TLS, WS and WSS listeners.
    listeners: Vec<(TransportKind, smol::net::TcpListener)>,
    conns: Arc<ConnTable>,
    config: TransportConfig,
    tls: TlsContext,
    clock: Arc<dyn Clock>,
}

/// A cloneable handle for sending over TCP; cheap enough to hand to tasks. UDP leaves
/// through [`UdpOut`].
#[derive(Clone)]
pub struct SendHandle {
    ctx: conn::ConnContext,
}

/// Socket buffer we ask the kernel for on each UDP socket. The default (~200 KiB) holds
/// a few hundred messages: a 30 ms pause of the core loop at 10,000 messages/s would
/// drop datagrams and cost the client a 500 ms retransmission. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`.
const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

fn bind_udp(addr: SocketAddr) -> std::io::Result<smol::net::UdpSocket> {
    let sock = std::net::UdpSocket::bind(addr)?;
    let opts = socket2::SockRef::from(&sock);
    // Best effort: a smaller buffer only means less slack.
    if let Err(e) = opts.set_recv_buffer_size(UDP_SOCKET_BUFFER) {
        log::warn!("udp:{addr}: cannot enlarge the receive buffer: {e}");
    }
    if let Err(e) = opts.set_send_buffer_size(UDP_SOCKET_BUFFER) {
        log::warn!("udp:{addr}: cannot enlarge the send buffer: {e}");
    }
    if let Ok(got) = opts.recv_buffer_size() {
        log::debug!("udp:{addr}: receive buffer {got} bytes");
    }
    Ok(smol::net::UdpSocket::from(smol::Async::new(sock)?))
}

/// Connections the kernel queues for a stream listener before we accept them. std's
/// 128 overflows under a connection flood, and a queue overflow drops the next SYN
/// whoever sent it, costing an innocent client a 1 s SYN retransmission (seen in
/// benches/tls_flood.py); the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

fn bind_stream(addr: SocketAddr) -> std::io::Result<smol::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As std does for a listener: a restart rebinds at once over TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let listener: std::net::TcpListener = socket.into();
    Ok(smol::net::TcpListener::from(smol::Async::new(listener)?))
}

impl Transport {
    /// Binds every listen address. Fails with the address that could not be bound.
    /// `tls` holds the credentials `tls:` and `wss:` listeners present.
    pub async fn bind(
        listen: &[(TransportKind, SocketAddr)],
        config: TransportConfig,
        tls: TlsContext,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Transport> {
        let mut udp = Vec::new();
        let mut listeners = Vec::new();
        for (kind, addr) in listen {
            let bound = match kind {
                TransportKind::Udp => bind_udp(*addr).map(|s| udp.push(Arc::new(s))),
                _ => bind_stream(*addr).map(|l| listeners.push((*kind, l))),
            };
            bound.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind {}:{addr}: {e}", kind.name()))
            })?;
        }
        Ok(Transport {
            udp,
            listeners,
            conns: Arc::new(ConnTable::with_limits(
                config.max_connections,
                config.max_connections_per_source,
                config.exempt.clone(),
            )),
            config,
            tls,
            clock,
        })
    }

    /// The addresses actually bound (port 0 resolved), in listen order per kind.
    pub fn local_addrs(&self) -> Vec<(TransportKind, SocketAddr)> {
        let mut out = Vec::new();
        for s in &self.udp {
            if let Ok(a) = s.local_addr() {
                out.push((TransportKind::Udp, a));
            }
        }
        for (kind, l) in &self.listeners {
            if let Ok(a) = l.local_addr() {
                out.push((*kind, a));
            }
        }
        out
    }

    /// Spawns the receive loops and the UDP sending thread. `stop` ends accepting new TCP
    /// connections.
    pub fn start(
        self,
        ex: &Arc<smol::Executor<'static>>,
        queues: InboundQueues,
        stop: smol::channel::Receiver<()>,
    ) -> std::io::Result<(SendHandle, UdpOut)> {
        let udp_out = UdpOut::start(&self.udp, queues.under_way.clone())?;
        for sock in &self.udp {
            // UDP keeps reading through a graceful shutdown so responses to our own
            // requests still arrive; the loop ends with the executor.
            ex.spawn(udp::receive_loop(
                sock.clone(),
                queues.clone(),
                self.clock.clone(),
            ))
            .detach();
        }
        let ctx = conn::ConnContext {
            conns: self.conns.clone(),
            queues,
            config: self.config.clone(),
            clock: self.clock.clone(),
            stop,
            ex: ex.clone(),
            tls: self.tls.clone(),
            handshakes: tls::HandshakeSlots::new(self.config.max_handshakes),
            upgrade: ws::Upgrade {
                origins: self.config.ws_origins.clone(),
            },
        };
        for (kind, listener) in self.listeners {
            ex.spawn(conn::accept_loop(listener, kind, ctx.clone()))
                .detach();
        }
        info!(
            "transport started: {} udp socket(s), connection cap {}",
            self.udp.len(),
            self.config.max_connections
        );
        Ok((SendHandle { ctx }, udp_out))
    }
}

impl SendHandle {
    /// Queues `bytes` for `to` over its connection-oriented transport (its connection,
    /// or a new one where the transport allows). A message that cannot be queued or
    /// delivered is reported as `Inbound::SendFailed` when `tx` is given; this call
    /// never waits.
    pub fn send_stream(&self, to: Peer, bytes: Vec<u8>, tx: Option<ClientTxId>) {
        if let Err(Some(tx)) = conn::send(&self.ctx, to, bytes, tx)
            && !self.ctx.queues.send_failed(tx)
        {
            debug!("send failure of {tx:?} not reported: the core loop is busy");
        }
    }
}

/// Source for a message read from `conn`.
pub(crate) fn stream_source(
    kind: TransportKind,
    peer: SocketAddr,
    local: SocketAddr,
    conn: ConnId,
) -> Source {
    Source {
        peer: Peer {
            kind,
            addr: peer,
            conn: Some(conn),
        },
        local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    fn source(port: u16) -> Source {
        crate::sip::endpoint::loopback_source(port)
    }

    fn publish(n: u32) -> Vec<u8> {
        format!(
            "PUBLISH sip:p{n}@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bK{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:p{n}@example.com>;tag=f{n}\r\n\
             To: <sip:p{n}@example.com>\r\nCall-ID: c{n}\r\nCSeq: 1 PUBLISH\r\n\
             Event: presence\r\nExpires: 60\r\nContent-Type: application/pidf+xml\r\n\
             Content-Length: 5\r\n\r\n<x/>\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_full_new_work_queue_refuses_new_requests_and_drops_their_retransmissions() {
        let (under_way, _uw_rx) = smol::channel::bounded(4);
        let (new_work, nw_rx) = smol::channel::bounded(1);
        let q = InboundQueues::new(under_way, new_work);
        let now = std::time::Instant::now();
        smol::block_on(async {
            assert!(matches!(
                q.deliver(publish(1), source(4000), now).await,
                Delivery::Queued
            ));
            // No room: a new request gets its 503 at once, sent where the rport says.
            let Delivery::Refused(to, reply) = q.deliver(publish(2), source(4001), now).await
            else {
                panic!("not refused");
            };
            assert_eq!(to.addr.port(), 4001);
            let Ok(Message::Response(r)) = Message::parse(&reply) else {
                panic!("not a response");
            };
            assert_eq!(r.status, 503);
            assert_eq!(r.headers.get("Retry-After"), Some("1"));
            assert_eq!(r.headers.get("Call-ID"), Some("c2"));
            let via = r.headers.top_via().unwrap();
            assert_eq!(via.rport(), Some(Some(4001)));
            // A copy of the refused request is refused again, with the same To tag
            // (RFC 3261 §8.2.7).
            let Delivery::Refused(_, again) = q.deliver(publish(2), source(4001), now).await else {
                panic!("not refused");
            };
            let Ok(Message::Response(again)) = Message::parse(&again) else {
                panic!("not a response");
            };
            assert_eq!(
                again.headers.to().unwrap().tag(),
                r.headers.to().unwrap().tag()
            );
            // A CANCEL gets no stateless answer.
            let cancel = String::from_utf8(publish(3))
                .unwrap()
                .replace("PUBLISH", "CANCEL");
            assert!(matches!(
                q.deliver(cancel.into_bytes(), source(4001), now).await,
                Delivery::Dropped
            ));
            // The queued request's retransmission must not get a 503 that contradicts
            // the answer the queued original will get: dropped.
            assert!(matches!(
                q.deliver(publish(1), source(4000), now).await,
                Delivery::Dropped
            ));
            // Bytes that are no request get nothing.
            assert!(matches!(
                q.deliver(b"not sip at all".to_vec(), source(4002), now)
                    .await,
                Delivery::Dropped
            ));
            // Work under way has its own queue.
            assert!(matches!(
                q.deliver(b"SIP/2.0 200 OK\r\n\r\n".to_vec(), source(4003), now)
                    .await,
                Delivery::Queued
            ));
            assert_eq!(q.refused.load(std::sync::atomic::Ordering::Relaxed), 2);
            assert_eq!(q.dropped.load(std::sync::atomic::Ordering::Relaxed), 3);
            // Room again: the next new request is queued.
            nw_rx.recv().await.unwrap();
            assert!(matches!(
                q.deliver(publish(3), source(4000), now).await,
                Delivery::Queued
            ));
        });
    }
}
