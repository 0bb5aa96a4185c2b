//! pres-rules decisions and transformations on real documents: common-policy
//! conditions through `policy`, RFC 5025 actions and transformations from `rules`, and
//! their effect on PIDF bodies through `transform`.

use super::pidf;
use super::rules::*;
use super::transform::apply;
use crate::policy::{Subject, parse_date_time};

const BOB: &str = "sip:bob@example.com";

fn ruleset(rules: &str) -> PresRuleset {
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"
            xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
            xmlns:ocp="urn:oma:xml:xdm:common-policy">{rules}</cr:ruleset>"#
    );
    PresRuleset::parse(doc.as_bytes()).unwrap()
}

fn rule(id: &str, conditions: &str, handling: &str, transformations: &str) -> String {
    format!(
        "<cr:rule id=\"{id}\"><cr:conditions>{conditions}</cr:conditions>\
         <cr:actions><pr:sub-handling>{handling}</pr:sub-handling></cr:actions>{transformations}</cr:rule>"
    )
}

fn one(id: &str) -> String {
    format!("<cr:identity><cr:one id=\"{id}\"/></cr:identity>")
}

fn at(watcher: &str, now: u64) -> Subject<'_> {
    Subject {
        watcher,
        now,
        sphere: None,
    }
}

fn handling(rules: &str, subject: Subject<'_>) -> SubHandling {
    decide(&[ruleset(rules)], &subject).sub_handling
}

#[test]
fn no_document_or_no_matching_rule_gives_confirm() {
    assert_eq!(decide(&[], &at(BOB, 0)), Decision::confirm());
    let rules = rule("r", &one("sip:carol@example.com"), "allow", "");
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::Confirm);
}

#[test]
fn identity_one_matches_that_watcher_whatever_the_scheme_or_host_case() {
    let rules = rule("r", &one("sip:bob@EXAMPLE.com"), "allow", "");
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::Allow);
    assert_eq!(
        handling(&rules, at("pres:bob@example.com", 0)),
        SubHandling::Allow
    );
    assert_eq!(
        handling(&rules, at("sip:Bob@example.com", 0)),
        SubHandling::Confirm,
        "the user part is case-sensitive"
    );
}

#[test]
fn identity_many_with_domain_and_exceptions() {
    let cond = "<cr:identity><cr:many domain=\"example.com\">\
                <cr:except id=\"sip:eve@example.com\"/></cr:many></cr:identity>";
    let rules = rule("r", cond, "allow", "");
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::Allow);
    assert_eq!(
        handling(&rules, at("sip:eve@example.com", 0)),
        SubHandling::Confirm
    );
    assert_eq!(
        handling(&rules, at("sip:bob@other.org", 0)),
        SubHandling::Confirm
    );
    let any_but = "<cr:identity><cr:many><cr:except domain=\"spam.biz\"/></cr:many></cr:identity>";
    let rules = rule("r", any_but, "allow", "");
    assert_eq!(
        handling(&rules, at("sip:x@other.org", 0)),
        SubHandling::Allow
    );
    assert_eq!(
        handling(&rules, at("sip:x@spam.biz", 0)),
        SubHandling::Confirm
    );
}

#[test]
fn the_most_permissive_sub_handling_of_all_matching_rules_wins() {
    let rules = format!(
        "{}{}",
        rule("a", &one(BOB), "block", ""),
        rule("b", "", "polite-block", "")
    );
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::PoliteBlock);
    let rules = format!(
        "{}{}",
        rule("a", &one(BOB), "block", ""),
        rule("b", &one("sip:carol@example.com"), "allow", "")
    );
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::Block);
}

#[test]
fn polite_block_gives_the_neutral_view() {
    let rules = rule("r", &one(BOB), "polite-block", "");
    let d = decide(&[ruleset(&rules)], &at(BOB, 0));
    assert_eq!(d.view, View::Neutral);
}

#[test]
fn validity_switches_the_outcome_at_its_bounds() {
    let cond = "<cr:validity><cr:from>2024-01-01T00:00:00Z</cr:from>\
                <cr:until>2024-01-02T00:00:00+00:00</cr:until></cr:validity>";
    let rules = format!("{}{}", rule("v", cond, "allow", ""), "");
    let from = parse_date_time("2024-01-01T00:00:00Z").unwrap();
    assert_eq!(handling(&rules, at(BOB, from - 1)), SubHandling::Confirm);
    assert_eq!(handling(&rules, at(BOB, from)), SubHandling::Allow);
    assert_eq!(handling(&rules, at(BOB, from + 86_399)), SubHandling::Allow);
    assert_eq!(
        handling(&rules, at(BOB, from + 86_400)),
        SubHandling::Confirm
    );
}

