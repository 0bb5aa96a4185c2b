//! Connections, whatever carries them (TCP, TLS, WebSocket, secure WebSocket): the
//! accept loops, one reader task per connection (RFC 3261 §18.3 Content-Length framing
//! through `StreamFramer` on byte streams, one message per frame on WebSockets, RFC 7118
//! §5), idle timeouts, caps on connections and on handshakes in progress, and the
//! connection table that lets requests to a client reuse the connection it came in on.
//!
//! Each connection has a bounded outbox and one writer task. A send that would overfill
//! the outbox fails at once (a NOTIFY's failure goes back to its transaction), the
//! connection's reader stops reading until the outbox drains (a client that sends but
//! never reads is slowed, not buffered), and a write that misses its deadline closes the
//! connection and fails everything queued on it. One slow peer never holds anyone else.
//! When a connection ends, the core loop is told (`Inbound::Closed`), so subscriptions
//! that can only be reached through it can end too.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use event_listener::Event;
use futures_lite::{AsyncRead, AsyncWrite, StreamExt};
use log::{debug, info, warn};
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use crate::clock::Clock;
use crate::sip::endpoint::{ClientTxId, ConnId, Peer, TransportKind};
use crate::sip::framing::{Frame, StreamFramer};
use crate::transport::tls::{HandshakeSlots, TlsContext};
use crate::transport::ws::{self, Received, Upgrade};
use crate::transport::{Inbound, InboundQueues, TransportConfig, stream_source};

/// Bytes one connection's outbox may hold; a send beyond it fails.
pub(super) const OUTBOX_BYTES: usize = 256 * 1024;

/// One message waiting to be written.
struct Out {
    bytes: Vec<u8>,
    tx: Option<ClientTxId>,
}

/// A connection's outbox: what waits for its writer task.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    /// The writer has something to write (or the outbox closed).
    ready: Event,
    /// The writer made room (or the outbox closed).
    drained: Event,
}

#[derive(Default)]
struct OutboxState {
    queue: VecDeque<Out>,
    bytes: usize,
    closed: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `out`; gives it back when the outbox is closed or full.
    fn push(&self, out: Out) -> Result<(), Out> {
        let mut st = self.lock();
        if st.closed || st.bytes + out.bytes.len() > OUTBOX_BYTES {
            return Err(out);
        }
        st.bytes += out.bytes.len();
        st.queue.push_back(out);
        drop(st);
        self.ready.notify(1);
        Ok(())
    }

    fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Closes the outbox; returns what was still queued.
    fn close(&self) -> Vec<Out> {
        let mut st = self.lock();
        st.closed = true;
        st.bytes = 0;
        let rest = st.queue.drain(..).collect();
        drop(st);
        self.ready.notify(usize::MAX);
        self.drained.notify(usize::MAX);
        rest
    }
}

struct Conn {
    kind: TransportKind,
    addr: SocketAddr,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<ConnId, Conn>,
    by_addr: HashMap<(TransportKind, SocketAddr), ConnId>,
    /// Open connections per remote address (port aside).
    per_ip: HashMap<std::net::IpAddr, usize>,
    /// Addresses a connection is being opened to, with what waits to be sent on it.
    connecting: HashMap<(TransportKind, SocketAddr), Arc<Outbox>>,
    next: u64,
}

/// Open connections, by id and by remote address. Connections being opened count
/// against the cap like open ones, so unreachable destinations cannot use up the
/// descriptors that inbound connections need.
pub struct ConnTable {
    inner: Mutex<Inner>,
    max: usize,
    /// Most connections one remote address may hold open (exempt addresses aside).
    per_source: usize,
    exempt: Vec<ipnet::IpNet>,
}

