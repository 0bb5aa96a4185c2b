//! The `dialog` event package (RFC 4235) and its shared-line variant `dialog;sla`
//! (draft-anil-sipping-bla), both with `application/dialog-info+xml` bodies: phones and
//! PBXs publish the calls of a line, and busy-lamp-field watchers see every call of the
//! presentity in one document.
//!
//! The aggregate is computed once per change with version 0; each watcher's NOTIFY gets
//! its own `version` (RFC 4235 §4.1.1) by patching the digits in the root start tag,
//! which this module writes itself and so knows exactly where they are.

use std::collections::HashSet;
use std::fmt;

use minidom::Element;

use crate::events::package::{BodyError, EventPackage};
use crate::xml::{self, Scope, XmlError};

/// RFC 4235 §4.1: the dialog-info namespace.
pub const DIALOG_INFO_NS: &str = "urn:ietf:params:xml:ns:dialog-info";
/// RFC 4235 §4.1: the body's media type.
pub const CONTENT_TYPE: &str = "application/dialog-info+xml";

/// Everything of an aggregate before the version digits. Both `aggregate` and
/// `empty_body` start with it, so `watcher_body` can find the version without parsing.
const ROOT_PREFIX: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
    <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"";

/// RFC 4235 dialog, or with `sla` the BLA variant selected by `Event: dialog;sla`.
pub struct DialogInfo {
    pub sla: bool,
}

impl EventPackage for DialogInfo {
    fn name(&self) -> &str {
        "dialog"
    }
    fn selector_params(&self) -> &[&str] {
        if self.sla { &["sla"] } else { &[] }
    }
    fn publish_types(&self) -> &[&str] {
        &[CONTENT_TYPE]
    }
    fn notify_type(&self) -> &str {
        CONTENT_TYPE
    }
    fn validate(&self, body: &[u8]) -> Result<(), BodyError> {
        parse(body)
            .map(|_| ())
            .map_err(|e| BodyError(format!("dialog-info: {e}")))
    }
    fn aggregate(&self, resource: &str, bodies: &[&[u8]]) -> Vec<u8> {
        aggregate(resource, bodies)
    }
    fn empty_body(&self, resource: &str) -> Option<Vec<u8>> {
        // RFC 4235 §3.7: a full document with no dialogs means "no calls".
        Some(aggregate(resource, &[]))
    }
    fn watcher_body(&self, shared: &[u8], version: u32) -> Option<Vec<u8>> {
        with_version(shared, version)
    }
}

/// Why a body is not an acceptable dialog-info document. `Display` is short and fixed so
/// it can go into a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogInfoError {
    NotUtf8,
    NotWellFormed,
    TooDeep,
    NotDialogInfo,
    WrongNamespace,
    BadVersion,
    BadState,
    MissingEntity,
    DialogWithoutId,
    DialogWithoutState,
}

impl fmt::Display for DialogInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DialogInfoError::NotUtf8 => "not UTF-8",
            DialogInfoError::NotWellFormed => "not well-formed XML",
            DialogInfoError::TooDeep => "nesting too deep",
            DialogInfoError::NotDialogInfo => "root is not dialog-info",
            DialogInfoError::WrongNamespace => "dialog-info not in its namespace",
            DialogInfoError::BadVersion => "version is not a number",
            DialogInfoError::BadState => "state is not full or partial",
            DialogInfoError::MissingEntity => "missing entity",
            DialogInfoError::DialogWithoutId => "dialog without id",
            DialogInfoError::DialogWithoutState => "dialog without state",
        })
    }
}

impl std::error::Error for DialogInfoError {}

