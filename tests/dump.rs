//! `presenced dump` / `presenced restore` end to end over real stores: byte-identical
//! round trips in every dialect, OpenSIPS-shaped dumps with other columns, bad dumps
//! that must restore nothing, and both commands through a running daemon.

use std::io::Read;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use presenced::clock::SystemClock;
use presenced::config::{Config, ListenAddr};
use presenced::dump::{
    self, Dialect, DumpOptions, RestoreErrorKind, RestoreOptions, Table, read::ReadErrorKind,
};
use presenced::mgmt::{self, client::Client};
use presenced::store::{Publication, Store, StoreOptions, SubscriptionRow, Watcher, Xcap, status};

/// Far enough ahead that nothing expires during a test.
const FUTURE: u64 = 4_000_000_000;
const NOW: u64 = 1_700_000_000;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

fn presentity(user: &str, etag: &str, body: &[u8]) -> Publication {
    Publication {
        presentity_uri: format!("sip:{user}@example.com"),
        event: "presence".into(),
        etag: etag.into(),
        expires: FUTURE,
        received_time: NOW,
        body: body.to_vec(),
        content_type: "application/pidf+xml".into(),
        sender: "sip:10.0.0.1:5060".into(),
        extra_hdrs: String::new(),
        priority: 42,
    }
}

fn dialog(user: &str, call_id: &str, watcher: &str) -> SubscriptionRow {
    SubscriptionRow {
        presentity_uri: format!("sip:{user}@example.com"),
        watcher_uri: watcher.into(),
        to_uri: format!("sip:{user}@example.com"),
        event: "presence".into(),
        event_id: None,
        call_id: call_id.into(),
        to_tag: "10abc".into(),
        from_tag: "ft1".into(),
        local_cseq: 4,
        remote_cseq: 17,
        expires: FUTURE,
        status: status::ACTIVE,
        reason: None,
        version: 3,
        remote_target: "sip:bob@192.0.2.7:5062".into(),
        record_route: vec![],
        local_contact: "<sip:127.0.0.1:5060>".into(),
        socket_info: "udp:127.0.0.1:5060".into(),
        transport_peer: "udp:192.0.2.7:5062".into(),
        user_agent: "softphone/1.0".into(),
        accept: vec!["application/pidf+xml".into()],
        sharing_tag: None,
    }
}

fn watcher(user: &str, w: &str) -> Watcher {
    Watcher {
        presentity_uri: format!("sip:{user}@example.com"),
        watcher_uri: w.into(),
        event: "presence".into(),
        status: status::ACTIVE,
        reason: None,
        inserted_time: NOW,
    }
}

