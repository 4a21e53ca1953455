//! The HTTP status endpoint: `GET /status` returns this node's peer id and
//! its view of the membership as JSON. Tests, the testnet and the CLI read it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use shoal_publishers::ipfs::BlockStore;

use crate::net::{NetHandle, Snapshot};

/// Binds `addr` and serves the status API (and, with a block store, the
/// trustless gateway) until the process ends; returns the bound address
/// (useful with port 0).
pub async fn serve(
    addr: &str,
    net: NetHandle,
    blocks: Option<Arc<BlockStore>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut app = router(net);
    if let Some(store) = blocks {
        app = app.merge(crate::gateway::router(store));
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("status server stopped: {e}");
        }
    });
    Ok(local)
}

/// The status routes, for embedding in a larger router.
pub fn router(net: NetHandle) -> Router {
    Router::new().route("/status", get(status)).with_state(net)
}

async fn status(State(net): State<NetHandle>) -> Json<Snapshot> {
    Json(net.snapshot())
}
