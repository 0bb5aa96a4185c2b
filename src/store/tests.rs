//! Behaviour of the store through its public API, on real sled databases in temp dirs.

use super::records::tests::{dialog, presentity, watcher};
use super::records::{DecodeError, FORMAT_VERSION, encode, status};
use super::*;
use tempfile::TempDir;

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    (dir, store)
}

fn etags(list: &[Publication]) -> Vec<(&str, &str, &str)> {
    list.iter()
        .map(|p| (p.event.as_str(), p.presentity_uri.as_str(), p.etag.as_str()))
        .collect()
}

#[test]
fn each_record_round_trips_through_the_store() {
    let (_dir, store) = open();
    let p = presentity("sip:a@b", "dialog;sla", "e1", 100);
    store.put_publication(&p).unwrap();
    assert_eq!(
        store
            .get_publication("dialog;sla", "sip:a@b", "e1")
            .unwrap(),
        Some(p)
    );

    let d = dialog("sip:a@b", "presence", "call-1", 100);
    store.put_subscription(&d).unwrap();
    assert_eq!(
        store.get_subscription("call-1", "tt", "ft").unwrap(),
        Some(d)
    );

    let w = watcher("sip:a@b", "presence", "sip:bob@x");
    store.put_watcher(&w).unwrap();
    assert_eq!(
        store
            .get_watcher("sip:a@b", "presence", "sip:bob@x")
            .unwrap(),
        Some(w)
    );
}

#[test]
fn temporary_stores_start_empty_and_are_independent() {
    let first = Store::open_temporary(StoreOptions::default()).unwrap();
    let second = Store::open_temporary(StoreOptions::default()).unwrap();
    first
        .put_publication(&presentity("sip:a@b", "presence", "e1", 100))
        .unwrap();
    assert_eq!(first.counts().unwrap().presentity, 1);
    assert_eq!(second.counts().unwrap().total(), 0);
    assert_eq!(
        second.get_publication("presence", "sip:a@b", "e1").unwrap(),
        None
    );
    assert_eq!(second.iter_publications().count(), 0);
}

#[test]
fn missing_rows_read_as_none() {
    let (_dir, store) = open();
    assert_eq!(
        store.get_publication("presence", "sip:a@b", "e").unwrap(),
        None
    );
    assert_eq!(store.get_subscription("c", "t", "f").unwrap(), None);
    assert_eq!(store.delete_subscription("c", "t", "f").unwrap(), None);
    assert_eq!(
        store
            .delete_watcher("sip:a@b", "presence", "sip:c@d")
            .unwrap(),
        None
    );
}

