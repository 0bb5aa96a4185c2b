//! Fuzzes `presenced restore` with arbitrary dump text, into an empty in-memory store
//! (the bulk path) or one that already holds rows (the staging and merge path). A dump
//! it rejects must leave the database exactly as it was (all or nothing). After a dump
//! it accepts, the database's dump must round-trip: restored into a fresh store, it dumps
//! to the same bytes.
//!
//! Input: one option byte (bit 0x80 keeps expired rows, bit 0x40 restores on top of a
//! few rows already there, the rest picks the round trip's dialect), then the dump.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::dump::{Dialect, DumpError, DumpOptions, RestoreOptions, restore, write_dump};
use presenced::store::{Store, StoreOptions};

const NOW: u64 = 1_700_000_000;

/// What is there before a merge: a publication, a subscription and its watchers row.
const EXISTING: &str = "INSERT INTO presentity (username,domain,event,etag,expires,received_time,body) \
    VALUES ('alice','example.com','presence','e0',2000000000,1700000000,'<presence/>');\n\
    INSERT INTO active_watchers (presentity_uri,watcher_username,watcher_domain,event,to_tag,from_tag,\
    callid,local_cseq,remote_cseq,contact,expires,status,version) VALUES ('sip:alice@example.com',\
    'bob','example.com','presence','t0','f0','c0',1,1,'sip:bob@10.0.0.2',2000000000,1,0);\n\
    INSERT INTO watchers (presentity_uri,watcher_username,watcher_domain,event,status,inserted_time) \
    VALUES ('sip:alice@example.com','bob','example.com','presence',1,1700000000);\n";

fn fresh() -> Store {
    Store::open_temporary(StoreOptions {
        cache_capacity: 1 << 20,
        sync_always: false,
    })
    .expect("temporary store")
}

/// The store's content as a dump; `None` when the dialect cannot carry some value
/// (PostgreSQL text cannot hold a NUL byte), which is a refusal, not a bug.
fn dump(store: &Store, dialect: Dialect) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let opts = DumpOptions {
        dialect,
        ..DumpOptions::default()
    };
    match write_dump(store, &mut out, &opts, &mut || Ok(())) {
        Ok(_) => Some(out),
        Err(DumpError::Unrepresentable { .. }) => None,
        Err(e) => panic!("dump of a restored store failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let opts = RestoreOptions {
        keep_expired: pick & 0x80 != 0,
        ..RestoreOptions::default()
    };
    let store = fresh();
    if pick & 0x40 != 0 {
        restore::restore(&store, EXISTING.as_bytes(), &RestoreOptions::default(), NOW)
            .expect("the preloaded rows restore");
    }
    // MySQL's dialect carries every value, so its dump is the database's content.
    let before = dump(&store, Dialect::Mysql).expect("MySQL dumps every value");
    if restore::restore(&store, input, &opts, NOW).is_err() {
        let after = dump(&store, Dialect::Mysql).expect("MySQL dumps every value");
        assert!(after == before, "a rejected dump changed the database");
        return;
    }
    let dialect = [Dialect::Mysql, Dialect::Postgres, Dialect::Sqlite][usize::from(pick % 3)];
    let Some(first) = dump(&store, dialect) else {
        return;
    };
    let again = fresh();
    let keep = RestoreOptions {
        keep_expired: true,
        ..RestoreOptions::default()
    };
    if let Err(e) = restore::restore(&again, &first[..], &keep, NOW) {
        panic!(
            "our own {} dump does not restore: {e}\n{}",
            dialect.name(),
            String::from_utf8_lossy(&first)
        );
    }
    assert!(
        dump(&again, dialect).as_deref() == Some(&first[..]),
        "dump → restore → dump changed bytes"
    );
});