impl ConnTable {
    pub fn with_limits(max: usize, per_source: usize, exempt: Vec<ipnet::IpNet>) -> ConnTable {
        ConnTable {
            inner: Mutex::new(Inner::default()),
            max,
            per_source: per_source.max(1),
            exempt,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection with `outbox` unless a cap is reached: the total (an
    /// outbound connection already holds its place, `outbound`), or for an inbound one,
    /// its source address's share.
    fn insert(
        &self,
        kind: TransportKind,
        addr: SocketAddr,
        outbox: Arc<Outbox>,
        outbound: bool,
    ) -> Result<ConnId, &'static str> {
        let mut inner = self.lock();
        let pending = if outbound { 0 } else { inner.connecting.len() };
        if inner.by_id.len() + pending >= self.max {
            return Err("connection cap reached");
        }
        let ip = addr.ip().to_canonical();
        let held = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if !outbound && held >= self.per_source && !self.exempt.iter().any(|n| n.contains(&ip)) {
            return Err("per-source connection cap reached");
        }
        inner.next += 1;
        let id = ConnId(inner.next);
        inner.by_id.insert(id, Conn { kind, addr, outbox });
        inner.by_addr.insert((kind, addr), id);
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        Ok(id)
    }

    fn remove(&self, id: ConnId) {
        let mut inner = self.lock();
        let Some(c) = inner.by_id.remove(&id) else {
            return;
        };
        if inner.by_addr.get(&(c.kind, c.addr)) == Some(&id) {
            inner.by_addr.remove(&(c.kind, c.addr));
        }
        let ip = c.addr.ip().to_canonical();
        if let Some(n) = inner.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&ip);
            }
        }
    }

    /// The outbox to use for `peer`: its connection's if still open, else any
    /// connection's of its transport to its address, else one being opened to it
    /// (`true`: this call started that, so the caller opens the connection). `None` when
    /// no connection may be opened: the cap counts those being opened too, and a
    /// WebSocket client is never connected to.
    fn outbox_for(&self, peer: &Peer) -> Option<(Arc<Outbox>, bool)> {
        let mut inner = self.lock();
        let key = (peer.kind, peer.addr);
        let own = peer
            .conn
            .filter(|id| inner.by_id.get(id).is_some_and(|c| c.kind == peer.kind));
        // A WebSocket client is reached over its own connection or not at all: another
        // connection from its address (a NAT, a proxy) may be someone else's.
        let id = match peer.kind.inbound_only() {
            true => own,
            false => own.or_else(|| inner.by_addr.get(&key).copied()),
        };
        if let Some(c) = id.and_then(|id| inner.by_id.get(&id)) {
            return Some((c.outbox.clone(), false));
        }
        if let Some(o) = inner.connecting.get(&key) {
            return Some((o.clone(), false));
        }
        if peer.kind.inbound_only() {
            return None;
        }
        // Connections being opened may take a quarter of the cap at most: destinations
        // that never answer cannot crowd out the clients that connect to us.
        if inner.by_id.len() + inner.connecting.len() >= self.max
            || inner.connecting.len() >= (self.max / 4).max(1)
        {
            return None;
        }
        let o = Arc::new(Outbox::default());
        inner.connecting.insert(key, o.clone());
        Some((o, true))
    }

    fn connected(&self, kind: TransportKind, addr: SocketAddr) {
        self.lock().connecting.remove(&(kind, addr));
    }
}

/// Everything a connection task needs.
#[derive(Clone)]
pub struct ConnContext {
    pub conns: Arc<ConnTable>,
    pub queues: InboundQueues,
    pub config: TransportConfig,
    pub clock: Arc<dyn Clock>,
    pub stop: Receiver<()>,
    pub ex: Arc<smol::Executor<'static>>,
    pub tls: TlsContext,
    pub handshakes: Arc<HandshakeSlots>,
    pub upgrade: Upgrade,
}

/// A type-erased byte stream: TCP, or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}
type BoxIo = Box<dyn Io>;

/// A connection's two directions, as its transport frames messages.
type Link = (Reader, Writer);

/// The two directions of a byte stream (TCP, TLS): SIP framed by Content-Length.
fn stream_link<R, W>(read: R, write: W) -> Link
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    (
        Reader::Stream(Box::new(read)),
        Writer::Stream(Box::new(write)),
    )
}

/// What reads a connection: a byte stream, or a WebSocket (one SIP message per data
/// frame: WS, WSS).
enum Reader {
    Stream(Box<dyn AsyncRead + Unpin + Send>),
    Ws(WebSocketReceiver<BoxIo>),
}

