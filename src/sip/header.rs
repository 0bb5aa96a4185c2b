//! Header storage and typed header values (RFC 3261 §7.3, §20, §25.1).
//!
//! Headers are kept as (canonical name, raw value) in arrival order, one entry per
//! header *line*; folding is already undone. Typed values are parsed on demand by the
//! accessors below, so a malformed header that nobody asks about costs nothing and
//! a malformed header that matters becomes a typed `ParseError`.

use crate::sip::error::ParseError;
use crate::sip::message::Method;
use crate::sip::uri::{Host, Uri};

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Canonical name: compact forms expanded (`i` → `Call-ID`), well-known names in
    /// their RFC spelling, unknown names as received.
    pub name: String,
    /// The value with surrounding whitespace trimmed and folding replaced by one space.
    pub value: String,
}

/// The header section of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<Header>,
}

/// Generic `;name[=value]` parameters, in order. Names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

/// `[display-name] <uri>;params` or a bare addr-spec (RFC 3261 §20.10, §20.20, §20.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (outside the `<>`), e.g. `tag`, `expires`, `q`.
    pub params: Params,
}

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, `WS`, ... (upper-cased).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    /// `branch`, `received`, `rport` (value may be empty), `maddr`, `ttl`, ...
    pub params: Params,
}

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// Event (RFC 6665 §8.2.1): package name plus parameters such as `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Package name, lower-cased, including template suffixes (`presence.winfo`).
    pub package: String,
    pub params: Params,
}

/// Subscription-State (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    /// `active`, `pending`, `terminated` (lower-cased) or an extension value.
    pub state: String,
    pub expires: Option<u32>,
    pub reason: Option<String>,
    pub retry_after: Option<u32>,
    pub params: Params,
}

/// A media type such as `application/pidf+xml; charset=utf-8` (Content-Type, Accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// Lower-cased type, e.g. `application`.
    pub kind: String,
    /// Lower-cased subtype, e.g. `pidf+xml`.
    pub subtype: String,
    pub params: Params,
}

/// Authorization / WWW-Authenticate / Proxy-* credentials or challenges (RFC 3261 §20.7,
/// §20.44): a scheme and its comma-separated `name=value` parameters, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthValue {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}