#[test]
fn a_stored_value_with_an_unknown_version_is_a_typed_error() {
    let (_dir, store) = open();
    let p = presentity("sip:a@b", "presence", "e1", 100);
    let mut bytes = encode(&p).unwrap();
    bytes[0] = FORMAT_VERSION + 1;
    store
        .inner
        .publications
        .raw_insert(&p.row_key().unwrap(), &bytes);
    match store.get_publication("presence", "sip:a@b", "e1") {
        Err(StoreError::Corrupt {
            tree: "presentity",
            why,
            ..
        }) => {
            assert_eq!(why, DecodeError::UnknownVersion(FORMAT_VERSION + 1))
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn prefix_scans_match_only_that_presentity_and_event() {
    let (_dir, store) = open();
    for uri in ["sip:a@b", "sip:a@bc", "sip:a@b.c"] {
        for event in ["presence", "presence.winfo"] {
            store
                .put_publication(&presentity(uri, event, "e1", 10))
                .unwrap();
            store
                .put_publication(&presentity(uri, event, "e2", 10))
                .unwrap();
            store
                .put_subscription(&dialog(uri, event, &format!("{uri}{event}"), 10))
                .unwrap();
            store.put_watcher(&watcher(uri, event, "sip:w@x")).unwrap();
        }
    }
    let found = store.publications_of("presence", "sip:a@b").unwrap();
    assert_eq!(
        etags(&found),
        [("presence", "sip:a@b", "e1"), ("presence", "sip:a@b", "e2")]
    );
    let dialogs = store.subscriptions_to("sip:a@b", "presence").unwrap();
    assert_eq!(dialogs.len(), 1);
    assert_eq!(dialogs[0].call_id, "sip:a@bpresence");
    let watchers = store.watchers_for("sip:a@b", "presence").unwrap();
    assert_eq!(watchers, [watcher("sip:a@b", "presence", "sip:w@x")]);
}

#[test]
fn reput_with_new_expiry_leaves_no_stale_index_entry() {
    let (_dir, store) = open();
    store
        .put_publication(&presentity("sip:a@b", "presence", "e", 100))
        .unwrap();
    store
        .put_publication(&presentity("sip:a@b", "presence", "e", 500))
        .unwrap();
    assert!(store.expired_publications(499, 10).unwrap().is_empty());
    assert_eq!(store.expired_publications(500, 10).unwrap().len(), 1);
    // One row and one expiry entry, nothing else.
    assert_eq!(store.inner.publications.raw_len(), 2);

    store
        .put_subscription(&dialog("sip:a@b", "presence", "c", 100))
        .unwrap();
    store
        .put_subscription(&dialog("sip:a@b", "presence", "c", 50))
        .unwrap();
    let expired = store.expired_subscriptions(60, 10).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].expires, 50);
    assert!(store.expired_subscriptions(49, 10).unwrap().is_empty());
    // Row, expiry entry, dialog index entry, by-watcher and by-identity index entries.
    assert_eq!(store.inner.subscriptions.raw_len(), 5);
}

#[test]
fn expired_returns_only_due_rows_soonest_first_up_to_the_limit() {
    let (_dir, store) = open();
    for (etag, expires) in [("a", 30), ("b", 10), ("c", 20), ("d", 40), ("e", 20)] {
        store
            .put_publication(&presentity("sip:a@b", "presence", etag, expires))
            .unwrap();
    }
    let due = store.expired_publications(30, 10).unwrap();
    let order: Vec<_> = due.iter().map(|p| (p.expires, p.etag.as_str())).collect();
    assert_eq!(order, [(10, "b"), (20, "c"), (20, "e"), (30, "a")]);
    assert_eq!(store.expired_publications(30, 2).unwrap().len(), 2);
    assert!(store.expired_publications(30, 0).unwrap().is_empty());
    assert!(store.expired_publications(9, 10).unwrap().is_empty());
    assert_eq!(store.expired_publications(u64::MAX, 10).unwrap().len(), 5);
}

#[test]
fn delete_removes_the_row_and_its_index_entries() {
    let (_dir, store) = open();
    let p = presentity("sip:a@b", "presence", "e", 10);
    store.put_publication(&p).unwrap();
    assert_eq!(
        store
            .delete_publication("presence", "sip:a@b", "e")
            .unwrap(),
        Some(p)
    );
    assert_eq!(store.inner.publications.raw_len(), 0);
    assert!(store.expired_publications(u64::MAX, 10).unwrap().is_empty());

    let d = dialog("sip:a@b", "presence", "c", 10);
    store.put_subscription(&d).unwrap();
    assert_eq!(store.delete_subscription("c", "tt", "ft").unwrap(), Some(d));
    assert_eq!(store.inner.subscriptions.raw_len(), 0);
    assert_eq!(store.get_subscription("c", "tt", "ft").unwrap(), None);

    store
        .put_watcher(&watcher("sip:a@b", "presence", "sip:w@x"))
        .unwrap();
    assert!(
        store
            .delete_watcher("sip:a@b", "presence", "sip:w@x")
            .unwrap()
            .is_some()
    );
    assert_eq!(store.inner.watchers.raw_len(), 0);
}

#[test]
fn a_dialog_keeps_one_row_when_stored_under_another_presentity() {
    let (_dir, store) = open();
    store
        .put_subscription(&dialog("sip:a@b", "presence", "c", 10))
        .unwrap();
    let moved = dialog("sip:z@b", "presence", "c", 20);
    store.put_subscription(&moved).unwrap();
    assert_eq!(
        store.get_subscription("c", "tt", "ft").unwrap(),
        Some(moved)
    );
    assert!(
        store
            .subscriptions_to("sip:a@b", "presence")
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.subscriptions_count(), 1);
    assert_eq!(store.expired_subscriptions(u64::MAX, 10).unwrap().len(), 1);
}

#[test]
fn counts_follow_inserts_overwrites_and_deletes() {
    let (_dir, store) = open();
    store
        .put_subscription(&dialog("sip:a@b", "presence", "c1", 10))
        .unwrap();
    store
        .put_subscription(&dialog("sip:a@b", "presence", "c1", 20))
        .unwrap();
    store
        .put_subscription(&dialog("sip:a@b", "presence", "c2", 10))
        .unwrap();
    assert_eq!(store.subscriptions_count(), 2);
    store.delete_subscription("c1", "tt", "ft").unwrap();
    assert_eq!(store.subscriptions_count(), 1);
    store
        .put_publication(&presentity("sip:a@b", "presence", "e", 1))
        .unwrap();
    assert_eq!((store.publications_count(), store.watchers_count()), (1, 0));
}

#[test]
fn key_parts_with_nul_are_rejected_not_stored() {
    let (_dir, store) = open();
    let err = store.put_publication(&presentity("sip:a@b", "presence", "e\0", 1));
    assert!(matches!(err, Err(StoreError::InvalidKey { field: "etag" })));
    assert!(matches!(
        store.get_subscription("c\0", "t", "f"),
        Err(StoreError::InvalidKey { field: "call_id" })
    ));
    assert_eq!(store.publications_count(), 0);
}

#[test]
fn data_survives_drop_and_reopen() {
    for sync_always in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            cache_capacity: 1 << 20,
            sync_always,
        };
        {
            let store = Store::open(dir.path(), opts).unwrap();
            store
                .put_publication(&presentity("sip:a@b", "presence", "e", 7))
                .unwrap();
            store
                .put_subscription(&dialog("sip:a@b", "presence", "c", 9))
                .unwrap();
            store
                .put_watcher(&watcher("sip:a@b", "presence", "sip:w@x"))
                .unwrap();
            if !sync_always {
                store.flush().unwrap();
            }
        }
        let store = Store::open(dir.path(), opts).unwrap();
        assert_eq!(store.expired_publications(7, 10).unwrap().len(), 1);
        assert_eq!(
            store
                .get_subscription("c", "tt", "ft")
                .unwrap()
                .map(|d| d.expires),
            Some(9)
        );
        assert_eq!(store.watchers_count(), 1);
        assert_eq!(store.subscriptions_count(), 1);
        assert!(store.size_on_disk().unwrap() > 0);
    }
}

