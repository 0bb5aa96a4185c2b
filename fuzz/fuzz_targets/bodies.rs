//! Fuzzes what presenced reads out of message and XCAP bodies: PIDF publications and
//! their aggregation, RFC 5025 rules and the transformations they apply, dialog-info
//! (BLF), message-summary (MWI), XCAP documents and paths. Nothing may panic, and every
//! document we compose for a NOTIFY must read back as what it claims to be.
//!
//! Input: up to three parts separated by NUL bytes: a string (an XCAP path or URL, and
//! after `sip:` the entity or watcher), then document A, then document B (each document
//! is tried as every kind).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::events::presence::rules::{self, PresRuleset, View};
use presenced::events::presence::{pidf, transform};
use presenced::events::{dialog, mwi};
use presenced::policy::Subject;
use presenced::xcap::{self, AUIDS};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let raw = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    // A presentity or watcher is a URI: never empty, always with a scheme.
    let who = format!("sip:{raw}");
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();

    // Presence: aggregation always gives a valid PIDF document.
    let _ = (
        pidf::validate_pidf(a),
        pidf::tuple_ids(a),
        pidf::basic_status(a),
    );
    let _ = (pidf::notes(a), pidf::rpid_spheres(a));
    for publications in [&[a][..], &[a, b][..]] {
        let shared = pidf::aggregate(&who, publications);
        if let Err(e) = pidf::validate_pidf(&shared) {
            panic!(
                "aggregate is not PIDF ({e:?}):\n{}",
                String::from_utf8_lossy(&shared)
            );
        }
    }
    let closed = pidf::closed_document(&who);
    assert!(
        pidf::validate_pidf(&closed).is_ok(),
        "closed document is not PIDF"
    );

    // Privacy: rules from A decide what a watcher sees of B; a filtered or neutral view
    // is a valid PIDF document too.
    if let Ok(ruleset) = PresRuleset::parse(a) {
        let spheres = pidf::rpid_spheres(b);
        let subject = Subject {
            watcher: &who,
            now: 1_700_000_000,
            sphere: spheres.first().map(String::as_str),
        };
        let decision = rules::decide(&[ruleset], &subject);
        let shared = pidf::aggregate("sip:alice@example.com", &[b]);
        let seen = transform::apply(&shared, "sip:alice@example.com", &decision.view);
        if !matches!(decision.view, View::Full) && pidf::validate_pidf(&seen).is_err() {
            panic!(
                "filtered view is not PIDF:\n{}",
                String::from_utf8_lossy(&seen)
            );
        }
    }

    // BLF: the aggregate reads back and takes a version.
    let _ = dialog::parse(a);
    let shared = dialog::aggregate(&who, &[a, b]);
    if dialog::parse(&shared).is_err() {
        panic!(
            "dialog aggregate does not parse:\n{}",
            String::from_utf8_lossy(&shared)
        );
    }
    match dialog::with_version(&shared, 7).map(|v| dialog::parse(&v)) {
        Some(Ok(doc)) => assert_eq!(doc.attr("version"), Some("7"), "version not set"),
        other => panic!("versioned aggregate does not parse: {other:?}"),
    }

    // MWI.
    let _ = mwi::parse(a);

    // XCAP: paths and documents of every application usage.
    let _ = xcap::parse_path(xcap::integrated::ROOT, &raw);
    let _ = xcap::fetch::parse_url(&raw);
    for auid in &AUIDS {
        let _ = xcap::validate(auid, a, 64 * 1024);
    }
});
