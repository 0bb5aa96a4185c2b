//! The daemon's settings: one typed `Config`, read from an optional TOML file whose keys
//! follow the OpenSIPS presence/tm/core parameter names, with every value defaulted so
//! that no file is needed. Loading checks every key and value up front and names the
//! file, line and key of the first mistake, so a typo never silently becomes a default.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use toml::{Spanned, Value};

/// Effective configuration of one presenced instance.
///
/// Every field has a default (see [`Config::default`]); `docs/configuration.md` lists the
/// keys, their OpenSIPS/OpenSER aliases and their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Sockets to listen on. Default: `udp:127.0.0.1:5060` and `tcp:127.0.0.1:5060`.
    pub listen: Vec<ListenAddr>,
    /// sled database directory. Default `presenced.db`, relative to the working directory.
    pub db: PathBuf,
    /// Domains this server is authoritative for. Default empty: any domain is served.
    pub domains: Vec<String>,
    /// Seconds between sweeps of expired publications and subscriptions. Default 100.
    pub clean_period: u64,
    /// Largest Expires granted to PUBLISH and SUBSCRIBE, in seconds. Default 3600.
    pub max_expires: u32,
    /// Smallest non-zero Expires accepted (shorter gets 423); 0 = no minimum. Default 0.
    pub min_expires: u32,
    /// Expires used when a SUBSCRIBE/PUBLISH has none, in seconds. Default 3600 (or the
    /// nearest value inside `min_expires..=max_expires` when those exclude 3600).
    pub default_expires: u32,
    /// Seconds subtracted from the Expires in a PUBLISH 200 so clients refresh before the
    /// publication lapses. Default 0.
    pub expires_offset: u32,
    /// Prefix of the To-tags generated for SUBSCRIBE dialogs. Default `"10"`.
    pub to_tag_pref: String,
    /// SIP URI put in Contact of our SUBSCRIBE/PUBLISH 200s and NOTIFYs. Default `None`:
    /// the transport's local address is used.
    pub server_address: Option<String>,
    /// Accept every subscription as active without consulting pres-rules. Default true.
    pub force_active: bool,
    /// End a subscription when its NOTIFY times out (408), not only on 481. Default true.
    pub end_sub_on_timeout: bool,
    /// A new SUBSCRIBE from the same watcher contact replaces its stale subscription.
    /// Default true.
    pub replace_stale_subscriptions: bool,
    /// With no publication left, NOTIFY a "closed" PIDF (true) or no body (false).
    /// Default true.
    pub notify_closed_when_empty: bool,
    /// Aggregate XCAP pidf-manipulation documents into presence (RFC 4827). Default false.
    pub pidf_manipulation: bool,
    /// Only the account owner may subscribe to message-summary (RFC 3842 §6); others get
    /// 403. Default true.
    pub mwi_owner_only: bool,
    /// XCAP documents arrive through presenced's own XCAP server (true) or are fetched
    /// from `xcap_server` (false). Default true.
    pub integrated_xcap_server: bool,
    /// Trusted external XCAP server roots to fetch documents from. Default empty.
    pub xcap_server: Vec<String>,
    /// Address of the built-in XCAP server (started when `integrated_xcap_server` is on
    /// and `force_active` off or `pidf_manipulation` on). Default `127.0.0.1:5080`:
    /// loopback only until the XCAP server authenticates its clients.
    pub xcap_listen: SocketAddr,
    /// Largest XCAP document accepted or fetched, in bytes. Default 65536.
    pub xcap_max_document_size: usize,
    /// Re-fetch documents from `xcap_server` periodically (xcap_client). Default true.
    pub periodical_query: bool,
    /// Seconds between re-fetches when `periodical_query` is on. Default 100.
    pub query_period: u64,
    /// Days that pending, waiting and terminated watchers records are kept; 0 keeps
    /// them for ever. Default 3.
    pub watchers_retention_days: u64,
    /// When the database is flushed to disk. Default [`SyncMode::Periodic`].
    pub sync: SyncMode,
    /// Milliseconds between flushes in periodic mode. Default 500.
    pub sync_period_ms: u64,
    /// sled page cache size in bytes. Default 8 MiB.
    pub cache_capacity: u64,
    /// Largest SIP message accepted, in bytes. Default 65535.
    pub max_message_size: usize,
    /// Largest SIP body accepted, in bytes. Default 32768.
    pub max_body_size: usize,
    /// Most TCP connections held open at once. Default 1024.
    pub max_connections: usize,
    /// Seconds after which an idle TCP connection is closed. Default 300.
    pub tcp_idle_timeout: u64,
    /// RFC 3261 timer T1 (round-trip estimate), milliseconds. Default 500.
    pub timer_t1_ms: u64,
    /// RFC 3261 timer T2 (retransmit interval cap), milliseconds. Default 4000.
    pub timer_t2_ms: u64,
    /// RFC 3261 timer T4 (network lifetime of a message), milliseconds. Default 5000.
    pub timer_t4_ms: u64,
    /// Milliseconds given to in-flight work (final NOTIFYs, flush) at shutdown. Default 2000.
    pub shutdown_grace_ms: u64,
    /// Unix socket of the control channel. Default `None`: the caller picks
    /// `<db>/control.sock`.
    pub control_socket: Option<PathBuf>,
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
            integrated_xcap_server: true,
            xcap_server: Vec::new(),
            xcap_listen: SocketAddr::from(([127, 0, 0, 1], 5080)),
            xcap_max_document_size: 65536,
            periodical_query: true,
            query_period: 100,
            watchers_retention_days: 3,
            sync: SyncMode::Periodic,
            sync_period_ms: 500,
            cache_capacity: 8 * 1024 * 1024,
            max_message_size: 65535,
            max_body_size: 32768,
            max_connections: 1024,
            tcp_idle_timeout: 300,
            timer_t1_ms: 500,
            timer_t2_ms: 4000,
            timer_t4_ms: 5000,
            shutdown_grace_ms: 2000,
            control_socket: None,
        }
    }
}

