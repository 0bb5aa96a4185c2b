//! A configuration reload on a running daemon, as an operator does it: edit the file,
//! then `presenced ctl reload` (systemd's ExecReload) or SIGHUP. Limits and policies
//! apply at once; a changed listener or database is named as needing a restart; a
//! broken file is refused and the running settings stay.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::*;

struct Daemon {
    child: Child,
    lines: Receiver<String>,
    db: std::path::PathBuf,
}

impl Daemon {
    fn start(file: &std::path::Path, db: &std::path::Path) -> (Daemon, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
            .arg("run")
            .arg("--config")
            .arg(file)
            .arg("--db")
            .arg(db)
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let lines = stderr_lines(&mut child);
        let mut d = Daemon {
            child,
            lines,
            db: db.to_owned(),
        };
        let line = d.wait_for("listening on");
        let addr = line
            .split("udp:")
            .nth(1)
            .and_then(|a| a.split([',', ' ']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no UDP address in {line:?}"));
        (d, addr)
    }

    /// The next log line containing `what`, within 20 s.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {what:?} in {seen:#?}"),
            }
        }
    }

    fn ctl_reload(&self) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_presenced"))
            .arg("ctl")
            .arg("--db")
            .arg(&self.db)
            .arg("reload")
            .output()
            .expect("the binary runs")
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Expires a new subscription is granted when it asks for an hour.
fn granted(server: SocketAddr, user: &str) -> u64 {
    let mut ua = Ua::new(server, user);
    let (r, _) = ua.subscribe("sip:alice@example.com", "presence", Some(3600), "");
    assert_eq!(r.status, 200);
    ua.expect_notify();
    r.headers.get("Expires").unwrap().parse().unwrap()
}

#[test]
fn reload_applies_limits_at_once_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("presenced.toml");
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    write("listen = [\"udp:127.0.0.1:0\"]\nmax_expires = 3600\n");
    let (mut d, server) = Daemon::start(&file, &dir.path().join("db"));
    assert_eq!(granted(server, "w1"), 3600);

    // ExecReload's way: the control socket.
    write("listen = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\nmax_expires = 60\n");
    let out = d.ctl_reload();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // default_expires was left out, so it follows max_expires down.
    assert_eq!(
        done["applied"],
        serde_json::json!(["max_expires", "default_expires"]),
        "{done}"
    );
    assert_eq!(
        done["restart_needed"],
        serde_json::json!(["listen"]),
        "{done}"
    );
    assert_eq!(granted(server, "w2"), 60);

    // A broken file is refused, with its line; what runs stays as it was.
    write("max_expires = 0\n");
    let out = d.ctl_reload();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":1: max_expires"), "{err}");
    assert_eq!(granted(server, "w3"), 60);

    // The signal's way.
    write("listen = [\"udp:127.0.0.1:0\"]\nmax_expires = 120\n");
    d.signal("-HUP");
    let line = d.wait_for("SIGHUP");
    assert!(line.contains("max_expires"), "{line}");
    assert_eq!(granted(server, "w4"), 120);

    // A reload leaves the process running; SIGTERM still stops it cleanly.
    d.signal("-TERM");
    d.wait_for("received Term");
    let (tx, rx) = channel();
    let pid = d.child.id();
    let mut child = std::mem::replace(&mut d.child, Command::new("true").spawn().unwrap());
    std::thread::spawn(move || tx.send(child.wait()));
    let status = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("pid {pid} still running 20 s after SIGTERM"))
        .unwrap();
    assert!(status.success(), "{status}");
}
