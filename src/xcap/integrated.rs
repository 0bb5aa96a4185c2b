//! The built-in XCAP server (RFC 4825, whole documents only): GET, PUT and DELETE of
//! the usages in [`super::AUIDS`] under `<root>/<auid>/users/<xui>/<document>`, with
//! ETag preconditions, plus the xcap-caps document. Writes go to the `xcap` table and
//! each is reported as a [`Changed`] so the engine re-evaluates at once.
//!
//! With a [`Gate`] (configuration `auth = "digest"` or `"trusted"`), every request but
//! the public xcap-caps document needs HTTP digest credentials (RFC 7616) for an account
//! of the `subscriber` table, and a user reads and writes only the documents under
//! `users/<their own AOR>/` (403 otherwise). Without one it authenticates nobody, and
//! the configuration keeps it on loopback.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncWriteExt, FutureExt};
use log::{debug, info, warn};
use smol::channel::Sender;
use smol::net::TcpListener;

use super::http::{self, ReadError, Request};
use super::{Changed, DocError, Notice, Precondition, XcapPath};
use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::store::xcap::source;
use crate::store::{Store, Xcap};

/// The XCAP root path every document URI starts with.
pub const ROOT: &str = "/xcap-root";
/// A connection idle this long between requests is closed.
const IDLE: Duration = Duration::from_secs(30);
/// How long a write's answer waits for the engine to apply it.
const APPLY_WAIT: Duration = Duration::from_secs(2);
/// What is read and dropped after a refused request, so closing does not reset the
/// connection before the client has read our answer.
const DRAIN_LIMIT: usize = 1 << 20;
/// The largest request head read; a longer one is refused with 431.
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_document_size: usize,
    /// The server's port, recorded in the `port` column.
    pub port: u32,
}

/// Who may touch which documents: digest credentials, then ownership.
pub struct Gate {
    auth: std::sync::Mutex<Authenticator>,
    /// The realm; `None`: the domain of the XUI in the path.
    realm: Option<String>,
    clock: Arc<dyn Clock>,
}

impl Gate {
    pub fn new(auth: Authenticator, realm: Option<String>, clock: Arc<dyn Clock>) -> Gate {
        Gate {
            auth: std::sync::Mutex::new(auth),
            realm,
            clock,
        }
    }

    /// `Ok` lets the request through to [`handle`]; `Err` is the answer (401 with a
    /// challenge, 403, 404).
    pub fn admit(&self, store: &Store, req: &Request) -> Result<(), Reply> {
        let path = match super::parse_path(ROOT, &req.path) {
            Ok(p) => p,
            Err(e) => return Err(Reply::error(404, &e.to_string())),
        };
        let (owner, domain) = match &path {
            // The capabilities document is public and read-only.
            XcapPath::Caps => return Ok(()),
            XcapPath::User {
                username, domain, ..
            } => (
                format!("sip:{username}@{domain}"),
                domain.to_ascii_lowercase(),
            ),
        };
        let realm = self.realm.clone().unwrap_or(domain);
        let now = self.clock.unix_now();
        let checked = match self.auth.lock() {
            Ok(mut a) => a.check_http(
                &req.method,
                &req.path,
                req.header("Authorization"),
                &realm,
                store,
                now,
            ),
            Err(_) => return Err(Reply::error(500, "authentication state poisoned")),
        };
        match checked {
            Ok(identity)
                if crate::auth::identity_key(&identity) == crate::auth::identity_key(&owner) =>
            {
                Ok(())
            }
            Ok(identity) => {
                info!("xcap: {identity} refused access to {}", req.path);
                Err(Reply::error(403, "not your document"))
            }
            Err(challenges) => {
                let mut r = Reply::error(401, "credentials needed");
                for c in challenges {
                    r = r.with("WWW-Authenticate", c);
                }
                Err(r)
            }
        }
    }
}

/// One answer, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, mime: &str, body: Vec<u8>) -> Reply {
        self.headers.push(("Content-Type", mime.to_owned()));
        self.body = body;
        self
    }

    fn error(status: u16, why: &str) -> Reply {
        Reply::new(status).body("text/plain", format!("{why}\n").into_bytes())
    }

    fn conflict(e: &DocError) -> Reply {
        Reply::new(409).body(super::ERROR_MIME, e.error_body())
    }
}