#[test]
fn a_flush_syncs_the_blob_files_sled_writes_for_large_rows() {
    let (dir, store) = open();
    let mut p = presentity("sip:a@b", "presence", "e", 7);
    // Over a quarter of sled's 512 KiB segment: the page goes to a file in blobs/.
    p.body = vec![b'x'; 300 * 1024];
    store.put_publication(&p).unwrap();
    store.flush().unwrap();
    let on_disk: std::collections::HashSet<_> = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!on_disk.is_empty(), "sled wrote no blob for a 300 KiB row");
    let disk = store.inner.disk().expect("an on-disk store");
    let synced = disk.synced_blobs();
    assert!(
        on_disk.iter().all(|b| synced.contains(b)),
        "{on_disk:?} on disk, {synced:?} synced"
    );
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let back = store.get_publication("presence", "sip:a@b", "e").unwrap();
    assert_eq!(back.map(|p| p.body.len()), Some(300 * 1024));
}

#[test]
fn repair_recreates_a_missing_watchers_row_from_its_dialog() {
    let (_dir, store) = open();
    let mut d = dialog("sip:a@b", "presence", "c", 10);
    d.status = status::PENDING;
    d.reason = Some("probation".into());
    store.put_subscription(&d).unwrap();
    let mut winfo = dialog("sip:a@b", "presence.winfo", "c2", 10);
    winfo.to_tag = "other".into();
    store.put_subscription(&winfo).unwrap();

    let report = store.repair(1234, |d| d.event == "presence").unwrap();
    assert_eq!(report.watchers_recreated, 1);
    assert_eq!(
        store
            .get_watcher("sip:a@b", "presence", &d.watcher_uri)
            .unwrap(),
        Some(Watcher {
            presentity_uri: d.presentity_uri.clone(),
            watcher_uri: d.watcher_uri.clone(),
            event: d.event.clone(),
            status: status::PENDING,
            reason: Some("probation".into()),
            inserted_time: 1234,
        })
    );
    assert_eq!(store.watchers_count(), 1);
    assert!(store.repair(9999, |_| true).unwrap().watchers_recreated == 1);
    assert!(store.repair(9999, |_| true).unwrap().changed_nothing());
}

#[test]
fn repair_keeps_an_existing_watchers_row() {
    let (_dir, store) = open();
    let d = dialog("sip:a@b", "presence", "c", 10);
    store.put_subscription(&d).unwrap();
    let mut w = watcher("sip:a@b", "presence", &d.watcher_uri);
    w.status = status::TERMINATED;
    store.put_watcher(&w).unwrap();
    assert!(store.repair(1, |_| true).unwrap().changed_nothing());
    assert_eq!(
        store
            .get_watcher("sip:a@b", "presence", &d.watcher_uri)
            .unwrap(),
        Some(w)
    );
}

