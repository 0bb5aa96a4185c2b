//! Resource lists (RFC 4826): which resources a service URI stands for. Services come
//! from the `rls-services` documents users keep over XCAP; a service holds its list
//! inline or points at a list of a `resource-lists` document, and lists nest, name
//! other lists (`external`) and other lists' entries (`entry-ref`). Resolution follows
//! all of it to a bounded depth, removes duplicates (the first occurrence stays),
//! detects loops and skips what it cannot find, so a broken document yields a shorter
//! list, never an error the subscriber pays for.
//!
//! Sans-I/O: built from the documents as stored; the engine rebuilds it when an XCAP
//! document changed.

use std::collections::HashMap;

use log::warn;
use minidom::Element;

use crate::store::Xcap;
use crate::store::xcap::doc_type;

const RLS_NS: &str = "urn:ietf:params:xml:ns:rls-services";
pub const RL_NS: &str = "urn:ietf:params:xml:ns:resource-lists";

/// How many lists deep a service may reach (a list, its nested or referenced lists...).
pub const MAX_DEPTH: usize = 8;
/// Resources one service may stand for; past it the rest are left out (logged).
pub const MAX_MEMBERS: usize = 1000;

/// One resource of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// As a SIP request would address it: the AOR of a SIP URI, else the URI as written.
    pub uri: String,
    /// The entry's `display-name`.
    pub name: Option<String>,
}

/// One `<service>` of an rls-services document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub uri: String,
    /// `sip:user@domain` of the document's owner: the list is read as this user.
    pub owner: String,
    /// The event packages the service offers; empty: any.
    pub packages: Vec<String>,
    pub members: Vec<Member>,
}

impl Service {
    /// Whether the service offers `package` (an Event package name).
    pub fn offers(&self, package: &str) -> bool {
        self.packages.is_empty()
            || self
                .packages
                .iter()
                .any(|p| p.eq_ignore_ascii_case(package))
    }
}

/// Every service, by URI, and which services each resource is a member of.
#[derive(Debug, Default)]
pub struct Lists {
    services: HashMap<String, Service>,
    by_member: HashMap<String, Vec<String>>,
}

/// A SIP URI's AOR, or the text as it is.
pub fn normalize(uri: &str) -> String {
    let uri = uri.trim();
    crate::sip::uri::Uri::parse(uri)
        .ok()
        .and_then(|u| u.as_sip().map(|s| s.aor()))
        .unwrap_or_else(|| uri.to_owned())
}

impl Lists {
    /// Reads every rls-services document among `docs`, resolving lists against the
    /// resource-lists documents among them. A service URI defined twice keeps its
    /// first definition (in the documents' order).
    pub fn build(docs: &[Xcap]) -> Lists {
        let lists: Documents = docs
            .iter()
            .filter(|d| d.doc_type == doc_type::RESOURCE_LISTS)
            .filter_map(|d| Some((document_path(&d.doc_uri)?, crate::xml::parse(&d.doc).ok()?)))
            .collect();
        let mut out = Lists::default();
        for d in docs.iter().filter(|d| d.doc_type == doc_type::RLS_SERVICES) {
            let Ok(root) = crate::xml::parse(&d.doc) else {
                warn!("rls: {} is not well-formed; skipped", d.doc_uri);
                continue;
            };
            let owner = format!("sip:{}@{}", d.username, d.domain);
            for service in root.children().filter(|c| c.is("service", RLS_NS)) {
                let Some(uri) = service.attr("uri").map(normalize) else {
                    continue;
                };
                if out.services.contains_key(&uri) {
                    warn!("rls: service {uri} defined twice; {} ignored", d.doc_uri);
                    continue;
                }
                let mut r = Resolver::new(&lists);
                for child in service.children() {
                    if child.is("list", RLS_NS) {
                        r.list(child, &mut Vec::new(), 1);
                    } else if child.is("resource-list", RLS_NS) {
                        r.reference(&child.text(), &mut Vec::new(), 1);
                    }
                }
                let packages = service
                    .children()
                    .filter(|c| c.is("packages", RLS_NS))
                    .flat_map(|p| p.children().filter(|c| c.is("package", RLS_NS)))
                    .map(|p| p.text().trim().to_owned())
                    .collect();
                for m in &r.members {
                    out.by_member
                        .entry(m.uri.clone())
                        .or_default()
                        .push(uri.clone());
                }
                out.services.insert(
                    uri.clone(),
                    Service {
                        uri,
                        owner: owner.clone(),
                        packages,
                        members: r.members,
                    },
                );
            }
        }
        out
    }

