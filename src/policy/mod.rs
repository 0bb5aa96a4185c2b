//! Authorization by common-policy rules (RFC 4745): which rules of an owner's documents
//! apply to a watcher, and what they grant together. The conditions (identity, sphere,
//! validity) are the framework's and evaluated here; what a rule grants — its actions
//! and transformations — belongs to the application (pres-rules for presence, RFC 5025;
//! im-rules for MESSAGE) and is read and combined through [`Permissions`].
//!
//! Sans-I/O: `rules` turns documents into values, [`evaluate`] combines what the rules
//! that match one subject grant.

mod datetime;
pub mod im;
pub mod rules;

use minidom::Element;

pub use datetime::parse_date_time;
pub use rules::{Condition, IdentityItem, Rule, RulesError, Ruleset};

/// What one application's rules grant, and how grants of several matching rules
/// combine (RFC 4745 §10.2: each permission has its own combining rule).
pub trait Permissions: Default + Clone {
    /// The permissions one rule grants, from its `<actions>` and `<transformations>`
    /// elements (either may be absent).
    fn of_rule(actions: Option<&Element>, transformations: Option<&Element>) -> Self;
    /// Adds what another matching rule grants.
    fn combine(&mut self, other: &Self);
}

/// What the conditions are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The watcher's identity, e.g. `sip:bob@example.com` (RFC 4745 §7.1).
    pub watcher: &'a str,
    /// Unix seconds (§7.3 validity).
    pub now: u64,
    /// The sphere the owner is in now, if known (§7.2).
    pub sphere: Option<&'a str>,
}

/// Combines what every rule of every ruleset that matches `subject` grants (RFC 4745
/// §10); `None` when no rule matches.
pub fn evaluate<P: Permissions>(rulesets: &[Ruleset<P>], subject: &Subject<'_>) -> Option<P> {
    let all: Vec<&Rule<P>> = rulesets.iter().flat_map(|r| r.rules.iter()).collect();
    // OMA other-identity matches watchers that no identity condition of any rule names.
    let named_elsewhere = all.iter().any(|r| {
        r.conditions.iter().any(|c| match c {
            Condition::Identity(items) => rules::identity_matches(items, subject.watcher),
            _ => false,
        })
    });
    let mut granted: Option<P> = None;
    for rule in all {
        if rule.matches(subject, named_elsewhere) {
            match &mut granted {
                Some(g) => g.combine(&rule.permissions),
                None => granted = Some(rule.permissions.clone()),
            }
        }
    }
    granted
}

#[cfg(test)]
mod tests;
