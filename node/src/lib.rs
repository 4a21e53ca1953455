//! shoal compute node library.
