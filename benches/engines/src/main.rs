//! Storage-engine comparison for presenced's restore and dump (issue 4's targets: 200,000
//! rows/s each way at 1M rows, peak RSS flat in the row count). It writes the keys and
//! values presenced's sled store writes for N SQL rows (a third each of presentity,
//! active_watchers and watchers; row keys plus the expiry, dialog and by-watcher index
//! entries: ~2.33 keys per row) into sled 0.34, fjall 2 or redb 4, then reads the rows
//! back in a fresh process the way `presenced dump` does. Figures: BENCHMARKS.md,
//! "Storage engines"; the scripts beside this crate run the recorded variants.
//!
//! usage: enginebench <engine> <phase> <dir> <rows> [threads]
//!   engine: sled | sled-rows | fjall | redb | redb-rows  (`-rows`: row keys only, no index)
//!   phase:  load | iter | open | shape | checksort
//!
//! Every phase also prints a MEM line (peak VmRSS sampled in-process, the stage it was in,
//! jemalloc opt.* in force, whether a jemalloc_bg_thd thread existed). Env knobs: see
//! fjall_open, redb_load, SORTED (feed each table's rows in row-key byte order).
//!
//! Rows are fed table by table, N increasing (keys not byte-sorted: decimal N). This is
//! a measuring tool: it panics on any engine error.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::Instant;

// ---------------------------------------------------------------- memory sampler
// A background thread samples VmRSS every SAMPLE_MS (default 20) ms and remembers the
// peak, the stage the main thread was in at the peak (set_stage) and, if an engine
// registered one, a probe string (e.g. fjall write buffer / journal / segment counts).
// At exit main prints a MEM line with that, the jemalloc opt.* values actually in force
// and whether a jemalloc_bg_thd thread exists (verifies _RJEM_MALLOC_CONF took effect).
mod mem {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    pub static STAGE: Mutex<&'static str> = Mutex::new("start");
    type Probe = Box<dyn Fn() -> String + Send + Sync>;
    pub static PROBE: Mutex<Option<Probe>> = Mutex::new(None);
    pub static PEAK: Mutex<(u64, String, String, f64)> =
        Mutex::new((0, String::new(), String::new(), 0.0));
    static BG_SEEN: AtomicBool = AtomicBool::new(false);
    static SAMPLES: AtomicU64 = AtomicU64::new(0);

    pub fn set_stage(s: &'static str) {
        sample(); // close the previous stage with a sample
        *STAGE.lock().unwrap() = s;
    }
    pub fn set_probe(f: Probe) {
        *PROBE.lock().unwrap() = Some(f);
    }
    pub fn clear_probe() {
        *PROBE.lock().unwrap() = None;
    }
    pub fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = s
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        pages * 4
    }
    fn bg_thread_exists() -> bool {
        if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
            for e in rd.flatten() {
                if let Ok(c) = std::fs::read_to_string(e.path().join("comm"))
                    && c.trim() == "jemalloc_bg_thd"
                {
                    return true;
                }
            }
        }
        false
    }
    static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    fn sample() {
        let r = rss_kib();
        SAMPLES.fetch_add(1, Relaxed);
        let mut p = PEAK.lock().unwrap();
        if r > p.0 {
            let probe = PROBE
                .lock()
                .unwrap()
                .as_ref()
                .map(|f| f())
                .unwrap_or_default();
            *p = (
                r,
                STAGE.lock().unwrap().to_string(),
                probe,
                T0.get().unwrap().elapsed().as_secs_f64(),
            );
        }
    }
    pub fn start() {
        T0.get_or_init(std::time::Instant::now);
        let ms: u64 = std::env::var("SAMPLE_MS")
            .ok()
            .map(|s| s.parse().unwrap())
            .unwrap_or(20);
        std::thread::Builder::new()
            .name("memsampler".into())
            .spawn(move || {
                loop {
                    sample();
                    if !BG_SEEN.load(Relaxed) && bg_thread_exists() {
                        BG_SEEN.store(true, Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            })
            .unwrap();
    }
    fn je_opt<T: Default + Copy>(name: &str) -> Option<T> {
        let c = std::ffi::CString::new(name).unwrap();
        let mut v: T = T::default();
        let mut len = std::mem::size_of::<T>();
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                c.as_ptr(),
                &mut v as *mut T as *mut _,
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0).then_some(v)
    }
    pub fn report() {
        sample();
        if bg_thread_exists() {
            BG_SEEN.store(true, Relaxed);
        }
        let p = PEAK.lock().unwrap();
        let je = format!(
            "je.background_thread={:?} je.narenas={:?} je.dirty_decay_ms={:?} je.muzzy_decay_ms={:?} je.tcache_max={:?} jemalloc_bg_thd_seen={}",
            je_opt::<bool>("opt.background_thread"),
            je_opt::<u32>("opt.narenas"),
            je_opt::<isize>("opt.dirty_decay_ms"),
            je_opt::<isize>("opt.muzzy_decay_ms"),
            je_opt::<usize>("opt.tcache_max"),
            BG_SEEN.load(Relaxed)
        );
        println!(
            "MEM peak_rss_MiB={:.1} at_t={:.2}s stage={} probe=[{}] end_rss_MiB={:.1} samples={} {je}",
            p.0 as f64 / 1024.0,
            p.3,
            p.1,
            p.2,
            rss_kib() as f64 / 1024.0,
            SAMPLES.load(Relaxed)
        );
    }
}
use mem::set_stage;

const TABLES: [&str; 4] = ["presentity", "active_watchers", "watchers", "xcap"];
const CACHE: usize = 16 << 20; // fjall block cache / redb cache
const SLED_CACHE: u64 = 8 << 20;

/// One logical SQL row as the keys it writes: (tree index, key, value).
struct Row {
    table: usize,
    entries: Vec<(usize, Vec<u8>, Vec<u8>)>,
}

fn put_str(v: &mut Vec<u8>, s: &[u8]) {
    // bincode 1.x style: u64 LE length prefix + bytes
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s);
}

