//! The sans-I/O SIP core: messages, URIs, typed headers, stream framing, transactions and
//! the endpoint that ties them together. Nothing in here touches a socket or a clock;
//! callers pass bytes and `now` in and get messages and deadlines back.

mod absorb;
pub mod dialog;
pub mod endpoint;
pub mod error;
pub mod framing;
pub mod header;
pub mod message;
mod replay;
pub mod transaction;
pub mod triage;
pub mod uri;

pub use error::ParseError;
pub use header::{Headers, NameAddr, Params};
pub use message::{Message, Method, Request, Response};
pub use uri::{Host, SipUri, Uri};