const DEFAULT_EXPIRES: u32 = 3600;
/// A SIP request with its mandatory headers does not fit in less.
const MIN_MESSAGE_SIZE: u64 = 1024;
const MAX_MESSAGE_SIZE: u64 = 16 * 1024 * 1024;
/// Timers beyond an hour are typos; capping them also keeps 64*T1 far from overflow.
const MAX_TIMER_MS: u64 = 3_600_000;
/// A year: longer periods are typos, and the cap keeps `Instant + period` from overflowing.
const MAX_SECS: u64 = 365 * 24 * 3600;
/// The largest integer TOML can carry.
const TOML_INT_MAX: u64 = i64::MAX.unsigned_abs();
const MAX_TO_TAG_PREF: usize = 32;
/// File name used in errors when the text did not come from a file.
const NO_FILE: &str = "<config>";

/// A socket to listen on, written `udp:HOST:PORT` or `tcp:HOST:PORT` (IPv6 hosts in
/// brackets, `udp:[::1]:5060`), the same form as the OpenSIPS `listen` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A UDP socket.
    Udp(SocketAddr),
    /// A TCP listening socket.
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// The IP address and port, whatever the transport.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ListenAddr::Udp(a) | ListenAddr::Tcp(a) => *a,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Udp(a) => write!(f, "udp:{a}"),
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
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
            .ok_or_else(|| err("expected udp:HOST:PORT or tcp:HOST:PORT"))?;
        let addr: SocketAddr = rest
            .parse()
            .map_err(|_| err("HOST:PORT must be an IP address and a port, IPv6 in brackets"))?;
        if proto.eq_ignore_ascii_case("udp") {
            Ok(ListenAddr::Udp(addr))
        } else if proto.eq_ignore_ascii_case("tcp") {
            Ok(ListenAddr::Tcp(addr))
        } else {
            Err(err("the transport must be udp or tcp"))
        }
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

