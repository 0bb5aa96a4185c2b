//! Accounts for digest authentication (`presenced user add|del|list|passwd`): the one
//! place that applies a change to the `subscriber` table, used by the control socket
//! while the daemon runs and by the command line on a stopped database. Only HA1s travel
//! and are stored; the password stays in the command-line process.

use serde::{Deserialize, Serialize};

use crate::store::{Store, Subscriber};

/// A change to the accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UserChange {
    /// A new account; refused if it exists.
    Add {
        account: Subscriber,
    },
    /// A new password for an existing account; refused if it does not exist.
    Passwd {
        account: Subscriber,
    },
    Del {
        username: String,
        domain: String,
    },
}

/// Splits `alice@example.com` (or `sip:alice@example.com`) into a checked username and
/// a lower-case domain.
pub fn parse_account(s: &str) -> Result<(String, String), String> {
    let bare = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("sips:"))
        .unwrap_or(s);
    let (user, domain) = bare
        .rsplit_once('@')
        .ok_or_else(|| format!("{s:?}: expected user@domain"))?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || ":@;?<>\"\\".contains(c);
    if user.is_empty() || user.chars().any(bad) {
        return Err(format!("{user:?} is not a usable username"));
    }
    if domain.is_empty() || domain.chars().any(|c| bad(c) || c == '/') {
        return Err(format!("{domain:?} is not a domain"));
    }
    Ok((user.to_owned(), domain.to_ascii_lowercase()))
}

/// Applies `change` and flushes it; the message is for the user.
pub fn apply(store: &Store, change: &UserChange) -> Result<String, String> {
    let err = |e: crate::store::StoreError| format!("database: {e}");
    let exists = |u: &str, d: &str| store.get_subscriber(u, d).map(|a| a.is_some());
    let done = match change {
        UserChange::Add { account } => {
            if exists(&account.username, &account.domain).map_err(err)? {
                return Err(format!(
                    "{}@{} exists; change its password with `presenced user passwd`",
                    account.username, account.domain
                ));
            }
            store.put_subscriber(account).map_err(err)?;
            format!("added {}@{}", account.username, account.domain)
        }
        UserChange::Passwd { account } => {
            if !exists(&account.username, &account.domain).map_err(err)? {
                return Err(format!(
                    "{}@{} does not exist; add it with `presenced user add`",
                    account.username, account.domain
                ));
            }
            store.put_subscriber(account).map_err(err)?;
            format!(
                "changed the password of {}@{}",
                account.username, account.domain
            )
        }
        UserChange::Del { username, domain } => {
            match store.delete_subscriber(username, domain).map_err(err)? {
                Some(_) => format!("deleted {username}@{domain}"),
                None => return Err(format!("{username}@{domain} does not exist")),
            }
        }
    };
    store.flush().map_err(err)?;
    Ok(done)
}

/// Every account as `user@domain`, in key order.
pub fn list(store: &Store) -> Result<Vec<String>, String> {
    store
        .iter_subscribers()
        .map(|r| {
            r.map(|a| format!("{}@{}", a.username, a.domain))
                .map_err(|e| format!("database: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn add_passwd_del_follow_existence() {
        let s = Store::open_temporary(StoreOptions::default()).unwrap();
        let a = Subscriber::with_password("alice", "example.com", "one");
        assert!(apply(&s, &UserChange::Passwd { account: a.clone() }).is_err());
        apply(&s, &UserChange::Add { account: a.clone() }).unwrap();
        assert!(apply(&s, &UserChange::Add { account: a.clone() }).is_err());
        let b = Subscriber::with_password("alice", "example.com", "two");
        apply(&s, &UserChange::Passwd { account: b.clone() }).unwrap();
        assert_eq!(s.get_subscriber("alice", "example.com").unwrap(), Some(b));
        assert_eq!(list(&s).unwrap(), vec!["alice@example.com".to_owned()]);
        let del = UserChange::Del {
            username: "alice".into(),
            domain: "example.com".into(),
        };
        apply(&s, &del).unwrap();
        assert!(apply(&s, &del).is_err());
    }

    #[test]
    fn accounts_parse_with_or_without_scheme() {
        assert_eq!(
            parse_account("sip:alice@Example.COM").unwrap(),
            ("alice".into(), "example.com".into())
        );
        assert!(parse_account("alice").is_err());
        assert!(parse_account("al ice@example.com").is_err());
        assert!(parse_account("@example.com").is_err());
    }
}