/// What writes a connection, as [`Reader`] reads it.
enum Writer {
    Stream(Box<dyn AsyncWrite + Unpin + Send>),
    Ws(WebSocketSender<BoxIo>),
}

impl Writer {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Stream(w) => {
                w.write_all(bytes).await?;
                w.flush().await
            }
            Writer::Ws(w) => w
                .send(ws::frame(bytes.to_vec()))
                .await
                .map_err(std::io::Error::other),
        }
    }

    /// A WebSocket ping (a byte stream has none: its clients ping us, RFC 5626).
    async fn ping(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Stream(_) => Ok(()),
            Writer::Ws(w) => w
                .send(async_tungstenite::tungstenite::Message::Ping(
                    Vec::new().into(),
                ))
                .await
                .map_err(std::io::Error::other),
        }
    }

    async fn close(&mut self) {
        match self {
            Writer::Stream(w) => {
                let _ = w.close().await;
            }
            Writer::Ws(w) => {
                let _ = w.close(None).await;
            }
        }
    }
}

/// A connection being opened or accepted, before its handshakes.
struct Pending {
    kind: TransportKind,
    peer: SocketAddr,
    id: ConnId,
    outbox: Arc<Outbox>,
}

pub(super) async fn accept_loop(
    listener: smol::net::TcpListener,
    kind: TransportKind,
    ctx: ConnContext,
) {
    let local = listener.local_addr().ok();
    let name = kind.name();
    loop {
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                let _ = ctx.stop.recv().await;
                None
            })
            .await;
        match accepted {
            None => {
                debug!("{name}:{local:?}: stopped accepting");
                return;
            }
            Some(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                // A handshake needs a place before the connection counts as open: one
                // source cannot take them all with connections it never completes.
                let slot = match kind {
                    TransportKind::Udp | TransportKind::Tcp => None,
                    _ => match ctx.handshakes.take(peer.ip(), exempt(&ctx, peer)) {
                        Some(slot) => Some(slot),
                        None => {
                            debug!("{name}: handshakes in progress at their cap, refusing {peer}");
                            continue;
                        }
                    },
                };
                let outbox = Arc::new(Outbox::default());
                let id = match ctx.conns.insert(kind, peer, outbox.clone(), false) {
                    Ok(id) => id,
                    Err(why) => {
                        debug!("{name}: {why}, refusing {peer}");
                        continue;
                    }
                };
                debug!("{name}: accepted {peer} as {id:?}");
                let pending = Pending {
                    kind,
                    peer,
                    id,
                    outbox,
                };
                match slot {
                    None => {
                        let link = stream_link(stream.clone(), stream.clone());
                        run_connection(stream, link, pending, &ctx);
                    }
                    Some(slot) => {
                        let ctx2 = ctx.clone();
                        ctx.ex
                            .spawn(async move {
                                let link = handshake(&stream, &pending, &ctx2).await;
                                drop(slot);
                                match link {
                                    Ok(link) => run_connection(stream, link, pending, &ctx2),
                                    Err(why) => {
                                        info!("{name}: handshake with {peer} failed: {why}");
                                        abandon(&stream, &pending, &ctx2);
                                    }
                                }
                            })
                            .detach();
                    }
                }
            }
            Some(Err(e)) => {
                warn!("{name}:{local:?}: accept failed: {e}");
                // Out of descriptors: back off a little instead of spinning.
                let deadline = ctx.clock.now() + std::time::Duration::from_millis(50);
                ctx.clock.sleep_until(deadline).await;
            }
        }
    }
}

/// Whether `peer` is a trusted proxy (no per-source limits).
fn exempt(ctx: &ConnContext, peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    ctx.config.exempt.iter().any(|n| n.contains(&ip))
}

