//! Bid rounds: rank eligible members by the shard's placement key, ask the
//! top k, widen to the next k only when too few bid, and award.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use libp2p::PeerId;
use shoal_node::libp2p;
use shoal_node::placement::{self, Candidate};
use shoal_node::protocol::job::{
    BidRequest, JobId, PublishMode, Request, Response, ShardRef, ShardTask,
};
use shoal_node::protocol::membership::{NodeInfo, Role};

use super::Inner;
use crate::model::{Replica, ReplicaState, ShardRecord};
use crate::spec::{JobSpec, Verify};

/// A member placement can rank.
pub(crate) struct Member {
    pub info: NodeInfo,
    pub peer: PeerId,
    id: Vec<u8>,
}

impl Candidate for Member {
    fn id(&self) -> &[u8] {
        &self.id
    }
    fn weight(&self) -> f64 {
        f64::from(self.info.capacity.slots)
    }
}

/// Whether a member can run shards of `spec`; the reason if not.
pub(crate) fn eligibility(info: &NodeInfo, spec: &JobSpec) -> Result<(), String> {
    if !info.roles.contains(&Role::Compute) {
        return Err("not a compute node".into());
    }
    let executor = spec.executor.kind();
    if !info.executors.iter().any(|e| e == executor) {
        return Err(format!("executor {executor} not enabled"));
    }
    for target in &spec.publish {
        if !info.publishers.iter().any(|p| p == target.kind()) {
            return Err(format!("no {} publisher", target.kind()));
        }
    }
    if spec.resources.cpu > info.capacity.cpu {
        return Err(format!(
            "offers {} cpu, job needs {}",
            info.capacity.cpu, spec.resources.cpu
        ));
    }
    for (key, value) in &spec.placement.labels {
        if info.labels.get(key) != Some(value) {
            return Err(format!("label {key}={value} missing"));
        }
    }
    Ok(())
}

/// Every live member as a placement candidate.
pub(crate) fn members(inner: &Inner) -> Vec<Member> {
    inner
        .net
        .snapshot()
        .members
        .into_iter()
        .filter_map(|info| {
            let peer: PeerId = info.peer_id.parse().ok()?;
            Some(Member {
                id: peer.to_bytes(),
                peer,
                info,
            })
        })
        .collect()
}

/// What a round of bidding and awarding achieved.
pub(crate) struct RoundOutcome {
    pub awarded: usize,
    /// Some node declined only for now (queue full, timeout).
    pub transient: bool,
    /// No member is eligible at all; why, per member.
    pub none_eligible: Option<String>,
}

/// Asks the top-k eligible nodes (widening by k while too few bid) and
/// awards up to `need` replicas. Mutates `record` (counts, reasons,
/// replicas); the caller saves it.
pub(crate) async fn bid_and_award(
    inner: &Inner,
    job: &str,
    spec: &JobSpec,
    record: &mut ShardRecord,
    need: usize,
    last_seen: &mut HashMap<(String, u32), Instant>,
) -> RoundOutcome {
    let members = members(inner);
    let busy: Vec<String> = record
        .replicas
        .iter()
        .filter(|r| r.is_active())
        .map(|r| r.node.clone())
        .collect();
    let mut ineligible = Vec::new();
    let eligible: Vec<&Member> = members
        .iter()
        .filter(|m| match eligibility(&m.info, spec) {
            Ok(()) => true,
            Err(why) => {
                ineligible.push(format!("{}: {why}", short(&m.info.peer_id)));
                false
            }
        })
        .filter(|m| !record.excluded.contains(&m.info.peer_id) && !busy.contains(&m.info.peer_id))
        .collect();
    if eligible.is_empty() {
        let why = if ineligible.is_empty() {
            "every eligible node already failed or holds this shard".to_owned()
        } else {
            ineligible.join("; ")
        };
        return RoundOutcome {
            awarded: 0,
            transient: false,
            none_eligible: Some(why),
        };
    }
    let key = hex::decode(&record.placement_key).unwrap_or_default();
    let ranked: Vec<&Member> = placement::rank(&key, &eligible).copied().collect();
    let k = spec.placement.bidders.max(1) as usize;
    let mut outcome = RoundOutcome {
        awarded: 0,
        transient: false,
        none_eligible: None,
    };
    let Ok(_permit) = inner.rounds.acquire().await else {
        return outcome;
    };
    for batch in ranked.chunks(k) {
        if outcome.awarded >= need {
            break;
        }
        let request = BidRequest {
            shard: ShardRef {
                job: JobId(job.to_owned()),
                index: record.index,
                attempt: record.attempts + 1,
            },
            executor: spec.executor.kind().to_owned(),
            resources: spec.resources(),
            publish: spec.publish.clone(),
            s3_reads: shoal_node::protocol::job::s3_reads(&record.inputs),
        };
        record.bid_requests_sent += batch.len() as u32;
        record
            .bidders_asked
            .extend(batch.iter().map(|m| m.info.peer_id.clone()));
        let answers = join_all(batch.iter().map(|m| {
            let net = inner.net.clone();
            let request = Request::Bid(request.clone());
            let peer = m.peer;
            let timeout = inner.config.bid_timeout;
            async move { tokio::time::timeout(timeout, net.request(peer, request)).await }
        }))
        .await;
        for (member, answer) in batch.iter().zip(answers) {
            if outcome.awarded >= need {
                break;
            }
            let node = &member.info.peer_id;
            match answer {
                Ok(Ok(Response::Bid { .. })) => {
                    if award(inner, job, spec, record, member).await {
                        last_seen.insert((node.clone(), record.attempts), Instant::now());
                        outcome.awarded += 1;
                    } else {
                        outcome.transient = true;
                    }
                }
                Ok(Ok(Response::Decline(d))) => {
                    outcome.transient |= d.transient;
                    record
                        .reasons
                        .push(format!("{} declined: {}", short(node), d.reason));
                }
                Ok(Ok(other)) => record
                    .reasons
                    .push(format!("{} answered a bid with {other:?}", short(node))),
                Ok(Err(e)) => {
                    outcome.transient = true;
                    record
                        .reasons
                        .push(format!("{} bid failed: {e}", short(node)));
                }
                Err(_) => {
                    outcome.transient = true;
                    record.reasons.push(format!(
                        "{} did not bid within {:?}",
                        short(node),
                        inner.config.bid_timeout
                    ));
                }
            }
        }
    }
    trim_reasons(record);
    outcome
}

