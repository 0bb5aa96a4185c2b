//! The `message-summary` event package (RFC 3842, message waiting indication) with
//! `application/simple-message-summary` bodies: a voicemail system publishes the
//! mailbox state and the account owner's phones light their lamp. The body grammar is
//! checked here; the newest publication is the state (a mailbox has one truth, so
//! nothing is merged).

use std::fmt;

use crate::events::package::{BodyError, EventPackage};

/// RFC 3842 §7: the body's media type.
pub const CONTENT_TYPE: &str = "application/simple-message-summary";

/// RFC 3458 §6.2 message-context-class values, the only names a summary line may use.
const CONTEXT_CLASSES: [&str; 6] = [
    "voice-message",
    "fax-message",
    "pager-message",
    "multimedia-message",
    "text-message",
    "none",
];

/// What watchers get when no mailbox state is published: no messages waiting.
const NOTHING_WAITING: &[u8] = b"Messages-Waiting: no\r\n";

/// RFC 3842 message-summary.
pub struct MessageSummary {
    /// Only the mailbox owner may subscribe (configuration `mwi_owner_only`).
    pub owner_only: bool,
}

impl EventPackage for MessageSummary {
    fn name(&self) -> &str {
        "message-summary"
    }
    fn publish_types(&self) -> &[&str] {
        &[CONTENT_TYPE]
    }
    fn notify_type(&self) -> &str {
        CONTENT_TYPE
    }
    fn validate(&self, body: &[u8]) -> Result<(), BodyError> {
        parse(body)
            .map(|_| ())
            .map_err(|e| BodyError(format!("message-summary: {e}")))
    }
    fn aggregate(&self, _resource: &str, bodies: &[&[u8]]) -> Vec<u8> {
        // The newest valid publication wins: it is the mailbox's current state.
        bodies
            .iter()
            .find(|b| parse(b).is_ok())
            .map_or_else(|| NOTHING_WAITING.to_vec(), |b| b.to_vec())
    }
    fn empty_body(&self, _resource: &str) -> Option<Vec<u8>> {
        Some(NOTHING_WAITING.to_vec())
    }
    fn owner_only(&self) -> bool {
        // RFC 3842 §6: message summaries are private to the account holder.
        self.owner_only
    }
}

/// Why a body is not a simple-message-summary. `Display` is short and fixed so it can go
/// into a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryError {
    NotUtf8,
    MissingStatus,
    BadStatus,
    BadAccount,
    UnknownClass,
    BadCounts,
    DuplicateClass,
    BadHeader,
}

impl fmt::Display for SummaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SummaryError::NotUtf8 => "not UTF-8",
            SummaryError::MissingStatus => "first line is not Messages-Waiting",
            SummaryError::BadStatus => "Messages-Waiting is not yes or no",
            SummaryError::BadAccount => "bad Message-Account",
            SummaryError::UnknownClass => "unknown message-context-class",
            SummaryError::BadCounts => "bad message counts",
            SummaryError::DuplicateClass => "message-context-class repeated",
            SummaryError::BadHeader => "bad optional header",
        })
    }
}

impl std::error::Error for SummaryError {}

/// One `voice-message: 2/8 (0/2)` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryLine {
    /// Lower-cased message-context-class.
    pub class: String,
    pub new: u32,
    pub old: u32,
    /// `(new-urgent/old-urgent)`, when given.
    pub urgent: Option<(u32, u32)>,
}

/// A parsed message-summary body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub waiting: bool,
    pub account: Option<String>,
    pub lines: Vec<SummaryLine>,
    /// Optional extension headers after the blank line, as (name, value).
    pub headers: Vec<(String, String)>,
}

