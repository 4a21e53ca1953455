//! shoal publishers.

pub mod target;
