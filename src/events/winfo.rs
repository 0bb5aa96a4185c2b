//! The `presence.winfo` event package (RFC 3857) and its `application/watcherinfo+xml`
//! documents (RFC 3858): a presentity watches who watches it. Nothing is published for
//! it; the engine builds the documents from the watchers table and this module only
//! knows their shape. The `version` attribute counts NOTIFYs per subscription, so it is
//! stamped into each watcher's copy through [`EventPackage::watcher_body`].

use crate::events::package::{BodyError, EventPackage};
use crate::store::{Watcher, status};

/// RFC 3858 §4.
pub const WATCHERINFO_NS: &str = "urn:ietf:params:xml:ns:watcherinfo";
pub const CONTENT_TYPE: &str = "application/watcherinfo+xml";
/// The template-package suffix (RFC 3857 §3).
pub const SUFFIX: &str = ".winfo";
/// Stands in for the per-subscription version until `watcher_body` stamps it.
const VERSION_MARK: &str = "version=\"#\"";

/// `presence.winfo`: the watcher list of a presentity's `presence` subscriptions.
pub struct PresenceWinfo;

impl EventPackage for PresenceWinfo {
    fn name(&self) -> &str {
        "presence.winfo"
    }
    fn publish_types(&self) -> &[&str] {
        &[]
    }
    fn notify_type(&self) -> &str {
        CONTENT_TYPE
    }
    fn validate(&self, _body: &[u8]) -> Result<(), BodyError> {
        Err(BodyError("presence.winfo cannot be published".into()))
    }
    fn aggregate(&self, _resource: &str, _bodies: &[&[u8]]) -> Vec<u8> {
        Vec::new()
    }
    fn empty_body(&self, _resource: &str) -> Option<Vec<u8>> {
        None
    }
    /// RFC 3857 §5.2: only the presentity may see who watches it.
    fn owner_only(&self) -> bool {
        true
    }
    fn watcher_body(&self, shared: &[u8], version: u32) -> Option<Vec<u8>> {
        Some(stamp_version(shared, version))
    }
    fn watches(&self) -> Option<&str> {
        watched_event(self.name())
    }
    fn watcher_document(&self, resource: &str, rows: &[Watcher], full: bool) -> Vec<u8> {
        let state = if full {
            DocState::Full
        } else {
            DocState::Partial
        };
        document(resource, self.watches().unwrap_or_default(), state, rows)
    }
}

/// The package a `*.winfo` package reports on (`presence` for `presence.winfo`).
pub fn watched_event(winfo_event: &str) -> Option<&str> {
    winfo_event
        .strip_suffix(SUFFIX)
        .filter(|base| !base.is_empty())
}

/// Whether a whole document or only the changed watchers is sent (RFC 3858 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocState {
    Full,
    Partial,
}

/// RFC 3857 §3.3 status of a watchers row.
fn status_name(s: u8) -> &'static str {
    match s {
        status::ACTIVE => "active",
        status::PENDING => "pending",
        status::WAITING => "waiting",
        _ => "terminated",
    }
}

/// RFC 3857 §3.4 event names; a row's reason is one of them or the subscription is new.
fn event_name(w: &Watcher) -> &'static str {
    const EVENTS: [&str; 8] = [
        "subscribe",
        "approved",
        "deactivated",
        "probation",
        "rejected",
        "timeout",
        "giveup",
        "noresource",
    ];
    w.reason
        .as_deref()
        .and_then(|r| EVENTS.iter().find(|e| **e == r))
        .copied()
        .unwrap_or("subscribe")
}

/// A stable `id` per watcher (RFC 3858 §4.3 asks for one that identifies it across
/// documents): FNV-1a of its URI and event, in hex.
pub fn watcher_id(w: &Watcher) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in w.watcher_uri.bytes().chain([0]).chain(w.event.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("w{h:016x}")
}

