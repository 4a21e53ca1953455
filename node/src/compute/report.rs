//! Reports shard progress to the requester, retrying until it is taken.
//!
//! A requester may be restarting; terminal events (computed, published,
//! failed) are retried with backoff for a while, so a restarted requester
//! still learns them. A requester that answers with an error no longer wants
//! the shard (it was re-bid), so the node forgets it.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use tracing::{debug, warn};

use super::Inner;
use crate::protocol::job::{Request, Response, ShardEvent, ShardRef};

/// How long a terminal report keeps being retried.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Sends `event` about `shard` to `requester` until it is acknowledged.
pub(super) async fn send(inner: Arc<Inner>, requester: PeerId, shard: ShardRef, event: ShardEvent) {
    let deadline = tokio::time::Instant::now() + GIVE_UP_AFTER;
    let mut backoff = Duration::from_millis(200);
    loop {
        let request = Request::Update {
            shard: shard.clone(),
            event: event.clone(),
        };
        match inner.net.request(requester, request).await {
            Ok(Response::Ack) => {
                // A final report taken: the requester will not ask again.
                if matches!(
                    event,
                    ShardEvent::Published { .. } | ShardEvent::Failed { .. }
                ) {
                    inner.forget(&shard);
                }
                return;
            }
            Ok(Response::Error { message }) => {
                debug!(%shard, "requester refused the report: {message}");
                inner.forget(&shard);
                return;
            }
            Ok(other) => warn!(%shard, "unexpected answer to a report: {other:?}"),
            Err(e) => debug!(%shard, "report not delivered yet: {e}"),
        }
        if tokio::time::Instant::now() + backoff > deadline {
            warn!(%shard, "gave up reporting to {requester}");
            inner.forget(&shard);
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