fn expiry(expires: u64, row_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + row_key.len());
    k.push(b'x');
    k.extend_from_slice(&expires.to_be_bytes());
    k.extend_from_slice(row_key);
    k
}

fn key(tag: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = vec![tag];
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

const BASE_EXPIRES: u64 = 1_760_000_000;

fn presentity_row(n: u64, rows_only: bool) -> Row {
    let uri = format!("sip:u{n}@example.com");
    let etag = format!("e{n}");
    let rk = key(b'r', &["presence", &uri, &etag]);
    let expires = BASE_EXPIRES + (n * 7919) % 3600;
    let body = format!(
        "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{uri}\"><tuple id=\"t{n}\"><status><basic>open</basic></status><note>available</note></tuple></presence>"
    );
    let mut v = Vec::with_capacity(340);
    put_str(&mut v, b"example.com");
    put_str(&mut v, uri.as_bytes());
    put_str(&mut v, b"presence");
    put_str(&mut v, etag.as_bytes());
    v.extend_from_slice(&expires.to_le_bytes());
    v.extend_from_slice(&(expires - 3600).to_le_bytes()); // received_time
    put_str(&mut v, body.as_bytes());
    put_str(&mut v, format!("sip:u{n}@10.0.0.1:5060").as_bytes()); // sender
    v.extend_from_slice(&1u32.to_le_bytes()); // priority etc
    v.resize(330.max(v.len()), 0); // pad to ~330 B
    let mut entries = Vec::with_capacity(2);
    if !rows_only {
        entries.push((0, expiry(expires, &rk), Vec::new()));
    }
    entries.insert(0, (0, rk, v));
    Row { table: 0, entries }
}

fn dialog_row(n: u64, rows_only: bool) -> Row {
    let uri = format!("sip:u{n}@example.com");
    let watcher = format!("sip:w{n}@example.org");
    let call_id = format!("c{n}@10.0.0.2");
    let to_tag = format!("10t{n}");
    let from_tag = format!("f{n}");
    let rk = key(b'r', &[&uri, "presence", &call_id, &to_tag, &from_tag]);
    let expires = BASE_EXPIRES + (n * 7919) % 3600;
    let mut v = Vec::with_capacity(270);
    for s in [
        uri.as_str(),
        &watcher,
        "presence",
        "",
        &call_id,
        &to_tag,
        &from_tag,
        "sip:10.0.0.2:5060",
        "UDP",
        "sip:10.0.0.1:5060",
        "<sip:pa.example.com;lr>",
        "active",
        "",
    ] {
        put_str(&mut v, s.as_bytes());
    }
    v.extend_from_slice(&expires.to_le_bytes());
    v.extend_from_slice(&(n as u32).to_le_bytes()); // cseq
    v.extend_from_slice(&1u32.to_le_bytes()); // version
    v.resize(260.max(v.len()), 0);
    let mut entries = vec![(1, rk.clone(), v)];
    if !rows_only {
        entries.push((1, expiry(expires, &rk), Vec::new()));
        entries.push((1, key(b'd', &[&call_id, &to_tag, &from_tag]), rk.clone()));
        entries.push((
            1,
            key(
                b'w',
                &[&uri, "presence", &watcher, &call_id, &to_tag, &from_tag],
            ),
            rk,
        ));
    }
    Row { table: 1, entries }
}

fn watcher_row(n: u64) -> Row {
    let uri = format!("sip:u{n}@example.com");
    let watcher = format!("sip:w{n}@example.org");
    let rk = key(b'r', &[&uri, "presence", &watcher]);
    let mut v = Vec::with_capacity(40);
    put_str(&mut v, b"active");
    put_str(&mut v, b"");
    v.extend_from_slice(&(BASE_EXPIRES + n).to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v.resize(40.max(v.len()), 0);
    Row {
        table: 2,
        entries: vec![(2, rk, v)],
    }
}

/// Per-table row counts: one third each, remainder to the first tables.
fn counts(rows: u64) -> [u64; 3] {
    let b = rows / 3;
    let r = rows % 3;
    [b + (r > 0) as u64, b + (r > 1) as u64, b]
}

/// N in 0..c ordered by the byte order of the decimal string followed by '@' (which sorts
/// after the digits): this is the byte order of every table's row keys, whose first
/// varying part is "u{N}@". Post-order walk of the decimal trie, generated lazily (no
/// buffering), so input can be fed in each table's row-key order like presenced's dumps.
fn sorted_ns(c: u64) -> impl Iterator<Item = u64> {
    // stack of (prefix value, next child digit); children (p*10+d) sort before p itself
    let mut stack: Vec<(u64, u8)> = Vec::new();
    let mut top: u8 = 0; // next top-level first digit to visit (0..=9)
    std::iter::from_fn(move || {
        loop {
            if let Some(&mut (p, ref mut d)) = stack.last_mut() {
                if p != 0 && *d <= 9 {
                    let child = p * 10 + *d as u64;
                    *d += 1;
                    if child < c {
                        stack.push((child, 0));
                    }
                    continue;
                }
                stack.pop();
                return Some(p);
            }
            if top > 9 {
                return None;
            }
            let v = top as u64;
            top += 1;
            if v < c {
                stack.push((v, 0));
            }
        }
    })
}

fn sorted_input() -> bool {
    std::env::var("SORTED").map(|v| v == "1").unwrap_or(false)
}

/// The rows of loader thread `part` of `parts` in feed order, generated lazily.
/// Rows are assigned to threads by a hash of (table, N), decided before generation.
fn rows_iter_part(
    rows: u64,
    rows_only: bool,
    part: usize,
    parts: usize,
) -> impl Iterator<Item = Row> {
    let [a, b, c] = counts(rows);
    let mine = move |t: u64, n: u64| parts <= 1 || (row_hash(t, n) % parts as u64) as usize == part;
    let sorted = sorted_input();
    let ns = move |c: u64| -> Box<dyn Iterator<Item = u64>> {
        if sorted {
            Box::new(sorted_ns(c))
        } else {
            Box::new(0..c)
        }
    };
    ns(a)
        .filter(move |&n| mine(0, n))
        .map(move |n| presentity_row(n, rows_only))
        .chain(
            ns(b)
                .filter(move |&n| mine(1, n))
                .map(move |n| dialog_row(n, rows_only)),
        )
        .chain(ns(c).filter(move |&n| mine(2, n)).map(watcher_row))
}

fn rows_iter(rows: u64, rows_only: bool) -> impl Iterator<Item = Row> {
    rows_iter_part(rows, rows_only, 0, 1)
}

fn row_hash(t: u64, n: u64) -> u64 {
    // splitmix64 finaliser
    let mut z = (t << 56 ^ n).wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut s = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                s += dir_size(&e.path());
            } else {
                s += m.len();
            }
        }
    }
    s
}

