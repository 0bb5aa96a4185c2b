//! The command line as scripts use it: `check-config` validates and prints, errors name
//! the key and the line, and `run` refuses a bad configuration with a non-zero exit.

use std::process::Command;

fn presenced(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "clean_period = 30\nmax_expires_subscribe = 1800\n").unwrap();
    let out = presenced(&["check-config", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("clean_period = 30"), "{text}");
    assert!(
        text.contains("max_expires = 1800"),
        "legacy alias applied: {text}"
    );
    assert!(text.contains("listen"), "defaults printed too: {text}");
}

#[test]
fn check_config_names_an_unknown_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "clean_period = 30\n\nclean_perod = 5\n").unwrap();
    let out = presenced(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3:") && err.contains("clean_perod"), "{err}");
}

#[test]
fn run_with_a_bad_value_fails_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "max_expires = -4\n").unwrap();
    let out = presenced(&["run", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":1:") && err.contains("max_expires"), "{err}");
}
