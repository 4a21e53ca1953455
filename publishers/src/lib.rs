//! shoal publishers.
