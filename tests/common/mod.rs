//! Shared helpers for the integration tests: start a daemon on ephemeral loopback ports
//! with a temporary database and talk to it over real UDP and TCP sockets the way a
//! client would (waiting is always "until this arrives or the timeout passes"), or run
//! the same server in memory on virtual time ([`Sim`]), where "nothing was sent" is
//! checked exactly instead of by waiting through a silence window.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presenced::testing::Pair;

use presenced::clock::{Clock, ManualClock, SystemClock};
use presenced::config::{Config, ListenAddr};
use presenced::daemon::{self, Handle};
use presenced::sip::endpoint::TransportKind;
use presenced::sip::framing::{Frame, StreamFramer};
use presenced::sip::message::{Message, Response};

/// How long a test waits for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub handle: Handle,
    pub dir: tempfile::TempDir,
    pub clock: Option<Arc<ManualClock>>,
}

impl TestServer {
    pub fn udp(&self) -> SocketAddr {
        self.handle.addr(TransportKind::Udp).expect("udp bound")
    }
    pub fn tcp(&self) -> SocketAddr {
        self.handle.addr(TransportKind::Tcp).expect("tcp bound")
    }

    /// Waits until the daemon has handled everything sent to it so far: one UDP
    /// OPTIONS round trip through the same socket and the same in-order core loop.
    /// Needed before moving a manual clock, so that (say) a 200 for a NOTIFY is seen
    /// before its transaction's timers are.
    pub fn settle(&self) {
        let probe = UdpPeer::new(self.udp());
        let branch = format!("settle{}", probe.port());
        probe.send(&options("UDP", probe.port(), &branch));
        assert_eq!(probe.recv_response().status, 200);
    }

    /// Waits until the daemon has carried out every command given so far and sent
    /// everything that caused: a command round trip on the command channel, then a UDP
    /// round trip through the same sending thread as every NOTIFY.
    pub fn quiesce(&self) {
        assert!(
            self.handle.status().is_some(),
            "the daemon answers commands"
        );
        self.settle();
    }

    /// Moves the manual clock after letting the daemon catch up.
    pub fn advance(&self, by: Duration) {
        self.settle();
        self.clock.as_ref().expect("a manual clock").advance(by);
    }
}

/// A config listening on ephemeral loopback ports with a fresh database.
pub fn test_config(dir: &tempfile::TempDir) -> Config {
    Config {
        listen: vec![
            ListenAddr::Udp("127.0.0.1:0".parse().unwrap()),
            ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()),
        ],
        db: dir.path().join("db"),
        ..Config::default()
    }
}

pub fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(&dir);
    tweak(&mut c);
    let handle = daemon::start(c, Arc::new(SystemClock)).expect("daemon starts");
    TestServer {
        handle,
        dir,
        clock: None,
    }
}

/// Starts a daemon on a manual clock that only moves when the test advances it.
pub fn start_manual(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(&dir);
    tweak(&mut c);
    let clock = ManualClock::new();
    let dynclock: Arc<dyn Clock> = Arc::new(clock.clone());
    let handle = daemon::start(c, dynclock).expect("daemon starts");
    TestServer {
        handle,
        dir,
        clock: Some(clock),
    }
}

/// A UDP SIP peer on 127.0.0.1.
pub struct UdpPeer {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl UdpPeer {
    pub fn new(server: SocketAddr) -> UdpPeer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        UdpPeer { sock, server }
    }
    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }
    pub fn send(&self, msg: &str) {
        self.send_bytes(msg.as_bytes());
    }
    pub fn send_bytes(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.server).unwrap();
    }
    /// The next datagram, or None when nothing arrives within `wait`.
    pub fn recv_within(&self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 70_000];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => return Some(buf[..n].to_vec()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return None;
                }
                Err(_) => continue,
            }
        }
    }
    pub fn recv(&self) -> Message {
        expect_message(self.recv_within(WAIT))
    }
    pub fn recv_response(&self) -> Response {
        expect_response(self.recv())
    }
}

/// What arrived, parsed; it must have arrived.
fn expect_message(bytes: Option<Vec<u8>>) -> Message {
    let bytes = bytes.expect("a message within the wait");
    Message::parse(&bytes).expect("server sends parseable messages")
}

