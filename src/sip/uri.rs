//! SIP, SIPS and other URIs (RFC 3261 §19.1, §25.1). sip/sips URIs are parsed into
//! parts; tel and any other absolute URI are kept opaque, byte for byte.
//!
//! %-escapes in the user, password, parameters and headers are decoded on parse and
//! re-escaped on output (RFC 3261 §19.1.4), so `sip:%75ser@h` and `sip:user@h` are the
//! same value and always print as the latter.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
        }
    }
}

/// The scheme of an absolute URI (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`,
/// RFC 3986 §3.1), or `None` when `s` does not start with one.
pub(crate) fn scheme_of(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    if bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        Some(scheme)
    } else {
        None
    }
}

/// Characters that may never appear raw in any URI we accept.
fn is_forbidden_uri_byte(b: u8) -> bool {
    b <= b' ' || b >= 0x7f || matches!(b, b'<' | b'>' | b'"')
}

impl Uri {
    /// Parses a URI as it appears in a Request-URI or inside `<>`; no surrounding
    /// whitespace is allowed.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let scheme = scheme_of(s).ok_or(ParseError::BadUri)?;
        let rest = &s[scheme.len() + 1..];
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_rest(Scheme::Sip, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_rest(Scheme::Sips, rest).map(Uri::Sip)
        } else if rest.is_empty() || rest.bytes().any(is_forbidden_uri_byte) {
            Err(ParseError::BadUri)
        } else if scheme.eq_ignore_ascii_case("tel") {
            Ok(Uri::Tel(s.to_owned()))
        } else {
            Ok(Uri::Other(s.to_owned()))
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Tel(_) | Uri::Other(_) => None,
        }
    }

    /// The scheme as written for tel/other URIs, canonical for sip/sips.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) => u.scheme.as_str(),
            Uri::Tel(s) | Uri::Other(s) => scheme_of(s).unwrap_or(""),
        }
    }
}

impl FromStr for Uri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Uri, ParseError> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(s) | Uri::Other(s) => f.write_str(s),
        }
    }
}

impl Host {
    /// Parses a host: `[IPv6]`, dotted IPv4, or a domain name (alphanumerics, `-`, `.`;
    /// `_` is tolerated because real deployments use it).
    pub fn parse(s: &str) -> Result<Host, ParseError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(ParseError::BadUri)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| ParseError::BadUri);
        }
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(ParseError::BadUri);
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Host::V4(v4));
        }
        Ok(Host::Domain(s.to_owned()))
    }

    /// Case-insensitive for domains (RFC 3261 §19.1.4).
    pub fn matches(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            _ => self == other,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => a.fmt(f),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Splits `host[:port]` where host may be an IPv6 reference.
pub(crate) fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), ParseError> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or(ParseError::BadUri)?;
        let (h, rest) = s.split_at(close + 1);
        match rest {
            "" => (h, None),
            _ => (h, Some(rest.strip_prefix(':').ok_or(ParseError::BadUri)?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((Host::parse(host)?, port))
}

fn parse_port(p: &str) -> Result<u16, ParseError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadUri);
    }
    p.parse::<u16>().map_err(|_| ParseError::BadUri)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.2 "escaped"); never recursive (RFC 4475 esc01).
fn unescape(s: &str) -> Result<String, ParseError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_val);
            let lo = b.get(i + 2).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(ParseError::BadUri),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ParseError::BadUri)
}

/// Which characters a URI component may carry unescaped (RFC 3261 §25.1).
#[derive(Clone, Copy)]
enum Part {
    User,
    Password,
    Param,
    Header,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn allowed_raw(part: Part, b: u8) -> bool {
    is_unreserved(b)
        || match part {
            Part::User => matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'),
            Part::Password => matches!(b, b'&' | b'=' | b'+' | b'$' | b','),
            Part::Param => matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$'),
            Part::Header => matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$'),
        }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, part: Part, s: &str) -> fmt::Result {
    // Raw runs hold only allowed (ASCII) bytes, so they are always valid UTF-8 and
    // never split a character.
    fn raw(bytes: &[u8]) -> Result<&str, fmt::Error> {
        std::str::from_utf8(bytes).map_err(|_| fmt::Error)
    }
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if !allowed_raw(part, c) {
            f.write_str(raw(&b[start..i])?)?;
            write!(f, "%{c:02X}")?;
            start = i + 1;
        }
    }
    f.write_str(raw(&b[start..])?)
}

