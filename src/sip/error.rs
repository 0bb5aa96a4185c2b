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
    /// The message is larger than the configured limit (→ 413 if answerable, else drop).
    TooLarge,
    /// A header line or header section is too long (→ 513 / 400).
    HeaderTooLarge,
    /// The Request-URI scheme is not supported (→ 416).
    UnsupportedUriScheme,
    /// CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// Bytes that are not valid UTF-8 where text is required; names the place.
    NotUtf8(&'static str),
}
