//! One shard's driver: the shard state machine from pending to published
//! (or failed, or cancelled). Every transition is saved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_node::libp2p::PeerId;
use shoal_node::protocol::job::{JobId, Request, Response, ShardEvent, ShardRef};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::bidding::{self, busy_backoff, short};
use super::{Inner, Update};
use crate::model::{Disagreement, ReplicaState, ShardRecord, ShardState};
use crate::spec::JobSpec;

type Seen = HashMap<(String, u32), Instant>;

/// Drives shard `index` of `job` until it is finished.
pub(super) async fn drive(
    inner: Arc<Inner>,
    job: String,
    index: u32,
    mut updates: UnboundedReceiver<Update>,
    cancel: CancellationToken,
) {
    let span = info_span!("shard", job = %job, shard = index);
    async move {
        let mut seen: Seen = HashMap::new();
        let mut busy_rounds = 0u32;
        // A requester that just (re)started has not heard every member yet:
        // until one heartbeat timeout has passed, absence from the membership
        // view proves nothing, and only missed heartbeats count.
        let trust_membership_after = Instant::now() + inner.config.heartbeat_timeout;
        while let Some((mut rec, spec)) = inner.shard(&job, index) {
            if rec.state.is_terminal() {
                break;
            }
            if cancel.is_cancelled() {
                stop_replicas(&inner, &job, &mut rec, Stop::Cancel).await;
                rec.state = ShardState::Cancelled;
                inner.save(&job, &rec);
                break;
            }
            let now = Instant::now();
            for r in rec.replicas.iter().filter(|r| r.is_active()) {
                seen.entry((r.node.clone(), r.attempt)).or_insert(now);
            }
            let wanted = spec.placement.replicas.max(1) as usize;
            let active = rec.replicas.iter().filter(|r| r.is_active()).count();
            if rec.state != ShardState::Publishing && active < wanted {
                let budget = wanted as u32 + inner.config.max_retries;
                if rec.attempts >= budget {
                    let reason = format!("gave up after {} attempts", rec.attempts);
                    fail(&inner, &job, &mut rec, reason).await;
                    break;
                }
                rec.state = ShardState::Bidding;
                inner.save(&job, &rec);
                let outcome =
                    bidding::bid_and_award(&inner, &job, &spec, &mut rec, wanted - active, &mut seen).await;
                if outcome.awarded > 0 {
                    busy_rounds = 0;
                    rec.state = progress_state(&rec);
                    inner.save(&job, &rec);
                    continue;
                }
                if let Some(why) = outcome.none_eligible {
                    if active == 0 {
                        fail(&inner, &job, &mut rec, format!("no eligible node: {why}")).await;
                        break;
                    }
                } else if outcome.transient {
                    inner.save(&job, &rec);
                    busy_rounds += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(busy_backoff(inner.config.busy_retry, busy_rounds)) => {}
                        _ = cancel.cancelled() => {}
                    }
                    continue;
                } else if active == 0 {
                    fail(&inner, &job, &mut rec, "every node asked declined".into()).await;
                    break;
                }
            }
            if rec.state != ShardState::Publishing
                && active >= wanted
                && rec
                    .replicas
                    .iter()
                    .filter(|r| r.is_active())
                    .all(|r| r.state == ReplicaState::Computed)
            {
                verify_and_publish(&inner, &job, &spec, &mut rec).await;
                continue;
            }
            // Wait for news, a missed heartbeat, or a cancel.
            let wake = next_deadline(&rec, &seen, inner.config.heartbeat_timeout)
                .min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                update = updates.recv() => match update {
                    Some(u) => apply(&inner, &job, &mut rec, &mut seen, u).await,
                    None => break,
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    let membership = Instant::now() >= trust_membership_after;
                    check_liveness(&inner, &job, &mut rec, &seen, membership).await;
                }
                _ = cancel.cancelled() => {}
            }
        }
        inner.unroute(&job, index);
    }
    .instrument(span)
    .await
}

/// The shard state that reflects its replicas while they work.
fn progress_state(rec: &ShardRecord) -> ShardState {
    let active = rec.replicas.iter().filter(|r| r.is_active());
    if active.clone().any(|r| r.state != ReplicaState::Awarded) {
        ShardState::Running
    } else {
        ShardState::Awarded
    }
}

fn next_deadline(rec: &ShardRecord, seen: &Seen, timeout: Duration) -> Instant {
    rec.replicas
        .iter()
        .filter(|r| r.is_active() && r.state != ReplicaState::Published)
        .filter_map(|r| seen.get(&(r.node.clone(), r.attempt)))
        .map(|t| *t + timeout)
        .min()
        .unwrap_or_else(|| Instant::now() + timeout)
}

