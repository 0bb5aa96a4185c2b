//! MESSAGE authorization (SER presence handbook, "MESSAGE authorization rules"): a
//! recipient's `im-rules` documents are common-policy rulesets (RFC 4745) whose one
//! action, `<im-handling>` in the `urn:iptel:xml:ns:im-rules` namespace, is `block`
//! (0, the default) or `allow` (1); several matching rules give the largest value.
//!
//! A recipient without any im-rules document has set no policy: every sender is let
//! through. With documents, a sender no rule allows is blocked.

use minidom::Element;

use super::{Permissions, Ruleset, Subject};

pub const IM_RULES_NS: &str = "urn:iptel:xml:ns:im-rules";

/// What one rule grants: whether messages are let through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImPermissions {
    pub allow: bool,
}

impl Permissions for ImPermissions {
    fn of_rule(actions: Option<&Element>, _transformations: Option<&Element>) -> Self {
        let allow = actions
            .and_then(|a| a.get_child("im-handling", IM_RULES_NS))
            // Anything but "allow" grants no more than the default, block.
            .is_some_and(|h| h.text().trim() == "allow");
        ImPermissions { allow }
    }

    fn combine(&mut self, other: &Self) {
        self.allow |= other.allow;
    }
}

/// Whether `sender` may send instant messages to the owner of `documents` at `now`.
/// Documents that cannot be read are left out (and said so by the caller's checks on
/// upload); if none can be read, the owner has no usable policy and `sender` passes.
pub fn allows(documents: &[&[u8]], sender: &str, now: u64) -> bool {
    let rulesets: Vec<Ruleset<ImPermissions>> = documents
        .iter()
        .filter_map(|d| Ruleset::parse(d).ok())
        .collect();
    if rulesets.is_empty() {
        return true;
    }
    let subject = Subject {
        watcher: sender,
        now,
        sphere: None,
    };
    super::evaluate(&rulesets, &subject).is_some_and(|p| p.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(rules: &str) -> String {
        format!(
            r#"<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:im="urn:iptel:xml:ns:im-rules">{rules}</ruleset>"#
        )
    }

    fn rule(id: &str, who: &str, handling: &str) -> String {
        format!(
            r#"<rule id="{id}"><conditions><identity><one id="{who}"/></identity></conditions><actions><im:im-handling>{handling}</im:im-handling></actions></rule>"#
        )
    }

    #[test]
    fn the_largest_handling_of_the_matching_rules_decides_and_block_is_the_default() {
        let doc = ruleset(&format!(
            "{}{}{}",
            rule("a", "sip:jan@x", "allow"),
            rule("b", "sip:smith@x", "block"),
            rule("c", "sip:jan@x", "block")
        ));
        let docs = [doc.as_bytes()];
        assert!(allows(&docs, "sip:jan@x", 0), "allow beats block");
        assert!(!allows(&docs, "sip:smith@x", 0));
        assert!(!allows(&docs, "sip:nobody@x", 0), "no rule: block");
        let odd = ruleset(&rule("d", "sip:eve@x", "maybe"));
        assert!(!allows(&[odd.as_bytes()], "sip:eve@x", 0));
    }

    #[test]
    fn no_usable_document_means_no_policy() {
        assert!(allows(&[], "sip:anyone@x", 0));
        assert!(allows(&[b"<not-a-ruleset/>"], "sip:anyone@x", 0));
    }
}
