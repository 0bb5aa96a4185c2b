//! The daemon's settings: one typed `Config`, read from an optional TOML file whose keys
//! follow the OpenSIPS presence/tm/core parameter names, with every value defaulted so
//! that no file is needed. Loading checks every key and value up front and names the
//! file, line and key of the first mistake, so a typo never silently becomes a default.
//!
//! The struct is the one list of settings: serde's derive carries each key, its aliases
//! and the check of its value, and the unknown-key check, the suggestions and the printer
//! ask serde for the keys (see `Schema`) instead of keeping lists of their own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;

use serde::de::value::{StrDeserializer, UnitDeserializer};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;
use toml::Value;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use ipnet::IpNet;

pub use crate::auth::Mode as AuthMode;
use crate::auth::{Delegate, digest::Algorithm};
use crate::sip::endpoint::TransportKind;

/// Effective configuration of one presenced instance.
///
/// Every field has a default (see [`Config::default`]); `docs/configuration.md` lists the
/// keys, their OpenSIPS/OpenSER aliases and their meaning. Each field's attributes say
/// how its value is read and checked; [`Config::from_toml_str`] adds the checks between
/// settings, so read files through it (or [`Config::load`]), not through serde alone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Sockets to listen on. Default: `udp:127.0.0.1:5060` and `tcp:127.0.0.1:5060`.
    #[serde(
        deserialize_with = "parse::listen",
        serialize_with = "print::display_list"
    )]
    pub listen: Vec<ListenAddr>,
    /// sled database directory. Default `presenced.db`, relative to the working directory.
    #[serde(deserialize_with = "parse::path", serialize_with = "print::path")]
    pub db: PathBuf,
    /// Domains this server is authoritative for. Default empty: any domain is served.
    #[serde(deserialize_with = "parse::domains")]
    pub domains: Vec<String>,
    /// Seconds between housekeeping rounds (watchers retention); expiries do not wait for
    /// it. Default 100.
    #[serde(deserialize_with = "parse::int::<1, MAX_SECS, _, _>")]
    pub clean_period: u64,
    /// Largest Expires granted to PUBLISH and SUBSCRIBE, in seconds. Default 3600.
    // OpenSIPS presence split OpenSER's max_expires in two; we keep one limit, and when
    // both halves are given the stricter one wins (see `from_toml_str`).
    #[serde(
        alias = "max_expires_subscribe",
        alias = "max_expires_publish",
        deserialize_with = "parse::int::<1, U32_MAX, _, _>"
    )]
    pub max_expires: u32,
    /// Smallest non-zero Expires accepted (shorter gets 423); 0 = no minimum. Default 0.
    #[serde(deserialize_with = "parse::int::<0, U32_MAX, _, _>")]
    pub min_expires: u32,
    /// Expires used when a SUBSCRIBE/PUBLISH has none, in seconds. Default 3600 (or the
    /// nearest value inside `min_expires..=max_expires` when those exclude 3600).
    #[serde(deserialize_with = "parse::int::<1, U32_MAX, _, _>")]
    pub default_expires: u32,
    /// Seconds subtracted from the Expires in a PUBLISH 200 so clients refresh before the
    /// publication lapses. Default 0.
    #[serde(deserialize_with = "parse::int::<0, U32_MAX, _, _>")]
    pub expires_offset: u32,
    /// Prefix of the To-tags generated for SUBSCRIBE dialogs. Default `"10"`.
    #[serde(deserialize_with = "parse::to_tag_pref")]
    pub to_tag_pref: String,
    /// SIP URI put in Contact of our SUBSCRIBE/PUBLISH 200s and NOTIFYs. Default `None`:
    /// the transport's local address is used.
    #[serde(
        deserialize_with = "parse::server_address",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_address: Option<String>,
    /// Accept every subscription as active without consulting pres-rules. Default true.
    #[serde(deserialize_with = "parse::flag")]
    pub force_active: bool,
    /// End a subscription when its NOTIFY times out (408), not only on 481. Default true.
    // OpenSER/Kamailio presence: drop the subscription when its NOTIFY gets 408.
    #[serde(alias = "timeout_rm_subs", deserialize_with = "parse::flag")]
    pub end_sub_on_timeout: bool,
    /// A new SUBSCRIBE from the same watcher contact replaces its stale subscription.
    /// Default true.
    #[serde(deserialize_with = "parse::flag")]
    pub replace_stale_subscriptions: bool,
    /// With no publication left, NOTIFY a "closed" PIDF (true) or no body (false).
    /// Default true.
    // OpenSIPS presence: send an offline/closed document when nothing is published.
    #[serde(alias = "notify_offline_body", deserialize_with = "parse::flag")]
    pub notify_closed_when_empty: bool,
    /// Aggregate XCAP pidf-manipulation documents into presence (RFC 4827). Default false.
    #[serde(deserialize_with = "parse::flag")]
    pub pidf_manipulation: bool,
    /// Only the account owner may subscribe to message-summary (RFC 3842 §6); others get
    /// 403. Default true.
    #[serde(deserialize_with = "parse::flag")]
    pub mwi_owner_only: bool,
    /// Serve buddy lists (RFC 4662): a SUBSCRIBE to a service URI of the subscriber's
    /// rls-services document is a list subscription. Default false.
    #[serde(deserialize_with = "parse::flag")]
    pub rls: bool,
    /// Milliseconds a list subscription's member changes are gathered into one NOTIFY
    /// (OpenSIPS rls `waitn_time`, in ms). Default 200; 0 sends each loop step's.
    #[serde(deserialize_with = "parse::int::<0, 60_000, _, _>")]
    pub rls_batch_ms: u64,
    /// Where list members outside `domains` are subscribed to (back-end dialogs):
    /// `sip:IP:PORT[;transport=tcp]`. Default `None`: no back-end dialogs.
    // OpenSIPS rls: presence_server.
    #[serde(
        alias = "presence_server",
        deserialize_with = "parse::backend_server",
        skip_serializing_if = "Option::is_none"
    )]
    pub rls_backend_server: Option<String>,
    /// Accept request-contained lists (RFC 5367): a SUBSCRIBE whose body is a
    /// resource-lists document subscribes to an ad-hoc list of those resources.
    /// Default false.
    #[serde(deserialize_with = "parse::flag")]
    pub rls_request_lists: bool,
    /// Answer MESSAGE requests: 403 when the recipient's im-rules block the sender,
    /// else 480 (presenced delivers no messages). Default false (MESSAGE gets 405).
    #[serde(deserialize_with = "parse::flag")]
    pub authorize_messages: bool,
    /// XCAP documents arrive through presenced's own XCAP server (true) or are fetched
    /// from `xcap_server` (false). Default true.
    #[serde(deserialize_with = "parse::flag")]
    pub integrated_xcap_server: bool,
    /// Trusted external XCAP server roots to fetch documents from. Default empty.
    #[serde(deserialize_with = "parse::xcap_servers")]
    pub xcap_server: Vec<String>,
    /// Address of the built-in XCAP server (started when `integrated_xcap_server` is on
    /// and `force_active` off or `pidf_manipulation` on). Default `127.0.0.1:5080`:
    /// loopback only until the XCAP server authenticates its clients.
    #[serde(deserialize_with = "parse::socket_addr")]
    pub xcap_listen: SocketAddr,
    /// Serve XCAP over HTTPS (RFC 4825 §6), with `tls_certificate` and
    /// `tls_private_key`. Default false.
    #[serde(deserialize_with = "parse::flag")]
    pub xcap_tls: bool,
    /// Largest XCAP document accepted or fetched, in bytes. Default 65536.
    #[serde(deserialize_with = "parse::int::<256, MAX_MESSAGE_SIZE, _, _>")]
    pub xcap_max_document_size: usize,
    /// Re-fetch documents from `xcap_server` periodically (xcap_client). Default true.
    #[serde(deserialize_with = "parse::flag")]
    pub periodical_query: bool,
    /// Seconds between re-fetches when `periodical_query` is on. Default 100.
    #[serde(deserialize_with = "parse::int::<1, MAX_SECS, _, _>")]
    pub query_period: u64,
    /// Days that pending, waiting and terminated watchers records are kept; 0 keeps
    /// them for ever. Default 3.
    // OpenSIPS presence: days to keep pending/waiting watchers records.
    #[serde(
        alias = "waiting_subs_daysno",
        deserialize_with = "parse::int::<0, 36_500, _, _>"
    )]
    pub watchers_retention_days: u64,
    /// When the database is flushed to disk. Default [`SyncMode::Periodic`].
    #[serde(
        deserialize_with = "parse::sync_mode",
        serialize_with = "print::display"
    )]
    pub sync: SyncMode,
    /// Milliseconds between flushes in periodic mode. Default 500.
    #[serde(deserialize_with = "parse::int::<1, MAX_TIMER_MS, _, _>")]
    pub sync_period_ms: u64,
    /// sled page cache size in bytes. Default 8 MiB.
    #[serde(deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>")]
    pub cache_capacity: u64,
    /// Largest SIP message accepted, in bytes. Default 65535.
    #[serde(deserialize_with = "parse::int::<MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE, _, _>")]
    pub max_message_size: usize,
    /// Largest SIP body accepted, in bytes. Default 32768.
    #[serde(deserialize_with = "parse::int::<0, MAX_MESSAGE_SIZE, _, _>")]
    pub max_body_size: usize,
    /// Largest PUBLISH body per event package, overriding `max_body_size` for the
    /// events listed (`{ "message-summary" = 4096, dialog = 16384 }`); a larger body gets
    /// 413. Default empty: every event takes `max_body_size`.
    #[serde(deserialize_with = "parse::event_sizes")]
    pub max_body_size_per_event: BTreeMap<String, usize>,
    /// Live publications one presentity may have per event; a new one past it gets 403.
    /// Default 32.
    #[serde(deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>")]
    pub max_publications_per_presentity: usize,
    /// Subscription dialogs one presentity may have per event; a new one past it gets
    /// 403. Default 1000.
    #[serde(deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>")]
    pub max_subscriptions_per_presentity: u64,
    /// Subscription dialogs one watcher (the authenticated identity, else the From
    /// URI) may hold, whatever they watch; a new one past it gets 403. Default 1000.
    #[serde(deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>")]
    pub max_subscriptions_per_watcher: u64,
    /// Bytes the bodies of one presentity's live publications of an event may add up
    /// to; a PUBLISH past it gets 413. Bounds the aggregated document, so a NOTIFY fits
    /// a UDP datagram. Default 60000.
    #[serde(deserialize_with = "parse::int::<256, MAX_AGGREGATE, _, _>")]
    pub max_aggregate_size: usize,
    /// Most TCP connections held open at once. Default 1024.
    // OpenSER/OpenSIPS core parameter.
    #[serde(
        alias = "tcp_max_connections",
        deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>"
    )]
    pub max_connections: usize,
    /// Seconds after which an idle TCP connection is closed. Default 300.
    // OpenSER/OpenSIPS core parameter, in seconds too.
    #[serde(
        alias = "tcp_connection_lifetime",
        deserialize_with = "parse::int::<1, MAX_SECS, _, _>"
    )]
    pub tcp_idle_timeout: u64,
    /// Most TCP connections one source address may hold open (`trusted_proxies`
    /// aside). Default 64.
    #[serde(deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>")]
    pub max_connections_per_source: usize,
    /// Seconds a TCP message may take from its first byte to its last; a slower one
    /// closes the connection. Default 10.
    // OpenSIPS core: tcp_max_msg_time (seconds too).
    #[serde(
        alias = "tcp_max_msg_time",
        deserialize_with = "parse::int::<1, MAX_SECS, _, _>"
    )]
    pub tcp_message_timeout: u64,
    /// PEM file with the certificate chain that `tls:` and `wss:` listeners (and the XCAP
    /// server, with `xcap_tls`) present. Read again on reload. Default `None`.
    // OpenSIPS tls_mgm: certificate.
    #[serde(
        alias = "certificate",
        deserialize_with = "parse::optional_path",
        serialize_with = "print::optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_certificate: Option<PathBuf>,
    /// PEM file with the private key of `tls_certificate`. Default `None`.
    // OpenSIPS tls_mgm: private_key.
    #[serde(
        alias = "private_key",
        deserialize_with = "parse::optional_path",
        serialize_with = "print::optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_private_key: Option<PathBuf>,
    /// PEM file of the certificate authorities that client certificates
    /// (`tls_verify_client`) and the servers presenced connects to over TLS are checked
    /// against. Default `None`: the system's store for outgoing connections.
    // OpenSIPS tls_mgm: ca_list.
    #[serde(
        alias = "ca_list",
        deserialize_with = "parse::optional_path",
        serialize_with = "print::optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_ca_list: Option<PathBuf>,
    /// Ask TLS clients for a certificate and refuse those without one that
    /// `tls_ca_list` vouches for. Default false.
    #[serde(deserialize_with = "parse::flag")]
    pub tls_verify_client: bool,
    /// Milliseconds a TLS handshake or a WebSocket upgrade may take. Default 5000.
    // OpenSIPS tls_mgm: handshake_timeout (milliseconds too).
    #[serde(
        alias = "handshake_timeout",
        deserialize_with = "parse::int::<1, MAX_TIMER_MS, _, _>"
    )]
    pub tls_handshake_timeout_ms: u64,
    /// TLS handshakes and WebSocket upgrades in progress at once; one source address
    /// may hold a quarter of them. More connections are closed at once. Default 64.
    #[serde(deserialize_with = "parse::int::<1, TOML_INT_MAX, _, _>")]
    pub tls_max_handshakes: usize,
    /// Origins a browser may open a `ws:`/`wss:` connection from (`https://host:port`
    /// as the Origin header gives it). Default empty: any origin, and clients that send
    /// none.
    #[serde(deserialize_with = "parse::origins")]
    pub ws_origins: Vec<String>,
    /// Seconds between WebSocket pings on an otherwise quiet connection (RFC 6455
    /// §5.5.2); an unanswered connection is closed at `tcp_idle_timeout`. Default 30.
    #[serde(deserialize_with = "parse::int::<1, MAX_SECS, _, _>")]
    pub ws_ping_interval: u64,
    /// Milliseconds after a connection closes before the subscriptions reachable only
    /// through it (WebSocket clients; `.invalid` or `;ob` Contacts) end; a client that
    /// refreshes over a new connection within it keeps its subscription. Default 5000.
    #[serde(deserialize_with = "parse::int::<0, MAX_TIMER_MS, _, _>")]
    pub connection_grace_ms: u64,
    /// Requests a second one source address may send (a token bucket with a burst of
    /// twice that); more get 503 with Retry-After. `trusted_proxies` are exempt; 0
    /// disables the limit. Default 500.
    #[serde(deserialize_with = "parse::int::<0, U32_MAX, _, _>")]
    pub max_requests_per_source: u32,
    /// RFC 3261 timer T1 (round-trip estimate), milliseconds. Default 500.
    // OpenSER/OpenSIPS tm module, in milliseconds too.
    #[serde(
        alias = "T1_timer",
        deserialize_with = "parse::int::<1, MAX_TIMER_MS, _, _>"
    )]
    pub timer_t1_ms: u64,
    /// RFC 3261 timer T2 (retransmit interval cap), milliseconds. Default 4000.
    // OpenSER/OpenSIPS tm module, in milliseconds too.
    #[serde(
        alias = "T2_timer",
        deserialize_with = "parse::int::<1, MAX_TIMER_MS, _, _>"
    )]
    pub timer_t2_ms: u64,
    /// RFC 3261 timer T4 (network lifetime of a message), milliseconds. Default 5000.
    #[serde(deserialize_with = "parse::int::<1, MAX_TIMER_MS, _, _>")]
    pub timer_t4_ms: u64,
    /// Milliseconds given to in-flight work (final NOTIFYs, flush) at shutdown. Default 2000.
    #[serde(deserialize_with = "parse::int::<0, MAX_TIMER_MS, _, _>")]
    pub shutdown_grace_ms: u64,
    /// Who may publish and watch: `"digest"` (accounts from `presenced user add`),
    /// `"trusted"` (requests from `trusted_proxies` are authenticated, others get
    /// digest) or `"none"` (anyone, as anyone). Default unset: `none`, allowed only
    /// while every listener (SIP and XCAP) is on loopback.
    #[serde(
        deserialize_with = "parse::auth_mode",
        serialize_with = "print::optional_display",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth: Option<AuthMode>,
    /// Digest realm. Default `None`: the domain of the request's From URI, which is the
    /// domain accounts are added under.
    #[serde(
        deserialize_with = "parse::realm",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_realm: Option<String>,
    /// Challenge with 407 and Proxy-Authenticate instead of 401 and WWW-Authenticate
    /// (when presenced sits behind a proxy that passes challenges on). Default false.
    #[serde(deserialize_with = "parse::flag")]
    pub auth_as_proxy: bool,
    /// Digest algorithms offered, most preferred first: `SHA-512-256`, `SHA-256`, `MD5`.
    /// Default `["SHA-256", "MD5"]`.
    #[serde(
        deserialize_with = "parse::algorithms",
        serialize_with = "print::display_list"
    )]
    pub auth_algorithms: Vec<Algorithm>,
    /// Seconds a digest nonce stays valid; older ones get `stale=true`. Default 300.
    // OpenSIPS/Kamailio auth module parameter.
    #[serde(deserialize_with = "parse::int::<1, MAX_SECS, _, _>")]
    pub nonce_expire: u64,
    /// Addresses or networks (`10.0.0.1`, `10.0.0.0/24`) whose requests `auth =
    /// "trusted"` takes as authenticated, identity from P-Asserted-Identity (else From).
    /// Default empty.
    #[serde(
        deserialize_with = "parse::networks",
        serialize_with = "print::display_list"
    )]
    pub trusted_proxies: Vec<IpNet>,
    /// Identities (`sip:vm@example.com`) or addresses (`10.0.0.5`, `10.0.0.0/24`) that
    /// may publish for other presentities (a voicemail system, a PBX). Default empty:
    /// everyone publishes only their own state.
    #[serde(
        deserialize_with = "parse::delegates",
        serialize_with = "print::display_list"
    )]
    pub publish_on_behalf: Vec<Delegate>,
    /// Unix socket of the control channel. Default `None`: the caller picks
    /// `<db>/control.sock`.
    #[serde(
        deserialize_with = "parse::optional_path",
        serialize_with = "print::optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub control_socket: Option<PathBuf>,
    /// Where the Prometheus text endpoint (`GET /metrics`) listens. Default `None`:
    /// no endpoint.
    #[serde(
        deserialize_with = "parse::optional_socket_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        let localhost = SocketAddr::from(([127, 0, 0, 1], 5060));
        Config {
            listen: vec![ListenAddr::Udp(localhost), ListenAddr::Tcp(localhost)],
            db: PathBuf::from("presenced.db"),
            domains: Vec::new(),
            clean_period: 100,
            max_expires: 3600,
            min_expires: 0,
            default_expires: DEFAULT_EXPIRES,
            expires_offset: 0,
            to_tag_pref: "10".to_owned(),
            server_address: None,
            force_active: true,
            end_sub_on_timeout: true,
            replace_stale_subscriptions: true,
            notify_closed_when_empty: true,
            pidf_manipulation: false,
            mwi_owner_only: true,
            rls: false,
            rls_batch_ms: 200,
            rls_backend_server: None,
            rls_request_lists: false,
            authorize_messages: false,
            integrated_xcap_server: true,
            xcap_server: Vec::new(),
            xcap_listen: SocketAddr::from(([127, 0, 0, 1], 5080)),
            xcap_tls: false,
            xcap_max_document_size: 65536,
            periodical_query: true,
            query_period: 100,
            watchers_retention_days: 3,
            sync: SyncMode::Periodic,
            sync_period_ms: 500,
            cache_capacity: 8 * 1024 * 1024,
            max_message_size: 65535,
            max_body_size: 32768,
            max_body_size_per_event: BTreeMap::new(),
            max_publications_per_presentity: 32,
            max_subscriptions_per_presentity: 1000,
            max_subscriptions_per_watcher: 1000,
            max_aggregate_size: 60_000,
            max_connections: 1024,
            tcp_idle_timeout: 300,
            max_connections_per_source: 64,
            tcp_message_timeout: 10,
            tls_certificate: None,
            tls_private_key: None,
            tls_ca_list: None,
            tls_verify_client: false,
            tls_handshake_timeout_ms: 5000,
            tls_max_handshakes: 64,
            ws_origins: Vec::new(),
            ws_ping_interval: 30,
            connection_grace_ms: 5000,
            max_requests_per_source: 500,
            timer_t1_ms: 500,
            timer_t2_ms: 4000,
            timer_t4_ms: 5000,
            shutdown_grace_ms: 2000,
            auth: None,
            auth_realm: None,
            auth_as_proxy: false,
            auth_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_expire: 300,
            trusted_proxies: Vec::new(),
            publish_on_behalf: Vec::new(),
            control_socket: None,
            metrics_listen: None,
        }
    }
}

