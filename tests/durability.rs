//! `sync = "always"`: what a client was told is stored, is stored, in the sense of a
//! power cut and not only of a process crash.
//!
//! - The syscall trace: the release of each 200 to a PUBLISH comes after an `fdatasync`
//!   of sled's log file that began after the PUBLISH arrived (strace; skipped when
//!   strace is not installed, unless `PRESENCED_REQUIRE_STRACE` is set, as in CI).
//! - SIGKILL under load: every publication that got a 200 is there after a restart.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use presenced::sip::message::Message;

/// A configuration file with `sync = "always"` in `dir`, and no per-source rate limit:
/// the load comes from one address.
fn sync_always(dir: &Path) -> PathBuf {
    let cfg = dir.join("presenced.toml");
    std::fs::write(&cfg, "sync = \"always\"\nmax_requests_per_source = 0\n").unwrap();
    cfg
}

/// An initial PUBLISH (one hour) for `uri` from a client at `port`.
fn publish(uri: &str, call_id: &str, port: u16) -> String {
    let body = pidf(uri, "t1", "open", call_id);
    format!(
        "PUBLISH {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <{uri}>;tag=f{call_id}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n\
         Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A final response from `sock`: (status, Call-ID, SIP-ETag), or None after `wait`.
fn response(sock: &UdpSocket, wait: Duration) -> Option<(u16, String, Option<String>)> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return None;
            }
            Err(_) => continue,
        };
        if let Ok(Message::Response(r)) = Message::parse(&buf[..n])
            && r.status >= 200
        {
            let call_id = r.headers.call_id().expect("a Call-ID").to_string();
            let etag = r.headers.sip_etag().map(str::to_string);
            return Some((r.status, call_id, etag));
        }
    }
}

/// The process strace (the child) traces: its only child.
fn tracee(strace: u32) -> u32 {
    let children = format!("/proc/{strace}/task/{strace}/children");
    let text = std::fs::read_to_string(&children).expect("strace's children");
    text.split_whitespace()
        .next()
        .expect("strace runs the daemon")
        .parse()
        .unwrap()
}

/// One system call from an `strace -f -ttt -T` trace, with its unfinished and resumed
/// halves joined: when it began and ended (Unix seconds), its name and its text.
#[derive(Debug)]
struct Syscall {
    start: f64,
    end: f64,
    name: String,
    text: String,
}

fn parse_trace(trace: &str) -> Vec<Syscall> {
    let mut calls = Vec::new();
    // Per thread: the beginning of a call strace printed as unfinished.
    let mut open: HashMap<String, (f64, String)> = HashMap::new();
    for line in trace.lines() {
        // strace pads the pid column: fields are separated by one space or more.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((time, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        let (start, text) = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            open.insert(pid.to_string(), (time, head.to_string()));
            continue;
        } else if rest.starts_with("<... ") {
            let Some((start, head)) = open.remove(pid) else {
                continue;
            };
            let tail = rest.split_once(" resumed>").map_or("", |(_, t)| t);
            (start, head + tail)
        } else {
            (time, rest.to_string())
        };
        let Some(name) = text.split('(').next().map(str::to_string) else {
            continue;
        };
        // `-T`: the time spent, at the end of the line.
        let spent = text
            .rsplit_once('<')
            .and_then(|(_, t)| t.strip_suffix('>'))
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0);
        calls.push(Syscall {
            start,
            end: start + spent,
            name,
            text,
        });
    }
    calls
}

/// The Call-ID in an escaped message as strace prints it.
fn call_id_in(escaped: &str) -> Option<&str> {
    let at = escaped.find("Call-ID: ")? + "Call-ID: ".len();
    let rest = &escaped[at..];
    Some(&rest[..rest.find("\\r\\n")?])
}