/// A store with every awkward value the dialects must carry: quotes, backslashes,
/// newlines, CR, control bytes, non-ASCII text, binary bodies, sips: URIs, route sets
/// with commas inside, NULL-able columns both ways, and xcap documents.
fn fill(s: &Store) {
    s.put_publication(&presentity(
        "alice",
        "a1",
        b"<?xml version='1.0'?>\n<presence entity=\"sip:alice@example.com\">\r\n<note>it's \\ \"ok\" \xc3\xa9</note></presence>",
    ))
    .unwrap();
    s.put_publication(&presentity(
        "alice",
        "a2",
        &[0, 1, 2, 0xff, 0xfe, b'\'', b'\\', 0x1a],
    ))
    .unwrap();
    let mut odd = presentity("carol", "c'1", b"");
    odd.presentity_uri = "sips:carol@example.com".into();
    odd.event = "dialog;sla".into();
    odd.extra_hdrs = "X-A: 1\r\nX-B: \"two\"\r\n".into();
    odd.content_type = "application/dialog-info+xml".into();
    s.put_publication(&odd).unwrap();
    for i in 0..30 {
        s.put_publication(&presentity(
            &format!("user{i}"),
            &format!("e{i}"),
            b"<presence/>",
        ))
        .unwrap();
    }

    let mut d1 = dialog("alice", "call-1@host", "sip:bob@example.org");
    d1.record_route = vec![
        "<sip:p1.example.org;lr>".into(),
        "\"Proxy, Two\" <sip:p2.example.org;lr>".into(),
    ];
    d1.event_id = Some("7".into());
    d1.reason = Some("it's \\ fine".into());
    d1.sharing_tag = Some("tag-a".into());
    s.put_subscription(&d1).unwrap();
    let mut d2 = dialog("alice", "call-2\\x\n", "sips:dave@example.net");
    d2.to_uri = "sip:alice@example.com;user=phone".into();
    d2.status = status::PENDING;
    d2.accept = vec![];
    d2.user_agent = "UA \u{1F600} \t tab".into();
    s.put_subscription(&d2).unwrap();
    for i in 0..20 {
        s.put_subscription(&dialog(
            &format!("user{i}"),
            &format!("c{i}"),
            &format!("sip:w{i}@example.org"),
        ))
        .unwrap();
    }

    let mut w1 = watcher("alice", "sip:bob@example.org");
    w1.reason = Some("polite".into());
    s.put_watcher(&w1).unwrap();
    let mut w2 = watcher("alice", "sips:dave@example.net");
    w2.status = status::PENDING;
    s.put_watcher(&w2).unwrap();
    for i in 0..20 {
        s.put_watcher(&watcher(
            &format!("user{i}"),
            &format!("sip:w{i}@example.org"),
        ))
        .unwrap();
    }
    s.put_xcap(&Xcap {
        username: "alice".into(),
        domain: "example.com".into(),
        doc_type: 1,
        doc_uri: "/pres-rules/users/sip:alice@example.com/index".into(),
        doc: b"<ruleset xmlns=\"urn:ietf:params:xml:ns:common-policy\"/>".to_vec(),
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
        doc: vec![0xde, 0xad, 0xbe, 0xef],
        etag: "x2".into(),
        source: 0,
        port: 0,
    })
    .unwrap();
}

/// Everything the store holds, for comparing two stores.
#[derive(Debug, PartialEq)]
struct Content {
    presentity: Vec<Publication>,
    dialogs: Vec<SubscriptionRow>,
    watchers: Vec<Watcher>,
    xcap: Vec<Xcap>,
}

fn content(s: &Store) -> Content {
    Content {
        presentity: s.iter_publications().map(Result::unwrap).collect(),
        dialogs: s.iter_subscriptions().map(Result::unwrap).collect(),
        watchers: s.iter_watchers().map(Result::unwrap).collect(),
        xcap: s.iter_xcap().map(Result::unwrap).collect(),
    }
}

fn dump_of(s: &Store, dialect: Dialect) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = DumpOptions {
        dialect,
        ..DumpOptions::default()
    };
    dump::write_dump(s, &mut out, &opts, &mut || Ok(())).unwrap();
    out
}

fn restore_into(s: &Store, sql: &[u8]) -> Result<dump::RestoreReport, dump::RestoreError> {
    dump::restore::restore(s, sql, &RestoreOptions::default(), NOW)
}

#[test]
fn dump_restore_dump_gives_the_same_bytes_in_every_dialect() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    fill(&a);
    for dialect in [Dialect::Mysql, Dialect::Postgres, Dialect::Sqlite] {
        let first = dump_of(&a, dialect);
        let b_dir = tempfile::tempdir().unwrap();
        let b = open(b_dir.path());
        let report = restore_into(&b, &first).unwrap();
        assert_eq!(report.restored, a.counts().unwrap(), "{dialect:?}");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let second = dump_of(&b, dialect);
        assert_eq!(
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second),
            "{dialect:?}"
        );
        assert_eq!(first, second, "{dialect:?}");
        assert_eq!(content(&a), content(&b), "{dialect:?}");
    }
}

#[test]
fn a_dump_with_schema_restores_and_skips_the_ddl_and_version_rows() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    fill(&a);
    for dialect in [Dialect::Mysql, Dialect::Postgres, Dialect::Sqlite] {
        let mut sql = Vec::new();
        let opts = DumpOptions {
            dialect,
            schema: true,
            ..DumpOptions::default()
        };
        dump::write_dump(&a, &mut sql, &opts, &mut || Ok(())).unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let b = open(b_dir.path());
        restore_into(&b, &sql).unwrap();
        assert_eq!(content(&a), content(&b), "{dialect:?}");
    }
}

