//! The generic evaluator with a made-up application: conditions decide which rules
//! apply, and only what those rules grant is combined. pres-rules, the real
//! application, is tested with the presence package.

use std::collections::BTreeSet;

use minidom::Element;

use super::*;

/// Grants the names of the elements under `<actions>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Grants(BTreeSet<String>);

impl Permissions for Grants {
    fn of_rule(actions: Option<&Element>, _transformations: Option<&Element>) -> Self {
        Grants(
            actions
                .map(|a| a.children().map(|c| c.name().to_owned()).collect())
                .unwrap_or_default(),
        )
    }
    fn combine(&mut self, other: &Self) {
        self.0.extend(other.0.iter().cloned());
    }
}

fn ruleset(rules: &str) -> Ruleset<Grants> {
    let doc = format!(
        r#"<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"
            xmlns:x="urn:example:grants" xmlns:ocp="urn:oma:xml:xdm:common-policy">{rules}</cr:ruleset>"#
    );
    Ruleset::parse(doc.as_bytes()).unwrap()
}

fn rule(conditions: &str, grant: &str) -> String {
    format!(
        "<cr:rule id=\"r\"><cr:conditions>{conditions}</cr:conditions>\
         <cr:actions><x:{grant}/></cr:actions></cr:rule>"
    )
}

fn grants(rules: &Ruleset<Grants>, watcher: &str, now: u64, sphere: Option<&str>) -> Vec<String> {
    let subject = Subject {
        watcher,
        now,
        sphere,
    };
    evaluate(std::slice::from_ref(rules), &subject)
        .map(|g| g.0.into_iter().collect())
        .unwrap_or_default()
}

#[test]
fn only_the_rules_whose_conditions_all_hold_grant_and_their_grants_combine() {
    let rules = ruleset(
        &[
            rule(
                r#"<cr:identity><cr:one id="sip:bob@example.com"/></cr:identity>"#,
                "read",
            ),
            rule(
                r#"<cr:identity><cr:many domain="example.com"/></cr:identity>"#,
                "write",
            ),
            rule(r#"<cr:sphere value="work"/>"#, "at-work"),
            rule(
                "<cr:validity><cr:from>1970-01-01T00:00:10Z</cr:from>\
             <cr:until>1970-01-01T00:00:20Z</cr:until></cr:validity>",
                "timed",
            ),
            rule("<ocp:other-identity/>", "stranger"),
            rule("<x:unknown/>", "never"),
        ]
        .concat(),
    );
    assert_eq!(
        grants(&rules, "sip:bob@example.com", 0, None),
        ["read", "write"]
    );
    assert_eq!(
        grants(&rules, "sip:carol@example.org", 15, Some("work")),
        ["at-work", "stranger", "timed"]
    );
    assert_eq!(
        grants(&rules, "sip:carol@example.org", 20, None),
        ["stranger"]
    );
    let none = ruleset(&rule(r#"<cr:sphere value="home"/>"#, "x"));
    assert_eq!(
        evaluate(
            &[none],
            &Subject {
                watcher: "sip:a@b",
                now: 0,
                sphere: None
            }
        ),
        None
    );
}

#[test]
fn a_document_that_is_not_a_ruleset_is_refused() {
    assert_eq!(
        Ruleset::<Grants>::parse(b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"/>"),
        Err(RulesError::NotRuleset)
    );
    assert!(matches!(
        Ruleset::<Grants>::parse(b"<cr:ruleset"),
        Err(RulesError::Xml(_))
    ));
}
