//! Fuzzes `presenced restore` on a fresh in-memory store with arbitrary dump text. A
//! dump it rejects must leave the database empty (all or nothing); a dump it accepts
//! must round-trip: its dump, in the dialect the first byte picks, restores into another
//! fresh store whose dump is byte-identical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::dump::{Dialect, DumpOptions, RestoreOptions, restore, write_dump};
use presenced::store::{Store, StoreOptions};

const NOW: u64 = 1_700_000_000;

fn fresh() -> Store {
    Store::open_temporary(StoreOptions {
        cache_capacity: 1 << 20,
        sync_always: false,
    })
    .expect("temporary store")
}

fn dump(store: &Store, dialect: Dialect) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = DumpOptions {
        dialect,
        ..DumpOptions::default()
    };
    write_dump(store, &mut out, &opts, &mut || Ok(())).expect("dump of a restored store");
    out
}

fuzz_target!(|data: &[u8]| {
    let pick = data.first().copied().unwrap_or(0);
    let opts = RestoreOptions {
        keep_expired: pick & 0x80 != 0,
        ..RestoreOptions::default()
    };
    let store = fresh();
    if restore::restore(&store, data, &opts, NOW).is_err() {
        let counts = store.counts().expect("counts");
        assert_eq!(counts.total(), 0, "a rejected dump left rows behind");
        return;
    }
    let dialect = [Dialect::Mysql, Dialect::Postgres, Dialect::Sqlite][usize::from(pick % 3)];
    let first = dump(&store, dialect);
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
    assert_eq!(
        dump(&again, dialect),
        first,
        "dump → restore → dump changed bytes"
    );
});
