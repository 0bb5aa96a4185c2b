//! pres-rules (RFC 5025): the actions and transformations a presence owner's
//! common-policy rules carry, read from each rule and combined over the rules that match
//! a watcher into one [`Decision`]; the conditions are the generic `policy` part. `View`
//! is `Hash + Eq`, so the engine builds one filtered body per distinct permission set
//! instead of one per watcher.

use std::collections::BTreeSet;

use minidom::Element;

use crate::policy::{self, Permissions, Ruleset, Subject};

/// RFC 5025 §8.1.
pub const PRES_RULES_NS: &str = "urn:ietf:params:xml:ns:pres-rules";

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

/// What one rule grants: its sub-handling, and its transformations if it has a
/// `<transformations>` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresPermissions {
    pub sub_handling: Option<SubHandling>,
    pub transformations: Option<Transformations>,
}

impl Permissions for PresPermissions {
    fn of_rule(actions: Option<&Element>, transformations: Option<&Element>) -> Self {
        let sub_handling = actions
            .and_then(|a| a.get_child("sub-handling", PRES_RULES_NS))
            // An unreadable value must not grant more than block (RFC 4745 §10.2).
            .map(|h| SubHandling::parse(&h.text()).unwrap_or(SubHandling::Block));
        PresPermissions {
            sub_handling,
            transformations: transformations.map(parse_transformations),
        }
    }

    /// RFC 4745 §10.2 with RFC 5025's combining rules: the most permissive
    /// sub-handling, the union of the transformations.
    fn combine(&mut self, other: &Self) {
        if let Some(s) = other.sub_handling {
            self.sub_handling = Some(self.sub_handling.map_or(s, |cur| cur.max(s)));
        }
        if let Some(t) = &other.transformations {
            self.transformations
                .get_or_insert_with(Transformations::default)
                .union(t);
        }
    }
}

/// A presence owner's rules documents.
pub type PresRuleset = Ruleset<PresPermissions>;

/// The decision for one watcher: every rule that matches combined (RFC 4745 §10). No
/// matching rule, or matching rules without sub-handling, give confirm.
pub fn decide(rulesets: &[PresRuleset], subject: &Subject<'_>) -> Decision {
    let granted = policy::evaluate(rulesets, subject).unwrap_or_default();
    let sub_handling = granted.sub_handling.unwrap_or(SubHandling::Confirm);
    let view = match (sub_handling, granted.transformations) {
        (SubHandling::PoliteBlock, _) => View::Neutral,
        (_, None) => View::Full,
        (_, Some(t)) => View::Filtered(t),
    };
    Decision { sub_handling, view }
}

fn parse_selection(el: &Element, all: &str) -> Selection {
    let mut set = BTreeSet::new();
    for c in el.children() {
        if c.is(all, PRES_RULES_NS) {
            return Selection::All;
        }
        let text = c.text().trim().to_owned();
        if !c.has_ns(PRES_RULES_NS) {
            continue;
        }
        let selector = match c.name() {
            "service-uri" => Selector::ServiceUri(text),
            "service-uri-scheme" => Selector::ServiceUriScheme(text.to_ascii_lowercase()),
            "occurrence-id" => Selector::OccurrenceId(text),
            "class" => Selector::Class(text),
            "deviceID" => Selector::DeviceId(text),
            _ => continue,
        };
        set.insert(selector);
    }
    if set.is_empty() {
        Selection::Nothing
    } else {
        Selection::Some(set)
    }
}

fn parse_transformations(el: &Element) -> Transformations {
    let mut t = Transformations::default();
    for c in el.children().filter(|c| c.has_ns(PRES_RULES_NS)) {
        let yes = || {
            let v = c.text();
            let v = v.trim();
            // Boolean permissions (RFC 5025 §3.3.6): an empty element means true.
            v.is_empty() || v == "true" || v == "1"
        };
        match c.name() {
            "provide-services" => t.services = parse_selection(c, "all-services"),
            "provide-persons" => t.persons = parse_selection(c, "all-persons"),
            "provide-devices" => t.devices = parse_selection(c, "all-devices"),
            "provide-all-attributes" => t.all_attributes = true,
            "provide-user-input" => {
                t.user_input = match c.text().trim() {
                    "bare" => UserInput::Bare,
                    "thresholds" => UserInput::Thresholds,
                    "full" => UserInput::Full,
                    _ => UserInput::False,
                }
            }
            "provide-unknown-attribute" => {
                if let (Some(ns), Some(name)) = (c.attr("ns"), c.attr("name"))
                    && yes()
                {
                    t.unknown.insert((ns.to_owned(), name.to_owned()));
                }
            }
            name => {
                if let Some(a) = Attribute::from_permission(name)
                    && yes()
                {
                    t.attributes.insert(a);
                }
            }
        }
    }
    t
}
