//! The stored records and their one codec: a format version byte followed by the record
//! in bincode 2 (`standard()` config), so the layout can change without guessing what an
//! old row means. Decoding never panics and never trusts a length prefix beyond a limit.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt;

/// The version byte written in front of every record today.
pub const FORMAT_VERSION: u8 = 1;

/// No record is larger than this; a length prefix claiming more is garbage, not a reason
/// to allocate (SIP bodies are far smaller, even over TCP).
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// Subscription status integers, as OpenSIPS stores them, so dumps mean the same thing.
pub mod status {
    pub const ACTIVE: u8 = 1;
    pub const PENDING: u8 = 2;
    pub const TERMINATED: u8 = 3;
    pub const WAITING: u8 = 4;

    /// The name `ctl` and the metrics show for a status code.
    pub fn name(code: u8) -> &'static str {
        match code {
            ACTIVE => "active",
            PENDING => "pending",
            TERMINATED => "terminated",
            WAITING => "waiting",
            _ => "unknown",
        }
    }
}

/// One publication (RFC 3903): a row of the `presentity` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// `sip:user@domain`.
    pub presentity_uri: String,
    /// The full Event value including parameters, e.g. `presence` or `dialog;sla`.
    pub event: String,
    pub etag: String,
    /// Unix seconds.
    pub expires: u64,
    pub received_time: u64,
    /// Encoded as one byte string (bincode: length, then the bytes), not as a sequence
    /// of one-byte elements: the same bytes on disk, decoded without a per-byte visit.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub content_type: String,
    /// The publisher's contact or source address.
    pub sender: String,
    pub extra_hdrs: String,
    /// Publication order; newer is larger (aggregation puts the newest first).
    pub priority: u64,
}

/// One subscription dialog (RFC 6665): a row of the `active_watchers` table. Holds what
/// is needed to send an in-dialog NOTIFY after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    pub presentity_uri: String,
    /// The watcher's AOR (From URI).
    pub watcher_uri: String,
    /// The To URI of the SUBSCRIBE (OpenSIPS `to_user`/`to_domain`).
    pub to_uri: String,
    pub event: String,
    pub event_id: Option<String>,
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// CSeq of our next NOTIFY; persisted so it never goes backwards after a restart.
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Unix seconds.
    pub expires: u64,
    /// See [`status`].
    pub status: u8,
    pub reason: Option<String>,
    /// Body version counter (winfo/dialog-info `version`).
    pub version: u32,
    /// The watcher's Contact.
    pub remote_target: String,
    pub record_route: Vec<String>,
    pub local_contact: String,
    /// Our socket the SUBSCRIBE arrived on, e.g. `udp:127.0.0.1:5060`.
    pub socket_info: String,
    /// Where to send NOTIFY when there is no route, e.g. `udp:1.2.3.4:5060`.
    pub transport_peer: String,
    pub user_agent: String,
    pub accept: Vec<String>,
    /// OpenSIPS 3 clustering column; kept so dumps round-trip.
    pub sharing_tag: Option<String>,
}

/// A watcher's authorization state for a presentity/event: a row of the `watchers` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    pub presentity_uri: String,
    pub watcher_uri: String,
    pub event: String,
    /// See [`status`].
    pub status: u8,
    pub reason: Option<String>,
    pub inserted_time: u64,
}

/// Why stored bytes could not be turned back into a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownVersion(u8),
    /// bincode refused the bytes (truncated, bad UTF-8, limit exceeded, …).
    Malformed(String),
    /// The record decoded but bytes were left over.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty value"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            DecodeError::Malformed(e) => write!(f, "malformed record: {e}"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes after record"),
        }
    }
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    Bincode(String),
    TooLarge(usize),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Bincode(e) => write!(f, "cannot encode record: {e}"),
            EncodeError::TooLarge(n) => {
                write!(f, "record of {n} bytes exceeds {MAX_RECORD_BYTES}")
            }
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_RECORD_BYTES>()
}

/// Version byte + bincode.
pub fn encode<R: Serialize>(record: &R) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .map_err(|e| EncodeError::Bincode(e.to_string()))?;
    if out.len() > MAX_RECORD_BYTES {
        return Err(EncodeError::TooLarge(out.len()));
    }
    Ok(out)
}

