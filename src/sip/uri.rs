//! SIP, SIPS and other URIs (RFC 3261 §19.1, §25.1). sip/sips URIs are parsed into
//! parts; tel and any other absolute URI are kept opaque, byte for byte.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::sip::error::ParseError;

/// `sip` or `sips`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, kept as written (compare case-insensitively).
    Domain(String),
    V4(Ipv4Addr),
    /// Written as an IPv6 reference `[...]` in URIs.
    V6(Ipv6Addr),
}

/// A parsed `sip:` / `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: Scheme,
    /// The user part, with %-escapes decoded.
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// `;name=value` parameters in order; names as written, compared case-insensitively.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers.
    pub headers: Vec<(String, String)>,
}

/// Any URI that can appear in a Request-URI or name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// `tel:` URI kept opaque (the whole text including the scheme).
    Tel(String),
    /// Any other absolute URI (the whole text including the scheme).
    Other(String),
}
