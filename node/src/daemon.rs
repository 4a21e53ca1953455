//! `shoal-node run`: loads the home, joins the network, serves status, and
//! leaves cleanly on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use libp2p::Multiaddr;
use serde::Serialize;

use shoal_publishers::Publishers;
use shoal_publishers::ipfs::{BlockStore, IpfsConfig, IpfsPublisher, STORE_FILE};
use shoal_publishers::local::LocalPublisher;
use shoal_publishers::s3::{AllowList, S3Publisher, S3PublisherConfig};

use crate::inputs::S3Access;

use crate::compute::{self, Compute, ComputeConfig};
use crate::config::{CONFIG_FILE, Config};
use crate::identity::{self, IDENTITY_FILE};
use crate::ipfs::NodeHook;
use crate::net::{self, NetConfig, NetHandle};
use crate::protocol::membership::{Capacity, NodeInfo};
use crate::status;

/// File the running node writes into its home once it is reachable.
pub const RUN_FILE: &str = "run.json";

/// Flags that override the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub status_addr: Option<String>,
    pub no_mdns: bool,
}

/// Where a running node can be reached; written to `<home>/run.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunInfo {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub status_url: Option<String>,
    pub pid: u32,
}

/// Writes a fresh home: config template and identity. Refuses to overwrite
/// unless `force`.
pub fn init(home: &Path, force: bool) -> anyhow::Result<libp2p::PeerId> {
    std::fs::create_dir_all(home)
        .with_context(|| format!("cannot create home directory {}", home.display()))?;
    let config = home.join(CONFIG_FILE);
    let key = home.join(IDENTITY_FILE);
    if !force {
        for path in [&config, &key] {
            if path.exists() {
                bail!(
                    "{} already exists; pass --force to overwrite it (a new identity.key gives the node a new peer id)",
                    path.display()
                );
            }
        }
    }
    std::fs::write(&config, crate::config::TEMPLATE)
        .with_context(|| format!("cannot write {}", config.display()))?;
    let keypair = identity::generate(&key)?;
    Ok(keypair.public().to_peer_id())
}

/// The peer id of the identity in `home`.
pub fn peer_id(home: &Path) -> anyhow::Result<libp2p::PeerId> {
    Ok(identity::load(&home.join(IDENTITY_FILE))?
        .public()
        .to_peer_id())
}

/// A node that has joined the network.
pub struct RunningNode {
    pub net: NetHandle,
    pub run_info: RunInfo,
    /// The block store Bitswap and the gateway serve.
    pub blocks: Arc<BlockStore>,
    home: PathBuf,
}

impl RunningNode {
    /// Announces that we leave and stops the network.
    pub async fn shutdown(self) {
        self.net.shutdown().await;
        let _ = std::fs::remove_file(self.home.join(RUN_FILE));
    }
}