/// The server side of an accepted connection's handshakes (TLS, then the WebSocket
/// upgrade), within `handshake_timeout`.
async fn handshake(stream: &TcpStream, p: &Pending, ctx: &ConnContext) -> Result<Link, String> {
    let deadline = ctx.clock.now() + ctx.config.handshake_timeout;
    async {
        let io: BoxIo = match p.kind {
            TransportKind::Tls | TransportKind::Wss => {
                let acceptor = ctx.tls.acceptor().ok_or("no TLS certificate loaded")?;
                let tls = acceptor
                    .accept(stream.clone())
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                Box::new(tls)
            }
            _ => Box::new(stream.clone()),
        };
        match p.kind {
            TransportKind::Ws | TransportKind::Wss => {
                let mut refused = None;
                let on = ws::OnUpgrade {
                    upgrade: &ctx.upgrade,
                    refused: &mut refused,
                };
                let socket = async_tungstenite::accept_hdr_async_with_config(
                    io,
                    on,
                    Some(ws::config(ctx.config.max_message_size)),
                )
                .await;
                match (socket, refused) {
                    (_, Some(why)) => Err(format!("upgrade refused: {why}")),
                    (Err(e), None) => Err(format!("WebSocket upgrade: {e}")),
                    (Ok(socket), None) => {
                        let (write, read) = socket.split();
                        Ok((Reader::Ws(read), Writer::Ws(write)))
                    }
                }
            }
            _ => {
                let (read, write) = futures_lite::io::split(io);
                Ok(stream_link(read, write))
            }
        }
    }
    .or(async {
        ctx.clock.sleep_until(deadline).await;
        Err(format!(
            "not done within {:?}",
            ctx.config.handshake_timeout
        ))
    })
    .await
}

/// Forgets a connection whose handshake failed and fails what was queued on it.
fn abandon(stream: &TcpStream, p: &Pending, ctx: &ConnContext) {
    ctx.conns.remove(p.id);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    fail(ctx, p.outbox.close());
}

enum Read {
    Data(usize),
    Message(Received),
    Closed,
    Idle,
}

/// Starts a connection's reader and writer tasks. `socket` is the TCP stream under
/// whatever `link` runs over: shutting it down ends both tasks.
fn run_connection(socket: TcpStream, (reader, writer): Link, p: Pending, ctx: &ConnContext) {
    ctx.ex
        .spawn(write_loop(
            writer,
            socket.clone(),
            p.peer,
            p.id,
            p.outbox.clone(),
            ctx.clone(),
        ))
        .detach();
    ctx.ex
        .spawn(read_loop(reader, socket, p, ctx.clone()))
        .detach();
}

/// Writes the outbox in order, each write within the deadline; a failed or late write
/// closes the connection and fails what was queued. A quiet WebSocket is pinged every
/// `ws_ping_interval`; its pong (or anything else it sends) keeps it from going idle.
async fn write_loop(
    mut writer: Writer,
    socket: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    outbox: Arc<Outbox>,
    ctx: ConnContext,
) {
    let pings = matches!(writer, Writer::Ws(_));
    loop {
        let ping_at = ctx.clock.now() + ctx.config.ws_ping_interval;
        let next = loop {
            let listener = outbox.ready.listen();
            let popped = {
                let mut st = outbox.lock();
                match st.closed {
                    true => Err(()),
                    false => Ok(st.queue.pop_front()),
                }
            };
            let Ok(popped) = popped else {
                writer.close().await;
                return;
            };
            match popped {
                Some(out) => break Some(out),
                None if pings => {
                    let woke = async {
                        listener.await;
                        true
                    }
                    .or(async {
                        ctx.clock.sleep_until(ping_at).await;
                        false
                    })
                    .await;
                    if !woke {
                        break None;
                    }
                }
                None => listener.await,
            }
        };
        let deadline = ctx.clock.now() + ctx.config.write_timeout;
        let size = next.as_ref().map_or(0, |o| o.bytes.len());
        let written = async {
            Some(match &next {
                Some(out) => writer.write(&out.bytes).await,
                None => writer.ping().await,
            })
        }
        .or(async {
            ctx.clock.sleep_until(deadline).await;
            None
        })
        .await;
        if size > 0 {
            let mut st = outbox.lock();
            st.bytes = st.bytes.saturating_sub(size);
        }
        outbox.drained.notify(usize::MAX);
        match written {
            Some(Ok(())) => {}
            failed => {
                match failed {
                    Some(Err(e)) => debug!("write to {peer} failed: {e}"),
                    _ => info!("write to {peer} missed its deadline; closing"),
                }
                ctx.conns.remove(id);
                let _ = socket.shutdown(std::net::Shutdown::Both);
                fail(&ctx, next.into_iter().chain(outbox.close()));
                return;
            }
        }
    }
}

