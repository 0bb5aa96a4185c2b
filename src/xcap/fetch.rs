//! The tiny XCAP fetcher (OpenSIPS xcap_client): documents that live on external XCAP
//! servers are fetched with a plain HTTP/1.1 GET (If-None-Match with the stored tag),
//! checked like uploads, and stored with source "fetched". Each GET is bounded in time
//! and size and follows no redirect; a failed fetch keeps the last good document and
//! logs why. It runs on its own task, so a slow or dead server never holds up SIP.

use std::fmt;
use std::io;
use std::time::Duration;

use futures_lite::{AsyncWriteExt, FutureExt};
use log::{debug, warn};
use smol::net::TcpStream;

use super::http::{self, ReadError};
use super::{Auid, Changed};
use crate::store::xcap::{doc_type, source};
use crate::store::{Store, Xcap};

/// Limits of one GET.
#[derive(Debug, Clone, Copy)]
pub struct FetchConfig {
    /// Connect, send and receive together.
    pub timeout: Duration,
    pub max_size: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            timeout: Duration::from_secs(5),
            max_size: 65536,
        }
    }
}

/// What a GET found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Document {
        body: Vec<u8>,
        etag: Option<String>,
    },
    /// 304: the stored document is current.
    NotModified,
    /// 404: the server has no such document.
    NotFound,
}

/// Why a GET brought nothing usable.
#[derive(Debug)]
pub enum FetchError {
    BadUrl(String),
    Connect(io::Error),
    Timeout,
    Http(ReadError),
    /// A 3xx: redirects are not followed (the server list is the trust boundary).
    Redirect(u16),
    Status(u16),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUrl(u) => write!(f, "not an http:// URL: {u}"),
            FetchError::Connect(e) => write!(f, "cannot connect: {e}"),
            FetchError::Timeout => write!(f, "timed out"),
            FetchError::Http(e) => write!(f, "{e}"),
            FetchError::Redirect(s) => write!(f, "redirect ({s}) not followed"),
            FetchError::Status(s) => write!(f, "server answered {s}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// An `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(s: &str) -> Result<Url, FetchError> {
    let bad = || FetchError::BadUrl(s.to_owned());
    let rest = s.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 80,
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
            None => (authority.to_owned(), 80),
        }
    };
    let forbidden = |c: char| c.is_whitespace() || c.is_control();
    if host.is_empty() || host.contains(forbidden) || path.contains(forbidden) {
        return Err(bad());
    }
    Ok(Url {
        host,
        port,
        path: path.to_owned(),
    })
}