/// The inverse of [`encode`]; rejects unknown versions and leftover bytes.
pub fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let (record, used) = bincode::serde::decode_from_slice(rest, config())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    match rest.len().saturating_sub(used) {
        0 => Ok(record),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn presentity(uri: &str, event: &str, etag: &str, expires: u64) -> Publication {
        Publication {
            presentity_uri: uri.into(),
            event: event.into(),
            etag: etag.into(),
            expires,
            received_time: expires.saturating_sub(3600),
            body: b"<presence/>".to_vec(),
            content_type: "application/pidf+xml".into(),
            sender: "sip:alice@10.0.0.1:5060".into(),
            extra_hdrs: String::new(),
            priority: 7,
        }
    }

    pub(crate) fn dialog(uri: &str, event: &str, call_id: &str, expires: u64) -> SubscriptionRow {
        SubscriptionRow {
            presentity_uri: uri.into(),
            watcher_uri: "sip:bob@example.org".into(),
            to_uri: uri.into(),
            event: event.into(),
            event_id: None,
            call_id: call_id.into(),
            to_tag: "tt".into(),
            from_tag: "ft".into(),
            local_cseq: 3,
            remote_cseq: 9,
            expires,
            status: status::ACTIVE,
            reason: None,
            version: 2,
            remote_target: "sip:bob@192.0.2.7:5062".into(),
            record_route: vec!["<sip:proxy.example.org;lr>".into()],
            local_contact: "sip:presence@192.0.2.1".into(),
            socket_info: "udp:192.0.2.1:5060".into(),
            transport_peer: "udp:192.0.2.7:5062".into(),
            user_agent: "test".into(),
            accept: vec!["application/pidf+xml".into()],
            sharing_tag: None,
        }
    }

    pub(crate) fn watcher(uri: &str, event: &str, watcher_uri: &str) -> Watcher {
        Watcher {
            presentity_uri: uri.into(),
            watcher_uri: watcher_uri.into(),
            event: event.into(),
            status: status::PENDING,
            reason: Some("probation".into()),
            inserted_time: 1_700_000_000,
        }
    }

    #[test]
    fn each_record_round_trips_through_the_codec() {
        let p = presentity("sip:a@b", "presence", "e1", 100);
        assert_eq!(decode::<Publication>(&encode(&p).unwrap()), Ok(p));
        let d = dialog("sip:a@b", "presence", "c1", 100);
        assert_eq!(decode::<SubscriptionRow>(&encode(&d).unwrap()), Ok(d));
        let w = watcher("sip:a@b", "presence", "sip:bob@x");
        assert_eq!(decode::<Watcher>(&encode(&w).unwrap()), Ok(w));
    }

    #[test]
    fn bodies_encode_as_they_did_before_they_were_byte_strings() {
        // Databases written before `body` was `serde_bytes` must still decode.
        #[derive(Serialize)]
        struct Before {
            presentity_uri: String,
            event: String,
            etag: String,
            expires: u64,
            received_time: u64,
            body: Vec<u8>,
            content_type: String,
            sender: String,
            extra_hdrs: String,
            priority: u64,
        }
        let p = presentity("sip:a@b", "presence", "e", 1);
        let before = Before {
            presentity_uri: p.presentity_uri.clone(),
            event: p.event.clone(),
            etag: p.etag.clone(),
            expires: p.expires,
            received_time: p.received_time,
            body: p.body.clone(),
            content_type: p.content_type.clone(),
            sender: p.sender.clone(),
            extra_hdrs: p.extra_hdrs.clone(),
            priority: p.priority,
        };
        let old = encode(&before).unwrap();
        assert_eq!(old, encode(&p).unwrap());
        assert_eq!(decode::<Publication>(&old), Ok(p));
    }

    #[test]
    fn encoded_records_start_with_the_format_version() {
        let bytes = encode(&watcher("sip:a@b", "presence", "sip:c@d")).unwrap();
        assert_eq!(bytes.first(), Some(&FORMAT_VERSION));
    }

    #[test]
    fn unknown_version_byte_is_rejected() {
        let mut bytes = encode(&presentity("sip:a@b", "presence", "e", 1)).unwrap();
        bytes[0] = FORMAT_VERSION + 1;
        assert_eq!(
            decode::<Publication>(&bytes),
            Err(DecodeError::UnknownVersion(FORMAT_VERSION + 1))
        );
    }

    #[test]
    fn empty_truncated_and_padded_values_are_errors() {
        assert_eq!(decode::<Watcher>(&[]), Err(DecodeError::Empty));
        let bytes = encode(&dialog("sip:a@b", "presence", "c", 1)).unwrap();
        for cut in 1..bytes.len() {
            assert!(
                decode::<SubscriptionRow>(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(
            decode::<SubscriptionRow>(&padded),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating_it() {
        // version, then a bincode varint u64 marker (253) with a length near 2^63.
        let mut bytes = vec![FORMAT_VERSION, 253];
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(matches!(
            decode::<Publication>(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_records_are_refused_at_encode() {
        let mut p = presentity("sip:a@b", "presence", "e", 1);
        p.body = vec![b'x'; MAX_RECORD_BYTES];
        assert!(matches!(encode(&p), Err(EncodeError::TooLarge(_))));
    }
}