/// Loads the home, applies overrides, joins the network, serves status, and
/// writes `run.json`. Returns once every listener has an address.
pub async fn start(home: &Path, overrides: Overrides) -> anyhow::Result<RunningNode> {
    let mut config = Config::load(&home.join(CONFIG_FILE))?;
    let keypair = identity::load(&home.join(IDENTITY_FILE))?;
    if !overrides.listen.is_empty() {
        config.network.listen = overrides.listen;
    }
    if !overrides.bootstrap.is_empty() {
        config.network.bootstrap = overrides.bootstrap;
    }
    if let Some(addr) = overrides.status_addr {
        config.status.addr = addr;
    }
    if overrides.no_mdns {
        config.network.mdns = false;
    }
    let mut info = node_info(&config);
    let blocks = Arc::new(open_block_store(&config, home)?);
    let hook = Arc::new(NodeHook::default());
    let (publishers, s3_access) = publishers(&config, home, &blocks, &hook).await?;
    info.executors = compute::enabled_executors(config.executors.shell.enabled);
    info.publishers = publishers.kinds();
    let listeners = config.network.listen.len();
    let (inbound_tx, inbound_rx) = tokio::sync::mpsc::channel(1024);
    let offer = compute::Offer {
        capacity: info.capacity.clone(),
        executors: info.executors.clone(),
        allow_requesters: compute::allow_list(&config.compute.allow_requesters),
        max_queue: config.compute.max_queue,
        s3_read: s3_access.as_ref().map(|a| a.read.clone()),
    };
    let net = net::start_with_store(
        keypair,
        NetConfig {
            listen: config.network.listen.clone(),
            bootstrap: config.network.bootstrap.clone(),
            mdns: config.network.mdns,
            announce_interval: config.network.announce_interval(),
            ttl: config.network.ttl(),
            info,
        },
        Some(inbound_tx),
        Some(Arc::clone(&blocks)),
    )
    .await?;
    hook.attach(net.clone());
    tokio::spawn(collect_garbage(Arc::clone(&blocks)));
    let work_dir = if config.compute.work_dir.as_os_str().is_empty() {
        home.join("work")
    } else {
        config.compute.work_dir.clone()
    };
    let compute = Compute::new(
        ComputeConfig {
            offer,
            work_dir,
            heartbeat: Duration::from_millis(config.compute.heartbeat_ms),
            max_input_bytes: config.compute.max_input_mb * 1024 * 1024,
            local_input_roots: config
                .compute
                .local_input_roots
                .iter()
                .filter_map(|root| std::fs::canonicalize(root).ok())
                .collect(),
            s3: s3_access,
            ipfs: Some(crate::inputs::IpfsAccess {
                net: net.clone(),
                store: Arc::clone(&blocks),
            }),
            corrupt_output: std::env::var("SHOAL_TEST_CORRUPT_OUTPUT").is_ok_and(|v| v == "1"),
        },
        net.clone(),
        publishers,
    );
    tokio::spawn(compute.run(inbound_rx));
    let status_url = if config.status.addr.is_empty() {
        None
    } else {
        let bound = status::serve(&config.status.addr, net.clone(), Some(Arc::clone(&blocks)))
            .await
            .with_context(|| format!("cannot serve status on {}", config.status.addr))?;
        Some(format!("http://{bound}"))
    };
    let listen_addrs = wait_for_listeners(&net, listeners).await?;
    let run_info = RunInfo {
        peer_id: net.peer_id().to_string(),
        listen_addrs,
        status_url,
        pid: std::process::id(),
    };
    write_run_file(home, &run_info)?;
    Ok(RunningNode {
        net,
        run_info,
        blocks,
        home: home.to_owned(),
    })
}

/// `shoal-node run`: start, print where we are, wait for a signal, leave.
pub async fn run(home: &Path, overrides: Overrides) -> anyhow::Result<()> {
    let node = start(home, overrides).await?;
    println!("peer_id: {}", node.run_info.peer_id);
    for addr in &node.run_info.listen_addrs {
        println!("listening: {addr}/p2p/{}", node.run_info.peer_id);
    }
    if let Some(url) = &node.run_info.status_url {
        println!("status: {url}/status");
    }
    wait_for_signal().await?;
    tracing::info!("signal received; leaving the network");
    node.shutdown().await;
    Ok(())
}

/// Waits until the network reports `listeners` listen addresses.
pub async fn wait_for_listeners(net: &NetHandle, listeners: usize) -> anyhow::Result<Vec<String>> {
    let mut watch = net.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let addrs = watch.borrow().listen_addrs.clone();
        if addrs.len() >= listeners && listeners > 0 || (listeners == 0) {
            return Ok(addrs);
        }
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("the network task stopped while starting"),
            Err(_) => bail!("no listen address after 10 s; check network.listen in the config"),
        }
    }
}

