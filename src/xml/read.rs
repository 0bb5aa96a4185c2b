//! Reading: one XML document into a minidom tree. minidom's tree builder is fed by
//! rxml's raw parser, which is restricted XML (no DTD, no entities beyond the five
//! predefined ones), so hostile bodies cannot expand; the checks rxml leaves to its
//! caller (unique attributes, reserved prefixes) and a depth cap are done here.

use std::borrow::Cow;
use std::collections::HashSet;

use minidom::Element;
use minidom::rxml::parser::CommentMode;
use minidom::rxml::{self, Parse, RawEvent, RawParser, WithOptions};
use minidom::tree_builder::TreeBuilder;

use super::{MAX_DEPTH, XmlError, is_sane_declaration};

/// Parses one XML document into a tree, tolerating what rxml's restricted XML refuses
/// but clients send: a byte order mark, comments and processing instructions.
pub fn parse(body: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let declared = drop_standalone_no(text);
    let cleaned = strip_comments_and_pis(declared.as_bytes());

    let options = rxml::Options {
        comments: CommentMode::Discard,
        ..Default::default()
    };
    let mut parser = RawParser::with_options(options);
    // Unprefixed names without a default namespace are in no namespace (Namespaces in
    // XML §6.2); minidom would otherwise call that an error and hide a wrong namespace.
    let mut builder = TreeBuilder::new().with_prefixes_stack(vec![Some(String::new()).into()]);
    let mut checks = EventChecks::default();
    let mut input: &[u8] = &cleaned;
    let mut root = None;
    loop {
        match parser.parse(&mut input, true) {
            Ok(Some(event)) => {
                if root.is_some() {
                    // A second root or text after the root element.
                    return Err(XmlError::NotWellFormed);
                }
                checks.check(&event)?;
                builder
                    .process_event(event)
                    .map_err(|_| XmlError::NotWellFormed)?;
                root = builder.root.take();
            }
            Ok(None) => break,
            Err(_) => return Err(XmlError::NotWellFormed),
        }
    }
    root.ok_or(XmlError::NotWellFormed)
}

/// Start tags with at most this many attributes are checked by a scan of their names,
/// cheaper than hashing for the few that real documents have.
const SCANNED_NAMES: usize = 8;

/// Well-formedness rules rxml's raw parser leaves to its caller, plus our depth cap.
#[derive(Default)]
struct EventChecks {
    depth: usize,
    /// The names in the start tag being read, while there are few.
    names: Vec<rxml::RawQName>,
    /// All of them once there are more: a tag with n attributes then costs n look-ups,
    /// not n²/2 comparisons.
    many: HashSet<rxml::RawQName>,
}

impl EventChecks {
    fn check(&mut self, event: &RawEvent) -> Result<(), XmlError> {
        match event {
            RawEvent::ElementHeadOpen(..) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                self.names.clear();
                if self.many.capacity() > 0 {
                    // Dropped, not cleared: clearing costs the capacity at every tag.
                    self.many = HashSet::new();
                }
            }
            RawEvent::Attribute(_, qname, value) => {
                let (prefix, name) = qname;
                let declared = match prefix.as_ref().map(|p| p.as_str()) {
                    None if name.as_str() == "xmlns" => Some(None),
                    Some("xmlns") => Some(Some(name.as_str())),
                    _ => None,
                };
                if let Some(declared) = declared
                    && !is_sane_declaration(declared, value)
                {
                    return Err(XmlError::NotWellFormed);
                }
                // XML 1.0 §3.1: attribute names are unique within a start tag.
                let unique = if self.many.is_empty() && self.names.len() < SCANNED_NAMES {
                    let unique = !self.names.contains(qname);
                    self.names.push(qname.clone());
                    unique
                } else {
                    self.many.extend(self.names.drain(..));
                    self.many.insert(qname.clone())
                };
                if !unique {
                    return Err(XmlError::NotWellFormed);
                }
            }
            RawEvent::ElementFoot(_) => self.depth = self.depth.saturating_sub(1),
            RawEvent::XmlDeclaration(..) | RawEvent::ElementHeadClose(_) | RawEvent::Text(..) => {}
        }
        Ok(())
    }
}

