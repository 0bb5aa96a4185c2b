//! Header storage and typed header values (RFC 3261 §7.3, §20, §25.1).
//!
//! Headers are kept as (canonical name, raw value) in arrival order, one entry per
//! header *line*; folding is already undone. Typed values are parsed on demand by the
//! accessors below, so a malformed header that nobody asks about costs nothing and
//! a malformed header that matters becomes a typed `ParseError`.

use std::fmt;

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
/// Quoted-string values are kept with their quotes, so they print back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

/// `[display-name] <uri>;params` or a bare addr-spec (RFC 3261 §20.10, §20.20, §20.39).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name with quotes and backslash escapes removed.
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
    /// Parameters other than `expires`, `reason` and `retry-after`.
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
/// A lone token68 credential (`Basic dXNlcg==`) is kept as one parameter with an empty name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthValue {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

// ---------------------------------------------------------------------------
// Header names

/// Well-known header names in their RFC spelling.
const KNOWN_NAMES: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// Compact forms: RFC 3261 §7.3.3, RFC 6665 §8.2.1/§8.2.2 (o, u), RFC 3515 (r),
/// RFC 3892 (b), RFC 4028 (x), RFC 3841 (a, j, d), RFC 4474 (y, n).
fn compact_form(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// The canonical spelling of a well-known (or compact) header name.
pub fn known_name(name: &str) -> Option<&'static str> {
    if let [c] = name.as_bytes() {
        return compact_form(*c);
    }
    KNOWN_NAMES
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(name))
}

/// `value` without surrounding whitespace, reusing its buffer when there is none.
fn trimmed(value: String) -> String {
    let t = trim_ws(&value);
    if t.len() == value.len() {
        value
    } else {
        t.to_owned()
    }
}

/// The name under which `name` is stored: compact forms expanded, known names in RFC
/// spelling, others unchanged.
pub fn canonical_name(name: &str) -> String {
    known_name(name).map_or_else(|| name.to_owned(), str::to_owned)
}

/// Headers whose values are comma-separated lists (RFC 3261 §7.3.1).
fn is_list_header(canonical: &str) -> bool {
    matches!(
        canonical,
        "Accept"
            | "Accept-Contact"
            | "Accept-Encoding"
            | "Accept-Language"
            | "Alert-Info"
            | "Allow"
            | "Allow-Events"
            | "Call-Info"
            | "Contact"
            | "Content-Encoding"
            | "Content-Language"
            | "Error-Info"
            | "In-Reply-To"
            | "P-Asserted-Identity"
            | "P-Preferred-Identity"
            | "Path"
            | "Proxy-Require"
            | "Reason"
            | "Record-Route"
            | "Reject-Contact"
            | "Require"
            | "Route"
            | "Service-Route"
            | "Supported"
            | "Unsupported"
            | "Via"
            | "Warning"
    )
}

// ---------------------------------------------------------------------------
// Lexical helpers shared by the typed parsers (RFC 3261 §25.1)

pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

fn trim_ws(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_token_byte(b[i]) {
        i += 1;
    }
    i
}

/// `b[i]` is `"`: the index just past the closing quote, honouring `\` escapes.
fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Removes the surrounding quotes and backslash escapes of a quoted-string.
pub fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `s` as a quoted-string. CR and LF cannot be quoted (RFC 3261 §25.1
/// quoted-pair) and become spaces.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '\r' | '\n' => f.write_str(" ")?,
            '"' | '\\' => write!(f, "\\{c}")?,
            c if c != '\t' && (c < ' ' || c == '\x7f') => write!(f, "\\{c}")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// Bytes allowed in an unquoted generic parameter value: token, host (IPv6 references
/// included) and the odd extra characters seen in the wild.
fn is_param_value_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !matches!(b, b';' | b',' | b'"' | b'<' | b'>' | b'\\')
}