/// Every setting; `Key::name` is its canonical file key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Listen,
    Db,
    Domains,
    CleanPeriod,
    MaxExpires,
    MinExpires,
    DefaultExpires,
    ExpiresOffset,
    ToTagPref,
    ServerAddress,
    ForceActive,
    EndSubOnTimeout,
    ReplaceStaleSubscriptions,
    NotifyClosedWhenEmpty,
    PidfManipulation,
    MwiOwnerOnly,
    IntegratedXcapServer,
    XcapServer,
    XcapListen,
    XcapMaxDocumentSize,
    PeriodicalQuery,
    QueryPeriod,
    WatchersRetentionDays,
    Sync,
    SyncPeriodMs,
    CacheCapacity,
    MaxMessageSize,
    MaxBodySize,
    MaxConnections,
    TcpIdleTimeout,
    TimerT1Ms,
    TimerT2Ms,
    TimerT4Ms,
    ShutdownGraceMs,
    ControlSocket,
}

impl Key {
    const ALL: [Key; 35] = [
        Key::Listen,
        Key::Db,
        Key::Domains,
        Key::CleanPeriod,
        Key::MaxExpires,
        Key::MinExpires,
        Key::DefaultExpires,
        Key::ExpiresOffset,
        Key::ToTagPref,
        Key::ServerAddress,
        Key::ForceActive,
        Key::EndSubOnTimeout,
        Key::ReplaceStaleSubscriptions,
        Key::NotifyClosedWhenEmpty,
        Key::PidfManipulation,
        Key::MwiOwnerOnly,
        Key::IntegratedXcapServer,
        Key::XcapServer,
        Key::XcapListen,
        Key::XcapMaxDocumentSize,
        Key::PeriodicalQuery,
        Key::QueryPeriod,
        Key::WatchersRetentionDays,
        Key::Sync,
        Key::SyncPeriodMs,
        Key::CacheCapacity,
        Key::MaxMessageSize,
        Key::MaxBodySize,
        Key::MaxConnections,
        Key::TcpIdleTimeout,
        Key::TimerT1Ms,
        Key::TimerT2Ms,
        Key::TimerT4Ms,
        Key::ShutdownGraceMs,
        Key::ControlSocket,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::Listen => "listen",
            Key::Db => "db",
            Key::Domains => "domains",
            Key::CleanPeriod => "clean_period",
            Key::MaxExpires => "max_expires",
            Key::MinExpires => "min_expires",
            Key::DefaultExpires => "default_expires",
            Key::ExpiresOffset => "expires_offset",
            Key::ToTagPref => "to_tag_pref",
            Key::ServerAddress => "server_address",
            Key::ForceActive => "force_active",
            Key::EndSubOnTimeout => "end_sub_on_timeout",
            Key::ReplaceStaleSubscriptions => "replace_stale_subscriptions",
            Key::NotifyClosedWhenEmpty => "notify_closed_when_empty",
            Key::PidfManipulation => "pidf_manipulation",
            Key::MwiOwnerOnly => "mwi_owner_only",
            Key::IntegratedXcapServer => "integrated_xcap_server",
            Key::XcapServer => "xcap_server",
            Key::XcapListen => "xcap_listen",
            Key::XcapMaxDocumentSize => "xcap_max_document_size",
            Key::PeriodicalQuery => "periodical_query",
            Key::QueryPeriod => "query_period",
            Key::WatchersRetentionDays => "watchers_retention_days",
            Key::Sync => "sync",
            Key::SyncPeriodMs => "sync_period_ms",
            Key::CacheCapacity => "cache_capacity",
            Key::MaxMessageSize => "max_message_size",
            Key::MaxBodySize => "max_body_size",
            Key::MaxConnections => "max_connections",
            Key::TcpIdleTimeout => "tcp_idle_timeout",
            Key::TimerT1Ms => "timer_t1_ms",
            Key::TimerT2Ms => "timer_t2_ms",
            Key::TimerT4Ms => "timer_t4_ms",
            Key::ShutdownGraceMs => "shutdown_grace_ms",
            Key::ControlSocket => "control_socket",
        }
    }
}

