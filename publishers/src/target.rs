//! Where a job asks its shard outputs to go, and where they ended up.

use serde::{Deserialize, Serialize};

/// One publish destination named in a job spec (`publish: [...]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// A directory under the node operator's local publish root.
    Local(LocalTarget),
    /// Objects in an S3 bucket, written with the node's own credentials.
    S3(S3Target),
    /// The node's own IPFS block store, served over Bitswap and its gateway.
    Ipfs(IpfsTarget),
}

/// `publish: [{local: {path: ...}}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// Relative path under the node's `[publishers.local] root`.
    #[serde(default)]
    pub path: String,
}

/// `publish: [{s3: {bucket: ..., prefix: ...}}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix; may use `{job}`, `{shard}` and `{node}`. When it has no
    /// `{shard}`, `{job}/{shard}/` is appended so shards never collide.
    #[serde(default)]
    pub prefix: String,
}

/// `publish: [{ipfs: {}}]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfsTarget {}

impl Target {
    /// The driver kind a node must offer to publish here.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Local(_) => "local",
            Target::S3(_) => "s3",
            Target::Ipfs(_) => "ipfs",
        }
    }
}

/// Where one shard's output was published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Driver kind (`local`, `s3`, `ipfs`, `filecoin`).
    pub driver: String,
    /// Address of the output: `file:///...`, `s3://bucket/key`, `ipfs://CID`.
    pub url: String,
    /// Multiaddrs (with `/p2p/<peer>`) of nodes known to serve the output;
    /// a hint for fetchers, set by the IPFS driver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
}