const DEFAULT_EXPIRES: u32 = 3600;
/// A SIP request with its mandatory headers does not fit in less.
const MIN_MESSAGE_SIZE: u64 = 1024;
const MAX_MESSAGE_SIZE: u64 = 16 * 1024 * 1024;
/// An aggregate beyond this could not go in any NOTIFY.
const MAX_AGGREGATE: u64 = MAX_MESSAGE_SIZE;
/// Timers beyond an hour are typos; capping them also keeps 64*T1 far from overflow.
const MAX_TIMER_MS: u64 = 3_600_000;
/// A year: longer periods are typos, and the cap keeps `Instant + period` from overflowing.
const MAX_SECS: u64 = 365 * 24 * 3600;
/// The largest integer TOML can carry.
const TOML_INT_MAX: u64 = i64::MAX.unsigned_abs();
const U32_MAX: u64 = u32::MAX as u64;
const MAX_TO_TAG_PREF: usize = 32;
/// File name used in errors when the text did not come from a file.
const NO_FILE: &str = "<config>";

/// A socket to listen on, written `udp:HOST:PORT`, `tcp:`, `tls:`, `ws:` or `wss:` (IPv6
/// hosts in brackets, `udp:[::1]:5060`), the same form as the OpenSIPS `listen` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A UDP socket.
    Udp(SocketAddr),
    /// A TCP listening socket.
    Tcp(SocketAddr),
    /// A TLS listening socket (`tls_certificate`, `tls_private_key`).
    Tls(SocketAddr),
    /// A WebSocket listening socket (RFC 7118, plain HTTP upgrade).
    Ws(SocketAddr),
    /// A secure WebSocket listening socket (TLS, then the HTTP upgrade).
    Wss(SocketAddr),
}

