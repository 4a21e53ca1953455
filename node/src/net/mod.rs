//! The libp2p network: one task owns the Swarm (see [`event_loop`]); the rest
//! of the program talks to it through [`NetHandle`], a command channel with
//! oneshot answers, and reads membership from a `watch` snapshot.

mod behaviour;
mod event_loop;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use shoal_publishers::content::Cid;
use shoal_publishers::ipfs::BlockStore;
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::job::{Request, Response};
use crate::protocol::membership::NodeInfo;

pub use behaviour::Behaviour;

/// What the network needs to start.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub announce_interval: Duration,
    pub ttl: Duration,
    /// Our own entry; its `peer_id`, `listen_addrs` and `seq` are filled in by
    /// the network.
    pub info: NodeInfo,
}

/// What the network publishes for the status endpoint and the program.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub members: Vec<NodeInfo>,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Gossip messages dropped, by reason (garbled, oversized, ...).
    pub dropped_messages: BTreeMap<String, u64>,
}

/// Why a network operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("request to {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("cannot start the network: {0}")]
    Start(String),
    #[error("cannot connect to {peer}: {reason}")]
    Dial { peer: PeerId, reason: String },
    #[error("{0}")]
    Bitswap(String),
    #[error("DHT provider query for {cid} failed: {reason}")]
    Providers { cid: Cid, reason: String },
}

/// A request a remote peer sent us; answer through `respond`.
pub struct InboundRequest {
    pub peer: PeerId,
    pub request: Request,
    pub respond: oneshot::Sender<Response>,
}

pub(crate) enum Command {
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    UpdateInfo(Box<dyn FnOnce(&mut NodeInfo) + Send>),
    PublishRaw {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Kademlia `start_providing`.
    Provide {
        cid: Cid,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Kademlia `get_providers`, collected until the query ends.
    FindProviders {
        cid: Cid,
        reply: oneshot::Sender<Result<Vec<PeerId>, NetError>>,
    },
    /// Dial a peer (unless connected) and answer once connected.
    Connect {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Bitswap get; the block arrives verified by beetswap.
    FetchBlock {
        cid: Cid,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
}

/// A cheap, cloneable handle to the network task.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Snapshot>,
    peer_id: PeerId,
}

impl NetHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The latest membership and network snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// Whether `peer_id` is in the current membership view (no copy made).
    pub fn is_member(&self, peer_id: &str) -> bool {
        self.snapshot
            .borrow()
            .members
            .iter()
            .any(|m| m.peer_id == peer_id)
    }

    /// A receiver that wakes on every snapshot change.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// Sends a request to `peer` and waits for its answer.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request {
            peer,
            request,
            reply,
        })
        .await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Changes our own entry (e.g. free slots) and re-announces it within
    /// 200 ms (changes in between are batched into one announcement).
    pub async fn update_info(
        &self,
        change: impl FnOnce(&mut NodeInfo) + Send + 'static,
    ) -> Result<(), NetError> {
        self.send(Command::UpdateInfo(Box::new(change))).await
    }

    /// Publishes arbitrary bytes on the membership topic. Only tests and
    /// diagnostics use this, to check that peers drop what is not valid.
    pub async fn publish_raw(&self, bytes: Vec<u8>) -> Result<(), NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PublishRaw { bytes, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Announces that we leave, gives the message a moment to go out, and
    /// stops the network task.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Announces this node as a provider of `cid` in the DHT.
    pub async fn provide(&self, cid: Cid) -> Result<(), NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Provide { cid, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Peers the DHT names as providers of `cid` (this node included if it is one).
    pub async fn find_providers(&self, cid: Cid) -> Result<Vec<PeerId>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::FindProviders { cid, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Connects to `peer` (at `addrs`, or where Kademlia knows it to be);
    /// returns at once if already connected.
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Connect { peer, addrs, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Asks every connected peer for the block `cid` over Bitswap and waits
    /// for it (from the local block store if it is there). No timeout: wrap
    /// the call in one; a dropped call is cancelled. The bytes are checked
    /// against the CID again here, whatever Bitswap did.
    pub async fn fetch_block(&self, cid: Cid) -> Result<Vec<u8>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::FetchBlock { cid, reply }).await?;
        let data = rx.await.map_err(|_| NetError::Stopped)??;
        shoal_publishers::ipfs::store::verify(&cid, &data)
            .map_err(|e| NetError::Bitswap(format!("received {e}")))?;
        Ok(data)
    }

    async fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetError::Stopped)
    }
}

/// Starts the network task. Inbound job requests go to `inbound`; if it is
/// `None` they are answered with an error.
pub async fn start(
    keypair: Keypair,
    config: NetConfig,
    inbound: Option<mpsc::Sender<InboundRequest>>,
) -> Result<NetHandle, NetError> {
    start_with_store(keypair, config, inbound, None).await
}

/// [`start`], serving (and fetching into) `blocks` over Bitswap. Without a
/// store, Bitswap answers that it has nothing and cannot fetch.
pub async fn start_with_store(
    keypair: Keypair,
    config: NetConfig,
    inbound: Option<mpsc::Sender<InboundRequest>>,
    blocks: Option<Arc<BlockStore>>,
) -> Result<NetHandle, NetError> {
    let peer_id = keypair.public().to_peer_id();
    let swarm = behaviour::build_swarm(&keypair, &config, blocks).map_err(NetError::Start)?;
    let (commands, commands_rx) = mpsc::channel(256);
    let (snapshot_tx, snapshot) = watch::channel(Snapshot::default());
    let event_loop =
        event_loop::EventLoop::new(swarm, keypair, config, commands_rx, snapshot_tx, inbound)?;
    tokio::spawn(event_loop.run());
    Ok(NetHandle {
        commands,
        snapshot,
        peer_id,
    })
}