#[test]
fn repair_drops_dangling_index_entries_and_restores_missing_ones() {
    let (_dir, store) = open();
    let p = presentity("sip:a@b", "presence", "e", 10);
    store.put_publication(&p).unwrap();
    let d = dialog("sip:a@b", "presence", "c", 10);
    store.put_subscription(&d).unwrap();
    let gone = dialog("sip:gone@b", "presence", "gone", 5);
    let gone_key = gone.row_key().unwrap();
    let t = &store.inner;
    t.publications
        .raw_insert(&keys::expiry(3, b"rno\0such\0row"), b"");
    t.subscriptions.raw_insert(&keys::expiry(5, &gone_key), b"");
    t.subscriptions
        .raw_insert(&gone.dialog_key().unwrap().unwrap(), &gone_key);
    t.subscriptions.raw_insert(b"x12", b""); // too short to be an expiry entry
    // Lose the dialog's own expiry entry, as an older bug might have.
    t.subscriptions
        .raw_remove(&keys::expiry(10, &d.row_key().unwrap()));

    let report = store.repair(0, |_| false).unwrap();
    assert_eq!(report.index_entries_removed, 4);
    assert_eq!(report.index_entries_added, 1);
    assert_eq!(store.expired_publications(u64::MAX, 10).unwrap(), [p]);
    assert_eq!(store.expired_subscriptions(u64::MAX, 10).unwrap(), [d]);
    assert_eq!(store.get_subscription("gone", "tt", "ft").unwrap(), None);
    assert!(store.repair(0, |_| false).unwrap().changed_nothing());
}

#[test]
fn garbage_in_a_tree_is_reported_never_a_panic() {
    let (_dir, store) = open();
    let good = presentity("sip:a@b", "presence", "ok", 10);
    store.put_publication(&good).unwrap();
    let bad = presentity("sip:a@b", "presence", "bad", 10);
    let t = &store.inner;
    t.publications
        .raw_insert(&bad.row_key().unwrap(), b"\x01\xff\xff\xff garbage");
    t.publications
        .raw_insert(&keys::expiry(10, &bad.row_key().unwrap()), b"");
    t.publications.raw_insert(b"r", b"");
    t.publications.raw_insert(b"zzz", b"\x00");
    t.publications.raw_insert(b"", b"");
    t.subscriptions.raw_insert(b"d\0\0", b"rnothing");
    t.subscriptions.raw_insert(b"rjunk", &[FORMAT_VERSION]);

    assert!(matches!(
        store.get_publication("presence", "sip:a@b", "bad"),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        store.publications_of("presence", "sip:a@b").unwrap(),
        std::slice::from_ref(&good)
    );
    assert_eq!(
        store.expired_publications(u64::MAX, 10).unwrap(),
        std::slice::from_ref(&good)
    );
    let results: Vec<_> = store.iter_publications().collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 2);
    assert_eq!(store.iter_subscriptions().filter(|r| r.is_err()).count(), 1);
    let report = store.repair(0, |_| true).unwrap();
    // bad, "r", "zzz" and "" in presentity; "rjunk" in active_watchers.
    assert_eq!(report.unreadable, 5);
    assert_eq!(report.index_entries_removed, 1);
    // Overwriting an unreadable row heals it.
    store.put_publication(&bad).unwrap();
    assert_eq!(
        store.get_publication("presence", "sip:a@b", "bad").unwrap(),
        Some(bad)
    );
    // Deleting an unreadable dialog removes it.
    let u = dialog("sip:u@b", "presence", "cu", 1);
    t.subscriptions.raw_insert(&u.row_key().unwrap(), b"?");
    t.subscriptions
        .raw_insert(&u.dialog_key().unwrap().unwrap(), &u.row_key().unwrap());
    assert_eq!(store.subscriptions_to("sip:u@b", "presence").unwrap(), []);
    assert_eq!(store.delete_subscription("cu", "tt", "ft").unwrap(), None);
    assert_eq!(store.iter_subscriptions().count(), 1); // only "rjunk" is left
}

#[test]
fn concurrent_writers_of_one_row_leave_a_consistent_index() {
    let (_dir, store) = open();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let p = presentity("sip:a@b", "presence", "e", t * 1000 + i);
                    store.put_publication(&p).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.inner.publications.raw_len(), 2);
    assert_eq!(store.expired_publications(u64::MAX, 10).unwrap().len(), 1);
    assert!(store.repair(0, |_| true).unwrap().changed_nothing());
}

