//! Who is asking. Every PUBLISH and SUBSCRIBE passes here before the engine sees it,
//! and leaves with an [`Identity`] the engine uses in place of the From header — or
//! with the answer that refuses it (401/407 challenge, 403, 400).
//!
//! Modes (`auth` in the configuration):
//! - `none`: no authentication; the identity is the From AOR and anyone may publish for
//!   anyone (today's behaviour on loopback, and OpenSIPS's without a script check).
//! - `digest`: RFC 3261 §22 digest with RFC 7616/8760 algorithms, qop=auth, nonces from
//!   [`nonce`] (stateless HMAC, expiring, replay-checked by nonce count), accounts
//!   from the store's `subscriber` table. The identity is `sip:username@realm`.
//! - `trusted`: requests from configured proxy addresses are taken as authenticated,
//!   with the identity from P-Asserted-Identity (else From); everyone else is challenged
//!   as in `digest`.
//!
//! Authorization with that identity: a PUBLISH only for the identity's own presentity
//! unless the identity or its source address is a configured on-behalf publisher
//! ([`Identity::may_publish_for`]); SUBSCRIBE's watcher is the identity (so pres-rules,
//! owner-only packages and stale-subscription replacement all use it).
//!
//! Sans-I/O: requests, the store and `now` (Unix seconds) in, a verdict out.

pub mod digest;
pub mod nonce;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use log::debug;

use crate::sip::endpoint::Source;
use crate::sip::header::{AuthValue, NameAddr};
use crate::sip::message::{Request, Response};
use crate::sip::uri::Uri;
use crate::store::{Store, Subscriber};
use digest::{Algorithm, Credentials, CredentialsError};
use nonce::{NonceCheck, Nonces};

/// The `auth` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    None,
    Digest,
    Trusted,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Digest => "digest",
            Mode::Trusted => "trusted",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::None, Mode::Digest, Mode::Trusted]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An entry of `publish_on_behalf`: an identity, or the addresses of a system (a
/// voicemail server, a PBX) that publishes for others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Delegate {
    /// An AOR, compared without its scheme (`alice@example.com`, lower-case host).
    Identity(String),
    Net(IpNet),
}

impl Delegate {
    /// `sip:vm@example.com`, `10.0.0.5` or `10.0.0.0/24`.
    pub fn parse(s: &str) -> Option<Delegate> {
        let s = s.trim();
        if let Ok(net) = parse_net(s) {
            return Some(Delegate::Net(net));
        }
        let uri = Uri::parse(s).ok()?;
        let sip = uri.as_sip()?;
        sip.user.as_ref()?;
        Some(Delegate::Identity(identity_key(&sip.aor()).to_owned()))
    }
}

impl fmt::Display for Delegate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delegate::Identity(aor) => write!(f, "sip:{aor}"),
            Delegate::Net(net) => write!(f, "{net}"),
        }
    }
}

/// An address (`10.0.0.5`) or network (`10.0.0.0/24`, `::1/128`).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an address or network (10.0.0.5, 10.0.0.0/24)"))
}

/// Authentication settings (a view of `Config`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: Mode,
    /// The realm challenged with; `None`: the domain of the request's From URI.
    pub realm: Option<String>,
    /// Challenge with 407 / Proxy-Authenticate (behind a proxy that forwards them).
    pub proxy_challenge: bool,
    /// Offered in this order; credentials with another are challenged again.
    pub algorithms: Vec<Algorithm>,
    /// Seconds a nonce is good for.
    pub nonce_expire: u64,
    /// `trusted` mode: sources taken as authenticated.
    pub trusted: Vec<IpNet>,
    pub on_behalf: Vec<Delegate>,
    /// Served domains, lower-case; an identity outside them is refused. Empty: any.
    pub domains: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: Mode::None,
            realm: None,
            proxy_challenge: false,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_expire: 300,
            trusted: Vec::new(),
            on_behalf: Vec::new(),
            domains: Vec::new(),
        }
    }
}

