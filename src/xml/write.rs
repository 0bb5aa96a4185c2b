//! Writing: a minidom tree back to text with our own small serializer rather than
//! minidom's, which asserts (panics) when a child re-declares a prefix the root already
//! declares, as documents merged from different clients do.

use std::borrow::Cow;

use minidom::rxml;
use minidom::{Element, Node};

use super::{XML_DECLARATION, is_sane_declaration};

/// Namespace bindings in force while writing, innermost last.
#[derive(Default)]
pub(crate) struct Scope {
    bindings: Vec<(Option<String>, String)>,
}

impl Scope {
    pub(crate) fn push(&mut self, prefix: Option<String>, uri: String) {
        self.bindings.push((prefix, uri));
    }

    /// Whether `prefix` (`None`: the default namespace) is bound at any level.
    pub(crate) fn binds(&self, prefix: &Option<String>) -> bool {
        self.bindings.iter().any(|(p, _)| p == prefix)
    }

    /// Every binding as a declaration, outermost first: for a caller that writes the
    /// start tag of the root element itself.
    pub(crate) fn write_declarations(&self, out: &mut String) {
        for (prefix, uri) in &self.bindings {
            write_declaration(out, prefix, uri);
        }
    }

    fn default_ns(&self) -> &str {
        self.bindings
            .iter()
            .rev()
            .find(|(p, _)| p.is_none())
            .map_or("", |(_, uri)| uri)
    }

    /// A prefix currently bound to `uri` and not shadowed by an inner declaration.
    fn prefix_for(&self, uri: &str) -> Option<&str> {
        self.bindings
            .iter()
            .enumerate()
            .rev()
            .find(|(i, (p, u))| {
                p.is_some()
                    && u == uri
                    && self
                        .bindings
                        .get(i + 1..)
                        .is_some_and(|inner| inner.iter().all(|(q, _)| q != p))
            })
            .and_then(|(_, (p, _))| p.as_deref())
    }

    fn fresh_prefix(&self) -> String {
        (0..)
            .map(|n| format!("ns{n}"))
            .find(|candidate| !self.binds(&Some(candidate.clone())))
            .unwrap_or_default()
    }
}

/// Writes `el` with whatever declarations make its names resolve in `scope`: its own
/// declarations are kept, and any namespace it uses that is not in scope (because it was
/// declared on an ancestor the caller did not write) is declared on it.
pub(crate) fn write_element(out: &mut String, el: &Element, scope: &mut Scope) {
    let mark = scope.bindings.len();
    for (prefix, uri) in el.prefixes.declared_prefixes() {
        if is_sane_declaration(prefix.as_deref(), uri) && prefix.as_deref() != Some("xml") {
            scope.push(prefix.clone(), uri.clone());
        }
    }

    let ns = el.ns();
    let element_prefix = if scope.default_ns() == ns {
        None
    } else if ns.is_empty() {
        // An element in no namespace under a default one needs `xmlns=""`.
        let own = scope.bindings.get(mark..).unwrap_or_default();
        if let Some(i) = own.iter().position(|(p, _)| p.is_none()) {
            scope.bindings.remove(mark + i);
        }
        scope.push(None, String::new());
        None
    } else if let Some(p) = scope.prefix_for(&ns) {
        Some(p.to_owned())
    } else {
        let p = scope.fresh_prefix();
        scope.push(Some(p.clone()), ns.clone());
        Some(p)
    };

    let mut attributes = Vec::new();
    for ((attr_ns, name), value) in el.attrs() {
        let prefix = if attr_ns.is_none() {
            None
        } else if attr_ns.as_str() == rxml::XMLNS_XML {
            Some("xml".to_owned())
        } else if let Some(p) = scope.prefix_for(attr_ns) {
            Some(p.to_owned())
        } else {
            let p = scope.fresh_prefix();
            scope.push(Some(p.clone()), attr_ns.to_string());
            Some(p)
        };
        attributes.push((prefix, name.as_str(), value.as_str()));
    }

    let qname = match &element_prefix {
        Some(p) => format!("{p}:{}", el.name()),
        None => el.name().to_owned(),
    };
    out.push('<');
    out.push_str(&qname);
    for (prefix, uri) in scope.bindings.get(mark..).unwrap_or_default() {
        write_declaration(out, prefix, uri);
    }
    for (prefix, name, value) in attributes {
        out.push(' ');
        if let Some(p) = prefix {
            out.push_str(&p);
            out.push(':');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_attr(out, value);
        out.push('"');
    }
    if el.nodes().next().is_none() {
        out.push_str("/>");
    } else {
        out.push('>');
        for node in el.nodes() {
            match node {
                Node::Element(child) => write_element(out, child, scope),
                Node::Text(text) => escape_text(out, text),
            }
        }
        out.push_str("</");
        out.push_str(&qname);
        out.push('>');
    }
    scope.bindings.truncate(mark);
}

/// Serializes a whole document (declaration + `root`) with the namespace-safe writer.
pub fn write_document(root: &Element) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    out.push_str(XML_DECLARATION);
    out.push('\n');
    write_element(&mut out, root, &mut Scope::default());
    out.push('\n');
    out.into_bytes()
}

fn write_declaration(out: &mut String, prefix: &Option<String>, uri: &str) {
    match prefix {
        Some(p) => {
            out.push_str(" xmlns:");
            out.push_str(p);
        }
        None => out.push_str(" xmlns"),
    }
    out.push_str("=\"");
    escape_attr(out, uri);
    out.push('"');
}

fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // XML 1.0 §2.11 would turn a literal CR into LF.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

pub(crate) fn escape_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            // XML 1.0 §3.3.3 would normalise these to spaces.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// XML 1.0 §2.2: drops characters no XML document may contain, so a strange entity
/// string from the caller cannot make our output unparseable.
pub(crate) fn chars_only(s: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
            || c >= '\u{10000}'
    };
    if s.chars().all(allowed) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| allowed(c)).collect())
    }
}