/// One bounded GET.
pub async fn get(url: &str, etag: Option<&str>, cfg: &FetchConfig) -> Result<Fetched, FetchError> {
    let u = parse_url(url)?;
    let exchange = async {
        let mut stream = TcpStream::connect((u.host.as_str(), u.port))
            .await
            .map_err(FetchError::Connect)?;
        let host = if u.host.contains(':') {
            format!("[{}]:{}", u.host, u.port)
        } else {
            format!("{}:{}", u.host, u.port)
        };
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: presenced\r\nConnection: close\r\n",
            u.path
        );
        if let Some(tag) = etag {
            req.push_str(&format!("If-None-Match: \"{tag}\"\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(FetchError::Connect)?;
        http::read_response(&mut stream, 16 * 1024, cfg.max_size)
            .await
            .map_err(FetchError::Http)
    };
    let timeout = async {
        smol::Timer::after(cfg.timeout).await;
        Err(FetchError::Timeout)
    };
    let resp = exchange.or(timeout).await?;
    match resp.status {
        200 => Ok(Fetched::Document {
            etag: resp
                .header("ETag")
                .map(|t| t.trim_start_matches("W/").trim_matches('"').to_owned()),
            body: resp.body,
        }),
        304 => Ok(Fetched::NotModified),
        404 => Ok(Fetched::NotFound),
        s @ 300..=399 => Err(FetchError::Redirect(s)),
        s => Err(FetchError::Status(s)),
    }
}

/// Fetches the documents of users from the configured XCAP servers into the store.
#[derive(Clone)]
pub struct Fetcher {
    store: Store,
    roots: Vec<String>,
    cfg: FetchConfig,
    doc_types: Vec<u8>,
}

impl Fetcher {
    /// `servers` are XCAP roots (`http://host:port/xcap-root`) or bare host names, which
    /// mean `http://<host>/xcap-root`. pidf-manipulation documents are fetched too when
    /// `pidf_manipulation` is on.
    pub fn new(
        store: Store,
        servers: &[String],
        cfg: FetchConfig,
        pidf_manipulation: bool,
    ) -> Self {
        let roots = servers
            .iter()
            .map(|s| {
                if s.starts_with("http://") {
                    s.trim_end_matches('/').to_owned()
                } else {
                    format!("http://{}/xcap-root", s.trim_end_matches('/'))
                }
            })
            .collect();
        let mut doc_types = vec![doc_type::PRES_RULES];
        if pidf_manipulation {
            doc_types.push(doc_type::PIDF_MANIPULATION);
        }
        Fetcher {
            store,
            roots,
            cfg,
            doc_types,
        }
    }

    /// `<root>/<auid>/users/sip:<user>@<domain>/index`.
    pub fn document_url(root: &str, auid: &Auid, user: &str, domain: &str) -> String {
        format!(
            "{root}/{}/users/sip:{user}@{domain}/{}",
            auid.name,
            super::DEFAULT_DOCUMENT
        )
    }

    /// Fetches a user's documents from every server; what changed.
    pub async fn fetch_user(&self, user: &str, domain: &str) -> Vec<Changed> {
        let mut changed = Vec::new();
        for root in &self.roots {
            for &t in &self.doc_types {
                let Some(auid) = super::auid_for_type(t) else {
                    continue;
                };
                let url = Self::document_url(root, auid, user, domain);
                if let Some(c) = self.update(&url, auid, user, domain).await {
                    changed.push(c);
                }
            }
        }
        changed
    }

    /// OpenSIPS refreshXcapDoc: re-fetches the document stored under `doc_uri` (and
    /// `port`, unless 0), or fetches it afresh when `doc_uri` is a full document URL.
    pub async fn refresh_doc(&self, doc_uri: &str, port: u32) -> Vec<Changed> {
        let stored: Vec<Xcap> = self
            .store
            .iter_xcap()
            .filter_map(Result::ok)
            .filter(|x| x.doc_uri == doc_uri && (port == 0 || x.port == port))
            .collect();
        let mut changed = Vec::new();
        if stored.is_empty() {
            match document_of_url(doc_uri) {
                Some((auid, user, domain)) => {
                    changed.extend(self.update(doc_uri, auid, &user, &domain).await);
                }
                None => warn!("refreshXcapDoc: {doc_uri} is neither stored nor an XCAP URL"),
            }
        }
        for x in stored {
            let Some(auid) = super::auid_for_type(x.doc_type) else {
                continue;
            };
            changed.extend(self.update(&x.doc_uri, auid, &x.username, &x.domain).await);
        }
        changed
    }

    /// The periodic query: every fetched document, again.
    pub async fn refresh_all(&self) -> Vec<Changed> {
        let fetched: Vec<Xcap> = self
            .store
            .iter_xcap()
            .filter_map(Result::ok)
            .filter(|x| x.source == source::FETCHED)
            .collect();
        let mut changed = Vec::new();
        for x in fetched {
            let Some(auid) = super::auid_for_type(x.doc_type) else {
                continue;
            };
            changed.extend(self.update(&x.doc_uri, auid, &x.username, &x.domain).await);
        }
        changed
    }

    /// Fetches one document and stores what is new; `Some` when the store changed.
    pub async fn update(
        &self,
        url: &str,
        auid: &Auid,
        user: &str,
        domain: &str,
    ) -> Option<Changed> {
        let existing = match self.store.get_xcap(user, domain, auid.doc_type, url) {
            Ok(x) => x,
            Err(e) => {
                warn!("xcap fetch: store: {e}");
                return None;
            }
        };
        let changed = Changed {
            username: user.to_owned(),
            domain: domain.to_owned(),
            doc_type: auid.doc_type,
        };
        let result = get(url, existing.as_ref().map(|x| x.etag.as_str()), &self.cfg).await;
        match result {
            Ok(Fetched::NotModified) => None,
            Ok(Fetched::NotFound) => {
                existing.as_ref()?;
                debug!("xcap fetch: {url} is gone from the server");
                match self.store.delete_xcap(user, domain, auid.doc_type, url) {
                    Ok(_) => Some(changed),
                    Err(e) => {
                        warn!("xcap fetch: store: {e}");
                        None
                    }
                }
            }
            Ok(Fetched::Document { body, etag }) => {
                if let Err(e) = super::validate(auid, &body, self.cfg.max_size) {
                    warn!("xcap fetch: {url}: {e}; keeping the last good document");
                    return None;
                }
                if existing.as_ref().is_some_and(|x| x.doc == body) {
                    return None;
                }
                let row = Xcap {
                    username: user.to_owned(),
                    domain: domain.to_owned(),
                    doc_type: auid.doc_type,
                    doc_uri: url.to_owned(),
                    etag: etag.unwrap_or_else(|| super::etag_of(&body)),
                    doc: body,
                    source: source::FETCHED,
                    port: parse_url(url).map_or(0, |u| u32::from(u.port)),
                };
                match self.store.put_xcap(&row) {
                    Ok(()) => Some(changed),
                    Err(e) => {
                        warn!("xcap fetch: store: {e}");
                        None
                    }
                }
            }
            Err(e) => {
                warn!("xcap fetch: {url}: {e}; keeping the last good document");
                None
            }
        }
    }
}

/// The usage, user and domain a full document URL names.
fn document_of_url(url: &str) -> Option<(&'static Auid, String, String)> {
    let u = parse_url(url).ok()?;
    super::AUIDS.iter().find_map(|a| {
        let marker = format!("/{}/users/", a.name);
        let at = u.path.find(&marker)?;
        let root = u.path.get(..at)?;
        match super::parse_path(root, &u.path).ok()? {
            super::XcapPath::User {
                auid,
                username,
                domain,
                ..
            } => Some((auid, username, domain)),
            super::XcapPath::Caps => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_only_with_default_port_80() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/xcap-root/x").unwrap(),
            Url {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/xcap-root/x".into()
            }
        );
        assert_eq!(parse_url("http://xcap.example.org").unwrap().port, 80);
        assert_eq!(parse_url("http://[::1]:81/a").unwrap().host, "::1");
        for bad in [
            "https://a/b",
            "ftp://a",
            "http://",
            "http://a:port/",
            "http://a b/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_document_url_names_its_usage_and_user() {
        let (auid, user, domain) =
            document_of_url("http://127.0.0.1:9/root/pres-rules/users/sip:alice@example.com/index")
                .unwrap();
        assert_eq!(
            (auid.name, user.as_str(), domain.as_str()),
            ("pres-rules", "alice", "example.com")
        );
        assert!(document_of_url("http://127.0.0.1:9/other").is_none());
    }
}