/// Splits a header value at commas that are outside quoted strings and `<...>`,
/// trimming each piece (RFC 3261 §7.3.1). Empty pieces are kept so callers can
/// decide whether an empty list element is an error.
pub fn split_comma(value: &str) -> Vec<&str> {
    let b = value.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                // An unterminated quote swallows the rest of the value.
                i = quoted_end(b, i).unwrap_or(b.len());
                continue;
            }
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                out.push(trim_ws(&value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(trim_ws(&value[start..]));
    out
}

// ---------------------------------------------------------------------------
// Headers

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// Appends a header line; the name is canonicalized and the value trimmed.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.entries.push(Header {
            name: canonical_name(name),
            value: trimmed(value.into()),
        });
    }

    /// Appends a header line under a name already in RFC spelling (a literal in our own
    /// requests), skipping the name lookup; the value is trimmed as by `push`.
    pub fn push_known(&mut self, name: &'static str, value: impl Into<String>) {
        debug_assert_eq!(known_name(name), Some(name), "not a canonical name");
        self.entries.push(Header {
            name: name.to_owned(),
            value: trimmed(value.into()),
        });
    }

    /// Puts a header line first (a new top Via); the name is canonicalized.
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.push(name, value);
        if let Some(h) = self.entries.pop() {
            self.entries.insert(0, h);
        }
    }

    /// Appends a header whose name is already canonical and value already trimmed.
    pub(crate) fn push_canonical(&mut self, name: String, value: String) {
        self.entries.push(Header { name, value });
    }

    fn matches<'a>(name: &'a str) -> impl Fn(&Header) -> bool + 'a {
        let key = known_name(name).unwrap_or(name);
        move |h: &Header| h.name.eq_ignore_ascii_case(key)
    }

    /// The first value of `name` (case-insensitive; compact or long form).
    pub fn get(&self, name: &str) -> Option<&str> {
        let m = Self::matches(name);
        self.entries.iter().find(|h| m(h)).map(|h| h.value.as_str())
    }

    /// Every line of `name`, in order, without comma splitting.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let key: std::borrow::Cow<'static, str> = match known_name(name) {
            Some(k) => k.into(),
            None => name.to_owned().into(),
        };
        self.entries
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(&key))
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`: list headers are split at commas and empty elements
    /// dropped; other headers give one value per line.
    pub fn values(&self, name: &str) -> Vec<&str> {
        let canonical = known_name(name).unwrap_or(name);
        let list = is_list_header(canonical);
        let mut out = Vec::new();
        let m = Self::matches(name);
        for v in self
            .entries
            .iter()
            .filter(|h| m(h))
            .map(|h| h.value.as_str())
        {
            if list {
                out.extend(split_comma(v).into_iter().filter(|p| !p.is_empty()));
            } else {
                out.push(v);
            }
        }
        out
    }

    /// Replaces every line of `name` by one line holding `value`, at the position of
    /// the first existing line (or at the end).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let canonical = canonical_name(name);
        let pos = {
            let m = Self::matches(name);
            self.entries.iter().position(m)
        };
        self.remove(name);
        let mut value = value.into();
        let trimmed = trim_ws(&value);
        if trimmed.len() != value.len() {
            value = trimmed.to_owned();
        }
        let header = Header {
            name: canonical,
            value,
        };
        match pos {
            Some(p) if p <= self.entries.len() => self.entries.insert(p, header),
            _ => self.entries.push(header),
        }
    }

    /// Removes every line of `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        let m = Self::matches(name);
        self.entries.retain(|h| !m(h));
        before - self.entries.len()
    }

    /// How many lines of `name` there are.
    pub fn count(&self, name: &str) -> usize {
        let m = Self::matches(name);
        self.entries.iter().filter(|h| m(h)).count()
    }

    /// The first line of `name`, for in-place edits.
    pub fn first_mut(&mut self, name: &str) -> Option<&mut Header> {
        let m = Self::matches(name);
        self.entries.iter_mut().find(|h| m(h))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    // -- typed accessors ---------------------------------------------------

    /// Parses the first line of a single-valued header, `Ok(None)` when absent.
    fn parse_first<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ParseError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or(ParseError::BadHeader(name)),
        }
    }

    /// Parses a mandatory single-valued header.
    fn parse_required<T>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ParseError> {
        self.parse_first(name, parse)?
            .ok_or(ParseError::MissingHeader(name))
    }

    /// Every comma-separated element of a list header, parsed; an empty element is
    /// an error (RFC 3261 §7.3.1 lists have no empty elements).
    fn parse_list<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, ParseError> {
        let mut out = Vec::new();
        for line in self.get_all(name) {
            for item in split_comma(line) {
                out.push(parse(item).ok_or(ParseError::BadHeader(name))?);
            }
        }
        Ok(out)
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self
            .get("Call-ID")
            .ok_or(ParseError::MissingHeader("Call-ID"))?;
        // RFC 3261 §25.1: callid = word [ "@" word ]; no whitespace.
        if v.is_empty() || v.bytes().any(|b| b <= b' ') {
            return Err(ParseError::BadHeader("Call-ID"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.parse_required("CSeq", |v| CSeq::parse(v).ok())
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.parse_required("From", |v| NameAddr::parse(v).ok())
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.parse_required("To", |v| NameAddr::parse(v).ok())
    }

    /// All Via values, top first; an absent Via is `MissingHeader`.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        let vias = self.parse_list("Via", |v| Via::parse(v).ok())?;
        if vias.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        Ok(vias)
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        let first = self.get("Via").ok_or(ParseError::MissingHeader("Via"))?;
        let top = split_comma(first).into_iter().next().unwrap_or("");
        Via::parse(top).map_err(|_| ParseError::BadHeader("Via"))
    }

    /// True when the Contact header is the `*` wildcard (RFC 3261 §10.2.2); only
    /// meaningful in REGISTER, so `contacts()` treats it as malformed.
    pub fn contact_is_star(&self) -> bool {
        self.get("Contact").is_some_and(|v| v == "*")
    }

    /// All Contact values; `*` is reported as malformed (see `contact_is_star`).
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.parse_list("Contact", |v| NameAddr::parse(v).ok())
    }

    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.parse_list("Route", |v| NameAddr::parse(v).ok())
    }

    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.parse_list("Record-Route", |v| NameAddr::parse(v).ok())
    }

    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.parse_first("Expires", parse_u32)
    }

    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.parse_first("Min-Expires", parse_u32)
    }

    /// RFC 3261 §20.22: 0-255.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.parse_first("Max-Forwards", |v| parse_u32(v).filter(|n| *n <= 255))
    }

    pub fn event(&self) -> Result<Option<Event>, ParseError> {
        self.parse_first("Event", |v| Event::parse(v).ok())
    }

    /// Allow-Events packages, lower-cased.
    pub fn allow_events(&self) -> Vec<String> {
        self.values("Allow-Events")
            .into_iter()
            .map(str::to_ascii_lowercase)
            .collect()
    }

    pub fn subscription_state(&self) -> Result<Option<SubscriptionState>, ParseError> {
        self.parse_first("Subscription-State", |v| SubscriptionState::parse(v).ok())
    }

    pub fn sip_etag(&self) -> Option<&str> {
        self.get("SIP-ETag")
    }

    pub fn sip_if_match(&self) -> Option<&str> {
        self.get("SIP-If-Match")
    }

    pub fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.parse_first("Content-Type", |v| MediaType::parse(v).ok())
    }

    /// Accept media ranges; an empty Accept header gives an empty list.
    pub fn accept(&self) -> Result<Vec<MediaType>, ParseError> {
        let mut out = Vec::new();
        for line in self.get_all("Accept") {
            for item in split_comma(line).into_iter().filter(|i| !i.is_empty()) {
                out.push(MediaType::parse(item).map_err(|_| ParseError::BadHeader("Accept"))?);
            }
        }
        Ok(out)
    }

    pub fn supported(&self) -> Vec<&str> {
        self.values("Supported")
    }

    pub fn require(&self) -> Vec<&str> {
        self.values("Require")
    }

    pub fn authorization(&self) -> Result<Option<AuthValue>, ParseError> {
        self.parse_first("Authorization", |v| AuthValue::parse(v).ok())
    }

    pub fn proxy_authorization(&self) -> Result<Option<AuthValue>, ParseError> {
        self.parse_first("Proxy-Authorization", |v| AuthValue::parse(v).ok())
    }

    pub fn www_authenticate(&self) -> Result<Option<AuthValue>, ParseError> {
        self.parse_first("WWW-Authenticate", |v| AuthValue::parse(v).ok())
    }

    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        match self.get("Content-Length") {
            None => Ok(None),
            Some(v) => parse_content_length(v)
                .map(Some)
                .ok_or(ParseError::BadContentLength),
        }
    }
}