/// Who a request is from, as far as the server will act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The AOR (`sip:user@domain`).
    pub aor: String,
    /// Proven (digest, or asserted by a trusted proxy); false in `none` mode.
    pub authenticated: bool,
    /// May publish for others: `none` mode, or a configured on-behalf publisher.
    pub delegate: bool,
}

impl Identity {
    /// Whether this identity may publish `presentity`'s state.
    pub fn may_publish_for(&self, presentity: &str) -> bool {
        self.delegate || identity_key(&self.aor) == identity_key(presentity)
    }

    /// Whether `aor` names this identity (scheme aside: sips:alice@x is alice@x).
    pub fn is(&self, aor: &str) -> bool {
        identity_key(&self.aor) == identity_key(aor)
    }
}

/// An AOR without its scheme, for comparing sip: and sips: forms.
pub fn identity_key(aor: &str) -> &str {
    aor.split_once(':').map_or(aor, |(_, rest)| rest)
}

/// What [`Authenticator::check`] decided.
#[derive(Debug)]
pub enum Verdict {
    Pass(Identity),
    /// Answer with this (challenge, 403, 400) and stop.
    Refuse(Response),
}

/// Counters for status.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthStats {
    pub challenged: u64,
    pub failed: u64,
    pub passed: u64,
}

/// Authenticates requests.
pub struct Authenticator {
    config: AuthConfig,
    nonces: Nonces,
    stats: AuthStats,
}

