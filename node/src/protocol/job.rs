//! Direct messages between a requester and a compute node, carried over
//! libp2p request-response as CBOR on protocol `/shoal/job/1`.
//!
//! Sizes are bounded by the codec: a peer that sends more than
//! [`MAX_REQUEST_BYTES`] / [`MAX_RESPONSE_BYTES`] gets its stream reset.

use serde::{Deserialize, Serialize};

/// Protocol id, versioned.
pub const PROTOCOL: &str = "/shoal/job/1";
/// Largest request accepted.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Largest response accepted.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// A request to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness probe; the node answers with the same nonce.
    Ping { nonce: u64 },
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong { nonce: u64 },
    /// The request was understood but refused.
    Error { message: String },
}
