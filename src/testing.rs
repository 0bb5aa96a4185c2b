//! The whole server in memory, for tests and fuzzing, in the style of quinn-proto's
//! `Pair`: the sans-I/O [`Core`] on a temporary store, fed datagrams by the test and
//! driven on virtual time. Everything the server sends is kept per destination, so a
//! test can assert that nothing was sent exactly, instead of waiting through a silence
//! window; flushes run when the core asks for them, or wait until the test releases
//! them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::Core;
use crate::events::package::EventPackage;
use crate::sip::endpoint::{ClientTxId, ConnId, Peer, Source, Transmit, TransportKind};
use crate::store::{Store, StoreOptions};

/// The address the simulated server listens on (UDP and TCP).
pub const SERVER: &str = "127.0.0.1:5060";
/// The Unix time the virtual clock starts at.
pub const UNIX_START: u64 = 1_700_000_000;
/// More timer steps than this in one `advance` means a deadline that never moves on.
const MAX_STEPS: usize = 1_000_000;

/// Something the server sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub to: Peer,
    pub bytes: Vec<u8>,
    /// The client transaction that sent it (a NOTIFY), to fail with
    /// [`Pair::transport_error`].
    pub tx: Option<ClientTxId>,
}

/// A server on a temporary store and a virtual clock.
pub struct Pair {
    core: Core,
    store: Store,
    start: Instant,
    elapsed: Duration,
    sent: HashMap<SocketAddr, VecDeque<Sent>>,
    flushes_held: bool,
    /// A flush the core asked for while they were held: it "runs" until released.
    flush_running: Option<u64>,
    /// Flushes run so far.
    pub flushes: u64,
}

impl Pair {
    /// A server as `config` describes it (its listen addresses and database are not
    /// used: it "listens" on [`SERVER`] and stores in memory).
    pub fn new(config: &Config) -> Pair {
        Pair::with_packages(config, Vec::new())
    }

    /// [`Pair::new`] with extra event packages.
    pub fn with_packages(config: &Config, packages: Vec<Arc<dyn EventPackage>>) -> Pair {
        let store = Store::open_temporary(StoreOptions {
            cache_capacity: 1 << 20,
            sync_always: false,
        })
        .expect("a temporary store");
        Pair::on_store(config, store, packages)
    }

    /// [`Pair::with_packages`] on a store the caller opened (to look into it, or to
    /// make it fail).
    pub fn on_store(config: &Config, store: Store, packages: Vec<Arc<dyn EventPackage>>) -> Pair {
        let server = server_addr();
        let addrs = [(TransportKind::Udp, server), (TransportKind::Tcp, server)];
        let core = Core::from_config(config, store.clone(), &addrs, packages);
        let mut pair = Pair {
            core,
            store,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            sent: HashMap::new(),
            flushes_held: false,
            flush_running: None,
            flushes: 0,
        };
        // What a daemon does when it starts: run what is due.
        pair.core.handle_timeout(pair.now(), pair.unix());
        pair.drive();
        pair
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Virtual monotonic time.
    pub fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    /// Virtual Unix seconds.
    pub fn unix(&self) -> u64 {
        UNIX_START + self.elapsed.as_secs()
    }

    /// Where a UDP datagram from `from` comes in.
    pub fn udp(from: SocketAddr) -> Source {
        Source {
            peer: Peer {
                kind: TransportKind::Udp,
                addr: from,
                conn: None,
            },
            local: server_addr(),
        }
    }

    /// Where a message on TCP connection `conn` from `from` comes in.
    pub fn tcp(from: SocketAddr, conn: u64) -> Source {
        Source {
            peer: Peer {
                kind: TransportKind::Tcp,
                addr: from,
                conn: Some(ConnId(conn)),
            },
            local: server_addr(),
        }
    }

    /// One message from `source`; the server then runs until it has nothing to do.
    pub fn deliver(&mut self, source: Source, bytes: &[u8]) {
        let (now, unix) = (self.now(), self.unix());
        self.core.handle_incoming(bytes, source, now, unix);
        self.drive();
    }

    /// The transport could not deliver what `tx` sent.
    pub fn transport_error(&mut self, tx: ClientTxId) {
        let (now, unix) = (self.now(), self.unix());
        self.core.transport_error(tx, now, unix);
        self.drive();
    }

    /// Runs the server until it has nothing more to send or flush right now.
    pub fn drive(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(Transmit { to, bytes, tx }) = self.core.poll_transmit() {
                self.sent
                    .entry(to.addr)
                    .or_default()
                    .push_back(Sent { to, bytes, tx });
                progressed = true;
            }
            if self.flush() {
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Runs the flush the core asks for, if any (or, while flushes are held, starts it
    /// and leaves it running); whether the server did anything.
    fn flush(&mut self) -> bool {
        let Some(seq) = self.core.poll_flush(self.now()) else {
            return false;
        };
        if self.flushes_held {
            self.flush_running = Some(seq);
            return false;
        }
        self.finish_flush(seq);
        true
    }

    fn finish_flush(&mut self, seq: u64) {
        let (now, unix) = (self.now(), self.unix());
        self.flushes += 1;
        match self.store.flush() {
            Ok(()) => self.core.flushed(seq, now, unix),
            Err(_) => self.core.flush_failed(now),
        }
    }

    /// From now on a flush blocks until [`Pair::release_flushes`]: a slow disk.
    pub fn hold_flushes(&mut self) {
        self.flushes_held = true;
    }

    /// Whether a flush is blocked, waiting for [`Pair::release_flushes`].
    pub fn flush_blocked(&self) -> bool {
        self.flush_running.is_some()
    }

    /// Lets the blocked flush finish and flushes run again.
    pub fn release_flushes(&mut self) {
        self.flushes_held = false;
        if let Some(seq) = self.flush_running.take() {
            self.finish_flush(seq);
        }
        self.drive();
    }

    /// Moves the virtual clock on by `by`, firing every deadline on the way at its time.
    pub fn advance(&mut self, by: Duration) {
        let target = self.elapsed + by;
        for _ in 0..MAX_STEPS {
            let due = self
                .core
                .poll_timeout()
                .map(|t| t.saturating_duration_since(self.start))
                .filter(|t| *t <= target);
            let Some(at) = due else {
                self.elapsed = target;
                let (now, unix) = (self.now(), self.unix());
                self.core.handle_timeout(now, unix);
                self.drive();
                return;
            };
            self.elapsed = self.elapsed.max(at);
            let (now, unix) = (self.now(), self.unix());
            self.core.handle_timeout(now, unix);
            self.drive();
        }
        panic!("a deadline never moved on while advancing the clock");
    }

    /// The oldest message not yet taken that the server sent to `to`.
    pub fn take(&mut self, to: SocketAddr) -> Option<Sent> {
        self.sent.get_mut(&to)?.pop_front()
    }

    /// Everything sent and not yet taken, to any destination, oldest first per
    /// destination.
    pub fn take_all(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        for (_, mut q) in self.sent.drain() {
            out.extend(q.drain(..));
        }
        out
    }
}

fn server_addr() -> SocketAddr {
    SERVER.parse().expect("a literal address")
}
