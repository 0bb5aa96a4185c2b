//! The `xcap` table: XCAP documents (pres-rules, resource lists, …) by user, domain,
//! document type and URI, as OpenSIPS's `xcap` table holds them. Minimal on purpose:
//! no expiry and no secondary index, so it is a plain tree of rows written with single
//! inserts (atomic per row in sled).

use serde::{Deserialize, Serialize};

use super::keys::{self, ROW};
use super::records;
use super::{Store, StoreError};

/// The sled tree holding xcap rows.
const TREE: &str = "xcap";

/// OpenSIPS `doc_type` values.
pub mod doc_type {
    pub const PRES_RULES: u8 = 1;
    pub const RESOURCE_LISTS: u8 = 2;
    pub const RLS_SERVICES: u8 = 3;
    pub const PIDF_MANIPULATION: u8 = 4;
}

/// One XCAP document: a row of the `xcap` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xcap {
    pub username: String,
    pub domain: String,
    /// See [`doc_type`].
    pub doc_type: u8,
    pub doc_uri: String,
    pub doc: Vec<u8>,
    pub etag: String,
    /// OpenSIPS `source`: who put the document there (integrated server, fetched, …).
    pub source: u8,
    pub port: u32,
}

fn xcap_key(
    username: &str,
    domain: &str,
    doc_type: u8,
    doc_uri: &str,
) -> Result<Vec<u8>, StoreError> {
    // doc_type is one digit in practice; as text it still sorts and never holds a NUL.
    let t = doc_type.to_string();
    keys::key(
        ROW,
        &[
            ("username", username),
            ("domain", domain),
            ("doc_type", &t),
            ("doc_uri", doc_uri),
        ],
    )
}

impl Store {
    pub(super) fn xcap_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.inner.db.open_tree(TREE)?)
    }

    /// Inserts or replaces the document (username, domain, doc_type, doc_uri).
    pub fn put_xcap(&self, doc: &Xcap) -> Result<(), StoreError> {
        let key = xcap_key(&doc.username, &doc.domain, doc.doc_type, &doc.doc_uri)?;
        let value = records::encode(doc).map_err(StoreError::Encode)?;
        self.xcap_tree()?.insert(key, value)?;
        self.written()
    }

    pub fn get_xcap(
        &self,
        username: &str,
        domain: &str,
        doc_type: u8,
        doc_uri: &str,
    ) -> Result<Option<Xcap>, StoreError> {
        let key = xcap_key(username, domain, doc_type, doc_uri)?;
        decode_opt(&key, self.xcap_tree()?.get(&key)?)
    }

    pub fn delete_xcap(
        &self,
        username: &str,
        domain: &str,
        doc_type: u8,
        doc_uri: &str,
    ) -> Result<Option<Xcap>, StoreError> {
        let key = xcap_key(username, domain, doc_type, doc_uri)?;
        let old = self.xcap_tree()?.remove(&key)?;
        self.written()?;
        Ok(decode_opt(&key, old).ok().flatten())
    }

    /// Every document of one user, in (doc_type, doc_uri) order.
    pub fn list_xcap(&self, username: &str, domain: &str) -> Result<Vec<Xcap>, StoreError> {
        let prefix = keys::prefix(ROW, &[("username", username), ("domain", domain)])?;
        self.xcap_tree()?
            .scan_prefix(prefix)
            .map(|entry| {
                let (k, v) = entry?;
                decode(&k, &v)
            })
            .collect()
    }

    pub fn xcap_count(&self) -> Result<u64, StoreError> {
        Ok(self.xcap_tree()?.len() as u64)
    }

    /// Every document, streamed in key order; unreadable rows come out as errors.
    pub fn iter_xcap(&self) -> impl Iterator<Item = Result<Xcap, StoreError>> + use<> {
        let tree = self.xcap_tree();
        let (rows, err) = match tree {
            Ok(t) => (Some(t.scan_prefix([ROW])), None),
            Err(e) => (None, Some(Err(e))),
        };
        err.into_iter()
            .chain(rows.into_iter().flatten().map(|entry| {
                let (k, v) = entry?;
                decode(&k, &v)
            }))
    }
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Xcap, StoreError> {
    records::decode(bytes).map_err(|why| StoreError::Corrupt {
        tree: TREE,
        key: key.to_vec(),
        why,
    })
}

fn decode_opt(key: &[u8], bytes: Option<sled::IVec>) -> Result<Option<Xcap>, StoreError> {
    bytes.map(|b| decode(key, &b)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn doc(user: &str, t: u8, uri: &str) -> Xcap {
        Xcap {
            username: user.into(),
            domain: "example.com".into(),
            doc_type: t,
            doc_uri: uri.into(),
            doc: b"<ruleset/>".to_vec(),
            etag: "e1".into(),
            source: 1,
            port: 80,
        }
    }

    #[test]
    fn xcap_documents_are_kept_per_user_type_and_uri() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.put_xcap(&doc("alice", doc_type::PRES_RULES, "/pres-rules/index"))
            .unwrap();
        s.put_xcap(&doc("alice", doc_type::RESOURCE_LISTS, "/rl/index"))
            .unwrap();
        s.put_xcap(&doc("alicia", doc_type::PRES_RULES, "/pres-rules/index"))
            .unwrap();
        assert_eq!(s.list_xcap("alice", "example.com").unwrap().len(), 2);
        assert_eq!(s.xcap_count().unwrap(), 3);
        let got = s
            .get_xcap("alice", "example.com", 1, "/pres-rules/index")
            .unwrap();
        assert_eq!(got, Some(doc("alice", 1, "/pres-rules/index")));
        assert!(
            s.delete_xcap("alice", "example.com", 1, "/pres-rules/index")
                .unwrap()
                .is_some()
        );
        assert_eq!(s.iter_xcap().count(), 2);
    }
}