/// A watcherinfo document for `resource`'s `package` watchers; its version is stamped
/// later per subscription.
pub fn document(resource: &str, package: &str, state: DocState, watchers: &[Watcher]) -> Vec<u8> {
    let mut out = String::with_capacity(256 + watchers.len() * 160);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<watcherinfo xmlns=\"");
    out.push_str(WATCHERINFO_NS);
    out.push_str("\" ");
    out.push_str(VERSION_MARK);
    out.push_str(" state=\"");
    out.push_str(match state {
        DocState::Full => "full",
        DocState::Partial => "partial",
    });
    out.push_str("\">\n<watcher-list resource=\"");
    escape(&mut out, resource);
    out.push_str("\" package=\"");
    escape(&mut out, package);
    out.push_str("\">\n");
    for w in watchers {
        out.push_str("<watcher id=\"");
        out.push_str(&watcher_id(w));
        out.push_str("\" status=\"");
        out.push_str(status_name(w.status));
        out.push_str("\" event=\"");
        out.push_str(event_name(w));
        out.push_str("\">");
        escape(&mut out, &w.watcher_uri);
        out.push_str("</watcher>\n");
    }
    out.push_str("</watcher-list>\n</watcherinfo>\n");
    out.into_bytes()
}

/// Replaces the version mark with `version`; a body without it is returned unchanged.
fn stamp_version(doc: &[u8], version: u32) -> Vec<u8> {
    let mark = VERSION_MARK.as_bytes();
    match doc.windows(mark.len()).position(|w| w == mark) {
        Some(at) => {
            let mut out = Vec::with_capacity(doc.len() + 10);
            out.extend_from_slice(doc.get(..at).unwrap_or_default());
            out.extend_from_slice(format!("version=\"{version}\"").as_bytes());
            out.extend_from_slice(doc.get(at + mark.len()..).unwrap_or_default());
            out
        }
        None => doc.to_vec(),
    }
}

/// Escapes text for an attribute or element; control characters XML forbids are dropped.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    fn row(uri: &str, status: u8, reason: Option<&str>) -> Watcher {
        Watcher {
            presentity_uri: "sip:alice@example.com".into(),
            watcher_uri: uri.into(),
            event: "presence".into(),
            status,
            reason: reason.map(str::to_owned),
            inserted_time: 0,
        }
    }

    #[test]
    fn documents_are_well_formed_watcherinfo_with_the_version_stamped_per_watcher() {
        let doc = document(
            "sip:alice@example.com",
            "presence",
            DocState::Full,
            &[
                row("sip:bob@example.com", status::PENDING, None),
                row("sip:c&d@example.com", status::ACTIVE, Some("approved")),
            ],
        );
        let stamped = PresenceWinfo.watcher_body(&doc, 7).unwrap();
        let root = xml::parse(&stamped).unwrap();
        assert!(root.is("watcherinfo", WATCHERINFO_NS));
        assert_eq!(root.attr("version"), Some("7"));
        assert_eq!(root.attr("state"), Some("full"));
        let list = root.get_child("watcher-list", WATCHERINFO_NS).unwrap();
        assert_eq!(list.attr("package"), Some("presence"));
        let got: Vec<(String, String, String)> = list
            .children()
            .map(|w| {
                (
                    w.attr("status").unwrap().to_owned(),
                    w.attr("event").unwrap().to_owned(),
                    w.text(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "pending".into(),
                    "subscribe".into(),
                    "sip:bob@example.com".into()
                ),
                (
                    "active".into(),
                    "approved".into(),
                    "sip:c&d@example.com".into()
                )
            ]
        );
    }

    #[test]
    fn watcher_ids_are_stable_and_distinct() {
        let a = row("sip:bob@example.com", status::PENDING, None);
        let b = row("sip:bob@example.com", status::ACTIVE, Some("approved"));
        let c = row("sip:carol@example.com", status::PENDING, None);
        assert_eq!(watcher_id(&a), watcher_id(&b));
        assert_ne!(watcher_id(&a), watcher_id(&c));
    }

    #[test]
    fn the_watched_event_is_the_name_without_winfo() {
        assert_eq!(watched_event("presence.winfo"), Some("presence"));
        assert_eq!(watched_event("presence"), None);
        assert_eq!(watched_event(".winfo"), None);
    }
}