fn first_key() -> Vec<u8> {
    presentity_row(0, true).entries.swap_remove(0).1
}

// ---------------------------------------------------------------- sled

fn sled_open(dir: &str) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE)
        .open()
        .unwrap()
}

fn sled_load(dir: &str, rows: u64, rows_only: bool, threads: usize) -> (u64, f64) {
    let db = sled_open(dir);
    let trees: Vec<sled::Tree> = TABLES.iter().map(|t| db.open_tree(t).unwrap()).collect();
    set_stage("insert");
    let t0 = Instant::now();
    let keys = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let trees = &trees;
            let keys = &keys;
            s.spawn(move || {
                let mut k = 0u64;
                for row in rows_iter_part(rows, rows_only, t, threads) {
                    for (tree, key, val) in row.entries {
                        trees[tree].insert(key, val).unwrap();
                        k += 1;
                    }
                }
                keys.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    let t_ins = t0.elapsed().as_secs_f64();
    set_stage("flush");
    db.flush().unwrap();
    let el = t0.elapsed().as_secs_f64();
    eprintln!("sled: inserts {t_ins:.2}s, +flush {el:.2}s");
    (keys.into_inner(), el)
}

fn sled_iter(dir: &str) -> (u64, u64) {
    let db = sled_open(dir);
    set_stage("scan");
    let mut n = 0;
    let mut bytes = 0;
    for t in &TABLES[..3] {
        let tree = db.open_tree(t).unwrap();
        for kv in tree.scan_prefix(b"r") {
            let (_, v) = kv.unwrap();
            n += 1;
            bytes += v.len() as u64;
        }
    }
    (n, bytes)
}

fn sled_open_one(dir: &str) -> usize {
    let db = sled_open(dir);
    let tree = db.open_tree(TABLES[0]).unwrap();
    tree.get(first_key()).unwrap().map(|v| v.len()).unwrap_or(0)
}

// ---------------------------------------------------------------- fjall

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| s.parse().unwrap())
}

