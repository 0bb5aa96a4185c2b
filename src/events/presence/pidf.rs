//! PIDF presence bodies (RFC 3863, with RPID RFC 4480 and the data model of RFC 4479):
//! checking what a PUBLISH carries, merging a presentity's publications into the one
//! document a NOTIFY carries, and reading the few facts privacy rules need.
//!
//! Sans-I/O: bytes in, bytes or values out. Reading and writing XML is [`crate::xml`]'s
//! job; this module knows only what PIDF is.

use std::collections::HashSet;
use std::fmt;

use minidom::{Element, NSChoice};

use crate::xml::{self, Scope, XML_DECLARATION, XmlError};
// The tests below name these through `super::*`.
#[cfg(test)]
use crate::xml::MAX_DEPTH;
#[cfg(test)]
use minidom::rxml;

/// RFC 3863 §4.1: the PIDF namespace.
pub const PIDF_NS: &str = "urn:ietf:params:xml:ns:pidf";
/// RFC 4479 §5: person/device elements live here.
pub const DATA_MODEL_NS: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// RFC 4480 §3: activities, mood, sphere, …
pub const RPID_NS: &str = "urn:ietf:params:xml:ns:pidf:rpid";

/// Tuple id of [`closed_document`]; constant so repeated NOTIFYs carry the same tuple.
const CLOSED_TUPLE_ID: &str = "presenced-closed";

/// Why a body is not an acceptable PIDF document. `Display` is short and fixed so it can
/// go into a reason phrase: `format!("Bad Request - PIDF: {err}")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidfError {
    NotUtf8,
    NotWellFormed,
    TooDeep,
    NotPresence,
    WrongNamespace,
    MissingEntity,
    TupleWithoutId,
    TupleWithoutStatus,
}

impl fmt::Display for PidfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PidfError::NotUtf8 => "not UTF-8",
            PidfError::NotWellFormed => "not well-formed XML",
            PidfError::TooDeep => "nesting too deep",
            PidfError::NotPresence => "root is not presence",
            PidfError::WrongNamespace => "presence not in PIDF namespace",
            PidfError::MissingEntity => "missing entity",
            PidfError::TupleWithoutId => "tuple without id",
            PidfError::TupleWithoutStatus => "tuple without status",
        })
    }
}

impl std::error::Error for PidfError {}

impl From<XmlError> for PidfError {
    fn from(e: XmlError) -> PidfError {
        match e {
            XmlError::NotUtf8 => PidfError::NotUtf8,
            XmlError::NotWellFormed => PidfError::NotWellFormed,
            XmlError::TooDeep => PidfError::TooDeep,
        }
    }
}

/// Accepts `body` if it is a well-formed UTF-8 PIDF document: root `presence` in the
/// PIDF namespace with an `entity`, every `tuple` with an `id` and a `status`.
pub fn validate_pidf(body: &[u8]) -> Result<(), PidfError> {
    let doc = parse_pidf(body)?;
    if let Some(entity) = doc.attr("entity") {
        validated::remember(body, entity);
    }
    Ok(())
}

/// Documents this thread recently found valid, by content, with their `entity`. A
/// PUBLISH is validated and then, as the only publication of its presentity (the
/// common single-device case), aggregated at once: the second parse is skipped. The
/// key is the content itself (a per-process keyed 64-bit digest), so an entry never
/// goes stale; the memo is a small FIFO.
mod validated {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};
    use std::hash::{BuildHasher, RandomState};

    const ENTRIES: usize = 1024;

    #[derive(Default)]
    struct Memo {
        keyed: RandomState,
        entity: HashMap<u64, String>,
        order: VecDeque<u64>,
    }

    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
    }

    pub(super) fn remember(body: &[u8], entity: &str) {
        MEMO.with_borrow_mut(|m| {
            let key = m.keyed.hash_one(body);
            if m.entity.insert(key, entity.to_owned()).is_none() {
                m.order.push_back(key);
            }
            while m.order.len() > ENTRIES {
                if let Some(old) = m.order.pop_front() {
                    m.entity.remove(&old);
                }
            }
        });
    }

    /// Whether `body` was found valid with this `entity`.
    pub(super) fn is_valid_for(body: &[u8], entity: &str) -> bool {
        MEMO.with_borrow(|m| {
            m.entity
                .get(&m.keyed.hash_one(body))
                .is_some_and(|e| e == entity)
        })
    }
}

