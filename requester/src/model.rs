//! The requester's view of jobs and shards: the state machines a user sees
//! in `shoal job describe`, and the records the store keeps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_node::protocol::job::{InputItem, Location};

use crate::spec::JobSpec;

/// Where a shard is. Every state a user can see is one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardState {
    /// Not yet offered to any node.
    Pending,
    /// BidRequests are out.
    Bidding,
    /// A node took the shard and has it queued.
    Awarded,
    /// The node reports it is running.
    Running,
    /// Every replica reported its CID; not yet verified or published.
    Computed,
    /// Replicas' CIDs are being compared.
    Verifying,
    /// The chosen node is publishing.
    Publishing,
    /// Output published; locations recorded.
    Published,
    /// Gave up; `reasons` says why.
    Failed,
    /// The user cancelled the job.
    Cancelled,
}

impl ShardState {
    /// Whether the shard is finished, one way or another.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ShardState::Published | ShardState::Failed | ShardState::Cancelled
        )
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Some shards are not finished.
    Running,
    /// Every shard published.
    Completed,
    /// Every shard finished and at least one failed.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

/// Where one replica (one node's run of a shard) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    Awarded,
    Running,
    Computed,
    Publishing,
    Published,
    /// Outvoted or not needed; told to drop its output.
    Discarded,
    Failed,
}

/// One node's attempt at a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub node: String,
    pub attempt: u32,
    pub state: ReplicaState,
    pub cid: Option<String>,
}

impl Replica {
    /// Whether the replica still counts towards the shard.
    pub fn is_active(&self) -> bool {
        !matches!(self.state, ReplicaState::Discarded | ReplicaState::Failed)
    }
}

/// A node whose CID lost a verification vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    pub shard: u32,
    pub node: String,
    pub cid: String,
    pub majority_cid: String,
}

/// One shard, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: u32,
    pub state: ShardState,
    /// The node whose output is (being) published.
    pub node: Option<String>,
    pub cid: Option<String>,
    pub locations: Vec<Location>,
    /// BidRequests sent for this shard, over all rounds.
    pub bid_requests_sent: u32,
    /// The nodes asked to bid, in the order asked.
    pub bidders_asked: Vec<String>,
    /// Awards made (each award is one attempt on one node).
    pub attempts: u32,
    /// Every decline, failure and lost node, in order.
    pub reasons: Vec<String>,
    pub replicas: Vec<Replica>,
    /// Nodes not to ask again (failed, lost, outvoted).
    pub excluded: Vec<String>,
    /// Hex of the placement key (from the inputs' content identity).
    pub placement_key: String,
    pub inputs: Vec<InputItem>,
}

impl ShardRecord {
    /// A fresh pending shard.
    pub fn new(index: u32, placement_key: [u8; 32], inputs: Vec<InputItem>) -> Self {
        ShardRecord {
            index,
            state: ShardState::Pending,
            node: None,
            cid: None,
            locations: Vec::new(),
            bid_requests_sent: 0,
            bidders_asked: Vec::new(),
            attempts: 0,
            reasons: Vec::new(),
            replicas: Vec::new(),
            excluded: Vec::new(),
            placement_key: hex::encode(placement_key),
            inputs,
        }
    }
}

/// A job, as stored (without its shards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub spec: JobSpec,
    pub shard_count: u32,
    /// Unix time in milliseconds.
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Replicas outvoted in verification.
    pub disagreements: Vec<Disagreement>,
}

/// `shoal job describe`: the job and every shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Shards per state.
    pub counts: BTreeMap<ShardState, u32>,
    pub disagreements: Vec<Disagreement>,
    pub shards: Vec<ShardRecord>,
}

/// One line of `shoal job list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub shard_count: u32,
    pub counts: BTreeMap<ShardState, u32>,
    pub created_at_ms: u64,
}

/// One entry of a job's manifest: where a shard's output lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub shard: u32,
    pub state: ShardState,
    pub node: Option<String>,
    pub cid: Option<String>,
    pub locations: Vec<Location>,
}

/// `shoal job results`: the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub job: String,
    pub state: JobState,
    pub shards: Vec<ManifestEntry>,
}

/// Counts shards per state.
pub fn count_states<'a>(
    shards: impl Iterator<Item = &'a ShardRecord>,
) -> BTreeMap<ShardState, u32> {
    let mut counts = BTreeMap::new();
    for shard in shards {
        *counts.entry(shard.state).or_default() += 1;
    }
    counts
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