/// `1*DIGIT` as u32 (leading zeros allowed, RFC 4475 wsinv); overflow is an error.
fn parse_u32(v: &str) -> Option<u32> {
    let v = trim_ws(v);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// `1*DIGIT` as usize; negative or non-numeric values are errors (RFC 4475 ncl).
pub(crate) fn parse_content_length(v: &str) -> Option<usize> {
    let v = trim_ws(v);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

// ---------------------------------------------------------------------------
// Params

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Parses `;a=b;c` text (LWS allowed around `;` and `=`).
    pub fn parse(s: &str) -> Result<Params, ParseError> {
        parse_params(s).ok_or(ParseError::BadHeader("parameters"))
    }

    /// `None`: absent; `Some(None)`: present without value; `Some(Some(v))`: `name=v`.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name` when present with a value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing an existing parameter in place, or appending).
    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.0 {
            f.write_str(";")?;
            f.write_str(name)?;
            if let Some(v) = value {
                f.write_str("=")?;
                f.write_str(v)?;
            }
        }
        Ok(())
    }
}

/// `*( SEMI generic-param )` with LWS anywhere between the pieces.
fn parse_params(s: &str) -> Option<Params> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_ws(b, 0);
    while i < b.len() {
        if b[i] != b';' {
            return None;
        }
        i = skip_ws(b, i + 1);
        let name_start = i;
        i = token_end(b, i);
        if i == name_start {
            return None;
        }
        let name = &s[name_start..i];
        i = skip_ws(b, i);
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i = skip_ws(b, i + 1);
            let value_start = i;
            if b.get(i) == Some(&b'"') {
                i = quoted_end(b, i)?;
            } else {
                while i < b.len() && is_param_value_byte(b[i]) {
                    i += 1;
                }
            }
            if i == value_start {
                return None;
            }
            value = Some(s[value_start..i].to_owned());
            i = skip_ws(b, i);
        }
        out.push((name.to_owned(), value));
    }
    Some(Params(out))
}