async fn apply(inner: &Inner, job: &str, rec: &mut ShardRecord, seen: &mut Seen, u: Update) {
    let node = u.peer.to_string();
    let attempt = u.shard.attempt;
    let Some(pos) = rec
        .replicas
        .iter()
        .position(|r| r.node == node && r.attempt == attempt && r.is_active())
    else {
        return;
    };
    seen.insert((node.clone(), attempt), Instant::now());
    match u.event {
        ShardEvent::Running { queued } => {
            let r = &mut rec.replicas[pos];
            if r.state == ReplicaState::Awarded && !queued {
                r.state = ReplicaState::Running;
            }
            if matches!(rec.state, ShardState::Awarded | ShardState::Running) {
                rec.state = progress_state(rec);
            }
        }
        ShardEvent::Computed { cid, .. } => {
            let r = &mut rec.replicas[pos];
            r.state = ReplicaState::Computed;
            r.cid = Some(cid);
            let wanted_all = rec
                .replicas
                .iter()
                .filter(|r| r.is_active())
                .all(|r| r.state == ReplicaState::Computed);
            rec.state = if wanted_all {
                ShardState::Computed
            } else {
                ShardState::Running
            };
        }
        ShardEvent::Published { cid, locations } => {
            // With verification, what was published must hash to the CID
            // the majority agreed on; the node re-hashed it when publishing.
            if let Some(expected) = rec.cid.clone()
                && expected != cid
            {
                lose(
                    inner,
                    job,
                    rec,
                    pos,
                    format!("published CID {cid}, but the verified CID is {expected}"),
                )
                .await;
                inner.save(job, rec);
                return;
            }
            let r = &mut rec.replicas[pos];
            r.state = ReplicaState::Published;
            r.cid = Some(cid.clone());
            rec.cid = Some(cid);
            rec.node = Some(node);
            rec.locations = locations;
            rec.state = ShardState::Published;
            info!(cid = rec.cid.as_deref().unwrap_or(""), "shard published");
            stop_replicas(inner, job, rec, Stop::Discard).await;
        }
        ShardEvent::Failed { reason } => {
            lose(inner, job, rec, pos, reason).await;
        }
    }
    inner.save(job, rec);
}

/// Marks replica `pos` failed with `reason`, excludes its node, and if it was
/// publishing hands publication to another majority replica.
async fn lose(inner: &Inner, job: &str, rec: &mut ShardRecord, pos: usize, reason: String) {
    let r = &mut rec.replicas[pos];
    let was_publishing = r.state == ReplicaState::Publishing;
    r.state = ReplicaState::Failed;
    let node = r.node.clone();
    warn!(node = %node, "replica lost: {reason}");
    rec.reasons.push(format!(
        "{} (attempt {}): {reason}",
        short(&node),
        r.attempt
    ));
    if !rec.excluded.contains(&node) {
        rec.excluded.push(node);
    }
    if was_publishing {
        rec.node = None;
        if !publish_next(inner, job, rec).await {
            rec.state = ShardState::Bidding;
            rec.cid = None;
        }
    } else if rec.state != ShardState::Publishing {
        rec.state = ShardState::Bidding;
    }
}

async fn check_liveness(
    inner: &Inner,
    job: &str,
    rec: &mut ShardRecord,
    seen: &Seen,
    trust_membership: bool,
) {
    let timeout = inner.config.heartbeat_timeout;
    let mut lost = Vec::new();
    for (pos, r) in rec.replicas.iter().enumerate() {
        if !r.is_active() || r.state == ReplicaState::Published {
            continue;
        }
        if trust_membership && !inner.net.is_member(&r.node) {
            lost.push((pos, "node left the network".to_owned()));
        } else if seen
            .get(&(r.node.clone(), r.attempt))
            .is_some_and(|t| t.elapsed() > timeout)
        {
            lost.push((pos, format!("no heartbeat for {timeout:?}")));
        }
    }
    if lost.is_empty() {
        return;
    }
    for (pos, reason) in lost {
        let r = &rec.replicas[pos];
        send(
            inner,
            &r.node,
            Request::Cancel(shard_ref(job, rec.index, r.attempt)),
        )
        .await;
        lose(inner, job, rec, pos, reason).await;
    }
    inner.save(job, rec);
}