#[test]
fn reads_never_miss_a_row_while_write_behind_drains_concurrently() {
    let (_dir, store) = open();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drainer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.flush().unwrap();
            }
        })
    };
    // Each round replaces the publication under a new etag; the live one must always
    // be found, by key and by scan, whatever the drain is doing.
    let mut etag = "e0".to_string();
    store
        .put_publication(&presentity("sip:a@b", "presence", &etag, 10))
        .unwrap();
    for i in 1..3000u64 {
        let next = format!("e{i}");
        store
            .delete_publication("presence", "sip:a@b", &etag)
            .unwrap();
        store
            .put_publication(&presentity("sip:a@b", "presence", &next, 10 + i))
            .unwrap();
        etag = next;
        let got = store.get_publication("presence", "sip:a@b", &etag).unwrap();
        assert_eq!(got.map(|p| p.expires), Some(10 + i));
        let all = store.publications_of("presence", "sip:a@b").unwrap();
        assert_eq!(etags(&all), [("presence", "sip:a@b", etag.as_str())]);
        assert_eq!(store.expired_publications(u64::MAX, 5).unwrap().len(), 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drainer.join().unwrap();
    store.flush().unwrap();
    assert_eq!(store.inner.publications.raw_len(), 2);
    assert!(store.repair(0, |_| true).unwrap().changed_nothing());
}

#[test]
fn write_behind_rows_survive_drop_without_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .put_subscription(&dialog("sip:a@b", "presence", "c1", 100))
            .unwrap();
        assert!(store.pending_bytes() > 0);
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        store
            .get_subscription("c1", "tt", "ft")
            .unwrap()
            .map(|d| d.expires),
        Some(100)
    );
    assert_eq!(store.pending_bytes(), 0);
}

mod model {
    //! The store against a `BTreeMap` model over random operation sequences.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const URIS: [&str; 3] = ["sip:a@b", "sip:a@bc", "sip:ab@c"];
    const EVENTS: [&str; 3] = ["presence", "presence.winfo", "dialog;sla"];
    const ETAGS: [&str; 2] = ["e1", "e2"];
    const WATCHERS: [&str; 2] = ["sip:w@x", "sip:w@xy"];