#[test]
fn sphere_matches_the_presentitys_current_sphere_only() {
    let rules = rule("s", "<cr:sphere value=\"work meeting\"/>", "allow", "");
    let mut s = at(BOB, 0);
    assert_eq!(handling(&rules, s), SubHandling::Confirm, "no sphere known");
    s.sphere = Some("home");
    assert_eq!(handling(&rules, s), SubHandling::Confirm);
    s.sphere = Some("work");
    assert_eq!(handling(&rules, s), SubHandling::Allow);
}

#[test]
fn a_rule_with_an_unknown_condition_never_applies() {
    let rules = rule("u", "<ocp:external-list/>", "allow", "");
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::Confirm);
}

#[test]
fn other_identity_matches_only_watchers_no_rule_names() {
    let rules = format!(
        "{}{}",
        rule("named", &one(BOB), "allow", ""),
        rule("rest", "<ocp:other-identity/>", "block", "")
    );
    assert_eq!(handling(&rules, at(BOB, 0)), SubHandling::Allow);
    assert_eq!(
        handling(&rules, at("sip:eve@example.com", 0)),
        SubHandling::Block
    );
}

#[test]
fn transformations_of_matching_rules_are_united() {
    let rules = format!(
        "{}{}",
        rule(
            "a",
            &one(BOB),
            "allow",
            "<cr:transformations><pr:provide-services><pr:occurrence-id>t1</pr:occurrence-id>\
             </pr:provide-services><pr:provide-mood/></cr:transformations>"
        ),
        rule(
            "b",
            "",
            "confirm",
            "<cr:transformations><pr:provide-services><pr:occurrence-id>t2</pr:occurrence-id>\
             </pr:provide-services><pr:provide-persons><pr:all-persons/></pr:provide-persons>\
             </cr:transformations>"
        )
    );
    let d = decide(&[ruleset(&rules)], &at(BOB, 0));
    assert_eq!(d.sub_handling, SubHandling::Allow);
    let View::Filtered(t) = d.view else {
        panic!("expected filtered, got {:?}", d.view)
    };
    assert_eq!(
        t.services,
        Selection::Some(
            [
                Selector::OccurrenceId("t1".into()),
                Selector::OccurrenceId("t2".into())
            ]
            .into()
        )
    );
    assert_eq!(t.persons, Selection::All);
    assert_eq!(t.devices, Selection::Nothing);
    assert!(t.attributes.contains(&Attribute::Mood));
}

// --- transformations on PIDF ---------------------------------------------------------

const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
 xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:x="urn:example:x" entity="sip:alice@example.com">
<tuple id="t-sip"><status><basic>open</basic></status><contact>sip:alice@10.0.0.1</contact><rpid:class>work</rpid:class><note>desk phone</note></tuple>
<tuple id="t-im"><status><basic>open</basic></status><contact>im:alice@example.com</contact></tuple>
<dm:person id="p1"><rpid:activities><rpid:meeting/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood><rpid:user-input idle-threshold="600" last-input="2024-01-01T00:00:00Z">idle</rpid:user-input><x:secret>42</x:secret></dm:person>
<dm:device id="d1"><dm:deviceID>mac:0011</dm:deviceID><rpid:place-type>office</rpid:place-type></dm:device>
<dm:device id="d2"><dm:deviceID>mac:0022</dm:deviceID></dm:device>
<note>top note</note>
</presence>"#;

fn filtered(t: Transformations) -> String {
    let out = apply(DOC.as_bytes(), "sip:alice@example.com", &View::Filtered(t));
    pidf::validate_pidf(&out).unwrap();
    String::from_utf8(out).unwrap()
}

fn set(selectors: &[Selector]) -> Selection {
    Selection::Some(selectors.iter().cloned().collect())
}

