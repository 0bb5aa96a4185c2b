//! presenced: a SIP presence server (RFC 3856/3903/6665) that keeps its state in an
//! embedded sled database. The library holds every layer; `main.rs` is only the CLI.
//!
//! Layering (see README.md): `sip` is the sans-I/O protocol core, `presence` the
//! event-independent engine with `events` as its plug-ins, `store` the only module that
//! names sled, and `transport` + `daemon` the thin smol shell around it all.
//!
//! No unsafe code, except the one glibc call in [`memory`].
#![deny(unsafe_code)]

pub mod clock;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dispatch;
pub mod dump;
pub mod events;
pub mod memory;
pub mod mgmt;
pub mod policy;
pub mod presence;
pub mod sip;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod transport;
pub mod xcap;
pub mod xml;
