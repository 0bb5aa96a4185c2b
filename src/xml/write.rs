//! Writing: a minidom tree back to text with our own small serializer rather than
//! minidom's, which asserts (panics) when a child re-declares a prefix the root already
//! declares, as documents merged from different clients do.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use minidom::rxml;
use minidom::{Element, Node};

use super::{XML_DECLARATION, is_sane_declaration};

/// Up to this many bindings a scan of them is cheaper than keeping an index: the common
/// case, as a PIDF document declares three or four namespaces.
const SCANNED: usize = 16;

/// Namespace bindings in force while writing, innermost last. Past [`SCANNED`]
/// bindings they are indexed, so that each look-up costs O(1) or O(log n) however many
/// are in force: a document may declare a hundred thousand prefixes, and every element
/// and attribute looks one up.
#[derive(Default)]
pub(crate) struct Scope {
    /// In declaration order; what an element declares is its tail of this.
    bindings: Vec<(Option<String>, String)>,
    /// Built when `bindings` first grows past [`SCANNED`], then kept up to date.
    index: Option<Index>,
}

impl Scope {
    /// A scope that is indexed from its first binding, so tests cover both ways of
    /// looking bindings up.
    #[cfg(test)]
    fn indexed() -> Scope {
        Scope {
            bindings: Vec::new(),
            index: Some(Index::default()),
        }
    }

    pub(crate) fn push(&mut self, prefix: Option<String>, uri: String) {
        self.bindings.push((prefix, uri));
        match &mut self.index {
            Some(index) => index.add_last(&self.bindings),
            None if self.bindings.len() > SCANNED => {
                let mut index = Index::default();
                for end in 1..=self.bindings.len() {
                    index.add_last(self.bindings.get(..end).unwrap_or_default());
                }
                self.index = Some(index);
            }
            None => {}
        }
    }

    /// Drops the bindings from `mark` on (an element's, when it is written), bringing
    /// back what they shadowed.
    fn truncate(&mut self, mark: usize) {
        while self.bindings.len() > mark {
            if let Some(index) = &mut self.index {
                index.remove_last(&self.bindings);
            }
            self.bindings.pop();
        }
    }

    /// Whether `prefix` (`None`: the default namespace) is bound at any level.
    pub(crate) fn binds(&self, prefix: &Option<String>) -> bool {
        match &self.index {
            Some(index) => index.by_prefix.contains_key(prefix),
            None => self.bindings.iter().any(|(p, _)| p == prefix),
        }
    }

    /// Every binding as a declaration, outermost first: for a caller that writes the
    /// start tag of the root element itself.
    pub(crate) fn write_declarations(&self, out: &mut String) {
        for (prefix, uri) in &self.bindings {
            write_declaration(out, prefix, uri);
        }
    }

    fn default_ns(&self) -> &str {
        let innermost = match &self.index {
            Some(index) => index
                .by_prefix
                .get(&None)
                .and_then(|stack| stack.last())
                .and_then(|&at| self.bindings.get(at)),
            None => self.bindings.iter().rev().find(|(p, _)| p.is_none()),
        };
        innermost.map_or("", |(_, uri)| uri)
    }

    /// A prefix currently bound to `uri` and not shadowed by an inner declaration; the
    /// innermost if there are several.
    fn prefix_for(&self, uri: &str) -> Option<&str> {
        let Some(index) = &self.index else {
            return self
                .bindings
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
                .and_then(|(_, (p, _))| p.as_deref());
        };
        let at = *index.visible.get(uri)?.last()?;
        self.bindings.get(at)?.0.as_deref()
    }

    /// `ns0`, `ns1`, …: the first one bound at no level.
    fn fresh_prefix(&mut self) -> String {
        match &mut self.index {
            Some(index) => {
                let by_prefix = &index.by_prefix;
                index
                    .fresh
                    .first_free(|name| by_prefix.contains_key(&Some(name.to_owned())))
            }
            None => (0..)
                .map(|n| format!("ns{n}"))
                .find(|candidate| !self.binds(&Some(candidate.clone())))
                .unwrap_or_default(),
        }
    }
}

/// Where the bindings of a large [`Scope`] are, by prefix and by namespace.
#[derive(Default)]
struct Index {
    /// Per prefix (`None`: the default namespace), the indices of its bindings,
    /// innermost last: the last one is in force, the others are shadowed.
    by_prefix: HashMap<Option<String>, Vec<usize>>,
    /// Per namespace, the indices of the prefixed bindings to it that are in force.
    visible: HashMap<String, BTreeSet<usize>>,
    fresh: FreshNames,
}

impl Index {
    /// Takes in the last of `bindings`, which shadows its prefix's earlier binding.
    fn add_last(&mut self, bindings: &[(Option<String>, String)]) {
        let Some((prefix, uri)) = bindings.last() else {
            return;
        };
        let at = bindings.len() - 1;
        let stack = self.by_prefix.entry(prefix.clone()).or_default();
        let shadowed = stack.last().copied();
        stack.push(at);
        if let Some(name) = prefix {
            match shadowed {
                Some(old) => self.hide(bindings, old),
                None => self.fresh.bound(name),
            }
            self.visible.entry(uri.clone()).or_default().insert(at);
        }
    }