#[test]
fn each_200_to_a_publish_leaves_after_an_fdatasync_of_the_log_that_followed_it() {
    let available = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var_os("PRESENCED_REQUIRE_STRACE").is_none(),
            "strace is required (PRESENCED_REQUIRE_STRACE) but not installed"
        );
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let trace_path = dir.path().join("trace");
    let cfg = sync_always(dir.path());
    let strace = [
        "strace",
        "-f",
        "-qq",
        "-ttt",
        "-T",
        "-y",
        "-v",
        "-s",
        "65535",
        "-e",
        "trace=recvfrom,recvmsg,recvmmsg,sendto,sendmsg,sendmmsg,fdatasync,fsync",
        "-o",
        trace_path.to_str().unwrap(),
    ];
    let (mut child, addr) = spawn_binary_under(&strace, &db, &["--config", cfg.to_str().unwrap()]);

    // Three clients with eight PUBLISHes each in flight at once (several per flush),
    // then a few one at a time (a flush each).
    let clients: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut sent = Vec::new();
    for (c, sock) in clients.iter().enumerate() {
        let port = sock.local_addr().unwrap().port();
        for i in 0..8 {
            let call_id = format!("burst-{c}-{i}");
            let uri = format!("sip:burst{c}x{i}@example.com");
            sock.send_to(publish(&uri, &call_id, port).as_bytes(), addr)
                .unwrap();
            sent.push(call_id);
        }
    }
    for sock in &clients {
        for _ in 0..8 {
            let (status, ..) = response(sock, WAIT).expect("a response to each PUBLISH");
            assert_eq!(status, 200);
        }
    }
    for i in 0..4 {
        let sock = &clients[0];
        let call_id = format!("single-{i}");
        let uri = format!("sip:single{i}@example.com");
        let port = sock.local_addr().unwrap().port();
        sock.send_to(publish(&uri, &call_id, port).as_bytes(), addr)
            .unwrap();
        let (status, got, _) = response(sock, WAIT).expect("a response");
        assert_eq!((status, got.as_str()), (200, call_id.as_str()));
        sent.push(call_id);
    }
    signal_pid(tracee(child.id()), "-TERM");
    assert!(
        child.wait().unwrap().success(),
        "strace and the daemon exit 0"
    );

    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let calls = parse_trace(&trace);
    let log_file = format!("{}>", db.join("db").display());
    let syncs: Vec<&Syscall> = calls
        .iter()
        .filter(|c| c.name == "fdatasync" && c.text.contains(&log_file) && c.text.contains(") = 0"))
        .collect();
    let mut arrived: HashMap<&str, f64> = HashMap::new();
    let mut answered: HashMap<&str, f64> = HashMap::new();
    for c in &calls {
        if c.name.starts_with("recv") && c.text.contains("\"PUBLISH ") {
            if let Some(id) = call_id_in(&c.text) {
                arrived.entry(id).or_insert(c.end);
            }
        } else if c.name.starts_with("send") {
            for datagram in c.text.split("\"SIP/2.0 ").skip(1) {
                if datagram.starts_with("200 ")
                    && let Some(id) = call_id_in(datagram)
                {
                    answered.entry(id).or_insert(c.start);
                }
            }
        }
    }
    let mut covered = HashSet::new();
    for id in &sent {
        let arrival = *arrived
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id}: its arrival is in the trace"));
        let answer = *answered
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id}: its 200 is in the trace"));
        let sync = syncs
            .iter()
            .find(|s| s.start >= arrival && s.end <= answer)
            .unwrap_or_else(|| {
                panic!(
                    "{id}: no fdatasync of {log_file} between its arrival at {arrival:.6} \
                     and its 200 at {answer:.6}; fdatasyncs: {:?}",
                    syncs.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>()
                )
            });
        eprintln!(
            "{id}: arrived {arrival:.6}, fdatasync {:.6}..{:.6}, 200 sent {answer:.6}",
            sync.start, sync.end
        );
        covered.insert(sync.start.to_bits());
    }
    eprintln!(
        "{} PUBLISHes answered after {} distinct fdatasyncs of the log ({} in the trace)",
        sent.len(),
        covered.len(),
        syncs.len()
    );
}

