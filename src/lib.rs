//! presenced: a SIP presence server (RFC 3856/3903/6665) that keeps its state in an
//! embedded sled database. The library holds every layer; `main.rs` is only the CLI.
//!
//! Layering (see DESIGN.md): `sip` is the sans-I/O protocol core, `transport` and
//! `daemon` are the thin smol shell around it, `config` and `clock` are shared plumbing.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod daemon;
pub mod events;
pub mod sip;
pub mod transport;
