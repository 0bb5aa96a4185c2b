//! The one XML reader and writer every XML body and document goes through: PIDF and
//! dialog-info bodies (`events`), pres-rules (`policy`) and XCAP documents (`xcap`).
//! It exists so that all of them read XML the same careful way (restricted XML, no
//! DTD, bounded depth, strict well-formedness) and write it the same namespace-safe way,
//! and so that this code is checked and kept cheap in one place: reading and writing
//! cost time linear (or n log n) in the number of attributes and namespace declarations,
//! because an XCAP document of a few MB may be nothing but those.
//!
//! Sans-I/O: bytes in, a [`minidom::Element`] tree out ([`parse`]); a tree in, bytes
//! out ([`write_document`]; inside the crate also `write_element` with a `Scope`, for
//! callers that write the root element's start tag themselves).

mod read;
mod write;

use std::fmt;

use minidom::rxml;

pub use read::parse;
pub use write::write_document;
pub(crate) use write::{Scope, chars_only, escape_attr, write_element};

/// What an XML writer here puts first.
pub(crate) const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
/// Real documents nest about five levels deep; the cap keeps recursion bounded on
/// hostile input.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why bytes are not an acceptable XML document. `Display` is short and fixed so it can
/// go into a SIP reason phrase or an XCAP error; the body formats map it to their own
/// errors with the same texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlError {
    NotUtf8,
    NotWellFormed,
    TooDeep,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XmlError::NotUtf8 => "not UTF-8",
            XmlError::NotWellFormed => "not well-formed XML",
            XmlError::TooDeep => "nesting too deep",
        })
    }
}

impl std::error::Error for XmlError {}

/// Namespaces in XML 1.0 §3: `xml`/`xmlns` are reserved and prefixes cannot be undeclared.
pub(crate) fn is_sane_declaration(prefix: Option<&str>, uri: &str) -> bool {
    match prefix {
        Some("xmlns") => false,
        Some("xml") => uri == rxml::XMLNS_XML,
        Some(_) if uri.is_empty() => false,
        _ => uri != rxml::XMLNS_XML && uri != rxml::XMLNS_XMLNS,
    }
}
