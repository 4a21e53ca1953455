//! Job and shard orchestration: bid rounds over the k top-ranked nodes,
//! awards, heartbeats, re-bids, verification by CID vote, publication.
//!
//! Each shard has one driver task ([`shard`]) that owns its progress; the
//! table of jobs is shared behind a mutex so the API can read it, and every
//! change is written to the [`Store`].

mod bidding;
mod shard;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use shoal_node::libp2p;
use shoal_node::net::{InboundRequest, NetHandle};
use shoal_node::protocol::job::{Request, Response, ShardEvent, ShardRef};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::model::{
    JobRecord, JobState, JobSummary, JobView, Manifest, ManifestEntry, ShardRecord, ShardState,
    count_states, now_ms,
};
use crate::sharding;
use crate::spec::{InputSource, JobSpec};
use crate::store::Store;

/// Tunables of the orchestrator.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// How long a bidder has to answer.
    pub bid_timeout: Duration,
    /// A node silent this long about a shard loses it.
    pub heartbeat_timeout: Duration,
    /// Awards beyond the replica count before a shard fails.
    pub max_retries: u32,
    /// Wait before bidding again when every node was busy.
    pub busy_retry: Duration,
    /// Bid rounds in flight at once, across all shards.
    pub max_concurrent_rounds: usize,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            bid_timeout: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
            max_retries: 3,
            busy_retry: Duration::from_millis(500),
            max_concurrent_rounds: 256,
        }
    }
}

