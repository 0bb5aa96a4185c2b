//! RFC 5025 §3.3 transformations applied to a PIDF document: drop the tuples, persons
//! and devices a watcher may not see, then the elements of the rest it may not see.
//! Fails closed: a body that cannot be read becomes the neutral document.

use minidom::{Element, Node};

use super::pidf::{self, DATA_MODEL_NS, PIDF_NS, RPID_NS};
use super::rules::{Attribute, Selection, Selector, Transformations, UserInput, View};
use crate::xml;

/// The body a watcher with `view` receives, from the shared document `body` of `entity`.
pub fn apply(body: &[u8], entity: &str, view: &View) -> Vec<u8> {
    match view {
        View::Full => body.to_vec(),
        View::Neutral => pidf::closed_document(entity),
        View::Filtered(t) => match xml::parse(body) {
            Ok(root) if root.is("presence", PIDF_NS) => xml::write_document(&filter(root, t)),
            _ => pidf::closed_document(entity),
        },
    }
}

fn filter(mut root: Element, t: &Transformations) -> Element {
    for node in root.take_nodes() {
        let Node::Element(el) = node else {
            root.append_node(node);
            continue;
        };
        let kept = if el.is("tuple", PIDF_NS) {
            selected(&t.services, &el).then(|| component(el, t))
        } else if el.is("person", DATA_MODEL_NS) || el.is("person", RPID_NS) {
            selected(&t.persons, &el).then(|| component(el, t))
        } else if el.is("device", DATA_MODEL_NS) {
            selected(&t.devices, &el).then(|| component(el, t))
        } else {
            attribute_allowed(&el, t).then(|| user_input(el, t))
        };
        if let Some(el) = kept {
            root.append_child(el);
        }
    }
    root
}

/// RFC 5025 §3.3.2–§3.3.4: whether a tuple/person/device is released.
fn selected(selection: &Selection, el: &Element) -> bool {
    match selection {
        Selection::Nothing => false,
        Selection::All => true,
        Selection::Some(set) => set.iter().any(|s| matches_selector(s, el)),
    }
}

fn child_text(el: &Element, name: &str, namespaces: &[&str]) -> Option<String> {
    el.children()
        .find(|c| c.name() == name && namespaces.iter().any(|ns| c.has_ns(*ns)))
        .map(|c| c.text().trim().to_owned())
}

fn matches_selector(s: &Selector, el: &Element) -> bool {
    match s {
        Selector::OccurrenceId(id) => el.attr("id") == Some(id.as_str()),
        Selector::Class(class) => child_text(el, "class", &[RPID_NS]).is_some_and(|c| c == *class),
        Selector::DeviceId(d) => {
            child_text(el, "deviceID", &[DATA_MODEL_NS]).is_some_and(|c| c == *d)
        }
        Selector::ServiceUri(uri) => {
            child_text(el, "contact", &[PIDF_NS]).is_some_and(|c| c == *uri)
        }
        Selector::ServiceUriScheme(scheme) => child_text(el, "contact", &[PIDF_NS])
            .and_then(|c| c.split_once(':').map(|(s, _)| s.to_ascii_lowercase()))
            .is_some_and(|s| s == *scheme),
    }
}

/// A released tuple/person/device with only the elements the watcher may see.
fn component(mut el: Element, t: &Transformations) -> Element {
    let is_device = el.is("device", DATA_MODEL_NS);
    for node in el.take_nodes() {
        let Node::Element(child) = node else {
            el.append_node(node);
            continue;
        };
        let ns = child.ns();
        let keep = match (ns.as_str(), child.name()) {
            // The service itself: state, address and age are what a tuple is.
            (PIDF_NS, "status") => {
                el.append_child(status(child, t));
                continue;
            }
            (PIDF_NS, "contact") | (PIDF_NS, "timestamp") | (DATA_MODEL_NS, "timestamp") => true,
            // RFC 4479 §3.4.3: a device is named by its deviceID.
            (DATA_MODEL_NS, "deviceID") if is_device => true,
            _ => attribute_allowed(&child, t),
        };
        if keep {
            el.append_child(user_input(child, t));
        }
    }
    el
}

/// A tuple's status: `basic` always, the rest by permission.
fn status(mut el: Element, t: &Transformations) -> Element {
    for node in el.take_nodes() {
        match node {
            Node::Element(child) if !child.is("basic", PIDF_NS) => {
                if attribute_allowed(&child, t) {
                    el.append_child(user_input(child, t));
                }
            }
            other => el.append_node(other),
        }
    }
    el
}

/// Whether an element inside a released component (or at top level) is released.
fn attribute_allowed(el: &Element, t: &Transformations) -> bool {
    if t.all_attributes {
        return true;
    }
    let ns = el.ns();
    let name = el.name();
    let known = matches!(ns.as_str(), PIDF_NS | DATA_MODEL_NS | RPID_NS);
    if known && name == "user-input" {
        return t.user_input != UserInput::False;
    }
    match Attribute::from_element(name) {
        // PIDF and data-model notes are released by provide-note too (RFC 5025 §3.3.15).
        Some(a) if known => t.attributes.contains(&a),
        _ => t.unknown.contains(&(ns, name.to_owned())),
    }
}

/// RFC 5025 §3.3.13: `bare` shows idle/active only, `thresholds` adds the threshold.
fn user_input(mut el: Element, t: &Transformations) -> Element {
    let level = if t.all_attributes {
        UserInput::Full
    } else {
        t.user_input
    };
    if el.name() == "user-input" && el.has_ns(RPID_NS) && level < UserInput::Full {
        el.attrs_mut().retain(|ns, name, _| {
            level == UserInput::Thresholds && ns.is_none() && name.as_str() == "idle-threshold"
        });
    }
    el
}
