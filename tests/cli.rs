//! The command line as scripts use it: `check-config` validates and prints, errors name
//! the key and the line, and `run` refuses a bad configuration with a non-zero exit.

mod common;

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

/// Safe by default: a listener others can reach needs an explicit `auth` mode.
#[test]
fn run_on_a_public_address_without_auth_refuses_to_start_and_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = presenced(&[
        "run",
        "--db",
        db.to_str().unwrap(),
        "--listen",
        "udp:0.0.0.0:0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("udp:0.0.0.0:0") && err.contains("auth = \"digest\""),
        "{err}"
    );

    // check-config reports the same, and the mode in effect.
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "listen = [\"tcp:0.0.0.0:5060\"]\n").unwrap();
    let out = presenced(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("authentication in effect: none"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth ="));
}

#[test]
fn run_on_a_public_address_with_digest_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "auth = \"digest\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args([
            "run",
            "--config",
            file.to_str().unwrap(),
            "--db",
            dir.path().join("db").to_str().unwrap(),
            "--listen",
            "udp:0.0.0.0:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    let rx = common::stderr_lines(&mut child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let listening = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("listening on") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let mode = seen.iter().any(|l| l.contains("authentication: digest"));
    // Stop it with SIGTERM (kill(1)), then reap it.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let line = listening.unwrap_or_else(|| panic!("never listened: {seen:?}"));
    assert!(line.contains("udp:0.0.0.0:"), "{line}");
    assert!(mode, "the mode is logged: {seen:?}");
}

/// `presenced ARGS --help`.
fn help(path: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(path)
        .arg("--help")
        .output()
        .expect("binary runs");
    assert!(out.status.success(), "{path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under "Commands:".
fn subcommands(text: &str) -> Vec<String> {
    text.split_once("\nCommands:\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// docs/command-line.md is every command's `--help`, so the package's reference cannot
/// drift from the binary. Regenerate with `PRESENCED_BLESS=1 cargo test --test cli`.
#[test]
fn the_command_line_reference_is_every_commands_help() {
    let mut doc = String::from(
        "# Command-line reference\n\nEvery command's `--help`, generated from the binary \
         (`PRESENCED_BLESS=1 cargo test --test cli` rewrites this file; a test fails when \
         it is out of date). The README's \"Command line\" section says how they fit \
         together.\n",
    );
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let text = help(&path);
        let title = std::iter::once("presenced".to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        doc.push_str(&format!(
            "\n## {title}\n\n```text\n{}\n```\n",
            text.trim_end()
        ));
        for sub in subcommands(&text).into_iter().rev() {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
    }
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/command-line.md");
    if std::env::var_os("PRESENCED_BLESS").is_some() {
        std::fs::write(&file, &doc).unwrap();
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        have == doc,
        "docs/command-line.md is out of date: PRESENCED_BLESS=1 cargo test --test cli"
    );
}