/// Reports the client transactions of messages that could not be sent.
fn fail(ctx: &ConnContext, lost: impl IntoIterator<Item = Out>) {
    for out in lost {
        if let Some(tx) = out.tx
            && !ctx.queues.send_failed(tx)
        {
            // The transaction times out instead.
            debug!("send failure of {tx:?} not reported: the core loop is busy");
        }
    }
}

/// Queues one received message for the core loop; `false` when the core loop is gone.
async fn deliver(bytes: Vec<u8>, p: &Pending, local: SocketAddr, ctx: &ConnContext) -> bool {
    let source = stream_source(p.kind, p.peer, local, p.id);
    let received = ctx.clock.now();
    match ctx.queues.deliver(bytes, source, received).await {
        crate::transport::Delivery::Closed => false,
        crate::transport::Delivery::Refused(_, reply) => {
            let out = Out {
                bytes: reply,
                tx: None,
            };
            if p.outbox.push(out).is_err() {
                debug!("503 to {} dropped: outbox full", p.peer);
            }
            true
        }
        crate::transport::Delivery::Queued | crate::transport::Delivery::Dropped => true,
    }
}

async fn read_loop(mut reader: Reader, socket: TcpStream, p: Pending, ctx: ConnContext) {
    let local = socket.local_addr().unwrap_or(p.peer);
    let peer = p.peer;
    let outbox = p.outbox.clone();
    let mut framer = StreamFramer::new(ctx.config.max_message_size);
    let mut buf = vec![0u8; 16 * 1024];
    // When the message now being received began (its first byte): it must be complete
    // within `message_timeout`, so a header sent a byte a second cannot hold a
    // connection for ever.
    let mut begun: Option<std::time::Instant> = None;
    // Whether anything was handed to the core loop: only then can a subscription be
    // bound to this connection, and its close be worth telling.
    let mut delivered = false;
    'conn: loop {
        // A peer whose answers pile up unread is not read from until they drain.
        while outbox.bytes() > OUTBOX_BYTES / 2 {
            let listener = outbox.drained.listen();
            if outbox.bytes() <= OUTBOX_BYTES / 2 {
                break;
            }
            let closed = outbox.lock().closed;
            if closed {
                break 'conn;
            }
            listener.await;
        }
        let idle_at = match begun {
            Some(at) => {
                (at + ctx.config.message_timeout).min(ctx.clock.now() + ctx.config.tcp_idle_timeout)
            }
            None => ctx.clock.now() + ctx.config.tcp_idle_timeout,
        };
        let read = async {
            match &mut reader {
                Reader::Stream(r) => match r.read(&mut buf).await {
                    Ok(0) | Err(_) => Read::Closed,
                    Ok(n) => Read::Data(n),
                },
                Reader::Ws(r) => match r.next().await {
                    Some(Ok(m)) => Read::Message(ws::received(m)),
                    Some(Err(e)) => {
                        debug!("ws: {peer}: {e}");
                        Read::Closed
                    }
                    None => Read::Closed,
                },
            }
        }
        .or(async {
            ctx.clock.sleep_until(idle_at).await;
            Read::Idle
        })
        .await;
        let n = match read {
            Read::Data(n) => n,
            Read::Message(Received::Sip(bytes)) => {
                delivered = true;
                if !deliver(bytes, &p, local, &ctx).await {
                    break 'conn;
                }
                continue;
            }
            Read::Message(Received::Control) => continue,
            Read::Message(Received::Close) | Read::Closed => break,
            Read::Idle if begun.is_some() => {
                info!(
                    "closing {peer}: a message begun {:?} ago is still incomplete",
                    ctx.config.message_timeout
                );
                break;
            }
            Read::Idle => {
                debug!("closing idle connection {peer}");
                break;
            }
        };
        if begun.is_none() {
            begun = Some(ctx.clock.now());
        }
        framer.push(buf.get(..n).unwrap_or_default());
        let mut completed = false;
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    completed = true;
                    delivered = true;
                    if !deliver(bytes, &p, local, &ctx).await {
                        break 'conn;
                    }
                }
                // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
                Ok(Some(Frame::Keepalive)) => {
                    completed = true;
                    let pong = Out {
                        bytes: b"\r\n".to_vec(),
                        tx: None,
                    };
                    if outbox.push(pong).is_err() {
                        debug!("pong to {peer} dropped: outbox full");
                    }
                }
                Ok(None) => {
                    // Whatever is left is the start of the next message: it began in
                    // this read if a message ended in it, else when the old one began.
                    begun = match (framer.buffered() > 0, completed) {
                        (false, _) => None,
                        (true, true) => Some(ctx.clock.now()),
                        (true, false) => begun,
                    };
                    break;
                }
                Err(e) => {
                    // The stream cannot be re-synchronised after a framing error.
                    info!("closing {peer}: {e}");
                    break 'conn;
                }
            }
        }
    }
    ctx.conns.remove(p.id);
    fail(&ctx, outbox.close());
    let _ = socket.shutdown(std::net::Shutdown::Both);
    // Subscriptions that can only be reached through this connection may end now.
    if delivered
        && ctx
            .queues
            .under_way
            .send(Inbound::Closed { conn: p.id })
            .await
            .is_err()
    {
        debug!("connection {:?} closed after the core loop", p.id);
    }
}

