//! The engine knows no event: nothing in `src/presence/` names an event package or a
//! body format. What differs between events is asked of the package (EventPackage), so
//! adding one never touches the engine.

use std::path::Path;

/// Event names, content types and body formats the engine must not mention.
const FORBIDDEN: &[&str] = &[
    "pidf",
    "winfo",
    "watcherinfo",
    "rpid",
    "pres-rules",
    "pres_rules",
    "dialog-info",
    "message-summary",
    "simple-message-summary",
    "application/",
    "text/",
    "\"dialog\"",
    "\"dialog;sla\"",
];

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
}

#[test]
fn the_engine_names_no_event_and_no_content_type() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/presence");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            let at = format!("{}:{}", path.display(), n + 1);
            for f in FORBIDDEN {
                if lower.contains(f) {
                    found.push(format!("{at}: {f:?} in {line:?}"));
                }
            }
            // The event `presence` (not the crate name `presenced`).
            if words(&lower).any(|w| w == "presence") {
                found.push(format!("{at}: \"presence\" in {line:?}"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
