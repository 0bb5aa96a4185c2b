//! The run loop: binds the transports, owns the sans-I/O endpoint and the transaction
//! user, feeds them bytes and time, and carries out what they return. The only place
//! that spawns tasks. Shutdown is graceful: stop taking new work, let in-flight
//! transactions finish for a bounded time, flush the database, return.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use crate::clock::Clock;
use crate::config::{Config, ListenAddr};
use crate::events::package::EventPackage;
use crate::server::{Server, Transmit};
use crate::sip::endpoint::{ClientTxId, ConnId, Peer, TransportKind};
use crate::store::{Store, StoreOptions};
use crate::transport::{Event, SendHandle, Transport, TransportConfig};

/// Why the daemon could not start or stopped badly.
#[derive(Debug)]
pub enum DaemonError {
    Bind(std::io::Error),
    Database(String),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Bind(e) => write!(f, "{e}"),
            DaemonError::Database(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// A daemon running on its own threads; used by `presenced run` and by tests.
pub struct Handle {
    addrs: Vec<(TransportKind, SocketAddr)>,
    shutdown: Sender<()>,
    thread: Option<std::thread::JoinHandle<Result<(), DaemonError>>>,
}

impl Handle {
    /// The bound addresses (ports resolved when 0 was asked for).
    pub fn addrs(&self) -> &[(TransportKind, SocketAddr)] {
        &self.addrs
    }

    /// The first bound address of `kind`.
    pub fn addr(&self, kind: TransportKind) -> Option<SocketAddr> {
        self.addrs.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// Asks the daemon to stop gracefully.
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.try_send(());
    }

    /// Stops the daemon and waits for it to finish.
    pub fn shutdown(mut self) -> Result<(), DaemonError> {
        self.request_shutdown();
        self.join()
    }

    /// Waits until the daemon stops by itself (signal).
    pub fn join(&mut self) -> Result<(), DaemonError> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(DaemonError::Database("daemon thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.request_shutdown();
            let _ = self.join();
        }
    }
}

/// Starts the daemon in the background and returns once its sockets are bound.
pub fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Handle, DaemonError> {
    start_with_packages(config, clock, Vec::new())
}

/// Like `start`, with extra event packages registered after the built-in ones: the
/// engine learns a new event without any change of its own.
pub fn start_with_packages(
    config: Config,
    clock: Arc<dyn Clock>,
    extra: Vec<Arc<dyn EventPackage>>,
) -> Result<Handle, DaemonError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (shutdown_tx, shutdown_rx) = smol::channel::bounded::<()>(1);
    let thread = std::thread::Builder::new()
        .name("presenced".into())
        .spawn(move || run_blocking(config, clock, extra, shutdown_rx, ready_tx))
        .map_err(DaemonError::Bind)?;
    match ready_rx.recv() {
        Ok(Ok(addrs)) => Ok(Handle {
            addrs,
            shutdown: shutdown_tx,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(DaemonError::Database("daemon failed to start".into())),
        },
    }
}

type Ready = std::sync::mpsc::Sender<Result<Vec<(TransportKind, SocketAddr)>, DaemonError>>;

fn run_blocking(
    config: Config,
    clock: Arc<dyn Clock>,
    extra: Vec<Arc<dyn EventPackage>>,
    shutdown: Receiver<()>,
    ready: Ready,
) -> Result<(), DaemonError> {
    // Everything async runs on this one thread: socket tasks and the core loop hand
    // messages over without cross-thread wake-ups, which on a 2-core box are the cost
    // that matters. Blocking work (sled flushes) goes to smol's blocking pool.
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(serve(config, clock, extra, ex.clone(), shutdown, ready)))
}

async fn serve(
    config: Config,
    clock: Arc<dyn Clock>,
    extra: Vec<Arc<dyn EventPackage>>,
    ex: Arc<smol::Executor<'static>>,
    shutdown: Receiver<()>,
    ready: Ready,
) -> Result<(), DaemonError> {
    let store = match Store::open(
        &config.db,
        StoreOptions {
            cache_capacity: config.cache_capacity,
            // The engine flushes once per request instead of once per row.
            sync_always: false,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{}: {e}", config.db.display());
            let _ = ready.send(Err(DaemonError::Database(msg.clone())));
            return Err(DaemonError::Database(msg));
        }
    };
    let now_unix = clock.unix_now();
    match store.repair(now_unix, |_| true) {
        Ok(report) => debug!("store repair at open: {report:?}"),
        Err(e) => warn!("store repair failed: {e}"),
    }
    let listen: Vec<(TransportKind, SocketAddr)> = config
        .listen
        .iter()
        .map(|l| match l {
            ListenAddr::Udp(a) => (TransportKind::Udp, *a),
            ListenAddr::Tcp(a) => (TransportKind::Tcp, *a),
        })
        .collect();
    let tconf = TransportConfig {
        max_message_size: config.max_message_size,
        max_connections: config.max_connections,
        tcp_idle_timeout: Duration::from_secs(config.tcp_idle_timeout),
        connect_timeout: Duration::from_secs(5),
    };
    let transport = match Transport::bind(&listen, tconf, clock.clone()).await {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(DaemonError::Bind(std::io::Error::new(
                e.kind(),
                e.to_string(),
            ))));
            return Err(DaemonError::Bind(e));
        }
    };
    let addrs = transport.local_addrs();
    let server = Server::from_config(&config, store.clone(), &addrs, extra);

    let (events_tx, events_rx) = smol::channel::bounded::<Event>(4096);
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let sender = transport.start(&ex, events_tx, stop_rx);
    info!(
        "presenced listening on {}",
        addrs
            .iter()
            .map(|(k, a)| format!("{}:{a}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = ready.send(Ok(addrs.clone()));

    let mut core = Core {
        server,
        sender,
        ex: ex.clone(),
        clock: clock.clone(),
        outboxes: HashMap::new(),
    };
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let mut drain_until: Option<Instant> = None;
    let clean_period = Duration::from_secs(config.clean_period.max(1));
    let flush_period = Duration::from_millis(config.sync_period_ms.max(10));
    // Rows that expired while we were down are swept now, with their NOTIFYs.
    let mut next_sweep = clock.now();
    let mut next_flush = clock.now() + flush_period;
    let flushing = Arc::new(std::sync::atomic::AtomicBool::new(false));

    loop {
        let now = clock.now();
        if let Some(until) = drain_until
            && (core.server.in_flight() == 0 || now >= until)
        {
            break;
        }
        if now >= next_sweep && drain_until.is_none() {
            core.server.sweep(now, clock.unix_now());
            core.prune_outboxes(Duration::from_secs(config.tcp_idle_timeout));
            next_sweep = now + clean_period;
        }
        if now >= next_flush {
            // Periodic sync: flush off the reactor, one flush at a time.
            if !flushing.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let store = core.server.engine().store().clone();
                let flag = flushing.clone();
                ex.spawn(async move {
                    if let Err(e) = smol::unblock(move || store.flush()).await {
                        warn!("periodic flush failed: {e}");
                    }
                    flag.store(false, std::sync::atomic::Ordering::Release);
                })
                .detach();
            }
            next_flush = now + flush_period;
        }
        core.drain_outputs().await;
        let mut wake = Some(next_sweep.min(next_flush));
        if let Some(t) = core.server.poll_timeout() {
            wake = wake.map(|w| w.min(t));
        }
        if let Some(until) = drain_until {
            wake = Some(wake.map_or(until, |w| w.min(until)));
        }
        let step = async {
            events_rx
                .recv()
                .await
                .map(Step::Event)
                .unwrap_or(Step::Closed)
        }
        .or(async {
            match wake {
                Some(at) => {
                    clock.sleep_until(at).await;
                    Step::Timer
                }
                None => std::future::pending().await,
            }
        })
        .or(async {
            if drain_until.is_some() {
                std::future::pending::<()>().await;
            }
            let _ = shutdown.recv().await;
            Step::Shutdown
        })
        .await;
        let now = clock.now();
        match step {
            Step::Event(first) => {
                // Take whatever else is already queued before the housekeeping above
                // runs again: under load one wake-up handles a batch.
                let mut next = Some(first);
                let mut handled = 0;
                while let Some(event) = next.take() {
                    match event {
                        Event::Message { bytes, source } => {
                            core.server
                                .handle_incoming(&bytes, source, now, clock.unix_now())
                        }
                        Event::SendFailed { tx } => {
                            core.server.transport_error(tx, now, clock.unix_now())
                        }
                    }
                    core.drain_outputs().await;
                    handled += 1;
                    if handled < EVENT_BATCH {
                        next = events_rx.try_recv().ok();
                    }
                }
            }
            Step::Timer => {}
            Step::Shutdown => {
                info!("shutting down: finishing in-flight transactions");
                // Stop accepting connections; sockets keep answering (503) so that
                // responses to our own requests still arrive while we drain.
                let _ = stop_tx.try_send(());
                stop_tx.close();
                core.server.start_draining();
                drain_until = Some(now + grace);
            }
            Step::Closed => break,
        }
        // Timers run after every step, so a busy socket cannot starve retransmissions.
        core.server.handle_timeout(now, clock.unix_now());
        core.drain_outputs().await;
    }
    info!(
        "stats: {:?} {:?}",
        core.server.endpoint().stats(),
        core.server.engine().stats()
    );
    let store = core.server.engine().store().clone();
    match smol::unblock(move || store.flush()).await {
        Ok(()) => {
            info!("presenced stopped");
            Ok(())
        }
        Err(e) => Err(DaemonError::Database(format!("final flush: {e}"))),
    }
}

/// Events handled per wake-up before timers and sweeps get their turn.
const EVENT_BATCH: usize = 256;

enum Step {
    Event(Event),
    Timer,
    Shutdown,
    Closed,
}

/// The state the run loop owns: the sans-I/O server and the I/O around it.
struct Core {
    server: Server,
    sender: SendHandle,
    ex: Arc<smol::Executor<'static>>,
    clock: Arc<dyn Clock>,
    /// One ordered outbox per TCP peer: a slow connection never holds the loop, and a
    /// 200 always leaves before the NOTIFY that follows it on the same connection.
    outboxes: HashMap<OutboxKey, Outbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OutboxKey {
    Conn(ConnId),
    Addr(SocketAddr),
}

struct Outbox {
    queue: Sender<(Peer, Vec<u8>, Option<ClientTxId>)>,
    last_used: Instant,
}

impl Core {
    /// Sends everything the server has queued.
    async fn drain_outputs(&mut self) {
        while let Some(Transmit { to, bytes, tx }) = self.server.poll_transmit() {
            match to.kind {
                // A UDP send never blocks for long; do it in order, here.
                TransportKind::Udp => self.sender.send(to, bytes, tx).await,
                // A TCP send may connect or stall; never let one peer hold the loop.
                TransportKind::Tcp => self.send_tcp(to, bytes, tx),
            }
        }
    }

    fn send_tcp(&mut self, to: Peer, bytes: Vec<u8>, tx: Option<ClientTxId>) {
        let key = match to.conn {
            Some(c) => OutboxKey::Conn(c),
            None => OutboxKey::Addr(to.addr),
        };
        let now = self.clock.now();
        let outbox = self.outboxes.entry(key).or_insert_with(|| {
            let (queue, rx) = smol::channel::unbounded::<(Peer, Vec<u8>, Option<ClientTxId>)>();
            let sender = self.sender.clone();
            self.ex
                .spawn(async move {
                    while let Ok((to, bytes, tx)) = rx.recv().await {
                        sender.send(to, bytes, tx).await;
                    }
                })
                .detach();
            Outbox {
                queue,
                last_used: now,
            }
        });
        outbox.last_used = now;
        let _ = outbox.queue.try_send((to, bytes, tx));
    }

    /// Drops outboxes unused for `idle`; their tasks end once their queues are sent.
    fn prune_outboxes(&mut self, idle: Duration) {
        let now = self.clock.now();
        self.outboxes
            .retain(|_, o| now.saturating_duration_since(o.last_used) < idle);
    }
}
