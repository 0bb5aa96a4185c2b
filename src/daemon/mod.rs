//! The run loop: binds the transports, owns the sans-I/O [`Core`], feeds it bytes, time
//! and finished flushes, and carries out what it returns: bytes to the sockets, flushes
//! to a blocking thread, document fetches to the XCAP side. The only place that spawns
//! tasks. Shutdown is graceful: stop taking new work, let in-flight transactions finish
//! for a bounded time, flush the database, return.
//!
//! - [`command`]: the one command type into the core loop.
//! - [`xcap`]: the integrated XCAP server or the fetcher.

mod command;
mod metrics;
mod xcap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

pub use command::{Command, CommandError, Manage};

use crate::clock::Clock;
use crate::config::Config;
use crate::core::Core;
use crate::events::package::EventPackage;
use crate::mgmt::{self, protocol::Refreshed};
use crate::sip::endpoint::{Transmit, TransportKind};
use crate::store::{Store, StoreOptions};
use crate::transport::{
    Inbound, InboundQueues, NEW_WORK_QUEUE, SendHandle, TlsContext, Transport, TransportConfig,
    UNDER_WAY_QUEUE, UdpOut, tls::TlsSettings,
};
use xcap::XcapSide;

/// Why the daemon could not start or stopped badly.
#[derive(Debug)]
pub enum DaemonError {
    Bind(std::io::Error),
    Database(String),
    /// The configuration may not run as given (see `Config::check_exposure`).
    Config(String),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonError::Bind(e) => write!(f, "{e}"),
            DaemonError::Database(e) => write!(f, "database: {e}"),
            DaemonError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// A daemon running on its own threads; used by `presenced run` and by tests.
pub struct Handle {
    addrs: Vec<(TransportKind, SocketAddr)>,
    xcap: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    commands: Sender<Command>,
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

    /// The integrated XCAP server's address, when it runs.
    pub fn xcap_addr(&self) -> Option<SocketAddr> {
        self.xcap
    }

    /// The metrics endpoint's address, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Hands a command to the core loop; false if the daemon is not taking commands.
    pub fn command(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }

    /// OpenSIPS `refreshWatchers <presentity_uri> <event>`: re-evaluate that
    /// presentity's watchers now. False if the daemon is not taking commands.
    pub fn refresh_watchers(&self, presentity: &str, event: &str) -> bool {
        self.command(Command::RefreshWatchers {
            presentity: presentity.to_owned(),
            event: event.to_owned(),
            reply: None,
        })
    }

    /// OpenSIPS `refreshXcapDoc <doc_uri> <port>`: fetch that document again (or, with
    /// the integrated server, re-read it) and re-evaluate its user's watchers.
    pub fn refresh_xcap_doc(&self, doc_uri: &str, port: u32) -> bool {
        self.command(Command::RefreshXcapDoc {
            doc_uri: doc_uri.to_owned(),
            port,
            reply: None,
        })
    }

    /// Engine and table figures, as `presenced ctl status` shows them under `engine`.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (tx, rx) = smol::channel::bounded(1);
        self.commands.send_blocking(Command::Status(tx)).ok()?;
        rx.recv_blocking().ok()
    }

