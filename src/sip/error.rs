//! Typed parse errors and the one place where they become SIP status codes.

use std::fmt;

/// What went wrong while parsing a message from the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not enough bytes for a full message (stream framing: wait for more).
    Incomplete,
    /// The start line is not a SIP request or status line.
    BadStartLine,
    /// `SIP/x.y` other than 2.0 (→ 505).
    UnsupportedVersion,
    /// A header is syntactically broken; names the header.
    BadHeader(&'static str),
    /// A mandatory header is missing; names the header.
    MissingHeader(&'static str),
    /// A header that must appear once appears several times.
    DuplicateHeader(&'static str),
    /// Content-Length disagrees with the bytes that follow, or is malformed.
    BadContentLength,
    /// The message is larger than the configured limit (→ 513 Message Too Large if
    /// answerable, else drop; RFC 3261 §21.5.9).
    TooLarge,
    /// A header line or header section is too long (→ 513).
    HeaderTooLarge,
    /// The Request-URI scheme is not supported (→ 416).
    UnsupportedUriScheme,
    /// CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// Bytes that are not valid UTF-8 where text is required; names the place.
    NotUtf8(&'static str),
    /// A URI (outside the request line) is malformed.
    BadUri,
    /// The Request-URI is malformed: LWS or `<>` inside it, escaped headers, a sip/sips
    /// URI that does not parse (RFC 4475 ltgtruri, lwsruri, escruri).
    BadRequestUri,
    /// A line in the header section is neither `name: value` nor a continuation.
    BadHeaderLine,
}

impl ParseError {
    /// The status code and reason phrase to answer a request that failed with this error,
    /// or `None` when the message must be dropped silently (nothing sensible to answer).
    pub fn response_status(&self) -> Option<(u16, String)> {
        let bad = |what: String| Some((400, format!("Bad Request - {what}")));
        match self {
            ParseError::Incomplete | ParseError::BadStartLine => None,
            // RFC 3261 §21.5.6
            ParseError::UnsupportedVersion => Some((505, "Version Not Supported".to_owned())),
            ParseError::BadHeader(h) => bad(format!("Malformed {h}")),
            ParseError::MissingHeader(h) => bad(format!("Missing {h}")),
            ParseError::DuplicateHeader(h) => bad(format!("Duplicate {h}")),
            ParseError::BadContentLength => bad("Bad Content-Length".to_owned()),
            // RFC 3261 §21.5.7
            ParseError::TooLarge | ParseError::HeaderTooLarge => {
                Some((513, "Message Too Large".to_owned()))
            }
            // RFC 3261 §8.2.2.1, §21.4.14
            ParseError::UnsupportedUriScheme => Some((416, "Unsupported URI Scheme".to_owned())),
            // RFC 4475 mismatch01
            ParseError::CSeqMethodMismatch => bad("CSeq Method Mismatch".to_owned()),
            ParseError::NotUtf8(place) => bad(format!("Invalid UTF-8 in {place}")),
            ParseError::BadUri => bad("Malformed URI".to_owned()),
            ParseError::BadRequestUri => bad("Malformed Request-URI".to_owned()),
            ParseError::BadHeaderLine => bad("Malformed Header Line".to_owned()),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete => f.write_str("incomplete message"),
            ParseError::BadStartLine => f.write_str("malformed start line"),
            ParseError::UnsupportedVersion => f.write_str("unsupported SIP version"),
            ParseError::BadHeader(h) => write!(f, "malformed {h} header"),
            ParseError::MissingHeader(h) => write!(f, "missing {h} header"),
            ParseError::DuplicateHeader(h) => write!(f, "duplicate {h} header"),
            ParseError::BadContentLength => f.write_str("bad Content-Length"),
            ParseError::TooLarge => f.write_str("message too large"),
            ParseError::HeaderTooLarge => f.write_str("header section too large"),
            ParseError::UnsupportedUriScheme => f.write_str("unsupported Request-URI scheme"),
            ParseError::CSeqMethodMismatch => f.write_str("CSeq method does not match request"),
            ParseError::NotUtf8(place) => write!(f, "invalid UTF-8 in {place}"),
            ParseError::BadUri => f.write_str("malformed URI"),
            ParseError::BadRequestUri => f.write_str("malformed Request-URI"),
            ParseError::BadHeaderLine => f.write_str("malformed header line"),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_header_names_the_header_in_the_reason() {
        assert_eq!(
            ParseError::MissingHeader("Call-ID").response_status(),
            Some((400, "Bad Request - Missing Call-ID".to_owned()))
        );
    }

    #[test]
    fn version_scheme_and_size_map_to_their_own_codes() {
        let code = |e: ParseError| e.response_status().map(|(c, _)| c);
        assert_eq!(code(ParseError::UnsupportedVersion), Some(505));
        assert_eq!(code(ParseError::UnsupportedUriScheme), Some(416));
        assert_eq!(code(ParseError::TooLarge), Some(513));
        assert_eq!(code(ParseError::HeaderTooLarge), Some(513));
        assert_eq!(code(ParseError::CSeqMethodMismatch), Some(400));
    }

    #[test]
    fn unanswerable_errors_are_dropped() {
        assert_eq!(ParseError::Incomplete.response_status(), None);
        assert_eq!(ParseError::BadStartLine.response_status(), None);
    }
}