// ---------------------------------------------------------------------------
// NameAddr

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    /// Parses one name-addr or addr-spec with its header parameters.
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        parse_name_addr(s).ok_or(ParseError::BadHeader("name-addr"))
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

fn parse_name_addr(s: &str) -> Option<NameAddr> {
    let s = trim_ws(s);
    let b = s.as_bytes();
    let (display, lt) = if b.first() == Some(&b'"') {
        // RFC 4475 quotbal: an unterminated quote is an error.
        let end = quoted_end(b, 0)?;
        let lt = skip_ws(b, end);
        if b.get(lt) != Some(&b'<') {
            return None;
        }
        (Some(unquote(&s[..end])), lt)
    } else if let Some(lt) = s.find('<') {
        // Unquoted display names are tokens separated by LWS; the LWS before '<' may
        // be missing (RFC 4475 lwsdisp) but commas and the like are not allowed
        // (RFC 4475 baddn).
        let d = trim_ws(&s[..lt]);
        if !d.bytes().all(|c| is_token_byte(c) || is_ws(c)) {
            return None;
        }
        (
            if d.is_empty() {
                None
            } else {
                Some(d.to_owned())
            },
            lt,
        )
    } else {
        // addr-spec: the URI ends at the first ';' and may not contain ',' or '?'
        // (RFC 3261 §20.10; RFC 4475 regbadct).
        let (uri_text, params_text) = match s.find(';') {
            Some(p) => (&s[..p], &s[p..]),
            None => (s, ""),
        };
        let uri_text = trim_ws(uri_text);
        if uri_text.contains(['?', ',']) {
            return None;
        }
        return Some(NameAddr {
            display: None,
            uri: Uri::parse(uri_text).ok()?,
            params: parse_params(params_text)?,
        });
    };
    let gt = lt + 1 + s.get(lt + 1..)?.find('>')?;
    // No LWS inside the brackets (RFC 4475 badaspec): Uri::parse rejects it.
    let uri = Uri::parse(s.get(lt + 1..gt)?).ok()?;
    let params = parse_params(s.get(gt + 1..)?)?;
    Some(NameAddr {
        display,
        uri,
        params,
    })
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write_quoted(f, d)?;
            f.write_str(" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

// ---------------------------------------------------------------------------
// Via

impl Via {
    /// Parses one Via value: `SIP / 2.0 / transport sent-by *( SEMI via-params )`.
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        parse_via(s).ok_or(ParseError::BadHeader("Via"))
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `None`: no rport; `Some(None)`: rport without (valid) value (RFC 3581 §3).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

fn parse_via(s: &str) -> Option<Via> {
    let s = trim_ws(s);
    let b = s.as_bytes();
    let mut i = 0;
    let mut protocol = [""; 3];
    for (n, part) in protocol.iter_mut().enumerate() {
        if n > 0 {
            i = skip_ws(b, i);
            if b.get(i) != Some(&b'/') {
                return None;
            }
            i = skip_ws(b, i + 1);
        }
        let start = i;
        i = token_end(b, i);
        if i == start {
            return None;
        }
        *part = &s[start..i];
    }
    let [name, version, transport] = protocol;
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return None;
    }
    let host_start = skip_ws(b, i);
    if host_start == i {
        return None;
    }
    i = host_start;
    if b.get(i) == Some(&b'[') {
        i += s.get(i..)?.find(']')? + 1;
    } else {
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'-' | b'.' | b'_')) {
            i += 1;
        }
    }
    let host = Host::parse(&s[host_start..i]).ok()?;
    i = skip_ws(b, i);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        i = skip_ws(b, i + 1);
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        port = Some(s.get(start..i)?.parse::<u16>().ok()?);
    }
    let params = parse_params(&s[i..])?;
    Some(Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params,
    })
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        self.params.fmt(f)
    }
}

