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
use crate::mgmt::{self, protocol::Refreshed, server::CoreRequest};
use crate::presence::{Engine, Outgoing};
use crate::server::{Server, Transmit};
use crate::sip::endpoint::{ClientTxId, ConnId, Peer, TransportKind};
use crate::store::{Store, StoreOptions};
use crate::transport::{Event, SendHandle, Transport, TransportConfig, UdpOut};

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
    xcap: Option<SocketAddr>,
    control: Sender<Control>,
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

    /// The built-in XCAP server's address, when it runs.
    pub fn xcap_addr(&self) -> Option<SocketAddr> {
        self.xcap
    }

    /// OpenSIPS `refreshWatchers <presentity_uri> <event>`: re-evaluate that
    /// presentity's watchers now. False if the daemon is not taking commands.
    pub fn refresh_watchers(&self, presentity: &str, event: &str) -> bool {
        self.control
            .try_send(Control::RefreshWatchers {
                presentity: presentity.to_owned(),
                event: event.to_owned(),
            })
            .is_ok()
    }

    /// OpenSIPS `refreshXcapDoc <doc_uri> <port>`: fetch that document again (or, with
    /// the built-in server, re-read it) and re-evaluate its user's watchers.
    pub fn refresh_xcap_doc(&self, doc_uri: &str, port: u32) -> bool {
        self.control
            .try_send(Control::RefreshXcapDoc {
                doc_uri: doc_uri.to_owned(),
                port,
            })
            .is_ok()
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
    let (control_tx, control_rx) = smol::channel::bounded::<Control>(1024);
    let control = (control_tx.clone(), control_rx);
    let thread = std::thread::Builder::new()
        .name("presenced".into())
        .spawn(move || run_blocking(config, clock, extra, shutdown_rx, control, ready_tx))
        .map_err(DaemonError::Bind)?;
    match ready_rx.recv() {
        Ok(Ok((addrs, xcap))) => Ok(Handle {
            addrs,
            xcap,
            control: control_tx,
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

type Ready = std::sync::mpsc::Sender<
    Result<(Vec<(TransportKind, SocketAddr)>, Option<SocketAddr>), DaemonError>,
>;
type ControlChannel = (Sender<Control>, Receiver<Control>);

fn run_blocking(
    config: Config,
    clock: Arc<dyn Clock>,
    extra: Vec<Arc<dyn EventPackage>>,
    shutdown: Receiver<()>,
    control: ControlChannel,
    ready: Ready,
) -> Result<(), DaemonError> {
    // Everything async runs on this one thread: socket tasks and the core loop hand
    // messages over without cross-thread wake-ups, which on a 2-core box are the cost
    // that matters. Blocking work (sled flushes) goes to smol's blocking pool.
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(serve(
        config,
        clock,
        extra,
        ex.clone(),
        shutdown,
        control,
        ready,
    )))
}

async fn serve(
    config: Config,
    clock: Arc<dyn Clock>,
    extra: Vec<Arc<dyn EventPackage>>,
    ex: Arc<smol::Executor<'static>>,
    shutdown: Receiver<()>,
    (control_tx, control_rx): ControlChannel,
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

    // --- control channel (mgmt): dump/restore/status from `presenced` commands ---
    let (ctl_tx, ctl_rx) = smol::channel::bounded::<CoreRequest>(16);
    let ctl_path = crate::mgmt::socket_path(&config.db, config.control_socket.as_deref());
    match mgmt::server::bind(&ctl_path) {
        Ok(listener) => {
            ex.spawn(mgmt::server::serve(
                listener,
                ctl_path.clone(),
                store.clone(),
                ctl_tx,
                clock.clone(),
            ))
            .detach();
        }
        Err(e) => warn!("control socket {}: {e}", ctl_path.display()),
    }

    let (events_tx, events_rx) = smol::channel::bounded::<Event>(4096);
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let (sender, udp_out) = match transport.start(&ex, events_tx, stop_rx) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(DaemonError::Bind(std::io::Error::new(
                e.kind(),
                format!("cannot start the UDP sender: {e}"),
            ))));
            return Err(DaemonError::Bind(e));
        }
    };
    info!(
        "presenced listening on {}",
        addrs
            .iter()
            .map(|(k, a)| format!("{}:{a}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let xcap = match start_xcap(&config, &store, &ex, control_tx).await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(DaemonError::Bind(std::io::Error::new(
                e.kind(),
                e.to_string(),
            ))));
            return Err(DaemonError::Bind(e));
        }
    };
    let _ = ready.send(Ok((addrs.clone(), xcap.addr)));

    let mut core = Core {
        server,
        sender,
        udp_out,
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
    let mut next_housekeeping = clock.now() + HOUSEKEEPING_PERIOD;

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
        if now >= next_housekeeping {
            // Freed heap goes back to the system from the allocator's own thread
            // (crate::memory).
            core.server.engine_mut().release_idle_capacity();
            next_housekeeping = now + HOUSEKEEPING_PERIOD;
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
        core.drain_outputs();
        // Nothing waits in the UDP batch while the loop sleeps.
        core.udp_out.flush();
        let mut wake = Some(next_sweep.min(next_flush).min(next_housekeeping));
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
        .or(async {
            match control_rx.recv().await {
                Ok(c) => Step::Control(c),
                Err(_) => std::future::pending().await,
            }
        })
        .or(async {
            match ctl_rx.recv().await {
                Ok(req) => Step::Mgmt(req),
                Err(_) => std::future::pending().await,
            }
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
                    core.drain_outputs();
                    handled += 1;
                    if handled < EVENT_BATCH {
                        next = events_rx.try_recv().ok();
                    }
                }
            }
            Step::Timer => {}
            Step::Mgmt(req) => core.mgmt(req, &xcap, now, clock.unix_now()),
            Step::Control(c) => {
                if let Err(e) = core.control(&xcap, c, now, clock.unix_now()) {
                    warn!("{e}");
                }
            }
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
        core.drain_outputs();
        xcap.request_fetches(core.server.engine_mut());
    }
    info!(
        "stats: {:?} {:?}",
        core.server.endpoint().stats(),
        core.server.engine().stats()
    );
    // The last datagrams (final NOTIFYs, 503s) leave before we report stopped.
    core.udp_out.close();
    // Exact NOTIFY counters into the rows, so a clean restart continues without a jump.
    core.server.engine_mut().write_back_counters(true);
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

/// How often idle table capacity and free heap are handed back to the system.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(10);

enum Step {
    Event(Event),
    Control(Control),
    /// A request from the control socket that must be ordered with SIP processing.
    Mgmt(CoreRequest),
    Timer,
    Shutdown,
    Closed,
}

/// The state the run loop owns: the sans-I/O server and the I/O around it.
struct Core {
    server: Server,
    sender: SendHandle,
    /// UDP leaves from a thread of its own, in order (see transport::udp_send).
    udp_out: UdpOut,
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
    /// Control-socket work that must be ordered with SIP processing (see mgmt::server).
    fn mgmt(&mut self, req: CoreRequest, xcap: &XcapSide, now: Instant, unix: u64) {
        match req {
            CoreRequest::Control { request, reply } => {
                let result = self
                    .control(xcap, request, now, unix)
                    .map_err(|e| e.to_string());
                let _ = reply.try_send(result);
            }
            CoreRequest::Barrier(done) => {
                let _ = done.try_send(());
            }
            CoreRequest::Commit {
                staging,
                replace,
                reply,
            } => {
                let result = staging.commit(replace).map_err(|e| e.to_string());
                if result.is_ok() {
                    // Restored subscriptions hear the current state at once.
                    self.server
                        .with_engine(now, unix, |engine| engine.notify_all(unix));
                }
                let _ = reply.try_send(result);
            }
            CoreRequest::Status(reply) => {
                let s = self.server.engine().stats();
                let _ = reply.try_send(serde_json::json!({
                    "publishes": s.publishes,
                    "subscribes": s.subscribes,
                    "notifies_sent": s.notifies_sent,
                    "notify_failures": s.notify_failures,
                    "aggregations": s.aggregations,
                    "transactions_in_flight": self.server.in_flight(),
                }));
            }
        }
    }

    /// Carries out a [`Control`] request, from the daemon's own tasks, a [`Handle`] or
    /// the control socket alike, and sends its NOTIFYs.
    fn control(
        &mut self,
        xcap: &XcapSide,
        c: Control,
        now: Instant,
        unix: u64,
    ) -> Result<Refreshed, ControlError> {
        let fetching = matches!(c, Control::RefreshXcapDoc { .. }) && xcap.fetch.is_some();
        let mut result = Ok(0);
        self.server
            .with_engine(now, unix, |engine| match xcap.handle(engine, c, unix) {
                Ok(out) => {
                    result = Ok(out.len());
                    out
                }
                Err(e) => {
                    result = Err(e);
                    Vec::new()
                }
            });
        result.map(|notifies| Refreshed { notifies, fetching })
    }

    /// Sends everything the server has queued.
    fn drain_outputs(&mut self) {
        while let Some(Transmit { to, bytes, tx }) = self.server.poll_transmit() {
            match to.kind {
                TransportKind::Udp => self.udp_out.push(to.addr, bytes, tx),
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
                        sender.send_tcp(to, bytes, tx).await;
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

// --- XCAP wiring (issue 5): the built-in server and the fetcher run on their own tasks
// and talk to the core loop only through the control channel. ---------------------------

/// Requests for the core loop from outside the SIP path.
#[derive(Debug)]
pub enum Control {
    /// An XCAP document was written, replaced or removed; the sender, if any, hears
    /// when the watchers were re-evaluated.
    XcapChanged(crate::xcap::Notice),
    RefreshWatchers {
        presentity: String,
        event: String,
    },
    RefreshXcapDoc {
        doc_uri: String,
        port: u32,
    },
}

/// Why a [`Control`] request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No event package serves this Event header value.
    UnknownEvent(String),
    /// No stored XCAP document has this URI (on this port, unless 0).
    UnknownDocument { doc_uri: String, port: u32 },
    /// The fetcher's queue is full; the request was dropped.
    FetcherBusy,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::UnknownEvent(e) => write!(f, "refreshWatchers: unknown event {e:?}"),
            ControlError::UnknownDocument { doc_uri, port: 0 } => {
                write!(f, "refreshXcapDoc: no XCAP document {doc_uri}")
            }
            ControlError::UnknownDocument { doc_uri, port } => {
                write!(
                    f,
                    "refreshXcapDoc: no XCAP document {doc_uri} on port {port}"
                )
            }
            ControlError::FetcherBusy => {
                write!(f, "refreshXcapDoc: the XCAP fetcher is busy; try again")
            }
        }
    }
}

impl std::error::Error for ControlError {}

/// What the fetcher task is asked to do.
enum FetchJob {
    User(String, String),
    Doc(String, u32),
}

/// The XCAP side of a running daemon.
struct XcapSide {
    addr: Option<SocketAddr>,
    /// `None` when documents come from the built-in server.
    fetch: Option<Sender<FetchJob>>,
}

/// Binds the built-in XCAP server when privacy rules or pidf-manipulation need it, or
/// starts the fetcher when documents live on external servers.
async fn start_xcap(
    config: &Config,
    store: &Store,
    ex: &Arc<smol::Executor<'static>>,
    control: Sender<Control>,
) -> std::io::Result<XcapSide> {
    use crate::xcap::{fetch, server};
    let wanted = !config.force_active || config.pidf_manipulation;
    if !wanted {
        return Ok(XcapSide {
            addr: None,
            fetch: None,
        });
    }
    let (changes_tx, changes_rx) = smol::channel::bounded::<crate::xcap::Notice>(256);
    {
        let control = control.clone();
        ex.spawn(async move {
            while let Ok(c) = changes_rx.recv().await {
                if control.send(Control::XcapChanged(c)).await.is_err() {
                    break;
                }
            }
        })
        .detach();
    }
    if config.integrated_xcap_server {
        let listener = smol::net::TcpListener::bind(config.xcap_listen).await?;
        let addr = listener.local_addr()?;
        let cfg = server::ServerConfig {
            max_document_size: config.xcap_max_document_size,
            port: u32::from(addr.port()),
        };
        ex.spawn(server::serve(
            listener,
            store.clone(),
            cfg,
            changes_tx,
            ex.clone(),
        ))
        .detach();
        return Ok(XcapSide {
            addr: Some(addr),
            fetch: None,
        });
    }
    let fetcher = fetch::Fetcher::new(
        store.clone(),
        &config.xcap_server,
        fetch::FetchConfig {
            max_size: config.xcap_max_document_size,
            ..Default::default()
        },
        config.pidf_manipulation,
    );
    let (jobs_tx, jobs_rx) = smol::channel::bounded::<FetchJob>(1024);
    let period = config
        .periodical_query
        .then(|| Duration::from_secs(config.query_period.max(1)));
    ex.spawn(async move {
        // A deadline, not a fresh timer per wait, so a stream of jobs cannot starve it.
        let mut next_query = period.map(|p| Instant::now() + p);
        loop {
            let job = async { jobs_rx.recv().await.ok() }
                .or(async {
                    match next_query {
                        Some(at) => smol::Timer::at(at).await,
                        None => std::future::pending().await,
                    };
                    None
                })
                .await;
            let changed = match job {
                Some(FetchJob::User(u, d)) => fetcher.fetch_user(&u, &d).await,
                Some(FetchJob::Doc(uri, port)) => fetcher.refresh_doc(&uri, port).await,
                None if jobs_rx.is_closed() => break,
                None => {
                    next_query = period.map(|p| Instant::now() + p);
                    fetcher.refresh_all().await
                }
            };
            for c in changed {
                let _ = changes_tx.send((c, None)).await;
            }
        }
    })
    .detach();
    Ok(XcapSide {
        addr: None,
        fetch: Some(jobs_tx),
    })
}

impl XcapSide {
    /// Carries out one control request on the engine; the NOTIFYs to send.
    fn handle(
        &self,
        engine: &mut Engine,
        c: Control,
        now: u64,
    ) -> Result<Vec<Outgoing>, ControlError> {
        match c {
            Control::XcapChanged((c, done)) => {
                let out = engine.xcap_changed(&c.username, &c.domain, c.doc_type, now);
                if let Some(done) = done {
                    let _ = done.try_send(());
                }
                Ok(out)
            }
            Control::RefreshWatchers { presentity, event } => {
                let known = crate::sip::header::Event::parse(&event)
                    .is_ok_and(|e| engine.packages().find(&e).is_some());
                if !known {
                    return Err(ControlError::UnknownEvent(event));
                }
                Ok(engine.refresh_watchers(&presentity, &event, now))
            }
            Control::RefreshXcapDoc { doc_uri, port } => {
                if let Some(jobs) = &self.fetch {
                    // The fetcher also takes full document URLs it has never stored.
                    return match jobs.try_send(FetchJob::Doc(doc_uri, port)) {
                        Ok(()) => Ok(Vec::new()),
                        Err(_) => Err(ControlError::FetcherBusy),
                    };
                }
                // Built-in server: the stored document is current; re-evaluate its user.
                let docs: Vec<_> = engine
                    .store()
                    .iter_xcap()
                    .filter_map(Result::ok)
                    .filter(|x| x.doc_uri == doc_uri && (port == 0 || x.port == port))
                    .collect();
                if docs.is_empty() {
                    return Err(ControlError::UnknownDocument { doc_uri, port });
                }
                let mut out = Vec::new();
                for x in docs {
                    out.extend(engine.xcap_changed(&x.username, &x.domain, x.doc_type, now));
                }
                Ok(out)
            }
        }
    }

    /// Hands users whose rules were missing to the fetcher.
    fn request_fetches(&self, engine: &mut Engine) {
        let wanted = engine.take_fetch_requests();
        if let Some(jobs) = &self.fetch {
            for (user, domain) in wanted {
                if jobs.try_send(FetchJob::User(user, domain)).is_err() {
                    debug!("fetcher busy; rules fetch deferred");
                }
            }
        }
    }
}