/// Defaults: block cache 16 MiB, everything else fjall's default (write buffer 64 MiB,
/// memtable 16 MiB/partition, journal 512 MiB, lz4). Env overrides: FJALL_WB (keyspace
/// max_write_buffer_size), FJALL_MT (per-partition max_memtable_size).
fn fjall_open(dir: &str) -> (fjall::Keyspace, Vec<fjall::PartitionHandle>) {
    // more env knobs (all documented fjall 2.x API): FJALL_CACHE (block cache bytes),
    // FJALL_FLUSH_W / FJALL_COMPACT_W (worker counts), FJALL_JOURNAL (max_journaling_size),
    // FJALL_BLOCK (partition block_size), FJALL_L0 / FJALL_TARGET (Leveled l0_threshold /
    // target_size), FJALL_STCS=1 (SizeTiered default strategy)
    let mut cfg =
        fjall::Config::new(dir).cache_size(env_u64("FJALL_CACHE").unwrap_or(CACHE as u64));
    if let Some(wb) = env_u64("FJALL_WB") {
        cfg = cfg.max_write_buffer_size(wb);
    }
    if let Some(n) = env_u64("FJALL_FLUSH_W") {
        cfg = cfg.flush_workers(n as usize);
    }
    if let Some(n) = env_u64("FJALL_COMPACT_W") {
        cfg = cfg.compaction_workers(n as usize);
    }
    if let Some(n) = env_u64("FJALL_JOURNAL") {
        cfg = cfg.max_journaling_size(n);
    }
    let ks = cfg.open().unwrap();
    let parts = TABLES
        .iter()
        .map(|t| {
            let mut o = fjall::PartitionCreateOptions::default();
            if let Some(mt) = env_u64("FJALL_MT") {
                o = o.max_memtable_size(mt as u32);
            }
            if let Some(b) = env_u64("FJALL_BLOCK") {
                o = o.block_size(b as u32);
            }
            if std::env::var("FJALL_STCS").is_ok() {
                o = o.compaction_strategy(fjall::compaction::Strategy::SizeTiered(
                    Default::default(),
                ));
            } else if env_u64("FJALL_L0").is_some() || env_u64("FJALL_TARGET").is_some() {
                let mut l = fjall::compaction::Leveled::default();
                if let Some(v) = env_u64("FJALL_L0") {
                    l.l0_threshold = v as u8;
                }
                if let Some(v) = env_u64("FJALL_TARGET") {
                    l.target_size = v as u32;
                }
                o = o.compaction_strategy(fjall::compaction::Strategy::Leveled(l));
            }
            ks.open_partition(t, o).unwrap()
        })
        .collect();
    (ks, parts)
}