/// Parses a body by the RFC 3842 §5.2 grammar: the Messages-Waiting line first, then an
/// optional Message-Account, then summary lines, then optionally a blank line and
/// extension headers. Line ends may be CRLF or bare LF (phones send both); header names
/// are case-insensitive (RFC 3261 §7.3.1).
pub fn parse(body: &[u8]) -> Result<Summary, SummaryError> {
    let text = std::str::from_utf8(body).map_err(|_| SummaryError::NotUtf8)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));

    let (name, value) = lines
        .next()
        .and_then(header)
        .ok_or(SummaryError::MissingStatus)?;
    if !name.eq_ignore_ascii_case("Messages-Waiting") {
        return Err(SummaryError::MissingStatus);
    }
    let waiting = if value.eq_ignore_ascii_case("yes") {
        true
    } else if value.eq_ignore_ascii_case("no") {
        false
    } else {
        return Err(SummaryError::BadStatus);
    };

    let mut summary = Summary {
        waiting,
        account: None,
        lines: Vec::new(),
        headers: Vec::new(),
    };
    let mut in_extensions = false;
    for line in lines.by_ref() {
        if line.is_empty() {
            in_extensions = true;
            break;
        }
        let (name, value) = header(line).ok_or(SummaryError::BadHeader)?;
        if name.eq_ignore_ascii_case("Message-Account") {
            // Only once, and before any summary line.
            if summary.account.is_some() || !summary.lines.is_empty() {
                return Err(SummaryError::BadAccount);
            }
            if !is_absolute_uri(value) {
                return Err(SummaryError::BadAccount);
            }
            summary.account = Some(value.to_string());
            continue;
        }
        let class = name.to_ascii_lowercase();
        if !CONTEXT_CLASSES.contains(&class.as_str()) {
            return Err(SummaryError::UnknownClass);
        }
        if summary.lines.iter().any(|l| l.class == class) {
            return Err(SummaryError::DuplicateClass);
        }
        let (new, old, urgent) = counts(value).ok_or(SummaryError::BadCounts)?;
        summary.lines.push(SummaryLine {
            class,
            new,
            old,
            urgent,
        });
    }
    if in_extensions {
        for line in lines {
            // Trailing blank lines are harmless; anything else must be a header.
            if line.is_empty() {
                continue;
            }
            let (name, value) = header(line).ok_or(SummaryError::BadHeader)?;
            summary.headers.push((name.to_string(), value.to_string()));
        }
    }
    Ok(summary)
}

/// `name HCOLON value`: a token, optional whitespace, a colon, the value trimmed.
fn header(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return None;
    }
    Some((name, value.trim_matches([' ', '\t'])))
}

/// RFC 3261 §25.1 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// RFC 3842 §5.2 Account-URI: SIP-URI / SIPS-URI / absoluteURI, i.e. a scheme, a colon
/// and no whitespace.
fn is_absolute_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.contains(|c: char| c.is_whitespace())
}

/// New, old and the optional (new urgent, old urgent) counts of one summary line.
type Counts = (u32, u32, Option<(u32, u32)>);

/// `newmsgs SLASH oldmsgs [ LPAREN new-urgentmsgs SLASH old-urgentmsgs RPAREN ]`,
/// with the optional whitespace SLASH and LPAREN/RPAREN allow.
fn counts(value: &str) -> Option<Counts> {
    let (pair, urgent) = match value.split_once('(') {
        Some((pair, rest)) => {
            let inner = rest.trim_end().strip_suffix(')')?;
            (pair, Some(slash_pair(inner)?))
        }
        None => (value, None),
    };
    let (new, old) = slash_pair(pair)?;
    Some((new, old, urgent))
}

fn slash_pair(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('/')?;
    Some((number(a)?, number(b)?))
}