#[test]
fn selected_tables_only_are_dumped_and_dialogs_come_before_watchers() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    fill(&a);
    let mut out = Vec::new();
    let opts = DumpOptions {
        dialect: Dialect::Sqlite,
        tables: vec![Table::Watchers, Table::ActiveWatchers],
        ..DumpOptions::default()
    };
    let counts = dump::write_dump(&a, &mut out, &opts, &mut || Ok(())).unwrap();
    assert_eq!(counts.presentity, 0);
    assert_eq!(counts.watchers, 22);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("INSERT INTO \"presentity\""));
    let aw = text.find("INSERT INTO \"active_watchers\"").unwrap();
    let w = text.find("INSERT INTO \"watchers\"").unwrap();
    assert!(aw < w);
}

#[test]
fn the_opensips_flag_drops_extension_columns_and_still_restores() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    a.put_publication(&presentity("alice", "a1", b"<presence/>"))
        .unwrap();
    let mut out = Vec::new();
    let opts = DumpOptions {
        dialect: Dialect::Mysql,
        opensips: true,
        ..DumpOptions::default()
    };
    dump::write_dump(&a, &mut out, &opts, &mut || Ok(())).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains("`priority`"), "{text}");
    let b_dir = tempfile::tempdir().unwrap();
    let b = open(b_dir.path());
    restore_into(&b, &out).unwrap();
    let got = b
        .get_publication("presence", "sip:alice@example.com", "a1")
        .unwrap()
        .unwrap();
    // Defaults: the content type follows the event, the order follows received_time.
    assert_eq!(got.content_type, "application/pidf+xml");
    assert_eq!(got.priority, NOW);
    assert_eq!(got.body, b"<presence/>");
}

#[test]
fn unknown_columns_are_ignored_with_one_warning_each_and_missing_ones_default() {
    let sql = "INSERT INTO watchers (id, presentity_uri, watcher_username, watcher_domain, \
               status, flags, updated) VALUES\n\
               (1, 'sip:a@example.com', 'bob', 'example.org', 1, 0, 5),\n\
               (2, 'sip:a@example.com', 'eve', 'example.org', 2, 0, 6);\n\
               INSERT INTO watchers (presentity_uri, watcher_username, watcher_domain, status, flags) \
               VALUES ('sip:b@example.com', 'bob', 'example.org', 3, 1);\n";
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let report = restore_into(&s, sql.as_bytes()).unwrap();
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.contains("watchers.flags")));
    assert_eq!(report.restored.watchers, 3);
    let w = s
        .get_watcher("sip:a@example.com", "presence", "sip:eve@example.org")
        .unwrap()
        .unwrap();
    assert_eq!(
        (w.status, w.inserted_time, w.reason),
        (status::PENDING, 0, None)
    );
}

#[test]
fn expired_rows_are_skipped_unless_asked_to_keep_them() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    let mut old = presentity("alice", "old", b"x");
    old.expires = NOW - 1;
    a.put_publication(&old).unwrap();
    a.put_publication(&presentity("alice", "new", b"y"))
        .unwrap();
    let mut d = dialog("alice", "c-old", "sip:bob@example.org");
    d.expires = NOW;
    a.put_subscription(&d).unwrap();
    let sql = dump_of(&a, Dialect::Mysql);

    let b_dir = tempfile::tempdir().unwrap();
    let b = open(b_dir.path());
    let r = restore_into(&b, &sql).unwrap();
    assert_eq!((r.restored.presentity, r.restored.active_watchers), (1, 0));
    assert_eq!(r.skipped_expired, 2);

    let c_dir = tempfile::tempdir().unwrap();
    let c = open(c_dir.path());
    let keep = RestoreOptions {
        keep_expired: true,
        ..RestoreOptions::default()
    };
    let r = dump::restore::restore(&c, &sql[..], &keep, NOW).unwrap();
    assert_eq!((r.restored.presentity, r.restored.active_watchers), (2, 1));
}

