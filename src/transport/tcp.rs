//! TCP: the accept loop, one reader task per connection (RFC 3261 §18.3 framing through
//! `StreamFramer`), idle timeouts, a cap on connections, and the connection table that
//! lets requests to a client reuse the connection it came in on.
//!
//! Each connection has a bounded outbox and one writer task. A send that would overfill
//! the outbox fails at once (a NOTIFY's failure goes back to its transaction), the
//! connection's reader stops reading until the outbox drains (a client that sends but
//! never reads is slowed, not buffered), and a write that misses its deadline closes the
//! connection and fails everything queued on it. One slow peer never holds anyone else.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use event_listener::Event;
use log::{debug, info, warn};
use smol::channel::Receiver;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use crate::clock::Clock;
use crate::sip::endpoint::{ClientTxId, ConnId, Peer};
use crate::sip::framing::{Frame, StreamFramer};
use crate::transport::{InboundQueues, TransportConfig, stream_source};

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
    addr: SocketAddr,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<ConnId, Conn>,
    by_addr: HashMap<SocketAddr, ConnId>,
    /// Open connections per remote address (port aside).
    per_ip: HashMap<std::net::IpAddr, usize>,
    /// Addresses a connection is being opened to, with what waits to be sent on it.
    connecting: HashMap<SocketAddr, Arc<Outbox>>,
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
        inner.by_id.insert(id, Conn { addr, outbox });
        inner.by_addr.insert(addr, id);
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        Ok(id)
    }

    fn remove(&self, id: ConnId) {
        let mut inner = self.lock();
        let Some(c) = inner.by_id.remove(&id) else {
            return;
        };
        if inner.by_addr.get(&c.addr) == Some(&id) {
            inner.by_addr.remove(&c.addr);
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
    /// connection's to its address, else one being opened to it (`true`: this call
    /// started that, so the caller opens the connection). `None` when no connection
    /// may be opened: the cap counts those being opened too.
    fn outbox_for(&self, peer: &Peer) -> Option<(Arc<Outbox>, bool)> {
        let mut inner = self.lock();
        let id = peer
            .conn
            .filter(|id| inner.by_id.contains_key(id))
            .or_else(|| inner.by_addr.get(&peer.addr).copied());
        if let Some(c) = id.and_then(|id| inner.by_id.get(&id)) {
            return Some((c.outbox.clone(), false));
        }
        if let Some(o) = inner.connecting.get(&peer.addr) {
            return Some((o.clone(), false));
        }
        // Connections being opened may take a quarter of the cap at most: destinations
        // that never answer cannot crowd out the clients that connect to us.
        if inner.by_id.len() + inner.connecting.len() >= self.max
            || inner.connecting.len() >= (self.max / 4).max(1)
        {
            return None;
        }
        let o = Arc::new(Outbox::default());
        inner.connecting.insert(peer.addr, o.clone());
        Some((o, true))
    }

    fn connected(&self, addr: SocketAddr) {
        self.lock().connecting.remove(&addr);
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
}

pub(super) async fn accept_loop(listener: smol::net::TcpListener, ctx: ConnContext) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                let _ = ctx.stop.recv().await;
                None
            })
            .await;
        match accepted {
            None => {
                debug!("tcp:{local:?}: stopped accepting");
                return;
            }
            Some(Ok((stream, peer))) => {
                let outbox = Arc::new(Outbox::default());
                let id = match ctx.conns.insert(peer, outbox.clone(), false) {
                    Ok(id) => id,
                    Err(why) => {
                        debug!("tcp: {why}, refusing {peer}");
                        continue;
                    }
                };
                debug!("tcp: accepted {peer} as {id:?}");
                run_connection(stream, peer, id, outbox, &ctx);
            }
            Some(Err(e)) => {
                warn!("tcp:{local:?}: accept failed: {e}");
                // Out of descriptors: back off a little instead of spinning.
                let deadline = ctx.clock.now() + std::time::Duration::from_millis(50);
                ctx.clock.sleep_until(deadline).await;
            }
        }
    }
}

enum Read {
    Data(usize),
    Closed,
    Idle,
}

/// Starts a connection's reader and writer tasks.
fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    outbox: Arc<Outbox>,
    ctx: &ConnContext,
) {
    ctx.ex
        .spawn(write_loop(
            stream.clone(),
            peer,
            id,
            outbox.clone(),
            ctx.clone(),
        ))
        .detach();
    ctx.ex
        .spawn(read_loop(stream, peer, id, outbox, ctx.clone()))
        .detach();
}