impl ListenAddr {
    /// The IP address and port, whatever the transport.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ListenAddr::Udp(a)
            | ListenAddr::Tcp(a)
            | ListenAddr::Tls(a)
            | ListenAddr::Ws(a)
            | ListenAddr::Wss(a) => *a,
        }
    }

    /// The transport.
    pub fn kind(&self) -> TransportKind {
        match self {
            ListenAddr::Udp(_) => TransportKind::Udp,
            ListenAddr::Tcp(_) => TransportKind::Tcp,
            ListenAddr::Tls(_) => TransportKind::Tls,
            ListenAddr::Ws(_) => TransportKind::Ws,
            ListenAddr::Wss(_) => TransportKind::Wss,
        }
    }

    /// The listener for `kind` at `addr`.
    pub fn new(kind: TransportKind, addr: SocketAddr) -> ListenAddr {
        match kind {
            TransportKind::Udp => ListenAddr::Udp(addr),
            TransportKind::Tcp => ListenAddr::Tcp(addr),
            TransportKind::Tls => ListenAddr::Tls(addr),
            TransportKind::Ws => ListenAddr::Ws(addr),
            TransportKind::Wss => ListenAddr::Wss(addr),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().name(), self.addr())
    }
}

/// Why a `listen` string was rejected; names the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddrError {
    /// The text that was given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ListenAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid listen address {:?}: {}", self.text, self.reason)
    }
}

impl std::error::Error for ListenAddrError {}

impl FromStr for ListenAddr {
    type Err = ListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ListenAddrError {
            text: s.to_owned(),
            reason,
        };
        let (proto, rest) = s
            .split_once(':')
            .ok_or_else(|| err("expected udp:HOST:PORT, tcp:, tls:, ws: or wss:"))?;
        let addr: SocketAddr = rest
            .parse()
            .map_err(|_| err("HOST:PORT must be an IP address and a port, IPv6 in brackets"))?;
        let kind = TransportKind::from_name(proto)
            .ok_or_else(|| err("the transport must be udp, tcp, tls, ws or wss"))?;
        Ok(ListenAddr::new(kind, addr))
    }
}

/// When writes reach the disk; see the README for what a crash can lose in each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// Flush every `sync_period_ms`: a crash loses at most that much.
    Periodic,
    /// Flush before answering each request that changed state.
    Always,
}

impl SyncMode {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Periodic => "periodic",
            SyncMode::Always => "always",
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "periodic" => Ok(SyncMode::Periodic),
            "always" => Ok(SyncMode::Always),
            _ => Err(format!(
                "unknown sync mode {s:?}: expected \"periodic\" or \"always\""
            )),
        }
    }
}

/// Why a configuration could not be loaded. Display gives `FILE:LINE: KEY: reason`.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line, when the parser located the error.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A key that is neither a setting nor an alias of one.
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The key as written.
        key: String,
        /// A known key with a similar spelling.
        suggestion: Option<&'static str>,
    },
    /// A setting given twice, under its name and an alias (or two aliases).
    Conflict {
        /// The file.
        file: PathBuf,
        /// 1-based line of the second occurrence.
        line: usize,
        /// The key as written there.
        key: String,
        /// The key it duplicates, as written.
        other: String,
        /// 1-based line of that key.
        other_line: usize,
    },
    /// A value of the wrong type, out of range, or inconsistent with another setting.
    InvalidValue {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The key as written.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. } => *line,
            ConfigError::UnknownKey { line, .. }
            | ConfigError::Conflict { line, .. }
            | ConfigError::InvalidValue { line, .. } => Some(*line),
        }
    }

    /// The key the error is about, as written in the file.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::Conflict { key, .. }
            | ConfigError::InvalidValue { key, .. } => Some(key),
        }
    }

    fn set_file(&mut self, path: &Path) {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::Conflict { file, .. }
            | ConfigError::InvalidValue { file, .. } => *file = path.to_path_buf(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => {
                write!(f, "{}: cannot read: {source}", file.display())
            }
            ConfigError::Syntax {
                file,
                line: Some(line),
                message,
            } => write!(f, "{}:{line}: invalid TOML: {message}", file.display()),
            ConfigError::Syntax {
                file,
                line: None,
                message,
            } => write!(f, "{}: invalid TOML: {message}", file.display()),
            ConfigError::UnknownKey {
                file,
                line,
                key,
                suggestion,
            } => {
                write!(f, "{}:{line}: unknown key {key:?}", file.display())?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean {s:?}?)"),
                    None => Ok(()),
                }
            }
            ConfigError::Conflict {
                file,
                line,
                key,
                other,
                other_line,
            } => write!(
                f,
                "{}:{line}: {key}: same setting as {other:?} on line {other_line}; give only one",
                file.display()
            ),
            ConfigError::InvalidValue {
                file,
                line,
                key,
                reason,
            } => write!(
                f,
                "{}:{line}: {key}: invalid value: {reason}",
                file.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A setting, named by its canonical file key (the field name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key(&'static str);

impl Key {
    /// Every setting, in struct order.
    const ALL: Listing<Key> = Listing(|s| &s.keys);

    fn name(self) -> &'static str {
        self.0
    }
}

/// Names the same setting carried in OpenSER/OpenSIPS/Kamailio (`#[serde(alias)]` on the
/// fields), each with the setting it stands for.
const ALIASES: Listing<(&str, Key)> = Listing(|s| &s.aliases);

/// The settings as serde_derive sees `Config`. Asked once, so that a field added to the
/// struct is known to the key checks, the suggestions and the printer with no more code.
struct Schema {
    /// Canonical keys, in struct order.
    keys: Vec<Key>,
    /// The other names serde accepts, with the setting each one sets.
    aliases: Vec<(&'static str, Key)>,
}

impl Schema {
    fn ask_serde() -> Schema {
        // With deny_unknown_fields, serde answers an unknown key with every name it
        // accepts: field names and aliases, field by field in struct order.
        let accepted = match from_pairs(&[("", None)]) {
            Err((_, DeError::Unknown(names))) => names,
            _ => &[],
        };
        // Values each canonical key accepts: the defaults, as TOML. Options left unset
        // have none and are probed as "unset".
        let text = toml::to_string(&Config::default()).unwrap_or_default();
        let defaults = DeTable::parse(&text)
            .map(Spanned::into_inner)
            .unwrap_or_default();
        // Giving `first` and then `second` trips serde's duplicate-field check exactly
        // when both set the same field, and serde names the field by its canonical key.
        // Only `first`'s value is read.
        let same_field = |first: &str, second: &str| {
            let value = defaults.get(first);
            match from_pairs(&[(first, value), (second, None)]) {
                Err((_, DeError::Duplicate(field))) => Some(field),
                _ => None,
            }
        };
        let keys: Vec<Key> = accepted
            .iter()
            .filter(|name| same_field(name, name) == Some(**name))
            .map(|name| Key(name))
            .collect();
        let aliases = accepted
            .iter()
            .filter(|name| !keys.contains(&Key(name)))
            .filter_map(|alias| {
                let key = keys
                    .iter()
                    .find(|k| same_field(k.name(), alias).is_some())?;
                Some((*alias, *key))
            })
            .collect();
        Schema { keys, aliases }
    }
}

fn schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> = LazyLock::new(Schema::ask_serde);
    &SCHEMA
}

/// One of the `Schema`'s lists, read like a slice.
#[derive(Clone, Copy)]
struct Listing<T: 'static>(fn(&'static Schema) -> &'static [T]);

impl<T> Deref for Listing<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        (self.0)(schema())
    }
}

impl<T> IntoIterator for Listing<T> {
    type Item = &'static T;
    type IntoIter = std::slice::Iter<'static, T>;

    fn into_iter(self) -> Self::IntoIter {
        (self.0)(schema()).iter()
    }
}

fn lookup(name: &str) -> Option<Key> {
    Key::ALL
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .or_else(|| {
            ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .map(|(_, k)| *k)
        })
}

/// A known key within two edits of `name`, for "did you mean".
fn suggest(name: &str) -> Option<&'static str> {
    Key::ALL
        .iter()
        .map(|k| k.name())
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .map(|known| (edit_distance(name, known), known))
        .filter(|(d, _)| *d <= 2 && 2 * d < name.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let at = |row: &[usize], i: usize| row.get(i).copied().unwrap_or(usize::MAX);
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = at(&prev, j).saturating_add(usize::from(ca != *cb));
            let delete = at(&prev, j + 1).saturating_add(1);
            let insert = at(&cur, j).saturating_add(1);
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    at(&prev, b.len())
}

/// 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A key and its value as handed to serde; no value stands for an unset option.
type Pair<'a, 'i> = (&'a str, Option<&'a Spanned<DeValue<'i>>>);

/// Deserializes a `Config` from `pairs`, in their order; an error comes with the index
/// of the pair it is about.
fn from_pairs(pairs: &[Pair<'_, '_>]) -> Result<Config, (usize, DeError)> {
    let mut feed = Pairs { pairs, next: 0 };
    Config::deserialize(&mut feed).map_err(|e| (feed.next.saturating_sub(1), e))
}

/// Feeds key/value pairs to `Config`'s derived visitor as a map.
struct Pairs<'a, 'i> {
    pairs: &'a [Pair<'a, 'i>],
    /// The pair whose key is handed out next.
    next: usize,
}

// The values borrow from the text, so serde's 'de is the text's lifetime.
impl<'de> Deserializer<'de> for &mut Pairs<'_, 'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for &mut Pairs<'_, 'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.pairs.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(StrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = self
            .next
            .checked_sub(1)
            .and_then(|i| self.pairs.get(i))
            .and_then(|(_, value)| *value);
        match value {
            Some(v) => seed
                .deserialize(ValueDeserializer::from(v.clone()))
                .map_err(|e| DeError::Invalid(e.message().to_owned())),
            None => seed.deserialize(UnitDeserializer::new()),
        }
    }
}

/// What `Config`'s derived deserializer reported about a pair.
#[derive(Debug)]
enum DeError {
    /// No field has this key; serde lists the keys it accepts.
    Unknown(&'static [&'static str]),
    /// The key's field was already set; serde names the field.
    Duplicate(&'static str),
    /// The field's deserializer refused the value, for this reason.
    Invalid(String),
}

