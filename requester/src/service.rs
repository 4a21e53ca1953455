//! `shoal serve`: the requester daemon. A libp2p peer with the requester
//! role, a durable job store, the orchestrator, and the HTTP API.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use shoal_node::daemon::{RUN_FILE, RunInfo};
use shoal_node::identity::{self, IDENTITY_FILE};
use shoal_node::libp2p::Multiaddr;
use shoal_node::net::{self, NetConfig};
use shoal_node::protocol::membership::{NodeInfo, Role};
use shoal_publishers::ipfs::BlockStore;
use tokio::sync::mpsc;

use crate::api;
use crate::orchestrator::{Orchestrator, OrchestratorConfig};
use crate::store::Store;

/// File name of the job store in the requester's home.
pub const STORE_FILE: &str = "jobs.redb";

/// How to run the requester.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub home: PathBuf,
    pub api: String,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    pub orchestrator: OrchestratorConfig,
}

/// Runs the requester until SIGINT/SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let home = &options.home;
    std::fs::create_dir_all(home)
        .with_context(|| format!("cannot create requester home {}", home.display()))?;
    let key_path = home.join(IDENTITY_FILE);
    let keypair = if key_path.exists() {
        identity::load(&key_path)?
    } else {
        identity::generate(&key_path)?
    };
    let store = Store::open(&home.join(STORE_FILE))?;
    let (inbound_tx, inbound_rx) = mpsc::channel(4096);
    let blocks = Arc::new(
        BlockStore::open(&home.join(shoal_publishers::ipfs::STORE_FILE), None)
            .context("cannot open the requester's block store")?,
    );
    let net = net::start_with_store(
        keypair,
        NetConfig {
            listen: options.listen.clone(),
            bootstrap: options.bootstrap.clone(),
            mdns: options.mdns,
            announce_interval: Duration::from_secs(1),
            ttl: Duration::from_secs(15),
            info: requester_info(),
        },
        Some(inbound_tx),
        Some(blocks.clone()),
    )
    .await?;
    let orchestrator = Orchestrator::new(
        net.clone(),
        store.clone(),
        blocks,
        options.orchestrator.clone(),
    );
    let resumed = orchestrator.resume()?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished jobs from the store");
    }
    tokio::spawn(orchestrator.clone().serve_inbound(inbound_rx));
    let listener = tokio::net::TcpListener::bind(&options.api)
        .await
        .with_context(|| format!("cannot serve the API on {}", options.api))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let app = api::router(orchestrator, net.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("API server stopped: {e}");
        }
    });
    let listen_addrs = shoal_node::daemon::wait_for_listeners(&net, options.listen.len()).await?;
    shoal_node::daemon::write_run_file(
        home,
        &RunInfo {
            peer_id: net.peer_id().to_string(),
            listen_addrs: listen_addrs.clone(),
            status_url: Some(api_url.clone()),
            pid: std::process::id(),
        },
    )?;
    println!("peer_id: {}", net.peer_id());
    for addr in &listen_addrs {
        println!("listening: {addr}/p2p/{}", net.peer_id());
    }
    println!("api: {api_url}");
    shoal_node::daemon::wait_for_signal().await?;
    tracing::info!("signal received; stopping the requester");
    net.shutdown().await;
    store.flush().await;
    let _ = std::fs::remove_file(home.join(RUN_FILE));
    Ok(())
}

fn requester_info() -> NodeInfo {
    NodeInfo::without_compute(vec![Role::Requester])
}