    /// Applies the reloadable settings of `config` (see [`crate::core::RELOADABLE_KEYS`])
    /// and says what changed and what needs a restart.
    pub fn reload(&self, config: Config) -> Result<serde_json::Value, String> {
        let (reply, rx) = smol::channel::bounded(1);
        self.commands
            .send_blocking(Command::Manage {
                op: Manage::Reload(Box::new(config)),
                reply,
            })
            .map_err(|_| "the daemon is stopping".to_owned())?;
        rx.recv_blocking()
            .map_err(|_| "the daemon stopped before answering".to_owned())?
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

/// What a daemon runs with beyond its configuration.
#[derive(Default)]
pub struct Options {
    /// Event packages registered after the built-in ones: the engine learns a new
    /// event without any change of its own.
    pub packages: Vec<Arc<dyn EventPackage>>,
    /// Called on the flush thread before each flush (tests hold a flush with it).
    #[doc(hidden)]
    pub before_flush: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Reads the configuration again for a reload (`presenced ctl reload`, SIGHUP):
    /// `presenced run` loads its file and applies its command-line options. `None`:
    /// the daemon was started without a file, and a reload says so.
    pub reload: Option<Reloader>,
}

/// See [`Options::reload`].
pub type Reloader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Starts the daemon in the background and returns once its sockets are bound.
pub fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Handle, DaemonError> {
    start_with(config, clock, Options::default())
}

/// Like `start`, with extra event packages registered after the built-in ones.
pub fn start_with_packages(
    config: Config,
    clock: Arc<dyn Clock>,
    packages: Vec<Arc<dyn EventPackage>>,
) -> Result<Handle, DaemonError> {
    start_with(
        config,
        clock,
        Options {
            packages,
            ..Options::default()
        },
    )
}

/// Like `start`, with [`Options`].
pub fn start_with(
    config: Config,
    clock: Arc<dyn Clock>,
    options: Options,
) -> Result<Handle, DaemonError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (shutdown_tx, shutdown_rx) = smol::channel::bounded::<()>(1);
    let (commands_tx, commands_rx) = smol::channel::bounded::<Command>(1024);
    let commands = (commands_tx.clone(), commands_rx);
    let thread = std::thread::Builder::new()
        .name("presenced".into())
        .spawn(move || run_blocking(config, clock, options, shutdown_rx, commands, ready_tx))
        .map_err(DaemonError::Bind)?;
    match ready_rx.recv() {
        Ok(Ok(Bound {
            addrs,
            xcap,
            metrics,
        })) => Ok(Handle {
            addrs,
            xcap,
            metrics,
            commands: commands_tx,
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

/// The addresses a started daemon listens on.
struct Bound {
    addrs: Vec<(TransportKind, SocketAddr)>,
    xcap: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

type Ready = std::sync::mpsc::Sender<Result<Bound, DaemonError>>;
type CommandChannel = (Sender<Command>, Receiver<Command>);

fn run_blocking(
    config: Config,
    clock: Arc<dyn Clock>,
    options: Options,
    shutdown: Receiver<()>,
    commands: CommandChannel,
    ready: Ready,
) -> Result<(), DaemonError> {
    // Socket tasks and the core loop run on this one thread: they hand messages over
    // without cross-thread wake-ups, which on a 2-core box are the cost that matters.
    // The store's disk work (flushes, restores) and UDP sending run on other threads.
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(serve(
        config,
        clock,
        options,
        ex.clone(),
        shutdown,
        commands,
        ready,
    )))
}

/// Raises the soft limit on open files towards the hard one (systemd and most shells
/// start services at 1024), so `max_connections` TCP connections, the database's files
/// and the sockets fit; warns when even the hard limit is too low.
#[allow(unsafe_code)]
fn raise_descriptor_limit(max_connections: usize) {
    // Connections, plus room for sled, the listeners, the control socket and XCAP.
    let wanted = libc::rlim_t::try_from(max_connections)
        .unwrap_or(libc::rlim_t::MAX)
        .saturating_add(256);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur >= wanted {
        return;
    }
    let target = wanted.min(lim.rlim_max);
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 || target < wanted {
        warn!(
            "open files limited to {target}: max_connections = {max_connections} needs about \
             {wanted} (raise LimitNOFILE / ulimit -n)"
        );
    }
}

/// Reports a start-up failure to `start` and returns it.
fn failed(ready: &Ready, e: DaemonError) -> DaemonError {
    let copy = match &e {
        DaemonError::Bind(io) => DaemonError::Bind(std::io::Error::new(io.kind(), io.to_string())),
        DaemonError::Database(m) => DaemonError::Database(m.clone()),
        DaemonError::Config(m) => DaemonError::Config(m.clone()),
    };
    let _ = ready.send(Err(copy));
    e
}

async fn serve(
    config: Config,
    clock: Arc<dyn Clock>,
    options: Options,
    ex: Arc<smol::Executor<'static>>,
    shutdown: Receiver<()>,
    (commands_tx, commands_rx): CommandChannel,
    ready: Ready,
) -> Result<(), DaemonError> {
    if let Err(e) = config.check_exposure(config.runs_xcap_server()) {
        return Err(failed(&ready, DaemonError::Config(e)));
    }
    raise_descriptor_limit(config.max_connections);
    let store = match Store::open(
        &config.db,
        StoreOptions {
            cache_capacity: config.cache_capacity,
            // Writes are write-behind; the core asks for flushes (sync = "always"
            // included) and they run off the core loop.
            sync_always: false,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{}: {e}", config.db.display());
            return Err(failed(&ready, DaemonError::Database(msg)));
        }
    };
    let now_unix = clock.unix_now();
    match store.repair(now_unix, |_| true) {
        Ok(report) => debug!("store repair at open: {report:?}"),
        Err(e) => warn!("store repair failed: {e}"),
    }
    if let Err(e) = store.prepare_counts() {
        warn!("store: counting subscriptions: {e}");
    }
    let listen: Vec<(TransportKind, SocketAddr)> =
        config.listen.iter().map(|l| (l.kind(), l.addr())).collect();
    let tconf = TransportConfig::from_config(&config, TCP_WRITE_DEADLINE);
    let secure =
        listen.iter().any(|(k, _)| k.is_secure()) || (config.xcap_tls && config.runs_xcap_server());
    let tls = match TlsContext::load(&TlsSettings::from_config(&config), secure) {
        Ok(tls) => tls,
        Err(e) => return Err(failed(&ready, DaemonError::Config(format!("TLS: {e}")))),
    };
    let transport = match Transport::bind(&listen, tconf, tls.clone(), clock.clone()).await {
        Ok(t) => t,
        Err(e) => return Err(failed(&ready, DaemonError::Bind(e))),
    };
    let addrs = transport.local_addrs();
    let core = Core::from_config(&config, store.clone(), &addrs, options.packages);
    let reloader = options.reload;

    let ctl_path = crate::mgmt::socket_path(&config.db, config.control_socket.as_deref());
    match mgmt::listener::bind(&ctl_path) {
        Ok(listener) => {
            ex.spawn(mgmt::listener::serve(
                listener,
                ctl_path.clone(),
                store.clone(),
                commands_tx.clone(),
                clock.clone(),
                reloader.clone(),
            ))
            .detach();
        }
        Err(e) => warn!("control socket {}: {e}", ctl_path.display()),
    }

    let (under_way_tx, under_way_rx) = smol::channel::bounded::<Inbound>(UNDER_WAY_QUEUE);
    let (new_work_tx, new_work_rx) = smol::channel::bounded::<Inbound>(NEW_WORK_QUEUE);
    let queues = InboundQueues::new(under_way_tx, new_work_tx).with_limiter(
        crate::transport::SourceLimiter::new(
            config.max_requests_per_source,
            config.max_requests_per_source.saturating_mul(2),
            config.trusted_proxies.clone(),
        ),
    );
    let dropped = queues.dropped.clone();
    let refused = queues.refused.clone();
    let limited = queues.limited.clone();
    let limited_dropped = queues.limited_dropped.clone();
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let (sender, udp_out) = match transport.start(&ex, queues, stop_rx) {
        Ok(s) => s,
        Err(e) => {
            let e = std::io::Error::new(e.kind(), format!("cannot start the UDP sender: {e}"));
            return Err(failed(&ready, DaemonError::Bind(e)));
        }
    };
    // Scripts read the addresses off this line: the mode goes on a line of its own.
    info!("authentication: {}", config.auth_mode());
    info!(
        "presenced listening on {}",
        addrs
            .iter()
            .map(|(k, a)| format!("{}:{a}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let xcap = match XcapSide::start(
        &config,
        &store,
        &ex,
        commands_tx.clone(),
        clock.clone(),
        &tls,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => return Err(failed(&ready, DaemonError::Bind(e))),
    };
    let mut metrics_task = None;
    let metrics = match config.metrics_listen {
        None => None,
        Some(at) => match smol::net::TcpListener::bind(at).await {
            Ok(listener) => {
                let bound = listener.local_addr().ok();
                let sources = metrics::Sources {
                    commands: commands_tx.clone(),
                    sockets: metrics::SocketCounters {
                        queue_refused: refused.clone(),
                        queue_dropped: dropped.clone(),
                        rate_refused: limited.clone(),
                        rate_dropped: limited_dropped.clone(),
                    },
                    store: store.clone(),
                    xcap: xcap.answers.clone(),
                    tables: Arc::default(),
                };
                // Kept, not detached: it holds the executor and the store, so it is
                // cancelled when the daemon stops.
                metrics_task = Some(ex.spawn(metrics::serve(listener, sources, ex.clone())));
                bound
            }
            Err(e) => {
                let e = std::io::Error::new(e.kind(), format!("metrics_listen {at}: {e}"));
                return Err(failed(&ready, DaemonError::Bind(e)));
            }
        },
    };
    let _ = ready.send(Ok(Bound {
        addrs: addrs.clone(),
        xcap: xcap.addr,
        metrics,
    }));

    let mut rl = RunLoop {
        core,
        store,
        sender,
        udp_out,
        ex: ex.clone(),
        commands: commands_tx,
        xcap,
        before_flush: options.before_flush,
        started: clock.unix_now(),
        sync: config.sync,
        current: config.clone(),
        config: config.clone(),
        figures: crate::metrics::CoreFigures::default(),
        tls,
    };
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let mut drain_until: Option<Instant> = None;
    // What expired while we were down ends now, with its NOTIFYs.
    rl.core.handle_timeout(clock.now(), clock.unix_now());

    loop {
        let now = clock.now();
        if let Some(until) = drain_until
            && (rl.core.in_flight() == 0 || now >= until)
        {
            break;
        }
        rl.carry_out(now);
        let mut wake = rl.core.poll_timeout();
        if let Some(until) = drain_until {
            wake = Some(wake.map_or(until, |w| w.min(until)));
        }
        // Work under way first (`or` polls in order), then new work.
        let step = async {
            under_way_rx
                .recv()
                .await
                .map(Step::Inbound)
                .unwrap_or(Step::Closed)
        }
        .or(async {
            new_work_rx
                .recv()
                .await
                .map(Step::Inbound)
                .unwrap_or(Step::Closed)
        })
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
            match commands_rx.recv().await {
                Ok(c) => Step::Command(c),
                Err(_) => std::future::pending().await,
            }
        })
        .await;
        let now = clock.now();
        let unix = clock.unix_now();
        let started = std::time::Instant::now();
        let what = match &step {
            Step::Inbound(_) => "messages",
            Step::Timer => "timers",
            Step::Command(_) => "a command",
            Step::Shutdown | Step::Closed => "shutdown",
        };
        match step {
            Step::Inbound(first) => {
                // Take whatever else is already queued before timers run again: under
                // load one wake-up handles a batch.
                let mut next = Some(first);
                let mut handled = 0;
                while let Some(inbound) = next.take() {
                    match inbound {
                        Inbound::Message {
                            bytes,
                            source,
                            received,
                        } => {
                            // How long it queued tells the core how far behind it is.
                            let waited = now.saturating_duration_since(received);
                            rl.figures.queue_delay.observe(waited.as_secs_f64());
                            rl.core.queue_delay(waited);
                            rl.core.handle_incoming(&bytes, source, now, unix)
                        }
                        Inbound::SendFailed { tx } => rl.core.transport_error(tx, now, unix),
                        Inbound::Closed { conn } => rl.core.connection_closed(conn, now, unix),
                    }
                    rl.send_transmits();
                    handled += 1;
                    if handled < INBOUND_BATCH {
                        next = under_way_rx
                            .try_recv()
                            .or_else(|_| new_work_rx.try_recv())
                            .ok();
                    }
                }
            }
            Step::Timer => {}
            Step::Command(c) => rl.command(c, now, unix),
            Step::Shutdown => {
                info!("shutting down: finishing in-flight transactions");
                // Stop accepting connections; sockets keep answering (503) so that
                // responses to our own requests still arrive while we drain.
                let _ = stop_tx.try_send(());
                stop_tx.close();
                rl.core.start_draining();
                drain_until = Some(now + grace);
            }
            Step::Closed => break,
        }
        // Timers run after every step, so a busy socket cannot starve retransmissions.
        let timers = std::time::Instant::now();
        rl.core.handle_timeout(now, unix);
        rl.figures
            .timer_round
            .observe(timers.elapsed().as_secs_f64());
        // Real time, not the injected clock: how long requests behind this step waited.
        let held = started.elapsed();
        if held > LOOP_HELD_WARN {
            warn!("core loop held for {} ms by {what}", held.as_millis());
        }
    }
    info!(
        "stats: {:?} {:?} shed: {}, refused at the socket: {}, dropped at the socket: {}, \
         over their source's rate: {} refused, {} dropped, udp dropped: {}",
        rl.core.endpoint().stats(),
        rl.core.engine().stats(),
        rl.core.shed(),
        refused.load(std::sync::atomic::Ordering::Relaxed),
        dropped.load(std::sync::atomic::Ordering::Relaxed),
        limited.load(std::sync::atomic::Ordering::Relaxed),
        limited_dropped.load(std::sync::atomic::Ordering::Relaxed),
        rl.udp_out.dropped
    );
    rl.send_transmits();
    // The last datagrams (final NOTIFYs, 503s) leave before we report stopped.
    rl.udp_out.close();
    // Exact NOTIFY counters into the rows, so a clean restart continues without a jump.
    rl.core.settle();
    // The HTTP servers hold the store: they stop before the database closes.
    rl.xcap.stop().await;
    if let Some(t) = metrics_task {
        t.cancel().await;
    }
    let store = rl.store.clone();
    match smol::unblock(move || store.flush()).await {
        Ok(()) => {
            info!("presenced stopped");
            Ok(())
        }
        Err(e) => Err(DaemonError::Database(format!("final flush: {e}"))),
    }
}

/// A TCP write not done by then closes the connection: its NOTIFYs fail like any
/// undeliverable one, and nobody else waits behind it.
const TCP_WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// A loop step longer than this is logged: every request behind it waited as long.
const LOOP_HELD_WARN: Duration = Duration::from_millis(50);

/// Inbound messages handled per wake-up before timers get their turn.
const INBOUND_BATCH: usize = 256;

enum Step {
    Inbound(Inbound),
    Command(Command),
    Timer,
    Shutdown,
    Closed,
}

/// The state the run loop owns: the sans-I/O core and the I/O around it.
struct RunLoop {
    core: Core,
    store: Store,
    sender: SendHandle,
    /// UDP leaves from a thread of its own, in order (see transport::udp_send).
    udp_out: UdpOut,
    ex: Arc<smol::Executor<'static>>,
    /// For the daemon's own tasks to report back.
    commands: Sender<Command>,
    xcap: XcapSide,
    before_flush: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Unix time the daemon started, for `status`.
    started: u64,
    sync: crate::config::SyncMode,
    /// The configuration the daemon started with, and the one in effect since the
    /// last reload.
    config: Config,
    current: Config,
    /// Histograms and counters only the loop sees, for the metrics endpoint.
    figures: crate::metrics::CoreFigures,
    /// The TLS credentials listeners present, read again on reload.
    tls: TlsContext,
}

impl RunLoop {
    /// Everything the core wants done now: bytes out, a flush, fetches.
    fn carry_out(&mut self, now: Instant) {
        self.send_transmits();
        // Nothing waits in the UDP batch while the loop sleeps.
        self.udp_out.flush();
        if let Some(seq) = self.core.poll_flush(now) {
            self.start_flush(seq);
        }
        self.xcap.request_fetches(&mut self.core);
    }

    /// Runs one flush on the blocking pool; its end comes back as a command.
    fn start_flush(&mut self, seq: u64) {
        let store = self.store.clone();
        let done = self.commands.clone();
        let gate = self.before_flush.clone();
        self.ex
            .spawn(async move {
                let (result, took) = smol::unblock(move || {
                    if let Some(gate) = gate {
                        gate();
                    }
                    let started = std::time::Instant::now();
                    let result = store.flush();
                    (result, started.elapsed())
                })
                .await;
                if let Err(e) = &result {
                    warn!("flush failed: {e}");
                }
                let ok = result.is_ok();
                let _ = done.send(Command::Flushed { seq, ok, took }).await;
            })
            .detach();
    }

    /// Carries out a command, from the control socket, a [`Handle`] or the daemon's
    /// own tasks.
    fn command(&mut self, c: Command, now: Instant, unix: u64) {
        match c {
            Command::XcapChanged((c, done)) => {
                self.core
                    .xcap_changed(&c.username, &c.domain, c.doc_type, now, unix);
                if let Some(done) = done {
                    let _ = done.try_send(());
                }
            }
            Command::RefreshWatchers {
                presentity,
                event,
                reply,
            } => {
                let result = match self.core.refresh_watchers(&presentity, &event, now, unix) {
                    Some(notifies) => Ok(Refreshed {
                        notifies,
                        fetching: false,
                    }),
                    None => Err(CommandError::UnknownEvent(event)),
                };
                answer(reply, result);
            }
            Command::RefreshXcapDoc {
                doc_uri,
                port,
                reply,
            } => {
                let result = self
                    .xcap
                    .refresh_doc(&mut self.core, doc_uri, port, now, unix);
                answer(reply, result);
            }
            Command::Barrier(done) => {
                let _ = done.try_send(());
            }
            Command::Restore {
                staging,
                replace,
                reply,
            } => {
                // The commit writes many rows: it runs off the core loop, which keeps
                // serving; requests for the engine wait until it is done.
                self.core.pause_engine();
                let done = self.commands.clone();
                self.ex
                    .spawn(async move {
                        let result = smol::unblock(move || {
                            let counts = staging.commit(replace).map_err(|e| e.to_string())?;
                            Ok(counts)
                        })
                        .await;
                        let _ = done.send(Command::Restored { result, reply }).await;
                    })
                    .detach();
            }
            Command::Restored { result, reply } => {
                // Restored subscriptions hear the current state at once.
                self.core.restored(result.is_ok(), now, unix);
                let _ = reply.try_send(result);
            }
            Command::Manage { op, reply } => {
                let _ = reply.try_send(self.manage(op, now, unix));
            }
            Command::Status(reply) => {
                let s = self.core.engine().stats();
                let _ = reply.try_send(serde_json::json!({
                    "uptime_s": unix.saturating_sub(self.started),
                    "sync": self.sync.to_string(),
                    "publishes": s.publishes,
                    "subscribes": s.subscribes,
                    "notifies_sent": s.notifies_sent,
                    "notify_failures": s.notify_failures,
                    "aggregations": s.aggregations,
                    "resident_subscriptions": self.core.engine().resident_subscriptions(),
                    "backend_dialogs": self.core.engine().backend_dialogs(),
                    "transactions_in_flight": self.core.in_flight(),
                }));
            }
            Command::Flushed { seq, ok, took } => {
                self.figures.flush.observe(took.as_secs_f64());
                if ok {
                    self.core.flushed(seq, now, unix);
                } else {
                    self.figures.flush_failures += 1;
                    self.core.flush_failed(now);
                }
            }
            Command::Metrics(reply) => {
                let mut f = self.figures.clone();
                f.uptime_s = unix.saturating_sub(self.started);
                f.endpoint = self.core.endpoint().stats();
                f.answered = self.core.endpoint().answered().clone();
                f.engine = self.core.engine().stats();
                f.shed = self.core.shed();
                f.resident_subscriptions = self.core.engine().resident_subscriptions();
                f.transactions_in_flight = self.core.in_flight();
                f.udp_send_dropped = self.udp_out.dropped;
                let _ = reply.try_send(f);
            }
        }
    }

    /// Carries out a management operation; its answer as JSON.
    fn manage(&mut self, op: Manage, now: Instant, unix: u64) -> Result<serde_json::Value, String> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
        let busy = || "a restore is in progress; try again when it is done".to_owned();
        match op {
            Manage::Publish(req) => {
                let r = self
                    .core
                    .manage(now, unix, |e, unix| e.publish_local(&req, unix))
                    .ok_or_else(busy)?;
                if !(200..300).contains(&r.status) {
                    return Err(format!("{} {}", r.status, r.reason));
                }
                Ok(serde_json::json!({
                    "status": r.status,
                    "etag": r.headers.sip_etag(),
                    "expires": r.headers.get("Expires").and_then(|e| e.parse::<u64>().ok()),
                }))
            }
            Manage::Terminate {
                call_id,
                to_tag,
                from_tag,
                reason,
            } => {
                let done = self
                    .core
                    .manage(now, unix, |e, unix| {
                        e.terminate_subscription(&call_id, &to_tag, &from_tag, reason, unix)
                    })
                    .ok_or_else(busy)?
                    .ok_or_else(|| {
                        format!("no subscription with Call-ID {call_id}, To tag {to_tag}, From tag {from_tag}")
                    })?;
                json(serde_json::to_value(done))
            }
            Manage::Cleanup => {
                let done = self
                    .core
                    .manage(now, unix, |e, unix| e.cleanup(unix))
                    .ok_or_else(busy)?;
                json(serde_json::to_value(done))
            }
            Manage::Reload(new) => {
                let mut done = self.core.reload(&self.config, &self.current, &new);
                if let Err(e) = self.tls.reload(&TlsSettings::from_config(&new)) {
                    warn!("TLS credentials not reloaded, the old ones stay: {e}");
                    done.failed.push(format!("tls: {e}"));
                }
                info!(
                    "configuration reloaded: applied {:?}; a restart is needed for {:?}",
                    done.applied, done.restart_needed
                );
                self.current = *new;
                json(serde_json::to_value(done))
            }
        }
    }

    /// Sends everything the core has ready.
    fn send_transmits(&mut self) {
        while let Some(Transmit { to, bytes, tx }) = self.core.poll_transmit() {
            match to.kind {
                TransportKind::Udp => self.udp_out.push(to.addr, bytes, tx),
                // Queued on the connection's bounded outbox; never waits.
                _ => self.sender.send_stream(to, bytes, tx),
            }
        }
    }
}

/// Sends a command's result to whoever asked, or logs a failure nobody will read.
fn answer(
    reply: Option<Sender<Result<Refreshed, String>>>,
    result: Result<Refreshed, CommandError>,
) {
    match reply {
        Some(reply) => {
            let _ = reply.try_send(result.map_err(|e| e.to_string()));
        }
        None => {
            if let Err(e) = &result {
                xcap::log_failure(e);
            }
        }
    }
}