impl SipUri {
    /// Parses the part after `sip:` / `sips:`.
    fn parse_rest(scheme: Scheme, rest: &str) -> Result<SipUri, ParseError> {
        if rest.bytes().any(is_forbidden_uri_byte) {
            return Err(ParseError::BadUri);
        }
        // '@' is never legal unescaped elsewhere in a SIP URI, so the first one ends
        // the userinfo even when the user part holds ';' or '?' (RFC 4475 intmeth).
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((ui, hp)) => (Some(ui), hp),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() {
                    return Err(ParseError::BadUri);
                }
                (Some(unescape(u)?), p.map(unescape).transpose()?)
            }
        };
        let (before_headers, headers_text) = match hostpart.split_once('?') {
            Some((a, h)) => (a, Some(h)),
            None => (hostpart, None),
        };
        let (hostport, params_text) = match before_headers.split_once(';') {
            Some((hp, p)) => (hp, Some(p)),
            None => (before_headers, None),
        };
        let (host, port) = parse_host_port(hostport)?;
        let mut params = Vec::new();
        if let Some(text) = params_text {
            for p in text.split(';') {
                let (name, value) = match p.split_once('=') {
                    Some((n, v)) => (n, Some(unescape(v)?)),
                    None => (p, None),
                };
                if name.is_empty() {
                    return Err(ParseError::BadUri);
                }
                params.push((unescape(name)?, value));
            }
        }
        let mut headers = Vec::new();
        if let Some(text) = headers_text {
            for h in text.split('&') {
                let (name, value) = h.split_once('=').unwrap_or((h, ""));
                if name.is_empty() {
                    return Err(ParseError::BadUri);
                }
                headers.push((unescape(name)?, unescape(value)?));
            }
        }
        Ok(SipUri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// `None`: absent; `Some(None)`: present without value; `Some(Some(v))`: `name=v`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The address-of-record form `scheme:user@host`: host lower-cased, no port,
    /// parameters or headers; the user part escaped as on the wire.
    pub fn aor(&self) -> String {
        struct Aor<'a>(&'a SipUri);
        impl fmt::Display for Aor<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}:", self.0.scheme.as_str())?;
                if let Some(user) = &self.0.user {
                    write_escaped(f, Part::User, user)?;
                    f.write_str("@")?;
                }
                match &self.0.host {
                    Host::Domain(d) => {
                        for c in d.chars() {
                            write!(f, "{}", c.to_ascii_lowercase())?;
                        }
                        Ok(())
                    }
                    other => other.fmt(f),
                }
            }
        }
        Aor(self).to_string()
    }

    /// `host` or `host:port` (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }

    /// A bare `sip:host` URI.
    pub fn new(scheme: Scheme, user: Option<String>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            scheme,
            user,
            password: None,
            host,
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_str(":")?;
        if let Some(user) = &self.user {
            write_escaped(f, Part::User, user)?;
            if let Some(pw) = &self.password {
                f.write_str(":")?;
                write_escaped(f, Part::Password, pw)?;
            }
            f.write_str("@")?;
        }
        self.host.fmt(f)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (name, value) in &self.params {
            f.write_str(";")?;
            write_escaped(f, Part::Param, name)?;
            if let Some(v) = value {
                f.write_str("=")?;
                write_escaped(f, Part::Param, v)?;
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write_escaped(f, Part::Header, name)?;
            f.write_str("=")?;
            write_escaped(f, Part::Header, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_all_parts_of_a_full_sip_uri() {
        let u = sip("sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&x=");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, Host::Domain("Example.COM".into()));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(
            u.headers,
            vec![("subject".into(), "hi".into()), ("x".into(), String::new())]
        );
        assert_eq!(u.aor(), "sips:alice@example.com");
        assert_eq!(u.host_port(), "Example.COM:5061");
    }

    #[test]
    fn ipv6_reference_round_trips_with_brackets() {
        let u = sip("sip:bob@[2001:db8::1]:5070;maddr=[2001:db8::2]");
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("maddr"), Some(Some("[2001:db8::2]")));
        assert_eq!(u.host_port(), "[2001:db8::1]:5070");
        assert_eq!(
            u.to_string(),
            "sip:bob@[2001:db8::1]:5070;maddr=[2001:db8::2]"
        );
        assert!(Uri::parse("sip:[2001:db8::1").is_err());
        assert!(Uri::parse("sip:[nothex]").is_err());
    }

    #[test]
    fn ipv4_host_is_typed() {
        assert_eq!(
            sip("sip:192.0.2.1").host,
            Host::V4(Ipv4Addr::new(192, 0, 2, 1))
        );
    }

    #[test]
    fn user_escapes_are_decoded_and_reescaped() {
        let u = sip("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.to_string(), "sip:sips%3Auser%40example.com@example.net");
        let u = sip("sip:%75se%72@example.com");
        assert_eq!(u.user.as_deref(), Some("user"));
        assert_eq!(u.to_string(), "sip:user@example.com");
    }

    #[test]
    fn non_ascii_user_is_escaped_per_utf8_byte() {
        let u = sip("sip:%C3%A9l%C3%A8ve@h");
        assert_eq!(u.user.as_deref(), Some("élève"));
        assert_eq!(u.to_string(), "sip:%C3%A9l%C3%A8ve@h");
    }

    #[test]
    fn escaped_null_in_user_is_kept_whole() {
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user.as_deref(), Some("null-\0-null"));
        assert_eq!(u.aor(), "sip:null-%00-null@example.com");
    }

    #[test]
    fn param_escapes_decode_once_only() {
        let u = sip("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("name"), Some(Some("value%41")));
        assert_eq!(
            u.to_string(),
            "sip:caller@host5.example.net;lr;name=value%2541"
        );
    }

    #[test]
    fn user_part_may_hold_semicolons_and_question_marks() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
        assert!(u.params.is_empty());
        assert_eq!(u.to_string(), "sip:user;par=u%40example.net@example.com");
    }

    #[test]
    fn malformed_uris_are_rejected() {
        for bad in [
            "",
            "sip:",
            "sip:@host",
            "sip:user@",
            "sip:host:99999",
            "sip:host:",
            "sip:user@exa mple.com",
            "sip:user@host; lr",
            "<sip:user@host>",
            "sip:%zz@host",
            "sip:%ff@host",
            "sip:host;;x",
            "1sip:host",
            "tel:",
            "http://a b",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn tel_and_other_schemes_are_kept_verbatim() {
        assert_eq!(
            Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap(),
            Uri::Tel("tel:+1-201-555-0123;phone-context=x".into())
        );
        let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u, Uri::Other("soap.beep://192.0.2.103:3002".into()));
        assert_eq!(u.to_string(), "soap.beep://192.0.2.103:3002");
        assert_eq!(u.scheme(), "soap.beep");
        assert!(u.as_sip().is_none());
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(sip("SIP:a@b").to_string(), "sip:a@b");
        assert!(matches!("SiPs:b".parse::<Uri>(), Ok(Uri::Sip(u)) if u.scheme == Scheme::Sips));
    }

    #[test]
    fn display_then_parse_is_identity() {
        for s in [
            "sip:a@b",
            "sips:alice:pw@[::1]:1;a=b;c?h=v",
            "sip:x%20y@h;p=%3B",
            "sip:h.example.com;transport=udp",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(Uri::parse(&u.to_string()).unwrap(), u, "{s}");
        }
    }
}
