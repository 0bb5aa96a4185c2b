//! TCP: the accept loop, one reader task per connection (RFC 3261 §18.3 framing through
//! `StreamFramer`), idle timeouts, a cap on connections, and the connection table that
//! lets requests to a client reuse the connection it came in on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use log::{debug, info, warn};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use crate::clock::Clock;
use crate::sip::endpoint::{ConnId, Peer};
use crate::sip::framing::{Frame, StreamFramer};
use crate::transport::{Inbound, TransportConfig, stream_source};

type Writer = Arc<smol::lock::Mutex<TcpStream>>;

struct Conn {
    addr: SocketAddr,
    writer: Writer,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<ConnId, Conn>,
    by_addr: HashMap<SocketAddr, ConnId>,
    next: u64,
}

/// Open connections, by id and by remote address.
pub struct ConnTable {
    inner: Mutex<Inner>,
    max: usize,
}

impl ConnTable {
    pub fn new(max: usize) -> ConnTable {
        ConnTable {
            inner: Mutex::new(Inner::default()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection unless the cap is reached.
    fn insert(&self, addr: SocketAddr, stream: &TcpStream) -> Option<ConnId> {
        let mut inner = self.lock();
        if inner.by_id.len() >= self.max {
            return None;
        }
        inner.next += 1;
        let id = ConnId(inner.next);
        inner.by_id.insert(
            id,
            Conn {
                addr,
                writer: Arc::new(smol::lock::Mutex::new(stream.clone())),
            },
        );
        inner.by_addr.insert(addr, id);
        Some(id)
    }

    fn remove(&self, id: ConnId) {
        let mut inner = self.lock();
        if let Some(c) = inner.by_id.remove(&id)
            && inner.by_addr.get(&c.addr) == Some(&id)
        {
            inner.by_addr.remove(&c.addr);
        }
    }

    fn writer(&self, id: ConnId) -> Option<Writer> {
        self.lock().by_id.get(&id).map(|c| c.writer.clone())
    }

    /// The connection to use for `peer`: its own if still open, else any to its address.
    fn find(&self, peer: &Peer) -> Option<(ConnId, Writer)> {
        let inner = self.lock();
        let id = peer
            .conn
            .filter(|id| inner.by_id.contains_key(id))
            .or_else(|| inner.by_addr.get(&peer.addr).copied())?;
        inner.by_id.get(&id).map(|c| (id, c.writer.clone()))
    }
}

/// Everything a connection task needs.
#[derive(Clone)]
pub struct ConnContext {
    pub conns: Arc<ConnTable>,
    pub events: Sender<Inbound>,
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
                let Some(id) = ctx.conns.insert(peer, &stream) else {
                    warn!("tcp: connection cap reached, refusing {peer}");
                    continue;
                };
                debug!("tcp: accepted {peer} as {id:?}");
                ctx.ex
                    .spawn(read_loop(stream, peer, id, ctx.clone()))
                    .detach();
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

async fn read_loop(mut stream: TcpStream, peer: SocketAddr, id: ConnId, ctx: ConnContext) {
    let local = stream.local_addr().unwrap_or(peer);
    let mut framer = StreamFramer::new(ctx.config.max_message_size);
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let idle_at = ctx.clock.now() + ctx.config.tcp_idle_timeout;
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
            Read::Idle => {
                debug!("tcp: closing idle connection {peer}");
                break;
            }
        };
        framer.push(buf.get(..n).unwrap_or_default());
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    let source = stream_source(peer, local, id);
                    if ctx
                        .events
                        .send(Inbound::Message { bytes, source })
                        .await
                        .is_err()
                    {
                        break 'conn;
                    }
                }
                // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
                Ok(Some(Frame::Keepalive)) => {
                    let Some(w) = ctx.conns.writer(id) else {
                        break 'conn;
                    };
                    if w.lock().await.write_all(b"\r\n").await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be re-synchronised after a framing error.
                    info!("tcp: closing {peer}: {e}");
                    break 'conn;
                }
            }
        }
    }
    ctx.conns.remove(id);
    let _ = stream.close().await;
}

/// Sends over the peer's connection, opening one (once) when there is none or the old
/// one is broken.
pub(super) async fn send(ctx: &ConnContext, to: Peer, bytes: Vec<u8>) -> std::io::Result<()> {
    if let Some((id, writer)) = ctx.conns.find(&to) {
        let mut w = writer.lock().await;
        match w.write_all(&bytes).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                debug!("tcp: write to {} failed ({e}); reconnecting", to.addr);
                let _ = w.close().await;
                ctx.conns.remove(id);
            }
        }
    }
    let deadline = ctx.clock.now() + ctx.config.connect_timeout;
    let stream = async { Some(TcpStream::connect(to.addr).await) }
        .or(async {
            ctx.clock.sleep_until(deadline).await;
            None
        })
        .await
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let Some(id) = ctx.conns.insert(to.addr, &stream) else {
        return Err(std::io::Error::other("connection cap reached"));
    };
    ctx.ex
        .spawn(read_loop(stream, to.addr, id, ctx.clone()))
        .detach();
    let writer = ctx
        .conns
        .writer(id)
        .ok_or_else(|| std::io::Error::other("connection closed at once"))?;
    let mut w = writer.lock().await;
    w.write_all(&bytes).await
}