#[test]
fn merge_keeps_other_rows_and_replace_empties_the_tables_first() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    a.put_publication(&presentity("alice", "a1", b"new"))
        .unwrap();
    let sql = dump_of(&a, Dialect::Postgres);

    let b_dir = tempfile::tempdir().unwrap();
    let b = open(b_dir.path());
    b.put_publication(&presentity("alice", "a1", b"old"))
        .unwrap();
    b.put_publication(&presentity("zed", "z1", b"other"))
        .unwrap();
    restore_into(&b, &sql).unwrap();
    assert_eq!(b.publications_count(), 2);
    let got = b
        .get_publication("presence", "sip:alice@example.com", "a1")
        .unwrap()
        .unwrap();
    assert_eq!(got.body, b"new");

    let replace = RestoreOptions {
        replace: true,
        ..RestoreOptions::default()
    };
    dump::restore::restore(&b, &sql[..], &replace, NOW).unwrap();
    assert_eq!(content(&a), content(&b));
}

/// A restore into an empty database loads straight into the tables; the same handle must
/// then count those rows, so a second restore merges (through staging) instead of
/// treating the database as empty and, on failure, emptying it. Found by the `restore`
/// fuzz target.
#[test]
fn a_store_that_was_bulk_loaded_counts_its_rows_and_a_failed_restore_keeps_them() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    fill(&src);
    let sql = dump_of(&src, Dialect::Mysql);

    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let report = restore_into(&s, &sql).unwrap();
    assert_eq!(s.counts().unwrap(), report.restored);
    assert_eq!(s.counts().unwrap(), src.counts().unwrap());

    let before = content(&s);
    let truncated = &sql[..sql.len() / 2];
    restore_into(&s, truncated).unwrap_err();
    assert_eq!(
        content(&s),
        before,
        "a failed second restore changed the database"
    );
    assert_eq!(s.counts().unwrap(), report.restored);
}

/// Restores `sql` into a store that already holds `fill`'s rows; asserts it fails at
/// `line` and that the store is exactly as before.
fn assert_rejected(sql: &[u8], line: u64) -> RestoreErrorKind {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    fill(&s);
    let before = content(&s);
    let e = restore_into(&s, sql).unwrap_err();
    assert_eq!(e.line(), Some(line), "{e}");
    assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    assert_eq!(content(&s), before, "the database changed after: {e}");
    e.kind().unwrap().clone()
}

/// A valid dump of a few rows, one per line, to break in different ways.
fn good_dump() -> String {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..5 {
        s.put_publication(&presentity(&format!("new{i}"), "e", b"<presence/>"))
            .unwrap();
    }
    String::from_utf8(dump_of(&s, Dialect::Mysql)).unwrap()
}

fn line_of(text: &str, needle: &str) -> u64 {
    let at = text.find(needle).unwrap();
    text[..at].matches('\n').count() as u64 + 1
}

#[test]
fn a_truncated_dump_restores_nothing() {
    let good = good_dump();
    // Cut inside the third row.
    let cut = good.find("'new2'").unwrap() + 3;
    let line = line_of(&good, "'new2'");
    match assert_rejected(&good.as_bytes()[..cut], line) {
        RestoreErrorKind::Read(ReadErrorKind::Eof(_)) => {}
        k => panic!("{k:?}"),
    }
    // Cut after a complete statement: the closing COMMIT and comment are missing.
    let cut = good.find("COMMIT;").unwrap();
    let lines = good[..cut].matches('\n').count() as u64 + 1;
    match assert_rejected(&good.as_bytes()[..cut], lines) {
        RestoreErrorKind::Read(ReadErrorKind::Truncated(_)) => {}
        k => panic!("{k:?}"),
    }
}

#[test]
fn a_row_with_the_wrong_column_count_restores_nothing() {
    let good = good_dump();
    let bad = good.replacen("('new3',", "('new3','surplus',", 1);
    let line = line_of(&bad, "'new3'");
    assert_eq!(
        assert_rejected(bad.as_bytes(), line),
        RestoreErrorKind::ColumnCount {
            expected: 12,
            got: 13
        }
    );
}