/// Parses and checks a dialog-info document (RFC 4235 §4.1.1 root attributes, §4.1.2
/// dialog id and state). Parsing is [`xml::parse`]'s restricted XML: no DTD, no entity
/// expansion, bounded depth.
pub fn parse(body: &[u8]) -> Result<Element, DialogInfoError> {
    let root = xml::parse(body).map_err(|e| match e {
        XmlError::NotUtf8 => DialogInfoError::NotUtf8,
        XmlError::TooDeep => DialogInfoError::TooDeep,
        XmlError::NotWellFormed => DialogInfoError::NotWellFormed,
    })?;
    if root.name() != "dialog-info" {
        return Err(DialogInfoError::NotDialogInfo);
    }
    if !root.has_ns(DIALOG_INFO_NS) {
        return Err(DialogInfoError::WrongNamespace);
    }
    let version = root.attr("version").unwrap_or_default();
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DialogInfoError::BadVersion);
    }
    if !matches!(root.attr("state"), Some("full" | "partial")) {
        return Err(DialogInfoError::BadState);
    }
    if root.attr("entity").is_none_or(|e| e.trim().is_empty()) {
        return Err(DialogInfoError::MissingEntity);
    }
    for dialog in dialogs(&root) {
        if dialog.attr("id").is_none_or(str::is_empty) {
            return Err(DialogInfoError::DialogWithoutId);
        }
        if !dialog.has_child("state", DIALOG_INFO_NS) {
            return Err(DialogInfoError::DialogWithoutState);
        }
    }
    Ok(root)
}

fn dialogs(root: &Element) -> impl Iterator<Item = &Element> {
    root.children().filter(|c| c.is("dialog", DIALOG_INFO_NS))
}

/// One `state="full"` document for `entity` holding every `<dialog>` of the publications,
/// given newest first; a dialog id already seen in a newer publication is left out, so
/// the newest word on each call wins. Invalid publications are skipped. The version is 0
/// until `with_version` patches it per watcher.
pub fn aggregate(entity: &str, publications: &[&[u8]]) -> Vec<u8> {
    let docs: Vec<Element> = publications
        .iter()
        .filter_map(|body| parse(body).ok())
        .collect();
    let mut out = String::with_capacity(publications.iter().map(|p| p.len()).sum::<usize>() + 200);
    out.push_str(ROOT_PREFIX);
    out.push_str("0\" state=\"full\" entity=\"");
    xml::escape_attr(&mut out, &xml::chars_only(entity));
    out.push('"');
    let mut seen: HashSet<&str> = HashSet::new();
    let mut any = false;
    let mut scope = Scope::default();
    scope.push(None, DIALOG_INFO_NS.to_owned());
    for doc in &docs {
        for dialog in dialogs(doc) {
            let id = dialog.attr("id").unwrap_or_default();
            if !seen.insert(id) {
                continue;
            }
            if !any {
                out.push('>');
                any = true;
            }
            xml::write_element(&mut out, dialog, &mut scope);
        }
    }
    if any {
        out.push_str("</dialog-info>\n");
    } else {
        out.push_str("/>\n");
    }
    out.into_bytes()
}

