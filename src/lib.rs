//! presenced: a SIP presence server (RFC 3856/3903/6665) that keeps its state in an
//! embedded sled database. The library holds every layer; `main.rs` is only the CLI.
//!
//! Layering (see docs/architecture.md): `sip` is the sans-I/O protocol core, `presence`
//! the event-independent engine with `events` as its plug-ins and `policy` their common
//! authorization framework, `core` the whole server as one sans-I/O state machine,
//! `store` the only module that names sled, and `transport` + `daemon` the thin smol
//! shell around it all.
//!
//! The public surface is what the binary, the tests, the benchmarks and the fuzz targets
//! need; the shell's parts (`transport`, the control socket's listener, the allocator)
//! stay inside. No unsafe code, except the allocator's configuration in `memory`.
#![deny(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dispatch;
pub mod dump;
pub mod events;
mod memory;
pub mod metrics;
pub mod mgmt;
pub mod policy;
pub mod presence;
pub mod rls;
pub mod sip;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod transport;
pub mod xcap;
pub mod xml;
