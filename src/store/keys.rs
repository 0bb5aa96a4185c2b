//! Byte layout of keys inside a table's tree, built so every query the engine makes is a
//! prefix or range scan: a tag byte says what the entry is (row, expiry entry, dialog
//! index entry), string parts are separated by 0x00, integers are big-endian.

use super::StoreError;

/// A table row: `r | part 0x00 part 0x00 part`.
pub const ROW: u8 = b'r';
/// An expiry index entry: `x | expires (u64 BE) | row key` → empty value.
pub const EXPIRY: u8 = b'x';
/// A dialog index entry: `d | call-id 0x00 to-tag 0x00 from-tag` → row key.
pub const DIALOG: u8 = b'd';
/// A by-watcher index entry: `w | presentity 0x00 event 0x00 watcher 0x00 call-id 0x00
/// to-tag 0x00 from-tag` → row key, so one watcher's dialogs are a prefix scan.
pub const BY_WATCHER: u8 = b'w';

/// A by-identity index entry: `v | watcher 0x00 presentity 0x00 event 0x00 call-id 0x00
/// to-tag 0x00 from-tag` → row key, so every dialog of one watcher, whatever it watches,
/// is a prefix scan (the per-watcher subscription cap counts them).
pub const BY_IDENTITY: u8 = b'v';

const SEP: u8 = 0;

/// A named key part; the name appears in the error when the value is unusable.
pub type Part<'a> = (&'static str, &'a str);

/// A full key: the parts joined by the separator, no trailing separator.
pub fn key(tag: u8, parts: &[Part<'_>]) -> Result<Vec<u8>, StoreError> {
    let mut out = prefix(tag, parts)?;
    out.pop_if(|b| *b == SEP);
    Ok(out)
}

/// The prefix of every key that starts with these parts. The trailing separator is what
/// keeps `sip:a@b` from matching `sip:a@bc`.
pub fn prefix(tag: u8, parts: &[Part<'_>]) -> Result<Vec<u8>, StoreError> {
    let len = 1 + parts.iter().map(|(_, p)| p.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(tag);
    for (field, part) in parts {
        // A NUL inside a part would make two different tuples share a key.
        if part.as_bytes().contains(&SEP) {
            return Err(StoreError::InvalidKey { field });
        }
        out.extend_from_slice(part.as_bytes());
        out.push(SEP);
    }
    Ok(out)
}

/// The expiry index entry for a row that expires at `expires`.
pub fn expiry(expires: u64, row_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + row_key.len());
    out.push(EXPIRY);
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(row_key);
    out
}

/// Splits an expiry index entry into (expires, row key); `None` if it is not one.
pub fn parse_expiry(entry: &[u8]) -> Option<(u64, &[u8])> {
    let rest = entry.strip_prefix(&[EXPIRY])?;
    let (when, row_key) = rest.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*when), row_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_that_prefixes_another_does_not_share_its_scan_prefix() {
        let short = prefix(ROW, &[("uri", "sip:a@b"), ("event", "presence")]).unwrap();
        let long = key(
            ROW,
            &[("uri", "sip:a@bc"), ("event", "presence"), ("x", "y")],
        )
        .unwrap();
        let own = key(
            ROW,
            &[("uri", "sip:a@b"), ("event", "presence"), ("x", "y")],
        )
        .unwrap();
        assert!(!long.starts_with(&short));
        assert!(own.starts_with(&short));
    }

    #[test]
    fn parts_containing_nul_are_rejected() {
        assert!(matches!(
            key(ROW, &[("etag", "a\0b")]),
            Err(StoreError::InvalidKey { field: "etag" })
        ));
    }

    #[test]
    fn expiry_entries_sort_by_time_then_row() {
        let a = expiry(5, b"rz");
        let b = expiry(256, b"ra");
        let c = expiry(256, b"rb");
        assert!(a < b && b < c);
        assert_eq!(parse_expiry(&b), Some((256, &b"ra"[..])));
    }

    #[test]
    fn short_or_foreign_entries_are_not_expiry_entries() {
        assert_eq!(parse_expiry(b"x123"), None);
        assert_eq!(parse_expiry(b"r12345678"), None);
    }
}