impl DeError {
    /// The error as reported for `key` on `line`.
    fn at(self, file: &Path, line: usize, key: &str) -> ConfigError {
        match self {
            DeError::Unknown(_) => ConfigError::UnknownKey {
                file: file.to_path_buf(),
                line,
                key: key.to_owned(),
                suggestion: suggest(key),
            },
            DeError::Duplicate(_) | DeError::Invalid(_) => ConfigError::InvalidValue {
                file: file.to_path_buf(),
                line,
                key: key.to_owned(),
                reason: self.to_string(),
            },
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Unknown(_) => f.write_str("unknown key"),
            DeError::Duplicate(field) => write!(f, "{field} is given twice"),
            DeError::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for DeError {}

impl serde::de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Invalid(msg.to_string())
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        DeError::Unknown(expected)
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::Duplicate(field)
    }
}

/// Where a setting was given: the key as written and its line.
struct Given {
    name: String,
    line: usize,
}

/// The one setting whose aliases may all be given: max_expires_subscribe and
/// max_expires_publish, which OpenSIPS keeps apart and we serve with one limit.
const STRICTER_WINS: Key = Key("max_expires");

impl Config {
    /// Reads and checks a configuration file; errors name `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text).map_err(|mut e| {
            e.set_file(path);
            e
        })
    }

    /// Parses and checks configuration text; errors name the file `<config>`.
    /// Keys left out keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let file = PathBuf::from(NO_FILE);
        let syntax = |e: toml::de::Error, at: usize| ConfigError::Syntax {
            file: file.clone(),
            line: Some(line_at(text, e.span().map_or(at, |s| s.start))),
            message: e.message().trim_end().to_owned(),
        };
        let table = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            line: e.span().map(|s| line_at(text, s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        // Report the first mistake in file order, not key order.
        let mut entries: Vec<_> = table.into_inner().into_iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        // A number TOML cannot hold (an integer beyond 64 bits) is a syntax error.
        for (_, value) in &entries {
            Value::deserialize(ValueDeserializer::from(value.clone()))
                .map_err(|e| syntax(e, value.span().start))?;
        }

        // Each pair alone first, in file order, so the first mistake is the one reported.
        let mut given: HashMap<Key, Given> = HashMap::new();
        let mut kept: Vec<(Pair<'_, '_>, usize)> = Vec::with_capacity(entries.len());
        let mut stricter_limit: Option<u32> = None;
        for (name, value) in &entries {
            let line = line_at(text, name.span().start);
            let name: &str = name.get_ref();
            let Some(key) = lookup(name) else {
                return Err(ConfigError::UnknownKey {
                    file,
                    line,
                    key: name.to_owned(),
                    suggestion: suggest(name),
                });
            };
            // max_expires_subscribe and max_expires_publish both set: one limit serves
            // both methods, so the stricter one wins.
            let mut stricter = false;
            if let Some(first) = given.get(&key) {
                stricter = key == STRICTER_WINS && first.name != key.name() && name != key.name();
                if !stricter {
                    return Err(ConfigError::Conflict {
                        file,
                        line,
                        key: name.to_owned(),
                        other: first.name.clone(),
                        other_line: first.line,
                    });
                }
            }
            let alone =
                from_pairs(&[(name, Some(value))]).map_err(|(_, e)| e.at(&file, line, name))?;
            if stricter {
                let limit = stricter_limit.map_or(alone.max_expires, |l| l.min(alone.max_expires));
                stricter_limit = Some(limit);
                continue;
            }
            given.insert(
                key,
                Given {
                    name: name.to_owned(),
                    line,
                },
            );
            kept.push(((name, Some(value)), line));
        }

        let pairs: Vec<Pair<'_, '_>> = kept.iter().map(|(pair, _)| *pair).collect();
        let mut cfg = from_pairs(&pairs).map_err(|(i, e)| match kept.get(i) {
            Some(((name, _), line)) => e.at(&file, *line, name),
            None => ConfigError::Syntax {
                file: file.clone(),
                line: None,
                message: e.to_string(),
            },
        })?;
        if let Some(limit) = stricter_limit {
            cfg.max_expires = cfg.max_expires.min(limit);
        }
        cfg.check_together(&given, &file)?;
        Ok(cfg)
    }

    /// Checks between settings, reported on the line of the key that was given (the
    /// first one when both were), and fills `default_expires` when it was left out.
    fn check_together(
        &mut self,
        given: &HashMap<Key, Given>,
        file: &Path,
    ) -> Result<(), ConfigError> {
        let fail = |keys: &[&'static str], reason: String| {
            let at = keys.iter().find_map(|k| given.get(&Key(k)));
            ConfigError::InvalidValue {
                file: file.to_path_buf(),
                line: at.map_or(1, |g| g.line),
                key: at.map_or_else(
                    || keys.first().copied().unwrap_or_default().to_owned(),
                    |g| g.name.clone(),
                ),
                reason,
            }
        };
        if self.min_expires > self.max_expires {
            return Err(fail(
                &["min_expires", "max_expires"],
                format!(
                    "min_expires ({}) is larger than max_expires ({})",
                    self.min_expires, self.max_expires
                ),
            ));
        }
        if given.contains_key(&Key("default_expires")) {
            if self.default_expires > self.max_expires || self.default_expires < self.min_expires {
                return Err(fail(
                    &["default_expires"],
                    format!(
                        "{} is outside min_expires..=max_expires ({}..={})",
                        self.default_expires, self.min_expires, self.max_expires
                    ),
                ));
            }
        } else {
            self.default_expires = DEFAULT_EXPIRES.max(self.min_expires).min(self.max_expires);
        }
        if self.expires_offset >= self.max_expires {
            return Err(fail(
                &["expires_offset", "max_expires"],
                format!(
                    "expires_offset ({}) must be smaller than max_expires ({})",
                    self.expires_offset, self.max_expires
                ),
            ));
        }
        // RFC 3261 §17.1.2.2: T2 caps an interval that starts at T1.
        if self.timer_t2_ms < self.timer_t1_ms {
            return Err(fail(
                &["timer_t2_ms", "timer_t1_ms"],
                format!(
                    "timer_t2_ms ({}) is smaller than timer_t1_ms ({})",
                    self.timer_t2_ms, self.timer_t1_ms
                ),
            ));
        }
        if self.max_body_size > self.max_message_size {
            return Err(fail(
                &["max_body_size", "max_message_size"],
                format!(
                    "max_body_size ({}) is larger than max_message_size ({})",
                    self.max_body_size, self.max_message_size
                ),
            ));
        }
        if let Some((event, size)) = self
            .max_body_size_per_event
            .iter()
            .find(|(_, size)| **size > self.max_message_size)
        {
            return Err(fail(
                &["max_body_size_per_event", "max_message_size"],
                format!(
                    "max_body_size_per_event: {event} ({size}) is larger than max_message_size ({})",
                    self.max_message_size
                ),
            ));
        }
        let secure = self.listen.iter().find(|l| l.kind().is_secure());
        if let Some(l) = secure
            && (self.tls_certificate.is_none() || self.tls_private_key.is_none())
        {
            return Err(fail(
                &["listen", "tls_certificate", "tls_private_key"],
                format!("{l} needs tls_certificate and tls_private_key (PEM files)"),
            ));
        }
        if self.xcap_tls && (self.tls_certificate.is_none() || self.tls_private_key.is_none()) {
            return Err(fail(
                &["xcap_tls", "tls_certificate", "tls_private_key"],
                "xcap_tls needs tls_certificate and tls_private_key (PEM files)".to_owned(),
            ));
        }
        let websocket = self.listen.iter().any(|l| l.kind().inbound_only());
        if websocket && self.ws_ping_interval >= self.tcp_idle_timeout {
            return Err(fail(
                &["ws_ping_interval", "tcp_idle_timeout"],
                format!(
                    "ws_ping_interval ({} s) must be shorter than tcp_idle_timeout ({} s), or \
                     quiet WebSocket clients are closed as idle before they are pinged",
                    self.ws_ping_interval, self.tcp_idle_timeout
                ),
            ));
        }
        if self.tls_verify_client && self.tls_ca_list.is_none() {
            return Err(fail(
                &["tls_verify_client", "tls_ca_list"],
                "tls_verify_client needs tls_ca_list (the authorities client certificates \
                 are checked against)"
                    .to_owned(),
            ));
        }
        if self.auth == Some(AuthMode::Trusted) && self.trusted_proxies.is_empty() {
            return Err(fail(
                &["auth", "trusted_proxies"],
                "auth = \"trusted\" needs trusted_proxies (the proxies' addresses)".to_owned(),
            ));
        }
        // presence_xml: with neither force_active nor a local XCAP server there is no
        // source of authorization rules.
        if !self.force_active && !self.integrated_xcap_server && self.xcap_server.is_empty() {
            return Err(fail(
                &["integrated_xcap_server", "force_active"],
                "without force_active and integrated_xcap_server, xcap_server must name at \
                 least one XCAP server"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether the built-in XCAP server runs: privacy rules or pidf-manipulation need
    /// documents, and they are not fetched from elsewhere.
    pub fn runs_xcap_server(&self) -> bool {
        self.wants_documents() && self.integrated_xcap_server
    }

    /// Whether anything reads XCAP documents: privacy rules, pidf-manipulation or
    /// buddy lists.
    pub fn wants_documents(&self) -> bool {
        !self.force_active || self.pidf_manipulation || self.rls || self.authorize_messages
    }

    /// The authentication mode in effect: the one set, else `none`.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or(AuthMode::None)
    }

    /// The safe-by-default rule: with `auth` unset, every SIP listener and the XCAP
    /// server must be on loopback. Checked when the daemon starts (after `--listen`
    /// replaced the configured listeners) and by `check-config`. `xcap_serves` says
    /// whether the built-in XCAP server will run.
    pub fn check_exposure(&self, xcap_serves: bool) -> Result<(), String> {
        if self.auth.is_some() {
            return Ok(());
        }
        let exposed = self
            .listen
            .iter()
            .map(|l| (l.to_string(), l.addr()))
            .chain(xcap_serves.then(|| {
                (
                    format!("xcap_listen {}", self.xcap_listen),
                    self.xcap_listen,
                )
            }))
            .find(|(_, a)| !a.ip().is_loopback());
        match exposed {
            None => Ok(()),
            Some((what, _)) => Err(format!(
                "{what} is not a loopback address, and no `auth` mode is set: anyone who can \
                 reach it could publish and read anyone's presence. Set auth = \"digest\" \
                 (accounts from `presenced user add`), auth = \"trusted\" (with \
                 trusted_proxies) or, to allow that on purpose, auth = \"none\""
            )),
        }
    }

    /// The effective configuration as TOML, every setting under its canonical name, in
    /// struct order. `from_toml_str` reads it back to an equal `Config`. Unset optional
    /// settings are written as comments. Paths that are not UTF-8 are written lossily.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::from("# presenced effective configuration\n");
        let mut unset = String::new();
        for (key, value) in self.values() {
            let _ = match value {
                Setting::Value(value) => writeln!(out, "{key} = {value}"),
                Setting::Unfit(json) => writeln!(out, "# {key} = {json} does not fit in TOML"),
                Setting::Unset => writeln!(unset, "# {key} unset{}", unset_means(key)),
            };
        }
        out + &unset
    }

    /// The settings whose values differ between `self` and `other`, by canonical name.
    pub fn changed_keys(&self, other: &Config) -> Vec<&'static str> {
        self.values()
            .into_iter()
            .zip(other.values())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((key, _), _)| key)
            .collect()
    }

    /// Every setting's value as TOML would write it, in struct order.
    fn values(&self) -> Vec<(&'static str, Setting)> {
        // Through a self-describing tree first, so that a value TOML cannot hold (an
        // integer beyond i64, which only a Config built in code can have) spoils only
        // its own line.
        let fields = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
        Key::ALL
            .iter()
            .map(|key| {
                let key = key.name();
                let value = match fields.get(key).map(|v| (v, Value::try_from(v))) {
                    Some((_, Ok(value))) => Setting::Value(value.to_string()),
                    Some((json, Err(_))) => Setting::Unfit(json.to_string()),
                    None => Setting::Unset,
                };
                (key, value)
            })
            .collect()
    }

    /// A configuration file for packages (`presenced default-config`): every setting,
    /// grouped and explained as in `docs/configuration.md` (read from it, so the two
    /// cannot drift), commented out at its default; a setting where `self` differs from
    /// the default (the package's database path) is written out as a live line.
    pub fn template(&self) -> String {
        let doc = include_str!("../docs/configuration.md");
        let ours: HashMap<&str, Setting> = self.values().into_iter().collect();
        let defaults: HashMap<&str, Setting> = Config::default().values().into_iter().collect();
        let mut out = String::from(
            "# presenced configuration (TOML). Every setting is listed at its default,\n\
             # commented out; uncomment a line to change it. `presenced check-config FILE`\n\
             # checks a file and prints the configuration in effect. Reference:\n\
             # /usr/share/doc/presenced/configuration.md (docs/configuration.md).\n",
        );
        let mut seen = std::collections::HashSet::new();
        for line in doc.lines() {
            if let Some(title) = line.strip_prefix("### ") {
                let _ = writeln!(out, "\n# ==== {title} ====");
                continue;
            }
            let Some((key, alias, meaning)) = doc_row(line) else {
                continue;
            };
            let Some(value) = ours.get(key) else {
                continue;
            };
            if !seen.insert(key) {
                continue;
            }
            out.push('\n');
            for l in wrap(&meaning, 86) {
                let _ = writeln!(out, "# {l}");
            }
            if alias != "—" {
                let _ = writeln!(out, "# OpenSIPS/OpenSER name: {}", plain(alias));
            }
            let _ = match (value, defaults.get(key) == Some(value)) {
                (Setting::Value(v), true) => writeln!(out, "#{key} = {v}"),
                (Setting::Value(v), false) => writeln!(out, "{key} = {v}"),
                (Setting::Unfit(json), _) => writeln!(out, "# {key} = {json} does not fit in TOML"),
                (Setting::Unset, _) => writeln!(out, "# {key} is unset{}", unset_means(key)),
            };
        }
        out
    }
}

