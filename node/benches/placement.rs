//! Placement benchmark (stub; filled in below).
fn main() {}
