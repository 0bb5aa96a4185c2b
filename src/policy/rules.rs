//! common-policy documents (RFC 4745) read into values: the rules and their conditions,
//! with each rule's actions and transformations read by the application's
//! [`Permissions`]. Anything this version does not understand makes its rule never
//! match (RFC 4745 §10.1: an unknown condition cannot be evaluated, so it must not grant
//! anything), but never makes the whole document unreadable.

use std::fmt;

use minidom::Element;

use super::{Permissions, Subject};
use crate::xml::{self, XmlError};

/// RFC 4745 §13.1.
pub const COMMON_POLICY_NS: &str = "urn:ietf:params:xml:ns:common-policy";
/// OMA presence-rules extensions (other-identity, external-list, anonymous-request).
pub const OMA_COMMON_POLICY_NS: &str = "urn:oma:xml:xdm:common-policy";

/// Why a document is not a ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesError {
    Xml(XmlError),
    NotRuleset,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesError::Xml(e) => write!(f, "{e}"),
            RulesError::NotRuleset => write!(f, "root is not a common-policy ruleset"),
        }
    }
}

impl std::error::Error for RulesError {}

/// One parsed common-policy document, its rules granting `P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset<P> {
    pub rules: Vec<Rule<P>>,
}

/// One `<rule>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<P> {
    pub id: String,
    /// All must hold; none means the rule always applies (RFC 4745 §10.1).
    pub conditions: Vec<Condition>,
    /// What its actions and transformations grant.
    pub permissions: P,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// RFC 4745 §7.1: matches when any item names the watcher.
    Identity(Vec<IdentityItem>),
    /// RFC 4745 §7.2: matches when the presentity's sphere is one of these tokens.
    Sphere(Vec<String>),
    /// RFC 4745 §7.3: matches when now lies in one of these [from, until) intervals.
    Validity(Vec<(u64, u64)>),
    /// OMA other-identity: matches a watcher no identity condition names.
    OtherIdentity,
    /// Something this version cannot evaluate.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityItem {
    /// `<one id="sip:bob@example.com"/>`.
    One(String),
    /// `<many domain="…">` (any domain when `None`) with its exceptions.
    Many {
        domain: Option<String>,
        except_ids: Vec<String>,
        except_domains: Vec<String>,
    },
}

impl<P: Permissions> Ruleset<P> {
    pub fn parse(doc: &[u8]) -> Result<Ruleset<P>, RulesError> {
        let root = xml::parse(doc).map_err(RulesError::Xml)?;
        if !root.is("ruleset", COMMON_POLICY_NS) {
            return Err(RulesError::NotRuleset);
        }
        let rules = root
            .children()
            .filter(|c| c.is("rule", COMMON_POLICY_NS))
            .map(parse_rule)
            .collect();
        Ok(Ruleset { rules })
    }
}

impl<P> Rule<P> {
    /// Whether every condition holds for `subject`. `named_elsewhere`: some rule's
    /// identity condition names this watcher (for other-identity).
    pub fn matches(&self, subject: &Subject<'_>, named_elsewhere: bool) -> bool {
        self.conditions.iter().all(|c| match c {
            Condition::Identity(items) => identity_matches(items, subject.watcher),
            Condition::Sphere(values) => subject
                .sphere
                .is_some_and(|s| values.iter().any(|v| v.eq_ignore_ascii_case(s.trim()))),
            Condition::Validity(spans) => spans
                .iter()
                .any(|(from, until)| *from <= subject.now && subject.now < *until),
            Condition::OtherIdentity => !named_elsewhere,
            Condition::Unknown(_) => false,
        })
    }
}