/// Sends the award; on acceptance adds the replica. Returns whether taken.
async fn award(
    inner: &Inner,
    job: &str,
    spec: &JobSpec,
    record: &mut ShardRecord,
    member: &Member,
) -> bool {
    record.attempts += 1;
    let shard = ShardRef {
        job: JobId(job.to_owned()),
        index: record.index,
        attempt: record.attempts,
    };
    let task = ShardTask {
        shard: shard.clone(),
        executor: spec.executor.clone(),
        inputs: record.inputs.clone(),
        resources: spec.resources(),
        publish: spec.publish.clone(),
        mode: match spec.verify {
            Verify::None => PublishMode::Immediately,
            Verify::Deterministic => PublishMode::OnRequest,
        },
    };
    let node = member.info.peer_id.clone();
    // The replica is recorded before the award goes out, so an update that
    // races the award's answer is routed rather than refused.
    record.replicas.push(Replica {
        node: node.clone(),
        attempt: shard.attempt,
        state: ReplicaState::Awarded,
        cid: None,
    });
    inner.save(job, record);
    // Durable before it goes out: a requester killed right after the award
    // must not award the shard again when it restarts.
    inner.store.flush().await;
    let answer = tokio::time::timeout(
        inner.config.bid_timeout,
        inner
            .net
            .request(member.peer, Request::Award(Box::new(task))),
    )
    .await;
    let refused = match answer {
        Ok(Ok(Response::Ack)) => None,
        Ok(Ok(Response::Decline(d))) => Some(format!("declined the award: {}", d.reason)),
        Ok(Ok(other)) => Some(format!("answered the award with {other:?}")),
        Ok(Err(e)) => Some(format!("award failed: {e}")),
        Err(_) => Some("did not answer the award".to_owned()),
    };
    match refused {
        None => true,
        Some(why) => {
            if let Some(r) = record
                .replicas
                .iter_mut()
                .find(|r| r.node == node && r.attempt == shard.attempt)
            {
                r.state = ReplicaState::Failed;
            }
            record.reasons.push(format!("{} {why}", short(&node)));
            false
        }
    }
}

/// Keeps the reason list readable when a shard is retried many times.
fn trim_reasons(record: &mut ShardRecord) {
    const MAX: usize = 50;
    if record.reasons.len() > MAX {
        let drop = record.reasons.len() - MAX;
        record.reasons.drain(..drop);
    }
}

/// A peer id shortened for messages: the last 8 characters.
pub(crate) fn short(peer: &str) -> &str {
    let start = peer.len().saturating_sub(8);
    peer.get(start..).unwrap_or(peer)
}

/// How long to wait before the next bid when every node was busy.
pub(crate) fn busy_backoff(base: Duration, rounds: u32) -> Duration {
    (base * (1 + rounds.min(10))).min(Duration::from_secs(10))
}
