//! shoal requester.
