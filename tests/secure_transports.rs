//! TLS, WebSocket and secure WebSocket transports over real sockets, the way a
//! softphone or a browser stack reaches presenced: PUBLISH and SUBSCRIBE over each,
//! NOTIFYs back over the subscriber's own connection, the WebSocket upgrade's checks
//! (the `sip` subprotocol, the Origin allow-list), subscriptions that end when their
//! connection does (watcher-info tells), one stuck subscriber never delaying another,
//! certificates reloaded without a restart, and the handshake cap under a flood.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{UdpPeer, WAIT, pidf};
use presenced::config::ListenAddr;
use presenced::sip::endpoint::TransportKind;
use presenced::sip::framing::{Frame, StreamFramer};
use presenced::sip::message::{Message, Method, Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tungstenite::Message as WsMessage;

/// A self-signed certificate for 127.0.0.1, written as PEM files.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn make_cert(dir: &std::path::Path, name: &str) -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("certificate");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Cert {
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

fn client_config(trust: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn tls_connect(
    server: SocketAddr,
    trust: &CertificateDer<'static>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(server)?;
    tcp.set_read_timeout(Some(WAIT))?;
    let name = ServerName::IpAddress(server.ip().into());
    let conn =
        rustls::ClientConnection::new(client_config(trust), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now, so a refused one fails here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The I/O of one connection: the TCP socket (for timeouts) and what runs on it.
enum Io {
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Ws(Box<tungstenite::WebSocket<TcpStream>>),
    Wss(Box<tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>),
}

/// A SIP peer on a TLS, WS or WSS connection.
struct Peer {
    io: Io,
    tcp: TcpStream,
    framer: StreamFramer,
    kind: TransportKind,
}

fn ws_request(
    server: SocketAddr,
    scheme: &str,
    origin: Option<&str>,
) -> tungstenite::http::Request<()> {
    let mut b = tungstenite::http::Request::builder()
        .uri(format!("{scheme}://{server}/"))
        .header("Host", server.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .header("Sec-WebSocket-Protocol", "sip");
    if let Some(o) = origin {
        b = b.header("Origin", o);
    }
    b.body(()).unwrap()
}

impl Peer {
    fn connect(kind: TransportKind, server: SocketAddr, trust: &CertificateDer<'static>) -> Peer {
        Peer::connect_with(kind, server, trust, None).expect("connects")
    }

    fn connect_with(
        kind: TransportKind,
        server: SocketAddr,
        trust: &CertificateDer<'static>,
        origin: Option<&str>,
    ) -> Result<Peer, String> {
        let (io, tcp) = match kind {
            TransportKind::Tls => {
                let tls = tls_connect(server, trust).map_err(|e| e.to_string())?;
                let tcp = tls.sock.try_clone().unwrap();
                (Io::Tls(Box::new(tls)), tcp)
            }
            TransportKind::Ws => {
                // A small receive window, so that a peer that stops reading backs up
                // into the server at once.
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .map_err(|e| e.to_string())?;
                socket
                    .set_recv_buffer_size(4096)
                    .map_err(|e| e.to_string())?;
                socket.connect(&server.into()).map_err(|e| e.to_string())?;
                let tcp: TcpStream = socket.into();
                tcp.set_read_timeout(Some(WAIT)).unwrap();
                let clone = tcp.try_clone().unwrap();
                let (ws, response) = tungstenite::client(ws_request(server, "ws", origin), tcp)
                    .map_err(|e| e.to_string())?;
                assert_eq!(
                    response.headers().get("Sec-WebSocket-Protocol").unwrap(),
                    "sip",
                    "the server chose the sip subprotocol"
                );
                (Io::Ws(Box::new(ws)), clone)
            }
            TransportKind::Wss => {
                let tls = tls_connect(server, trust).map_err(|e| e.to_string())?;
                let clone = tls.sock.try_clone().unwrap();
                let (ws, _) = tungstenite::client(ws_request(server, "wss", origin), tls)
                    .map_err(|e| e.to_string())?;
                (Io::Wss(Box::new(ws)), clone)
            }
            _ => unreachable!("tests use UdpPeer for UDP"),
        };
        Ok(Peer {
            io,
            tcp,
            framer: StreamFramer::new(1 << 20),
            kind,
        })
    }

    fn port(&self) -> u16 {
        self.tcp.local_addr().unwrap().port()
    }

    fn send(&mut self, msg: &str) {
        match &mut self.io {
            Io::Tls(s) => {
                s.write_all(msg.as_bytes()).unwrap();
                s.flush().unwrap();
            }
            Io::Ws(ws) => ws.send(WsMessage::text(msg)).unwrap(),
            Io::Wss(ws) => ws.send(WsMessage::text(msg)).unwrap(),
        }
    }

    /// The next SIP message within `wait`; `None` on timeout or close.
    fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(Frame::Message(m))) = self.framer.next_frame() {
                return Some(m);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.tcp
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let read = match &mut self.io {
                Io::Tls(s) => {
                    let mut buf = vec![0u8; 16 * 1024];
                    match s.read(&mut buf) {
                        Ok(0) => return None,
                        Ok(n) => {
                            buf.truncate(n);
                            Ok(buf)
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Io::Ws(ws) => ws_read(ws),
                Io::Wss(ws) => ws_read(ws),
            };
            match read {
                Ok(bytes) if self.kind == TransportKind::Tls => self.framer.push(&bytes),
                // One message per frame: no framing to undo.
                Ok(bytes) if !bytes.is_empty() => return Some(bytes),
                Ok(_) => continue,
                Err(e)
                    if e == "timeout"
                        || e.contains("timed out")
                        || e.contains("Resource temporarily") =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    fn recv(&mut self) -> Message {
        let bytes = self.recv_within(WAIT).expect("a message within the wait");
        Message::parse(&bytes).expect("parses")
    }

    fn recv_response(&mut self) -> Response {
        loop {
            match self.recv() {
                Message::Response(r) if r.status >= 200 => return r,
                Message::Response(_) => continue,
                Message::Request(r) => panic!("expected a response, got {}", r.method),
            }
        }
    }

    fn recv_notify(&mut self) -> Request {
        match self.recv() {
            Message::Request(r) if r.method == Method::Notify => {
                let ok = Response::for_request(&r, 200, None).to_bytes();
                self.send(std::str::from_utf8(&ok).unwrap());
                r
            }
            other => panic!("expected NOTIFY, got {other:?}"),
        }
    }

    fn close(self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}

fn ws_read<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) -> Result<Vec<u8>, String> {
    match ws.read() {
        Ok(WsMessage::Text(t)) => Ok(t.as_bytes().to_vec()),
        Ok(WsMessage::Binary(b)) => Ok(b.to_vec()),
        Ok(WsMessage::Close(_)) => Err("closed".into()),
        Ok(_) => Ok(Vec::new()),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err("timeout".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A SUBSCRIBE as a WebSocket stack writes it (JsSIP: a `.invalid` Via host and
/// Contact) or, over TLS, as a softphone does.
fn subscribe(
    peer: &Peer,
    target: &str,
    watcher: &str,
    call_id: &str,
    cseq: u32,
    to_tag: &str,
    expires: u32,
) -> String {
    let (via_host, contact) = match peer.kind {
        TransportKind::Ws | TransportKind::Wss => (
            "df7jal23ls0d.invalid".to_owned(),
            "<sip:k3o6m2@df7jal23ls0d.invalid;transport=ws>".to_owned(),
        ),
        _ => (
            format!("127.0.0.1:{}", peer.port()),
            format!("<sip:w@127.0.0.1:{};transport=tls>", peer.port()),
        ),
    };
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "SUBSCRIBE {target} SIP/2.0\r\n\
         Via: SIP/2.0/{via} {via_host};branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 69\r\nTo: <{target}>{to_tag}\r\nFrom: <{watcher}>;tag=wt{call_id}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\nEvent: presence\r\nExpires: {expires}\r\n\
         Accept: application/pidf+xml\r\nContact: {contact}\r\nSupported: outbound\r\n\
         Content-Length: 0\r\n\r\n",
        via = peer.kind.via_token(),
    )
}

fn publish_udp(peer: &UdpPeer, aor: &str, n: u32, basic: &str, note: &str) -> Response {
    publish_udp_as(peer, aor, n, basic, note, None)
}

/// A PUBLISH over UDP, modifying the publication `etag` names when given.
fn publish_udp_as(
    peer: &UdpPeer,
    aor: &str,
    n: u32,
    basic: &str,
    note: &str,
    etag: Option<&str>,
) -> Response {
    let body = pidf(aor, "t1", basic, note);
    let port = peer.port();
    let if_match = etag
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    peer.send(&format!(
        "PUBLISH {aor} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKp{n}x{port};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{aor}>;tag=p{n}\r\nTo: <{aor}>\r\nCall-ID: pub{n}-{port}\r\n\
         CSeq: {n} PUBLISH\r\nEvent: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\n\
         {if_match}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    peer.recv_response()
}

struct Secure {
    server: common::TestServer,
    cert: Cert,
    config: presenced::config::Config,
    certs: tempfile::TempDir,
}

impl Secure {
    fn addr(&self, kind: TransportKind) -> SocketAddr {
        self.server.handle.addr(kind).expect("listener bound")
    }
}

fn start_secure(tweak: impl FnOnce(&mut presenced::config::Config, &Cert)) -> Secure {
    start_secure_on(None, tweak)
}

/// As [`start_secure`], on a manual clock when one is given.
fn start_secure_on(
    manual: Option<Arc<presenced::clock::ManualClock>>,
    tweak: impl FnOnce(&mut presenced::config::Config, &Cert),
) -> Secure {
    let certs = tempfile::tempdir().unwrap();
    let cert = make_cert(certs.path(), "server");
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(&dir);
    let any = "127.0.0.1:0".parse().unwrap();
    config.listen = vec![
        ListenAddr::Udp(any),
        ListenAddr::Tcp(any),
        ListenAddr::Tls(any),
        ListenAddr::Ws(any),
        ListenAddr::Wss(any),
    ];
    config.tls_certificate = Some(cert.cert.clone());
    config.tls_private_key = Some(cert.key.clone());
    tweak(&mut config, &cert);
    let clock: Arc<dyn presenced::clock::Clock> = match &manual {
        Some(m) => Arc::new(m.clone()),
        None => Arc::new(presenced::clock::SystemClock),
    };
    let handle = presenced::daemon::start(config.clone(), clock).expect("daemon starts");
    Secure {
        server: common::TestServer {
            handle,
            dir,
            clock: manual,
        },
        cert,
        config,
        certs,
    }
}

fn to_tag(r: &Response) -> String {
    r.headers
        .to()
        .ok()
        .and_then(|t| t.tag().map(str::to_string))
        .expect("a To tag")
}

fn basic_of(notify: &Request) -> String {
    let body = String::from_utf8_lossy(&notify.body).to_string();
    let start = body.find("<basic>").map(|i| i + 7).unwrap_or(0);
    let end = body.find("</basic>").unwrap_or(start);
    body.get(start..end).unwrap_or_default().to_string()
}

#[test]
fn publish_subscribe_and_notify_over_tls_ws_and_wss() {
    let s = start_secure(|_, _| {});
    for (n, kind) in [TransportKind::Tls, TransportKind::Ws, TransportKind::Wss]
        .into_iter()
        .enumerate()
    {
        let n = n as u32 + 1;
        let aor = format!("sip:alice{n}@example.com");
        let mut watcher = Peer::connect(kind, s.addr(kind), &s.cert.der);
        let call_id = format!("c{}", kind.name());
        watcher.send(&subscribe(
            &watcher,
            &aor,
            "sip:bob@example.com",
            &call_id,
            1,
            "",
            600,
        ));
        let ok = watcher.recv_response();
        assert_eq!(ok.status, 200, "{kind:?}");
        let contact = ok.headers.get("Contact").expect("a Contact").to_string();
        // RFC 7118 §5.2: `transport=ws` names WS and WSS alike.
        let param = if kind == TransportKind::Wss {
            "ws"
        } else {
            kind.name()
        };
        assert!(
            contact.contains(&format!("transport={param}>")),
            "{kind:?}: the Contact names the transport: {contact}"
        );
        let first = watcher.recv_notify();
        let via = first.headers.get("Via").unwrap().to_string();
        assert!(
            via.starts_with(&format!("SIP/2.0/{}", kind.via_token())),
            "{kind:?}: the NOTIFY's Via names the transport: {via}"
        );

        // A publication over the same kind of connection, then one over UDP: each
        // reaches the watcher over its own connection.
        let mut publisher = Peer::connect(kind, s.addr(kind), &s.cert.der);
        let body = pidf(&aor, "t1", "open", "over a secure link");
        publisher.send(&format!(
            "PUBLISH {aor} SIP/2.0\r\nVia: SIP/2.0/{via} pub.invalid;branch=z9hG4bKpub{n}\r\n\
             Max-Forwards: 70\r\nFrom: <{aor}>;tag=pt{n}\r\nTo: <{aor}>\r\nCall-ID: pub{n}\r\n\
             CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 600\r\n\
             Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            via = kind.via_token()
        ));
        assert_eq!(publisher.recv_response().status, 200, "{kind:?} PUBLISH");
        let open = watcher.recv_notify();
        assert_eq!(basic_of(&open), "open", "{kind:?}");

        let udp = UdpPeer::new(s.server.udp());
        assert_eq!(publish_udp(&udp, &aor, 7, "closed", "gone").status, 200);
        let closed = watcher.recv_notify();
        assert_eq!(basic_of(&closed), "closed", "{kind:?}");

        // Unsubscribe in the dialog.
        let tag = to_tag(&ok);
        watcher.send(&subscribe(
            &watcher,
            &aor,
            "sip:bob@example.com",
            &call_id,
            2,
            &tag,
            0,
        ));
        let bye = loop {
            match watcher.recv() {
                Message::Response(r) => break r,
                Message::Request(r) => {
                    let ok = Response::for_request(&r, 200, None).to_bytes();
                    watcher.send(std::str::from_utf8(&ok).unwrap());
                }
            }
        };
        assert_eq!(bye.status, 200, "{kind:?} unsubscribe");
    }
}

#[test]
fn a_websocket_upgrade_needs_the_sip_subprotocol_and_an_allowed_origin() {
    let s = start_secure(|c, _| c.ws_origins = vec!["https://phone.example.org".into()]);
    let ws = s.addr(TransportKind::Ws);
    assert!(
        Peer::connect_with(
            TransportKind::Ws,
            ws,
            &s.cert.der,
            Some("https://phone.example.org")
        )
        .is_ok(),
        "an allowed origin connects"
    );
    let refused = Peer::connect_with(
        TransportKind::Ws,
        ws,
        &s.cert.der,
        Some("https://evil.example"),
    )
    .err()
    .expect("another origin is refused");
    assert!(refused.contains("403"), "{refused}");

    // Without the sip subprotocol: 400.
    let tcp = TcpStream::connect(ws).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = ws_request(ws, "ws", Some("https://phone.example.org"));
    req.headers_mut().remove("Sec-WebSocket-Protocol");
    let e = match tungstenite::client(req, tcp) {
        Ok(_) => panic!("an upgrade without the sip subprotocol was accepted"),
        Err(e) => e,
    };
    assert!(e.to_string().contains("400"), "{e}");
}

#[test]
fn a_plain_text_client_on_the_tls_port_is_dropped_and_the_next_one_served() {
    let s = start_secure(|c, _| c.tls_handshake_timeout_ms = 300);
    let tls = s.addr(TransportKind::Tls);
    let mut plain = common::TcpPeer::connect(tls);
    plain.send(&common::options("TCP", plain.port(), "plain"));
    assert!(plain.closed_within(WAIT), "not a TLS ClientHello: closed");
    // A client that connects and says nothing is closed at the handshake timeout.
    let mut silent = common::TcpPeer::connect(tls);
    assert!(silent.closed_within(WAIT), "an idle handshake times out");
    let mut good = Peer::connect(TransportKind::Tls, tls, &s.cert.der);
    good.send(&common::options("TLS", good.port(), "good"));
    assert_eq!(good.recv_response().status, 200);
}

/// `aor`'s own watcher-info subscription over UDP (RFC 3857), answered as it goes.
fn watch_watchers(s: &Secure, aor: &str) -> UdpPeer {
    let owner = UdpPeer::new(s.server.udp());
    let port = owner.port();
    let user = aor
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("u");
    owner.send(&format!(
        "SUBSCRIBE {aor} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKwinfo{user};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{aor}>;tag=own\r\nTo: <{aor}>\r\nCall-ID: winfo-{user}@test\r\n\
         CSeq: 1 SUBSCRIBE\r\nContact: <{aor}>\r\nEvent: presence.winfo\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    ).replace(&format!("Contact: <{aor}>"), &format!("Contact: <sip:{user}@127.0.0.1:{port}>")));
    assert_eq!(owner.recv_response().status, 200);
    owner
}

/// Answers a NOTIFY `owner` received; its body.
fn answered(owner: &UdpPeer, m: Message) -> String {
    match m {
        Message::Request(r) => {
            owner.send_bytes(&Response::for_request(&r, 200, None).to_bytes());
            String::from_utf8_lossy(&r.body).to_string()
        }
        Message::Response(r) => panic!("unexpected response {}", r.status),
    }
}

/// A watcher-info subscriber learns the end of a subscription whose WebSocket closed,
/// within the grace period, without anyone refreshing or expiring anything.
#[test]
fn closing_a_websocket_ends_its_subscriptions_and_watcher_info_says_so() {
    let s = start_secure(|c, _| c.connection_grace_ms = 200);
    let aor = "sip:carol@example.com";
    let owner = watch_watchers(&s, aor);
    let answer = |m: Message| answered(&owner, m);
    let initial = answer(owner.recv());
    assert!(!initial.contains("<watcher "), "no watchers yet: {initial}");

    for kind in [TransportKind::Ws, TransportKind::Wss] {
        let mut ws = Peer::connect(kind, s.addr(kind), &s.cert.der);
        let watcher = format!("sip:{}@example.com", kind.name());
        ws.send(&subscribe(
            &ws,
            aor,
            &watcher,
            &format!("gone{}", kind.name()),
            1,
            "",
            600,
        ));
        assert_eq!(ws.recv_response().status, 200);
        ws.recv_notify();
        let active = answer(owner.recv());
        assert!(
            active.contains("status=\"active\"") && active.contains(&watcher),
            "{kind:?}: {active}"
        );
        let closed_at = Instant::now();
        ws.close();
        let ended = answer(owner.recv());
        assert!(
            ended.contains("status=\"terminated\"") && ended.contains("event=\"deactivated\""),
            "{kind:?}: the watcher's subscription ended: {ended}"
        );
        assert!(
            closed_at.elapsed() >= Duration::from_millis(200),
            "not before the grace period"
        );
    }
}

/// A TLS subscriber with a reachable Contact is not bound to its connection: once it
/// is gone, the next NOTIFY goes over a new TLS connection to the Contact (whose
/// certificate presenced checks). One that asked for an RFC 5626 flow (`;ob`) is bound:
/// its subscription ends with the connection.
#[test]
fn a_tls_subscription_outlives_its_connection_unless_it_asked_for_a_flow() {
    let s = start_secure(|c, cert| {
        c.connection_grace_ms = 0;
        c.tls_ca_list = Some(cert.cert.clone());
    });
    let aor = "sip:dave@example.com";
    let tls = s.addr(TransportKind::Tls);
    let owner = watch_watchers(&s, aor);
    answered(&owner, owner.recv());

    // The kept subscriber's Contact is a TLS listener of its own.
    let contact = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let contact_port = contact.local_addr().unwrap().port();
    let mut kept = Peer::connect(TransportKind::Tls, tls, &s.cert.der);
    let kept_sub = subscribe(&kept, aor, "sip:kept@example.com", "kept", 1, "", 600).replace(
        &format!("<sip:w@127.0.0.1:{};transport=tls>", kept.port()),
        &format!("<sip:w@127.0.0.1:{contact_port};transport=tls>"),
    );
    kept.send(&kept_sub);
    assert_eq!(kept.recv_response().status, 200);
    kept.recv_notify();
    let until = |who: &str| loop {
        if answered(&owner, owner.recv()).contains(who) {
            break;
        }
    };
    until("sip:kept@example.com");

    let mut flow = Peer::connect(TransportKind::Tls, tls, &s.cert.der);
    let with_ob = subscribe(&flow, aor, "sip:flow@example.com", "flow", 1, "", 600)
        .replace(";transport=tls>", ";transport=tls;ob>");
    flow.send(&with_ob);
    assert_eq!(flow.recv_response().status, 200);
    flow.recv_notify();
    until("sip:flow@example.com");
    kept.close();
    flow.close();

    // The flow's subscription ends at once (watcher-info says so); the kept one does
    // not (its NOTIFY below reaches it).
    let ended = answered(&owner, owner.recv());
    assert!(
        ended.contains("status=\"terminated\" event=\"deactivated\">sip:flow@example.com<"),
        "{ended}"
    );
    assert!(
        !ended.contains(">sip:kept@example.com<")
            || ended.contains("status=\"active\" event=\"subscribe\">sip:kept@example.com<"),
        "{ended}"
    );

    // A change reaches the kept subscriber over a connection presenced opens.
    let udp = UdpPeer::new(s.server.udp());
    assert_eq!(publish_udp(&udp, aor, 1, "open", "back").status, 200);
    contact.set_nonblocking(false).unwrap();
    let (tcp, _) = contact.accept().expect("presenced connects to the Contact");
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let chain = vec![s.cert.der.clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&s.cert.key).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let conn = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut framer = StreamFramer::new(1 << 20);
    let mut buf = vec![0u8; 16 * 1024];
    let notify = loop {
        if let Ok(Some(Frame::Message(m))) = framer.next_frame() {
            break m;
        }
        let n = stream.read(&mut buf).expect("reads the NOTIFY");
        assert!(n > 0, "closed before a NOTIFY");
        framer.push(&buf[..n]);
    };
    let Ok(Message::Request(notify)) = Message::parse(&notify) else {
        panic!("not a request");
    };
    assert_eq!(notify.method, Method::Notify);
    assert_eq!(basic_of(&notify), "open");
    stream
        .write_all(&Response::for_request(&notify, 200, None).to_bytes())
        .unwrap();
}

/// One subscriber whose WebSocket stops being read never holds up the NOTIFYs of
/// another subscriber of the same presentity.
#[test]
fn a_websocket_that_is_not_read_does_not_delay_other_watchers() {
    let s = start_secure(|_, _| {});
    let aor = "sip:erin@example.com";
    let mut stuck = Peer::connect(TransportKind::Ws, s.addr(TransportKind::Ws), &s.cert.der);
    stuck.send(&subscribe(
        &stuck,
        aor,
        "sip:stuck@example.com",
        "stuck",
        1,
        "",
        600,
    ));
    assert_eq!(stuck.recv_response().status, 200);
    stuck.recv_notify();
    // From here on `stuck` reads nothing.
    let mut good = Peer::connect(TransportKind::Wss, s.addr(TransportKind::Wss), &s.cert.der);
    good.send(&subscribe(
        &good,
        aor,
        "sip:good@example.com",
        "good",
        1,
        "",
        600,
    ));
    assert_eq!(good.recv_response().status, 200);
    good.recv_notify();
    let publisher = UdpPeer::new(s.server.udp());
    let note = "x".repeat(4000);
    let mut slowest = Duration::ZERO;
    let mut etag: Option<String> = None;
    for n in 1..=1200 {
        let basic = if n % 2 == 0 { "open" } else { "closed" };
        let r = publish_udp_as(&publisher, aor, n, basic, &note, etag.as_deref());
        assert_eq!(r.status, 200);
        etag = r.headers.get("SIP-ETag").map(str::to_string);
        let sent = Instant::now();
        let notify = good.recv_notify();
        slowest = slowest.max(sent.elapsed());
        assert_eq!(basic_of(&notify), basic, "publication {n}");
    }
    // 600 × 3 kB went to a connection nobody reads: far more than its outbox holds.
    assert!(
        slowest < WAIT,
        "slowest NOTIFY to the reading watcher: {slowest:?}"
    );
}

#[test]
fn a_reload_swaps_the_certificate_for_new_connections() {
    let s = start_secure(|_, _| {});
    let tls = s.addr(TransportKind::Tls);
    let before = Peer::connect(TransportKind::Tls, tls, &s.cert.der);
    // A new certificate written over the old files, then a reload.
    let fresh = make_cert(s.certs.path(), "fresh");
    std::fs::copy(&fresh.cert, &s.cert.cert).unwrap();
    std::fs::copy(&fresh.key, &s.cert.key).unwrap();
    let config = s.config.clone();
    let done = s.server.handle.reload(config).expect("reloads");
    assert!(done.get("failed").is_none(), "{done}");
    assert!(
        tls_connect(tls, &s.cert.der).is_err(),
        "the old certificate is no longer presented"
    );
    let mut after = Peer::connect(TransportKind::Tls, tls, &fresh.der);
    after.send(&common::options("TLS", after.port(), "after"));
    assert_eq!(after.recv_response().status, 200);
    // A broken file is refused and the credentials in use stay.
    std::fs::write(&s.cert.key, "garbage").unwrap();
    let done = s
        .server
        .handle
        .reload(s.config.clone())
        .expect("the reload itself runs");
    assert!(done["failed"].to_string().contains("tls"), "{done}");
    Peer::connect(TransportKind::Tls, tls, &fresh.der);
    drop(before);
}

/// One source opening TLS connections it never completes takes at most its share of
/// the handshake places; another client still gets through.
#[test]
fn a_handshake_flood_from_one_source_does_not_keep_others_out() {
    let s = start_secure(|c, _| {
        c.tls_max_handshakes = 8;
        c.tls_handshake_timeout_ms = 60_000;
        c.max_connections_per_source = 1000;
    });
    let tls = s.addr(TransportKind::Tls);
    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            socket
                .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
                .ok()?;
            socket.connect(&tls.into()).ok()?;
            Some(socket.into())
        })
        .collect();
    assert!(flood.len() >= 100, "the flood connected");
    let started = Instant::now();
    let mut other = Peer::connect(TransportKind::Tls, tls, &s.cert.der);
    other.send(&common::options("TLS", other.port(), "other"));
    assert_eq!(other.recv_response().status, 200);
    assert!(started.elapsed() < WAIT);
    drop(flood);
}

/// The XCAP server over HTTPS (`xcap_tls`), with the SIP listeners' certificate: a
/// document written and read back over TLS; plain HTTP gets no answer.
#[test]
fn xcap_is_served_over_https_with_the_same_certificate() {
    let s = start_secure(|c, _| {
        c.force_active = false;
        c.xcap_tls = true;
        c.xcap_listen = "127.0.0.1:0".parse().unwrap();
    });
    let xcap = s.server.handle.xcap_addr().expect("XCAP server bound");
    let exchange = |request: &str| -> String {
        let mut tls = tls_connect(xcap, &s.cert.der).expect("TLS to the XCAP server");
        tls.write_all(request.as_bytes()).unwrap();
        tls.flush().unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).to_string()
    };
    let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
               <cr:ruleset xmlns=\"urn:ietf:params:xml:ns:pres-rules\" \
               xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\"/>";
    let path = "/xcap-root/pres-rules/users/sip:frank@example.com/index";
    let put = exchange(&format!(
        "PUT {path} HTTP/1.1\r\nHost: {xcap}\r\nConnection: close\r\n\
         Content-Type: application/auth-policy+xml\r\nContent-Length: {}\r\n\r\n{doc}",
        doc.len()
    ));
    assert!(put.starts_with("HTTP/1.1 201"), "{put}");
    let get = exchange(&format!(
        "GET {path} HTTP/1.1\r\nHost: {xcap}\r\nConnection: close\r\n\r\n"
    ));
    assert!(
        get.starts_with("HTTP/1.1 200") && get.contains("ruleset"),
        "{get}"
    );

    let mut plain = TcpStream::connect(xcap).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {xcap}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("ruleset"),
        "no document over plain HTTP"
    );
}

/// A quiet WebSocket is pinged every `ws_ping_interval`; a client that answers (its
/// library pongs as it reads) outlives `tcp_idle_timeout`, one that answers nothing is
/// closed at it. On a manual clock: nothing here waits for real time to pass.
#[test]
fn websocket_pings_keep_an_answering_client_and_drop_a_silent_one() {
    let clock = presenced::clock::ManualClock::new();
    let s = start_secure_on(Some(clock.clone()), |c, _| {
        c.ws_ping_interval = 1;
        c.tcp_idle_timeout = 3;
    });
    let ws = s.addr(TransportKind::Ws);
    let mut answering = Peer::connect(TransportKind::Ws, ws, &s.cert.der);
    let silent = TcpStream::connect(ws).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let (mut silent, _) = tungstenite::client(ws_request(ws, "ws", None), silent).unwrap();
    let mut pinged = 0;
    for _ in 0..6 {
        s.server.advance(Duration::from_millis(1000));
        // The ping arrives; reading it makes the client's library answer with a pong.
        match &mut answering.io {
            Io::Ws(w) => {
                if let Ok(WsMessage::Ping(_)) = w.read() {
                    pinged += 1;
                }
                let _ = w.flush();
            }
            _ => unreachable!(),
        }
    }
    assert!(pinged >= 3, "pinged {pinged} times");
    answering.send(&common::options("WS", answering.port(), "alive"));
    assert_eq!(
        answering.recv_response().status,
        200,
        "the answering client outlived the idle timeout"
    );
    // The silent one was closed at the idle timeout: what it reads ends in a close.
    let ended = loop {
        match silent.read() {
            Ok(WsMessage::Close(_)) | Err(_) => break true,
            Ok(_) => continue,
        }
    };
    assert!(ended);
}

/// With `tls_verify_client`, a client must show a certificate `tls_ca_list` vouches for.
#[test]
fn client_certificates_are_required_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["phone.example.org".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();

    let s = start_secure(move |c, _| {
        c.tls_verify_client = true;
        c.tls_ca_list = Some(ca_file);
    });
    let tls = s.addr(TransportKind::Tls);
    // Without a certificate: the handshake fails (or the first read does, in TLS 1.3).
    let refused = match tls_connect(tls, &s.cert.der) {
        Err(_) => true,
        Ok(mut t) => {
            let _ = t.write_all(common::options("TLS", 1, "nocert").as_bytes());
            let _ = t.flush();
            let mut buf = [0u8; 512];
            !matches!(t.read(&mut buf), Ok(n) if n > 0)
        }
    };
    assert!(refused, "a client without a certificate is refused");

    // With one the CA signed: served.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.cert.der.clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![client.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
        )
        .unwrap();
    let tcp = TcpStream::connect(tls).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(tls.ip().into()))
            .unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let port = stream.sock.local_addr().unwrap().port();
    stream
        .write_all(common::options("TLS", port, "withcert").as_bytes())
        .unwrap();
    let mut framer = StreamFramer::new(1 << 16);
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        if let Ok(Some(Frame::Message(m))) = framer.next_frame() {
            break m;
        }
        let n = stream.read(&mut buf).expect("an answer");
        assert!(n > 0, "closed");
        framer.push(&buf[..n]);
    };
    assert!(answer.starts_with(b"SIP/2.0 200"));
}