/// The status a request that cannot be read is refused with (the connection closes
/// after it).
pub fn refusal(e: &ReadError) -> u16 {
    match e {
        ReadError::BodyTooLarge => 413,
        ReadError::HeadTooLarge => 431,
        ReadError::LengthRequired => 411,
        _ => 400,
    }
}

/// Answers one request (sans-I/O apart from the store).
pub fn handle(store: &Store, cfg: &ServerConfig, req: &Request) -> (Reply, Option<Changed>) {
    let path = match super::parse_path(ROOT, &req.path) {
        Ok(p) => p,
        Err(e) => return (Reply::error(404, &e.to_string()), None),
    };
    let (auid, username, domain, doc_uri) = match path {
        XcapPath::Caps => {
            return match req.method.as_str() {
                "GET" => (
                    Reply::new(200)
                        .with(
                            "ETag",
                            format!("\"{}\"", super::etag_of(&super::caps_document())),
                        )
                        .body(super::XCAP_CAPS_MIME, super::caps_document()),
                    None,
                ),
                _ => (Reply::error(405, "read-only").with("Allow", "GET"), None),
            };
        }
        XcapPath::User {
            auid,
            username,
            domain,
            xui,
            document,
        } => {
            let doc_uri = format!("{ROOT}/{}/users/{xui}/{document}", auid.name);
            (auid, username, domain, doc_uri)
        }
    };
    let current = match store.get_xcap(&username, &domain, auid.doc_type, &doc_uri) {
        Ok(c) => c,
        Err(e) => {
            warn!("xcap: store: {e}");
            return (Reply::error(500, "store"), None);
        }
    };
    let is_get = req.method == "GET";
    match super::check_preconditions(
        req.header("If-Match"),
        req.header("If-None-Match"),
        current.as_ref().map(|c| c.etag.as_str()),
        is_get,
    ) {
        Precondition::Proceed => {}
        Precondition::Failed => return (Reply::error(412, "precondition failed"), None),
        Precondition::NotModified => {
            let tag = current.map(|c| c.etag).unwrap_or_default();
            return (Reply::new(304).with("ETag", format!("\"{tag}\"")), None);
        }
    }
    let changed = Changed {
        username: username.clone(),
        domain: domain.clone(),
        doc_type: auid.doc_type,
    };
    match req.method.as_str() {
        "GET" => match current {
            Some(c) => (
                Reply::new(200)
                    .with("ETag", format!("\"{}\"", c.etag))
                    .body(auid.mime, c.doc),
                None,
            ),
            None => (Reply::error(404, "no such document"), None),
        },
        "PUT" => {
            // RFC 4825 §8.2.1: the body must be of the usage's MIME type.
            if let Some(ct) = req.header("Content-Type") {
                let essence = ct.split(';').next().unwrap_or("").trim();
                if !essence.eq_ignore_ascii_case(auid.mime) {
                    return (Reply::error(415, &format!("expected {}", auid.mime)), None);
                }
            }
            let valid = super::validate(auid, &req.body, cfg.max_document_size).and_then(|()| {
                match auid.doc_type {
                    crate::store::xcap::doc_type::RLS_SERVICES => super::taken_services(
                        &req.body,
                        &doc_uri,
                        store.iter_xcap().filter_map(Result::ok),
                    ),
                    _ => Ok(()),
                }
            });
            if let Err(e) = valid {
                debug!("xcap: PUT {doc_uri} refused: {e}");
                return match e {
                    DocError::TooLarge(_) => (Reply::error(413, &e.to_string()), None),
                    _ => (Reply::conflict(&e), None),
                };
            }
            let etag = super::etag_of(&req.body);
            let row = Xcap {
                username,
                domain,
                doc_type: auid.doc_type,
                doc_uri,
                doc: req.body.clone(),
                etag: etag.clone(),
                source: source::INTEGRATED,
                port: cfg.port,
            };
            if let Err(e) = store.put_xcap(&row) {
                warn!("xcap: store: {e}");
                return (Reply::error(500, "store"), None);
            }
            let status = if current.is_some() { 200 } else { 201 };
            (
                Reply::new(status).with("ETag", format!("\"{etag}\"")),
                Some(changed),
            )
        }
        "DELETE" => {
            if current.is_none() {
                return (Reply::error(404, "no such document"), None);
            }
            match store.delete_xcap(&username, &domain, auid.doc_type, &doc_uri) {
                Ok(_) => (Reply::new(200), Some(changed)),
                Err(e) => {
                    warn!("xcap: store: {e}");
                    (Reply::error(500, "store"), None)
                }
            }
        }
        _ => (
            Reply::error(405, "method not allowed").with("Allow", "GET, PUT, DELETE"),
            None,
        ),
    }
}