/// Removes `standalone="no"` from the XML declaration. baresip and other stacks write it;
/// rxml accepts only `yes` or nothing, and without a DTD (which we refuse anyway) the
/// flag has no meaning (XML 1.0 §2.9).
fn drop_standalone_no(text: &str) -> Cow<'_, str> {
    let Some(decl_end) = text.strip_prefix("<?xml").and(text.find("?>")) else {
        return Cow::Borrowed(text);
    };
    let decl = &text[..decl_end];
    let Some(at) = decl.find("standalone") else {
        return Cow::Borrowed(text);
    };
    let value = decl[at + "standalone".len()..].trim_start();
    let Some(value) = value.strip_prefix('=') else {
        return Cow::Borrowed(text);
    };
    let value = value.trim_start();
    if !(value.starts_with("\"no\"") || value.starts_with("'no'")) {
        return Cow::Borrowed(text);
    }
    let start = decl[..at].trim_end().len();
    let end = decl_end - value.len() + 4;
    Cow::Owned(format!("{}{}", &text[..start], &text[end..]))
}

/// Drops comments and processing instructions (other than the XML declaration): rxml
/// rejects PIs everywhere and comments outside the root, and neither carries anything
/// a body format here needs. CDATA and quoted attribute values are skipped over, and malformed ones are
/// kept, so the parser still judges them.
fn strip_comments_and_pis(doc: &[u8]) -> Cow<'_, [u8]> {
    let after_declaration = if doc.starts_with(b"<?xml") {
        find(doc, b"?>", 0).map_or(0, |end| end + 2)
    } else {
        0
    };
    if find(doc, b"<?", after_declaration).is_none() && find(doc, b"<!--", 0).is_none() {
        return Cow::Borrowed(doc);
    }
    let mut out = Vec::with_capacity(doc.len());
    let mut pos = 0;
    while let Some(lt) = find(doc, b"<", pos) {
        out.extend_from_slice(doc.get(pos..lt).unwrap_or_default());
        let rest = doc.get(lt..).unwrap_or_default();
        let (markup_len, droppable) = if rest.starts_with(b"<!--") {
            // XML 1.0 §2.5: "--" may not occur inside a comment.
            match find(rest, b"--", 4) {
                Some(end) if rest.get(end + 2) == Some(&b'>') => (Some(end + 3), true),
                _ => (None, false),
            }
        } else if rest.starts_with(b"<![CDATA[") {
            (find(rest, b"]]>", 9).map(|e| e + 3), false)
        } else if rest.starts_with(b"<?") {
            match find(rest, b"?>", 2) {
                Some(end) => (
                    Some(end + 2),
                    !is_reserved_pi_target(rest.get(2..end).unwrap_or_default()),
                ),
                None => (None, false),
            }
        } else {
            (tag_len(rest), false)
        };
        let Some(len) = markup_len else {
            // Unterminated or malformed markup: hand the rest over for the parser to reject.
            out.extend_from_slice(rest);
            return Cow::Owned(out);
        };
        if !droppable {
            out.extend_from_slice(rest.get(..len).unwrap_or_default());
        }
        pos = lt + len;
    }
    out.extend_from_slice(doc.get(pos..).unwrap_or_default());
    Cow::Owned(out)
}

/// XML 1.0 §2.6: targets matching `xml` in any case are reserved; such a PI anywhere but
/// at the start is an error the parser must still see.
fn is_reserved_pi_target(pi: &[u8]) -> bool {
    let target_end = pi
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(pi.len());
    pi.get(..target_end)
        .is_some_and(|t| t.eq_ignore_ascii_case(b"xml"))
}