    pub fn service(&self, uri: &str) -> Option<&Service> {
        self.services.get(uri)
    }

    /// The services `member` belongs to.
    pub fn services_of(&self, member: &str) -> &[String] {
        self.by_member.get(member).map_or(&[], Vec::as_slice)
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }
}

/// resource-lists documents by their path from the AUID on
/// (`resource-lists/users/<xui>/<document>`).
type Documents = HashMap<String, Element>;

/// `resource-lists/users/<xui>/<document>` out of a stored document's URI or path, or
/// out of a reference's part before `~~`, percent-decoded.
fn document_path(uri: &str) -> Option<String> {
    let decoded = crate::xcap::percent_decode(uri)?;
    let at = decoded.find("resource-lists/users/")?;
    Some(decoded[at..].trim_end_matches('/').to_owned())
}

/// One step of a node selector: an element name and what picks one of its kind.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    name: String,
    pick: Pick,
}

#[derive(Debug, PartialEq, Eq)]
enum Pick {
    First,
    Position(usize),
    Attr(String, String),
}

/// `/resource-lists/list[@name="a"]/entry[@uri="sip:x"]`, percent-decoded, into
/// steps; namespace prefixes are dropped (every step is in the resource-lists one).
fn selector(s: &str) -> Option<Vec<Step>> {
    s.split('/')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], Some(part[i + 1..].strip_suffix(']')?)),
                None => (part, None),
            };
            let name = name.rsplit(':').next()?.to_owned();
            let pick = match rest {
                None => Pick::First,
                Some(r) => match r.strip_prefix('@') {
                    Some(attr) => {
                        let (k, v) = attr.split_once('=')?;
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))?;
                        Pick::Attr(k.trim().to_owned(), v.to_owned())
                    }
                    None => Pick::Position(r.trim().parse().ok().filter(|n| *n > 0)?),
                },
            };
            Some(Step { name, pick })
        })
        .collect()
}

/// The element `steps` select from the document root `root`.
fn select<'a>(root: &'a Element, steps: &[Step]) -> Option<&'a Element> {
    let (first, rest) = steps.split_first()?;
    if first.name != root.name() {
        return None;
    }
    let mut at = root;
    for step in rest {
        let mut same = at.children().filter(|c| c.name() == step.name);
        at = match &step.pick {
            Pick::First => same.next()?,
            Pick::Position(n) => same.nth(n - 1)?,
            Pick::Attr(k, v) => same.find(|c| c.attr(k.as_str()) == Some(v.as_str()))?,
        };
    }
    Some(at)
}

struct Resolver<'a> {
    documents: &'a Documents,
    members: Vec<Member>,
    seen: std::collections::HashSet<String>,
}

impl<'a> Resolver<'a> {
    fn new(documents: &'a Documents) -> Self {
        Resolver {
            documents,
            members: Vec::new(),
            seen: Default::default(),
        }
    }

    fn add(&mut self, entry: &Element) {
        let Some(uri) = entry.attr("uri").map(normalize) else {
            return;
        };
        if self.members.len() >= MAX_MEMBERS {
            warn!("rls: more than {MAX_MEMBERS} resources in a list; {uri} left out");
            return;
        }
        if self.seen.insert(uri.clone()) {
            let name = entry
                .children()
                .find(|c| c.is("display-name", RL_NS))
                .map(|n| n.text().trim().to_owned())
                .filter(|n| !n.is_empty());
            self.members.push(Member { uri, name });
        }
    }