/// Queues `bytes` for `to`: on its connection, or on any connection of its transport to
/// its address, or on one opened now. `Err` (with the client transaction to fail) when
/// the outbox is full or closed or no connection may be opened (a WebSocket client's is
/// gone); a connection that cannot be opened fails its messages later.
pub(super) fn send(
    ctx: &ConnContext,
    to: Peer,
    bytes: Vec<u8>,
    tx: Option<ClientTxId>,
) -> Result<(), Option<ClientTxId>> {
    let Some((outbox, open)) = ctx.conns.outbox_for(&to) else {
        debug!("not connecting to {to}: connection cap reached or inbound-only transport");
        return Err(tx);
    };
    outbox.push(Out { bytes, tx }).map_err(|out| out.tx)?;
    if open {
        ctx.ex
            .spawn(connect(to.kind, to.addr, outbox, ctx.clone()))
            .detach();
    }
    Ok(())
}

/// Opens a connection to `addr` for what waits in `outbox` (TLS: the peer's
/// certificate must be valid for `addr`).
async fn connect(kind: TransportKind, addr: SocketAddr, outbox: Arc<Outbox>, ctx: ConnContext) {
    let deadline = ctx.clock.now() + ctx.config.connect_timeout;
    let opened = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let link = match kind {
            TransportKind::Tls => {
                let tls = ctx
                    .tls
                    .connector()
                    .connect(crate::transport::tls::server_name(addr), stream.clone())
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                let (read, write) = futures_lite::io::split(tls);
                stream_link(read, write)
            }
            _ => stream_link(stream.clone(), stream.clone()),
        };
        Ok::<_, String>((stream, link))
    }
    .or(async {
        ctx.clock.sleep_until(deadline).await;
        Err(format!(
            "not connected within {:?}",
            ctx.config.connect_timeout
        ))
    })
    .await;
    let (stream, link) = match opened {
        Ok(opened) => opened,
        Err(why) => {
            ctx.conns.connected(kind, addr);
            info!("cannot connect to {}:{addr}: {why}", kind.name());
            fail(&ctx, outbox.close());
            return;
        }
    };
    // Registered before it stops counting as being opened: the cap never lets a
    // connection in between.
    let inserted = ctx.conns.insert(kind, addr, outbox.clone(), true);
    ctx.conns.connected(kind, addr);
    let id = match inserted {
        Ok(id) => id,
        Err(why) => {
            warn!("{why}, not connecting to {addr}");
            fail(&ctx, outbox.close());
            return;
        }
    };
    let pending = Pending {
        kind,
        peer: addr,
        id,
        outbox,
    };
    run_connection(stream, link, pending, &ctx);
}