fn expect_response(m: Message) -> Response {
    match m {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

/// The server in memory (see `presenced::testing::Pair`), shared by its simulated
/// user agents.
pub struct Sim {
    pub pair: Rc<RefCell<Pair>>,
    next_port: std::cell::Cell<u16>,
}

impl Sim {
    /// A server configured like [`start`]'s, tweaked.
    pub fn new(tweak: impl FnOnce(&mut Config)) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let mut c = test_config(&dir);
        tweak(&mut c);
        Sim::from_pair(Pair::new(&c))
    }

    pub fn from_pair(pair: Pair) -> Sim {
        Sim {
            pair: Rc::new(RefCell::new(pair)),
            next_port: std::cell::Cell::new(20_000),
        }
    }

    /// A user agent on its own address.
    pub fn ua(&self, user: &str) -> Ua {
        Ua::with_wire(self.wire(), user)
    }

    /// A bare peer on its own address.
    pub fn wire(&self) -> Wire {
        let port = self.next_port.get();
        self.next_port.set(port + 1);
        Wire::Sim(SimPeer {
            pair: self.pair.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// Moves virtual time on, firing every deadline at its time.
    pub fn advance(&self, by: Duration) {
        self.pair.borrow_mut().advance(by);
    }

    pub fn pair(&self) -> std::cell::RefMut<'_, Pair> {
        self.pair.borrow_mut()
    }
}

/// A user agent's address on a [`Sim`] server.
pub struct SimPeer {
    pair: Rc<RefCell<Pair>>,
    pub addr: SocketAddr,
}

/// How a test's user agent reaches the server: real UDP, or the in-memory server.
pub enum Wire {
    Udp(UdpPeer),
    Sim(SimPeer),
}

impl Wire {
    pub fn port(&self) -> u16 {
        match self {
            Wire::Udp(p) => p.port(),
            Wire::Sim(p) => p.addr.port(),
        }
    }
    pub fn send(&self, msg: &str) {
        self.send_bytes(msg.as_bytes());
    }
    pub fn send_bytes(&self, msg: &[u8]) {
        match self {
            Wire::Udp(p) => p.send_bytes(msg),
            Wire::Sim(p) => p.pair.borrow_mut().deliver(Pair::udp(p.addr), msg),
        }
    }
    /// The next message. Over UDP it may take up to `wait` to arrive; in memory it is
    /// there or it was never sent.
    pub fn recv_within(&self, wait: Duration) -> Option<Vec<u8>> {
        match self {
            Wire::Udp(p) => p.recv_within(wait),
            Wire::Sim(p) => p.pair.borrow_mut().take(p.addr).map(|s| s.bytes),
        }
    }
    pub fn recv(&self) -> Message {
        expect_message(self.recv_within(WAIT))
    }
    pub fn recv_response(&self) -> Response {
        expect_response(self.recv())
    }
    /// Points a real peer at another server address (a restarted daemon).
    pub fn set_server(&mut self, addr: SocketAddr) {
        if let Wire::Udp(p) = self {
            p.server = addr;
        }
    }
}

/// A TCP SIP peer.
pub struct TcpPeer {
    pub stream: TcpStream,
    framer: StreamFramer,
}

impl TcpPeer {
    pub fn connect(server: SocketAddr) -> TcpPeer {
        let stream = TcpStream::connect(server).unwrap();
        TcpPeer {
            stream,
            framer: StreamFramer::new(1 << 20),
        }
    }
    /// A connection the server opened to us (accepted from our listener).
    pub fn from_stream(stream: TcpStream) -> TcpPeer {
        TcpPeer {
            stream,
            framer: StreamFramer::new(1 << 20),
        }
    }
    /// A connection from the loopback address `from` (127.0.0.2, ...): another source.
    pub fn connect_from(from: std::net::IpAddr, server: SocketAddr) -> TcpPeer {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
        socket.connect(&server.into()).unwrap();
        TcpPeer {
            stream: socket.into(),
            framer: StreamFramer::new(1 << 20),
        }
    }
    pub fn port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }
    pub fn send(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).unwrap();
    }
    pub fn send_bytes(&mut self, msg: &[u8]) {
        self.stream.write_all(msg).unwrap();
    }
    /// The next framed message, or None on timeout or close.
    pub fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if let Ok(Some(Frame::Message(m))) = self.framer.next_frame() {
                return Some(m);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.framer.push(&buf[..n]),
                Err(_) => return None,
            }
        }
    }
    pub fn recv(&mut self) -> Message {
        expect_message(self.recv_within(WAIT))
    }
    pub fn recv_response(&mut self) -> Response {
        expect_response(self.recv())
    }
    /// True once the server has closed the connection (read returns 0) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

