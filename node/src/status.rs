//! The HTTP status endpoint: `GET /status` returns this node's peer id and
//! its view of the membership as JSON. Tests, the testnet and the CLI read it.

use std::net::SocketAddr;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

use crate::net::{NetHandle, Snapshot};

/// Binds `addr` and serves the status API until the process ends; returns
/// the bound address (useful with port 0).
pub async fn serve(addr: &str, net: NetHandle) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(net);
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
