//! The run loop: binds the transports, owns the sans-I/O endpoint and the transaction
//! user, feeds them bytes and time, and carries out what they return. The only place
//! that spawns tasks. Shutdown is graceful: stop taking new work, let in-flight
//! transactions finish for a bounded time, flush the database, return.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use crate::clock::Clock;
use crate::config::{Config, ListenAddr, SyncMode};
use crate::dispatch::{Dispatcher, Route};
use crate::events::package::{EventPackage, Registry};
use crate::mgmt::{self, server::CoreRequest};
use crate::presence::{Engine, EngineConfig, Outgoing};
use crate::sip::endpoint::{ClientTxId, Endpoint, EndpointConfig, Output, TransportKind};
use crate::sip::message::{Method, Response};
use crate::sip::transaction::TimerConfig;
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
    let ex = Arc::new(smol::Executor::new());
    // One helper thread for transport tasks; the core loop runs on this one.
    let (stop_workers, workers_stopped) = smol::channel::bounded::<()>(1);
    let worker = {
        let ex = ex.clone();
        std::thread::spawn(move || {
            smol::block_on(ex.run(async {
                let _ = workers_stopped.recv().await;
            }))
        })
    };
    let result = smol::block_on(ex.run(serve(config, clock, extra, ex.clone(), shutdown, ready)));
    let _ = stop_workers.try_send(());
    let _ = worker.join();
    result
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
    let mut packages = registry(&config);
    for p in extra {
        packages.register(p);
    }
    let dispatcher = Dispatcher::new(&config.domains, local_hosts).with_engine(
        vec![Method::Publish, Method::Subscribe],
        packages.allow_events(),
        packages.publish_types(),
    );
    let engine = Engine::new(store.clone(), packages, engine_config(&config));

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
        endpoint,
        dispatcher,
        engine,
        sender,
        ex: ex.clone(),
        clock: clock.clone(),
        draining: false,
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
            && (core.endpoint.in_flight() == 0 || now >= until)
        {
            break;
        }
        if now >= next_sweep && drain_until.is_none() {
            let outgoing = core.engine.sweep(clock.unix_now());
            core.send_notifies(outgoing, now);
            next_sweep = now + clean_period;
        }
        if now >= next_flush {
            // Periodic sync: flush off the reactor, one flush at a time.
            if !flushing.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let store = core.engine.store().clone();
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
        if let Some(t) = core.endpoint.poll_timeout() {
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
            match ctl_rx.recv().await {
                Ok(req) => Step::Control(req),
                Err(_) => std::future::pending().await,
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
            Step::Event(Event::Message { bytes, source }) => {
                core.endpoint.handle_incoming(&bytes, source, now)
            }
            Step::Event(Event::SendFailed { tx }) => core.endpoint.transport_error(tx, now),
            Step::Timer => {}
            Step::Control(req) => core.control(req, now),
            Step::Shutdown => {
                info!("shutting down: finishing in-flight transactions");
                // Stop accepting connections; sockets keep answering (503) so that
                // responses to our own requests still arrive while we drain.
                let _ = stop_tx.try_send(());
                stop_tx.close();
                core.draining = true;
                drain_until = Some(now + grace);
            }
            Step::Closed => break,
        }
        // Timers run after every step, so a busy socket cannot starve retransmissions.
        core.endpoint.handle_timeout(now);
        core.drain_outputs().await;
    }
    let store = core.engine.store().clone();
    match smol::unblock(move || store.flush()).await {
        Ok(()) => {
            info!("presenced stopped");
            Ok(())
        }
        Err(e) => Err(DaemonError::Database(format!("final flush: {e}"))),
    }
}

enum Step {
    Event(Event),
    Timer,
    Control(CoreRequest),
    Shutdown,
    Closed,
}

/// The event packages this daemon serves.
fn registry(config: &Config) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(crate::events::presence::Presence {
        closed_when_empty: config.notify_closed_when_empty,
        needs_authorization: true,
    }));
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
    }
}

/// The state the run loop owns.
struct Core {
    endpoint: Endpoint,
    dispatcher: Dispatcher,
    engine: Engine,
    sender: SendHandle,
    ex: Arc<smol::Executor<'static>>,
    clock: Arc<dyn Clock>,
    draining: bool,
}

impl Core {
    async fn drain_outputs(&mut self) {
        let mut pending_notifies: Vec<Outgoing> = Vec::new();
        while let Some(out) = self.endpoint.poll_output() {
            match out {
                Output::Transmit { to, bytes, tx } => match to.kind {
                    // A UDP send never blocks for long; do it in order, here.
                    TransportKind::Udp => self.sender.send(to, bytes, tx).await,
                    // A TCP send may connect or stall; never let one peer hold the loop.
                    TransportKind::Tcp => {
                        let sender = self.sender.clone();
                        self.ex
                            .spawn(async move { sender.send(to, bytes, tx).await })
                            .detach();
                    }
                },
                Output::Request {
                    id,
                    request,
                    source,
                } => {
                    let now = self.clock.now();
                    let response = if self.draining {
                        let mut r = Response::for_request(&request, 503, Some("Shutting Down"));
                        r.headers.push("Retry-After", "5");
                        r
                    } else {
                        match self.dispatcher.route(&request) {
                            Route::Respond(r) => r,
                            Route::Engine => {
                                let outcome = self.engine.handle_request(
                                    &request,
                                    &source,
                                    self.clock.unix_now(),
                                );
                                pending_notifies.extend(outcome.notifies);
                                outcome.response
                            }
                        }
                    };
                    let mut response = response;
                    if response.status > 100 {
                        response.set_to_tag(&crate::sip::endpoint::random_token(10));
                    }
                    self.endpoint.respond(id, response, now);
                    // NOTIFYs go out after the response that created their dialog.
                    let notifies = std::mem::take(&mut pending_notifies);
                    self.send_notifies(notifies, now);
                }
                Output::ClientResult { id, result } => {
                    let now = self.clock.now();
                    let next = self
                        .engine
                        .notify_finished(id, &result, self.clock.unix_now());
                    self.send_notifies(next, now);
                }
            }
        }
    }

    /// Control-channel work that must be ordered with SIP processing (see mgmt::server).
    fn control(&mut self, req: CoreRequest, now: Instant) {
        match req {
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
                    let notifies = self.engine.notify_all(self.clock.unix_now());
                    self.send_notifies(notifies, now);
                }
                let _ = reply.try_send(result);
            }
            CoreRequest::Status(reply) => {
                let s = self.engine.stats();
                let _ = reply.try_send(serde_json::json!({
                    "publishes": s.publishes,
                    "subscribes": s.subscribes,
                    "notifies_sent": s.notifies_sent,
                    "notify_failures": s.notify_failures,
                    "aggregations": s.aggregations,
                    "notify_transactions_in_flight": self.endpoint.in_flight(),
                }));
            }
        }
    }

    /// Starts a client transaction for each NOTIFY and tells the engine its id.
    fn send_notifies(&mut self, notifies: Vec<Outgoing>, now: Instant) {
        for n in notifies {
            let tx: ClientTxId = self.endpoint.send_request(n.request, n.to, now);
            self.engine.notify_started(tx, n.dialog);
        }
    }
}
