//! shoal compute node: identity, config, libp2p network, membership,
//! placement, and the `shoal-node` daemon.

pub mod cli;
pub mod compute;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod gateway;
pub mod identity;
pub mod inputs;
pub mod ipfs;
pub mod membership;
pub mod net;
pub mod placement;
pub mod protocol;
pub mod status;

/// The libp2p version this node is built on, for crates that talk to it.
pub use libp2p;
