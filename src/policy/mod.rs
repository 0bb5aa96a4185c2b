//! Presence authorization (RFC 5025 on the common-policy framework of RFC 4745): which
//! watchers may subscribe, and what part of the presence document each one sees.
//!
//! Sans-I/O: `rules` turns pres-rules documents into values, [`evaluate`] combines the
//! rules that match one watcher into a [`Decision`], and `transform` applies a decision's
//! [`View`] to a PIDF body. `View` is `Hash + Eq` so the engine builds one filtered body
//! per distinct permission set instead of one per watcher.

mod datetime;
pub mod rules;
pub mod transform;

use std::collections::BTreeSet;

pub use datetime::parse_date_time;
pub use rules::{Condition, IdentityItem, Rule, RulesError, Ruleset};
pub use transform::apply;

/// RFC 5025 §3.2.1 sub-handling, ordered by its numeric value (block 0, confirm 10,
/// polite-block 20, allow 30) so the combination of several rules is a `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubHandling {
    Block,
    Confirm,
    PoliteBlock,
    Allow,
}

impl SubHandling {
    pub fn parse(s: &str) -> Option<SubHandling> {
        match s.trim() {
            "block" => Some(SubHandling::Block),
            "confirm" => Some(SubHandling::Confirm),
            "polite-block" => Some(SubHandling::PoliteBlock),
            "allow" => Some(SubHandling::Allow),
            _ => None,
        }
    }
}

/// Which tuples, persons or devices a watcher sees (RFC 5025 §3.3.2–§3.3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Selection {
    /// None of them (the default when the permission is absent).
    #[default]
    Nothing,
    /// `all-services` / `all-persons` / `all-devices`.
    All,
    /// Those matching any selector.
    Some(BTreeSet<Selector>),
}

impl Selection {
    /// RFC 4745 §10.2: permissions of several matching rules combine as a union.
    fn union(&mut self, other: &Selection) {
        match (&mut *self, other) {
            (Selection::All, _) | (_, Selection::Nothing) => {}
            (_, Selection::All) => *self = Selection::All,
            (Selection::Nothing, Selection::Some(b)) => *self = Selection::Some(b.clone()),
            (Selection::Some(a), Selection::Some(b)) => a.extend(b.iter().cloned()),
        }
    }
}

/// One way of naming a tuple, person or device in a provide-* permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// `service-uri`: the tuple's `contact`.
    ServiceUri(String),
    /// `service-uri-scheme`: the scheme of the tuple's `contact`.
    ServiceUriScheme(String),
    /// `occurrence-id`: the element's `id`.
    OccurrenceId(String),
    /// `class`: the RPID `class` child.
    Class(String),
    /// `deviceID`: a device's `deviceID`.
    DeviceId(String),
}

/// RPID elements a watcher may see (RFC 5025 §3.3.6–§3.3.17), named by the element
/// they release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    Activities,
    Class,
    DeviceId,
    Mood,
    PlaceIs,
    PlaceType,
    Privacy,
    Relationship,
    StatusIcon,
    Sphere,
    TimeOffset,
    Note,
}

impl Attribute {
    /// (permission element, released element) pairs.
    const ALL: [(Attribute, &'static str, &'static str); 12] = [
        (Attribute::Activities, "provide-activities", "activities"),
        (Attribute::Class, "provide-class", "class"),
        (Attribute::DeviceId, "provide-deviceID", "deviceID"),
        (Attribute::Mood, "provide-mood", "mood"),
        (Attribute::PlaceIs, "provide-place-is", "place-is"),
        (Attribute::PlaceType, "provide-place-type", "place-type"),
        (Attribute::Privacy, "provide-privacy", "privacy"),
        (
            Attribute::Relationship,
            "provide-relationship",
            "relationship",
        ),
        (Attribute::StatusIcon, "provide-status-icon", "status-icon"),
        (Attribute::Sphere, "provide-sphere", "sphere"),
        (Attribute::TimeOffset, "provide-time-offset", "time-offset"),
        (Attribute::Note, "provide-note", "note"),
    ];

    pub fn from_permission(name: &str) -> Option<Attribute> {
        Attribute::ALL
            .iter()
            .find(|(_, p, _)| *p == name)
            .map(|(a, _, _)| *a)
    }

