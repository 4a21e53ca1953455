//! The compute role: answers bids, queues awarded shards under a slot limit,
//! runs them (see [`worker`]), and reports progress to the requester.
//!
//! A node's shard table lives behind one mutex with short critical sections;
//! the Swarm itself stays in the network task.

mod policy;
mod report;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use shoal_publishers::Publishers;
use shoal_publishers::content::Cid;
use shoal_publishers::target::Location;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use policy::{Load, Offer};

use crate::net::{InboundRequest, NetHandle};
use crate::protocol::job::{
    Beat, JobId, MAX_BEATS_PER_MESSAGE, Request, Response, ShardEvent, ShardRef, ShardTask,
};

/// Settings of the compute role.
pub struct ComputeConfig {
    pub offer: Offer,
    pub work_dir: PathBuf,
    pub heartbeat: Duration,
    pub max_input_bytes: u64,
    /// Directories local inputs may come from (canonical); empty: none.
    pub local_input_roots: Vec<PathBuf>,
    /// How S3 inputs are read; `None` when `[publishers.s3]` is off.
    pub s3: Option<crate::inputs::S3Access>,
    /// How IPFS inputs are fetched.
    pub ipfs: Option<crate::inputs::IpfsAccess>,
    /// Test-only: corrupt every output before hashing it (env
    /// `SHOAL_TEST_CORRUPT_OUTPUT=1`), to exercise verification.
    pub corrupt_output: bool,
}

/// Where a shard is on this node.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Queued,
    Running,
    Computed { cid: Cid, bytes: u64 },
    Publishing { cid: Cid },
    Published { cid: Cid, locations: Vec<Location> },
    Done,
}

struct Entry {
    task: Arc<ShardTask>,
    requester: PeerId,
    stage: Stage,
    cancel: CancellationToken,
}

type Key = (JobId, u32);

pub(crate) struct Inner {
    config: ComputeConfig,
    net: NetHandle,
    publishers: Publishers,
    slots: Semaphore,
    queued: AtomicU32,
    shards: Mutex<HashMap<Key, Entry>>,
    http: reqwest::Client,
}

/// The compute role of a node.
#[derive(Clone)]
pub struct Compute {
    inner: Arc<Inner>,
}

impl Compute {
    /// Creates the role; call [`Compute::run`] to serve requests.
    pub fn new(config: ComputeConfig, net: NetHandle, publishers: Publishers) -> Self {
        let slots = config.offer.capacity.slots as usize;
        Compute {
            inner: Arc::new(Inner {
                config,
                net,
                publishers,
                slots: Semaphore::new(slots),
                queued: AtomicU32::new(0),
                shards: Mutex::new(HashMap::new()),
                http: reqwest::Client::new(),
            }),
        }
    }

    /// Serves job requests and sends heartbeats until `inbound` closes.
    pub async fn run(self, mut inbound: mpsc::Receiver<InboundRequest>) {
        let mut heartbeat = tokio::time::interval(self.inner.config.heartbeat);
        loop {
            tokio::select! {
                request = inbound.recv() => match request {
                    Some(r) => {
                        let response = self.handle(r.peer, r.request);
                        let _ = r.respond.send(response);
                    }
                    None => return,
                },
                _ = heartbeat.tick() => self.heartbeats(),
            }
        }
    }

    fn handle(&self, peer: PeerId, request: Request) -> Response {
        match request {
            Request::Bid(bid) => match policy::evaluate(
                &self.inner.config.offer,
                &self.inner.publishers,
                &peer.to_string(),
                &bid,
                self.load(),
            ) {
                Ok(()) => Response::Bid {
                    free_slots: self.inner.slots.available_permits() as u32,
                    queued: self.inner.queued.load(Ordering::Relaxed),
                },
                Err(decline) => Response::Decline(decline),
            },
            Request::Award(task) => self.award(peer, *task),
            Request::Publish(shard) => self.publish(shard),
            Request::Discard(shard) | Request::Cancel(shard) => {
                self.cancel(&shard);
                Response::Ack
            }
            Request::Ping { nonce } => Response::Pong { nonce },
            Request::Update { .. } | Request::Heartbeat { .. } => Response::Error {
                message: "this peer is a compute node, not a requester".into(),
            },
        }
    }

    fn load(&self) -> Load {
        Load {
            queued: self.inner.queued.load(Ordering::Relaxed),
            free_slots: self.inner.slots.available_permits() as u32,
        }
    }