fn signal_pid(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Publications acknowledged so far: (presentity, ETag), and a signal on each.
#[derive(Default)]
struct Acked {
    list: Mutex<Vec<(String, String)>>,
    grew: Condvar,
}

/// A client thread: keeps `window` initial PUBLISHes of distinct presentities in
/// flight until `stop`, re-sending what goes unanswered for a while (a retransmission
/// the server answers from its transaction), and records every 200.
fn load(client: usize, server: SocketAddr, window: usize, stop: &AtomicBool, acked: &Acked) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut in_flight: HashMap<String, (String, String)> = HashMap::new();
    let mut next = 0;
    while !stop.load(Ordering::Acquire) {
        while in_flight.len() < window {
            let call_id = format!("load-{client}-{next}");
            let uri = format!("sip:c{client}n{next}@example.com");
            let msg = publish(&uri, &call_id, port);
            let _ = sock.send_to(msg.as_bytes(), server);
            in_flight.insert(call_id, (uri, msg));
            next += 1;
        }
        match response(&sock, Duration::from_millis(500)) {
            Some((200, call_id, etag)) => {
                if let Some((uri, _)) = in_flight.remove(&call_id) {
                    let etag = etag.expect("a 200 to a PUBLISH carries an ETag");
                    acked.list.lock().unwrap().push((uri, etag));
                    acked.grew.notify_all();
                }
            }
            Some((status, call_id, _)) => panic!("{call_id}: {status}"),
            None => {
                for (_, msg) in in_flight.values() {
                    let _ = sock.send_to(msg.as_bytes(), server);
                }
            }
        }
    }
}

#[test]
fn sigkill_under_load_loses_no_publication_that_got_a_200() {
    const CLIENTS: usize = 4;
    const KILL_AFTER: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let cfg = sync_always(dir.path());
    let args = ["--config", cfg.to_str().unwrap()];
    let (mut child, addr) = spawn_binary(&db, &args);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Acked::default());
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || load(c, addr, 32, &stop, &acked))
        })
        .collect();
    // Kill while the clients still have PUBLISHes in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut list = acked.list.lock().unwrap();
    while list.len() < KILL_AFTER {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the load gets its 200s");
        list = acked.grew.wait_timeout(list, left).unwrap().0;
    }
    drop(list);
    signal(&child, "-KILL");
    child.wait().unwrap();
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    // Everything the clients received was sent before the kill.
    let acked = std::mem::take(&mut *acked.list.lock().unwrap());
    assert!(acked.len() >= KILL_AFTER);

    let (mut child, addr) = spawn_binary(&db, &args);
    let dump = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(["dump", "--db"])
        .arg(&db)
        .args(["--config", cfg.to_str().unwrap(), "--tables", "presentity"])
        .output()
        .unwrap();
    assert!(dump.status.success(), "{dump:?}");
    let dump = String::from_utf8(dump.stdout).unwrap();
    // Each row is a line of quoted values, the user part of the presentity first (the
    // MySQL dump has `username` and `domain`); every acknowledged presentity is distinct.
    let user = |uri: &str| {
        uri.trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap()
            .to_string()
    };
    let wanted: HashMap<String, &str> = acked.iter().map(|(u, e)| (user(u), e.as_str())).collect();
    let mut found = HashSet::new();
    for line in dump.lines() {
        let quoted: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
        for q in &quoted {
            if let Some(etag) = wanted.get(*q)
                && quoted.contains(etag)
            {
                found.insert(q.to_string());
            }
        }
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(u, _)| !found.contains(&user(u)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged publications lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // The restarted server serves them: a refresh of one by its ETag.
    let (uri, etag) = &acked[acked.len() / 2];
    let mut ua = Ua::new(addr, "refresher");
    let r = ua.publish(uri, Some(etag), Some(3600), None);
    assert_eq!(r.status, 200, "refresh of {uri} {etag} after the restart");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    eprintln!(
        "{} publications acknowledged before SIGKILL, all found after the restart",
        acked.len()
    );
}