// ---------------------------------------------------------------------------
// CSeq

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let bad = ParseError::BadHeader("CSeq");
        let s = trim_ws(s);
        let b = s.as_bytes();
        let digits_end = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let seq = parse_u32(&s[..digits_end]).ok_or(bad.clone())?;
        let method_start = skip_ws(b, digits_end);
        let method = &s[method_start..];
        if method_start == digits_end || !is_token(method) {
            return Err(bad);
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

// ---------------------------------------------------------------------------
// Event / Subscription-State

/// A leading token followed by generic parameters.
fn token_and_params(s: &str) -> Option<(&str, Params)> {
    let s = trim_ws(s);
    let end = token_end(s.as_bytes(), 0);
    if end == 0 {
        return None;
    }
    Some((&s[..end], parse_params(&s[end..])?))
}

impl Event {
    pub fn new(package: &str) -> Event {
        Event {
            package: package.to_ascii_lowercase(),
            params: Params::default(),
        }
    }

    pub fn parse(s: &str) -> Result<Event, ParseError> {
        let (package, params) = token_and_params(s).ok_or(ParseError::BadHeader("Event"))?;
        Ok(Event {
            package: package.to_ascii_lowercase(),
            params,
        })
    }

    /// The `id` parameter that tells subscriptions in one dialog apart (RFC 6665 §8.2.1).
    pub fn id(&self) -> Option<&str> {
        self.params.value("id")
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.package, self.params)
    }
}

impl SubscriptionState {
    pub fn parse(s: &str) -> Result<SubscriptionState, ParseError> {
        let bad = ParseError::BadHeader("Subscription-State");
        let (state, mut params) = token_and_params(s).ok_or(bad.clone())?;
        let mut take_u32 = |name: &str| -> Result<Option<u32>, ParseError> {
            let v = match params.get(name) {
                None => return Ok(None),
                Some(v) => v.and_then(parse_u32).ok_or(bad.clone())?,
            };
            params.remove(name);
            Ok(Some(v))
        };
        let expires = take_u32("expires")?;
        let retry_after = take_u32("retry-after")?;
        let reason = params.value("reason").map(str::to_ascii_lowercase);
        params.remove("reason");
        Ok(SubscriptionState {
            state: state.to_ascii_lowercase(),
            expires,
            reason,
            retry_after,
            params,
        })
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.state)?;
        if let Some(r) = &self.reason {
            write!(f, ";reason={r}")?;
        }
        if let Some(e) = self.expires {
            write!(f, ";expires={e}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, ";retry-after={r}")?;
        }
        self.params.fmt(f)
    }
}

// ---------------------------------------------------------------------------
// MediaType

impl MediaType {
    pub fn new(kind: &str, subtype: &str) -> MediaType {
        MediaType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            params: Params::default(),
        }
    }

    /// `type SLASH subtype *( SEMI m-parameter )` (RFC 3261 §20.15).
    pub fn parse(s: &str) -> Result<MediaType, ParseError> {
        parse_media_type(s).ok_or(ParseError::BadHeader("Content-Type"))
    }

    /// `type/subtype` without parameters.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.kind, self.subtype)
    }

    /// Whether this concrete type is acceptable under the `accept` media range
    /// (`*/*`, `type/*` or exact; parameters ignored).
    pub fn matches(&self, accept: &MediaType) -> bool {
        accept.kind == "*"
            || (accept.kind == self.kind
                && (accept.subtype == "*" || accept.subtype == self.subtype))
    }
}

fn parse_media_type(s: &str) -> Option<MediaType> {
    let s = trim_ws(s);
    let b = s.as_bytes();
    let kind_end = token_end(b, 0);
    let slash = skip_ws(b, kind_end);
    if kind_end == 0 || b.get(slash) != Some(&b'/') {
        return None;
    }
    let sub_start = skip_ws(b, slash + 1);
    let sub_end = token_end(b, sub_start);
    if sub_end == sub_start {
        return None;
    }
    Some(MediaType {
        kind: s[..kind_end].to_ascii_lowercase(),
        subtype: s[sub_start..sub_end].to_ascii_lowercase(),
        params: parse_params(&s[sub_end..])?,
    })
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.kind, self.subtype, self.params)
    }
}

// ---------------------------------------------------------------------------
// AuthValue

impl AuthValue {
    pub fn parse(s: &str) -> Result<AuthValue, ParseError> {
        parse_auth(s).ok_or(ParseError::BadHeader("Authorization"))
    }

    /// The first parameter called `name` (case-insensitive), unquoted.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_auth(s: &str) -> Option<AuthValue> {
    let s = trim_ws(s);
    let b = s.as_bytes();
    let scheme_end = token_end(b, 0);
    if scheme_end == 0 {
        return None;
    }
    let scheme = s[..scheme_end].to_owned();
    let rest = &s[scheme_end..];
    if !rest.is_empty() && !is_ws(rest.as_bytes()[0]) {
        return None;
    }
    let rest = trim_ws(rest);
    let mut params = Vec::new();
    if rest.is_empty() {
        return Some(AuthValue { scheme, params });
    }
    let items = split_comma(rest);
    for item in &items {
        let ib = item.as_bytes();
        let name_end = token_end(ib, 0);
        let eq = skip_ws(ib, name_end);
        if name_end == 0 || ib.get(eq) != Some(&b'=') {
            // token68 credentials (RFC 7235 §2.1) such as Basic's.
            if items.len() == 1
                && item
                    .bytes()
                    .all(|c| is_token_byte(c) || c == b'/' || c == b'=')
            {
                params.push((String::new(), (*item).to_owned()));
                continue;
            }
            return None;
        }
        let vstart = skip_ws(ib, eq + 1);
        let raw = &item[vstart..];
        let value = if raw.starts_with('"') {
            if quoted_end(raw.as_bytes(), 0)? != raw.len() {
                return None;
            }
            unquote(raw)
        } else {
            if raw.is_empty() || !raw.bytes().all(is_param_value_byte) {
                return None;
            }
            raw.to_owned()
        };
        params.push((item[..name_end].to_owned(), value));
    }
    Some(AuthValue { scheme, params })
}