    pub fn from_element(name: &str) -> Option<Attribute> {
        Attribute::ALL
            .iter()
            .find(|(_, _, e)| *e == name)
            .map(|(a, _, _)| *a)
    }
}

/// RFC 5025 §3.3.13 provide-user-input, ordered from least to most revealing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserInput {
    #[default]
    False,
    Bare,
    Thresholds,
    Full,
}

/// The transformations of the rules that matched, combined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Transformations {
    pub services: Selection,
    pub persons: Selection,
    pub devices: Selection,
    /// `provide-all-attributes`: every element of a released tuple/person/device.
    pub all_attributes: bool,
    pub attributes: BTreeSet<Attribute>,
    pub user_input: UserInput,
    /// `provide-unknown-attribute`: (namespace, name) of elements outside PIDF/RPID.
    pub unknown: BTreeSet<(String, String)>,
}

impl Transformations {
    fn union(&mut self, other: &Transformations) {
        self.services.union(&other.services);
        self.persons.union(&other.persons);
        self.devices.union(&other.devices);
        self.all_attributes |= other.all_attributes;
        self.attributes.extend(other.attributes.iter().copied());
        self.user_input = self.user_input.max(other.user_input);
        self.unknown.extend(other.unknown.iter().cloned());
    }
}

/// What a watcher's NOTIFY bodies are made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum View {
    /// The document as published: no matching rule carried `<transformations>` (what
    /// OpenSIPS does; RFC 5025 would show nothing, which surprises users who wrote a bare
    /// allow rule).
    Full,
    /// The document filtered by these permissions.
    Filtered(Transformations),
    /// RFC 5025 §3.2.1 polite-block: a document that reveals nothing (one closed tuple).
    Neutral,
}

/// The outcome of evaluating a presentity's rules for one watcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision {
    pub sub_handling: SubHandling,
    pub view: View,
}

impl Decision {
    /// No rule applies: the presentity has to decide (RFC 5025 §3.2.1 confirm).
    pub fn confirm() -> Decision {
        Decision {
            sub_handling: SubHandling::Confirm,
            view: View::Full,
        }
    }

    /// Everything, as with force_active.
    pub fn allow_all() -> Decision {
        Decision {
            sub_handling: SubHandling::Allow,
            view: View::Full,
        }
    }
}

/// What the conditions are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The watcher's identity, e.g. `sip:bob@example.com` (RFC 5025 §3.1.1.2).
    pub watcher: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// The presentity's current RPID sphere, if it published one (RFC 4480 §3.7).
    pub sphere: Option<&'a str>,
}

/// Combines every rule of every ruleset that matches `subject` (RFC 4745 §10): the most
/// permissive sub-handling and the union of the transformations. No matching rule, or
/// matching rules without sub-handling, give confirm.
pub fn evaluate(rulesets: &[Ruleset], subject: &Subject<'_>) -> Decision {
    let all: Vec<&Rule> = rulesets.iter().flat_map(|r| r.rules.iter()).collect();
    // OMA other-identity matches watchers that no identity condition of any rule names.
    let named_elsewhere = all.iter().any(|r| {
        r.conditions.iter().any(|c| match c {
            Condition::Identity(items) => rules::identity_matches(items, subject.watcher),
            _ => false,
        })
    });
    let mut sub: Option<SubHandling> = None;
    let mut transformations: Option<Transformations> = None;
    for rule in all {
        if !rule.matches(subject, named_elsewhere) {
            continue;
        }
        if let Some(s) = rule.sub_handling {
            sub = Some(sub.map_or(s, |cur| cur.max(s)));
        }
        if let Some(t) = &rule.transformations {
            transformations
                .get_or_insert_with(Transformations::default)
                .union(t);
        }
    }
    let sub_handling = sub.unwrap_or(SubHandling::Confirm);
    let view = match (sub_handling, transformations) {
        (SubHandling::PoliteBlock, _) => View::Neutral,
        (_, None) => View::Full,
        (_, Some(t)) => View::Filtered(t),
    };
    Decision { sub_handling, view }
}

#[cfg(test)]
mod tests;