/// A NUL byte in a value that only an index key holds (the watcher URI is in the
/// by-watcher index, not the row key) fails that row at its line, before anything is
/// applied: found by the `restore` fuzz target, when the merge's commit failed half-way.
#[test]
fn a_nul_in_a_value_an_index_key_holds_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.put_publication(&presentity("alice", "e1", b"<presence/>"))
        .unwrap();
    s.put_subscription(&dialog("alice", "c1", "sip:w@example.org"))
        .unwrap();
    let good = String::from_utf8(dump_of(&s, Dialect::Mysql)).unwrap();
    let bad = good.replacen("'example.org'", "'exam\\0ple.org'", 1);
    assert_ne!(bad, good);
    let line = line_of(&bad, "exam\\0ple.org");
    match assert_rejected(bad.as_bytes(), line) {
        RestoreErrorKind::BadValue { column, .. } => assert_eq!(column, "watcher_uri"),
        k => panic!("{k:?}"),
    }
    // Into an empty database (the bulk path) it fails the same way, and nothing stays.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = open(empty_dir.path());
    let e = restore_into(&empty, bad.as_bytes()).unwrap_err();
    assert_eq!(e.line(), Some(line), "{e}");
    assert_eq!(empty.iter_publications().count(), 0);
}

#[test]
fn an_unknown_table_restores_nothing() {
    let good = good_dump();
    let bad = good.replacen(
        "COMMIT;",
        "INSERT INTO `location` (`username`) VALUES ('x');\nCOMMIT;",
        1,
    );
    let line = line_of(&bad, "INSERT INTO `location`");
    assert_eq!(
        assert_rejected(bad.as_bytes(), line),
        RestoreErrorKind::UnknownTable("location".into())
    );
}

#[test]
fn a_bad_escape_restores_nothing() {
    let good = good_dump();
    let bad = good.replacen("'new4'", "'new\\q4'", 1);
    let line = line_of(&bad, "'new\\q4'");
    match assert_rejected(bad.as_bytes(), line) {
        RestoreErrorKind::Read(ReadErrorKind::BadEscape(_)) => {}
        k => panic!("{k:?}"),
    }
}

#[test]
fn invalid_utf8_in_a_text_column_restores_nothing() {
    let good = good_dump();
    let mut bad = good.replacen("'new1'", "'new\u{1}1'", 1).into_bytes();
    let at = bad.iter().position(|&b| b == 1).unwrap();
    bad[at] = 0xff;
    let line = line_of(&good, "'new1'");
    assert_eq!(
        assert_rejected(&bad, line),
        RestoreErrorKind::InvalidUtf8 { column: "username" }
    );
}

#[test]
fn a_duplicate_key_restores_nothing() {
    let good = good_dump();
    let bad = good.replacen("'new3'", "'new1'", 1);
    let line = line_of(&good, "'new3'");
    assert_eq!(
        assert_rejected(bad.as_bytes(), line),
        RestoreErrorKind::DuplicateKey {
            table: "presentity"
        }
    );
}

#[test]
fn mysqldump_shaped_input_with_other_versions_columns_restores() {
    // What mysqldump writes for an OpenSIPS 3.x table (no presenced columns), with
    // multi-row INSERTs, _binary blobs, hex blobs and the usual wrapping.
    let sql = "-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\n\
        /*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n\
        /*!40101 SET NAMES utf8mb4 */;\n\
        DROP TABLE IF EXISTS `presentity`;\n\
        CREATE TABLE `presentity` (\n  `id` int(10) unsigned NOT NULL AUTO_INCREMENT,\n  `username` char(64) NOT NULL COMMENT 'it''s',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=latin1;\n\
        LOCK TABLES `presentity` WRITE;\n\
        /*!40000 ALTER TABLE `presentity` DISABLE KEYS */;\n\
        INSERT INTO `presentity` VALUES (1,'alice','example.com','presence','a1',4000000000,1700000000,_binary '<presence>\\n\\'x\\'</presence>',NULL,'sip:1.2.3.4'),(2,'bob','example.com','presence','b1',4000000000,1700000001,0x00FF,_binary '','');\n\
        /*!40000 ALTER TABLE `presentity` ENABLE KEYS */;\n\
        UNLOCK TABLES;\n\
        /*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;\n\
        -- Dump completed on 2024-05-01 10:00:00\n";
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let r = restore_into(&s, sql.as_bytes()).unwrap();
    assert_eq!(r.restored.presentity, 2);
    let a = s
        .get_publication("presence", "sip:alice@example.com", "a1")
        .unwrap()
        .unwrap();
    assert_eq!(a.body, b"<presence>\n'x'</presence>");
    assert_eq!(a.sender, "sip:1.2.3.4");
    let b = s
        .get_publication("presence", "sip:bob@example.com", "b1")
        .unwrap()
        .unwrap();
    assert_eq!(b.body, vec![0, 0xff]);
}