/// Digest parameters that are tokens, never quoted-strings (RFC 2617 §3.2.1, §3.2.2).
fn auth_param_is_token(name: &str) -> bool {
    ["algorithm", "stale", "nc"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
}

impl fmt::Display for AuthValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        for (i, (name, value)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            if name.is_empty() {
                f.write_str(value)?;
            } else if auth_param_is_token(name) && is_token(value) {
                write!(f, "{name}={value}")?;
            } else {
                write!(f, "{name}=")?;
                write_quoted(f, value)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::SipUri;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(n, *v);
        }
        h
    }

    #[test]
    fn compact_forms_expand_to_rfc_names() {
        let pairs = [
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("f", "From"),
            ("t", "To"),
            ("v", "Via"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("k", "Supported"),
            ("o", "Event"),
            ("u", "Allow-Events"),
            ("s", "Subject"),
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("e", "Content-Encoding"),
            ("x", "Session-Expires"),
            ("I", "Call-ID"),
        ];
        for (short, long) in pairs {
            assert_eq!(canonical_name(short), long, "{short}");
        }
    }

    #[test]
    fn well_known_names_get_rfc_spelling_and_unknown_names_are_kept() {
        for (given, want) in [
            ("call-id", "Call-ID"),
            ("cseq", "CSeq"),
            ("www-authenticate", "WWW-Authenticate"),
            ("sip-etag", "SIP-ETag"),
            ("SIP-IF-MATCH", "SIP-If-Match"),
            ("MaX-fOrWaRdS", "Max-Forwards"),
            ("X-Custom-thing", "X-Custom-thing"),
            ("C%6Fntact", "C%6Fntact"),
        ] {
            assert_eq!(canonical_name(given), want);
        }
        // Every entry is found under any spelling.
        for k in KNOWN_NAMES {
            assert_eq!(known_name(&k.to_ascii_uppercase()), Some(*k));
        }
    }

    #[test]
    fn lookup_accepts_compact_and_long_names_in_any_case() {
        let h = headers(&[
            ("i", "abc@host"),
            ("Via", "SIP/2.0/UDP a"),
            ("v", "SIP/2.0/UDP b"),
        ]);
        assert_eq!(h.get("CALL-ID"), Some("abc@host"));
        assert_eq!(h.get("i"), Some("abc@host"));
        assert_eq!(h.count("via"), 2);
        assert_eq!(
            h.get_all("V").collect::<Vec<_>>(),
            ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
        );
        assert_eq!(h.get("X-Missing"), None);
    }

    #[test]
    fn set_replaces_all_lines_in_place_and_remove_counts() {
        let mut h = headers(&[
            ("X-A", "1"),
            ("Expires", "10"),
            ("X-B", "2"),
            ("expires", "20"),
        ]);
        h.set("Expires", "30");
        let names: Vec<_> = h
            .iter()
            .map(|x| (x.name.as_str(), x.value.as_str()))
            .collect();
        assert_eq!(names, [("X-A", "1"), ("Expires", "30"), ("X-B", "2")]);
        assert_eq!(h.remove("x-a"), 1);
        assert_eq!(h.len(), 2);
        h.set("New", " v ");
        assert_eq!(h.get("new"), Some("v"));
        assert!(!h.is_empty());
    }

    #[test]
    fn split_comma_respects_quotes_escapes_and_angle_brackets() {
        assert_eq!(
            split_comma(r#""Doe, \"J\", Jr" <sip:a@b;x=1,2>;q=1 , <sip:c@d> ,sip:e@f"#),
            [
                r#""Doe, \"J\", Jr" <sip:a@b;x=1,2>;q=1"#,
                "<sip:c@d>",
                "sip:e@f"
            ]
        );
        assert_eq!(split_comma("a,,b, "), ["a", "", "b", ""]);
        assert_eq!(split_comma(r#""a\\",b"#), [r#""a\\""#, "b"]);
    }

    #[test]
    fn values_splits_list_headers_only() {
        let h = headers(&[
            ("Supported", "eventlist, gruu"),
            ("k", "path"),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ]);
        assert_eq!(h.supported(), ["eventlist", "gruu", "path"]);
        assert_eq!(h.values("Date"), ["Sat, 13 Nov 2010 23:29:00 GMT"]);
    }

    #[test]
    fn params_parse_with_lws_and_quoted_values() {
        let p = Params::parse(" ; tag = abc ;lr; x=\"a;b\" ;received=[2001:db8::1]").unwrap();
        assert_eq!(p.value("TAG"), Some("abc"));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("x"), Some("\"a;b\""));
        assert_eq!(p.value("received"), Some("[2001:db8::1]"));
        assert_eq!(
            p.to_string(),
            ";tag=abc;lr;x=\"a;b\";received=[2001:db8::1]"
        );
        for bad in [";", ";;", "x", ";a=", ";a=\"open", ";a b"] {
            assert!(Params::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn params_set_and_remove() {
        let mut p = Params::default();
        p.set("expires", Some("60".into()));
        p.set("EXPIRES", Some("30".into()));
        p.set("lr", None);
        assert_eq!(p.to_string(), ";expires=30;lr");
        p.remove("Expires");
        assert_eq!(p.to_string(), ";lr");
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""J Rosenberg \\\""  <sip:jdrosen@example.com> ; tag = 98asjd8"#)
            .unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(
            n.to_string(),
            r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#
        );

        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));

        // In the addr-spec form, parameters after the URI are header parameters.
        let n = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(n.params.get("unknownparam"), Some(None));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        assert_eq!(
            n.to_string(),
            "<sip:+19725552222@gw1.example.net>;unknownparam"
        );

        let n = NameAddr::parse("<sip:a@b;lr>").unwrap();
        assert_eq!(n.uri.as_sip().unwrap().param("lr"), Some(None));
        assert!(n.params.is_empty());
    }

    #[test]
    fn name_addr_rejects_rfc4475_malformations() {
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            r#""Watson, Thomas" < sip:t.watson@example.org >"#,
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b",
            "<sip:a@b>;;",
            r#""Joe" <sip:joe@example.org>;;;;"#,
            "",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_name_with_control_characters_round_trips() {
        let n = NameAddr::parse("\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:a@example.com>").unwrap();
        assert_eq!(n.display.as_deref(), Some("BEL:\x07 NUL:\0 DEL:\x7f"));
        assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
    }

    #[test]
    fn via_parses_lws_everywhere() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2 : 5070;branch=390skdjuw;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.2:5070;branch=390skdjuw;rport"
        );

        let v = Via::parse("SIP/2.0/tls [2001:db8::9]:5061;received=192.0.2.1;rport=6000").unwrap();
        assert_eq!(v.transport, "TLS");
        assert_eq!(v.host, Host::V6("2001:db8::9".parse().unwrap()));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(v.rport(), Some(Some(6000)));
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
    }

    #[test]
    fn via_rejects_bad_versions_and_empty_params() {
        for bad in [
            "SIP/7.0/UDP c.example.com",
            "SIP/2.0/UDP 192.0.2.15;;",
            ";",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP host:99999",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vias_and_top_via_span_lines_and_commas() {
        let h = headers(&[
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b"),
            ("v", "SIP/2.0/TLS c"),
        ]);
        let vias = h.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[2].transport, "TLS");
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(Headers::new().vias(), Err(ParseError::MissingHeader("Via")));
        let bad = headers(&[("Via", "SIP/2.0/UDP 192.0.2.15;;,;,,")]);
        assert_eq!(bad.vias(), Err(ParseError::BadHeader("Via")));
    }

    #[test]
    fn cseq_with_leading_zeros_and_overflow() {
        let c = CSeq::parse("0009  INVITE").unwrap();
        assert_eq!((c.seq, &c.method), (9, &Method::Invite));
        assert_eq!(c.to_string(), "9 INVITE");
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("INVITE").is_err());
    }

    #[test]
    fn event_and_subscription_state() {
        let e = Event::parse("Presence.winfo ; id = 42").unwrap();
        assert_eq!(e.package, "presence.winfo");
        assert_eq!(e.id(), Some("42"));
        assert_eq!(e.to_string(), "presence.winfo;id=42");

        let s = SubscriptionState::parse("Terminated;reason=timeout;retry-after=10;x").unwrap();
        assert_eq!(s.state, "terminated");
        assert_eq!(s.reason.as_deref(), Some("timeout"));
        assert_eq!(s.retry_after, Some(10));
        assert_eq!(s.expires, None);
        assert_eq!(s.to_string(), "terminated;reason=timeout;retry-after=10;x");
        assert_eq!(SubscriptionState::parse(&s.to_string()).unwrap(), s);
        assert!(SubscriptionState::parse("active;expires=soon").is_err());
    }

    #[test]
    fn media_type_matching_honours_wildcards() {
        let pidf = MediaType::parse("Application/PIDF+XML ; charset=UTF-8").unwrap();
        assert_eq!(pidf.essence(), "application/pidf+xml");
        assert_eq!(pidf.params.value("charset"), Some("UTF-8"));
        let m = |s: &str| MediaType::parse(s).unwrap();
        assert!(pidf.matches(&m("*/*")));
        assert!(pidf.matches(&m("application/*")));
        assert!(pidf.matches(&m("application/pidf+xml")));
        assert!(!pidf.matches(&m("application/xpidf+xml")));
        assert!(!pidf.matches(&m("text/*")));
        assert!(MediaType::parse("application").is_err());
        assert!(MediaType::parse("application/").is_err());
    }

    #[test]
    fn accept_lists_and_empty_accept() {
        let h = headers(&[(
            "Accept",
            "application/sdp, application/pkcs7-mime,\t multipart/mixed",
        )]);
        assert_eq!(h.accept().unwrap().len(), 3);
        let empty = headers(&[("Accept", "")]);
        assert_eq!(empty.accept().unwrap(), vec![]);
    }

    #[test]
    fn auth_values_unquote_and_requote() {
        let a = AuthValue::parse(
            r#"Digest username="bob", realm="example.com", nonce="abc", uri="sip:x", response="0123", algorithm=MD5, qop=auth, nc=00000001, cnonce="c,d""#,
        )
        .unwrap();
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.param("USERNAME"), Some("bob"));
        assert_eq!(a.param("cnonce"), Some("c,d"));
        assert_eq!(a.param("nc"), Some("00000001"));
        assert_eq!(AuthValue::parse(&a.to_string()).unwrap(), a);
        assert!(a.to_string().contains("algorithm=MD5"));

        let odd = AuthValue::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(odd.param("opaque-data"), Some("here"));
        let basic = AuthValue::parse("Basic dXNlcjpwYXNz").unwrap();
        assert_eq!(basic.to_string(), "Basic dXNlcjpwYXNz");
        assert!(AuthValue::parse("Digest a=\"x").is_err());
    }

    #[test]
    fn typed_accessors_name_the_bad_header() {
        let h = headers(&[
            ("Max-Forwards", "300"),
            ("Expires", "99999999999"),
            ("CSeq", "x INVITE"),
            ("From", "Bell, Alexander <sip:a@b>"),
            ("Content-Length", "-1"),
            ("Call-ID", "a b"),
        ]);
        assert_eq!(h.max_forwards(), Err(ParseError::BadHeader("Max-Forwards")));
        assert_eq!(h.expires(), Err(ParseError::BadHeader("Expires")));
        assert_eq!(h.cseq(), Err(ParseError::BadHeader("CSeq")));
        assert_eq!(h.from(), Err(ParseError::BadHeader("From")));
        assert_eq!(h.to(), Err(ParseError::MissingHeader("To")));
        assert_eq!(h.content_length(), Err(ParseError::BadContentLength));
        assert_eq!(h.call_id(), Err(ParseError::BadHeader("Call-ID")));
        assert_eq!(h.event(), Ok(None));
        assert_eq!(h.min_expires(), Ok(None));
    }

    #[test]
    fn star_contact_is_detected_not_parsed() {
        let h = headers(&[("Contact", "*")]);
        assert!(h.contact_is_star());
        assert_eq!(h.contacts(), Err(ParseError::BadHeader("Contact")));
        let h = headers(&[("m", "<sip:a@b>;expires=60, \"X\" <sip:c@d>")]);
        let c = h.contacts().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].params.value("expires"), Some("60"));
        assert!(!h.contact_is_star());
    }

    #[test]
    fn presence_headers() {
        let h = headers(&[
            ("o", "presence;id=1"),
            ("u", "Presence, dialog"),
            ("SIP-ETag", "e1"),
            ("sip-if-match", "e0"),
            ("Subscription-State", "active;expires=600"),
            ("Require", "eventlist"),
        ]);
        assert_eq!(h.event().unwrap().unwrap().package, "presence");
        assert_eq!(h.allow_events(), ["presence", "dialog"]);
        assert_eq!(h.sip_etag(), Some("e1"));
        assert_eq!(h.sip_if_match(), Some("e0"));
        assert_eq!(h.subscription_state().unwrap().unwrap().expires, Some(600));
        assert_eq!(h.require(), ["eventlist"]);
    }

    #[test]
    fn routes_keep_order() {
        let h = headers(&[
            ("Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
            ("Record-Route", "<sip:rr.example.com;lr>"),
        ]);
        let r = h.routes().unwrap();
        let hosts: Vec<String> = r
            .iter()
            .map(|n| n.uri.as_sip().map(SipUri::host_port).unwrap_or_default())
            .collect();
        assert_eq!(hosts, ["p1.example.com", "p2.example.com"]);
        assert_eq!(h.record_routes().unwrap().len(), 1);
    }
}
