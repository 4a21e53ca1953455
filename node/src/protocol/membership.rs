//! Membership announcements on gossipsub topic `shoal/membership/1`.
//!
//! An announcement is CBOR, wrapped in a libp2p signed envelope (RFC 0002)
//! with our own domain string, so that a node can only speak for itself: the
//! envelope's key must derive the peer id the announcement describes.

use std::collections::BTreeMap;

use libp2p::PeerId;
use libp2p::core::SignedEnvelope;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

/// The gossipsub topic membership is announced on.
pub const TOPIC: &str = "shoal/membership/1";
/// Domain separation string of the signature.
const DOMAIN: &str = "shoal-membership";
/// Payload type in the signed envelope.
const PAYLOAD_TYPE: &[u8] = b"/shoal/membership/1";
/// Largest announcement we accept; a real NodeInfo is well under 2 KiB.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 16 * 1024;

/// What a node does in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs shards and publishes their outputs.
    Compute,
    /// Submits jobs and keeps their manifests.
    Requester,
}

/// Resources a node offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in bytes.
    pub memory: u64,
    /// Scratch disk in bytes (0 = not limited).
    pub disk: u64,
    /// Shards run at once.
    pub slots: u32,
}

/// A node's description of itself, as it announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's libp2p peer id (base58).
    pub peer_id: String,
    pub roles: Vec<Role>,
    /// Multiaddrs the node listens on.
    pub listen_addrs: Vec<String>,
    /// shoal version the node runs.
    pub version: String,
    pub capacity: Capacity,
    pub free_slots: u32,
    /// Executors the operator enabled (e.g. "shell", "wasm").
    pub executors: Vec<String>,
    /// Publisher kinds the operator configured (e.g. "local", "s3").
    pub publishers: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Grows with every announcement, so stale copies are ignored.
    pub seq: u64,
}

impl NodeInfo {
    /// A peer that offers no compute: just `roles` and this build's version
    /// (requesters, and the short-lived peer of `shoal get`). The network
    /// fills in the peer id, addresses and sequence number.
    pub fn without_compute(roles: Vec<Role>) -> NodeInfo {
        NodeInfo {
            peer_id: String::new(),
            roles,
            listen_addrs: Vec::new(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capacity: Capacity {
                cpu: 0.0,
                memory: 0,
                disk: 0,
                slots: 0,
            },
            free_slots: 0,
            executors: Vec::new(),
            publishers: Vec::new(),
            labels: BTreeMap::new(),
            seq: 0,
        }
    }
}

/// One membership message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Announcement {
    /// The node is up; here is what it offers.
    Alive(NodeInfo),
    /// The node is shutting down; drop it now.
    Leaving { peer_id: String, seq: u64 },
}

impl Announcement {
    /// The peer id the announcement speaks for.
    pub fn peer_id(&self) -> &str {
        match self {
            Announcement::Alive(info) => &info.peer_id,
            Announcement::Leaving { peer_id, .. } => peer_id,
        }
    }

    /// The announcement's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Announcement::Alive(info) => info.seq,
            Announcement::Leaving { seq, .. } => *seq,
        }
    }
}

/// Why a gossip message was dropped. Each variant is counted separately.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("message of {0} bytes exceeds the {MAX_ANNOUNCEMENT_BYTES}-byte limit")]
    Oversized(usize),
    #[error("message is not a signed envelope: {0}")]
    Garbled(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("announcement for {described} is signed by {signer}")]
    WrongAuthor { described: String, signer: String },
}

impl RejectReason {
    /// Short stable name used as a counter key.
    pub fn counter(&self) -> &'static str {
        match self {
            RejectReason::Oversized(_) => "oversized",
            RejectReason::Garbled(_) => "garbled",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::WrongAuthor { .. } => "wrong_author",
        }
    }
}

/// Signs and encodes an announcement.
pub fn encode(keypair: &Keypair, announcement: &Announcement) -> Vec<u8> {
    let mut payload = Vec::new();
    // Writing CBOR of plain data into a Vec cannot fail.
    if let Err(e) = cbor4ii::serde::to_writer(&mut payload, announcement) {
        tracing::error!("cannot encode announcement: {e}");
    }
    match SignedEnvelope::new(keypair, DOMAIN.into(), PAYLOAD_TYPE.to_vec(), payload) {
        Ok(envelope) => envelope.into_protobuf_encoding(),
        Err(e) => {
            tracing::error!("cannot sign announcement: {e}");
            Vec::new()
        }
    }
}

/// Decodes and checks an announcement: size, envelope, signature, and that
/// the signer is the peer described.
pub fn decode(bytes: &[u8]) -> Result<Announcement, RejectReason> {
    if bytes.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(RejectReason::Oversized(bytes.len()));
    }
    let envelope = SignedEnvelope::from_protobuf_encoding(bytes)
        .map_err(|e| RejectReason::Garbled(e.to_string()))?;
    let (payload, key) = envelope
        .payload_and_signing_key(DOMAIN.into(), PAYLOAD_TYPE)
        .map_err(|e| match e {
            libp2p::core::signed_envelope::ReadPayloadError::InvalidSignature => {
                RejectReason::BadSignature
            }
            other => RejectReason::Garbled(other.to_string()),
        })?;
    let announcement: Announcement = cbor4ii::serde::from_slice(payload)
        .map_err(|e| RejectReason::Garbled(format!("bad CBOR payload: {e}")))?;
    let signer = PeerId::from_public_key(key).to_string();
    if signer != announcement.peer_id() {
        return Err(RejectReason::WrongAuthor {
            described: announcement.peer_id().to_owned(),
            signer,
        });
    }
    Ok(announcement)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info(keypair: &Keypair, seq: u64) -> NodeInfo {
        NodeInfo {
            peer_id: keypair.public().to_peer_id().to_string(),
            roles: vec![Role::Compute],
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            version: "test".into(),
            capacity: Capacity {
                cpu: 2.0,
                memory: 1 << 30,
                disk: 0,
                slots: 2,
            },
            free_slots: 2,
            executors: vec![],
            publishers: vec![],
            labels: BTreeMap::new(),
            seq,
        }
    }

    #[test]
    fn announcement_round_trips() {
        let key = Keypair::generate_ed25519();
        let a = Announcement::Alive(info(&key, 7));
        assert_eq!(decode(&encode(&key, &a)).unwrap(), a);
    }

    #[test]
    fn announcement_for_another_peer_is_rejected() {
        let me = Keypair::generate_ed25519();
        let victim = Keypair::generate_ed25519();
        let forged = Announcement::Alive(info(&victim, 1));
        let err = decode(&encode(&me, &forged)).unwrap_err();
        assert_eq!(err.counter(), "wrong_author");
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let key = Keypair::generate_ed25519();
        let mut bytes = encode(&key, &Announcement::Alive(info(&key, 1)));
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01; // the signature is the last field
        assert_eq!(decode(&bytes).unwrap_err(), RejectReason::BadSignature);
    }

    #[test]
    fn garbage_and_oversized_are_rejected() {
        assert_eq!(decode(b"\xff\x00garbage").unwrap_err().counter(), "garbled");
        let big = vec![0u8; MAX_ANNOUNCEMENT_BYTES + 1];
        assert_eq!(decode(&big).unwrap_err().counter(), "oversized");
    }
}
