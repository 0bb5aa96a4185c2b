//! XCAP (RFC 4825) at document level: the application usages presenced understands,
//! XCAP URI paths, document checks and preconditions — the sans-I/O part shared by the
//! built-in HTTP server ([`server`]) and the fetcher for external servers ([`fetch`]).
//! Both write the `xcap` table and report a [`Changed`] document to the engine.

pub mod fetch;
pub mod http;
pub mod integrated;

use std::fmt;

use crate::events::presence::pidf;
use crate::store::xcap::doc_type;
use crate::xml::{self, XmlError};

/// One application usage (RFC 4825 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auid {
    pub name: &'static str,
    /// OpenSIPS `doc_type`.
    pub doc_type: u8,
    pub mime: &'static str,
    pub root: &'static str,
    pub ns: &'static str,
}

/// The usages documents can be stored for. Both pres-rules AUIDs (IETF RFC 5025 §9 and
/// OMA's) carry common-policy rulesets and feed the same authorization.
pub const AUIDS: [Auid; 6] = [
    Auid {
        name: "pres-rules",
        doc_type: doc_type::PRES_RULES,
        mime: "application/auth-policy+xml",
        root: "ruleset",
        ns: crate::policy::rules::COMMON_POLICY_NS,
    },
    Auid {
        name: "org.openmobilealliance.pres-rules",
        doc_type: doc_type::PRES_RULES,
        mime: "application/auth-policy+xml",
        root: "ruleset",
        ns: crate::policy::rules::COMMON_POLICY_NS,
    },
    Auid {
        name: "resource-lists",
        doc_type: doc_type::RESOURCE_LISTS,
        mime: "application/resource-lists+xml",
        root: "resource-lists",
        ns: "urn:ietf:params:xml:ns:resource-lists",
    },
    Auid {
        name: "rls-services",
        doc_type: doc_type::RLS_SERVICES,
        mime: "application/rls-services+xml",
        root: "rls-services",
        ns: "urn:ietf:params:xml:ns:rls-services",
    },
    Auid {
        name: "pidf-manipulation",
        doc_type: doc_type::PIDF_MANIPULATION,
        mime: "application/pidf+xml",
        root: "presence",
        ns: pidf::PIDF_NS,
    },
    Auid {
        name: "im-rules",
        doc_type: doc_type::IM_RULES,
        mime: "application/auth-policy+xml",
        root: "ruleset",
        ns: crate::policy::rules::COMMON_POLICY_NS,
    },
];

/// The xcap-caps usage (RFC 4825 §12), served from the global tree only.
pub const XCAP_CAPS: &str = "xcap-caps";
pub const XCAP_CAPS_MIME: &str = "application/xcap-caps+xml";
/// RFC 4825 §11: the error document's type and namespace.
pub const ERROR_MIME: &str = "application/xcap-error+xml";
const ERROR_NS: &str = "urn:ietf:params:xml:ns:xcap-error";
/// The default document name of a user's presence documents (RFC 5025 §9.5).
pub const DEFAULT_DOCUMENT: &str = "index";

pub fn auid(name: &str) -> Option<&'static Auid> {
    AUIDS.iter().find(|a| a.name == name)
}

/// The first AUID of an OpenSIPS doc_type (for fetching).
pub fn auid_for_type(t: u8) -> Option<&'static Auid> {
    AUIDS.iter().find(|a| a.doc_type == t)
}

/// A document was written, replaced or removed: the engine re-evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub username: String,
    pub domain: String,
    pub doc_type: u8,
}

/// A [`Changed`] on its way to the engine, with whom to tell once it was applied (the
/// XCAP server answers a write only after its watchers were re-evaluated).
pub type Notice = (Changed, Option<smol::channel::Sender<()>>);

/// A parsed XCAP document URI path (below the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XcapPath {
    /// `<auid>/users/<xui>/<document>`.
    User {
        auid: &'static Auid,
        /// The XUI, e.g. `sip:alice@example.com`.
        xui: String,
        username: String,
        domain: String,
        document: String,
    },
    /// `xcap-caps/global/index`.
    Caps,
}

/// Why a path names no document presenced serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    OutsideRoot,
    UnknownAuid,
    /// Not `users/<xui>/<doc>` or `global/index`.
    BadTree,
    /// The XUI is not `sip:user@domain`.
    BadXui,
    /// A node selector (`~~`): presenced stores whole documents only.
    NodeSelector,
    BadEscape,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::OutsideRoot => "not below the XCAP root",
            PathError::UnknownAuid => "unknown application usage",
            PathError::BadTree => "not a users/<xui>/<document> path",
            PathError::BadXui => "the XUI is not a sip:user@domain URI",
            PathError::NodeSelector => "node selectors are not supported",
            PathError::BadEscape => "bad percent-encoding",
        })
    }
}

