//! The `subscriber` table: who may authenticate, as OpenSIPS's auth_db keeps it — a
//! username and domain with the digest HA1 for each algorithm, never the password.
//! The digest realm is the domain, so HA1 = H(username:domain:password).

use super::keys::{self, ROW};
use super::table::Record;
use super::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// One account: a row of the `subscriber` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub username: String,
    pub domain: String,
    /// MD5 HA1, lower-case hex (OpenSIPS `ha1`).
    pub ha1: String,
    /// SHA-256 HA1 (OpenSIPS `ha1_sha256`).
    pub ha1_sha256: String,
    /// SHA-512/256 HA1 (OpenSIPS `ha1_sha512t256`).
    pub ha1_sha512t256: String,
}

impl Subscriber {
    /// An account whose HA1s are computed from `password` (dropped right after).
    pub fn with_password(username: &str, domain: &str, password: &str) -> Subscriber {
        use crate::auth::digest::{Algorithm, ha1};
        Subscriber {
            username: username.to_owned(),
            domain: domain.to_owned(),
            ha1: ha1(Algorithm::Md5, username, domain, password),
            ha1_sha256: ha1(Algorithm::Sha256, username, domain, password),
            ha1_sha512t256: ha1(Algorithm::Sha512_256, username, domain, password),
        }
    }

    /// The AOR this account authenticates as.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.username, self.domain)
    }
}

fn subscriber_key(username: &str, domain: &str) -> Result<Vec<u8>, StoreError> {
    keys::key(ROW, &[("username", username), ("domain", domain)])
}

impl Record for Subscriber {
    fn row_key(&self) -> Result<Vec<u8>, StoreError> {
        subscriber_key(&self.username, &self.domain)
    }
}

impl Store {
    /// The subscriber tree, for bulk loading.
    pub(super) fn subscriber_tree(&self) -> Result<sled::Tree, StoreError> {
        self.inner.subscribers.tree()
    }

    /// Inserts or replaces one account.
    pub fn put_subscriber(&self, s: &Subscriber) -> Result<(), StoreError> {
        self.may_write()?;
        self.inner.subscribers.put(s)?;
        self.written()
    }

    /// The account `username@domain`; domains compare case-insensitively (they are
    /// stored lower-case), usernames exactly.
    pub fn get_subscriber(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        let domain = domain.to_ascii_lowercase();
        self.inner
            .subscribers
            .get(&subscriber_key(username, &domain)?)
    }

    pub fn delete_subscriber(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<Subscriber>, StoreError> {
        self.may_write()?;
        let domain = domain.to_ascii_lowercase();
        let old = self
            .inner
            .subscribers
            .delete(&subscriber_key(username, &domain)?)?;
        self.written()?;
        Ok(old)
    }

    /// The key of the server's digest nonces: made once from the system's random
    /// source, kept with the database so that a restart keeps nonces recognisable.
    pub fn auth_secret(&self) -> Result<[u8; 32], StoreError> {
        const KEY: &[u8] = b"auth_secret";
        let db = &self.inner.db();
        if let Some(v) = db.get(KEY)?
            && let Ok(secret) = <[u8; 32]>::try_from(v.as_ref())
        {
            return Ok(secret);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e.to_string()))))?;
        db.insert(KEY, &secret[..])?;
        db.flush()?;
        Ok(secret)
    }

    pub fn subscribers_count(&self) -> u64 {
        self.inner.subscribers.len()
    }

    /// Every account, streamed in key order.
    pub fn iter_subscribers(&self) -> impl Iterator<Item = Result<Subscriber, StoreError>> + use<> {
        self.inner.subscribers.scan(vec![ROW])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn accounts_round_trip_and_domains_ignore_case() {
        let s = Store::open_temporary(StoreOptions::default()).unwrap();
        let a = Subscriber::with_password("alice", "example.com", "secret");
        s.put_subscriber(&a).unwrap();
        assert_eq!(
            s.get_subscriber("alice", "EXAMPLE.com").unwrap(),
            Some(a.clone())
        );
        assert_eq!(s.get_subscriber("Alice", "example.com").unwrap(), None);
        assert_eq!(s.subscribers_count(), 1);
        assert_eq!(
            s.iter_subscribers().collect::<Result<Vec<_>, _>>().unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            s.delete_subscriber("alice", "example.com").unwrap(),
            Some(a)
        );
        assert_eq!(s.subscribers_count(), 0);
        // RFC 7616 §3.9.1's HA1 for MD5 would be H(Mufasa:http-auth@example.org:Circle of Life).
        let m = Subscriber::with_password("Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(m.ha1.len(), 32);
        assert_eq!(m.ha1_sha256.len(), 64);
    }
}