/// `shared` with its root `version` set to `version`; `None` when `shared` is not a
/// document `aggregate` wrote.
pub fn with_version(shared: &[u8], version: u32) -> Option<Vec<u8>> {
    let rest = shared.strip_prefix(ROOT_PREFIX.as_bytes())?;
    let digits = rest.iter().position(|b| *b == b'"')?;
    let tail = rest.get(digits..)?;
    let number = version.to_string();
    let mut out = Vec::with_capacity(shared.len() + number.len());
    out.extend_from_slice(ROOT_PREFIX.as_bytes());
    out.extend_from_slice(number.as_bytes());
    out.extend_from_slice(tail);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "sip:alice@example.com";

    fn doc(version: u32, dialogs: &[(&str, &str)]) -> String {
        let mut s = format!(
            "<?xml version=\"1.0\"?>\n<dialog-info xmlns=\"{DIALOG_INFO_NS}\" version=\"{version}\" \
             state=\"full\" entity=\"{ALICE}\">"
        );
        for (id, state) in dialogs {
            s.push_str(&format!(
                "<dialog id=\"{id}\" direction=\"initiator\"><state>{state}</state></dialog>"
            ));
        }
        s.push_str("</dialog-info>");
        s
    }

    fn states(body: &[u8]) -> Vec<(String, String)> {
        let root = parse(body).unwrap();
        dialogs(&root)
            .map(|d| {
                let state = d.get_child("state", DIALOG_INFO_NS).unwrap().text();
                (d.attr("id").unwrap().to_string(), state)
            })
            .collect()
    }

    #[test]
    fn valid_documents_pass_and_broken_ones_say_why() {
        assert!(parse(doc(3, &[("a", "confirmed")]).as_bytes()).is_ok());
        assert!(parse(doc(0, &[]).as_bytes()).is_ok());
        let cases: [(&str, DialogInfoError); 7] = [
            ("<dialog-info", DialogInfoError::NotWellFormed),
            (
                "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"/>",
                DialogInfoError::NotDialogInfo,
            ),
            (
                "<dialog-info xmlns=\"urn:x\" version=\"0\" state=\"full\" entity=\"e\"/>",
                DialogInfoError::WrongNamespace,
            ),
            (
                "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"x\" state=\"full\" entity=\"e\"/>",
                DialogInfoError::BadVersion,
            ),
            (
                "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"some\" entity=\"e\"/>",
                DialogInfoError::BadState,
            ),
            (
                "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\"/>",
                DialogInfoError::MissingEntity,
            ),
            (
                "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\" entity=\"e\"><dialog><state>early</state></dialog></dialog-info>",
                DialogInfoError::DialogWithoutId,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.as_bytes()).err(), Some(want), "{body}");
        }
        let no_state = "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" \
                        state=\"full\" entity=\"e\"><dialog id=\"a\"/></dialog-info>";
        assert_eq!(
            parse(no_state.as_bytes()).err(),
            Some(DialogInfoError::DialogWithoutState)
        );
    }

    #[test]
    fn aggregate_holds_every_dialog_newest_first_and_newest_wins_per_id() {
        let newer = doc(7, &[("call-2", "confirmed"), ("call-1", "terminated")]);
        let older = doc(2, &[("call-1", "early"), ("call-3", "trying")]);
        let body = aggregate(ALICE, &[newer.as_bytes(), older.as_bytes()]);
        let root = parse(&body).unwrap();
        assert_eq!(root.attr("state"), Some("full"));
        assert_eq!(root.attr("entity"), Some(ALICE));
        assert_eq!(root.attr("version"), Some("0"));
        assert_eq!(
            states(&body),
            [
                ("call-2".into(), "confirmed".into()),
                ("call-1".into(), "terminated".into()),
                ("call-3".into(), "trying".into()),
            ]
        );
    }

    #[test]
    fn prefixed_publications_and_extension_namespaces_stay_resolvable() {
        let prefixed = format!(
            "<d:dialog-info xmlns:d=\"{DIALOG_INFO_NS}\" xmlns:sa=\"urn:ietf:params:xml:ns:sa-dialog-info\" \
             version=\"1\" state=\"full\" entity=\"{ALICE}\"><d:dialog id=\"x\"><d:state>confirmed</d:state>\
             <sa:appearance>1</sa:appearance></d:dialog></d:dialog-info>"
        );
        let body = aggregate(ALICE, &[prefixed.as_bytes()]);
        let root = parse(&body).unwrap();
        let dialog = dialogs(&root).next().unwrap();
        assert!(dialog.has_child("appearance", "urn:ietf:params:xml:ns:sa-dialog-info"));
    }

    #[test]
    fn invalid_publications_are_skipped_and_nothing_gives_an_empty_full_document() {
        let body = aggregate(ALICE, &[b"<oops", doc(1, &[("a", "early")]).as_bytes()]);
        assert_eq!(states(&body).len(), 1);
        let empty = DialogInfo { sla: false }.empty_body(ALICE).unwrap();
        let root = parse(&empty).unwrap();
        assert_eq!(root.attr("state"), Some("full"));
        assert_eq!(dialogs(&root).count(), 0);
    }

    #[test]
    fn entity_is_escaped() {
        let body = aggregate("sip:a\"b&c@example.com", &[]);
        let root = parse(&body).unwrap();
        assert_eq!(root.attr("entity"), Some("sip:a\"b&c@example.com"));
    }

    #[test]
    fn watcher_version_is_patched_into_the_root_only() {
        let shared = aggregate(ALICE, &[doc(9, &[("a", "confirmed")]).as_bytes()]);
        for v in [0, 1, 42, u32::MAX] {
            let mine = with_version(&shared, v).unwrap();
            let root = parse(&mine).unwrap();
            assert_eq!(root.attr("version"), Some(v.to_string().as_str()));
            assert_eq!(states(&mine), states(&shared));
        }
        assert_eq!(with_version(b"<dialog-info/>", 3), None);
    }

    #[test]
    fn sla_variant_is_selected_by_its_parameter() {
        assert!(DialogInfo { sla: false }.selector_params().is_empty());
        assert_eq!(DialogInfo { sla: true }.selector_params(), ["sla"]);
    }
}