    #[derive(Debug, Clone)]
    enum Op {
        Put {
            event: usize,
            uri: usize,
            etag: usize,
            expires: u64,
        },
        Delete {
            event: usize,
            uri: usize,
            etag: usize,
        },
        Sweep {
            now: u64,
            limit: usize,
        },
        PutDialog {
            uri: usize,
            event: usize,
            call: usize,
            expires: u64,
        },
        DeleteDialog {
            call: usize,
        },
        /// Write-behind operations reach sled in the middle of the sequence.
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0..3usize, 0..2usize, 0..50u64).prop_map(|(event, uri, etag, expires)| {
                Op::Put {
                    event,
                    uri,
                    etag,
                    expires,
                }
            }),
            (0..3usize, 0..3usize, 0..2usize).prop_map(|(event, uri, etag)| Op::Delete {
                event,
                uri,
                etag
            }),
            (0..60u64, 0..4usize).prop_map(|(now, limit)| Op::Sweep { now, limit }),
            (0..3usize, 0..3usize, 0..4usize, 0..50u64).prop_map(|(uri, event, call, expires)| {
                Op::PutDialog {
                    uri,
                    event,
                    call,
                    expires,
                }
            }),
            (0..4usize).prop_map(|call| Op::DeleteDialog { call }),
            Just(Op::Flush),
        ]
    }

    type PKey = (&'static str, &'static str, &'static str);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn store_matches_a_btreemap_model(
            ops in proptest::collection::vec(op(), 1..40),
            sync_always in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let opts = StoreOptions { sync_always, ..StoreOptions::default() };
            let store = Store::open(dir.path(), opts).unwrap();
            let mut pres: BTreeMap<PKey, u64> = BTreeMap::new();
            // call-id → (uri, event, expires)
            let mut dialogs: BTreeMap<String, (&str, &str, u64)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put { event, uri, etag, expires } => {
                        let k = (EVENTS[event], URIS[uri], ETAGS[etag]);
                        store.put_publication(&presentity(k.1, k.0, k.2, expires)).unwrap();
                        pres.insert(k, expires);
                    }
                    Op::Delete { event, uri, etag } => {
                        let k = (EVENTS[event], URIS[uri], ETAGS[etag]);
                        let got = store.delete_publication(k.0, k.1, k.2).unwrap();
                        prop_assert_eq!(got.map(|p| p.expires), pres.remove(&k));
                    }
                    Op::Sweep { now, limit } => {
                        let mut due: Vec<(u64, PKey)> = pres
                            .iter()
                            .filter(|(_, e)| **e <= now)
                            .map(|(k, e)| (*e, *k))
                            .collect();
                        due.sort();
                        due.truncate(limit);
                        let got: Vec<(u64, String, String, String)> = store
                            .expired_publications(now, limit)
                            .unwrap()
                            .into_iter()
                            .map(|p| (p.expires, p.event, p.presentity_uri, p.etag))
                            .collect();
                        let want: Vec<(u64, String, String, String)> = due
                            .iter()
                            .map(|(e, k)| (*e, k.0.into(), k.1.into(), k.2.into()))
                            .collect();
                        prop_assert_eq!(got, want);
                        for (_, k) in due {
                            store.delete_publication(k.0, k.1, k.2).unwrap();
                            pres.remove(&k);
                        }
                        let mut due_dialogs: Vec<(u64, String)> = dialogs
                            .iter()
                            .filter(|(_, d)| d.2 <= now)
                            .map(|(c, d)| (d.2, c.clone()))
                            .collect();
                        due_dialogs.sort_by_key(|(e, c)| (*e, dialogs[c].0, dialogs[c].1, c.clone()));
                        due_dialogs.truncate(limit);
                        let got: Vec<(u64, String)> = store
                            .expired_subscriptions(now, limit)
                            .unwrap()
                            .into_iter()
                            .map(|d| (d.expires, d.call_id))
                            .collect();
                        prop_assert_eq!(&got, &due_dialogs);
                    }
                    Op::PutDialog { uri, event, call, expires } => {
                        let call_id = format!("call{call}");
                        let mut d = dialog(URIS[uri], EVENTS[event], &call_id, expires);
                        // Two watchers, so a rewrite can move a dialog between their groups.
                        d.watcher_uri = WATCHERS[(call + expires as usize) % 2].into();
                        store.put_subscription(&d).unwrap();
                        dialogs.insert(call_id, (URIS[uri], EVENTS[event], expires));
                    }
                    Op::DeleteDialog { call } => {
                        let call_id = format!("call{call}");
                        let got = store.delete_subscription(&call_id, "tt", "ft").unwrap();
                        prop_assert_eq!(got.map(|d| d.expires), dialogs.remove(&call_id).map(|d| d.2));
                    }
                    Op::Flush => {
                        store.flush().unwrap();
                        prop_assert_eq!(store.pending_bytes(), 0);
                    }
                }
                prop_assert_eq!(store.publications_count(), pres.len() as u64);
                prop_assert_eq!(store.subscriptions_count(), dialogs.len() as u64);
                // The remembered group sizes (asked for from the first op on, so every
                // later write must keep them right) match the model.
                for uri in URIS {
                    for event in EVENTS {
                        let want = dialogs.values().filter(|d| d.0 == uri && d.1 == event).count();
                        prop_assert_eq!(store.subscriptions_to_count(uri, event).unwrap(), want as u64);
                        let want = want as u64;
                        prop_assert!(store.subscriptions_to_at_least(uri, event, want).unwrap());
                        prop_assert!(!store.subscriptions_to_at_least(uri, event, want + 1).unwrap());
                    }
                }
                let of = |w: usize| {
                    dialogs
                        .iter()
                        .filter(|(c, d)| {
                            let call: usize = c.trim_start_matches("call").parse().unwrap();
                            (call + d.2 as usize) % 2 == w
                        })
                        .count() as u64
                };
                for (w, watcher) in WATCHERS.iter().enumerate() {
                    prop_assert_eq!(store.subscriptions_of_identity_count(watcher).unwrap(), of(w));
                    prop_assert!(store.subscriptions_of_identity_at_least(watcher, of(w)).unwrap());
                    prop_assert!(!store.subscriptions_of_identity_at_least(watcher, of(w) + 1).unwrap());
                }
            }
            for event in EVENTS {
                for uri in URIS {
                    let got: Vec<(&str, u64)> = store
                        .publications_of(event, uri)
                        .unwrap()
                        .iter()
                        .map(|p| (ETAGS.iter().find(|e| **e == p.etag).copied().unwrap(), p.expires))
                        .collect();
                    let want: Vec<(&str, u64)> = pres
                        .iter()
                        .filter(|(k, _)| k.0 == event && k.1 == uri)
                        .map(|(k, e)| (k.2, *e))
                        .collect();
                    prop_assert_eq!(got, want);
                    let got: Vec<String> = store.subscriptions_to(uri, event).unwrap().into_iter().map(|d| d.call_id).collect();
                    let want: Vec<String> = dialogs
                        .iter()
                        .filter(|(_, d)| d.0 == uri && d.1 == event)
                        .map(|(c, _)| c.clone())
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert!(store.repair(0, |_| false).unwrap().changed_nothing());
        }
    }
}

#[test]
fn dialogs_of_watcher_finds_only_that_watchers_dialogs_and_follows_deletes() {
    let (_dir, store) = open();
    let mut a = dialog("sip:p@x", "presence", "c1", 100);
    a.watcher_uri = "sip:w1@x".into();
    let mut b = dialog("sip:p@x", "presence", "c2", 100);
    b.watcher_uri = "sip:w2@x".into();
    let mut c = dialog("sip:p@x", "presence", "c3", 100);
    c.watcher_uri = "sip:w1@xy".into();
    for d in [&a, &b, &c] {
        store.put_subscription(d).unwrap();
    }
    let found = store
        .subscriptions_of_watcher("sip:p@x", "presence", "sip:w1@x")
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].call_id, "c1");
    store
        .delete_subscription(&a.call_id, &a.to_tag, &a.from_tag)
        .unwrap();
    assert!(
        store
            .subscriptions_of_watcher("sip:p@x", "presence", "sip:w1@x")
            .unwrap()
            .is_empty()
    );
    assert!(store.repair(0, |_| false).unwrap().changed_nothing());
}