/// Merges a presentity's publications, given newest first, into one PIDF document for
/// `entity`. Every child of every publication is kept in that order, except an element
/// whose `id` already came from a newer publication (newest wins). Invalid publications
/// are skipped; with none left the result is a `presence` without children.
pub fn aggregate(entity: &str, publications: &[&[u8]]) -> Vec<u8> {
    if let [only] = publications
        && let Some(body) = single_unchanged(entity, only)
    {
        return body;
    }
    let docs: Vec<Element> = publications
        .iter()
        .filter_map(|body| parse_pidf(body).ok())
        .collect();

    let mut scope = Scope::default();
    scope.push(None, PIDF_NS.to_owned());
    // Keep the prefixes clients chose (dm:, rpid:, …): some parsers match them literally.
    for doc in &docs {
        for (prefix, uri) in doc.prefixes.declared_prefixes() {
            let declarable = prefix.as_deref().is_some_and(|p| p != "xml");
            if declarable
                && xml::is_sane_declaration(prefix.as_deref(), uri)
                && !scope.binds(prefix)
            {
                scope.push(prefix.clone(), uri.clone());
            }
        }
    }

    let mut out = String::with_capacity(publications.iter().map(|p| p.len()).sum::<usize>() + 128);
    out.push_str(XML_DECLARATION);
    out.push_str("\n<presence");
    scope.write_declarations(&mut out);
    out.push_str(" entity=\"");
    xml::escape_attr(&mut out, &xml::chars_only(entity));
    out.push_str("\">");

    let mut seen_ids: HashSet<&str> = HashSet::new();
    for doc in &docs {
        let mut ids_here = Vec::new();
        for child in doc.children() {
            if let Some(id) = child.attr("id") {
                if seen_ids.contains(id) {
                    continue;
                }
                ids_here.push(id);
            }
            xml::write_element(&mut out, child, &mut scope);
        }
        seen_ids.extend(ids_here);
    }
    out.push_str("</presence>\n");
    out.into_bytes()
}

/// A PIDF document with one `closed` tuple, for a presentity with nothing published.
pub fn closed_document(entity: &str) -> Vec<u8> {
    let mut out = String::with_capacity(256 + entity.len());
    out.push_str(XML_DECLARATION);
    out.push_str("\n<presence xmlns=\"");
    out.push_str(PIDF_NS);
    out.push_str("\" entity=\"");
    xml::escape_attr(&mut out, &xml::chars_only(entity));
    out.push_str("\"><tuple id=\"");
    out.push_str(CLOSED_TUPLE_ID);
    out.push_str("\"><status><basic>closed</basic></status></tuple></presence>\n");
    out.into_bytes()
}

/// The `id` of each tuple, in document order; empty if `body` is not valid PIDF.
pub fn tuple_ids(body: &[u8]) -> Vec<String> {
    let Ok(doc) = parse_pidf(body) else {
        return Vec::new();
    };
    tuples(&doc)
        .filter_map(|t| t.attr("id"))
        .map(str::to_owned)
        .collect()
}

/// The `basic` status (`open`/`closed`) of each tuple that has one, in document order.
pub fn basic_status(body: &[u8]) -> Vec<String> {
    let Ok(doc) = parse_pidf(body) else {
        return Vec::new();
    };
    tuples(&doc)
        .filter_map(|t| t.get_child("status", PIDF_NS))
        .filter_map(|s| s.get_child("basic", PIDF_NS))
        .map(|b| b.text().trim().to_owned())
        .collect()
}

/// Text of every `note` (PIDF, data-model or RPID namespace) at any depth, in document
/// order, trimmed.
pub fn notes(body: &[u8]) -> Vec<String> {
    let Ok(doc) = parse_pidf(body) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    collect_notes(&doc, &mut found);
    found
}

/// The RPID `sphere` of each person (RFC 4480 §3.7). A sphere given as an element
/// (`<rpid:work/>`, `<rpid:home/>`) is reported by that element's name.
pub fn rpid_spheres(body: &[u8]) -> Vec<String> {
    let Ok(doc) = parse_pidf(body) else {
        return Vec::new();
    };
    doc.children()
        // Pre-RFC 4479 RPID drafts put person in the RPID namespace; clients still do.
        .filter(|c| c.is("person", DATA_MODEL_NS) || c.is("person", RPID_NS))
        .filter_map(|p| p.get_child("sphere", RPID_NS))
        .filter_map(|s| {
            let text = s.text();
            let text = text.trim();
            if text.is_empty() {
                s.children().next().map(|c| c.name().to_owned())
            } else {
                Some(text.to_owned())
            }
        })
        .collect()
}

