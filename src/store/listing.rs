//! Read-only listings for management (`presenced ctl status`, `presentity list|show`,
//! `watcher list`): what is stored, per event and per presentity. They run on the
//! control socket's thread, never on the core loop, and read row keys where the keys
//! say enough, so counting a million rows decodes none of them.

use std::collections::BTreeMap;

use super::keys::{self, ROW};
use super::records::{Publication, SubscriptionRow};
use super::{Store, StoreError};

/// Rows of one event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EventRows {
    pub publications: u64,
    pub subscriptions: u64,
}

/// The `n`th 0x00-separated part of a row key (tag byte skipped).
fn key_part(key: &[u8], n: usize) -> Option<&[u8]> {
    key.get(1..)?.split(|b| *b == 0).nth(n)
}

impl Store {
    /// Publications and subscription dialogs per event, from the row keys alone.
    pub fn rows_per_event(&self) -> Result<BTreeMap<String, EventRows>, StoreError> {
        let mut out: BTreeMap<String, EventRows> = BTreeMap::new();
        let mut count = |key: &[u8], part: usize, publication: bool| {
            let event = key_part(key, part).unwrap_or_default();
            let event = String::from_utf8_lossy(event);
            let rows = match out.get_mut(event.as_ref()) {
                Some(rows) => rows,
                None => out.entry(event.into_owned()).or_default(),
            };
            match publication {
                true => rows.publications += 1,
                false => rows.subscriptions += 1,
            }
        };
        // Publication rows: r | event | presentity | etag.
        for key in self.inner.publications.keys(vec![ROW]) {
            count(&key?, 0, true);
        }
        // Dialog rows: r | presentity | event | call-id | to-tag | from-tag.
        for key in self.inner.subscriptions.keys(vec![ROW]) {
            count(&key?, 1, false);
        }
        Ok(out)
    }

    /// Every publication of `uri`, whatever its event (row keys are read to find them).
    pub fn publications_of_presentity(&self, uri: &str) -> Result<Vec<Publication>, StoreError> {
        let mut out = Vec::new();
        for key in self.inner.publications.keys(vec![ROW]) {
            let key = key?;
            if key_part(&key, 1) == Some(uri.as_bytes())
                && let Some(p) = self.inner.publications.get::<Publication>(&key)?
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Every dialog watching `uri`, whatever its event.
    pub fn subscriptions_of_presentity(
        &self,
        uri: &str,
    ) -> Result<Vec<SubscriptionRow>, StoreError> {
        let prefix = keys::prefix(ROW, &[("presentity_uri", uri)])?;
        self.inner.subscriptions.collect(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::store::records::tests::{dialog, presentity};

    #[test]
    fn counts_per_event_and_lookups_by_presentity_ignore_look_alike_uris() {
        let store = Store::open_temporary(StoreOptions::default()).unwrap();
        for (uri, event, etag) in [
            ("sip:a@b", "presence", "e1"),
            ("sip:a@b", "presence", "e2"),
            ("sip:a@bc", "presence", "e3"),
            ("sip:a@b", "dialog", "e4"),
        ] {
            store
                .put_publication(&presentity(uri, event, etag, 100))
                .unwrap();
        }
        for (uri, event, call) in [("sip:a@b", "presence", "c1"), ("sip:a@bc", "dialog", "c2")] {
            store
                .put_subscription(&dialog(uri, event, call, 100))
                .unwrap();
        }
        let per = store.rows_per_event().unwrap();
        assert_eq!(
            per["presence"],
            EventRows {
                publications: 3,
                subscriptions: 1
            }
        );
        assert_eq!(
            per["dialog"],
            EventRows {
                publications: 1,
                subscriptions: 1
            }
        );
        let mut etags: Vec<String> = store
            .publications_of_presentity("sip:a@b")
            .unwrap()
            .into_iter()
            .map(|p| p.etag)
            .collect();
        etags.sort();
        assert_eq!(etags, ["e1", "e2", "e4"]);
        let calls: Vec<String> = store
            .subscriptions_of_presentity("sip:a@b")
            .unwrap()
            .into_iter()
            .map(|d| d.call_id)
            .collect();
        assert_eq!(calls, ["c1"]);
    }
}