/// `1*DIGIT`; more than fits in a u32 is refused rather than wrapped.
fn number(s: &str) -> Option<u32> {
    let s = s.trim_matches([' ', '\t']);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: &str = "Messages-Waiting: yes\r\n\
        Message-Account: sip:alice@vmail.example.com\r\n\
        Voice-Message: 4/8 (1/2)\r\n\
        \r\n\
        To: <alice@atlanta.example.com>\r\n\
        From: <bob@biloxi.example.com>\r\n\
        Subject: carpool tomorrow?\r\n";

    #[test]
    fn rfc_3842_example_parses_with_counts_account_and_headers() {
        let s = parse(RFC_EXAMPLE.as_bytes()).unwrap();
        assert!(s.waiting);
        assert_eq!(s.account.as_deref(), Some("sip:alice@vmail.example.com"));
        assert_eq!(
            s.lines,
            [SummaryLine {
                class: "voice-message".into(),
                new: 4,
                old: 8,
                urgent: Some((1, 2)),
            }]
        );
        assert_eq!(s.headers.len(), 3);
        assert_eq!(s.headers[2], ("Subject".into(), "carpool tomorrow?".into()));
    }

    #[test]
    fn minimal_body_and_bare_lf_line_ends_are_accepted() {
        let s = parse(b"Messages-Waiting: no").unwrap();
        assert!(!s.waiting && s.lines.is_empty());
        let s = parse(b"messages-waiting:yes\nfax-message: 1/0\ntext-message:0/0(0/0)\n").unwrap();
        assert_eq!(s.lines.len(), 2);
        assert_eq!(s.lines[1].urgent, Some((0, 0)));
    }

    #[test]
    fn status_line_must_come_first_and_be_yes_or_no() {
        assert_eq!(parse(b""), Err(SummaryError::MissingStatus));
        assert_eq!(
            parse(b"Voice-Message: 1/0\r\nMessages-Waiting: yes\r\n"),
            Err(SummaryError::MissingStatus)
        );
        assert_eq!(
            parse(b"Messages-Waiting: maybe\r\n"),
            Err(SummaryError::BadStatus)
        );
    }

    #[test]
    fn summary_lines_need_a_known_class_and_digit_counts() {
        let bad = |line: &str| parse(format!("Messages-Waiting: yes\r\n{line}\r\n").as_bytes());
        assert_eq!(bad("video-message: 1/2"), Err(SummaryError::UnknownClass));
        assert_eq!(bad("voice-message: 1"), Err(SummaryError::BadCounts));
        assert_eq!(bad("voice-message: -1/2"), Err(SummaryError::BadCounts));
        assert_eq!(bad("voice-message: 1/2 (3/4"), Err(SummaryError::BadCounts));
        assert_eq!(
            bad("voice-message: 99999999999/0"),
            Err(SummaryError::BadCounts)
        );
        assert_eq!(
            bad("voice-message: 1/2\r\nvoice-message: 0/0"),
            Err(SummaryError::DuplicateClass)
        );
        assert_eq!(bad("no colon here"), Err(SummaryError::BadHeader));
    }

    #[test]
    fn account_must_be_a_uri_given_once_before_summary_lines() {
        let body = |rest: &str| format!("Messages-Waiting: yes\r\n{rest}");
        assert_eq!(
            parse(body("Message-Account: not a uri\r\n").as_bytes()),
            Err(SummaryError::BadAccount)
        );
        assert_eq!(
            parse(body("voice-message: 1/0\r\nMessage-Account: sip:a@b\r\n").as_bytes()),
            Err(SummaryError::BadAccount)
        );
    }

    #[test]
    fn extension_headers_after_the_blank_line_must_be_headers() {
        let body = "Messages-Waiting: yes\r\n\r\nnot a header\r\n";
        assert_eq!(parse(body.as_bytes()), Err(SummaryError::BadHeader));
    }

    #[test]
    fn newest_valid_publication_wins_and_nothing_published_means_no() {
        let p = MessageSummary { owner_only: true };
        let newer = b"Messages-Waiting: yes\r\nvoice-message: 1/0\r\n";
        let older = b"Messages-Waiting: no\r\n";
        assert_eq!(p.aggregate("sip:a@b", &[newer, older]), newer);
        assert_eq!(p.aggregate("sip:a@b", &[b"garbage", older]), older);
        assert_eq!(p.empty_body("sip:a@b").unwrap(), NOTHING_WAITING);
        assert!(parse(NOTHING_WAITING).is_ok());
    }
}