/// A request in wire form with the given method, URI, transport and extra headers.
pub fn request(
    method: &str,
    uri: &str,
    transport: &str,
    port: u16,
    branch: &str,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@example.com>;tag=ft{branch}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {branch}@test\r\n\
         CSeq: 1 {method}\r\n\
         {extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn options(transport: &str, port: u16, branch: &str) -> String {
    request(
        "OPTIONS",
        "sip:presence@127.0.0.1",
        transport,
        port,
        branch,
        "",
        "",
    )
}

/// A PIDF document with one tuple.
pub fn pidf(entity: &str, tuple: &str, basic: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\
         <tuple id=\"{tuple}\"><status><basic>{basic}</basic></status><note>{note}</note></tuple>\
         </presence>"
    )
}

use presenced::sip::message::Request;

/// A 200 OK for a request the server sent us (a NOTIFY).
pub fn ok_for(req: &Request) -> Vec<u8> {
    Response::for_request(req, 200, None).to_bytes()
}

/// Client-side state of one UDP user agent: publishes and subscribes, answers NOTIFYs.
pub struct Ua {
    pub peer: Wire,
    pub aor: String,
    seq: u32,
    /// Unique in the test process, in every branch, Call-ID and tag this UA makes: a
    /// later UA may be given a finished one's port, and must not repeat its
    /// transactions (the server would rightly answer them from its cache).
    id: u64,
}

/// The next [`Ua::id`].
static UA_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A subscription as the watcher sees it.
#[derive(Clone, Debug)]
pub struct Sub {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub cseq: u32,
    pub target: String,
    pub event: String,
}

impl Ua {
    pub fn new(server: SocketAddr, user: &str) -> Ua {
        Ua::with_wire(Wire::Udp(UdpPeer::new(server)), user)
    }

    pub fn with_wire(peer: Wire, user: &str) -> Ua {
        Ua {
            peer,
            aor: format!("sip:{user}@example.com"),
            seq: 0,
            id: UA_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn next(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends a PUBLISH and returns the final response.
    pub fn publish(
        &mut self,
        to: &str,
        etag: Option<&str>,
        expires: Option<u32>,
        body: Option<&str>,
    ) -> Response {
        self.publish_raw(
            to,
            "presence",
            etag,
            expires,
            body.map(|b| ("application/pidf+xml", b)),
            "",
        )
    }

    pub fn publish_raw(
        &mut self,
        to: &str,
        event: &str,
        etag: Option<&str>,
        expires: Option<u32>,
        body: Option<(&str, &str)>,
        extra: &str,
    ) -> Response {
        let n = self.next();
        let port = self.peer.port();
        let mut h = String::new();
        if !event.is_empty() {
            h.push_str(&format!("Event: {event}\r\n"));
        }
        if let Some(e) = etag {
            h.push_str(&format!("SIP-If-Match: {e}\r\n"));
        }
        if let Some(x) = expires {
            h.push_str(&format!("Expires: {x}\r\n"));
        }
        let text = match body {
            Some((ctype, b)) => {
                h.push_str(&format!("Content-Type: {ctype}\r\n"));
                b
            }
            None => "",
        };
        h.push_str(extra);
        let call_id = format!("pub{n}-u{id}-{port}@test", id = self.id);
        let msg = format!(
            "PUBLISH {to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKpub{n}u{id};rport\r\n\
             Max-Forwards: 70\r\nFrom: <{aor}>;tag=pf{n}u{id}\r\nTo: <{to}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {n} PUBLISH\r\n{h}Content-Length: {}\r\n\r\n{text}",
            text.len(),
            aor = self.aor,
            id = self.id,
        );
        self.peer.send(&msg);
        self.answer_to(&call_id)
    }

    /// [`Ua::expect_response`], which must answer the request with `call_id`.
    fn answer_to(&self, call_id: &str) -> Response {
        let r = self.expect_response();
        assert_eq!(
            r.headers.call_id().ok(),
            Some(call_id),
            "a response to another request"
        );
        r
    }

    /// Receives until a response arrives, answering any NOTIFY met on the way is NOT
    /// done: a NOTIFY arriving first is an error in these tests' ordering.
    pub fn expect_response(&self) -> Response {
        loop {
            match self.peer.recv() {
                Message::Response(r) if r.status >= 200 => return r,
                Message::Response(_) => continue,
                Message::Request(r) => panic!("expected a response, got {} first", r.method),
            }
        }
    }

    /// Starts a subscription; returns the 200's subscription and the response.
    pub fn subscribe(
        &mut self,
        to: &str,
        event: &str,
        expires: Option<u32>,
        extra: &str,
    ) -> (Response, Sub) {
        let n = self.next();
        let port = self.peer.port();
        let sub = Sub {
            call_id: format!("sub{n}-u{id}-{port}@test", id = self.id),
            from_tag: format!("wf{n}u{id}", id = self.id),
            to_tag: String::new(),
            cseq: 1,
            target: to.to_string(),
            event: event.to_string(),
        };
        let r = self.send_subscribe(&sub, expires, extra);
        let mut sub = sub;
        if let Some(t) = r
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
        {
            sub.to_tag = t;
        }
        (r, sub)
    }

    /// Sends SUBSCRIBE for `sub` (in-dialog when it has a to-tag).
    pub fn send_subscribe(&mut self, sub: &Sub, expires: Option<u32>, extra: &str) -> Response {
        let n = self.next();
        let port = self.peer.port();
        let to_tag = if sub.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", sub.to_tag)
        };
        let exp = expires
            .map(|e| format!("Expires: {e}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "SUBSCRIBE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsub{n}u{id};rport\r\n\
             Max-Forwards: 70\r\nFrom: <{aor}>;tag={ft}\r\nTo: <{target}>{to_tag}\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nEvent: {event}\r\n{exp}{extra}\
             Content-Length: 0\r\n\r\n",
            target = sub.target,
            aor = self.aor,
            ft = sub.from_tag,
            cid = sub.call_id,
            cseq = sub.cseq,
            user = self
                .aor
                .trim_start_matches("sip:")
                .split('@')
                .next()
                .unwrap_or("u"),
            event = sub.event,
            id = self.id,
        );
        self.peer.send(&msg);
        self.answer_to(&sub.call_id)
    }

    /// The next NOTIFY, answered with 200.
    pub fn expect_notify(&self) -> Request {
        let req = self.next_notify();
        self.peer.send_bytes(&ok_for(&req));
        req
    }

    /// The next NOTIFY, not answered.
    pub fn next_notify(&self) -> Request {
        match self.peer.recv() {
            Message::Request(r) if r.method == presenced::sip::message::Method::Notify => r,
            Message::Request(r) => panic!("expected NOTIFY, got {}", r.method),
            Message::Response(r) => panic!("expected NOTIFY, got response {}", r.status),
        }
    }

    /// Nothing has been sent to this user agent. Exact on a [`Sim`] server; over UDP
    /// only after the daemon was brought to rest (see [`TestServer::quiesce`]).
    pub fn expect_nothing(&self) {
        if let Some(b) = self.peer.recv_within(Duration::ZERO) {
            panic!("expected nothing, got {}", String::from_utf8_lossy(&b));
        }
    }

    /// Nothing arrives within `wait`.
    pub fn expect_silence(&self, wait: Duration) {
        if let Some(b) = self.peer.recv_within(wait) {
            panic!("expected nothing, got {}", String::from_utf8_lossy(&b));
        }
    }
}

pub fn body_str(req: &Request) -> String {
    String::from_utf8_lossy(&req.body).into_owned()
}

pub fn sub_state(req: &Request) -> String {
    req.headers
        .get("Subscription-State")
        .unwrap_or_default()
        .to_string()
}

pub fn cseq_of(req: &Request) -> u32 {
    req.headers.cseq().unwrap().seq
}

/// XML Schema dateTime in UTC for Unix seconds (days to civil date, proleptic Gregorian).
pub fn date_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// --- the binary as a separate process ---------------------------------------------------

/// A daemon process that is killed if the test fails before stopping it: a leftover
/// child would keep the test harness's output pipe open and hang the run.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// The presenced binary on ephemeral ports; returns the child and its UDP address.
pub fn spawn_binary(db: &std::path::Path, extra: &[&str]) -> (Spawned, SocketAddr) {
    let (child, udp, _) = spawn_daemon(db, extra);
    (child, udp)
}

/// The presenced binary on ephemeral ports; returns the child and its UDP and TCP
/// addresses.
pub fn spawn_daemon(db: &std::path::Path, extra: &[&str]) -> (Spawned, SocketAddr, SocketAddr) {
    spawn_daemon_under(&[], db, extra)
}

/// [`spawn_binary`] run by a wrapper command (`wrapper[0]`, with its arguments before
/// the binary's path), e.g. strace; the child is the wrapper.
pub fn spawn_binary_under(
    wrapper: &[&str],
    db: &std::path::Path,
    extra: &[&str],
) -> (Spawned, SocketAddr) {
    let (child, udp, _) = spawn_daemon_under(wrapper, db, extra);
    (child, udp)
}

fn spawn_daemon_under(
    wrapper: &[&str],
    db: &std::path::Path,
    extra: &[&str],
) -> (Spawned, SocketAddr, SocketAddr) {
    let bin = env!("CARGO_BIN_EXE_presenced");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = command
        .args(["run", "--db"])
        .arg(db)
        .args(["--listen", "udp:127.0.0.1:0", "--listen", "tcp:127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let (udp, tcp) = loop {
        let line = lines.next().expect("daemon logs its addresses").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let find = |kind: &str| -> SocketAddr {
                rest.split(", ")
                    .find_map(|a| a.strip_prefix(kind))
                    .expect("an address of each transport")
                    .trim()
                    .parse()
                    .unwrap()
            };
            break (find("udp:"), find("tcp:"));
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || {
        for l in lines {
            eprintln!("D: {}", l.unwrap_or_default());
        }
    });
    (Spawned(child), udp, tcp)
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Sends a signal (`-TERM`, `-KILL`, …) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The lines a child process writes to its (piped) standard error, as they come.
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// One HTTP/1.1 exchange: (status, headers, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}
