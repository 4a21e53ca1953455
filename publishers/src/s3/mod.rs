//! The S3 driver: publishes shard outputs as objects with the node's own
//! credentials, reads S3 inputs, and fetches published shards back.
//!
//! Credentials come from the standard AWS chain of the process using the
//! driver and are never part of any message, location or log line.

mod allow;
mod client;
mod fetch;
mod keys;
mod publish;

pub use allow::{AllowList, template_head};
pub use client::{Client, S3Error, Settings, StaticCredentials, connect};
pub use fetch::{Expect, ObjectInfo, download, fetch_shard, list_objects, open};
pub use keys::expand_prefix;
pub use publish::{
    FileRecord, MANIFEST, S3Publisher, S3PublisherConfig, ShardManifest, read_manifest,
};

/// Largest `_shoal.json` read back.
const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// Splits `s3://bucket/key` into bucket and key.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}