#[test]
fn a_new_row_inserted_without_reads_is_counted_indexed_and_found() {
    let (_dir, store) = open();
    let d = dialog("sip:a@b", "presence", "call-n", 100);
    store.insert_subscription(&d).unwrap();
    let p = presentity("sip:a@b", "presence", "fresh-etag", 100);
    store.insert_publication(&p).unwrap();
    assert_eq!(store.subscriptions_count(), 1);
    assert_eq!(store.publications_count(), 1);
    assert_eq!(
        store.get_subscription("call-n", "tt", "ft").unwrap(),
        Some(d.clone())
    );
    assert_eq!(
        store
            .subscriptions_of_watcher("sip:a@b", "presence", &d.watcher_uri)
            .unwrap(),
        vec![d.clone()]
    );
    assert_eq!(store.next_expiry().unwrap(), Some(100));
    // Removed again before any flush: nothing is left behind, counts included.
    store.delete_subscription("call-n", "tt", "ft").unwrap();
    store.flush().unwrap();
    assert_eq!(store.subscriptions_count(), 0);
    assert_eq!(store.get_subscription("call-n", "tt", "ft").unwrap(), None);
    assert!(
        store
            .subscriptions_of_watcher("sip:a@b", "presence", &d.watcher_uri)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn subscriber_lookups_are_skipped_only_for_events_no_dialog_can_have() {
    let (_dir, store) = open();
    store
        .put_subscription(&dialog("sip:a@b", "presence", "c1", 100))
        .unwrap();
    // Before repair has read the dialogs nothing is ruled out.
    assert!(store.may_have_subscriptions("presence.winfo"));
    store.repair(1, |_| true).unwrap();
    assert!(store.may_have_subscriptions("presence"));
    assert!(!store.may_have_subscriptions("presence.winfo"));
    // A dialog written after repair, by either write path, counts at once.
    let mut winfo = dialog("sip:a@b", "presence.winfo", "c2", 100);
    winfo.to_tag = "t2".into();
    store.insert_subscription(&winfo).unwrap();
    assert!(store.may_have_subscriptions("presence.winfo"));
    let mut dlg = dialog("sip:a@b", "dialog", "c3", 100);
    dlg.to_tag = "t3".into();
    store.put_subscription(&dlg).unwrap();
    assert!(store.may_have_subscriptions("dialog"));
    // The events found at open survive a restart's repair.
    drop(store);
    let store = Store::open(_dir.path(), StoreOptions::default()).unwrap();
    store.repair(2, |_| true).unwrap();
    for e in ["presence", "presence.winfo", "dialog"] {
        assert!(store.may_have_subscriptions(e), "{e}");
    }
    assert!(!store.may_have_subscriptions("message-summary"));
}

/// Every publication as (event, presentity, etag, expires), in key order.
fn all_publications(store: &Store) -> Vec<(String, String, String, u64)> {
    store
        .iter_publications()
        .map(|p| {
            let p = p.unwrap();
            (p.event, p.presentity_uri, p.etag, p.expires)
        })
        .collect()
}

#[test]
fn compaction_keeps_every_row_and_every_write_made_while_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for i in 0..3000u64 {
        let p = presentity(&format!("sip:u{i}@b"), "presence", "e", 100 + i);
        store.put_publication(&p).unwrap();
        if i % 3 != 0 {
            store
                .delete_publication("presence", &format!("sip:u{i}@b"), "e")
                .unwrap();
        }
    }
    store
        .put_subscription(&dialog("sip:u0@b", "presence", "c1", 100))
        .unwrap();
    // The dialog's watchers row, so that a repair after the compaction has nothing to do.
    store.repair(0, |_| true).unwrap();
    store.flush().unwrap();
    let secret = store.auth_secret().unwrap();
    let seq = store.next_sequence().unwrap();
    // A writer keeps going for the whole compaction.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || n < 200 {
                let p = presentity(&format!("sip:w{n}@b"), "dialog", "e", 7);
                store.put_publication(&p).unwrap();
                if n % 2 == 1 {
                    store
                        .delete_publication("dialog", &format!("sip:w{}@b", n - 1), "e")
                        .unwrap();
                }
                // As the daemon's periodic flush does: writes reach the trees mid-copy.
                if n.is_multiple_of(64) {
                    store.flush().unwrap();
                }
                n += 1;
            }
            n
        })
    };
    let done = store.compact().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Release);
    let written = writer.join().unwrap();
    assert!(done.entries > 0, "{done:?}");

    // What the model says: every third u-presentity, and of the writer's, the odd ones.
    let mut want: Vec<(String, String, String, u64)> = (0..3000u64)
        .filter(|i| i % 3 == 0)
        .map(|i| {
            (
                "presence".into(),
                format!("sip:u{i}@b"),
                "e".into(),
                100 + i,
            )
        })
        .chain(
            (0..written)
                .filter(|n| n % 2 == 1 || *n == written - 1)
                .map(|n| ("dialog".into(), format!("sip:w{n}@b"), "e".into(), 7)),
        )
        .collect();
    want.sort();
    let mut got = all_publications(&store);
    got.sort();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!(store.publications_count(), want.len() as u64);
    let repaired = store.repair(0, |_| true).unwrap();
    assert!(repaired.changed_nothing(), "{repaired:?}");
    assert_eq!(
        store.auth_secret().unwrap(),
        secret,
        "the default tree is copied"
    );
    assert!(store.next_sequence().unwrap() > seq, "ids keep growing");
    assert!(
        std::fs::read_to_string(dir.path().join("current"))
            .unwrap()
            .starts_with("compacted-1")
    );
    assert!(!dir.path().join("db").exists(), "the old files are gone");

    // A second compaction replaces the first copy; a reopen finds the current one.
    store.compact().unwrap();
    assert!(!dir.path().join("compacted-1").exists());
    let seq = store.next_sequence().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut again = all_publications(&store);
    again.sort();
    assert_eq!(again, want);
    assert_eq!(
        store
            .get_subscription("c1", "tt", "ft")
            .unwrap()
            .map(|d| d.call_id),
        Some("c1".into())
    );
    assert!(store.next_sequence().unwrap() > seq);
}

