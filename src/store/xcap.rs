//! The `xcap` table: XCAP documents (pres-rules, resource-lists, rls-services,
//! pidf-manipulation) keyed as OpenSIPS keys them, so the built-in XCAP server, the
//! fetcher and the policy engine share one place and dumps carry the same columns.

use super::keys::{self, ROW};
use super::table::Record;
use super::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// OpenSIPS `doc_type` integers.
pub mod doc_type {
    pub const PRES_RULES: u8 = 1;
    pub const RESOURCE_LISTS: u8 = 2;
    pub const RLS_SERVICES: u8 = 3;
    pub const PIDF_MANIPULATION: u8 = 4;
    /// MESSAGE authorization rules (SER's im-rules); presenced's own, a value
    /// OpenSIPS's usages leave free.
    pub const IM_RULES: u8 = 10;
}

/// OpenSIPS `source` integers: where a document came from.
pub mod source {
    /// Written through the built-in XCAP server (or an integrated one sharing the table).
    pub const INTEGRATED: u8 = 0;
    /// Fetched from an external XCAP server by the built-in fetcher.
    pub const FETCHED: u8 = 1;
}

/// One XCAP document: a row of the `xcap` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xcap {
    pub username: String,
    pub domain: String,
    /// See [`doc_type`].
    pub doc_type: u8,
    /// Where the document lives: the XCAP URI (or path) it is served or fetched under.
    pub doc_uri: String,
    /// One byte string, as for a presentity body (same encoding as a `Vec<u8>`).
    #[serde(with = "serde_bytes")]
    pub doc: Vec<u8>,
    pub etag: String,
    /// See [`source`].
    pub source: u8,
    /// The port of the XCAP server `doc_uri` names (0 when built in).
    pub port: u32,
}

fn xcap_key(
    username: &str,
    domain: &str,
    doc_type: u8,
    doc_uri: &str,
) -> Result<Vec<u8>, StoreError> {
    keys::key(
        ROW,
        &[
            ("username", username),
            ("domain", domain),
            ("doc_type", &doc_type.to_string()),
            ("doc_uri", doc_uri),
        ],
    )
}

impl Record for Xcap {
    fn row_key(&self) -> Result<Vec<u8>, StoreError> {
        xcap_key(&self.username, &self.domain, self.doc_type, &self.doc_uri)
    }
}

impl Store {
    /// The xcap tree, for bulk loading.
    pub(super) fn xcap_tree(&self) -> Result<sled::Tree, StoreError> {
        // Whoever asks writes past the table (a bulk load, a clear).
        self.xcap_written();
        self.inner.xcap.tree()
    }

    /// Inserts or replaces one document.
    pub fn put_xcap(&self, x: &Xcap) -> Result<(), StoreError> {
        self.may_write()?;
        let put = self.inner.xcap.put(x);
        self.xcap_written();
        put?;
        self.written()
    }

    pub fn get_xcap(
        &self,
        username: &str,
        domain: &str,
        doc_type: u8,
        doc_uri: &str,
    ) -> Result<Option<Xcap>, StoreError> {
        self.inner
            .xcap
            .get(&xcap_key(username, domain, doc_type, doc_uri)?)
    }

    pub fn delete_xcap(
        &self,
        username: &str,
        domain: &str,
        doc_type: u8,
        doc_uri: &str,
    ) -> Result<Option<Xcap>, StoreError> {
        self.may_write()?;
        let old = self
            .inner
            .xcap
            .delete(&xcap_key(username, domain, doc_type, doc_uri)?);
        self.xcap_written();
        let old = old?;
        self.written()?;
        Ok(old)
    }

    /// Every document of one user, of one type if `doc_type` is given, in key order.
    pub fn xcap_for_user(
        &self,
        username: &str,
        domain: &str,
        doc_type: Option<u8>,
    ) -> Result<Vec<Xcap>, StoreError> {
        let ty = doc_type.map(|t| t.to_string());
        let mut parts = vec![("username", username), ("domain", domain)];
        if let Some(ty) = &ty {
            parts.push(("doc_type", ty));
        }
        let prefix = keys::prefix(ROW, &parts)?;
        self.inner.xcap.collect(prefix)
    }

    pub fn xcap_count(&self) -> u64 {
        self.inner.xcap.len()
    }

    /// Every document, streamed in key order (dumps, the fetcher's periodic query).
    pub fn iter_xcap(&self) -> impl Iterator<Item = Result<Xcap, StoreError>> + use<> {
        self.inner.xcap.scan(vec![ROW])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn doc(user: &str, ty: u8, uri: &str) -> Xcap {
        Xcap {
            username: user.into(),
            domain: "example.com".into(),
            doc_type: ty,
            doc_uri: uri.into(),
            doc: b"<ruleset/>".to_vec(),
            etag: "e1".into(),
            source: source::INTEGRATED,
            port: 0,
        }
    }

    #[test]
    fn documents_round_trip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let d = doc("alice", doc_type::PRES_RULES, "/pres-rules/index");
        store.put_xcap(&d).unwrap();
        assert_eq!(
            store
                .get_xcap("alice", "example.com", 1, "/pres-rules/index")
                .unwrap(),
            Some(d.clone())
        );
        assert_eq!(store.xcap_count(), 1);
        assert_eq!(
            store
                .delete_xcap("alice", "example.com", 1, "/pres-rules/index")
                .unwrap(),
            Some(d)
        );
        assert_eq!(store.xcap_count(), 0);
    }

    #[test]
    fn listing_by_user_keeps_users_and_types_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.put_xcap(&doc("al", 1, "a")).unwrap();
        store.put_xcap(&doc("alice", 1, "b")).unwrap();
        store.put_xcap(&doc("alice", 4, "c")).unwrap();
        let all: Vec<_> = store
            .xcap_for_user("alice", "example.com", None)
            .unwrap()
            .into_iter()
            .map(|x| x.doc_uri)
            .collect();
        assert_eq!(all, ["b", "c"]);
        let rules = store
            .xcap_for_user("alice", "example.com", Some(1))
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(store.iter_xcap().count(), 3);
    }

    #[test]
    fn documents_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let d = doc("alice", 4, "/pidf-manipulation/index");
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            store.put_xcap(&d).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            store.iter_xcap().collect::<Result<Vec<_>, _>>().unwrap(),
            vec![d]
        );
    }
}