/// Writes the outbox in order, each write within the deadline; a failed or late write
/// closes the connection and fails what was queued.
async fn write_loop(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    outbox: Arc<Outbox>,
    ctx: ConnContext,
) {
    loop {
        let out = loop {
            let listener = outbox.ready.listen();
            let popped = {
                let mut st = outbox.lock();
                if st.closed {
                    return;
                }
                st.queue.pop_front()
            };
            match popped {
                Some(out) => break out,
                None => listener.await,
            }
        };
        let deadline = ctx.clock.now() + ctx.config.write_timeout;
        let written = async { Some(stream.write_all(&out.bytes).await) }
            .or(async {
                ctx.clock.sleep_until(deadline).await;
                None
            })
            .await;
        {
            let mut st = outbox.lock();
            st.bytes = st.bytes.saturating_sub(out.bytes.len());
        }
        outbox.drained.notify(usize::MAX);
        match written {
            Some(Ok(())) => {}
            failed => {
                match failed {
                    Some(Err(e)) => debug!("tcp: write to {peer} failed: {e}"),
                    _ => info!("tcp: write to {peer} missed its deadline; closing"),
                }
                ctx.conns.remove(id);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                fail(&ctx, std::iter::once(out).chain(outbox.close()));
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

async fn read_loop(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    outbox: Arc<Outbox>,
    ctx: ConnContext,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let mut framer = StreamFramer::new(ctx.config.max_message_size);
    let mut buf = vec![0u8; 16 * 1024];
    // When the message now being received began (its first byte): it must be complete
    // within `message_timeout`, so a header sent a byte a second cannot hold a
    // connection for ever.
    let mut begun: Option<std::time::Instant> = None;
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
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => Read::Closed,
                Ok(n) => Read::Data(n),
            }
        }
        .or(async {
            ctx.clock.sleep_until(idle_at).await;
            Read::Idle
        })
        .await;
        let n = match read {
            Read::Data(n) => n,
            Read::Closed => break,
            Read::Idle if begun.is_some() => {
                info!(
                    "tcp: closing {peer}: a message begun {:?} ago is still incomplete",
                    ctx.config.message_timeout
                );
                break;
            }
            Read::Idle => {
                debug!("tcp: closing idle connection {peer}");
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
                    let source = stream_source(peer, local, id);
                    let received = ctx.clock.now();
                    match ctx.queues.deliver(bytes, source, received).await {
                        crate::transport::Delivery::Closed => break 'conn,
                        crate::transport::Delivery::Refused(_, reply) => {
                            let out = Out {
                                bytes: reply,
                                tx: None,
                            };
                            if outbox.push(out).is_err() {
                                debug!("tcp: 503 to {peer} dropped: outbox full");
                            }
                        }
                        crate::transport::Delivery::Queued
                        | crate::transport::Delivery::Dropped => {}
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
                        debug!("tcp: pong to {peer} dropped: outbox full");
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
                    info!("tcp: closing {peer}: {e}");
                    break 'conn;
                }
            }
        }
    }
    ctx.conns.remove(id);
    fail(&ctx, outbox.close());
    let _ = stream.close().await;
}

/// Queues `bytes` for `to`: on its connection, or on any connection to its address, or
/// on one opened now. `Err` (with the client transaction to fail) when the outbox is
/// full or closed; a connection that cannot be opened fails its messages later.
pub(super) fn send(
    ctx: &ConnContext,
    to: Peer,
    bytes: Vec<u8>,
    tx: Option<ClientTxId>,
) -> Result<(), Option<ClientTxId>> {
    let Some((outbox, open)) = ctx.conns.outbox_for(&to) else {
        debug!("tcp: not connecting to {}: connection cap reached", to.addr);
        return Err(tx);
    };
    outbox.push(Out { bytes, tx }).map_err(|out| out.tx)?;
    if open {
        ctx.ex.spawn(connect(to.addr, outbox, ctx.clone())).detach();
    }
    Ok(())
}

/// Opens a connection to `addr` for what waits in `outbox`.
async fn connect(addr: SocketAddr, outbox: Arc<Outbox>, ctx: ConnContext) {
    let deadline = ctx.clock.now() + ctx.config.connect_timeout;
    let stream = async { Some(TcpStream::connect(addr).await) }
        .or(async {
            ctx.clock.sleep_until(deadline).await;
            None
        })
        .await;
    let stream = match stream {
        Some(Ok(s)) => s,
        failed => {
            ctx.conns.connected(addr);
            debug!("tcp: cannot connect to {addr}: {failed:?}");
            fail(&ctx, outbox.close());
            return;
        }
    };
    // Registered before it stops counting as being opened: the cap never lets a
    // connection in between.
    let inserted = ctx.conns.insert(addr, outbox.clone(), true);
    ctx.conns.connected(addr);
    let id = match inserted {
        Ok(id) => id,
        Err(why) => {
            warn!("tcp: {why}, not connecting to {addr}");
            fail(&ctx, outbox.close());
            return;
        }
    };
    run_connection(stream, addr, id, outbox, &ctx);
}
