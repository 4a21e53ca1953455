//! shoal publishers: the `Publisher` trait, its drivers, and content
//! addressing (UnixFS CIDs, CARv1, Filecoin piece commitments).

pub mod content;
pub mod ipfs;
pub mod local;
pub mod publisher;
pub mod s3;
pub mod target;

pub use publisher::{Output, PublishError, Publisher, Publishers};