/// Compares the replicas' CIDs; the majority is published by one of its
/// nodes, the minority is recorded and told to discard.
async fn verify_and_publish(inner: &Inner, job: &str, spec: &JobSpec, rec: &mut ShardRecord) {
    let wanted = spec.placement.replicas.max(1) as usize;
    if wanted > 1 {
        rec.state = ShardState::Verifying;
        inner.save(job, rec);
    }
    let mut votes: HashMap<String, usize> = HashMap::new();
    for r in rec.replicas.iter().filter(|r| r.is_active()) {
        if let Some(cid) = &r.cid {
            *votes.entry(cid.clone()).or_default() += 1;
        }
    }
    let majority = votes
        .iter()
        .find(|(_, n)| **n * 2 > wanted)
        .map(|(cid, _)| cid.clone());
    let Some(majority) = majority else {
        let summary: Vec<String> = rec
            .replicas
            .iter()
            .filter(|r| r.is_active())
            .map(|r| format!("{} -> {}", short(&r.node), r.cid.as_deref().unwrap_or("?")))
            .collect();
        fail(
            inner,
            job,
            rec,
            format!("replicas disagree, no majority: {}", summary.join(", ")),
        )
        .await;
        return;
    };
    for r in rec.replicas.iter_mut().filter(|r| r.is_active()) {
        if r.cid.as_deref() != Some(majority.as_str()) {
            let cid = r.cid.clone().unwrap_or_default();
            warn!(node = %r.node, %cid, %majority, "replica outvoted");
            inner.record_disagreement(
                job,
                Disagreement {
                    shard: rec.index,
                    node: r.node.clone(),
                    cid,
                    majority_cid: majority.clone(),
                },
            );
            r.state = ReplicaState::Discarded;
            rec.reasons.push(format!(
                "{} outvoted: its CID differs from the majority",
                short(&r.node)
            ));
            if !rec.excluded.contains(&r.node) {
                rec.excluded.push(r.node.clone());
            }
            send(
                inner,
                &r.node.clone(),
                Request::Discard(shard_ref(job, rec.index, r.attempt)),
            )
            .await;
        }
    }
    rec.cid = Some(majority);
    if !publish_next(inner, job, rec).await {
        fail(
            inner,
            job,
            rec,
            "no majority replica could be asked to publish".into(),
        )
        .await;
        return;
    }
    inner.save(job, rec);
}

/// Asks the next computed majority replica to publish. False if none.
async fn publish_next(inner: &Inner, job: &str, rec: &mut ShardRecord) -> bool {
    loop {
        let Some(pos) = rec
            .replicas
            .iter()
            .position(|r| r.state == ReplicaState::Computed && r.cid.is_some() && r.cid == rec.cid)
        else {
            return false;
        };
        let (node, attempt) = (rec.replicas[pos].node.clone(), rec.replicas[pos].attempt);
        rec.replicas[pos].state = ReplicaState::Publishing;
        rec.node = Some(node.clone());
        rec.state = ShardState::Publishing;
        inner.save(job, rec);
        match request(
            inner,
            &node,
            Request::Publish(shard_ref(job, rec.index, attempt)),
        )
        .await
        {
            Ok(Response::Ack) => return true,
            other => {
                let r = &mut rec.replicas[pos];
                r.state = ReplicaState::Failed;
                rec.reasons.push(format!(
                    "{} could not be asked to publish: {other:?}",
                    short(&node)
                ));
                rec.excluded.push(node);
                rec.node = None;
            }
        }
    }
}

async fn fail(inner: &Inner, job: &str, rec: &mut ShardRecord, reason: String) {
    warn!("shard failed: {reason}");
    rec.reasons.push(reason);
    stop_replicas(inner, job, rec, Stop::Cancel).await;
    rec.state = ShardState::Failed;
    inner.save(job, rec);
}

enum Stop {
    Cancel,
    Discard,
}

/// Tells every still-active replica (but a publisher that finished) to stop.
async fn stop_replicas(inner: &Inner, job: &str, rec: &mut ShardRecord, how: Stop) {
    for r in rec.replicas.iter_mut() {
        if !r.is_active() || r.state == ReplicaState::Published {
            continue;
        }
        let shard = shard_ref(job, rec.index, r.attempt);
        let message = match how {
            Stop::Cancel => Request::Cancel(shard),
            Stop::Discard => Request::Discard(shard),
        };
        send(inner, &r.node, message).await;
        r.state = ReplicaState::Discarded;
    }
}

fn shard_ref(job: &str, index: u32, attempt: u32) -> ShardRef {
    ShardRef {
        job: JobId(job.to_owned()),
        index,
        attempt,
    }
}

async fn request(inner: &Inner, node: &str, message: Request) -> Result<Response, String> {
    let peer: PeerId = node
        .parse()
        .map_err(|e| format!("bad peer id {node}: {e}"))?;
    match tokio::time::timeout(inner.config.bid_timeout, inner.net.request(peer, message)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Best-effort message (cancel, discard): a node that is gone is gone.
async fn send(inner: &Inner, node: &str, message: Request) {
    if let Err(e) = request(inner, node, message).await {
        tracing::debug!(node, "message not delivered: {e}");
    }
}
