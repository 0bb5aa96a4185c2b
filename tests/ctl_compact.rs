//! `presenced ctl compact` on a running daemon: the database is rewritten into fresh
//! files while requests keep being answered, every row survives (a dump before and after
//! is the same), the space of deleted rows comes back, and a restart opens the copy.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use presenced::clock::Clock;

fn presenced(srv: &TestServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(args)
        .arg("--db")
        .arg(srv.dir.path().join("db"))
        .output()
        .expect("the binary runs")
}

fn ctl(srv: &TestServer, command: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("ctl")
        .arg("--db")
        .arg(srv.dir.path().join("db"))
        .arg(command)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The daemon's tables as SQL (through its control socket).
fn dump(srv: &TestServer) -> String {
    stdout(&presenced(srv, &["dump"]))
}

#[test]
fn compact_keeps_every_row_while_serving_and_a_restart_opens_the_copy() {
    // One address sends everything here: no per-source rate limit.
    let srv = start_manual(|c| c.max_requests_per_source = 0);
    let mut ua = Ua::new(srv.udp(), "alice");
    let mut etags = Vec::new();
    for i in 0..300 {
        let uri = format!("sip:user{i}@example.com");
        let r = ua.publish(&uri, None, Some(3600), Some(&pidf(&uri, "t", "open", "x")));
        assert_eq!(r.status, 200);
        etags.push((uri, r.headers.sip_etag().unwrap().to_owned()));
    }
    // Two in three removed: space sled keeps until compacted.
    for (i, (uri, etag)) in etags.iter().enumerate() {
        if i % 3 != 0 {
            assert_eq!(ua.publish(uri, Some(etag), Some(0), None).status, 200);
        }
    }
    let mut bob = Ua::new(srv.udp(), "bob");
    let (r, _) = bob.subscribe("sip:user0@example.com", "presence", Some(3600), "");
    assert_eq!(r.status, 200);
    bob.expect_notify();
    srv.settle();
    let before = dump(&srv);

    // Requests keep coming while it compacts, and all are answered.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let asker = {
        let (stop, answered, server) = (stop.clone(), answered.clone(), srv.udp());
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let port = sock.local_addr().unwrap().port();
            let mut sent = 0u64;
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Acquire) || sent < 20 {
                sock.send_to(
                    options("UDP", port, &format!("z9hG4bKc{sent}")).as_bytes(),
                    server,
                )
                .unwrap();
                sent += 1;
                if let Ok(n) = sock.recv(&mut buf)
                    && buf[..n].starts_with(b"SIP/2.0 200")
                {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            sent
        })
    };
    let out = ctl(&srv, "compact");
    stop.store(true, Ordering::Release);
    let sent = asker.join().unwrap();
    let done: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        answered.load(Ordering::Relaxed),
        sent,
        "every OPTIONS answered"
    );
    let (was, is) = (
        done["size_before"].as_u64().unwrap(),
        done["size_after"].as_u64().unwrap(),
    );
    assert!(is < was, "{done}");
    assert_eq!(dump(&srv), before, "the same rows after compacting");

    // Still writable, and what it writes lands in the copy.
    let r = ua.publish(
        "sip:late@example.com",
        None,
        Some(3600),
        Some(&pidf("sip:late@example.com", "t", "open", "late")),
    );
    assert_eq!(r.status, 200);
    srv.settle();
    let after = dump(&srv);
    assert!(after.contains("sip:late@example.com"));

    // A restart opens the compacted database.
    let dir = srv.dir;
    srv.handle.shutdown().unwrap();
    let config = test_config(&dir);
    let clock: Arc<dyn Clock> = Arc::new(presenced::clock::SystemClock);
    let handle = presenced::daemon::start(config, clock).unwrap();
    let srv = TestServer {
        handle,
        dir,
        clock: None,
    };
    assert_eq!(dump(&srv), after);
    let current = std::fs::read_to_string(srv.dir.path().join("db/current")).unwrap();
    assert_eq!(current.trim(), "compacted-1");
}
