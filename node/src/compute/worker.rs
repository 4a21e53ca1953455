//! One awarded shard on this node: wait for a slot, stage inputs, run the
//! executor, hash the output into a CID, then publish (at once, or when the
//! requester asks) and report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use libp2p::PeerId;
use shoal_publishers::content::{self, Cid, Profile};
use shoal_publishers::publisher::Output;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::{Inner, Stage, report};
use crate::executor::{ExecRequest, run_shell};
use crate::inputs::{Sources, StageLimits, stage};
use crate::protocol::job::{Executor, InputItem, PublishMode, ShardEvent, ShardRef, ShardTask};

/// Publisher retries for errors that may pass (server down, throttled).
const PUBLISH_ATTEMPTS: u32 = 8;

/// The shard's scratch directory.
pub(super) fn work_dir(inner: &Inner, shard: &ShardRef) -> PathBuf {
    inner
        .config
        .work_dir
        .join(&shard.job.0)
        .join(format!("{}-{}", shard.index, shard.attempt))
}

/// Runs an awarded shard to its end on this node.
pub(super) async fn run(
    inner: Arc<Inner>,
    task: Arc<ShardTask>,
    requester: PeerId,
    cancel: CancellationToken,
) {
    let span = info_span!("shard", shard = %task.shard, requester = %requester);
    async move {
        let permit = tokio::select! {
            permit = inner.slots.acquire() => permit,
            _ = cancel.cancelled() => {
                inner.queued.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        inner.queued.fetch_sub(1, Ordering::Relaxed);
        let Ok(permit) = permit else { return };
        inner.set_stage(&task.shard, Stage::Running);
        inner.announce_free_slots().await;
        info!("running");
        let result = execute(&inner, &task, &cancel).await;
        drop(permit);
        inner.announce_free_slots().await;
        let dir = work_dir(&inner, &task.shard);
        if cancel.is_cancelled() {
            remove_dir(dir).await;
            return;
        }
        match result {
            Err(reason) => {
                warn!("failed: {reason}");
                inner.set_stage(&task.shard, Stage::Done);
                remove_dir(dir).await;
                report::send(
                    inner.clone(),
                    requester,
                    task.shard.clone(),
                    ShardEvent::Failed { reason },
                )
                .await;
                inner.forget(&task.shard);
            }
            Ok((cid, bytes)) => {
                info!(%cid, bytes, "computed");
                match task.mode {
                    PublishMode::Immediately => {
                        inner.set_stage(&task.shard, Stage::Publishing { cid });
                        publish_and_report(inner.clone(), task.clone(), requester, cid, cancel)
                            .await;
                    }
                    PublishMode::OnRequest => {
                        inner.set_stage(&task.shard, Stage::Computed { cid, bytes });
                        report::send(
                            inner.clone(),
                            requester,
                            task.shard.clone(),
                            ShardEvent::Computed {
                                cid: cid.to_string(),
                                bytes,
                            },
                        )
                        .await;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Stages, executes and hashes; the error is a reason for the user.
async fn execute(
    inner: &Inner,
    task: &ShardTask,
    cancel: &CancellationToken,
) -> Result<(Cid, u64), String> {
    let dir = work_dir(inner, &task.shard);
    let inputs = dir.join("inputs");
    let output = dir.join("output");
    for d in [&inputs, &output] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let limits = StageLimits {
        max_total_bytes: inner.config.max_input_bytes,
    };
    check_local_inputs(&task.inputs, &inner.config.local_input_roots)?;
    let sources = Sources {
        http: &inner.http,
        s3: inner.config.s3.as_ref(),
        ipfs: inner.config.ipfs.as_ref(),
    };
    stage(&task.inputs, &inputs, sources, &limits)
        .await
        .map_err(|e| format!("staging inputs: {e}"))?;
    let Executor::Shell { command, env } = &task.executor;
    let request = ExecRequest {
        command: command.clone(),
        env: env.clone(),
        inputs_dir: inputs.clone(),
        output_dir: output.clone(),
        work_dir: dir.clone(),
        shard: format!("{}/{}", task.shard.job, task.shard.index),
        timeout: Duration::from_secs(task.resources.timeout_secs.max(1)),
        memory_limit: task.resources.memory,
    };
    let outcome = run_shell(&request, cancel.clone())
        .await
        .map_err(|e| format!("executor: {e}"))?;
    if let Some(reason) = outcome.failure_reason() {
        return Err(reason);
    }
    if inner.config.corrupt_output {
        tokio::fs::write(output.join("corrupted-by-test-switch"), b"!")
            .await
            .map_err(|e| format!("test corruption: {e}"))?;
    }
    let out = output.clone();
    tokio::task::spawn_blocking(move || {
        let cid = content::import_path(&out, Profile::V1RawLeaves)
            .map_err(|e| format!("hashing output: {e}"))?;
        Ok((cid, dir_size(&out)))
    })
    .await
    .map_err(|e| format!("hashing task: {e}"))?
}

/// Publishes the computed output to every target, then reports.
pub(super) async fn publish_and_report(
    inner: Arc<Inner>,
    task: Arc<ShardTask>,
    requester: PeerId,
    cid: Cid,
    cancel: CancellationToken,
) {
    let dir = work_dir(&inner, &task.shard).join("output");
    let node = inner.net.peer_id().to_string();
    let mut locations = Vec::new();
    let mut failure = None;
    for target in &task.publish {
        let output = Output {
            job: &task.shard.job.0,
            shard: task.shard.index,
            node: &node,
            dir: &dir,
            cid: &cid,
        };
        match publish_with_retries(&inner, target, output, &cancel).await {
            Ok(location) => locations.push(location),
            Err(e) => {
                failure = Some(format!("publishing to {}: {e}", target.kind()));
                break;
            }
        }
    }
    if cancel.is_cancelled() {
        return;
    }
    let event = match failure {
        Some(reason) => {
            warn!(shard = %task.shard, "{reason}");
            inner.set_stage(&task.shard, Stage::Done);
            ShardEvent::Failed { reason }
        }
        None => {
            info!(shard = %task.shard, ?locations, "published");
            inner.set_stage(
                &task.shard,
                Stage::Published {
                    cid,
                    locations: locations.clone(),
                },
            );
            ShardEvent::Published {
                cid: cid.to_string(),
                locations,
            }
        }
    };
    remove_dir(work_dir(&inner, &task.shard)).await;
    report::send(inner, requester, task.shard.clone(), event).await;
}

async fn publish_with_retries(
    inner: &Inner,
    target: &shoal_publishers::target::Target,
    output: Output<'_>,
    cancel: &CancellationToken,
) -> Result<shoal_publishers::target::Location, shoal_publishers::PublishError> {
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match inner.publishers.publish(target, output).await {
            Ok(location) => return Ok(location),
            Err(e) if e.is_retryable() && attempt < PUBLISH_ATTEMPTS && !cancel.is_cancelled() => {
                warn!(attempt, "publish failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Local inputs must resolve (symlinks followed) under an allowed root.
fn check_local_inputs(items: &[InputItem], roots: &[PathBuf]) -> Result<(), String> {
    for item in items {
        let InputItem::Local { name, path } = item else {
            continue;
        };
        if roots.is_empty() {
            return Err(format!(
                "input {name:?}: local inputs are disabled on this node (set compute.local_input_roots)"
            ));
        }
        let real = std::fs::canonicalize(path)
            .map_err(|e| format!("input {name:?}: cannot read {path}: {e}"))?;
        if !roots.iter().any(|root| real.starts_with(root)) {
            return Err(format!(
                "input {name:?}: {path} is outside this node's compute.local_input_roots"
            ));
        }
    }
    Ok(())
}

async fn remove_dir(dir: PathBuf) {
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += dir_size(&entry.path()),
            Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(path: &Path) -> InputItem {
        InputItem::Local {
            name: "x".into(),
            path: path.display().to_string(),
        }
    }

    #[test]
    fn local_inputs_are_refused_without_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"1").unwrap();
        let err = check_local_inputs(&[local(&dir.path().join("f"))], &[]).unwrap_err();
        assert!(err.contains("local_input_roots"), "{err}");
    }

    #[test]
    fn local_inputs_must_resolve_under_a_root() {
        let allowed = tempfile::tempdir().unwrap();
        let secret = tempfile::tempdir().unwrap();
        std::fs::write(secret.path().join("identity.key"), b"k").unwrap();
        std::fs::write(allowed.path().join("ok"), b"1").unwrap();
        std::os::unix::fs::symlink(
            secret.path().join("identity.key"),
            allowed.path().join("sneaky"),
        )
        .unwrap();
        let roots = vec![std::fs::canonicalize(allowed.path()).unwrap()];
        assert!(check_local_inputs(&[local(&allowed.path().join("ok"))], &roots).is_ok());
        let err = check_local_inputs(&[local(&allowed.path().join("sneaky"))], &roots).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let err =
            check_local_inputs(&[local(&secret.path().join("identity.key"))], &roots).unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }
}