/// Names the same setting carried in OpenSER/OpenSIPS/Kamailio, mapped to ours.
/// Units agree in every pair (seconds for expires/lifetimes, milliseconds for T1/T2).
const ALIASES: &[(&str, Key)] = &[
    // OpenSIPS presence split OpenSER's max_expires in two; we keep one limit.
    ("max_expires_subscribe", Key::MaxExpires),
    ("max_expires_publish", Key::MaxExpires),
    // OpenSER/Kamailio presence: drop the subscription when its NOTIFY gets 408.
    ("timeout_rm_subs", Key::EndSubOnTimeout),
    // OpenSIPS presence: send an offline/closed document when nothing is published.
    ("notify_offline_body", Key::NotifyClosedWhenEmpty),
    // OpenSER/OpenSIPS core TCP parameters.
    ("tcp_connection_lifetime", Key::TcpIdleTimeout),
    ("tcp_max_connections", Key::MaxConnections),
    // OpenSER/OpenSIPS tm module retransmission timers.
    ("T1_timer", Key::TimerT1Ms),
    ("T2_timer", Key::TimerT2Ms),
    // OpenSIPS presence: days to keep pending/waiting watchers records.
    ("waiting_subs_daysno", Key::WatchersRetentionDays),
];

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

/// Where a setting was given: the key as written and its line.
struct Given {
    name: String,
    line: usize,
}

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
        let table: BTreeMap<Spanned<String>, Spanned<Value>> =
            toml::from_str(text).map_err(|e| ConfigError::Syntax {
                file: file.clone(),
                line: e.span().map(|s| line_at(text, s.start)),
                message: e.message().trim_end().to_owned(),
            })?;
        // Report the first mistake in file order, not key order.
        let mut entries: Vec<_> = table.into_iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);

        let mut cfg = Config::default();
        let mut given: HashMap<Key, Given> = HashMap::new();
        for (name, value) in &entries {
            let line = line_at(text, name.span().start);
            let name = name.get_ref();
            let invalid = |reason: String| ConfigError::InvalidValue {
                file: file.clone(),
                line,
                key: name.clone(),
                reason,
            };
            let Some(key) = lookup(name) else {
                return Err(ConfigError::UnknownKey {
                    file: file.clone(),
                    line,
                    key: name.clone(),
                    suggestion: suggest(name),
                });
            };
            if let Some(first) = given.get(&key) {
                let both_aliases = key == Key::MaxExpires
                    && first.name != key.name()
                    && name.as_str() != key.name();
                if !both_aliases {
                    return Err(ConfigError::Conflict {
                        file: file.clone(),
                        line,
                        key: name.clone(),
                        other: first.name.clone(),
                        other_line: first.line,
                    });
                }
                // max_expires_subscribe and max_expires_publish both set: one limit
                // serves both methods, so the stricter one wins.
                let limit =
                    int_in::<u32>(value.get_ref(), 1, u64::from(u32::MAX)).map_err(invalid)?;
                cfg.max_expires = cfg.max_expires.min(limit);
                continue;
            }
            cfg.apply(key, value.get_ref()).map_err(invalid)?;
            given.insert(
                key,
                Given {
                    name: name.clone(),
                    line,
                },
            );
        }
        cfg.check_together(&given, &file)?;
        Ok(cfg)
    }

    /// Sets one field from its file value; the error is the reason only.
    fn apply(&mut self, key: Key, v: &Value) -> Result<(), String> {
        match key {
            Key::Listen => {
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
                self.listen = out;
            }
            Key::Db => self.db = PathBuf::from(non_empty(string(v)?)?),
            Key::Domains => {
                let list = string_list(v)?;
                for d in &list {
                    check_domain(d)?;
                }
                self.domains = list;
            }
            Key::CleanPeriod => self.clean_period = int_in(v, 1, MAX_SECS)?,
            Key::MaxExpires => self.max_expires = int_in(v, 1, u64::from(u32::MAX))?,
            Key::MinExpires => self.min_expires = int_in(v, 0, u64::from(u32::MAX))?,
            Key::DefaultExpires => self.default_expires = int_in(v, 1, u64::from(u32::MAX))?,
            Key::ExpiresOffset => self.expires_offset = int_in(v, 0, u64::from(u32::MAX))?,
            Key::ToTagPref => {
                let s = string(v)?;
                check_to_tag_pref(s)?;
                self.to_tag_pref = s.to_owned();
            }
            Key::ServerAddress => {
                let s = string(v)?;
                check_sip_uri(s)?;
                self.server_address = Some(s.to_owned());
            }
            Key::ForceActive => self.force_active = flag(v)?,
            Key::EndSubOnTimeout => self.end_sub_on_timeout = flag(v)?,
            Key::ReplaceStaleSubscriptions => self.replace_stale_subscriptions = flag(v)?,
            Key::NotifyClosedWhenEmpty => self.notify_closed_when_empty = flag(v)?,
            Key::PidfManipulation => self.pidf_manipulation = flag(v)?,
            Key::MwiOwnerOnly => self.mwi_owner_only = flag(v)?,
            Key::IntegratedXcapServer => self.integrated_xcap_server = flag(v)?,
            Key::XcapServer => {
                let list = string_list(v)?;
                for s in &list {
                    check_xcap_root(s)?;
                }
                self.xcap_server = list;
            }
            Key::XcapListen => {
                self.xcap_listen = string(v)?
                    .parse()
                    .map_err(|_| "expected HOST:PORT with an IP address".to_owned())?
            }
            Key::XcapMaxDocumentSize => {
                self.xcap_max_document_size = int_in(v, 256, MAX_MESSAGE_SIZE)?
            }
            Key::PeriodicalQuery => self.periodical_query = flag(v)?,
            Key::QueryPeriod => self.query_period = int_in(v, 1, MAX_SECS)?,
            Key::WatchersRetentionDays => self.watchers_retention_days = int_in(v, 0, 36_500)?,
            Key::Sync => self.sync = string(v)?.parse()?,
            Key::SyncPeriodMs => self.sync_period_ms = int_in(v, 1, MAX_TIMER_MS)?,
            Key::CacheCapacity => self.cache_capacity = int_in(v, 1, TOML_INT_MAX)?,
            Key::MaxMessageSize => {
                self.max_message_size = int_in(v, MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE)?
            }
            Key::MaxBodySize => self.max_body_size = int_in(v, 0, MAX_MESSAGE_SIZE)?,
            Key::MaxConnections => self.max_connections = int_in(v, 1, TOML_INT_MAX)?,
            Key::TcpIdleTimeout => self.tcp_idle_timeout = int_in(v, 1, MAX_SECS)?,
            Key::TimerT1Ms => self.timer_t1_ms = int_in(v, 1, MAX_TIMER_MS)?,
            Key::TimerT2Ms => self.timer_t2_ms = int_in(v, 1, MAX_TIMER_MS)?,
            Key::TimerT4Ms => self.timer_t4_ms = int_in(v, 1, MAX_TIMER_MS)?,
            Key::ShutdownGraceMs => self.shutdown_grace_ms = int_in(v, 0, MAX_TIMER_MS)?,
            Key::ControlSocket => self.control_socket = Some(PathBuf::from(non_empty(string(v)?)?)),
        }
        Ok(())
    }

    /// Checks between settings, reported on the line of the key that was given (the
    /// first one when both were), and fills `default_expires` when it was left out.
    fn check_together(
        &mut self,
        given: &HashMap<Key, Given>,
        file: &Path,
    ) -> Result<(), ConfigError> {
        let fail = |keys: &[Key], reason: String| {
            let at = keys.iter().find_map(|k| given.get(k));
            ConfigError::InvalidValue {
                file: file.to_path_buf(),
                line: at.map_or(1, |g| g.line),
                key: at.map_or_else(
                    || keys.first().map_or("", |k| k.name()).to_owned(),
                    |g| g.name.clone(),
                ),
                reason,
            }
        };
        if self.min_expires > self.max_expires {
            return Err(fail(
                &[Key::MinExpires, Key::MaxExpires],
                format!(
                    "min_expires ({}) is larger than max_expires ({})",
                    self.min_expires, self.max_expires
                ),
            ));
        }
        if given.contains_key(&Key::DefaultExpires) {
            if self.default_expires > self.max_expires || self.default_expires < self.min_expires {
                return Err(fail(
                    &[Key::DefaultExpires],
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
                &[Key::ExpiresOffset, Key::MaxExpires],
                format!(
                    "expires_offset ({}) must be smaller than max_expires ({})",
                    self.expires_offset, self.max_expires
                ),
            ));
        }
        // RFC 3261 §17.1.2.2: T2 caps an interval that starts at T1.
        if self.timer_t2_ms < self.timer_t1_ms {
            return Err(fail(
                &[Key::TimerT2Ms, Key::TimerT1Ms],
                format!(
                    "timer_t2_ms ({}) is smaller than timer_t1_ms ({})",
                    self.timer_t2_ms, self.timer_t1_ms
                ),
            ));
        }
        if self.max_body_size > self.max_message_size {
            return Err(fail(
                &[Key::MaxBodySize, Key::MaxMessageSize],
                format!(
                    "max_body_size ({}) is larger than max_message_size ({})",
                    self.max_body_size, self.max_message_size
                ),
            ));
        }
        // presence_xml: with neither force_active nor a local XCAP server there is no
        // source of authorization rules.
        if !self.force_active && !self.integrated_xcap_server && self.xcap_server.is_empty() {
            return Err(fail(
                &[Key::IntegratedXcapServer, Key::ForceActive],
                "without force_active and integrated_xcap_server, xcap_server must name at \
                 least one XCAP server"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, every setting under its canonical name.
    /// `from_toml_str` reads it back to an equal `Config`. Unset optional settings are
    /// written as comments. Paths that are not UTF-8 are written lossily.
    pub fn to_toml_string(&self) -> String {
        let str_v = |s: &str| Value::String(s.to_owned()).to_string();
        let list = |items: Vec<String>| {
            Value::Array(items.into_iter().map(Value::String).collect()).to_string()
        };
        let path = |p: &Path| str_v(&p.to_string_lossy());
        let mut out = String::from("# presenced effective configuration\n");
        let mut line = |key: Key, value: String| {
            out.push_str(key.name());
            out.push_str(" = ");
            out.push_str(&value);
            out.push('\n');
        };
        line(
            Key::Listen,
            list(self.listen.iter().map(ToString::to_string).collect()),
        );
        line(Key::Db, path(&self.db));
        line(Key::Domains, list(self.domains.clone()));
        line(Key::CleanPeriod, self.clean_period.to_string());
        line(Key::MaxExpires, self.max_expires.to_string());
        line(Key::MinExpires, self.min_expires.to_string());
        line(Key::DefaultExpires, self.default_expires.to_string());
        line(Key::ExpiresOffset, self.expires_offset.to_string());
        line(Key::ToTagPref, str_v(&self.to_tag_pref));
        if let Some(s) = &self.server_address {
            line(Key::ServerAddress, str_v(s));
        }
        line(Key::ForceActive, self.force_active.to_string());
        line(Key::EndSubOnTimeout, self.end_sub_on_timeout.to_string());
        line(
            Key::ReplaceStaleSubscriptions,
            self.replace_stale_subscriptions.to_string(),
        );
        line(
            Key::NotifyClosedWhenEmpty,
            self.notify_closed_when_empty.to_string(),
        );
        line(Key::PidfManipulation, self.pidf_manipulation.to_string());
        line(Key::MwiOwnerOnly, self.mwi_owner_only.to_string());
        line(
            Key::IntegratedXcapServer,
            self.integrated_xcap_server.to_string(),
        );
        line(Key::XcapServer, list(self.xcap_server.clone()));
        line(Key::XcapListen, str_v(&self.xcap_listen.to_string()));
        line(
            Key::XcapMaxDocumentSize,
            self.xcap_max_document_size.to_string(),
        );
        line(Key::PeriodicalQuery, self.periodical_query.to_string());
        line(Key::QueryPeriod, self.query_period.to_string());
        line(
            Key::WatchersRetentionDays,
            self.watchers_retention_days.to_string(),
        );
        line(Key::Sync, str_v(self.sync.as_str()));
        line(Key::SyncPeriodMs, self.sync_period_ms.to_string());
        line(Key::CacheCapacity, self.cache_capacity.to_string());
        line(Key::MaxMessageSize, self.max_message_size.to_string());
        line(Key::MaxBodySize, self.max_body_size.to_string());
        line(Key::MaxConnections, self.max_connections.to_string());
        line(Key::TcpIdleTimeout, self.tcp_idle_timeout.to_string());
        line(Key::TimerT1Ms, self.timer_t1_ms.to_string());
        line(Key::TimerT2Ms, self.timer_t2_ms.to_string());
        line(Key::TimerT4Ms, self.timer_t4_ms.to_string());
        line(Key::ShutdownGraceMs, self.shutdown_grace_ms.to_string());
        if let Some(p) = &self.control_socket {
            line(Key::ControlSocket, path(p));
        }
        if self.server_address.is_none() {
            out.push_str("# server_address unset: Contact carries the local transport address\n");
        }
        if self.control_socket.is_none() {
            out.push_str("# control_socket unset: <db>/control.sock\n");
        }
        out
    }
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
fn flag(v: &Value) -> Result<bool, String> {
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
integrated_xcap_server = false
xcap_server = ["xcap.example.org"]
xcap_listen = "[::1]:8080"
xcap_max_document_size = 4096
periodical_query = false
query_period = 30
watchers_retention_days = 7
sync = "always"
sync_period_ms = 50
cache_capacity = 1048576
max_message_size = 8192
max_body_size = 4096
max_connections = 10
tcp_idle_timeout = 60
timer_t1_ms = 250
timer_t2_ms = 2000
timer_t4_ms = 2500
shutdown_grace_ms = 0
control_socket = "/run/presenced.sock"
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
            integrated_xcap_server: false,
            xcap_server: vec!["xcap.example.org".into()],
            xcap_listen: "[::1]:8080".parse().unwrap(),
            xcap_max_document_size: 4096,
            periodical_query: false,
            query_period: 30,
            watchers_retention_days: 7,
            sync: SyncMode::Always,
            sync_period_ms: 50,
            cache_capacity: 1 << 20,
            max_message_size: 8192,
            max_body_size: 4096,
            max_connections: 10,
            tcp_idle_timeout: 60,
            timer_t1_ms: 250,
            timer_t2_ms: 2000,
            timer_t4_ms: 2500,
            shutdown_grace_ms: 0,
            control_socket: Some(PathBuf::from("/run/presenced.sock")),
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
            ("listen = [\"tls:127.0.0.1:5061\"]", "listen", "udp or tcp"),
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
        let flags = prop::array::uniform8(any::<bool>());
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
                        integrated_xcap_server: true,
                        xcap_server: if f[6] { vec![dom] } else { Vec::new() },
                        xcap_listen: SocketAddr::from(([127, 0, 0, 1], (clean % 65_536) as u16)),
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
                        max_connections: idle as usize,
                        tcp_idle_timeout: idle,
                        timer_t1_ms: t1.min(t2),
                        timer_t2_ms: t1.max(t2),
                        timer_t4_ms: t4,
                        shutdown_grace_ms: grace,
                        control_socket: f[6].then(|| PathBuf::from(db)),
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