fn fjall_probe(ks: &fjall::Keyspace, parts: &[fjall::PartitionHandle]) {
    let (ks, parts) = (ks.clone(), parts.to_vec());
    mem::set_probe(Box::new(move || {
        format!(
            "wb_MiB={:.1} journals={} journal_MiB={:.1} active_compactions={} segments={:?}",
            ks.write_buffer_size() as f64 / 1048576.0,
            ks.journal_count(),
            ks.journal_disk_space() as f64 / 1048576.0,
            ks.active_compactions(),
            parts.iter().map(|p| p.segment_count()).collect::<Vec<_>>()
        )
    }));
}

fn fjall_load(dir: &str, rows: u64, batch_rows: usize, threads: usize) -> (u64, f64) {
    let (ks, parts) = fjall_open(dir);
    fjall_probe(&ks, &parts);
    set_stage("insert");
    let t0 = Instant::now();
    let keys = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ks, parts, keys) = (&ks, &parts, &keys);
            s.spawn(move || {
                let mut k = 0u64;
                let mut batch = ks.batch();
                let mut in_batch = 0;
                // FJALL_CHECK=1: look for a duplicate row key or dialog key first, as a
                // restore must (committed rows by a point read, the open batch's by a
                // set, since a batch is not readable before it commits).
                let check = std::env::var("FJALL_CHECK").is_ok();
                let mut in_flight: std::collections::HashSet<(usize, Vec<u8>)> = Default::default();
                for row in rows_iter_part(rows, false, t, threads) {
                    for (p, key, val) in row.entries {
                        if check && (key[0] == b'r' || key[0] == b'd') {
                            let dup = parts[p].contains_key(&key).unwrap()
                                || !in_flight.insert((p, key.clone()));
                            assert!(!dup, "generated rows have no duplicates");
                        }
                        batch.insert(&parts[p], key, val);
                        k += 1;
                    }
                    in_batch += 1;
                    if in_batch == batch_rows {
                        std::mem::replace(&mut batch, ks.batch()).commit().unwrap();
                        in_batch = 0;
                        in_flight.clear();
                    }
                }
                batch.commit().unwrap();
                keys.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    let t_ins = t0.elapsed().as_secs_f64();
    let rss_ins = mem::rss_kib();
    set_stage("persist");
    ks.persist(fjall::PersistMode::SyncAll).unwrap();
    set_stage("flush_end");
    if std::env::var("FJALL_FLUSH_END").is_ok() {
        // write memtables out to segments so a later open need not replay the journal
        for p in &parts {
            p.rotate_memtable_and_wait().unwrap();
        }
    }
    let el = t0.elapsed().as_secs_f64();
    set_stage("after_load");
    eprintln!(
        "fjall: inserts {t_ins:.2}s (rss then {:.1} MiB), +persist {el:.2}s (rss now {:.1} MiB); journals={} segments={:?}",
        rss_ins as f64 / 1024.0,
        mem::rss_kib() as f64 / 1024.0,
        ks.journal_count(),
        parts.iter().map(|p| p.segment_count()).collect::<Vec<_>>()
    );
    (keys.into_inner(), el)
}

fn fjall_iter(dir: &str) -> (u64, u64) {
    let (ks, parts) = fjall_open(dir);
    fjall_probe(&ks, &parts);
    eprintln!(
        "fjall: rss after open {:.1} MiB; segments={:?}",
        mem::rss_kib() as f64 / 1024.0,
        parts.iter().map(|p| p.segment_count()).collect::<Vec<_>>()
    );
    set_stage("scan");
    let mut n = 0;
    let mut bytes = 0;
    for p in &parts[..3] {
        for kv in p.prefix(b"r") {
            let (_, v) = kv.unwrap();
            n += 1;
            bytes += v.len() as u64;
        }
    }
    (n, bytes)
}

fn fjall_open_one(dir: &str) -> usize {
    let (_ks, parts) = fjall_open(dir);
    parts[0]
        .get(first_key())
        .unwrap()
        .map(|v| v.len())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- redb

use redb::{ReadableDatabase, TableDefinition};

fn tdef(i: usize) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(TABLES[i])
}

fn redb_cache() -> usize {
    std::env::var("REDB_CACHE")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(CACHE)
}

/// Env knobs: REDB_NONDUR=1 -> Durability::None for every commit but the last (which is
/// Immediate); IDX_SORT=1 -> index entries (keys not starting with 'r') are buffered and
/// inserted sorted by (table, key) every IDX_CHUNK rows (default 10000) and at each commit;
/// row entries are inserted immediately.
fn redb_load(dir: &str, rows: u64, txn_rows: usize, rows_only: bool) -> (u64, f64) {
    std::fs::create_dir_all(dir).unwrap();
    let db = redb::Builder::new()
        .set_cache_size(redb_cache())
        .create(format!("{dir}/db.redb"))
        .unwrap();
    let nondur = std::env::var("REDB_NONDUR")
        .map(|v| v == "1")
        .unwrap_or(false);
    let idx_sort = std::env::var("IDX_SORT").map(|v| v == "1").unwrap_or(false);
    let idx_chunk = env_u64("IDX_CHUNK").unwrap_or(10_000) as usize;
    set_stage("insert");
    let t0 = Instant::now();
    let mut k = 0u64;
    let mut done = 0u64;
    let mut it = rows_iter(rows, rows_only).peekable();
    let mut buf: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
    while it.peek().is_some() {
        let mut txn = db.begin_write().unwrap();
        let last = done + txn_rows as u64 >= rows;
        if nondur && !last {
            txn.set_durability(redb::Durability::None).unwrap();
        }
        {
            let mut tables: Vec<_> = (0..4).map(|i| txn.open_table(tdef(i)).unwrap()).collect();
            let flush = |buf: &mut Vec<(usize, Vec<u8>, Vec<u8>)>,
                         tables: &mut Vec<redb::Table<&[u8], &[u8]>>| {
                buf.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                for (t, key, val) in buf.drain(..) {
                    tables[t].insert(key.as_slice(), val.as_slice()).unwrap();
                }
            };
            let mut in_chunk = 0;
            for row in it.by_ref().take(txn_rows) {
                for (t, key, val) in row.entries {
                    if idx_sort && key[0] != b'r' {
                        buf.push((t, key, val));
                    } else {
                        tables[t].insert(key.as_slice(), val.as_slice()).unwrap();
                    }
                    k += 1;
                }
                done += 1;
                in_chunk += 1;
                if idx_sort && in_chunk == idx_chunk {
                    flush(&mut buf, &mut tables);
                    in_chunk = 0;
                }
            }
            flush(&mut buf, &mut tables);
        }
        txn.commit().unwrap();
    }
    let el = t0.elapsed().as_secs_f64();
    set_stage("after_load");
    (k, el)
}

fn redb_db(dir: &str) -> redb::Database {
    redb::Builder::new()
        .set_cache_size(redb_cache())
        .open(format!("{dir}/db.redb"))
        .unwrap()
}

fn redb_iter(dir: &str) -> (u64, u64) {
    let db = redb_db(dir);
    set_stage("scan");
    let txn = db.begin_read().unwrap();
    let mut n = 0;
    let mut bytes = 0;
    for i in 0..3 {
        let t = txn.open_table(tdef(i)).unwrap();
        for kv in t.range(&b"r"[..]..&b"s"[..]).unwrap() {
            let (_, v) = kv.unwrap();
            n += 1;
            bytes += v.value().len() as u64;
        }
    }
    (n, bytes)
}

fn redb_open_one(dir: &str) -> usize {
    let db = redb_db(dir);
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(tdef(0)).unwrap();
    let k = first_key();
    t.get(k.as_slice())
        .unwrap()
        .map(|v| v.value().len())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- main

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!(
            "usage: enginebench <sled|sled-rows|fjall|redb|redb-rows> <load|iter|open> <dir> <rows> [threads]"
        );
        std::process::exit(2);
    }
    let (engine, phase, dir) = (a[1].as_str(), a[2].as_str(), a[3].as_str());
    mem::start();
    let rows: u64 = a[4].parse().unwrap();
    let threads: usize = a
        .get(5)
        .map(|s| s.parse().unwrap())
        .unwrap_or(match engine {
            "sled" | "sled-rows" => 2,
            _ => 1,
        });
    let batch: usize = std::env::var("BATCH_ROWS")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(match engine {
            "redb" | "redb-rows" => 10_000,
            _ => 256,
        });
    match phase {
        "load" => {
            let _ = std::fs::remove_dir_all(dir);
            let (keys, el) = match engine {
                "sled" => sled_load(dir, rows, false, threads),
                "sled-rows" => sled_load(dir, rows, true, threads),
                "fjall" => fjall_load(dir, rows, batch, threads),
                "redb" => redb_load(dir, rows, batch, false),
                "redb-rows" => redb_load(dir, rows, batch, true),
                _ => panic!("engine"),
            };
            // dir size measured after the engine handle is dropped (process end is
            // measured again by run.sh with du)
            println!(
                "RESULT engine={engine} phase=load rows={rows} keys={keys} threads={threads} batch={batch} secs={el:.3} rows_per_s={:.0} disk_bytes_in_proc={}",
                rows as f64 / el,
                dir_size(std::path::Path::new(dir))
            );
        }
        "iter" => {
            let t0 = Instant::now();
            let (n, bytes) = match engine {
                "sled" | "sled-rows" => sled_iter(dir),
                "fjall" => fjall_iter(dir),
                "redb" | "redb-rows" => redb_iter(dir),
                _ => panic!("engine"),
            };
            let el = t0.elapsed().as_secs_f64();
            assert_eq!(n, rows, "row count mismatch");
            println!(
                "RESULT engine={engine} phase=iter rows={n} value_bytes={bytes} secs={el:.3} rows_per_s={:.0}",
                n as f64 / el
            );
        }
        "open" => {
            let t0 = Instant::now();
            let len = match engine {
                "sled" | "sled-rows" => sled_open_one(dir),
                "fjall" => fjall_open_one(dir),
                "redb" | "redb-rows" => redb_open_one(dir),
                _ => panic!("engine"),
            };
            assert!(len > 0, "first key not found");
            println!(
                "RESULT engine={engine} phase=open rows={rows} value_len={len} secs={:.3}",
                t0.elapsed().as_secs_f64()
            );
        }
        "shape" => {
            // print per-entry-kind key/value size stats and samples for the 1st row of each table
            let mut st: std::collections::BTreeMap<(usize, u8), (u64, u64, u64)> =
                Default::default();
            let mut shown = [false; 3];
            for row in rows_iter(rows, false) {
                for (t, k, v) in &row.entries {
                    let e = st.entry((*t, k[0])).or_default();
                    e.0 += 1;
                    e.1 += k.len() as u64;
                    e.2 += v.len() as u64;
                    if !shown[row.table] {
                        println!(
                            "sample t={} key={:?} vlen={}",
                            TABLES[*t],
                            String::from_utf8_lossy(k),
                            v.len()
                        );
                    }
                }
                shown[row.table] = true;
            }
            let mut total = 0;
            for ((t, tag), (c, kb, vb)) in st {
                total += c;
                println!(
                    "{} '{}' count={c} avg_key={:.1} avg_val={:.1}",
                    TABLES[t],
                    tag as char,
                    kb as f64 / c as f64,
                    vb as f64 / c as f64
                );
            }
            println!("total keys={total}");
        }
        "checksort" => {
            // verify SORTED=1 yields each table's row keys in strictly increasing byte order
            assert!(sorted_input(), "run with SORTED=1");
            let mut prev: [Option<Vec<u8>>; 3] = Default::default();
            let mut cnt = [0u64; 3];
            for row in rows_iter(rows, true) {
                let k = row.entries[0].1.clone();
                if let Some(p) = &prev[row.table] {
                    assert!(
                        p < &k,
                        "not sorted: {:?} !< {:?}",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(&k)
                    );
                }
                prev[row.table] = Some(k);
                cnt[row.table] += 1;
            }
            assert_eq!(cnt, counts(rows));
            println!("sorted ok: {cnt:?}");
        }
        _ => panic!("phase"),
    }
    mem::clear_probe();
    mem::report();
}