    /// The entries of a `<list>` (either namespace), depth-first in document order.
    /// `path` holds the references being followed, for loop detection.
    fn list(&mut self, list: &Element, path: &mut Vec<String>, depth: usize) {
        if depth > MAX_DEPTH {
            warn!("rls: lists nested deeper than {MAX_DEPTH}; the rest left out");
            return;
        }
        for child in list.children() {
            if child.is("entry", RL_NS) {
                self.add(child);
            } else if child.is("list", RL_NS) {
                self.list(child, path, depth + 1);
            } else if child.is("external", RL_NS) {
                if let Some(anchor) = child.attr("anchor") {
                    self.reference(anchor, path, depth + 1);
                }
            } else if child.is("entry-ref", RL_NS)
                && let Some(r) = child.attr("ref")
            {
                self.reference(r, path, depth + 1);
            }
        }
    }

    /// Follows an XCAP URI (absolute, or relative to the XCAP root) to a list or an
    /// entry of a stored resource-lists document.
    fn reference(&mut self, reference: &str, path: &mut Vec<String>, depth: usize) {
        let reference = reference.trim();
        let Some((doc, node)) = reference.split_once("/~~") else {
            warn!("rls: {reference} names no list");
            return;
        };
        let (Some(doc), Some(steps)) = (
            document_path(doc),
            crate::xcap::percent_decode(node).and_then(|n| selector(&n)),
        ) else {
            warn!("rls: cannot read the reference {reference}");
            return;
        };
        let key = format!("{doc}/~~{node}");
        if path.contains(&key) {
            warn!("rls: {reference} refers back to itself; the loop is cut there");
            return;
        }
        let Some(target) = self.documents.get(&doc).and_then(|d| select(d, &steps)) else {
            warn!("rls: {reference} not found");
            return;
        };
        path.push(key);
        if target.is("entry", RL_NS) {
            self.add(target);
        } else if target.is("list", RL_NS) {
            self.list(target, path, depth);
        }
        path.pop();
    }
}

/// Why a resource-lists or rls-services document breaks RFC 4826's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The document's structure (a missing attribute, an unknown element).
    Schema(String),
    /// A value that must be unique is not (§3.4.x, §4.4.x): where, and the value.
    NotUnique { field: &'static str, value: String },
}

/// Checks a resource-lists document (RFC 4826 §3): lists of entries, entry-refs,
/// externals and lists, each with its required attribute; list names unique among
/// sibling lists and entry URIs unique within a list.
pub fn check_resource_lists(root: &Element) -> Result<(), Invalid> {
    for list in root.children() {
        if !list.is("list", RL_NS) {
            return Err(Invalid::Schema(format!(
                "<{}> in <resource-lists>",
                list.name()
            )));
        }
    }
    check_lists(root, "resource-lists/list/@name", 1)
}

/// The children of `parent` (a `<resource-lists>` or `<list>`), recursively.
fn check_lists(parent: &Element, name_field: &'static str, depth: usize) -> Result<(), Invalid> {
    if depth > crate::xml::MAX_DEPTH {
        return Err(Invalid::Schema("lists nested too deep".into()));
    }
    let mut names = std::collections::HashSet::new();
    let mut uris = std::collections::HashSet::new();
    for child in parent.children() {
        if child.ns() != RL_NS {
            // Elements of other namespaces extend the format (RFC 4826 §3.2).
            continue;
        }
        let required = match child.name() {
            "list" => None,
            "entry" => Some("uri"),
            "entry-ref" => Some("ref"),
            "external" => Some("anchor"),
            "display-name" => continue,
            other => return Err(Invalid::Schema(format!("<{other}> in a list"))),
        };
        if let Some(attr) = required
            && child.attr(attr).is_none_or(|v| v.trim().is_empty())
        {
            return Err(Invalid::Schema(format!(
                "<{}> without {attr}",
                child.name()
            )));
        }
        if child.name() == "entry"
            && let Some(uri) = child.attr("uri")
            && !uris.insert(uri.to_owned())
        {
            return Err(Invalid::NotUnique {
                field: "list/entry/@uri",
                value: uri.to_owned(),
            });
        }
        if child.name() == "list" {
            if let Some(name) = child.attr("name")
                && !names.insert(name.to_owned())
            {
                return Err(Invalid::NotUnique {
                    field: name_field,
                    value: name.to_owned(),
                });
            }
            check_lists(child, "list/list/@name", depth + 1)?;
        }
    }
    Ok(())
}