/// One setting's value, as [`Config::values`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Setting {
    Value(String),
    /// Held by a `Config` built in code, but not writable as TOML (shown as JSON).
    Unfit(String),
    Unset,
}

/// `| `key` | alias | default | meaning |` from a settings table of the docs.
fn doc_row(line: &str) -> Option<(&str, &str, String)> {
    let cells: Vec<&str> = line.strip_prefix("| `")?.splitn(4, " | ").collect();
    let [key, alias, _default, meaning] = cells[..] else {
        return None;
    };
    let key = key.strip_suffix('`')?;
    Some((key, alias, plain(meaning.trim_end_matches(" |"))))
}

/// Markdown made plain text: backticks dropped, `[text](link)` reduced to its text.
fn plain(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut rest = md;
    while let Some(open) = rest.find('[') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after.find("](").zip(after.find(')')) {
            Some((mid, close)) if mid < close => {
                out.push_str(&after[1..mid]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out.replace('`', "")
}

/// Words of `text` in lines of at most `width` characters (a longer word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// What leaving an optional setting out means, for the printer's comment.
fn unset_means(key: &str) -> &'static str {
    match key {
        "server_address" => ": Contact carries the local transport address",
        "control_socket" => ": <db>/control.sock",
        "metrics_listen" => ": no metrics endpoint",
        "tls_certificate" | "tls_private_key" => ": no tls: or wss: listener",
        "tls_ca_list" => ": the system's certificate store",
        "rls_backend_server" => ": members outside domains show noresource",
        "auth" => ": none, allowed only on loopback listeners",
        "auth_realm" => ": the From URI's domain",
        _ => "",
    }
}

/// How each field reads its value (`#[serde(deserialize_with)]`). The value is taken as
/// TOML gave it, so a reason can say what was found ("expected an integer, got a float");
/// loading adds the key and the line.
mod parse {
    use super::*;

    /// Runs `check` on the value.
    fn checked<'de, D: Deserializer<'de>, T>(
        d: D,
        check: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<T, D::Error> {
        let v = Value::deserialize(d)?;
        check(&v).map_err(serde::de::Error::custom)
    }

    /// Runs `check` on the value of an optional setting, when there is one.
    fn checked_option<'de, D: Deserializer<'de>, T>(
        d: D,
        check: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            Some(v) => check(&v).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }

    /// An integer in `MIN..=MAX`.
    pub(super) fn int<'de, const MIN: u64, const MAX: u64, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        checked(d, |v| int_in(v, MIN, MAX))
    }

    pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        checked(d, to_flag)
    }

    pub(super) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ListenAddr>, D::Error> {
        checked(d, |v| {
            let list = string_list(v)?;
            let mut out: Vec<ListenAddr> = Vec::with_capacity(list.len());
            for s in &list {
                let addr: ListenAddr = s.parse().map_err(|e: ListenAddrError| e.to_string())?;
                if out.contains(&addr) {
                    return Err(format!("{addr} is listed twice"));
                }
                out.push(addr);
            }
            if out.is_empty() {
                return Err("at least one listen address is needed".to_owned());
            }
            Ok(out)
        })
    }

    pub(super) fn domains<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        checked(d, |v| {
            let list = string_list(v)?;
            for d in &list {
                check_domain(d)?;
            }
            Ok(list)
        })
    }

    pub(super) fn xcap_servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        checked(d, |v| {
            let list = string_list(v)?;
            for s in &list {
                check_xcap_root(s)?;
            }
            Ok(list)
        })
    }

    pub(super) fn backend_server<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        checked_option(d, |v| {
            let s = string(v)?;
            crate::rls::backend::parse_server(s)?;
            Ok(s.to_owned())
        })
    }

    pub(super) fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        checked(d, |v| {
            let list = string_list(v)?;
            for o in &list {
                let rest = o
                    .strip_prefix("https://")
                    .or_else(|| o.strip_prefix("http://"))
                    .ok_or_else(|| format!("origin {o:?} must start with https:// or http://"))?;
                if rest.is_empty() || rest.contains('/') {
                    return Err(format!(
                        "origin {o:?} must be scheme://host[:port], without a path"
                    ));
                }
            }
            Ok(list)
        })
    }

    pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        checked(d, |v| Ok(PathBuf::from(non_empty(string(v)?)?)))
    }

    pub(super) fn optional_path<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        checked_option(d, |v| Ok(PathBuf::from(non_empty(string(v)?)?)))
    }

    pub(super) fn to_tag_pref<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        checked(d, |v| {
            let s = string(v)?;
            check_to_tag_pref(s)?;
            Ok(s.to_owned())
        })
    }

    pub(super) fn server_address<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        checked_option(d, |v| {
            let s = string(v)?;
            check_sip_uri(s)?;
            Ok(s.to_owned())
        })
    }

    pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        checked(d, |v| {
            string(v)?
                .parse()
                .map_err(|_| "expected HOST:PORT with an IP address".to_owned())
        })
    }

    pub(super) fn optional_socket_addr<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        checked_option(d, |v| {
            string(v)?
                .parse()
                .map_err(|_| "expected HOST:PORT with an IP address".to_owned())
        })
    }

    pub(super) fn sync_mode<'de, D: Deserializer<'de>>(d: D) -> Result<SyncMode, D::Error> {
        checked(d, |v| string(v)?.parse())
    }

    pub(super) fn auth_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AuthMode>, D::Error> {
        checked_option(d, |v| {
            let s = string(v)?;
            AuthMode::parse(s)
                .ok_or_else(|| format!("{s:?} is not one of \"digest\", \"trusted\", \"none\""))
        })
    }

    pub(super) fn realm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked_option(d, |v| {
            let s = non_empty(string(v)?)?;
            if s.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
                return Err(format!(
                    "{s:?} contains quotes, backslashes or control characters"
                ));
            }
            Ok(s.to_owned())
        })
    }

    pub(super) fn algorithms<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Algorithm>, D::Error> {
        checked(d, |v| {
            let mut out = Vec::new();
            for s in string_list(v)? {
                let a = Algorithm::parse(&s).ok_or_else(|| {
                    format!("{s:?} is not one of \"SHA-512-256\", \"SHA-256\", \"MD5\"")
                })?;
                if out.contains(&a) {
                    return Err(format!("{s} is listed twice"));
                }
                out.push(a);
            }
            if out.is_empty() {
                return Err("at least one algorithm is needed".to_owned());
            }
            Ok(out)
        })
    }

    pub(super) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        checked(d, |v| {
            string_list(v)?
                .iter()
                .map(|s| crate::auth::parse_net(s))
                .collect()
        })
    }

    /// A table of event package → size in bytes.
    pub(super) fn event_sizes<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, usize>, D::Error> {
        checked(d, |v| {
            let Value::Table(t) = v else {
                return Err(format!(
                    "expected a table of event = bytes, got {}",
                    type_name(v)
                ));
            };
            t.iter()
                .map(|(event, size)| {
                    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~;=".contains(c);
                    if event.is_empty() || !event.chars().all(token) {
                        return Err(format!("{event:?} is not an event package name"));
                    }
                    let size =
                        int_in(size, 0, MAX_MESSAGE_SIZE).map_err(|e| format!("{event}: {e}"))?;
                    Ok((event.to_ascii_lowercase(), size))
                })
                .collect()
        })
    }

    pub(super) fn delegates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Delegate>, D::Error> {
        checked(d, |v| {
            string_list(v)?
                .iter()
                .map(|s| {
                    Delegate::parse(s).ok_or_else(|| {
                        format!("{s:?} is neither a sip: AOR with a user nor an address/network")
                    })
                })
                .collect()
        })
    }

    fn type_name(v: &Value) -> &'static str {
        match v {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    /// An integer in `min..=max`, converted to the field's type.
    fn int_in<T: TryFrom<u64>>(v: &Value, min: u64, max: u64) -> Result<T, String> {
        let Value::Integer(i) = v else {
            return Err(format!("expected an integer, got {}", type_name(v)));
        };
        let n = u64::try_from(*i)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{i} is out of range {min}..={max}"))?;
        T::try_from(n).map_err(|_| format!("{i} is too large for this machine"))
    }

    /// A boolean; 0 and 1 are accepted too, as OpenSIPS flags are integers.
    fn to_flag(v: &Value) -> Result<bool, String> {
        match v {
            Value::Boolean(b) => Ok(*b),
            Value::Integer(0) => Ok(false),
            Value::Integer(1) => Ok(true),
            Value::Integer(i) => Err(format!("expected true/false (or 0/1), got {i}")),
            _ => Err(format!("expected true or false, got {}", type_name(v))),
        }
    }

    fn string(v: &Value) -> Result<&str, String> {
        match v {
            Value::String(s) => Ok(s),
            _ => Err(format!("expected a string, got {}", type_name(v))),
        }
    }

    fn non_empty(s: &str) -> Result<&str, String> {
        if s.is_empty() {
            Err("must not be empty".to_owned())
        } else {
            Ok(s)
        }
    }

    /// An array of strings; a lone string counts as a one-element list.
    fn string_list(v: &Value) -> Result<Vec<String>, String> {
        match v {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "expected an array of strings, found {} in it",
                        type_name(other)
                    )),
                })
                .collect(),
            _ => Err(format!(
                "expected an array of strings, got {}",
                type_name(v)
            )),
        }
    }

    /// Text that will be copied into a SIP header must not break the header.
    fn has_unsafe_char(s: &str) -> bool {
        s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
    }

    fn check_domain(d: &str) -> Result<(), String> {
        if d.is_empty() || has_unsafe_char(d) || d.contains(['@', '/', ';']) {
            return Err(format!("{d:?} is not a domain name"));
        }
        Ok(())
    }

    /// RFC 3261 §19.1.1: the tag is a `token`, so its prefix must be token characters.
    fn check_to_tag_pref(s: &str) -> Result<(), String> {
        let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
        if s.len() > MAX_TO_TAG_PREF || !s.chars().all(token) {
            return Err(format!(
                "{s:?} must be at most {MAX_TO_TAG_PREF} SIP token characters"
            ));
        }
        Ok(())
    }

    /// A `sip:` or `sips:` URI with a host; it goes verbatim into Contact.
    fn check_sip_uri(s: &str) -> Result<(), String> {
        let bad = || format!("{s:?} is not a sip: or sips: URI with a host");
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return Err(bad());
        }
        if has_unsafe_char(s) {
            return Err(format!("{s:?} contains spaces, control characters or <>\""));
        }
        let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let hostport = hostport.split([';', '?']).next().unwrap_or("");
        let host = if let Some(v6) = hostport.strip_prefix('[') {
            v6.split_once(']').map_or("", |(h, _)| h)
        } else {
            hostport.split(':').next().unwrap_or("")
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(())
    }

    fn check_xcap_root(s: &str) -> Result<(), String> {
        if s.is_empty() || has_unsafe_char(s) {
            return Err(format!("{s:?} is not an XCAP server address"));
        }
        Ok(())
    }
}