/// Why a job could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("{0}")]
    Sharding(#[from] sharding::ShardingError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A message from a node about a shard, routed to its driver.
pub(crate) struct Update {
    pub peer: PeerId,
    pub shard: ShardRef,
    pub event: ShardEvent,
}

pub(crate) struct JobEntry {
    pub record: JobRecord,
    pub shards: Vec<ShardRecord>,
    pub cancel: CancellationToken,
}

pub(crate) struct Inner {
    pub net: NetHandle,
    pub store: Store,
    /// Where directory blocks of IPFS inputs land while being listed.
    pub blocks: Arc<shoal_publishers::ipfs::BlockStore>,
    pub config: OrchestratorConfig,
    pub jobs: Mutex<HashMap<String, JobEntry>>,
    pub routes: Mutex<HashMap<(String, u32), mpsc::UnboundedSender<Update>>>,
    pub rounds: Semaphore,
}

/// The requester's orchestrator; cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

impl Orchestrator {
    /// An orchestrator over `net` and `store`; call [`Orchestrator::resume`].
    pub fn new(
        net: NetHandle,
        store: Store,
        blocks: Arc<shoal_publishers::ipfs::BlockStore>,
        config: OrchestratorConfig,
    ) -> Self {
        let rounds = Semaphore::new(config.max_concurrent_rounds.max(1));
        Orchestrator {
            inner: Arc::new(Inner {
                net,
                store,
                blocks,
                config,
                jobs: Mutex::new(HashMap::new()),
                routes: Mutex::new(HashMap::new()),
                rounds,
            }),
        }
    }

    /// Loads every job from the store and resumes the unfinished ones.
    pub fn resume(&self) -> Result<usize, crate::store::StoreError> {
        let mut resumed = 0;
        for (record, shards) in self.inner.store.load()? {
            let running = record.state == JobState::Running;
            let id = record.id.clone();
            let indices: Vec<u32> = shards
                .iter()
                .filter(|s| !s.state.is_terminal())
                .map(|s| s.index)
                .collect();
            self.insert(record, shards);
            if running {
                info!(job = %id, shards = indices.len(), "resuming job");
                for index in indices {
                    self.spawn_shard(&id, index);
                }
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Validates, shards, stores and starts a job.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobView, SubmitError> {
        spec.validate()?;
        let source = spec.inputs.clone();
        let glob = spec.sharding.glob.clone();
        let batch = spec.sharding.batch_size;
        let listed = match &source {
            InputSource::S3(s3) => Some(sharding::list_s3(s3).await?),
            InputSource::Ipfs(ipfs) => {
                Some(sharding::list_ipfs(&self.inner.net, &self.inner.blocks, ipfs).await?)
            }
            _ => None,
        };
        let shards = tokio::task::spawn_blocking(move || {
            let files = match listed {
                Some(files) => files,
                None => sharding::list_inputs(&source)?,
            };
            sharding::cut(files, &glob, batch)
        })
        .await
        .map_err(|e| SubmitError::Internal(e.to_string()))??;
        let id = new_job_id();
        let record = JobRecord {
            id: id.clone(),
            name: spec.name.clone(),
            state: JobState::Running,
            spec,
            shard_count: shards.len() as u32,
            created_at_ms: now_ms(),
            finished_at_ms: None,
            disagreements: Vec::new(),
        };
        let shards: Vec<ShardRecord> = shards
            .into_iter()
            .map(|s| ShardRecord::new(s.index, s.placement_key, s.inputs))
            .collect();
        self.inner.store.put_job(&record);
        for shard in &shards {
            self.inner.store.put_shard(&id, shard);
        }
        self.inner.store.flush().await;
        info!(job = %id, shards = shards.len(), "job submitted");
        let count = shards.len() as u32;
        self.insert(record, shards);
        for index in 0..count {
            self.spawn_shard(&id, index);
        }
        self.describe(&id)
            .ok_or_else(|| SubmitError::Internal("job vanished".into()))
    }

    fn insert(&self, record: JobRecord, shards: Vec<ShardRecord>) {
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            jobs.insert(
                record.id.clone(),
                JobEntry {
                    record,
                    shards,
                    cancel: CancellationToken::new(),
                },
            );
        }
    }

    fn spawn_shard(&self, job: &str, index: u32) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = match self.inner.jobs.lock() {
            Ok(jobs) => match jobs.get(job) {
                Some(entry) => entry.cancel.clone(),
                None => return,
            },
            Err(_) => return,
        };
        if let Ok(mut routes) = self.inner.routes.lock() {
            routes.insert((job.to_owned(), index), tx);
        }
        tokio::spawn(shard::drive(
            self.inner.clone(),
            job.to_owned(),
            index,
            rx,
            cancel,
        ));
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<JobSummary> {
        let Ok(jobs) = self.inner.jobs.lock() else {
            return Vec::new();
        };
        let mut out: Vec<JobSummary> = jobs
            .values()
            .map(|e| JobSummary {
                id: e.record.id.clone(),
                name: e.record.name.clone(),
                state: e.record.state,
                shard_count: e.record.shard_count,
                counts: count_states(e.shards.iter()),
                created_at_ms: e.record.created_at_ms,
            })
            .collect();
        out.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
        out
    }

    /// One job with every shard.
    pub fn describe(&self, id: &str) -> Option<JobView> {
        let jobs = self.inner.jobs.lock().ok()?;
        let e = jobs.get(id)?;
        Some(JobView {
            id: e.record.id.clone(),
            name: e.record.name.clone(),
            state: e.record.state,
            created_at_ms: e.record.created_at_ms,
            finished_at_ms: e.record.finished_at_ms,
            counts: count_states(e.shards.iter()),
            disagreements: e.record.disagreements.clone(),
            shards: e.shards.clone(),
        })
    }

    /// The job's manifest: shard -> node -> CID -> locations.
    pub fn manifest(&self, id: &str) -> Option<Manifest> {
        let jobs = self.inner.jobs.lock().ok()?;
        let e = jobs.get(id)?;
        Some(Manifest {
            job: e.record.id.clone(),
            state: e.record.state,
            shards: e
                .shards
                .iter()
                .map(|s| ManifestEntry {
                    shard: s.index,
                    state: s.state,
                    node: s.node.clone(),
                    cid: s.cid.clone(),
                    locations: s.locations.clone(),
                })
                .collect(),
        })
    }

    /// Cancels a job: its drivers tell their nodes to stop.
    pub fn cancel(&self, id: &str) -> Option<JobView> {
        {
            let jobs = self.inner.jobs.lock().ok()?;
            jobs.get(id)?.cancel.cancel();
        }
        self.describe(id)
    }

    /// Serves requests nodes send us (progress updates) until `inbound` closes.
    pub async fn serve_inbound(self, mut inbound: mpsc::Receiver<InboundRequest>) {
        while let Some(request) = inbound.recv().await {
            let response = match request.request {
                Request::Update { shard, event } => self.route(request.peer, shard, event),
                Request::Heartbeat { shards } => {
                    let stale: Vec<ShardRef> = shards
                        .into_iter()
                        .filter(|beat| {
                            let event = ShardEvent::Running {
                                queued: beat.queued,
                            };
                            self.route(request.peer, beat.shard.clone(), event) != Response::Ack
                        })
                        .map(|beat| beat.shard)
                        .collect();
                    if stale.is_empty() {
                        Response::Ack
                    } else {
                        Response::Stale { shards: stale }
                    }
                }
                Request::Ping { nonce } => Response::Pong { nonce },
                _ => Response::Error {
                    message: "this peer is a requester; it does not run shards".into(),
                },
            };
            let _ = request.respond.send(response);
        }
    }

    /// Hands an update to its shard's driver if `peer` holds that attempt.
    fn route(&self, peer: PeerId, shard: ShardRef, event: ShardEvent) -> Response {
        let node = peer.to_string();
        let holds = self.inner.jobs.lock().ok().and_then(|jobs| {
            let entry = jobs.get(&shard.job.0)?;
            let record = entry.shards.get(shard.index as usize)?;
            Some(
                record
                    .replicas
                    .iter()
                    .any(|r| r.node == node && r.attempt == shard.attempt && r.is_active()),
            )
        });
        if holds != Some(true) {
            return Response::Error {
                message: format!("shard {shard} is not awarded to {node}"),
            };
        }
        let sender = self
            .inner
            .routes
            .lock()
            .ok()
            .and_then(|r| r.get(&(shard.job.0.clone(), shard.index)).cloned());
        match sender {
            Some(tx) if tx.send(Update { peer, shard, event }).is_ok() => Response::Ack,
            _ => {
                warn!("update for a shard without a driver");
                Response::Error {
                    message: "shard is finished".into(),
                }
            }
        }
    }
}

impl Inner {
    /// A copy of one shard's record and its job's spec.
    pub fn shard(&self, job: &str, index: u32) -> Option<(ShardRecord, JobSpec)> {
        let jobs = self.jobs.lock().ok()?;
        let e = jobs.get(job)?;
        Some((e.shards.get(index as usize)?.clone(), e.record.spec.clone()))
    }

    /// Stores a shard's new record; finishes the job when every shard is done.
    pub fn save(&self, job: &str, shard: &ShardRecord) {
        let Ok(mut jobs) = self.jobs.lock() else {
            return;
        };
        let Some(entry) = jobs.get_mut(job) else {
            return;
        };
        if let Some(slot) = entry.shards.get_mut(shard.index as usize) {
            *slot = shard.clone();
        }
        self.store.put_shard(job, shard);
        if shard.state.is_terminal()
            && entry.record.state == JobState::Running
            && entry.shards.iter().all(|s| s.state.is_terminal())
        {
            let state = if entry.cancel.is_cancelled() {
                JobState::Cancelled
            } else if entry
                .shards
                .iter()
                .all(|s| s.state == ShardState::Published)
            {
                JobState::Completed
            } else {
                JobState::Failed
            };
            entry.record.state = state;
            entry.record.finished_at_ms = Some(now_ms());
            info!(job, ?state, "job finished");
            self.store.put_job(&entry.record);
        }
    }

    /// Records an outvoted replica on the job.
    pub fn record_disagreement(&self, job: &str, d: crate::model::Disagreement) {
        if let Ok(mut jobs) = self.jobs.lock()
            && let Some(entry) = jobs.get_mut(job)
        {
            entry.record.disagreements.push(d);
            self.store.put_job(&entry.record);
        }
    }

    /// Forgets a finished shard's route.
    pub fn unroute(&self, job: &str, index: u32) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&(job.to_owned(), index));
        }
    }
}

fn new_job_id() -> String {
    format!("j{:x}{:06x}", now_ms(), rand::random::<u32>() & 0xff_ffff)
}