/// What a credentials check found, before it becomes an answer.
enum Outcome {
    Ok(Subscriber),
    /// Challenge again; `stale` tells the client its password was right.
    Challenge {
        stale: bool,
    },
    BadRequest(&'static str),
    Forbidden(&'static str),
}

impl Authenticator {
    /// `secret` keys the nonces (see [`Store::auth_secret`]).
    pub fn new(config: AuthConfig, secret: [u8; 32]) -> Authenticator {
        let nonces = Nonces::new(secret, config.nonce_expire);
        Authenticator {
            config,
            nonces,
            stats: AuthStats::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    /// Decides who `req` is from, or how to refuse it.
    pub fn check(&mut self, req: &Request, source: &Source, store: &Store, now: u64) -> Verdict {
        let from_aor = match req.headers.from() {
            Ok(f) => aor_of(&f),
            Err(_) => {
                return Verdict::Refuse(Response::for_request(req, 400, None));
            }
        };
        let ip = source.peer.addr.ip().to_canonical();
        match self.config.mode {
            Mode::None => {
                return Verdict::Pass(Identity {
                    aor: from_aor,
                    authenticated: false,
                    delegate: true,
                });
            }
            Mode::Trusted if self.config.trusted.iter().any(|n| n.contains(&ip)) => {
                let asserted = req
                    .headers
                    .get("P-Asserted-Identity")
                    .and_then(|v| NameAddr::parse(v).ok())
                    .map(|n| aor_of(&n));
                let aor = asserted.unwrap_or(from_aor);
                return self.identified(req, aor, ip);
            }
            Mode::Trusted | Mode::Digest => {}
        }

        let realm = self.realm_for(req);
        match self.verify(req, &realm, store, now) {
            Outcome::Ok(account) => {
                let aor = account_aor(&account);
                self.identified(req, aor, ip)
            }
            Outcome::Challenge { stale } => {
                self.stats.challenged += 1;
                Verdict::Refuse(self.challenge(req, &realm, stale, now))
            }
            Outcome::BadRequest(why) => {
                self.stats.failed += 1;
                Verdict::Refuse(Response::for_request(req, 400, Some(why)))
            }
            Outcome::Forbidden(why) => {
                self.stats.failed += 1;
                Verdict::Refuse(Response::for_request(req, 403, Some(why)))
            }
        }
    }

    /// The identity is known: check it against the served domains and mark delegates.
    fn identified(&mut self, req: &Request, aor: String, ip: IpAddr) -> Verdict {
        if !self.config.domains.is_empty() {
            let domain = identity_key(&aor)
                .rsplit_once('@')
                .map_or("", |(_, d)| d)
                .to_ascii_lowercase();
            if !self.config.domains.contains(&domain) {
                self.stats.failed += 1;
                return Verdict::Refuse(Response::for_request(
                    req,
                    403,
                    Some("Forbidden - identity outside the served domains"),
                ));
            }
        }
        let delegate = self.config.on_behalf.iter().any(|d| match d {
            Delegate::Identity(id) => id == identity_key(&aor),
            Delegate::Net(net) => net.contains(&ip),
        });
        self.stats.passed += 1;
        Verdict::Pass(Identity {
            aor,
            authenticated: true,
            delegate,
        })
    }

    /// The realm of a request: the configured one, else its From domain.
    fn realm_for(&self, req: &Request) -> String {
        if let Some(r) = &self.config.realm {
            return r.clone();
        }
        let host = |u: &Uri| u.as_sip().map(|s| s.host.to_string().to_ascii_lowercase());
        req.headers
            .from()
            .ok()
            .and_then(|f| host(&f.uri))
            .or_else(|| host(&req.uri))
            .unwrap_or_default()
    }

    fn verify(&mut self, req: &Request, realm: &str, store: &Store, now: u64) -> Outcome {
        let name = match self.config.proxy_challenge {
            true => "Proxy-Authorization",
            false => "Authorization",
        };
        // Credentials for another realm (another hop's) are not ours to judge.
        let mut ours = None;
        for raw in req.headers.get_all(name) {
            let Ok(v) = AuthValue::parse(raw) else {
                return Outcome::BadRequest("Bad Request - malformed credentials");
            };
            if v.scheme.eq_ignore_ascii_case("Digest")
                && v.param("realm")
                    .is_some_and(|r| r.eq_ignore_ascii_case(realm))
            {
                ours = Some(v);
                break;
            }
        }
        let Some(value) = ours else {
            return Outcome::Challenge { stale: false };
        };
        let creds = match Credentials::from_header(&value) {
            Ok(c) => c,
            Err(CredentialsError::NotDigest | CredentialsError::Algorithm) => {
                return Outcome::Challenge { stale: false };
            }
            Err(CredentialsError::NoQop) => {
                return Outcome::Forbidden("Forbidden - digest needs qop=auth");
            }
            Err(CredentialsError::Malformed(_)) => {
                return Outcome::BadRequest("Bad Request - malformed credentials");
            }
        };
        if !self.config.algorithms.contains(&creds.algorithm) {
            return Outcome::Challenge { stale: false };
        }
        // RFC 7616 §3.4.6: the digest URI names the resource of this request.
        let same_target =
            Uri::parse(&creds.uri)
                .ok()
                .is_some_and(|u| match (u.as_sip(), req.uri.as_sip()) {
                    (Some(a), Some(b)) => identity_key(&a.aor()) == identity_key(&b.aor()),
                    _ => u == req.uri,
                });
        if !same_target {
            return Outcome::BadRequest("Bad Request - digest uri is not the Request-URI");
        }
        if self.nonces.issued(&creds.nonce, realm).is_none() {
            return Outcome::Challenge { stale: false };
        }
        let account = match store.get_subscriber(&creds.username, realm) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("store: subscriber look-up failed: {e}");
                None
            }
        };
        let verified = account.as_ref().is_some_and(|a| {
            let ha1 = match creds.algorithm {
                Algorithm::Md5 => &a.ha1,
                Algorithm::Sha256 => &a.ha1_sha256,
                Algorithm::Sha512_256 => &a.ha1_sha512t256,
            };
            let want = digest::expected_response(creds.algorithm, ha1, &creds, req.method.as_str());
            digest::constant_time_eq(&want, &creds.response)
        });
        let Some(account) = account.filter(|_| verified) else {
            debug!(
                "digest authentication failed for {}@{realm} ({})",
                creds.username,
                req.method.as_str()
            );
            return Outcome::Challenge { stale: false };
        };
        match self.nonces.check(&creds.nonce, realm, creds.nc, now) {
            NonceCheck::Fresh => Outcome::Ok(account),
            NonceCheck::Stale => Outcome::Challenge { stale: true },
            NonceCheck::Replay | NonceCheck::Foreign => {
                debug!(
                    "replayed nonce count {} for {}@{realm}",
                    creds.nc, creds.username
                );
                Outcome::Challenge { stale: false }
            }
        }
    }

    /// 401 with WWW-Authenticate (or 407 with Proxy-Authenticate), one per algorithm.
    fn challenge(&self, req: &Request, realm: &str, stale: bool, now: u64) -> Response {
        let (status, header) = match self.config.proxy_challenge {
            true => (407, "Proxy-Authenticate"),
            false => (401, "WWW-Authenticate"),
        };
        let mut r = Response::for_request(req, status, None);
        let nonce = self.nonces.issue(realm, now);
        for alg in &self.config.algorithms {
            r.headers
                .push(header, digest::challenge(*alg, realm, &nonce, stale));
        }
        r
    }

    /// HTTP digest for the XCAP server: `authorization` is the request's Authorization
    /// header, `realm` the realm to use. `Ok(identity)` or `Err(challenge header
    /// values)`, where an empty list means "refuse outright" (malformed).
    pub fn check_http(
        &mut self,
        method: &str,
        target: &str,
        authorization: Option<&str>,
        realm: &str,
        store: &Store,
        now: u64,
    ) -> Result<String, Vec<String>> {
        let challenge = |me: &Self, stale: bool| {
            let nonce = me.nonces.issue(realm, now);
            me.config
                .algorithms
                .iter()
                .map(|a| digest::challenge(*a, realm, &nonce, stale))
                .collect::<Vec<_>>()
        };
        let Some(raw) = authorization else {
            self.stats.challenged += 1;
            return Err(challenge(self, false));
        };
        let creds = match AuthValue::parse(raw)
            .ok()
            .map(|v| Credentials::from_header(&v))
        {
            Some(Ok(c)) if c.realm.eq_ignore_ascii_case(realm) => c,
            _ => {
                self.stats.failed += 1;
                return Err(challenge(self, false));
            }
        };
        let account = store.get_subscriber(&creds.username, realm).ok().flatten();
        let verified = self.config.algorithms.contains(&creds.algorithm)
            && creds.uri == target
            && self.nonces.issued(&creds.nonce, realm).is_some()
            && account.as_ref().is_some_and(|a| {
                let ha1 = match creds.algorithm {
                    Algorithm::Md5 => &a.ha1,
                    Algorithm::Sha256 => &a.ha1_sha256,
                    Algorithm::Sha512_256 => &a.ha1_sha512t256,
                };
                let want = digest::expected_response(creds.algorithm, ha1, &creds, method);
                digest::constant_time_eq(&want, &creds.response)
            });
        let Some(account) = account.filter(|_| verified) else {
            self.stats.failed += 1;
            return Err(challenge(self, false));
        };
        match self.nonces.check(&creds.nonce, realm, creds.nc, now) {
            NonceCheck::Fresh => {
                self.stats.passed += 1;
                Ok(account_aor(&account))
            }
            NonceCheck::Stale => Err(challenge(self, true)),
            NonceCheck::Replay | NonceCheck::Foreign => Err(challenge(self, false)),
        }
    }
}

/// The AOR of a From / P-Asserted-Identity value.
fn aor_of(n: &NameAddr) -> String {
    match n.uri.as_sip() {
        Some(u) => u.aor(),
        None => n.uri.to_string(),
    }
}

/// The AOR an account authenticates as, written the way the engine writes AORs.
pub fn account_aor(a: &Subscriber) -> String {
    let raw = format!("sip:{}@{}", a.username, a.domain);
    match Uri::parse(&raw) {
        Ok(u) => u.as_sip().map_or(raw, |s| s.aor()),
        Err(_) => raw,
    }
}

#[cfg(test)]
mod tests;