    /// Forgets the last of `bindings` (about to be dropped), bringing back the binding
    /// of its prefix it shadowed.
    fn remove_last(&mut self, bindings: &[(Option<String>, String)]) {
        let Some((prefix, _)) = bindings.last() else {
            return;
        };
        let at = bindings.len() - 1;
        let outer = match self.by_prefix.get_mut(prefix) {
            Some(stack) => {
                stack.pop();
                stack.last().copied()
            }
            None => None,
        };
        if outer.is_none() {
            self.by_prefix.remove(prefix);
        }
        let Some(name) = prefix else {
            return;
        };
        self.hide(bindings, at);
        match outer {
            Some(outer) => {
                if let Some((_, uri)) = bindings.get(outer) {
                    self.visible.entry(uri.clone()).or_default().insert(outer);
                }
            }
            None => self.fresh.unbound(name),
        }
    }

    fn hide(&mut self, bindings: &[(Option<String>, String)], at: usize) {
        if let Some((_, uri)) = bindings.get(at)
            && let Some(set) = self.visible.get_mut(uri)
        {
            set.remove(&at);
            if set.is_empty() {
                self.visible.remove(uri);
            }
        }
    }
}

/// The numbers n for which the prefix `ns{n}` is bound at no level, kept up to date as
/// bindings come and go, so that finding the smallest costs O(log n) (amortised) instead
/// of a walk over every `ns{n}` a document declares.
#[derive(Default)]
struct FreshNames {
    /// Every free number below `scanned`.
    free: BTreeSet<u64>,
    /// Numbers from here on were not looked at yet.
    scanned: u64,
}

impl FreshNames {
    /// The number of a prefix `format!("ns{n}")` writes, if `name` is one.
    fn number(name: &str) -> Option<u64> {
        let digits = name.strip_prefix("ns")?;
        let canonical = digits == "0" || !digits.starts_with('0');
        let n = digits.parse().ok()?;
        (canonical && digits.bytes().all(|b| b.is_ascii_digit())).then_some(n)
    }

    /// `name` got its first binding.
    fn bound(&mut self, name: &str) {
        if let Some(n) = Self::number(name)
            && n < self.scanned
        {
            self.free.remove(&n);
        }
    }

    /// `name` lost its last binding.
    fn unbound(&mut self, name: &str) {
        if let Some(n) = Self::number(name)
            && n < self.scanned
        {
            self.free.insert(n);
        }
    }

    /// The smallest free `ns{n}`; each number is scanned past at most once, as
    /// `scanned` only grows.
    fn first_free(&mut self, is_bound: impl Fn(&str) -> bool) -> String {
        if let Some(n) = self.free.first() {
            return format!("ns{n}");
        }
        loop {
            let name = format!("ns{}", self.scanned);
            if !is_bound(&name) {
                return name;
            }
            self.scanned += 1;
        }
    }
}