/// Checks an rls-services document (RFC 4826 §4): services with a URI, each holding
/// exactly one of `<resource-list>` or `<list>`, and packages; service URIs unique
/// within it. Returns the service URIs (normalized), for the server-wide uniqueness
/// check the caller makes against the other documents.
pub fn check_rls_services(root: &Element) -> Result<Vec<String>, Invalid> {
    let mut uris = Vec::new();
    for service in root.children() {
        if !service.is("service", RLS_NS) {
            if service.ns() == RLS_NS {
                return Err(Invalid::Schema(format!(
                    "<{}> in <rls-services>",
                    service.name()
                )));
            }
            continue;
        }
        let Some(uri) = service.attr("uri").filter(|u| !u.trim().is_empty()) else {
            return Err(Invalid::Schema("<service> without uri".into()));
        };
        let uri = normalize(uri);
        if uris.contains(&uri) {
            return Err(Invalid::NotUnique {
                field: "rls-services/service/@uri",
                value: uri,
            });
        }
        let lists = service
            .children()
            .filter(|c| c.is("list", RLS_NS) || c.is("resource-list", RLS_NS))
            .count();
        if lists != 1 {
            return Err(Invalid::Schema(format!(
                "service {uri} has {lists} of <list> and <resource-list>; exactly one is needed"
            )));
        }
        if let Some(list) = service.children().find(|c| c.is("list", RLS_NS)) {
            check_lists(list, "service/list/list/@name", 1)?;
        }
        uris.push(uri);
    }
    Ok(uris)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::xcap::source;

    fn doc(user: &str, ty: u8, auid: &str, name: &str, body: &str) -> Xcap {
        Xcap {
            username: user.into(),
            domain: "example.com".into(),
            doc_type: ty,
            doc_uri: format!("/xcap-root/{auid}/users/sip:{user}@example.com/{name}"),
            doc: body.as_bytes().to_vec(),
            etag: "e".into(),
            source: source::INTEGRATED,
            port: 0,
        }
    }

    fn services(body: &str) -> Xcap {
        doc("joe", doc_type::RLS_SERVICES, "rls-services", "index", body)
    }

    fn lists(body: &str) -> Xcap {
        doc(
            "joe",
            doc_type::RESOURCE_LISTS,
            "resource-lists",
            "index",
            body,
        )
    }

    const HEAD: &str = r#"<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">"#;
    const RL_HEAD: &str = r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">"#;

    fn uris(l: &Lists, service: &str) -> Vec<String> {
        l.service(service)
            .map(|s| s.members.iter().map(|m| m.uri.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_inline_list_with_nesting_names_and_duplicates() {
        let l = Lists::build(&[services(&format!(
            r#"{HEAD}<service uri="sip:friends@example.com;transport=udp"><list name="f">
              <rl:entry uri="sip:bob@example.com"><rl:display-name>Bob</rl:display-name></rl:entry>
              <rl:list name="inner"><rl:entry uri="sip:carol@example.com"/><rl:entry uri="sip:bob@example.com"/></rl:list>
              <rl:entry uri="sip:dave@example.com;user=phone"/>
            </list><packages><package>presence</package></packages></service></rls-services>"#
        ))]);
        let s = l.service("sip:friends@example.com").unwrap();
        assert_eq!(
            uris(&l, "sip:friends@example.com"),
            [
                "sip:bob@example.com",
                "sip:carol@example.com",
                "sip:dave@example.com"
            ]
        );
        assert_eq!(s.members[0].name.as_deref(), Some("Bob"));
        assert_eq!(s.owner, "sip:joe@example.com");
        assert!(s.offers("presence") && !s.offers("dialog"));
        assert_eq!(
            l.services_of("sip:carol@example.com"),
            ["sip:friends@example.com"]
        );
    }

    #[test]
    fn references_into_resource_lists_documents_are_followed() {
        let l = Lists::build(&[
            lists(&format!(
                r#"{RL_HEAD}<list name="a"><entry uri="sip:x@example.com"/>
                  <external anchor="http://xcap.example.com/xcap-root/resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22b%22%5d"/>
                </list><list name="b"><entry uri="sip:y@example.com"/><entry uri="sip:z@example.com"/></list></resource-lists>"#
            )),
            services(&format!(
                r#"{HEAD}<service uri="sip:s1@example.com"><resource-list>http://xcap.example.com/xcap-root/resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22a%22%5d</resource-list></service>
                <service uri="sip:s2@example.com"><list><rl:entry-ref ref="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22b%22%5d/entry%5b2%5d"/></list></service></rls-services>"#
            )),
        ]);
        assert_eq!(
            uris(&l, "sip:s1@example.com"),
            [
                "sip:x@example.com",
                "sip:y@example.com",
                "sip:z@example.com"
            ]
        );
        assert_eq!(uris(&l, "sip:s2@example.com"), ["sip:z@example.com"]);
        assert!(l.service("sip:s1@example.com").unwrap().offers("dialog"));
    }

    #[test]
    fn a_loop_is_cut_and_what_came_before_it_stays() {
        let l = Lists::build(&[
            lists(&format!(
                r#"{RL_HEAD}<list name="a"><entry uri="sip:x@example.com"/>
                  <external anchor="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list[@name=&quot;b&quot;]"/></list>
                <list name="b"><entry uri="sip:y@example.com"/>
                  <external anchor="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list[@name=&quot;a&quot;]"/></list></resource-lists>"#
            )),
            services(&format!(
                r#"{HEAD}<service uri="sip:loop@example.com"><resource-list>resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list[@name="a"]</resource-list></service></rls-services>"#
            )),
        ]);
        assert_eq!(
            uris(&l, "sip:loop@example.com"),
            ["sip:x@example.com", "sip:y@example.com"]
        );
    }

    #[test]
    fn empty_missing_and_malformed_lists_give_no_members_not_errors() {
        let l = Lists::build(&[
            services(&format!(
                r#"{HEAD}<service uri="sip:empty@example.com"><list/></service>
                <service uri="sip:gone@example.com"><resource-list>resource-lists/users/sip:joe@example.com/nothing/~~/resource-lists/list</resource-list></service>
                <service uri="sip:bad@example.com"><resource-list>no reference at all</resource-list></service>
                <service><list><rl:entry uri="sip:a@example.com"/></list></service></rls-services>"#
            )),
            doc(
                "eve",
                doc_type::RLS_SERVICES,
                "rls-services",
                "index",
                "<not-closed>",
            ),
        ]);
        for s in [
            "sip:empty@example.com",
            "sip:gone@example.com",
            "sip:bad@example.com",
        ] {
            assert!(l.service(s).unwrap().members.is_empty(), "{s}");
        }
        assert!(l.services_of("sip:a@example.com").is_empty());
    }

    #[test]
    fn nesting_past_the_bound_is_left_out() {
        let mut list = String::new();
        for i in 0..MAX_DEPTH + 3 {
            list.push_str(&format!(
                r#"<rl:list><rl:entry uri="sip:d{i}@example.com"/>"#
            ));
        }
        for _ in 0..MAX_DEPTH + 3 {
            list.push_str("</rl:list>");
        }
        let l = Lists::build(&[services(&format!(
            r#"{HEAD}<service uri="sip:deep@example.com"><list>{list}</list></service></rls-services>"#
        ))]);
        assert_eq!(uris(&l, "sip:deep@example.com").len(), MAX_DEPTH - 1);
    }

    #[test]
    fn a_service_defined_twice_keeps_its_first_definition() {
        let first = services(&format!(
            r#"{HEAD}<service uri="sip:s@example.com"><list><rl:entry uri="sip:a@example.com"/></list></service></rls-services>"#
        ));
        let mut second = doc(
            "eve",
            doc_type::RLS_SERVICES,
            "rls-services",
            "index",
            &format!(
                r#"{HEAD}<service uri="sip:s@example.com"><list><rl:entry uri="sip:b@example.com"/></list></service></rls-services>"#
            ),
        );
        second.domain = "example.com".into();
        let l = Lists::build(&[first, second]);
        assert_eq!(uris(&l, "sip:s@example.com"), ["sip:a@example.com"]);
        assert_eq!(
            l.service("sip:s@example.com").unwrap().owner,
            "sip:joe@example.com"
        );
    }

    #[test]
    fn selectors_read_names_positions_and_quoted_attributes() {
        assert_eq!(
            selector(r#"/rl:resource-lists/list[@name='a b']/entry[3]"#).unwrap(),
            vec![
                Step {
                    name: "resource-lists".into(),
                    pick: Pick::First
                },
                Step {
                    name: "list".into(),
                    pick: Pick::Attr("name".into(), "a b".into())
                },
                Step {
                    name: "entry".into(),
                    pick: Pick::Position(3)
                },
            ]
        );
        assert!(selector("/resource-lists/list[0]").is_none());
        assert!(selector("/resource-lists/list[@name=a").is_none());
    }

    fn parse(text: &str) -> Element {
        crate::xml::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn documents_are_checked_against_rfc_4826() {
        let ok = parse(&format!(
            r#"{RL_HEAD}<list name="a"><display-name>A</display-name><entry uri="sip:x@y"/><list name="b"/><list name="c"/></list><list name="b"/></resource-lists>"#
        ));
        assert_eq!(check_resource_lists(&ok), Ok(()));
        for (doc, want) in [
            (r#"<list><entry/></list>"#, "without uri"),
            (r#"<list><entry-ref ref=""/></list>"#, "without ref"),
            (r#"<list><bogus/></list>"#, "<bogus>"),
            (r#"<entry uri="sip:x@y"/>"#, "in <resource-lists>"),
        ] {
            let e = check_resource_lists(&parse(&format!("{RL_HEAD}{doc}</resource-lists>")));
            assert!(
                matches!(&e, Err(Invalid::Schema(w)) if w.contains(want)),
                "{doc}: {e:?}"
            );
        }
        let dup = parse(&format!(
            r#"{RL_HEAD}<list><entry uri="sip:x@y"/><entry uri="sip:x@y"/></list></resource-lists>"#
        ));
        assert!(matches!(
            check_resource_lists(&dup),
            Err(Invalid::NotUnique { .. })
        ));
        let dup = parse(&format!(
            r#"{RL_HEAD}<list name="a"/><list name="a"/></resource-lists>"#
        ));
        assert!(matches!(
            check_resource_lists(&dup),
            Err(Invalid::NotUnique { .. })
        ));

        let services = parse(&format!(
            r#"{HEAD}<service uri="sip:s@y"><list><rl:entry uri="sip:a@y"/></list></service><service uri="sip:t@y;x=1"><resource-list>http://h/x</resource-list></service></rls-services>"#
        ));
        assert_eq!(
            check_rls_services(&services),
            Ok(vec!["sip:s@y".into(), "sip:t@y".into()])
        );
        for (doc, want) in [
            (r#"<service><list/></service>"#, "without uri"),
            (r#"<service uri="sip:s@y"/>"#, "exactly one"),
            (
                r#"<service uri="sip:s@y"><list/><resource-list>x</resource-list></service>"#,
                "exactly one",
            ),
        ] {
            let e = check_rls_services(&parse(&format!("{HEAD}{doc}</rls-services>")));
            assert!(
                matches!(&e, Err(Invalid::Schema(w)) if w.contains(want)),
                "{doc}: {e:?}"
            );
        }
        let dup = parse(&format!(
            r#"{HEAD}<service uri="sip:s@y"><list/></service><service uri="sip:s@y"><list/></service></rls-services>"#
        ));
        assert!(matches!(
            check_rls_services(&dup),
            Err(Invalid::NotUnique { .. })
        ));
    }
}