/// Parses `path` (absolute, percent-encoded, query ignored) below `root` (e.g.
/// `/xcap-root`).
pub fn parse_path(root: &str, path: &str) -> Result<XcapPath, PathError> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path
        .strip_prefix(root.trim_end_matches('/'))
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(PathError::OutsideRoot)?;
    let rest = percent_decode(rest).ok_or(PathError::BadEscape)?;
    if rest.contains("~~") {
        return Err(PathError::NodeSelector);
    }
    let (auid_name, rest) = rest.split_once('/').ok_or(PathError::BadTree)?;
    if auid_name == XCAP_CAPS {
        return match rest {
            "global/index" => Ok(XcapPath::Caps),
            _ => Err(PathError::BadTree),
        };
    }
    let auid = auid(auid_name).ok_or(PathError::UnknownAuid)?;
    let rest = rest.strip_prefix("users/").ok_or(PathError::BadTree)?;
    let (xui, document) = rest.split_once('/').ok_or(PathError::BadTree)?;
    if document.is_empty() || document.ends_with('/') || document.split('/').any(|s| s == "..") {
        return Err(PathError::BadTree);
    }
    let (username, domain) = crate::presence::split_aor(xui).ok_or(PathError::BadXui)?;
    if !xui.starts_with("sip:") && !xui.starts_with("sips:") {
        return Err(PathError::BadXui);
    }
    Ok(XcapPath::User {
        auid,
        username: username.to_owned(),
        domain: domain.to_owned(),
        xui: xui.to_owned(),
        document: document.to_owned(),
    })
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    // A NUL cannot be part of a store key.
    (!s.contains('\0')).then_some(s)
}

/// Why a document body is refused (RFC 4825 §11 error conditions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    TooLarge(usize),
    NotUtf8,
    NotWellFormed,
    /// Wrong root element or namespace for the usage, or invalid content.
    Schema(String),
    /// A value the usage requires to be unique is not (RFC 4825 §11.5): the field, the
    /// value, and values that would be free.
    NotUnique {
        field: String,
        value: String,
        alternatives: Vec<String>,
    },
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocError::TooLarge(n) => write!(f, "document of {n} bytes is too large"),
            DocError::NotUtf8 => write!(f, "document is not UTF-8"),
            DocError::NotWellFormed => write!(f, "document is not well-formed XML"),
            DocError::Schema(why) => write!(f, "document does not fit its usage: {why}"),
            DocError::NotUnique { field, value, .. } => {
                write!(f, "{field} {value} is already taken")
            }
        }
    }
}

impl DocError {
    /// The RFC 4825 §11 error document (body of a 409).
    pub fn error_body(&self) -> Vec<u8> {
        let element = match self {
            DocError::NotUtf8 => "<not-utf-8/>".to_owned(),
            DocError::NotWellFormed | DocError::TooLarge(_) => "<not-well-formed/>".to_owned(),
            DocError::Schema(_) => "<schema-validation-error/>".to_owned(),
            DocError::NotUnique {
                field,
                alternatives,
                ..
            } => {
                let mut out = String::from("<uniqueness-failure><exists field=\"");
                crate::xml::escape_attr(&mut out, field);
                out.push_str("\">");
                for alt in alternatives {
                    out.push_str("<alt-value>");
                    crate::xml::escape_attr(&mut out, alt);
                    out.push_str("</alt-value>");
                }
                out.push_str("</exists></uniqueness-failure>");
                out
            }
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-error xmlns=\"{ERROR_NS}\">{element}</xcap-error>\n"
        )
        .into_bytes()
    }
}