/// Writes `el` with whatever declarations make its names resolve in `scope`: its own
/// declarations are kept, and any namespace it uses that is not in scope (because it was
/// declared on an ancestor the caller did not write) is declared on it.
pub(crate) fn write_element(out: &mut String, el: &Element, scope: &mut Scope) {
    let mark = scope.bindings.len();
    let ns = el.ns();
    let declared = el.prefixes.declared_prefixes();
    let own_default = declared
        .get(&None)
        .filter(|uri| is_sane_declaration(None, uri));
    let in_default = own_default.map_or_else(|| scope.default_ns() == ns, |d| *d == ns);
    // An element in no namespace under a default one needs `xmlns=""` instead.
    let undeclare_default = !in_default && ns.is_empty();
    for (prefix, uri) in declared {
        let keep = is_sane_declaration(prefix.as_deref(), uri)
            && prefix.as_deref() != Some("xml")
            && !(prefix.is_none() && undeclare_default);
        if keep {
            scope.push(prefix.clone(), uri.clone());
        }
    }

    let element_prefix = if in_default {
        None
    } else if undeclare_default {
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
    scope.truncate(mark);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    /// `doc` written back, the same whether the scope is scanned or indexed.
    fn rewrite(doc: &str) -> String {
        let root = parse(doc.as_bytes()).unwrap();
        let out = String::from_utf8(write_document(&root)).unwrap();
        let body = out.strip_prefix(XML_DECLARATION).unwrap().trim();
        assert!(parse(body.as_bytes()).is_ok(), "not XML");
        let mut indexed = String::new();
        write_element(&mut indexed, &root, &mut Scope::indexed());
        assert!(indexed == body, "an indexed scope writes another text");
        body.to_owned()
    }

    /// A child written without its parent: what `aggregate` does with a publication's
    /// elements, whose root declarations it may not have kept.
    fn child_alone(doc: &str, scope: &mut Scope) -> String {
        let root = parse(doc.as_bytes()).unwrap();
        let mut out = String::new();
        for child in root.children() {
            write_element(&mut out, child, scope);
        }
        out
    }

    #[test]
    fn declarations_and_prefixes_are_written_as_given() {
        let doc = r#"<r xmlns="urn:r" xmlns:p="urn:p" a="1" p:b="2"><p:c xmlns:q="urn:q" q:d="3"/><e xmlns="" f="&amp;&lt;&#9;"/></r>"#;
        assert_eq!(
            rewrite(doc),
            r#"<r xmlns="urn:r" xmlns:p="urn:p" a="1" p:b="2"><p:c xmlns:q="urn:q" q:d="3"/><e xmlns="" f="&amp;&lt;&#9;"/></r>"#
        );
    }

    #[test]
    fn the_innermost_binding_in_force_names_a_namespace() {
        // p means urn:b inside c, so urn:a must be reached through q there.
        let doc = r#"<r xmlns="urn:r" xmlns:p="urn:a" xmlns:q="urn:a"><c xmlns:p="urn:b"><p:x/><q:y/></c><p:z/></r>"#;
        assert_eq!(
            rewrite(doc),
            r#"<r xmlns="urn:r" xmlns:p="urn:a" xmlns:q="urn:a"><c xmlns:p="urn:b"><p:x/><q:y/></c><q:z/></r>"#
        );
    }

    #[test]
    fn an_element_in_no_namespace_undeclares_the_default() {
        for mut scope in [Scope::default(), Scope::indexed()] {
            scope.push(None, "urn:outer".into());
            let out = child_alone(r#"<r><e a="1"/></r>"#, &mut scope);
            assert_eq!(out, r#"<e xmlns="" a="1"/>"#);
            assert_eq!(scope.default_ns(), "urn:outer");
        }
    }

    #[test]
    fn fresh_prefixes_are_the_smallest_unbound_and_are_reused_by_siblings() {
        for scope in [Scope::default(), Scope::indexed()] {
            fresh_prefixes_in(scope);
        }
    }

    fn fresh_prefixes_in(mut scope: Scope) {
        scope.push(Some("ns0".into()), "urn:taken".into());
        scope.push(Some("ns2".into()), "urn:taken2".into());
        // Names that only look like ours do not take a number.
        scope.push(Some("ns01".into()), "urn:x".into());
        scope.push(Some("ns+1".into()), "urn:x".into());
        let doc = r#"<r xmlns:a="urn:a" xmlns:b="urn:b" xmlns:c="urn:c"><a:e b:x="1" c:y="2"/><c:e/></r>"#;
        let out = child_alone(doc, &mut scope);
        assert_eq!(
            out,
            r#"<ns1:e xmlns:ns1="urn:a" xmlns:ns3="urn:b" xmlns:ns4="urn:c" ns3:x="1" ns4:y="2"/><ns1:e xmlns:ns1="urn:c"/>"#
        );
        // A number freed by its last binding is the first one handed out again.
        scope.truncate(0);
        scope.push(Some("ns1".into()), "urn:z".into());
        assert_eq!(scope.fresh_prefix(), "ns0");
        scope.push(Some("ns0".into()), "urn:y".into());
        assert_eq!(scope.fresh_prefix(), "ns2");
        scope.push(Some("ns0".into()), "urn:shadowing".into());
        scope.truncate(2);
        assert_eq!(scope.fresh_prefix(), "ns2");
        assert_eq!(scope.prefix_for("urn:y"), Some("ns0"));
        assert_eq!(scope.prefix_for("urn:shadowing"), None);
    }

    #[test]
    fn an_index_built_under_shadowing_brings_the_outer_binding_back() {
        let many: String = (0..SCANNED)
            .map(|i| format!(r#" xmlns:m{i}="urn:m{i}""#))
            .collect();
        let doc = format!(
            r#"<r xmlns="urn:r" xmlns:p="urn:a"><c xmlns:p="urn:b"{many}><p:x/><q:y xmlns:q="urn:a"/></c><p:z/></r>"#
        );
        let out = rewrite(&doc);
        assert!(
            out.ends_with(r#"<p:x/><q:y xmlns:q="urn:a"/></c><p:z/></r>"#),
            "{out}"
        );
        let root = parse(out.as_bytes()).unwrap();
        let c = root.get_child("c", "urn:r").unwrap();
        assert!(c.has_child("x", "urn:b") && c.has_child("y", "urn:a"));
        assert!(root.has_child("z", "urn:a"));
    }

    #[test]
    fn many_declarations_and_attributes_are_written_back() {
        let mut doc = String::from(r#"<r xmlns="urn:r""#);
        for i in 0..3_000 {
            doc.push_str(&format!(r#" xmlns:p{i}="urn:{i}" p{i}:a="{i}""#));
        }
        doc.push('>');
        for i in (0..3_000).step_by(7) {
            doc.push_str(&format!("<p{i}:e/>"));
        }
        doc.push_str("</r>");
        let again = rewrite(&doc);
        // Same tree; declarations come out sorted, so the text is compared by length.
        assert!(
            parse(again.as_bytes()) == parse(doc.as_bytes()),
            "trees differ"
        );
        assert_eq!(again.len(), doc.len());
        assert!(again.contains(r#"<p2996:e/></r>"#));
    }
}
