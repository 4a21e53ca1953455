//! The `Publisher` trait every driver implements, and the set of drivers a
//! node's operator configured.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use cid::Cid;

use crate::target::{Location, Target};

/// A boxed future, so drivers can live behind `dyn Publisher`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One shard output, ready to publish.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub job: &'a str,
    pub shard: u32,
    /// Peer id of the node publishing.
    pub node: &'a str,
    /// The directory holding the output files.
    pub dir: &'a Path,
    /// The output's CID; what is published must hash to it.
    pub cid: &'a Cid,
}

/// Why publishing failed. Never reported as success, never half-reported.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("this node has no {0} publisher configured")]
    NotConfigured(&'static str),
    #[error("target not allowed by this node's operator: {0}")]
    NotAllowed(String),
    #[error("{driver} publisher: {message}")]
    Failed {
        driver: &'static str,
        message: String,
        /// Worth retrying (server down, throttled), as opposed to refused.
        retryable: bool,
    },
    #[error("published data does not match CID {expected}: {message}")]
    Mismatch { expected: String, message: String },
}

impl PublishError {
    /// A driver's failure.
    pub fn failed(driver: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        PublishError::Failed {
            driver,
            message: message.into(),
            retryable,
        }
    }

    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PublishError::Failed {
                retryable: true,
                ..
            }
        )
    }
}

/// A publisher driver.
pub trait Publisher: Send + Sync {
    /// Driver kind, as in job specs (`local`, `s3`, ...).
    fn kind(&self) -> &'static str;

    /// Whether this node may publish to `target`; the reason if not. Used
    /// when bidding, so a node never takes a shard it cannot publish.
    fn check(&self, target: &Target) -> Result<(), String>;

    /// Publishes `output` to `target`. Idempotent: publishing the same shard
    /// again leaves one copy and returns the same location.
    fn publish<'a>(
        &'a self,
        target: &'a Target,
        output: Output<'a>,
    ) -> BoxFuture<'a, Result<Location, PublishError>>;
}

/// The drivers a node offers, by kind.
#[derive(Default)]
pub struct Publishers {
    drivers: BTreeMap<&'static str, Box<dyn Publisher>>,
}

impl Publishers {
    /// Adds a driver (replacing one of the same kind).
    pub fn add(&mut self, driver: Box<dyn Publisher>) {
        self.drivers.insert(driver.kind(), driver);
    }

    /// Kinds offered, for the node's announcement.
    pub fn kinds(&self) -> Vec<String> {
        self.drivers.keys().map(|k| k.to_string()).collect()
    }

    /// Whether every target can be published here; the first reason if not.
    pub fn check_all(&self, targets: &[Target]) -> Result<(), String> {
        for target in targets {
            match self.drivers.get(target.kind()) {
                None => return Err(format!("no {} publisher configured", target.kind())),
                Some(driver) => driver.check(target)?,
            }
        }
        Ok(())
    }

    /// Publishes to one target.
    pub async fn publish(
        &self,
        target: &Target,
        output: Output<'_>,
    ) -> Result<Location, PublishError> {
        let driver = self
            .drivers
            .get(target.kind())
            .ok_or(PublishError::NotConfigured(target.kind()))?;
        driver.publish(target, output).await
    }
}
