//! The IPFS publisher: a shard output is imported into the node's own
//! block store (the CID `ipfs add --cid-version=1` gives), pinned, served by
//! the node over Bitswap and its trustless gateway, announced in the DHT,
//! and optionally pushed to a Kubo node as a CAR.
//!
//! - [`store`]: the persistent block store (redb), pins, gc, size limit.
//! - [`kubo`]: the push to a Kubo RPC endpoint (`/api/v0/dag/import`).
//! - [`gateway_client`]: fetching a DAG from a trustless gateway as a CAR,
//!   verified block by block, for processes that are not nodes.

// Errors carry the CIDs (80 bytes each) they are about, as in `content`;
// every call returning one does disk or network I/O, so the size is moot.
#![allow(clippy::result_large_err)]

pub mod gateway_client;
pub mod kubo;
pub mod store;

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cid::Cid;
use tokio::sync::mpsc;

use crate::publisher::{BoxFuture, Output, PublishError, Publisher};
use crate::target::{Location, Target};

pub use gateway_client::{GatewayFetchError, fetch_car_from_gateway};
pub use store::{BlockStore, GcReport, ImportReport, Pin, STORE_FILE, StoreError};

const DRIVER: &str = "ipfs";

/// What the publisher needs from the node it runs in; implemented by the
/// node over its network handle, so this crate does not depend on it.
pub trait IpfsNode: Send + Sync {
    /// Starts announcing this node as a provider of `cid` in the DHT.
    fn provide(&self, cid: Cid);
    /// Multiaddrs ending in `/p2p/<peer id>` that fetchers may dial.
    fn addresses(&self) -> Vec<String>;
}

/// `[publishers.ipfs]` settings the publisher uses.
#[derive(Debug, Clone, Default)]
pub struct IpfsConfig {
    /// How long published outputs stay pinned; `None` = until unpinned.
    pub pin_for: Option<Duration>,
    /// Kubo RPC base URL (`http://127.0.0.1:5001`) to push outputs to.
    pub rpc_url: Option<String>,
}

/// Publishes into the node's block store.
pub struct IpfsPublisher {
    store: Arc<BlockStore>,
    node: Arc<dyn IpfsNode>,
    config: IpfsConfig,
    http: reqwest::Client,
}

impl IpfsPublisher {
    /// A publisher importing into `store` and announcing through `node`.
    pub fn new(store: Arc<BlockStore>, node: Arc<dyn IpfsNode>, config: IpfsConfig) -> Self {
        IpfsPublisher {
            store,
            node,
            config,
            http: reqwest::Client::new(),
        }
    }

    /// The block store outputs go into.
    pub fn store(&self) -> &Arc<BlockStore> {
        &self.store
    }
}

impl Publisher for IpfsPublisher {
    fn kind(&self) -> &'static str {
        DRIVER
    }

    fn check(&self, target: &Target) -> Result<(), String> {
        match target {
            Target::Ipfs(_) => Ok(()),
            _ => Err("not an ipfs target".into()),
        }
    }

    fn publish<'a>(
        &'a self,
        target: &'a Target,
        output: Output<'a>,
    ) -> BoxFuture<'a, Result<Location, PublishError>> {
        Box::pin(async move {
            self.check(target).map_err(PublishError::NotAllowed)?;
            let cid = *output.cid;
            let store = Arc::clone(&self.store);
            let dir = output.dir.to_owned();
            let expires = self.config.pin_for.map(|d| SystemTime::now() + d);
            let report =
                tokio::task::spawn_blocking(move || store.import_path(&dir, &cid, expires))
                    .await
                    .map_err(|e| failed(format!("import task failed: {e}"), false))?
                    .map_err(|e| match e {
                        StoreError::RootMismatch { .. } => PublishError::Mismatch {
                            expected: cid.to_string(),
                            message: e.to_string(),
                        },
                        // Full may clear once pins expire; the rest is local trouble.
                        StoreError::Full { .. } => failed(e.to_string(), true),
                        e => failed(e.to_string(), false),
                    })?;
            tracing::info!(
                job = output.job,
                shard = output.shard,
                %cid,
                blocks = report.blocks,
                new_bytes = report.new_bytes,
                "output imported into the block store and pinned"
            );
            self.node.provide(cid);
            if let Some(url) = &self.config.rpc_url {
                kubo::push(&self.http, url, &self.store, &cid)
                    .await
                    .map_err(|e| failed(format!("push to Kubo at {url}: {e}"), e.retryable()))?;
            }
            Ok(Location {
                driver: DRIVER.into(),
                url: format!("ipfs://{cid}"),
                providers: self.node.addresses(),
            })
        })
    }
}

fn failed(message: String, retryable: bool) -> PublishError {
    PublishError::failed(DRIVER, message, retryable)
}

/// Chunks of the CAR of `root`, written by a blocking task as the DAG is
/// walked, so a GiB output is never held in memory. An error (a missing
/// block) ends the stream with `Err`; a consumer that stops reading stops
/// the walk.
pub fn car_stream(
    store: Arc<BlockStore>,
    root: Cid,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let mut out = io::BufWriter::with_capacity(256 << 10, ChannelWriter { tx: tx.clone() });
        let result = store
            .write_car(&root, &mut out)
            .and_then(|_| out.flush().map_err(StoreError::Write));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A `Write` that sends what it is given down a channel.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