#[test]
fn no_provide_permissions_release_no_tuples_persons_or_devices() {
    let out = filtered(Transformations::default());
    assert_eq!(pidf::tuple_ids(out.as_bytes()), Vec::<String>::new());
    assert!(!out.contains("person") && !out.contains("device") && !out.contains("top note"));
}

#[test]
fn provide_services_selects_tuples_by_id_scheme_uri_and_class() {
    let by = |s: Selector| {
        let out = filtered(Transformations {
            services: set(&[s]),
            ..Default::default()
        });
        pidf::tuple_ids(out.as_bytes())
    };
    assert_eq!(by(Selector::OccurrenceId("t-im".into())), ["t-im"]);
    assert_eq!(by(Selector::ServiceUriScheme("sip".into())), ["t-sip"]);
    assert_eq!(
        by(Selector::ServiceUri("im:alice@example.com".into())),
        ["t-im"]
    );
    assert_eq!(by(Selector::Class("work".into())), ["t-sip"]);
    let all = filtered(Transformations {
        services: Selection::All,
        ..Default::default()
    });
    assert_eq!(pidf::tuple_ids(all.as_bytes()), ["t-sip", "t-im"]);
    assert!(
        !all.contains("desk phone") && !all.contains("work</"),
        "note and class need their own permission: {all}"
    );
    assert!(
        all.contains("sip:alice@10.0.0.1"),
        "contact stays with its tuple"
    );
}

#[test]
fn provide_persons_and_devices_release_exactly_the_selected_ones() {
    let out = filtered(Transformations {
        persons: Selection::All,
        devices: set(&[Selector::DeviceId("mac:0022".into())]),
        ..Default::default()
    });
    assert!(out.contains("id=\"p1\""));
    assert!(
        out.contains("id=\"d2\"") && !out.contains("id=\"d1\""),
        "{out}"
    );
    assert!(out.contains("mac:0022"), "a device keeps its deviceID");
    let out = filtered(Transformations {
        devices: set(&[Selector::OccurrenceId("d1".into())]),
        ..Default::default()
    });
    assert!(out.contains("id=\"d1\"") && !out.contains("id=\"d2\"") && !out.contains("p1"));
    assert!(
        !out.contains("office"),
        "place-type needs provide-place-type"
    );
}

#[test]
fn rpid_provide_elements_release_only_their_element() {
    let out = filtered(Transformations {
        persons: Selection::All,
        attributes: [Attribute::Mood].into(),
        ..Default::default()
    });
    assert!(out.contains("happy"));
    assert!(!out.contains("meeting") && !out.contains("user-input") && !out.contains("42"));
    let out = filtered(Transformations {
        persons: Selection::All,
        user_input: UserInput::Bare,
        unknown: [("urn:example:x".to_owned(), "secret".to_owned())].into(),
        ..Default::default()
    });
    assert!(out.contains(">idle<") && !out.contains("idle-threshold") && out.contains("42"));
    let out = filtered(Transformations {
        services: Selection::All,
        attributes: [Attribute::Note].into(),
        ..Default::default()
    });
    assert!(out.contains("desk phone") && out.contains("top note"));
}

#[test]
fn provide_all_attributes_keeps_every_element_of_released_components() {
    let out = filtered(Transformations {
        services: Selection::All,
        persons: Selection::All,
        all_attributes: true,
        ..Default::default()
    });
    for text in ["desk phone", "work", "meeting", "happy", "last-input", "42"] {
        assert!(out.contains(text), "{text} missing in {out}");
    }
    assert!(!out.contains("mac:0011"), "devices were not released");
}

#[test]
fn full_view_is_the_body_and_neutral_view_reveals_nothing() {
    assert_eq!(
        apply(DOC.as_bytes(), "sip:alice@example.com", &View::Full),
        DOC.as_bytes()
    );
    let neutral = apply(DOC.as_bytes(), "sip:alice@example.com", &View::Neutral);
    assert_eq!(pidf::basic_status(&neutral), ["closed"]);
    assert!(!String::from_utf8_lossy(&neutral).contains("alice@10.0.0.1"));
}

#[test]
fn an_unreadable_body_is_filtered_to_the_neutral_document() {
    let out = apply(
        b"<presence",
        "sip:alice@example.com",
        &View::Filtered(Transformations {
            services: Selection::All,
            ..Default::default()
        }),
    );
    assert_eq!(pidf::basic_status(&out), ["closed"]);
}
