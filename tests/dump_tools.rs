//! Round trips against the real tools: our dumps load with the sqlite3 CLI, a MariaDB
//! server and a PostgreSQL server (each started privately on 127.0.0.1) into
//! `schema/*.sql`'s tables with every value intact, and those tools' own dumps
//! (`sqlite3 .dump`, `mysqldump`, `pg_dump --inserts`/`--column-inserts`) restore into
//! presenced with identical content. A test whose tool is not installed says so and
//! passes; CI installs all three (`.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use presenced::dump::spec::{self, Table, Type, Val};
use presenced::dump::{self, Dialect, DumpOptions, RestoreOptions};
use presenced::store::{
    Publication, Store, StoreOptions, Subscriber, SubscriptionRow, Watcher, Xcap, status,
};

mod common;

/// SQL INT columns hold up to 2^31-1: expiry times stay below it.
const FUTURE: u64 = 2_000_000_000;
const NOW: u64 = 1_700_000_000;

fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            dirs.push(e.path().join("bin"));
        }
    }
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn skip(tool: &str) {
    eprintln!("SKIPPED: {tool} is not installed here (CI installs it via .ci/run)");
}

fn run(cmd: &mut Command) -> String {
    String::from_utf8(run_bytes(cmd)).unwrap()
}

/// A tool's output as bytes: dumps of binary columns are not UTF-8.
fn run_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(out.stdout.get(..2000).unwrap_or(&out.stdout))
    );
    out.stdout
}

fn run_stdin(cmd: &mut Command, input: &Path) -> String {
    let f = std::fs::File::open(input).unwrap();
    run(cmd.stdin(f))
}

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