/// Writes `<home>/run.json` atomically.
pub fn write_run_file(home: &Path, info: &RunInfo) -> anyhow::Result<()> {
    let path = home.join(RUN_FILE);
    let tmp = home.join(format!("{RUN_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Opens `<home>/blocks.redb` with the configured size limit.
pub fn open_block_store(config: &Config, home: &Path) -> anyhow::Result<BlockStore> {
    let limit = match config.publishers.ipfs.max_store_mb {
        0 => None,
        mb => Some(mb.saturating_mul(1024 * 1024)),
    };
    Ok(BlockStore::open(&home.join(STORE_FILE), limit)?)
}

/// Drops expired pins and unreachable blocks every 10 minutes.
#[allow(clippy::result_large_err)] // StoreError names CIDs; one per 10 minutes
async fn collect_garbage(blocks: Arc<BlockStore>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = Arc::clone(&blocks);
        match tokio::task::spawn_blocking(move || store.gc()).await {
            Ok(Ok(report)) if report.blocks_removed > 0 || report.pins_expired > 0 => {
                tracing::info!(?report, "block store garbage collected")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("block store gc failed: {e}"),
            Err(e) => tracing::warn!("block store gc task failed: {e}"),
        }
    }
}

/// `shoal-node gc`: collects the block store of a stopped node.
pub fn gc(home: &Path) -> anyhow::Result<shoal_publishers::ipfs::GcReport> {
    let config = Config::load(&home.join(CONFIG_FILE))?;
    let store = open_block_store(&config, home)?;
    Ok(store.gc()?)
}

/// The publisher drivers the config enables, and how S3 inputs are read.
async fn publishers(
    config: &Config,
    home: &Path,
    blocks: &Arc<BlockStore>,
    hook: &Arc<NodeHook>,
) -> anyhow::Result<(Publishers, Option<S3Access>)> {
    let mut publishers = Publishers::default();
    let mut s3_access = None;
    let s3 = &config.publishers.s3;
    if s3.enabled {
        let driver = S3Publisher::new(S3PublisherConfig {
            settings: s3.settings(),
            allow: s3.allow.clone(),
            part_size: (s3.part_size_mb as usize) << 20,
            concurrency: s3.concurrency,
        })
        .await
        .map_err(|e| anyhow::anyhow!("publishers.s3: {e}"))?;
        match driver.credentials_problem() {
            Some(problem) => tracing::warn!("S3 publisher: {problem}; S3 jobs will be declined"),
            None => tracing::info!(allow = ?s3.allow, read = ?s3.read, "S3 publisher ready"),
        }
        s3_access = Some(S3Access {
            client: driver.client().clone(),
            read: AllowList::parse(&s3.read)
                .map_err(|e| anyhow::anyhow!("publishers.s3.read: {e}"))?,
        });
        publishers.add(Box::new(driver));
    }
    let root = &config.publishers.local.root;
    if !root.as_os_str().is_empty() {
        let root = if root.is_absolute() {
            root.clone()
        } else {
            home.join(root)
        };
        std::fs::create_dir_all(&root).with_context(|| {
            format!("publishers.local.root {}: cannot create it", root.display())
        })?;
        publishers.add(Box::new(LocalPublisher::new(root)));
    }
    let ipfs = &config.publishers.ipfs;
    if ipfs.enabled {
        publishers.add(Box::new(IpfsPublisher::new(
            Arc::clone(blocks),
            Arc::clone(hook) as Arc<dyn shoal_publishers::ipfs::IpfsNode>,
            IpfsConfig {
                pin_for: (ipfs.pin_hours > 0)
                    .then(|| Duration::from_secs(ipfs.pin_hours.saturating_mul(3600))),
                rpc_url: (!ipfs.rpc_url.is_empty()).then(|| ipfs.rpc_url.clone()),
            },
        )));
    }
    Ok((publishers, s3_access))
}

fn node_info(config: &Config) -> NodeInfo {
    let cpu = if config.capacity.cpu > 0.0 {
        config.capacity.cpu
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0)
    };
    let memory = if config.capacity.memory_mb > 0 {
        config.capacity.memory_mb * 1024 * 1024
    } else {
        total_memory().unwrap_or(0)
    };
    NodeInfo {
        peer_id: String::new(),
        roles: config.node.roles.clone(),
        listen_addrs: Vec::new(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capacity: Capacity {
            cpu,
            memory,
            disk: config.capacity.disk_mb * 1024 * 1024,
            slots: config.capacity.slots,
        },
        free_slots: config.capacity.slots,
        executors: Vec::new(),
        publishers: Vec::new(),
        labels: config.node.labels.clone(),
        seq: 0,
    }
}

/// MemTotal from /proc/meminfo, in bytes.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
