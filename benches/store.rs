//! The store's write path against sled's own: what one restored row costs
//! (`BulkLoad::add_dialog`: the row plus its expiry, dialog and by-watcher entries)
//! next to one bare sled insert of a key and value of the same sizes. The ratio is the
//! number of keys a row costs; sled's per-key figure is the ceiling for restore speed.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use presenced::store::records::SubscriptionRow;
use presenced::store::{Store, StoreOptions};

/// Rows (or keys) per measured batch: enough to split many leaves.
const N: u64 = 20_000;

fn dialog(i: u64) -> SubscriptionRow {
    SubscriptionRow {
        presentity_uri: format!("sip:u{i}@example.com"),
        watcher_uri: format!("sip:w{i}@example.org"),
        to_uri: format!("sip:u{i}@example.com"),
        event: "presence".into(),
        event_id: None,
        call_id: format!("c{i}@10.0.0.2"),
        to_tag: format!("10t{i}"),
        from_tag: format!("f{i}"),
        local_cseq: 3,
        remote_cseq: 7,
        expires: 2_000_000_000,
        status: 1,
        reason: None,
        version: 2,
        remote_target: format!("sip:w{i}@10.0.0.2:5062"),
        record_route: Vec::new(),
        local_contact: "<sip:10.0.0.1:5060>".into(),
        socket_info: "udp:10.0.0.1:5060".into(),
        transport_peer: "udp:10.0.0.2:5062".into(),
        user_agent: "bench/1.0".into(),
        accept: vec!["application/pidf+xml".into()],
        sharing_tag: None,
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("bulk_load_dialog_rows", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let mut bulk = store.bulk_load().unwrap().unwrap();
                for i in 0..N {
                    bulk.add_dialog(&dialog(i)).unwrap();
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    let value = presenced::store::records::encode(&dialog(0)).unwrap();
    g.bench_function("sled_insert_sequential_keys", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let db = sled::Config::new()
                    .path(dir.path())
                    .cache_capacity(8 << 20)
                    .open()
                    .unwrap();
                (dir, db)
            },
            |(dir, db)| {
                let tree = db.open_tree("t").unwrap();
                for i in 0..N {
                    let key = format!("rsip:u{i:012}@example.com\0presence\0c{i}@10.0.0.2");
                    tree.insert(key.as_bytes(), value.as_slice()).unwrap();
                }
                (dir, db)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(store, benches);
criterion_main!(store);