/// Rows with the values that break naive quoting, within what SQL columns hold.
fn fill(s: &Store) {
    let body = b"<?xml version='1.0'?>\n<presence entity=\"sip:a@example.com\">\r\n<note>it's \\ \"ok\" \xc3\xa9 \xe2\x82\xac</note>\t</presence>";
    for (i, (user, b)) in [
        ("alice", &body[..]),
        (
            "bob",
            &[0u8, 1, 2, 0xff, b'\'', b'\\', 0x1a, b'\n', 0x80][..],
        ),
        ("carol", &b""[..]),
    ]
    .into_iter()
    .enumerate()
    {
        s.put_publication(&Publication {
            presentity_uri: format!("sip:{user}@example.com"),
            event: "presence".into(),
            etag: format!("e'{i}\\"),
            expires: FUTURE - i as u64,
            received_time: NOW + i as u64,
            body: b.to_vec(),
            content_type: "application/pidf+xml".into(),
            sender: "sip:10.0.0.1:5060".into(),
            extra_hdrs: if i == 1 {
                "X-A: \"1\"\r\n".into()
            } else {
                String::new()
            },
            priority: 100 + i as u64,
        })
        .unwrap();
    }
    let mut p = s.iter_publications().next().unwrap().unwrap();
    p.presentity_uri = "sips:dave@example.com".into();
    p.event = "dialog;sla".into();
    s.put_publication(&p).unwrap();
    for i in 0..3u32 {
        let user = ["alice", "bob", "carol"][i as usize];
        s.put_subscription(&SubscriptionRow {
            presentity_uri: format!("sip:{user}@example.com"),
            watcher_uri: if i == 2 {
                "sips:w2@example.org".into()
            } else {
                format!("sip:w{i}@example.org")
            },
            to_uri: if i == 1 {
                format!("sip:{user}@example.com;user=phone")
            } else {
                format!("sip:{user}@example.com")
            },
            event: "presence".into(),
            event_id: (i == 0).then(|| "id'1".to_string()),
            call_id: format!("call-{i}@h\\o'st"),
            to_tag: format!("10t{i}"),
            from_tag: format!("f{i}"),
            local_cseq: i + 1,
            remote_cseq: 20 + i,
            expires: FUTURE - 10,
            status: [status::ACTIVE, status::PENDING, status::WAITING][i as usize],
            reason: (i == 1).then(|| "it's pending".to_string()),
            version: i,
            remote_target: format!("sip:w{i}@192.0.2.{i}:5062"),
            record_route: if i == 0 {
                vec![
                    "<sip:p1.example.org;lr>".into(),
                    "\"P, 2\" <sip:p2.example.org;lr>".into(),
                ]
            } else {
                vec![]
            },
            local_contact: "<sip:127.0.0.1:5060>".into(),
            socket_info: "udp:127.0.0.1:5060".into(),
            transport_peer: format!("udp:192.0.2.{i}:5062"),
            user_agent: "UA \u{e9}\u{20ac}".into(),
            accept: if i == 1 {
                vec![]
            } else {
                vec!["application/pidf+xml".into(), "multipart/related".into()]
            },
            sharing_tag: (i == 2).then(|| "st".to_string()),
        })
        .unwrap();
        s.put_watcher(&Watcher {
            presentity_uri: format!("sip:{user}@example.com"),
            watcher_uri: if i == 2 {
                "sips:w2@example.org".into()
            } else {
                format!("sip:w{i}@example.org")
            },
            event: "presence".into(),
            status: [status::ACTIVE, status::PENDING, status::TERMINATED][i as usize],
            reason: (i == 2).then(|| "timeout".to_string()),
            inserted_time: NOW + u64::from(i),
        })
        .unwrap();
    }
    s.put_xcap(&Xcap {
        username: "alice".into(),
        domain: "example.com".into(),
        doc_type: 1,
        doc_uri: "/pres-rules/users/sip:alice@example.com/index".into(),
        doc: b"<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\"/>\n".to_vec(),
        etag: "x1".into(),
        source: 1,
        port: 8080,
    })
    .unwrap();
    s.put_xcap(&Xcap {
        username: "bob".into(),
        domain: "example.org".into(),
        doc_type: 2,
        doc_uri: "/resource-lists/index".into(),
        doc: vec![0xde, 0xad, 0, 0xef],
        etag: "x2".into(),
        source: 0,
        port: 0,
    })
    .unwrap();
    for (user, domain, pw) in [
        ("alice", "example.com", "it's \\ \"x\""),
        ("+4930", "example.org", "p"),
    ] {
        s.put_subscriber(&Subscriber::with_password(user, domain, pw))
            .unwrap();
    }
}

#[derive(Debug, PartialEq)]
struct Content {
    presentity: Vec<Publication>,
    dialogs: Vec<SubscriptionRow>,
    watchers: Vec<Watcher>,
    xcap: Vec<Xcap>,
    subscribers: Vec<Subscriber>,
}

fn content(s: &Store) -> Content {
    Content {
        presentity: s.iter_publications().map(Result::unwrap).collect(),
        dialogs: s.iter_subscriptions().map(Result::unwrap).collect(),
        watchers: s.iter_watchers().map(Result::unwrap).collect(),
        xcap: s.iter_xcap().map(Result::unwrap).collect(),
        subscribers: s.iter_subscribers().map(Result::unwrap).collect(),
    }
}

