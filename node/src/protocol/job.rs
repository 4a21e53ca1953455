//! Direct messages between a requester and a compute node, carried over
//! libp2p request-response as CBOR on protocol `/shoal/job/1`.
//!
//! Sizes are bounded by the codec: a peer that sends more than
//! [`MAX_REQUEST_BYTES`] / [`MAX_RESPONSE_BYTES`] gets its stream reset.
//!
//! Requester -> node: `Bid`, `Award`, `Publish`, `Discard`, `Cancel`.
//! Node -> requester: `Update` (heartbeat, computed CID, published
//! locations, failure). Result bytes never travel here: only CIDs and
//! locations.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
pub use shoal_publishers::target::{Location, Target};

/// Protocol id, versioned.
pub const PROTOCOL: &str = "/shoal/job/1";
/// Largest request accepted.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Largest response accepted.
pub const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// A job's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attempt at one shard of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardRef {
    pub job: JobId,
    pub index: u32,
    /// Grows each time the shard is re-bid, so late messages about an old
    /// attempt are recognised and ignored.
    pub attempt: u32,
}

impl fmt::Display for ShardRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.job, self.index, self.attempt)
    }
}

/// How a shard is run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Executor {
    /// A program run directly (argv, no shell) with the shard's inputs.
    Shell {
        command: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

impl Executor {
    /// The executor kind a node must have enabled.
    pub fn kind(&self) -> &'static str {
        match self {
            Executor::Shell { .. } => "shell",
        }
    }
}

/// One input file of a shard; `name` is its path under `$SHOAL_INPUTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputItem {
    /// A file on a filesystem the node can read (the testnet, shared mounts).
    Local { name: String, path: String },
    /// An http(s) URL the node downloads.
    Url { name: String, url: String },
    /// Content carried in the job itself.
    Inline { name: String, content: String },
    /// An S3 object the node reads with its own credentials; `etag` is the
    /// version the job was cut from, and a changed object is refused.
    S3 {
        name: String,
        bucket: String,
        key: String,
        etag: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// A UnixFS file fetched over Bitswap and verified block by block.
    /// `size` is what the listing said, for the input limit; `providers` are
    /// multiaddrs (`.../p2p/<peer>`) to try before the DHT.
    Ipfs {
        name: String,
        cid: String,
        size: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        providers: Vec<String>,
    },
}

impl InputItem {
    /// Relative path of the input under `$SHOAL_INPUTS`.
    pub fn name(&self) -> &str {
        match self {
            InputItem::Local { name, .. }
            | InputItem::Url { name, .. }
            | InputItem::Inline { name, .. }
            | InputItem::S3 { name, .. }
            | InputItem::Ipfs { name, .. } => name,
        }
    }
}

/// Resource limits for one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory limit in bytes (0 = none).
    pub memory: u64,
    /// Scratch disk in bytes (0 = none).
    pub disk: u64,
    /// Wall-clock limit in seconds.
    pub timeout_secs: u64,
}

/// When the node publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishMode {
    /// As soon as the CID is known (`verify: none`).
    Immediately,
    /// Only when the requester sends `Publish` (`verify: deterministic`).
    OnRequest,
}

/// Everything a node needs to run one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardTask {
    pub shard: ShardRef,
    pub executor: Executor,
    pub inputs: Vec<InputItem>,
    pub resources: Resources,
    pub publish: Vec<Target>,
    pub mode: PublishMode,
}

/// What a node needs to know to decide whether to bid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidRequest {
    pub shard: ShardRef,
    pub executor: String,
    pub resources: Resources,
    pub publish: Vec<Target>,
    /// S3 locations the shard's inputs are read from, so a node that may
    /// not read them declines instead of failing the shard later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s3_reads: Vec<S3Read>,
}

/// A bucket and key prefix a shard reads from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Read {
    pub bucket: String,
    pub prefix: String,
}

/// The S3 reads of a shard's inputs, one per distinct object.
pub fn s3_reads(inputs: &[InputItem]) -> Vec<S3Read> {
    inputs
        .iter()
        .filter_map(|i| match i {
            InputItem::S3 { bucket, key, .. } => Some(S3Read {
                bucket: bucket.clone(),
                prefix: key.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Why a node will not take a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    /// True when the node may accept later (queue full); false when it never
    /// will (executor disabled, publisher not configured, ...).
    pub transient: bool,
    pub reason: String,
}

/// Progress a node reports about a shard it was awarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShardEvent {
    /// Still working (heartbeat); `queued` is true until it starts.
    Running { queued: bool },
    /// Output computed; the CID is a commitment, the bytes stay on the node.
    Computed { cid: String, bytes: u64 },
    /// Output published and verified against `cid` at every location.
    Published {
        cid: String,
        locations: Vec<Location>,
    },
    /// The attempt failed; the reason is for the user.
    Failed { reason: String },
}

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness probe; the node answers with the same nonce.
    Ping { nonce: u64 },
    /// Would you run this shard?
    Bid(BidRequest),
    /// Run this shard.
    Award(Box<ShardTask>),
    /// Publish the output you computed for this shard.
    Publish(ShardRef),
    /// Drop the output you computed (outvoted or not needed).
    Discard(ShardRef),
    /// Stop working on this shard.
    Cancel(ShardRef),
    /// Node -> requester: progress on a shard.
    Update { shard: ShardRef, event: ShardEvent },
    /// Node -> requester: every shard this node holds for the requester is
    /// alive. One message per requester per interval, however many shards.
    Heartbeat { shards: Vec<Beat> },
}

/// One shard in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub shard: ShardRef,
    /// Still waiting for a slot.
    pub queued: bool,
}

/// Most shards one heartbeat message carries (well under the size limit).
pub const MAX_BEATS_PER_MESSAGE: usize = 4096;

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Pong {
        nonce: u64,
    },
    /// Willing to run the shard; `queued` shards are ahead of it.
    Bid {
        free_slots: u32,
        queued: u32,
    },
    Decline(Decline),
    /// The request was taken.
    Ack,
    /// Heartbeat answer: these shards are no longer the node's; drop them.
    Stale {
        shards: Vec<ShardRef>,
    },
    /// The request was understood but refused.
    Error {
        message: String,
    },
}