#[test]
fn compaction_reclaims_the_space_of_deleted_rows() {
    let (_dir, store) = open();
    let body = "x".repeat(2000);
    for i in 0..4000u64 {
        let mut p = presentity(&format!("sip:u{i}@b"), "presence", "e", 100);
        p.body = body.clone().into_bytes();
        store.put_publication(&p).unwrap();
    }
    store.flush().unwrap();
    for i in 0..4000u64 {
        if i % 10 != 0 {
            store
                .delete_publication("presence", &format!("sip:u{i}@b"), "e")
                .unwrap();
        }
    }
    let done = store.compact().unwrap();
    assert!(
        done.size_after * 2 < done.size_before,
        "{} → {} bytes",
        done.size_before,
        done.size_after
    );
    assert_eq!(store.publications_count(), 400);
}

#[test]
fn a_compaction_waits_for_a_staged_restore_and_the_other_way_round() {
    let (_dir, store) = open();
    let staging = store.staging().unwrap();
    assert!(matches!(store.compact(), Err(StoreError::Busy(_))));
    drop(staging);
    let (_dir2, tmp) = ((), Store::open_temporary(StoreOptions::default()).unwrap());
    assert!(matches!(tmp.compact(), Err(StoreError::Busy(_))));
}

#[test]
fn a_watchers_row_is_found_by_every_path_it_can_arrive_by() {
    // The watchers table answers "no such row" from a membership filter; a row written
    // through it, bulk-loaded past it, or found at the next open must still be found.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let mut bl = store.bulk_load().unwrap().unwrap();
    let loaded = watcher("sip:a@b", "presence", "sip:loaded@x");
    bl.add_watcher(&loaded).unwrap();
    let counts = bl.counts();
    bl.finish(counts).unwrap();
    let get = |s: &Store, w: &str| s.get_watcher("sip:a@b", "presence", w).unwrap();
    assert_eq!(get(&store, "sip:loaded@x"), Some(loaded.clone()));
    store.prepare_counts().unwrap();
    assert_eq!(get(&store, "sip:loaded@x"), Some(loaded.clone()));
    let put = watcher("sip:a@b", "presence", "sip:put@x");
    store.put_watcher(&put).unwrap();
    assert_eq!(get(&store, "sip:put@x"), Some(put.clone()));
    assert_eq!(get(&store, "sip:never@x"), None);
    // Deleted: gone, though the filter still says it may be there.
    store
        .delete_watcher("sip:a@b", "presence", "sip:put@x")
        .unwrap();
    assert_eq!(get(&store, "sip:put@x"), None);
    store.put_watcher(&put).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(get(&store, "sip:loaded@x"), Some(loaded));
    assert_eq!(get(&store, "sip:put@x"), Some(put));
    assert_eq!(get(&store, "sip:never@x"), None);
}
