//! placeholder until the pidf branch lands
pub mod package;
pub mod presence;
pub mod pidf;