/// How fields whose type has no TOML form of its own are written
/// (`#[serde(serialize_with)]`), in the form `parse` reads back.
mod print {
    use std::fmt::Display;
    use std::path::{Path, PathBuf};

    use serde::Serializer;

    pub(super) fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(super) fn optional_display<T: Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub(super) fn display_list<T: Display, S: Serializer>(
        items: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(items.iter().map(ToString::to_string))
    }

    /// Written lossily when not UTF-8: TOML text is.
    pub(super) fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_string_lossy())
    }

    pub(super) fn optional_path<S: Serializer>(
        p: &Option<PathBuf>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&p.to_string_lossy()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(text: &str) -> ConfigError {
        match Config::from_toml_str(text) {
            Ok(cfg) => panic!("expected an error for {text:?}, got {cfg:?}"),
            Err(e) => e,
        }
    }

    fn invalid_at(text: &str) -> (usize, String, String) {
        match err(text) {
            ConfigError::InvalidValue {
                line, key, reason, ..
            } => (line, key, reason),
            other => panic!("expected InvalidValue for {text:?}, got {other}"),
        }
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let cfg = Config::from_toml_str("# nothing\n").unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(
            cfg.listen,
            vec![
                "udp:127.0.0.1:5060".parse().unwrap(),
                "tcp:127.0.0.1:5060".parse().unwrap()
            ]
        );
        assert_eq!(cfg.db, PathBuf::from("presenced.db"));
        assert!(cfg.domains.is_empty());
        assert_eq!(cfg.clean_period, 100);
        assert_eq!(
            (cfg.max_expires, cfg.min_expires, cfg.default_expires),
            (3600, 0, 3600)
        );
        assert_eq!(cfg.expires_offset, 0);
        assert_eq!(cfg.to_tag_pref, "10");
        assert_eq!(cfg.server_address, None);
        assert!(cfg.force_active && cfg.end_sub_on_timeout);
        assert!(cfg.replace_stale_subscriptions && cfg.notify_closed_when_empty);
        assert!(!cfg.pidf_manipulation && cfg.integrated_xcap_server);
        assert!(cfg.mwi_owner_only);
        assert!(cfg.xcap_server.is_empty());
        assert_eq!((cfg.sync, cfg.sync_period_ms), (SyncMode::Periodic, 500));
        assert_eq!(cfg.cache_capacity, 8 * 1024 * 1024);
        assert_eq!((cfg.max_message_size, cfg.max_body_size), (65535, 32768));
        assert_eq!((cfg.max_connections, cfg.tcp_idle_timeout), (1024, 300));
        assert_eq!(
            (cfg.timer_t1_ms, cfg.timer_t2_ms, cfg.timer_t4_ms),
            (500, 4000, 5000)
        );
        assert_eq!(cfg.shutdown_grace_ms, 2000);
        assert_eq!(cfg.control_socket, None);
    }

    const EVERY_KEY: &str = r#"
listen = ["udp:[::1]:5070", "tcp:0.0.0.0:5071"]
db = "/var/lib/presenced"
domains = ["example.org", "example.net"]
clean_period = 30
max_expires = 7200
min_expires = 60
default_expires = 600
expires_offset = 10
to_tag_pref = "ab"
server_address = "sip:presence@10.0.0.1:5060;transport=tcp"
force_active = false
end_sub_on_timeout = false
replace_stale_subscriptions = false
notify_closed_when_empty = false
pidf_manipulation = true
mwi_owner_only = false
rls = true
rls_batch_ms = 50
rls_backend_server = "sip:10.0.0.2:5060;transport=tcp"
rls_request_lists = true
authorize_messages = true
integrated_xcap_server = false
xcap_server = ["xcap.example.org"]
xcap_listen = "[::1]:8080"
xcap_tls = true
xcap_max_document_size = 4096
periodical_query = false
query_period = 30
watchers_retention_days = 7
sync = "always"
sync_period_ms = 50
cache_capacity = 1048576
max_message_size = 8192
max_body_size = 4096
max_body_size_per_event = { "message-summary" = 2048, "Dialog;SLA" = 8000 }
max_publications_per_presentity = 4
max_subscriptions_per_presentity = 50
max_subscriptions_per_watcher = 60
max_aggregate_size = 9000
max_connections = 10
tcp_idle_timeout = 60
max_connections_per_source = 8
tcp_message_timeout = 3
tls_certificate = "/etc/presenced/cert.pem"
tls_private_key = "/etc/presenced/key.pem"
tls_ca_list = "/etc/presenced/ca.pem"
tls_verify_client = true
tls_handshake_timeout_ms = 2000
tls_max_handshakes = 16
ws_origins = ["https://phone.example.org"]
ws_ping_interval = 20
connection_grace_ms = 1000
max_requests_per_source = 50
timer_t1_ms = 250
timer_t2_ms = 2000
timer_t4_ms = 2500
shutdown_grace_ms = 0
auth = "trusted"
auth_realm = "example.org"
auth_as_proxy = true
auth_algorithms = ["MD5", "SHA-512-256"]
nonce_expire = 60
trusted_proxies = ["10.0.0.1", "192.168.0.0/16"]
publish_on_behalf = ["sip:vm@example.org", "10.0.0.5"]
control_socket = "/run/presenced.sock"
metrics_listen = "127.0.0.1:9465"
"#;

    #[test]
    fn every_key_sets_its_field() {
        let cfg = Config::from_toml_str(EVERY_KEY).unwrap();
        let expected = Config {
            listen: vec![
                ListenAddr::Udp("[::1]:5070".parse().unwrap()),
                ListenAddr::Tcp("0.0.0.0:5071".parse().unwrap()),
            ],
            db: PathBuf::from("/var/lib/presenced"),
            domains: vec!["example.org".into(), "example.net".into()],
            clean_period: 30,
            max_expires: 7200,
            min_expires: 60,
            default_expires: 600,
            expires_offset: 10,
            to_tag_pref: "ab".into(),
            server_address: Some("sip:presence@10.0.0.1:5060;transport=tcp".into()),
            force_active: false,
            end_sub_on_timeout: false,
            replace_stale_subscriptions: false,
            notify_closed_when_empty: false,
            pidf_manipulation: true,
            mwi_owner_only: false,
            rls: true,
            rls_batch_ms: 50,
            rls_backend_server: Some("sip:10.0.0.2:5060;transport=tcp".into()),
            rls_request_lists: true,
            authorize_messages: true,
            integrated_xcap_server: false,
            xcap_server: vec!["xcap.example.org".into()],
            xcap_listen: "[::1]:8080".parse().unwrap(),
            xcap_tls: true,
            xcap_max_document_size: 4096,
            periodical_query: false,
            query_period: 30,
            watchers_retention_days: 7,
            sync: SyncMode::Always,
            sync_period_ms: 50,
            cache_capacity: 1 << 20,
            max_message_size: 8192,
            max_body_size: 4096,
            max_body_size_per_event: BTreeMap::from([
                ("dialog;sla".to_owned(), 8000),
                ("message-summary".to_owned(), 2048),
            ]),
            max_publications_per_presentity: 4,
            max_subscriptions_per_presentity: 50,
            max_subscriptions_per_watcher: 60,
            max_aggregate_size: 9000,
            max_connections: 10,
            tcp_idle_timeout: 60,
            max_connections_per_source: 8,
            tcp_message_timeout: 3,
            tls_certificate: Some(PathBuf::from("/etc/presenced/cert.pem")),
            tls_private_key: Some(PathBuf::from("/etc/presenced/key.pem")),
            tls_ca_list: Some(PathBuf::from("/etc/presenced/ca.pem")),
            tls_verify_client: true,
            tls_handshake_timeout_ms: 2000,
            tls_max_handshakes: 16,
            ws_origins: vec!["https://phone.example.org".into()],
            ws_ping_interval: 20,
            connection_grace_ms: 1000,
            max_requests_per_source: 50,
            timer_t1_ms: 250,
            timer_t2_ms: 2000,
            timer_t4_ms: 2500,
            shutdown_grace_ms: 0,
            auth: Some(AuthMode::Trusted),
            auth_realm: Some("example.org".into()),
            auth_as_proxy: true,
            auth_algorithms: vec![Algorithm::Md5, Algorithm::Sha512_256],
            nonce_expire: 60,
            trusted_proxies: vec![
                crate::auth::parse_net("10.0.0.1").unwrap(),
                crate::auth::parse_net("192.168.0.0/16").unwrap(),
            ],
            publish_on_behalf: vec![
                Delegate::parse("sip:vm@example.org").unwrap(),
                Delegate::parse("10.0.0.5").unwrap(),
            ],
            control_socket: Some(PathBuf::from("/run/presenced.sock")),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9465))),
        };
        assert_eq!(cfg, expected);
        // The sample really covers every key, so adding a key means extending it.
        for key in Key::ALL {
            assert!(
                EVERY_KEY.contains(&format!("\n{} = ", key.name())),
                "{} missing from EVERY_KEY",
                key.name()
            );
        }
    }

    #[test]
    fn each_alias_sets_the_same_field_as_its_key() {
        let cases: &[(&str, &str)] = &[
            ("max_expires_subscribe", "1800"),
            ("max_expires_publish", "1800"),
            ("timeout_rm_subs", "0"),
            ("notify_offline_body", "0"),
            ("tcp_connection_lifetime", "120"),
            ("tcp_max_connections", "2048"),
            ("T1_timer", "700"),
            ("T2_timer", "8000"),
            ("waiting_subs_daysno", "10"),
            ("tcp_max_msg_time", "4"),
            ("certificate", "\"/etc/presenced/cert.pem\""),
            ("private_key", "\"/etc/presenced/key.pem\""),
            ("ca_list", "\"/etc/presenced/ca.pem\""),
            ("handshake_timeout", "1500"),
            ("presence_server", "\"sip:127.0.0.1:5070\""),
        ];
        for (alias, value) in cases {
            let key = lookup(alias).unwrap();
            assert_ne!(key.name(), *alias);
            let via_alias = Config::from_toml_str(&format!("{alias} = {value}")).unwrap();
            let via_key = Config::from_toml_str(&format!("{} = {value}", key.name())).unwrap();
            assert_eq!(via_alias, via_key, "{alias}");
            assert_ne!(via_alias, Config::default(), "{alias} changed nothing");
        }
        assert_eq!(cases.len(), ALIASES.len());
    }

    #[test]
    fn both_max_expires_aliases_keep_the_smaller_limit() {
        for text in [
            "max_expires_subscribe = 7200\nmax_expires_publish = 1800",
            "max_expires_publish = 1800\nmax_expires_subscribe = 7200",
        ] {
            let cfg = Config::from_toml_str(text).unwrap();
            assert_eq!(cfg.max_expires, 1800, "{text}");
            assert_eq!(cfg.default_expires, 1800, "{text}");
        }
    }

    #[test]
    fn key_and_its_alias_together_are_rejected_naming_both_lines() {
        let e = err("force_active = true\nmax_expires = 100\n\nmax_expires_publish = 50\n");
        match &e {
            ConfigError::Conflict {
                line,
                key,
                other,
                other_line,
                ..
            } => {
                assert_eq!((*line, key.as_str()), (4, "max_expires_publish"));
                assert_eq!((other.as_str(), *other_line), ("max_expires", 2));
            }
            other => panic!("expected Conflict, got {other}"),
        }
        let e = err("T1_timer = 400\ntimer_t1_ms = 400\n");
        assert_eq!((e.line(), e.key()), (Some(2), Some("timer_t1_ms")));
    }

    #[test]
    fn unknown_key_is_named_with_its_line_and_a_suggestion() {
        let text = "max_expires = 100\n# comment\n\nclean_perod = 5\n";
        let e = err(text);
        assert_eq!((e.line(), e.key()), (Some(4), Some("clean_perod")));
        assert_eq!(
            e.to_string(),
            "<config>:4: unknown key \"clean_perod\" (did you mean \"clean_period\"?)"
        );
        let e = err("a = 1\nzzzz = 2");
        assert_eq!(e.to_string(), "<config>:1: unknown key \"a\"");
    }

    #[test]
    fn first_mistake_in_file_order_is_reported() {
        // "zeta" sorts after "alpha" but comes first in the file.
        let e = err("zeta = 1\nalpha = 2\n");
        assert_eq!((e.line(), e.key()), (Some(1), Some("zeta")));
    }

    #[test]
    fn a_table_header_is_an_unknown_key_on_its_line() {
        let e = err("clean_period = 5\n\n[presence]\nmax_expires = 10\n");
        assert_eq!((e.line(), e.key()), (Some(3), Some("presence")));
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("listen = [\"udp:localhost:5060\"]", "listen", "localhost"),
            (
                "listen = [\"sctp:127.0.0.1:5061\"]",
                "listen",
                "udp, tcp, tls",
            ),
            ("listen = []", "listen", "at least one"),
            (
                "listen = [\"udp:1.2.3.4:5\", \"udp:1.2.3.4:5\"]",
                "listen",
                "twice",
            ),
            ("listen = [5060]", "listen", "an integer"),
            ("db = \"\"", "db", "empty"),
            ("db = 3", "db", "expected a string"),
            ("domains = [\"a b\"]", "domains", "domain"),
            ("clean_period = 0", "clean_period", "out of range"),
            ("clean_period = -5", "clean_period", "-5"),
            ("clean_period = 1.5", "clean_period", "a float"),
            (
                "tcp_idle_timeout = 31536001",
                "tcp_idle_timeout",
                "out of range",
            ),
            ("clean_period = \"100\"", "clean_period", "a string"),
            ("max_expires = 0", "max_expires", "out of range"),
            ("max_expires = 4294967296", "max_expires", "out of range"),
            ("to_tag_pref = \"a b\"", "to_tag_pref", "token"),
            ("server_address = \"http://x\"", "server_address", "sip:"),
            ("server_address = \"sip:\"", "server_address", "host"),
            ("server_address = \"sip:user@\"", "server_address", "host"),
            (
                "server_address = \"sip:a\\r\\nX: y\"",
                "server_address",
                "control",
            ),
            ("force_active = 2", "force_active", "0/1"),
            ("force_active = \"yes\"", "force_active", "a string"),
            ("sync = \"sometimes\"", "sync", "sometimes"),
            ("sync_period_ms = 0", "sync_period_ms", "out of range"),
            ("max_message_size = 100", "max_message_size", "out of range"),
            ("max_connections = 0", "max_connections", "out of range"),
            ("timer_t1_ms = 0", "timer_t1_ms", "out of range"),
            ("timer_t4_ms = 0", "timer_t4_ms", "out of range"),
            ("T2_timer = 0", "T2_timer", "out of range"),
            ("control_socket = \"\"", "control_socket", "empty"),
            ("xcap_server = [\"\"]", "xcap_server", "XCAP"),
            (
                "max_body_size_per_event = 5",
                "max_body_size_per_event",
                "a table",
            ),
            (
                "max_body_size_per_event = { \"a b\" = 5 }",
                "max_body_size_per_event",
                "event package",
            ),
            (
                "max_body_size_per_event = { dialog = -1 }",
                "max_body_size_per_event",
                "dialog",
            ),
        ];
        for (bad, key, needle) in cases {
            let text = format!("pidf_manipulation = false\n\n{bad}\n");
            let (line, got_key, reason) = invalid_at(&text);
            assert_eq!((line, got_key.as_str()), (3, *key), "{bad}");
            assert!(
                reason.contains(needle),
                "{bad}: reason {reason:?} lacks {needle:?}"
            );
            let shown = err(&text).to_string();
            assert!(
                shown.starts_with(&format!("<config>:3: {key}: invalid value: ")),
                "{shown}"
            );
        }
    }

    #[test]
    fn settings_that_contradict_each_other_are_reported_on_the_key_given() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "max_expires = 600\nmin_expires = 900",
                2,
                "min_expires",
                "larger",
            ),
            ("\nmin_expires = 5000", 2, "min_expires", "larger"),
            (
                "max_expires_subscribe = 30\n\nmin_expires = 60",
                3,
                "min_expires",
                "larger",
            ),
            (
                "min_expires = 60\ndefault_expires = 30",
                2,
                "default_expires",
                "outside",
            ),
            ("default_expires = 7200", 1, "default_expires", "outside"),
            (
                "max_expires = 60\nexpires_offset = 60",
                2,
                "expires_offset",
                "smaller",
            ),
            ("timer_t1_ms = 5000", 1, "timer_t1_ms", "smaller"),
            (
                "timer_t1_ms = 300\ntimer_t2_ms = 200",
                2,
                "timer_t2_ms",
                "smaller",
            ),
            (
                "max_message_size = 2048",
                1,
                "max_message_size",
                "max_body_size",
            ),
            ("\nmax_body_size = 70000", 2, "max_body_size", "larger"),
            (
                "max_message_size = 40000\nmax_body_size_per_event = { dialog = 50000 }",
                2,
                "max_body_size_per_event",
                "larger",
            ),
            (
                "force_active = 0\nintegrated_xcap_server = false",
                2,
                "integrated_xcap_server",
                "xcap_server",
            ),
        ];
        for (text, line, key, needle) in cases {
            let (got_line, got_key, reason) = invalid_at(text);
            assert_eq!((got_line, got_key.as_str()), (*line, *key), "{text}");
            assert!(reason.contains(needle), "{text}: {reason}");
        }
    }

    #[test]
    fn unset_default_expires_moves_into_the_allowed_range() {
        let cfg = Config::from_toml_str("max_expires = 60").unwrap();
        assert_eq!(cfg.default_expires, 60);
        let cfg = Config::from_toml_str("max_expires = 9000\nmin_expires = 4000").unwrap();
        assert_eq!(cfg.default_expires, 4000);
        let cfg = Config::from_toml_str("max_expires = 9000").unwrap();
        assert_eq!(cfg.default_expires, 3600);
    }

    #[test]
    fn flags_accept_opensips_style_integers() {
        let cfg =
            Config::from_toml_str("force_active = 0\nxcap_server = \"x\"\npidf_manipulation = 1")
                .unwrap();
        assert!(!cfg.force_active && cfg.pidf_manipulation);
    }

    #[test]
    fn a_single_string_counts_as_a_one_item_list() {
        let cfg =
            Config::from_toml_str("listen = \"tcp:10.0.0.1:5060\"\ndomains = \"a.org\"").unwrap();
        assert_eq!(
            cfg.listen,
            vec![ListenAddr::Tcp("10.0.0.1:5060".parse().unwrap())]
        );
        assert_eq!(cfg.domains, vec!["a.org".to_owned()]);
    }

    #[test]
    fn server_address_accepts_sip_and_sips_uris_with_a_host() {
        for ok in [
            "sip:10.0.0.1",
            "SIP:ps.example.org:5060",
            "sips:presence@ps.example.org;transport=tcp",
            "sip:[2001:db8::1]:5060",
        ] {
            let cfg = Config::from_toml_str(&format!("server_address = {ok:?}")).unwrap();
            assert_eq!(cfg.server_address.as_deref(), Some(ok));
        }
        for bad in ["tel:+1234", "sip:[]:5060", "sip::5060", "sip:a b"] {
            let (_, key, _) = invalid_at(&format!("server_address = {bad:?}"));
            assert_eq!(key, "server_address", "{bad}");
        }
    }

    #[test]
    fn listen_addresses_parse_and_display_in_the_same_form() {
        for text in [
            "udp:127.0.0.1:5060",
            "tcp:[::1]:5060",
            "udp:[2001:db8::7]:0",
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let addr: ListenAddr = "TCP:0.0.0.0:5060".parse().unwrap();
        assert_eq!(
            addr,
            ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 5060)))
        );
        assert_eq!(addr.addr().port(), 5060);
        for bad in [
            "udp:::1:5060",
            "udp:127.0.0.1",
            "127.0.0.1:5060",
            "sctp:1.2.3.4:5",
            "",
        ] {
            let e = bad.parse::<ListenAddr>().unwrap_err();
            assert_eq!(e.text, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn toml_syntax_errors_carry_the_line() {
        let e = err("clean_period = 10\nmax_expires = \n");
        assert!(
            matches!(e, ConfigError::Syntax { line: Some(2), .. }),
            "{e}"
        );
        let e = err("clean_period = 10\nclean_period = 11\n");
        assert!(
            matches!(e, ConfigError::Syntax { line: Some(2), .. }),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("<config>:2: invalid TOML: "),
            "{e}"
        );
    }

    #[test]
    fn load_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "max_expires = 100\n\n\n\n\n\nmax_expires_publish = 5\n",
        )
        .unwrap();
        let e = Config::load(&path).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:7: max_expires_publish: ", path.display())),
            "{e}"
        );
        std::fs::write(&path, "clean_period = 7\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().clean_period, 7);
        let missing = dir.path().join("missing.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().starts_with(&missing.display().to_string()));
    }

    #[test]
    fn the_template_names_every_key_and_loads_back_to_its_config() {
        let packaged = Config {
            db: PathBuf::from("/var/lib/presenced"),
            ..Config::default()
        };
        for cfg in [Config::default(), packaged.clone()] {
            let text = cfg.template();
            assert_eq!(Config::from_toml_str(&text).unwrap(), cfg, "{text}");
            for key in Key::ALL {
                assert!(
                    text.lines()
                        .any(|l| l.starts_with(&format!("#{} = ", key.name()))
                            || l.starts_with(&format!("{} = ", key.name()))
                            || l.starts_with(&format!("# {} is unset", key.name()))),
                    "{} missing in\n{text}",
                    key.name()
                );
            }
            // Uncommenting a default changes nothing.
            let live = text
                .replace("\n#", "\n")
                .lines()
                .filter(|l| !l.starts_with(' ') && !l.starts_with("# ") && l.contains(" = "))
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(Config::from_toml_str(&live).unwrap(), cfg, "{live}");
        }
        assert!(
            packaged
                .template()
                .contains("\ndb = \"/var/lib/presenced\"\n")
        );
    }

    #[test]
    fn the_packaged_configuration_is_the_template() {
        let packaged = Config {
            db: PathBuf::from("/var/lib/presenced"),
            ..Config::default()
        };
        assert!(
            include_str!("../packaging/presenced.toml") == packaged.template(),
            "packaging/presenced.toml is out of date; regenerate it with \
             presenced default-config --db /var/lib/presenced > packaging/presenced.toml"
        );
    }

    #[test]
    fn markdown_is_made_plain_and_wrapped() {
        assert_eq!(
            plain("see [the README](../README.md#limits) and `x`"),
            "see the README and x"
        );
        assert_eq!(plain("a [b c"), "a [b c");
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
    }

    #[test]
    fn configuration_doc_lists_every_key_and_alias() {
        let doc = include_str!("../docs/configuration.md");
        for key in Key::ALL {
            assert!(
                doc.contains(&format!("| `{}` |", key.name())),
                "{} has no row in docs/configuration.md",
                key.name()
            );
        }
        for (alias, _) in ALIASES {
            assert!(doc.contains(&format!("`{alias}`")), "{alias} undocumented");
        }
    }

    #[test]
    fn effective_config_round_trips_and_names_every_key() {
        for cfg in [Config::default(), Config::from_toml_str(EVERY_KEY).unwrap()] {
            let text = cfg.to_toml_string();
            assert_eq!(Config::from_toml_str(&text).unwrap(), cfg, "{text}");
            for key in Key::ALL {
                assert!(
                    text.contains(key.name()),
                    "{} missing in\n{text}",
                    key.name()
                );
            }
        }
    }

    #[test]
    fn strings_with_quotes_and_backslashes_survive_the_round_trip() {
        let cfg = Config {
            db: PathBuf::from("C:\\data\\\"pres\" 'db'\u{e9}"),
            domains: vec!["\u{e9}xample.org".into()],
            control_socket: Some(PathBuf::from("/tmp/a'b\"c.sock")),
            ..Config::default()
        };
        assert_eq!(Config::from_toml_str(&cfg.to_toml_string()).unwrap(), cfg);
    }

    #[test]
    fn a_field_is_known_to_the_key_check_and_the_printer_through_serde_alone() {
        let every = Config::from_toml_str(EVERY_KEY).unwrap();
        // Serialize's view of the struct, independent of the Deserialize-derived schema:
        // both list the same fields, so a new field reaches Key::ALL with no more code.
        let serialized: std::collections::BTreeSet<String> = toml::Table::try_from(&every)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let known: std::collections::BTreeSet<String> =
            Key::ALL.iter().map(|k| k.name().to_owned()).collect();
        assert_eq!(known, serialized);
        assert_eq!(Key::ALL.len(), serialized.len(), "a key listed twice");

        // Every field is printed once, in struct order, and every printed key (and each
        // of its aliases) passes the unknown-key check.
        let text = every.to_toml_string();
        let printed: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(" = "))
            .collect();
        let names: Vec<&str> = printed.iter().map(|(k, _)| *k).collect();
        let fields: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, fields);
        for (key, value) in &printed {
            assert_eq!(
                lookup(key).map(Key::name),
                Some(*key),
                "{key} printed but not canonical"
            );
            let aliases = ALIASES.iter().filter(|(_, k)| k.name() == *key);
            for name in std::iter::once(*key).chain(aliases.map(|(a, _)| *a)) {
                let e = Config::from_toml_str(&format!("{name} = {value}")).err();
                assert!(
                    !matches!(e, Some(ConfigError::UnknownKey { .. })),
                    "{name} refused: {e:?}"
                );
            }
        }
        // Unset options are named in comments.
        let text = Config::default().to_toml_string();
        for key in Key::ALL {
            let set = format!("{} = ", key.name());
            let unset = format!("# {} unset", key.name());
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&set) || l.starts_with(&unset)),
                "{} missing in\n{text}",
                key.name()
            );
        }
    }

    #[test]
    fn a_value_toml_cannot_hold_spoils_only_its_own_line() {
        let cfg = Config {
            cache_capacity: u64::MAX,
            ..Config::default()
        };
        let text = cfg.to_toml_string();
        assert!(
            text.contains("\n# cache_capacity = 18446744073709551615 does not fit in TOML\n"),
            "{text}"
        );
        assert!(text.contains("\nclean_period = 100\n"), "{text}");
    }

    #[test]
    fn a_date_time_is_not_taken_for_a_string() {
        let (line, key, reason) = invalid_at("db = 1979-05-27");
        assert_eq!((line, key.as_str()), (1, "db"));
        assert_eq!(reason, "expected a string, got a date-time");
    }

    #[test]
    fn the_second_max_expires_alias_is_checked_too() {
        let (line, key, reason) =
            invalid_at("max_expires_subscribe = 100\nmax_expires_publish = 5000000000");
        assert_eq!((line, key.as_str()), (2, "max_expires_publish"));
        assert!(reason.contains("out of range"), "{reason}");
        let e = err("max_expires_subscribe = 100\nmax_expires_publish = 50\nmax_expires = 9");
        assert_eq!((e.line(), e.key()), (Some(3), Some("max_expires")));
    }

    #[test]
    fn numbers_toml_cannot_hold_are_syntax_errors_in_file_order() {
        let e = err("sync = 99999999999999999999\nclean_period = 1e400\n");
        assert!(
            matches!(e, ConfigError::Syntax { line: Some(1), .. }),
            "{e}"
        );
    }

    fn arb_config() -> impl Strategy<Value = Config> {
        let listen = prop::collection::vec(
            (any::<bool>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(tcp, ip, port)| {
                let a = SocketAddr::from((ip, port));
                if tcp {
                    ListenAddr::Tcp(a)
                } else {
                    ListenAddr::Udp(a)
                }
            }),
            1..4,
        )
        .prop_filter("distinct", |v| {
            v.iter().enumerate().all(|(i, a)| !v[..i].contains(a))
        });
        let expires =
            (1u32.., 0u32.., any::<u32>(), any::<u32>()).prop_map(|(max, min, def, off)| {
                let min = min % max.saturating_add(1);
                let lo = min.max(1);
                let def = lo + def % (max - lo + 1);
                (max, min, def, off % max)
            });
        let timers = (
            1..=MAX_TIMER_MS,
            1..=MAX_TIMER_MS,
            1..=MAX_TIMER_MS,
            0..=MAX_TIMER_MS,
        );
        let sizes = (
            MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE,
            any::<u64>(),
            1u64..1 << 40,
            1..=MAX_SECS,
        );
        let flags = prop::array::uniform10(any::<bool>());
        let text = (
            "[a-z0-9./_\\\\\"' -]{1,20}",
            "[a-z0-9.-]{1,12}",
            "[a-zA-Z0-9*~]{0,8}",
        );
        (
            listen,
            expires,
            timers,
            sizes,
            flags,
            text,
            any::<bool>(),
            1..=MAX_SECS,
        )
            .prop_map(
                |(
                    listen,
                    (max, min, def, off),
                    (t1, t2, t4, grace),
                    (msg, body, cache, idle),
                    f,
                    (db, dom, tag),
                    always,
                    clean,
                )| {
                    Config {
                        listen,
                        db: PathBuf::from(db.clone()),
                        domains: vec![dom.clone()],
                        clean_period: clean,
                        max_expires: max,
                        min_expires: min,
                        default_expires: def,
                        expires_offset: off,
                        to_tag_pref: tag,
                        server_address: f[0].then(|| format!("sip:{dom}")),
                        force_active: f[1],
                        end_sub_on_timeout: f[2],
                        replace_stale_subscriptions: f[3],
                        notify_closed_when_empty: f[4],
                        pidf_manipulation: f[5],
                        mwi_owner_only: f[7],
                        rls: f[9],
                        rls_batch_ms: clean % 60_001,
                        rls_backend_server: f[2]
                            .then(|| format!("sip:10.0.0.{}:5060", clean % 256)),
                        rls_request_lists: f[3],
                        authorize_messages: always,
                        integrated_xcap_server: true,
                        xcap_server: if f[6] { vec![dom] } else { Vec::new() },
                        xcap_listen: SocketAddr::from(([127, 0, 0, 1], (clean % 65_536) as u16)),
                        xcap_tls: f[8],
                        xcap_max_document_size: 256 + (cache % 65_536) as usize,
                        periodical_query: always,
                        query_period: clean,
                        watchers_retention_days: clean % 36_500,
                        sync: if always {
                            SyncMode::Always
                        } else {
                            SyncMode::Periodic
                        },
                        sync_period_ms: t4,
                        cache_capacity: cache,
                        max_message_size: msg as usize,
                        max_body_size: (body % (msg + 1)) as usize,
                        max_body_size_per_event: if f[8] {
                            BTreeMap::from([(
                                "message-summary".to_owned(),
                                (body % (msg + 1)) as usize / 2,
                            )])
                        } else {
                            BTreeMap::new()
                        },
                        max_publications_per_presentity: (clean % 64 + 1) as usize,
                        max_subscriptions_per_presentity: clean,
                        max_subscriptions_per_watcher: idle,
                        max_aggregate_size: (256 + cache % 100_000) as usize,
                        max_connections: idle as usize,
                        tcp_idle_timeout: idle,
                        max_connections_per_source: (idle % 100 + 1) as usize,
                        tcp_message_timeout: clean,
                        tls_certificate: f[8].then(|| PathBuf::from(format!("{db}.crt"))),
                        tls_private_key: f[8].then(|| PathBuf::from(format!("{db}.key"))),
                        tls_ca_list: f[9].then(|| PathBuf::from(format!("{db}.ca"))),
                        tls_verify_client: f[9],
                        tls_handshake_timeout_ms: t1,
                        tls_max_handshakes: (idle % 1000 + 1) as usize,
                        ws_origins: if f[3] {
                            vec![format!("https://h{clean}.example")]
                        } else {
                            Vec::new()
                        },
                        ws_ping_interval: clean,
                        connection_grace_ms: grace,
                        max_requests_per_source: (cache % 10_000) as u32,
                        timer_t1_ms: t1.min(t2),
                        timer_t2_ms: t1.max(t2),
                        timer_t4_ms: t4,
                        shutdown_grace_ms: grace,
                        auth: f[6].then_some(AuthMode::Digest),
                        auth_realm: f[7].then(|| format!("realm {clean}")),
                        auth_as_proxy: f[5],
                        auth_algorithms: if f[4] {
                            vec![Algorithm::Md5]
                        } else {
                            vec![Algorithm::Sha256, Algorithm::Md5]
                        },
                        nonce_expire: clean,
                        trusted_proxies: vec![
                            crate::auth::parse_net(&format!("10.{}.0.0/16", clean % 256)).unwrap(),
                        ],
                        publish_on_behalf: vec![Delegate::Net(
                            crate::auth::parse_net(&format!("10.0.{}.1", clean % 256)).unwrap(),
                        )],
                        control_socket: f[6].then(|| PathBuf::from(db)),
                        metrics_listen: f[5]
                            .then(|| SocketAddr::from(([127, 0, 0, 1], (idle % 65_536) as u16))),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_valid_config_round_trips(cfg in arb_config()) {
            let text = cfg.to_toml_string();
            prop_assert_eq!(Config::from_toml_str(&text).unwrap(), cfg);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = Config::from_toml_str(&text).map_err(|e| e.to_string());
        }

        #[test]
        fn arbitrary_values_for_known_keys_never_panic(
            key in prop::sample::select(
                Key::ALL.iter().map(|k| k.name()).chain(ALIASES.iter().map(|a| a.0)).collect::<Vec<_>>()
            ),
            value in prop_oneof![
                any::<i64>().prop_map(|i| i.to_string()),
                any::<f64>().prop_map(|f| format!("{f:?}")),
                "\\PC{0,30}".prop_map(|s| format!("{s:?}")),
                Just("true".to_owned()),
                Just("[]".to_owned()),
                Just("[1, \"a\"]".to_owned()),
                Just("{ a = 1 }".to_owned()),
                Just("1979-05-27".to_owned()),
            ],
        ) {
            let text = format!("{key} = {value}\n");
            if let Err(e) = Config::from_toml_str(&text) {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("<config>:"), "{}", shown);
            }
        }
    }
}
