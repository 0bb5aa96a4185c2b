//! The `presenced` command line.
fn main() {}
