//! The S3 driver: publishes shard outputs as objects with the node's own
//! credentials, and reads S3 inputs.

mod keys;

pub use keys::expand_prefix;