/// Accepts connections for ever; each is served on its own task.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    store: Store,
    cfg: ServerConfig,
    gate: Option<Arc<Gate>>,
    changes: Sender<Notice>,
    ex: Arc<smol::Executor<'static>>,
    answers: Arc<crate::metrics::StatusCounts>,
    tls: Option<crate::transport::TlsContext>,
) {
    if let Ok(a) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!("XCAP server listening on {scheme}://{a}{ROOT}");
    }
    http::accept_each(listener, "xcap", ex, move |stream| {
        let (store, cfg, changes) = (store.clone(), cfg.clone(), changes.clone());
        let (gate, answers) = (gate.clone(), answers.clone());
        // The credentials in use when the connection arrives (reloads swap them).
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        async move {
            let Some(acceptor) = acceptor else {
                return connection(stream, store, cfg, gate, changes, &answers).await;
            };
            let acceptor = acceptor.ok_or(ReadError::Closed)?;
            let handshake =
                async { acceptor.accept(stream).await.map_err(ReadError::Io) }.or(async {
                    smol::Timer::after(HANDSHAKE).await;
                    Err(ReadError::Closed)
                });
            let stream = handshake.await?;
            connection(stream, store, cfg, gate, changes, &answers).await
        }
    })
    .await;
}

/// A TLS handshake not done by then closes the connection.
const HANDSHAKE: Duration = Duration::from_secs(10);

async fn connection<S>(
    mut stream: S,
    store: Store,
    cfg: ServerConfig,
    gate: Option<Arc<Gate>>,
    changes: Sender<Notice>,
    answers: &crate::metrics::StatusCounts,
) -> Result<(), ReadError>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let read = http::read_request(&mut stream, &mut buf, MAX_HEAD, cfg.max_document_size);
        let timeout = async {
            smol::Timer::after(IDLE).await;
            Err(ReadError::Closed)
        };
        let req = match read.or(timeout).await {
            Ok(r) => r,
            Err(ReadError::Closed) => return Ok(()),
            Err(e) => {
                let status = refusal(&e);
                answers.record(status);
                let wire = http::response_bytes(status, &[("Connection", "close".into())], b"");
                let _ = stream.write_all(&wire).await;
                let _ = stream.flush().await;
                drain(&mut stream).await;
                return Err(e);
            }
        };
        let keep = req.keep_alive();
        let (s2, c2) = (store.clone(), cfg.clone());
        let method = req.method.clone();
        let path = req.path.clone();
        let g2 = gate.clone();
        let (reply, changed) =
            smol::unblock(move || match g2.as_ref().map(|g| g.admit(&s2, &req)) {
                Some(Err(refused)) => (refused, None),
                _ => handle(&s2, &c2, &req),
            })
            .await;
        debug!("xcap: {method} {path} -> {}", reply.status);
        answers.record(reply.status);
        if let Some(c) = changed {
            // Answer once the watchers were re-evaluated, so a client that acts on the
            // answer never races its own change.
            let (done_tx, done_rx) = smol::channel::bounded(1);
            if changes.send((c, Some(done_tx))).await.is_ok() {
                let applied = async { done_rx.recv().await.is_ok() };
                let late = async {
                    smol::Timer::after(APPLY_WAIT).await;
                    false
                };
                if !applied.or(late).await {
                    debug!("xcap: {path}: engine did not confirm the change in time");
                }
            }
        }
        let mut headers = reply.headers;
        if !keep {
            headers.push(("Connection", "close".into()));
        }
        let wire = http::response_bytes(reply.status, &headers, &reply.body);
        stream.write_all(&wire).await.map_err(ReadError::Io)?;
        // TLS holds what was written until a flush.
        stream.flush().await.map_err(ReadError::Io)?;
        if !keep {
            let _ = stream.close().await;
            return Ok(());
        }
    }
}

/// Reads and drops what the client still sends, for a bounded time and amount.
async fn drain<S: futures_lite::AsyncRead + Unpin>(stream: &mut S) {
    use futures_lite::AsyncReadExt;
    let mut left = DRAIN_LIMIT;
    let mut chunk = [0u8; 8192];
    let reading = async {
        while left > 0 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    reading
        .or(async {
            smol::Timer::after(Duration::from_secs(1)).await;
        })
        .await;
}