fn write_dump(s: &Store, dialect: Dialect, path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    let opts = DumpOptions {
        dialect,
        ..DumpOptions::default()
    };
    dump::write_dump(s, f, &opts, &mut || Ok(())).unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Every row of `table` as the line the SQL query in [`select`] prints: integers in
/// decimal, text and blobs in upper-case hex, NULL as `NULL`, separated by `|`.
fn expected_rows(s: &Store, table: Table) -> Vec<String> {
    let mut lines = Vec::new();
    let mut push = |vals: Vec<Val<'_>>| {
        let cells: Vec<String> = table
            .columns()
            .iter()
            .zip(vals)
            .filter(|(c, _)| c.ty != Type::Id)
            .map(|(_, v)| match v {
                Val::Null => "NULL".to_string(),
                Val::Int(n) => n.to_string(),
                Val::Text(t) => hex(t.as_bytes()),
                Val::Blob(b) => hex(b),
            })
            .collect();
        lines.push(cells.join("|"));
    };
    match table {
        Table::Publication => s.iter_publications().for_each(|r| {
            let r = r.unwrap();
            let mut v = Vec::new();
            spec::presentity_values(&r, &mut v);
            push(v)
        }),
        Table::ActiveWatchers => s.iter_subscriptions().for_each(|r| {
            let r = r.unwrap();
            let mut v = Vec::new();
            spec::dialog_values(&r, &mut v);
            push(v)
        }),
        Table::Watchers => s.iter_watchers().for_each(|r| {
            let r = r.unwrap();
            let mut v = Vec::new();
            spec::watcher_values(&r, &mut v);
            push(v)
        }),
        Table::Xcap => s.iter_xcap().for_each(|r| {
            let r = r.unwrap();
            let mut v = Vec::new();
            spec::xcap_values(&r, &mut v);
            push(v)
        }),
        Table::Subscriber => s.iter_subscribers().for_each(|r| {
            let r = r.unwrap();
            let mut v = Vec::new();
            spec::subscriber_values(&r, &mut v);
            push(v)
        }),
    }
    lines.sort();
    lines
}

/// The query printing a table the way [`expected_rows`] does, in `dialect`.
fn select(table: Table, dialect: Dialect) -> String {
    let cells: Vec<String> = table
        .columns()
        .iter()
        .filter(|c| c.ty != Type::Id)
        .map(|c| {
            let n = c.name;
            match (c.ty, dialect) {
                (Type::Int, Dialect::Postgres) => format!("{n}::text"),
                (Type::Int, Dialect::Mysql) => format!("cast({n} as char)"),
                (Type::Text, Dialect::Postgres) => {
                    format!("upper(encode(convert_to({n},'UTF8'),'hex'))")
                }
                (Type::Blob, Dialect::Postgres) => format!("upper(encode({n},'hex'))"),
                (Type::Int, _) => n.to_string(),
                _ => format!("hex({n})"),
            }
        })
        .collect();
    // sqlite's hex(NULL) is '', so NULL is told apart before formatting.
    let cells: Vec<String> = table
        .columns()
        .iter()
        .filter(|c| c.ty != Type::Id)
        .zip(cells)
        .map(|(c, expr)| format!("CASE WHEN {} IS NULL THEN 'NULL' ELSE {expr} END", c.name))
        .collect();
    let sep = match dialect {
        Dialect::Mysql => format!("concat_ws('|',{})", cells.join(",")),
        _ => cells.join("||'|'||"),
    };
    format!("SELECT {sep} FROM {};", table.name())
}

fn sorted_lines(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn check_tables(s: &Store, dialect: Dialect, query: &mut dyn FnMut(&str) -> String) {
    for t in Table::ALL {
        let want = expected_rows(s, t);
        let got = sorted_lines(&query(&select(t, dialect)));
        assert_eq!(got, want, "{} in {dialect:?}", t.name());
    }
}

fn restored_from(path: &Path) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let input = std::fs::File::open(path).unwrap();
    dump::restore::restore(&s, input, &RestoreOptions::default(), NOW)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (dir, s)
}

fn schema(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(name)
}

#[test]
fn sqlite3_loads_our_dump_and_its_dump_restores_identically() {
    let Some(sqlite3) = find_tool(&["sqlite3"]) else {
        return skip("sqlite3");
    };
    let work = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    fill(&src);
    let ours = work.path().join("ours.sql");
    write_dump(&src, Dialect::Sqlite, &ours);
    let db = work.path().join("t.db");
    run_stdin(
        Command::new(&sqlite3).arg("-bail").arg(&db),
        &schema("sqlite.sql"),
    );
    run_stdin(Command::new(&sqlite3).arg("-bail").arg(&db), &ours);
    check_tables(&src, Dialect::Sqlite, &mut |q| {
        run(Command::new(&sqlite3).arg(&db).arg(q))
    });

    let theirs = work.path().join("theirs.sql");
    std::fs::write(&theirs, run(Command::new(&sqlite3).arg(&db).arg(".dump"))).unwrap();
    let (_d, back) = restored_from(&theirs);
    assert_eq!(content(&back), content(&src));
}