    fn award(&self, peer: PeerId, task: ShardTask) -> Response {
        let bid = crate::protocol::job::BidRequest {
            shard: task.shard.clone(),
            executor: task.executor.kind().to_owned(),
            resources: task.resources.clone(),
            publish: task.publish.clone(),
            s3_reads: crate::protocol::job::s3_reads(&task.inputs),
        };
        if let Err(decline) = policy::evaluate(
            &self.inner.config.offer,
            &self.inner.publishers,
            &peer.to_string(),
            &bid,
            self.load(),
        ) {
            return Response::Decline(decline);
        }
        let key = (task.shard.job.clone(), task.shard.index);
        let task = Arc::new(task);
        let cancel = CancellationToken::new();
        {
            let Ok(mut shards) = self.inner.shards.lock() else {
                return Response::Error {
                    message: "node state poisoned".into(),
                };
            };
            if let Some(existing) = shards.get(&key) {
                if existing.task.shard.attempt == task.shard.attempt {
                    return Response::Ack; // a retried award: already ours
                }
                existing.cancel.cancel();
            }
            shards.insert(
                key,
                Entry {
                    task: task.clone(),
                    requester: peer,
                    stage: Stage::Queued,
                    cancel: cancel.clone(),
                },
            );
        }
        info!(shard = %task.shard, requester = %peer, "shard awarded");
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(worker::run(self.inner.clone(), task, peer, cancel));
        Response::Ack
    }

    fn publish(&self, shard: ShardRef) -> Response {
        let key = (shard.job.clone(), shard.index);
        let Ok(mut shards) = self.inner.shards.lock() else {
            return Response::Error {
                message: "node state poisoned".into(),
            };
        };
        let Some(entry) = shards.get_mut(&key) else {
            return Response::Error {
                message: format!("shard {shard} is not held by this node"),
            };
        };
        if entry.task.shard.attempt != shard.attempt {
            return Response::Error {
                message: format!("shard {shard}: this node holds another attempt"),
            };
        }
        match entry.stage.clone() {
            Stage::Computed { cid, .. } => {
                entry.stage = Stage::Publishing { cid };
                let task = entry.task.clone();
                let requester = entry.requester;
                let cancel = entry.cancel.clone();
                tokio::spawn(worker::publish_and_report(
                    self.inner.clone(),
                    task,
                    requester,
                    cid,
                    cancel,
                ));
                Response::Ack
            }
            Stage::Publishing { .. } => Response::Ack,
            Stage::Published { cid, locations } => {
                // The requester lost our report (e.g. it restarted): again.
                let requester = entry.requester;
                tokio::spawn(report::send(
                    self.inner.clone(),
                    requester,
                    shard,
                    ShardEvent::Published {
                        cid: cid.to_string(),
                        locations,
                    },
                ));
                Response::Ack
            }
            other => Response::Error {
                message: format!("shard {shard} cannot be published while {other:?}"),
            },
        }
    }

    fn cancel(&self, shard: &ShardRef) {
        let key = (shard.job.clone(), shard.index);
        if let Ok(mut shards) = self.inner.shards.lock()
            && let Some(entry) = shards.get(&key)
            && entry.task.shard.attempt == shard.attempt
        {
            entry.cancel.cancel();
            shards.remove(&key);
            info!(%shard, "shard cancelled or discarded");
        }
    }

    /// Tells each requester, in one message per requester, that the shards
    /// we hold for it are alive; forgets shards the requester disowns.
    fn heartbeats(&self) {
        let mut by_requester: HashMap<PeerId, Vec<Beat>> = HashMap::new();
        match self.inner.shards.lock() {
            Ok(shards) => {
                for e in shards
                    .values()
                    // Published counts until the requester acknowledged the
                    // report: it keeps the requester from re-bidding meanwhile.
                    .filter(|e| e.stage != Stage::Done)
                {
                    by_requester.entry(e.requester).or_default().push(Beat {
                        shard: e.task.shard.clone(),
                        queued: e.stage == Stage::Queued,
                    });
                }
            }
            Err(_) => return,
        }
        for (requester, beats) in by_requester {
            for chunk in beats.chunks(MAX_BEATS_PER_MESSAGE) {
                let inner = self.inner.clone();
                let request = Request::Heartbeat {
                    shards: chunk.to_vec(),
                };
                let compute = self.clone();
                tokio::spawn(async move {
                    match inner.net.request(requester, request).await {
                        Ok(Response::Stale { shards }) => {
                            for shard in shards {
                                compute.cancel(&shard);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => warn!("heartbeat not delivered: {e}"),
                    }
                });
            }
        }
    }
}

impl Inner {
    fn set_stage(&self, shard: &ShardRef, stage: Stage) {
        if let Ok(mut shards) = self.shards.lock()
            && let Some(entry) = shards.get_mut(&(shard.job.clone(), shard.index))
            && entry.task.shard.attempt == shard.attempt
        {
            entry.stage = stage;
        }
    }

    fn forget(&self, shard: &ShardRef) {
        if let Ok(mut shards) = self.shards.lock() {
            let key = (shard.job.clone(), shard.index);
            if shards
                .get(&key)
                .is_some_and(|e| e.task.shard.attempt == shard.attempt)
            {
                shards.remove(&key);
            }
        }
    }

    async fn announce_free_slots(&self) {
        let free = self.slots.available_permits() as u32;
        let _ = self
            .net
            .update_info(move |info| info.free_slots = free)
            .await;
    }
}

/// The executors a config enables, for announcements and bidding.
pub fn enabled_executors(shell: bool) -> Vec<String> {
    let mut executors = Vec::new();
    if shell {
        executors.push("shell".to_owned());
    }
    executors
}

/// A set of requester peer ids from config strings.
pub fn allow_list(peers: &[String]) -> HashSet<String> {
    peers.iter().cloned().collect()
}
