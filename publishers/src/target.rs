//! Where a job asks its shard outputs to go, and where they ended up.

use serde::{Deserialize, Serialize};

/// One publish destination named in a job spec (`publish: [...]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// A directory under the node operator's local publish root.
    Local(LocalTarget),
}

/// `publish: [{local: {path: ...}}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// Relative path under the node's `[publishers.local] root`.
    #[serde(default)]
    pub path: String,
}

impl Target {
    /// The driver kind a node must offer to publish here.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Local(_) => "local",
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
}