/// (user, lower-cased host) of a SIP/SIPS/pres URI or bare `user@host`; schemes compare
/// equal, as a watcher's identity is the same whichever one a rule spells.
fn split_identity(uri: &str) -> (Option<&str>, String) {
    let uri = uri.trim();
    let rest = match uri.split_once(':') {
        Some((scheme, rest)) if !scheme.contains('@') => rest,
        _ => uri,
    };
    let rest = rest.split([';', '?', '>']).next().unwrap_or(rest);
    match rest.rsplit_once('@') {
        Some((user, host)) => (Some(user), host.to_ascii_lowercase()),
        None => (None, rest.to_ascii_lowercase()),
    }
}

fn same_identity(a: &str, b: &str) -> bool {
    split_identity(a) == split_identity(b)
}

pub(super) fn identity_matches(items: &[IdentityItem], watcher: &str) -> bool {
    let (_, host) = split_identity(watcher);
    items.iter().any(|item| match item {
        IdentityItem::One(id) => same_identity(id, watcher),
        IdentityItem::Many {
            domain,
            except_ids,
            except_domains,
        } => {
            domain
                .as_ref()
                .is_none_or(|d| d.eq_ignore_ascii_case(&host))
                && !except_ids.iter().any(|id| same_identity(id, watcher))
                && !except_domains.iter().any(|d| d.eq_ignore_ascii_case(&host))
        }
    })
}

fn parse_rule<P: Permissions>(el: &Element) -> Rule<P> {
    let mut conditions = Vec::new();
    let mut actions = None;
    let mut transformations = None;
    for part in el.children() {
        if part.is("conditions", COMMON_POLICY_NS) {
            conditions.extend(part.children().map(parse_condition));
        } else if part.is("actions", COMMON_POLICY_NS) {
            actions = Some(part);
        } else if part.is("transformations", COMMON_POLICY_NS) {
            transformations = Some(part);
        }
    }
    Rule {
        id: el.attr("id").unwrap_or_default().to_owned(),
        conditions,
        permissions: P::of_rule(actions, transformations),
    }
}

fn parse_condition(el: &Element) -> Condition {
    let ns = el.ns();
    match (ns.as_str(), el.name()) {
        (COMMON_POLICY_NS, "identity") => Condition::Identity(parse_identity(el)),
        (COMMON_POLICY_NS, "sphere") => Condition::Sphere(
            el.attr("value")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        ),
        (COMMON_POLICY_NS, "validity") => match parse_validity(el) {
            Some(spans) => Condition::Validity(spans),
            None => Condition::Unknown("validity with an unreadable date".into()),
        },
        (OMA_COMMON_POLICY_NS, "other-identity") => Condition::OtherIdentity,
        _ => Condition::Unknown(format!("{{{ns}}}{}", el.name())),
    }
}

fn parse_identity(el: &Element) -> Vec<IdentityItem> {
    let mut items = Vec::new();
    for c in el.children() {
        if c.is("one", COMMON_POLICY_NS) {
            if let Some(id) = c.attr("id") {
                items.push(IdentityItem::One(id.to_owned()));
            }
        } else if c.is("many", COMMON_POLICY_NS) {
            let mut except_ids = Vec::new();
            let mut except_domains = Vec::new();
            for e in c.children().filter(|e| e.is("except", COMMON_POLICY_NS)) {
                if let Some(id) = e.attr("id") {
                    except_ids.push(id.to_owned());
                }
                if let Some(d) = e.attr("domain") {
                    except_domains.push(d.to_owned());
                }
            }
            items.push(IdentityItem::Many {
                domain: c.attr("domain").map(str::to_owned),
                except_ids,
                except_domains,
            });
        }
    }
    items
}

/// `<from>`/`<until>` pairs in document order (RFC 4745 §7.3).
fn parse_validity(el: &Element) -> Option<Vec<(u64, u64)>> {
    let mut spans = Vec::new();
    let mut from = None;
    for c in el.children() {
        if c.is("from", COMMON_POLICY_NS) {
            from = Some(super::parse_date_time(&c.text())?);
        } else if c.is("until", COMMON_POLICY_NS) {
            let until = super::parse_date_time(&c.text())?;
            spans.push((from.take()?, until));
        }
    }
    Some(spans)
}