/// Length of a tag starting at `<`, honouring quoted attribute values.
fn tag_len(tag: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in tag.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element_with(attributes: impl Iterator<Item = String>) -> String {
        let mut doc = String::from("<r xmlns=\"urn:r\" xmlns:p=\"urn:p\"");
        for a in attributes {
            doc.push(' ');
            doc.push_str(&a);
        }
        doc.push_str("/>");
        doc
    }

    #[test]
    fn many_attributes_are_read_and_a_duplicate_among_them_is_refused() {
        let names = |n| (0..n).map(|i| format!("a{i}=\"{i}\" p:b{i}=\"{i}\""));
        let root = parse(element_with(names(5_000)).as_bytes()).unwrap();
        assert_eq!(root.attrs().iter().count(), 10_000);
        assert_eq!(root.attr("a4999"), Some("4999"));
        assert_eq!(root.attr_ns("urn:p", "b17"), Some("17"));
        for dup in ["a0=\"x\"", "p:b4999=\"x\""] {
            let doc = element_with(names(5_000).chain([dup.to_owned()]));
            assert_eq!(parse(doc.as_bytes()), Err(XmlError::NotWellFormed), "{dup}");
        }
    }

    #[test]
    fn a_duplicate_declaration_is_refused() {
        assert_eq!(
            parse(br#"<r xmlns:p="urn:a" xmlns:p="urn:a"/>"#),
            Err(XmlError::NotWellFormed)
        );
        assert_eq!(
            parse(br#"<r xmlns="urn:a" xmlns="urn:a"/>"#),
            Err(XmlError::NotWellFormed)
        );
    }

    #[test]
    fn reserved_prefixes_are_refused_even_after_many_declarations() {
        let mut decls: Vec<String> = (0..2_000)
            .map(|i| format!("xmlns:p{i}=\"urn:{i}\""))
            .collect();
        let good = element_with(decls.iter().cloned());
        assert!(parse(good.as_bytes()).is_ok());
        for bad in [
            "xmlns:xml=\"urn:x\"",
            "xmlns:xmlns=\"urn:x\"",
            "xmlns:q=\"\"",
            "xmlns:q=\"http://www.w3.org/2000/xmlns/\"",
        ] {
            decls.push(bad.to_owned());
            let doc = element_with(decls.iter().cloned());
            assert_eq!(parse(doc.as_bytes()), Err(XmlError::NotWellFormed), "{bad}");
            decls.pop();
        }
    }

    #[test]
    fn a_duplicate_is_found_in_short_and_long_start_tags() {
        for n in 1..=SCANNED_NAMES * 2 {
            let names: Vec<String> = (0..n).map(|i| format!("a{i}=\"\"")).collect();
            let ok = format!("<r {}/>", names.join(" "));
            assert!(parse(ok.as_bytes()).is_ok(), "{n}");
            for dup in [0, n - 1] {
                let bad = format!("<r {} a{dup}=\"x\"/>", names.join(" "));
                assert_eq!(parse(bad.as_bytes()), Err(XmlError::NotWellFormed), "{n}");
            }
        }
    }

    #[test]
    fn names_of_an_earlier_start_tag_do_not_count_against_a_later_one() {
        let wide: Vec<String> = (0..SCANNED_NAMES * 2)
            .map(|i| format!("a{i}=\"\""))
            .collect();
        let doc = format!("<r {}><c a0=\"\"/><c a0=\"\" a1=\"\"/></r>", wide.join(" "));
        assert!(parse(doc.as_bytes()).is_ok());
        let dup = "<r a0=\"\"><c a0=\"\" a0=\"\"/></r>";
        assert_eq!(parse(dup.as_bytes()), Err(XmlError::NotWellFormed));
    }

    #[test]
    fn depth_is_capped() {
        let nested = |n| "<x>".repeat(n) + &"</x>".repeat(n);
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse(nested(MAX_DEPTH + 1).as_bytes()),
            Err(XmlError::TooDeep)
        );
    }
}