// --- through a running daemon ---------------------------------------------------------

fn daemon_config(db: &std::path::Path) -> Config {
    Config {
        db: db.to_path_buf(),
        listen: vec![ListenAddr::Udp("127.0.0.1:0".parse().unwrap())],
        ..Config::default()
    }
}

#[test]
fn dump_and_restore_go_through_the_running_daemon_and_restored_watchers_get_notify() {
    // The watcher: a UDP socket the restored subscription points at.
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = phone.local_addr().unwrap().port();

    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    src.put_publication(&presentity("alice", "a1", b"<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@example.com\"><tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>"))
        .unwrap();
    let mut d = dialog("alice", "restored-call", "sip:bob@example.org");
    d.remote_target = format!("sip:bob@127.0.0.1:{port}");
    d.transport_peer = format!("udp:127.0.0.1:{port}");
    src.put_subscription(&d).unwrap();
    src.put_watcher(&watcher("alice", "sip:bob@example.org"))
        .unwrap();
    let sql = dump_of(&src, Dialect::Sqlite);
    drop(src);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let handle = presenced::daemon::start(daemon_config(&db), Arc::new(SystemClock)).unwrap();
    let sock = mgmt::socket_path(&db, None);

    let report = Client::connect(&sock)
        .unwrap()
        .restore(&RestoreOptions::default(), &mut &sql[..])
        .unwrap();
    assert_eq!(report.restored.total(), 3);

    // The restored subscription gets a NOTIFY with the restored state.
    let mut buf = vec![0u8; 65536];
    let (n, _) = phone.recv_from(&mut buf).unwrap();
    let notify = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(notify.starts_with("NOTIFY sip:bob@127.0.0.1"), "{notify}");
    assert!(notify.contains("Call-ID: restored-call"), "{notify}");
    assert!(notify.contains("CSeq: 5 NOTIFY"), "{notify}");
    assert!(notify.contains("<basic>open</basic>"), "{notify}");

    // A dump through the daemon holds what was restored.
    let mut out = Vec::new();
    let counts = Client::connect(&sock)
        .unwrap()
        .dump(
            &DumpOptions {
                dialect: Dialect::Sqlite,
                ..DumpOptions::default()
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(counts.total(), 3);
    assert!(String::from_utf8_lossy(&out).contains("'restored-call'"));

    // A bad restore through the daemon is refused with its line, and changes nothing.
    let bad = b"BEGIN;\nINSERT INTO watchers (presentity_uri) VALUES ('x', 'y');\nCOMMIT;\n";
    let e = Client::connect(&sock)
        .unwrap()
        .restore(&RestoreOptions::default(), &mut &bad[..])
        .unwrap_err();
    assert!(
        e.to_string().starts_with("line 2: wrong column count"),
        "{e}"
    );

    let status = Client::connect(&sock).unwrap().status().unwrap();
    assert_eq!(status["tables"]["watchers"], 1, "{status}");
    handle.shutdown().unwrap();
    assert!(!sock.exists(), "the control socket is removed at shutdown");
}

#[test]
fn a_large_restore_through_the_daemon_streams_in_frames() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = open(src_dir.path());
    for i in 0..5000 {
        src.put_watcher(&watcher(&format!("u{i}"), "sip:w@example.org"))
            .unwrap();
    }
    let sql = dump_of(&src, Dialect::Postgres);
    assert!(sql.len() > 256 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let handle = presenced::daemon::start(daemon_config(&db), Arc::new(SystemClock)).unwrap();
    let sock = mgmt::socket_path(&db, None);
    let mut input = std::io::Cursor::new(sql.clone()).chain(&b""[..]);
    let r = Client::connect(&sock)
        .unwrap()
        .restore(&RestoreOptions::default(), &mut input)
        .unwrap();
    assert_eq!(r.restored.watchers, 5000);
    let mut out = Vec::new();
    Client::connect(&sock)
        .unwrap()
        .dump(
            &DumpOptions {
                dialect: Dialect::Postgres,
                ..DumpOptions::default()
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(out, sql);
    handle.shutdown().unwrap();
}