/// Checks that `doc` is a document of `auid`: within `max` bytes, UTF-8, well-formed,
/// the usage's root element in its namespace; pidf-manipulation must be valid PIDF.
pub fn validate(auid: &Auid, doc: &[u8], max: usize) -> Result<(), DocError> {
    if doc.len() > max {
        return Err(DocError::TooLarge(doc.len()));
    }
    let root = xml::parse(doc).map_err(|e| match e {
        XmlError::NotUtf8 => DocError::NotUtf8,
        XmlError::NotWellFormed | XmlError::TooDeep => DocError::NotWellFormed,
    })?;
    if !root.is(auid.root, auid.ns) {
        return Err(DocError::Schema(format!(
            "root must be {{{}}}{}, found {{{}}}{}",
            auid.ns,
            auid.root,
            root.ns(),
            root.name()
        )));
    }
    if auid.doc_type == doc_type::PIDF_MANIPULATION {
        pidf::validate_pidf(doc).map_err(|e| DocError::Schema(e.to_string()))?;
    }
    let lists = match auid.doc_type {
        doc_type::RESOURCE_LISTS => crate::rls::lists::check_resource_lists(&root),
        doc_type::RLS_SERVICES => crate::rls::lists::check_rls_services(&root).map(drop),
        _ => Ok(()),
    };
    lists.map_err(|e| match e {
        crate::rls::lists::Invalid::Schema(why) => DocError::Schema(why),
        crate::rls::lists::Invalid::NotUnique { field, value } => DocError::NotUnique {
            field: field.to_owned(),
            value,
            alternatives: Vec::new(),
        },
    })
}

/// RFC 4826 §4.4.x: a service URI is unique on the server. The URIs `doc` (an
/// rls-services document for `doc_uri`) defines that another stored document already
/// defines, as the 409 to answer, with free alternatives to suggest.
pub fn taken_services(
    doc: &[u8],
    doc_uri: &str,
    others: impl Iterator<Item = crate::store::Xcap>,
) -> Result<(), DocError> {
    let Ok(root) = xml::parse(doc) else {
        return Ok(());
    };
    let Ok(ours) = crate::rls::lists::check_rls_services(&root) else {
        return Ok(());
    };
    let mut taken = std::collections::HashSet::new();
    for other in others {
        if other.doc_type != doc_type::RLS_SERVICES || other.doc_uri == doc_uri {
            continue;
        }
        if let Ok(r) = xml::parse(&other.doc)
            && let Ok(uris) = crate::rls::lists::check_rls_services(&r)
        {
            taken.extend(uris);
        }
    }
    match ours.into_iter().find(|u| taken.contains(u)) {
        None => Ok(()),
        Some(value) => {
            let (user, host) = value.split_once('@').unwrap_or((value.as_str(), ""));
            let alternatives = (1..100)
                .map(|n| format!("{user}-{n}@{host}"))
                .filter(|a| !taken.contains(a))
                .take(3)
                .collect();
            Err(DocError::NotUnique {
                field: "rls-services/service/@uri".into(),
                value,
                alternatives,
            })
        }
    }
}

/// A strong entity tag for a document's bytes (content-derived, so an unchanged
/// document keeps its tag across restarts and fetches).
pub fn etag_of(doc: &[u8]) -> String {
    format!("{:016x}-{:x}", fnv1a(doc), doc.len())
}

/// FNV-1a, 64 bits: a stable, content-derived (not secret) hash of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The xcap-caps document (RFC 4825 §12.2) listing what this server serves.
pub fn caps_document() -> Vec<u8> {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xcap-caps xmlns=\"urn:ietf:params:xml:ns:xcap-caps\">\n<auids>\n",
    );
    out.push_str("<auid>xcap-caps</auid>\n");
    for a in &AUIDS {
        out.push_str(&format!("<auid>{}</auid>\n", a.name));
    }
    out.push_str("</auids>\n<extensions/>\n<namespaces>\n");
    let mut seen: Vec<&str> = Vec::new();
    for ns in AUIDS.iter().map(|a| a.ns).chain([
        crate::events::presence::rules::PRES_RULES_NS,
        "urn:ietf:params:xml:ns:xcap-caps",
        ERROR_NS,
    ]) {
        if !seen.contains(&ns) {
            seen.push(ns);
            out.push_str(&format!("<namespace>{ns}</namespace>\n"));
        }
    }
    out.push_str("</namespaces>\n</xcap-caps>\n");
    out.into_bytes()
}

/// What an `If-Match`/`If-None-Match` pair says about a request on a document whose
/// current tag is `current` (RFC 7232 §3.1, §3.2, as RFC 4825 §7.11 uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    /// 412 Precondition Failed.
    Failed,
    /// 304 Not Modified (a GET whose If-None-Match matched).
    NotModified,
}

