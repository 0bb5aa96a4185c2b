use presenced::store::*;
#[test]
fn probe() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let n = 200_000u64;
    let t = std::time::Instant::now();
    for i in 0..n {
        s.put_presentity(&Presentity {
            presentity_uri: format!("sip:user{i}@example.com"),
            event: "presence".into(),
            etag: format!("e{i}"),
            expires: 2_000_000_000 + i,
            received_time: 1_700_000_000,
            body: vec![b'x'; 300],
            content_type: "application/pidf+xml".into(),
            sender: "sip:1.2.3.4".into(),
            extra_hdrs: String::new(),
            priority: i,
        })
        .unwrap();
    }
    let el = t.elapsed();
    eprintln!("put: {:.0} rows/s", n as f64 / el.as_secs_f64());
    let t = std::time::Instant::now();
    let mut c = 0;
    for r in s.iter_presentities() {
        r.unwrap();
        c += 1;
    }
    eprintln!(
        "iter: {:.0} rows/s {c}",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let tree = sled::open(dir.path().join("x")).unwrap();
    let t = std::time::Instant::now();
    let mut b = sled::Batch::default();
    for i in 0..n {
        b.insert(
            format!("rsip:user{i}@example.com\0presence\0e{i}").as_bytes(),
            vec![b'x'; 340],
        );
        b.insert(
            format!("x{i:08}rsip:user{i}@example.com").as_bytes(),
            vec![],
        );
        if i % 5000 == 0 {
            tree.apply_batch(std::mem::take(&mut b)).unwrap();
        }
    }
    tree.apply_batch(b).unwrap();
    eprintln!("batch: {:.0} rows/s", n as f64 / t.elapsed().as_secs_f64());
}
