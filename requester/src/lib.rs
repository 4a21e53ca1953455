//! shoal requester: job specs, sharding, orchestration, the durable job
//! store, the HTTP API, and the `shoal` CLI.

pub mod api;
pub mod cli;
pub mod cli_content;
pub mod get;
pub mod model;
pub mod orchestrator;
pub mod service;
pub mod sharding;
pub mod spec;
pub mod store;