pub fn check_preconditions(
    if_match: Option<&str>,
    if_none_match: Option<&str>,
    current: Option<&str>,
    is_get: bool,
) -> Precondition {
    let listed = |header: &str, tag: &str| {
        header.split(',').any(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            t.trim_matches('"') == tag
        })
    };
    if let Some(h) = if_match {
        let ok = match current {
            None => false,
            Some(_) if h.trim() == "*" => true,
            Some(tag) => listed(h, tag),
        };
        if !ok {
            return Precondition::Failed;
        }
    }
    if let Some(h) = if_none_match {
        let hit = match current {
            None => false,
            Some(_) if h.trim() == "*" => true,
            Some(tag) => listed(h, tag),
        };
        if hit {
            return if is_get {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    }
    Precondition::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_paths_name_auid_user_and_document() {
        let p = parse_path(
            "/xcap-root",
            "/xcap-root/pres-rules/users/sip:alice@example.com/index",
        )
        .unwrap();
        let XcapPath::User {
            auid,
            username,
            domain,
            document,
            ..
        } = p
        else {
            panic!("expected a user path")
        };
        assert_eq!(
            (
                auid.doc_type,
                username.as_str(),
                domain.as_str(),
                document.as_str()
            ),
            (1, "alice", "example.com", "index")
        );
        let p = parse_path(
            "/xcap-root/",
            "/xcap-root/org.openmobilealliance.pres-rules/users/sip%3Aalice%40example.com/x/y",
        )
        .unwrap();
        assert!(
            matches!(p, XcapPath::User { auid, document, .. } if auid.doc_type == 1 && document == "x/y")
        );
        assert_eq!(
            parse_path("/xcap-root", "/xcap-root/xcap-caps/global/index"),
            Ok(XcapPath::Caps)
        );
    }

    #[test]
    fn bad_paths_say_why() {
        let cases = [
            (
                "/other/pres-rules/users/sip:a@b/index",
                PathError::OutsideRoot,
            ),
            ("/xcap-root/foo/users/sip:a@b/index", PathError::UnknownAuid),
            ("/xcap-root/pres-rules/global/index", PathError::BadTree),
            ("/xcap-root/pres-rules/users/alice/index", PathError::BadXui),
            ("/xcap-root/pres-rules/users/sip:a@b/", PathError::BadTree),
            (
                "/xcap-root/pres-rules/users/sip:a@b/../x",
                PathError::BadTree,
            ),
            (
                "/xcap-root/pres-rules/users/sip:a@b/index/~~/ruleset",
                PathError::NodeSelector,
            ),
            (
                "/xcap-root/pres-rules/users/sip:a@b/in%zzdex",
                PathError::BadEscape,
            ),
            (
                "/xcap-root/pres-rules/users/sip:a@b/in%00dex",
                PathError::BadEscape,
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_path("/xcap-root", path), Err(want), "{path}");
        }
    }

    #[test]
    fn documents_are_checked_against_their_usage() {
        let rules = auid("pres-rules").unwrap();
        let ok = br#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"/>"#;
        assert_eq!(validate(rules, ok, 1000), Ok(()));
        assert_eq!(
            validate(rules, b"<ruleset xmlns=\"urn:x\"", 1000),
            Err(DocError::NotWellFormed)
        );
        assert!(matches!(
            validate(rules, br#"<ruleset xmlns="urn:x"/>"#, 1000),
            Err(DocError::Schema(_))
        ));
        assert_eq!(validate(rules, ok, 10), Err(DocError::TooLarge(ok.len())));
        let pidf = auid("pidf-manipulation").unwrap();
        assert!(matches!(
            validate(
                pidf,
                br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"/>"#,
                1000
            ),
            Err(DocError::Schema(_))
        ));
        let body = String::from_utf8(DocError::NotWellFormed.error_body()).unwrap();
        assert!(body.contains("<not-well-formed/>") && body.contains(ERROR_NS));
    }

    #[test]
    fn preconditions_follow_rfc_7232() {
        use Precondition::*;
        assert_eq!(
            check_preconditions(Some("\"a\""), None, Some("a"), false),
            Proceed
        );
        assert_eq!(
            check_preconditions(Some("\"b\""), None, Some("a"), false),
            Failed
        );
        assert_eq!(check_preconditions(Some("*"), None, None, false), Failed);
        assert_eq!(
            check_preconditions(None, Some("*"), Some("a"), false),
            Failed
        );
        assert_eq!(check_preconditions(None, Some("*"), None, false), Proceed);
        assert_eq!(
            check_preconditions(None, Some("\"x\", \"a\""), Some("a"), true),
            NotModified
        );
        assert_eq!(
            check_preconditions(None, Some("\"x\""), Some("a"), true),
            Proceed
        );
    }

    #[test]
    fn caps_list_every_auid() {
        let caps = String::from_utf8(caps_document()).unwrap();
        for a in &AUIDS {
            assert!(caps.contains(&format!("<auid>{}</auid>", a.name)));
        }
        assert!(xml::parse(caps.as_bytes()).is_ok());
    }
}