fn tuples(doc: &Element) -> impl Iterator<Item = &Element> {
    doc.children().filter(|c| c.is("tuple", PIDF_NS))
}

fn collect_notes(el: &Element, found: &mut Vec<String>) {
    for child in el.children() {
        if child.name() == "note"
            && child.has_ns(NSChoice::AnyOf(&[PIDF_NS, DATA_MODEL_NS, RPID_NS]))
        {
            found.push(child.text().trim().to_owned());
        } else {
            collect_notes(child, found);
        }
    }
}

/// The one publication as is, when it already names `entity` (the common single-device
/// case); only an XML declaration is added if it lacks one.
fn single_unchanged(entity: &str, body: &[u8]) -> Option<Vec<u8>> {
    if !validated::is_valid_for(body, entity) {
        let doc = parse_pidf(body).ok()?;
        if doc.attr("entity") != Some(entity) {
            return None;
        }
    }
    if body.starts_with(b"<?xml") {
        return Some(body.to_vec());
    }
    if body.starts_with(b"<") {
        let mut out = Vec::with_capacity(XML_DECLARATION.len() + 1 + body.len());
        out.extend_from_slice(XML_DECLARATION.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        return Some(out);
    }
    None
}

/// Parses and checks the PIDF structure (RFC 3863 §4.1.1, §4.1.2, §4.1.4).
fn parse_pidf(body: &[u8]) -> Result<Element, PidfError> {
    let root = xml::parse(body)?;
    if root.name() != "presence" {
        return Err(PidfError::NotPresence);
    }
    if !root.has_ns(PIDF_NS) {
        return Err(PidfError::WrongNamespace);
    }
    if root.attr("entity").is_none_or(|e| e.trim().is_empty()) {
        return Err(PidfError::MissingEntity);
    }
    for tuple in tuples(&root) {
        if tuple.attr("id").is_none_or(str::is_empty) {
            return Err(PidfError::TupleWithoutId);
        }
        if !tuple.has_child("status", PIDF_NS) {
            return Err(PidfError::TupleWithoutStatus);
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_validated_single_publication_aggregates_as_an_unvalidated_one_does() {
        let body = b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@x'>\
            <tuple id='t'><status><basic>open</basic></status></tuple></presence>";
        // A fresh thread has an empty memo: the document is parsed there.
        let cold =
            std::thread::spawn(|| (aggregate("sip:a@x", &[body]), aggregate("sip:b@x", &[body])))
                .join()
                .unwrap();
        validate_pidf(body).unwrap();
        assert!(validated::is_valid_for(body, "sip:a@x"));
        assert!(!validated::is_valid_for(body, "sip:b@x"));
        assert_eq!(aggregate("sip:a@x", &[body]), cold.0);
        // Another entity is still rewritten, not passed through.
        assert_eq!(aggregate("sip:b@x", &[body]), cold.1);
        assert!(
            String::from_utf8(cold.1)
                .unwrap()
                .contains("entity=\"sip:b@x\"")
        );
        // An invalid document is never remembered.
        let bad =
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@x'><tuple/></presence>";
        assert!(validate_pidf(bad).is_err());
        assert!(!validated::is_valid_for(bad, "sip:a@x"));
    }

    const ALICE: &str = "sip:alice@example.com";

    /// What pjsua publishes: tuple plus an RPID person, prefixes declared on the root.
    #[test]
    fn standalone_no_declaration_is_accepted_and_other_flags_are_judged_by_the_parser() {
        let doc = |decl: &str| {
            format!(
                "{decl}\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@b\">\
                 <tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>"
            )
        };
        for ok in [
            r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>"#,
            r#"<?xml version='1.0' encoding='UTF-8' standalone='no' ?>"#,
            r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>"#,
        ] {
            assert_eq!(validate_pidf(doc(ok).as_bytes()), Ok(()), "{ok}");
        }
        assert!(
            validate_pidf(doc(r#"<?xml version="1.0" standalone="maybe"?>"#).as_bytes()).is_err()
        );
    }

    const PJSUA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
 <tuple id="pj1">
  <status><basic>open</basic></status>
  <timestamp>2024-05-01T10:00:00Z</timestamp>
  <note>Idle</note>
 </tuple>
 <dm:person id="pjp1">
  <rpid:activities><rpid:away/></rpid:activities>
  <dm:note>Away</dm:note>
 </dm:person>
</presence>"#;

    /// A desk phone with service capabilities (RFC 5196) and a device element.
    const DESK: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:caps="urn:ietf:params:xml:ns:pidf:caps" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@desk.example.com">
<tuple id="desk1"><status><basic>closed</basic></status>
<caps:servcaps><caps:audio>true</caps:audio></caps:servcaps>
<contact priority="0.8">sip:alice@192.0.2.7</contact></tuple>
<dm:device id="dev1"><dm:deviceID>urn:uuid:6a2c</dm:deviceID></dm:device>
<note xml:lang="en">At my desk</note>
</presence>"#;

    fn doc(entity: &str, tuples: &[(&str, &str)]) -> String {
        let mut s = format!(r#"<presence xmlns="{PIDF_NS}" entity="{entity}">"#);
        for (id, basic) in tuples {
            s.push_str(&format!(
                r#"<tuple id="{id}"><status><basic>{basic}</basic></status></tuple>"#
            ));
        }
        s.push_str("</presence>");
        s
    }

    fn reparse(out: &[u8]) -> Element {
        std::str::from_utf8(out).unwrap().parse().unwrap()
    }

    fn entity_of(out: &[u8]) -> String {
        reparse(out).attr("entity").unwrap().to_owned()
    }

    #[test]
    fn accepts_what_pjsua_publishes() {
        assert_eq!(validate_pidf(PJSUA.as_bytes()), Ok(()));
        assert_eq!(validate_pidf(DESK.as_bytes()), Ok(()));
    }

    #[test]
    fn accepts_declaration_comments_processing_instructions_and_bom() {
        let body = format!(
            "\u{feff}<?xml version='1.0' encoding='utf-8'?>\n<!-- from a softphone -->\n\
             <?app-hint keep?>{}\n<!-- trailer -->\n",
            doc(ALICE, &[("t1", "open")]).replace("<status>", "<status><!-- s --><?x y?>")
        );
        assert_eq!(validate_pidf(body.as_bytes()), Ok(()));
        assert_eq!(basic_status(body.as_bytes()), ["open"]);
    }

    #[test]
    fn processing_instruction_text_inside_comments_and_cdata_is_left_alone() {
        let body = doc(ALICE, &[("t1", "open")]).replace(
            "</presence>",
            "<note><![CDATA[a <?b?> c]]></note><!-- <?d?> --></presence>",
        );
        assert_eq!(notes(body.as_bytes()), ["a <?b?> c"]);
    }

    #[test]
    fn processing_instruction_hidden_in_attribute_value_does_not_make_bad_xml_pass() {
        let body = doc(ALICE, &[("t1", "open")]).replace("<tuple ", r#"<tuple x="<?y?>" "#);
        assert_eq!(
            validate_pidf(body.as_bytes()),
            Err(PidfError::NotWellFormed)
        );
    }

    #[test]
    fn rejects_what_is_not_xml() {
        for body in [&b""[..], b"hello", b"<presence", b"<a></b>", b"<a/><b/>"] {
            assert_eq!(
                validate_pidf(body),
                Err(PidfError::NotWellFormed),
                "{body:?}"
            );
        }
        let trailing = format!("{}junk", doc(ALICE, &[]));
        assert_eq!(
            validate_pidf(trailing.as_bytes()),
            Err(PidfError::NotWellFormed)
        );
    }

    #[test]
    fn rejects_non_utf8() {
        let mut body = doc(ALICE, &[("t1", "open")]).into_bytes();
        body.insert(20, 0xff);
        assert_eq!(validate_pidf(&body), Err(PidfError::NotUtf8));
    }

    #[test]
    fn rejects_malformed_comment() {
        let body = doc(ALICE, &[]).replace("</presence>", "<!-- a -- b --></presence>");
        assert_eq!(
            validate_pidf(body.as_bytes()),
            Err(PidfError::NotWellFormed)
        );
    }

    #[test]
    fn rejects_doctype_so_entities_cannot_expand() {
        let body = format!(
            "<!DOCTYPE presence [<!ENTITY a \"aaaa\">]>{}",
            doc(ALICE, &[]).replace("</presence>", "<note>&a;</note></presence>")
        );
        assert_eq!(
            validate_pidf(body.as_bytes()),
            Err(PidfError::NotWellFormed)
        );
    }

    #[test]
    fn rejects_duplicate_attributes_and_reserved_prefix_misuse() {
        let dup = doc(ALICE, &[("t1", "open")]).replace("<tuple ", r#"<tuple id="x" "#);
        assert_eq!(validate_pidf(dup.as_bytes()), Err(PidfError::NotWellFormed));
        let xml_prefix = doc(ALICE, &[]).replace("<presence ", r#"<presence xmlns:xml="urn:x" "#);
        assert_eq!(
            validate_pidf(xml_prefix.as_bytes()),
            Err(PidfError::NotWellFormed)
        );
        let undeclare = doc(ALICE, &[]).replace("<presence ", r#"<presence xmlns:p="" "#);
        assert_eq!(
            validate_pidf(undeclare.as_bytes()),
            Err(PidfError::NotWellFormed)
        );
    }

    #[test]
    fn rejects_deep_nesting() {
        let deep = "<x>".repeat(MAX_DEPTH + 1) + &"</x>".repeat(MAX_DEPTH + 1);
        let body = doc(ALICE, &[]).replace("</presence>", &format!("{deep}</presence>"));
        assert_eq!(validate_pidf(body.as_bytes()), Err(PidfError::TooDeep));
    }

    #[test]
    fn rejects_wrong_root() {
        let body = format!(r#"<pres xmlns="{PIDF_NS}" entity="{ALICE}"/>"#);
        assert_eq!(validate_pidf(body.as_bytes()), Err(PidfError::NotPresence));
    }

    #[test]
    fn rejects_wrong_namespace() {
        let body = doc(ALICE, &[]).replace(PIDF_NS, "urn:example:pidf");
        assert_eq!(
            validate_pidf(body.as_bytes()),
            Err(PidfError::WrongNamespace)
        );
        let none = format!(r#"<presence entity="{ALICE}"/>"#);
        assert_eq!(
            validate_pidf(none.as_bytes()),
            Err(PidfError::WrongNamespace)
        );
    }

    #[test]
    fn rejects_missing_entity() {
        let body = doc(ALICE, &[("t1", "open")]).replace(&format!(r#" entity="{ALICE}""#), "");
        assert_eq!(
            validate_pidf(body.as_bytes()),
            Err(PidfError::MissingEntity)
        );
        assert_eq!(
            format!("Bad Request - PIDF: {}", PidfError::MissingEntity),
            "Bad Request - PIDF: missing entity"
        );
    }

    #[test]
    fn rejects_tuple_without_status_or_id() {
        let no_status = doc(ALICE, &[("t1", "open")])
            .replace("<status><basic>open</basic></status>", "<note>x</note>");
        assert_eq!(
            validate_pidf(no_status.as_bytes()),
            Err(PidfError::TupleWithoutStatus)
        );
        let no_id = doc(ALICE, &[("t1", "open")]).replace(r#" id="t1""#, "");
        assert_eq!(
            validate_pidf(no_id.as_bytes()),
            Err(PidfError::TupleWithoutId)
        );
    }

    #[test]
    fn tuples_of_two_devices_are_both_present_newest_first() {
        let phone = doc(ALICE, &[("phone", "open")]);
        let laptop = doc(ALICE, &[("laptop", "closed")]);
        let out = aggregate(ALICE, &[phone.as_bytes(), laptop.as_bytes()]);
        assert_eq!(validate_pidf(&out), Ok(()));
        assert_eq!(tuple_ids(&out), ["phone", "laptop"]);
        assert_eq!(basic_status(&out), ["open", "closed"]);
    }

    #[test]
    fn same_tuple_id_keeps_only_the_newest() {
        let newer = doc(ALICE, &[("t1", "closed"), ("t2", "open")]);
        let older = doc(ALICE, &[("t1", "open"), ("t3", "open")]);
        let out = aggregate(ALICE, &[newer.as_bytes(), older.as_bytes()]);
        assert_eq!(tuple_ids(&out), ["t1", "t2", "t3"]);
        assert_eq!(basic_status(&out), ["closed", "open", "open"]);
    }

    #[test]
    fn person_device_and_notes_keep_their_namespaces() {
        let out = aggregate(ALICE, &[PJSUA.as_bytes(), DESK.as_bytes()]);
        assert_eq!(validate_pidf(&out), Ok(()));
        let root = reparse(&out);
        let person = root.get_child("person", DATA_MODEL_NS).unwrap();
        assert_eq!(person.attr("id"), Some("pjp1"));
        let activities = person.get_child("activities", RPID_NS).unwrap();
        assert!(activities.has_child("away", RPID_NS));
        let device = root.get_child("device", DATA_MODEL_NS).unwrap();
        assert_eq!(
            device.get_child("deviceID", DATA_MODEL_NS).unwrap().text(),
            "urn:uuid:6a2c"
        );
        let desk = root
            .children()
            .find(|c| c.attr("id") == Some("desk1"))
            .unwrap();
        let caps = desk
            .get_child("servcaps", "urn:ietf:params:xml:ns:pidf:caps")
            .unwrap();
        assert!(caps.has_child("audio", "urn:ietf:params:xml:ns:pidf:caps"));
        let note = root.get_child("note", PIDF_NS).unwrap();
        assert_eq!(note.attr_ns(rxml::XMLNS_XML, "lang"), Some("en"));
        assert_eq!(notes(&out), ["Idle", "Away", "At my desk"]);
        // Clients that match prefixes literally still find theirs.
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("<dm:person id=\"pjp1\">"), "{text}");
        assert!(text.contains("<rpid:away/>"), "{text}");
    }

    #[test]
    fn one_prefix_meaning_two_namespaces_in_two_publications_stays_unambiguous() {
        let a = format!(
            r#"<presence xmlns="{PIDF_NS}" xmlns:p="{RPID_NS}" entity="{ALICE}"><p:mood id="m1"><p:happy/></p:mood></presence>"#
        );
        let b = format!(
            r#"<presence xmlns="{PIDF_NS}" xmlns:p="{DATA_MODEL_NS}" entity="{ALICE}"><p:person id="x1"/></presence>"#
        );
        let out = aggregate(ALICE, &[a.as_bytes(), b.as_bytes()]);
        let root = reparse(&out);
        assert!(
            root.get_child("mood", RPID_NS)
                .unwrap()
                .has_child("happy", RPID_NS)
        );
        assert!(root.has_child("person", DATA_MODEL_NS));
    }

    #[test]
    fn child_redeclaring_a_root_prefix_is_written_without_panicking() {
        let a = format!(
            r#"<presence xmlns="{PIDF_NS}" xmlns:dm="{DATA_MODEL_NS}" entity="{ALICE}"><dm:person id="a"/></presence>"#
        );
        let b = format!(
            r#"<presence xmlns="{PIDF_NS}" entity="{ALICE}"><dm:person xmlns:dm="{DATA_MODEL_NS}" id="b"><x:mood xmlns:x="{RPID_NS}"/></dm:person></presence>"#
        );
        let out = aggregate(ALICE, &[a.as_bytes(), b.as_bytes()]);
        let root = reparse(&out);
        let ids: Vec<_> = root.children().filter_map(|c| c.attr("id")).collect();
        assert_eq!(ids, ["a", "b"]);
        let b_person = root.children().nth(1).unwrap();
        assert!(b_person.is("person", DATA_MODEL_NS));
        assert!(b_person.has_child("mood", RPID_NS));
    }

    #[test]
    fn element_in_no_namespace_stays_in_no_namespace() {
        let a = format!(
            r#"<presence xmlns="{PIDF_NS}" entity="{ALICE}"><odd xmlns="" a="1"/></presence>"#
        );
        let out = aggregate("sip:bob@example.com", &[a.as_bytes()]);
        let root = reparse(&out);
        assert!(root.get_child("odd", "").is_some());
    }

    #[test]
    fn entity_is_rewritten_to_the_presentity() {
        let body = doc("sip:alice@192.0.2.7", &[("t1", "open")]);
        let out = aggregate(ALICE, &[body.as_bytes()]);
        assert_eq!(entity_of(&out), ALICE);
        assert_eq!(validate_pidf(&out), Ok(()));
        assert_eq!(tuple_ids(&out), ["t1"]);
    }

    #[test]
    fn entity_with_markup_characters_is_escaped() {
        let entity = "sip:a&b\"<c>@example.com";
        let out = aggregate(entity, &[PJSUA.as_bytes(), DESK.as_bytes()]);
        assert_eq!(entity_of(&out), entity);
        assert_eq!(entity_of(&closed_document(entity)), entity);
    }

    #[test]
    fn single_publication_for_the_same_entity_is_returned_unchanged() {
        assert_eq!(aggregate(ALICE, &[PJSUA.as_bytes()]), PJSUA.as_bytes());
        let bare = doc(ALICE, &[("t1", "open")]);
        let out = aggregate(ALICE, &[bare.as_bytes()]);
        assert!(out.starts_with(XML_DECLARATION.as_bytes()));
        assert!(out.ends_with(bare.as_bytes()));
    }

    #[test]
    fn output_starts_with_xml_declaration() {
        let out = aggregate(ALICE, &[DESK.as_bytes()]);
        assert!(out.starts_with(br#"<?xml version="1.0" encoding="UTF-8"?>"#));
    }

    #[test]
    fn invalid_publications_are_skipped() {
        let good = doc(ALICE, &[("t1", "open")]);
        let no_status = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t9"/></presence>"#;
        let out = aggregate(ALICE, &[b"garbage", no_status.as_bytes(), good.as_bytes()]);
        assert_eq!(tuple_ids(&out), ["t1"]);
        let none = aggregate(ALICE, &[b"garbage"]);
        assert_eq!(validate_pidf(&none), Ok(()));
        assert!(tuple_ids(&none).is_empty());
        assert_eq!(entity_of(&none), ALICE);
    }

    #[test]
    fn closed_document_is_valid_with_one_closed_tuple() {
        let out = closed_document(ALICE);
        assert_eq!(validate_pidf(&out), Ok(()));
        assert_eq!(basic_status(&out), ["closed"]);
        assert_eq!(
            tuple_ids(&out),
            tuple_ids(&closed_document("sip:bob@example.com"))
        );
        assert_eq!(entity_of(&out), ALICE);
    }

    #[test]
    fn spheres_are_read_from_text_or_element_form() {
        let body = format!(
            r#"<presence xmlns="{PIDF_NS}" xmlns:dm="{DATA_MODEL_NS}" xmlns:r="{RPID_NS}" entity="{ALICE}">
<dm:person id="p1"><r:sphere>bowling league</r:sphere></dm:person>
<dm:person id="p2"><r:sphere><r:work/></r:sphere></dm:person>
<r:person id="p3"><r:sphere> home </r:sphere></r:person>
<dm:person id="p4"/></presence>"#
        );
        assert_eq!(
            rpid_spheres(body.as_bytes()),
            ["bowling league", "work", "home"]
        );
    }

    #[test]
    fn readers_return_nothing_for_invalid_bodies() {
        assert!(tuple_ids(b"<x/>").is_empty());
        assert!(basic_status(b"nope").is_empty());
        assert!(notes(b"").is_empty());
        assert!(rpid_spheres(b"<").is_empty());
    }

    fn mutated(seed: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        let mut body = seed.as_bytes().to_vec();
        for &(at, op, byte) in edits {
            let at = at % (body.len() + 1);
            match op % 3 {
                0 if at < body.len() => {
                    body.remove(at);
                }
                1 => body.insert(at, byte),
                _ if at < body.len() => body[at] = byte,
                _ => {}
            }
        }
        body
    }

    fn check_total(body: &[u8]) {
        let valid = validate_pidf(body).is_ok();
        let out = aggregate("sip:bob@example.com", &[body, PJSUA.as_bytes()]);
        assert_eq!(
            validate_pidf(&out),
            Ok(()),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let _ = reparse(&out);
        if valid {
            let single = aggregate("sip:bob@example.com", &[body]);
            assert_eq!(validate_pidf(&single), Ok(()));
            assert_eq!(tuple_ids(&single), tuple_ids(body));
        }
        let _ = (basic_status(body), notes(body), rpid_spheres(body));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            check_total(&body);
        }

        #[test]
        fn random_markup_never_panics(body in "[<>/?!\\[\\]a-z:= \"'&;#-]{0,200}") {
            check_total(body.as_bytes());
        }

        #[test]
        fn mutated_documents_never_panic_and_valid_ones_aggregate_to_valid(
            seed in prop::sample::select(vec![PJSUA, DESK]),
            edits in proptest::collection::vec(
                (any::<usize>(), any::<u8>(), prop::sample::select(b"<>&\"'/=?!-:x \n;#".to_vec())),
                0..6,
            ),
        ) {
            check_total(&mutated(seed, &edits));
        }
    }
}