/// A private server process, killed on drop.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `ready` while the server starts: the one wait on another process we cannot
/// avoid. Bounded: 30 s.
fn wait_ready(server: &mut Server, what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ready() {
            return;
        }
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!("{what} exited during start: {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not start within 30 s");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[test]
fn mariadb_loads_our_dump_and_mysqldump_restores_identically() {
    let (Some(install), Some(mariadbd), Some(client), Some(mysqldump)) = (
        find_tool(&["mariadb-install-db", "mysql_install_db"]),
        find_tool(&["mariadbd", "mysqld"]),
        find_tool(&["mariadb", "mysql"]),
        find_tool(&["mariadb-dump", "mysqldump"]),
    ) else {
        return skip("MariaDB (mariadb-server)");
    };
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    run(Command::new(&install)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .args(is_root().then_some("--user=root")));
    let port = free_port();
    let sock = work.path().join("mysqld.sock");
    let mut server = Server {
        child: Command::new(&mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", work.path().join("pid").display()))
            .arg("--skip-grant-tables")
            .arg("--character-set-server=utf8mb4")
            .arg("--skip-log-bin")
            .args(is_root().then_some("--user=root"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let cli = |db: Option<&str>| {
        let mut c = Command::new(&client);
        c.args(["--no-defaults", "-uroot", "-h127.0.0.1"])
            .arg(format!("-P{port}"))
            .arg("--default-character-set=utf8mb4")
            .args(db);
        c
    };
    wait_ready(&mut server, "mariadbd", || {
        cli(None)
            .args(["-e", "SELECT 1"])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    run(cli(None).args(["-e", "CREATE DATABASE presence CHARACTER SET utf8mb4"]));
    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    fill(&src);
    let ours = work.path().join("ours.sql");
    write_dump(&src, Dialect::Mysql, &ours);
    run_stdin(&mut cli(Some("presence")), &schema("mysql.sql"));
    run_stdin(&mut cli(Some("presence")), &ours);
    check_tables(&src, Dialect::Mysql, &mut |q| {
        run(cli(Some("presence")).args(["-N", "-B", "-e", q]))
    });

    for flags in [&[][..], &["--hex-blob", "--complete-insert"][..]] {
        let theirs = work.path().join("theirs.sql");
        let out = run_bytes(
            Command::new(&mysqldump)
                .args(["--no-defaults", "-uroot", "-h127.0.0.1"])
                .arg(format!("-P{port}"))
                .args(flags)
                .args(["presence"]),
        );
        std::fs::write(&theirs, out).unwrap();
        let (_d, back) = restored_from(&theirs);
        assert_eq!(content(&back), content(&src), "mysqldump {flags:?}");
    }

    // An OpenSIPS auth_db table as OpenSIPS users fill it: a clear password
    // (calculate_ha1) and an account with only its MD5 HA1 (computed by the server).
    run(cli(Some("presence")).args([
        "-e",
        "DELETE FROM subscriber; \
         INSERT INTO subscriber (username, domain, password, email_address, ha1) \
         VALUES ('carol', 'example.com', 'sesame', 'carol@example.com', ''); \
         INSERT INTO subscriber (username, domain, ha1) \
         VALUES ('dave', 'example.com', MD5('dave:example.com:opensesame'));",
    ]));
    let theirs = work.path().join("subscriber.sql");
    let out = run_bytes(
        Command::new(&mysqldump)
            .args(["--no-defaults", "-uroot", "-h127.0.0.1"])
            .arg(format!("-P{port}"))
            .args(["presence", "subscriber"]),
    );
    std::fs::write(&theirs, out).unwrap();
    let (dir, back) = restored_from(&theirs);
    let carol = back
        .get_subscriber("carol", "example.com")
        .unwrap()
        .unwrap();
    assert_eq!(
        carol,
        Subscriber::with_password("carol", "example.com", "sesame")
    );
    let dave = back.get_subscriber("dave", "example.com").unwrap().unwrap();
    assert_eq!(
        dave.ha1,
        Subscriber::with_password("dave", "example.com", "opensesame").ha1
    );
    assert!(dave.ha1_sha256.is_empty());
    drop(back);
    authenticate_over_sip(dir.path(), &[("carol", "sesame"), ("dave", "opensesame")]);
}

/// Starts presenced with `auth = "digest"` on `db` and publishes as each account,
/// answering the MD5 challenge: the restored accounts authenticate.
fn authenticate_over_sip(db: &Path, accounts: &[(&str, &str)]) {
    use presenced::auth::digest;
    use presenced::sip::header::AuthValue;
    let config = db.join("auth.toml");
    std::fs::write(&config, "auth = \"digest\"\nauth_algorithms = [\"MD5\"]\n").unwrap();
    let (_daemon, udp, _) = common::spawn_daemon(db, &["--config", config.to_str().unwrap()]);
    for (user, pw) in accounts {
        let mut ua = common::Ua::new(udp, user);
        let aor = format!("sip:{user}@example.com");
        let body = common::pidf(&aor, "t", "open", "");
        let r = ua.publish(&aor, None, Some(60), Some(&body));
        assert_eq!(r.status, 401, "{user}");
        let ch = AuthValue::parse(r.headers.get("WWW-Authenticate").unwrap()).unwrap();
        let a = digest::answer(&ch, user, pw, "PUBLISH", &aor, 1, "c0ffee").unwrap();
        let r = ua.publish_raw(
            &aor,
            "presence",
            None,
            Some(60),
            Some(("application/pidf+xml", &body)),
            &format!("Authorization: {a}\r\n"),
        );
        assert_eq!(r.status, 200, "{user}: {}", r.reason);
    }
}

#[test]
fn postgresql_loads_our_dump_and_pg_dump_restores_identically() {
    let (Some(initdb), Some(postgres), Some(psql), Some(pg_dump)) = (
        find_tool(&["initdb"]),
        find_tool(&["postgres"]),
        find_tool(&["psql"]),
        find_tool(&["pg_dump"]),
    ) else {
        return skip("PostgreSQL (postgresql)");
    };
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // PostgreSQL refuses to run as root: run it as the postgres user then.
    let root = is_root();
    let as_pg = |prog: &Path| {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        }
    };
    if root {
        run(Command::new("chown").arg("postgres").arg(work.path()));
    }
    run(as_pg(&initdb).arg("-D").arg(&data).args([
        "--auth=trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--no-locale",
    ]));
    let port = free_port();
    let mut server = Server {
        child: as_pg(&postgres)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let cli = || {
        let mut c = Command::new(&psql);
        c.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &port.to_string(), "-d", "postgres"]);
        c
    };
    wait_ready(&mut server, "postgres", || {
        cli()
            .args(["-c", "SELECT 1"])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    fill(&src);
    let ours = work.path().join("ours.sql");
    write_dump(&src, Dialect::Postgres, &ours);
    run_stdin(&mut cli(), &schema("postgres.sql"));
    run_stdin(&mut cli(), &ours);
    check_tables(&src, Dialect::Postgres, &mut |q| {
        run(cli().args(["-A", "-t", "-c", q]))
    });

    for flag in ["--inserts", "--column-inserts"] {
        let theirs = work.path().join("theirs.sql");
        let out = run(Command::new(&pg_dump)
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &port.to_string()])
            .arg(flag)
            .arg("postgres"));
        std::fs::write(&theirs, out).unwrap();
        let (_d, back) = restored_from(&theirs);
        assert_eq!(content(&back), content(&src), "pg_dump {flag}");
    }
}
