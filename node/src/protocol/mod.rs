//! Every message shoal nodes exchange, with its wire encoding.
//!
//! Gossip (membership) and direct request-response messages are CBOR. Every
//! topic and protocol id carries a version, so a future format can run beside
//! this one.

pub mod job;
pub mod membership;
