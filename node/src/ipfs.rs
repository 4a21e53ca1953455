//! IPFS on the node: the block store as Bitswap sees it, the hook the IPFS
//! publisher announces through, and fetching a UnixFS DAG over Bitswap into
//! the block store and out to a directory.
//!
//! Fetching trusts no peer: Bitswap (beetswap) derives each received block's
//! CID from its bytes, so a block that does not hash to what we asked for
//! never answers our want (a forging peer looks like a peer that does not
//! have the block), and [`NetHandle::fetch_block`] hashes it again. A block
//! no connected peer delivers within the timeout fails the fetch with an
//! error naming the block and the providers asked. The exported result is
//! re-imported and compared with the root CID ([`verify_path`]).

// Store errors carry the CIDs they are about (see publishers::ipfs); HTTP
// error responses are built once per request. Size is not a concern here.
#![allow(clippy::result_large_err)]

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cid::CidGeneric;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use redb::Durability;
use shoal_publishers::content::pb::{DataType, PbNode, UnixFsData};
use shoal_publishers::content::{
    Cid, ExportError, ExportSummary, VerifyError, export_car, verify_path,
};
use shoal_publishers::ipfs::store::{self, Lease};
use shoal_publishers::ipfs::{BlockStore, IpfsNode, StoreError};
use tracing::debug;

use crate::net::{NetError, NetHandle};

/// How a DAG fetch behaves.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// How long one block may take before the fetch fails.
    pub block_timeout: Duration,
    /// Blocks requested at once. Bitswap servers may send all the blocks
    /// asked for in one message, and beetswap drops messages over 4 MiB, so
    /// keep `window * chunk size` under that (8 x 256 KiB = 2 MiB).
    pub window: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            block_timeout: Duration::from_secs(60),
            window: 8,
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("provider hint {hint} must be a multiaddr ending in /p2p/<peer id>")]
    BadHint { hint: String },
    #[error(
        "no provider of {cid} could be reached (tried: {tried}); pass a provider multiaddr or check the node publishing it is up"
    )]
    NoProviders { cid: Cid, tried: String },
    #[error(
        "block {cid} (of {root}) was not delivered within {}s by {peers}: they do not have it, or sent bytes that do not hash to it (Bitswap discards those)",
        waited.as_secs_f32()
    )]
    BlockUnavailable {
        cid: Cid,
        root: Cid,
        peers: String,
        waited: Duration,
    },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot export {cid}: {source}")]
    Export { cid: Cid, source: ExportError },
    #[error("fetched output does not verify: {0}")]
    Verify(#[from] VerifyError),
}

/// What a DAG fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Distinct blocks in the DAG.
    pub blocks: u64,
    /// Their total size.
    pub bytes: u64,
    /// Peers we connected to as providers.
    pub providers: Vec<PeerId>,
}

/// Fetches every block of the DAG under `root` into `store` over Bitswap.
///
/// Providers: the `hints` (multiaddrs ending in `/p2p/<peer>`) if any can be
/// reached, else those the DHT names. The returned [`Lease`] keeps the
/// fetched blocks from gc until dropped: pin the root or export before that.
pub async fn fetch_dag(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    root: Cid,
    hints: &[Multiaddr],
    options: &FetchOptions,
) -> Result<(FetchReport, Lease), FetchError> {
    let lease = store.lease();
    lease.protect([root]);
    let providers = connect_providers(net, store, root, hints, options).await?;
    let peers = if providers.is_empty() {
        "any connected peer (no provider reached; the DAG looked local)".to_owned()
    } else {
        providers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    debug!(%root, providers = %peers, "fetching DAG over bitswap");

    let mut report = FetchReport {
        providers,
        ..FetchReport::default()
    };
    let mut queue = VecDeque::from([root]);
    let mut seen = HashSet::new();
    let mut in_flight = FuturesUnordered::new();
    let window = options.window.max(1);
    loop {
        while in_flight.len() < window {
            let Some(cid) = queue.pop_front() else { break };
            if !seen.insert(cid) {
                continue;
            }
            let net = net.clone();
            let timeout = options.block_timeout;
            in_flight.push(async move { (cid, want_block(&net, cid, timeout).await) });
        }
        let Some((cid, result)) = in_flight.next().await else {
            break;
        };
        let data = match result {
            Err(_) => {
                return Err(FetchError::BlockUnavailable {
                    cid,
                    root,
                    peers: peers.clone(),
                    waited: options.block_timeout,
                });
            }
            Ok(result) => result?,
        };
        let children = store::links(&cid, &data)?;
        lease.protect(children.iter().copied());
        queue.extend(children);
        report.blocks += 1;
        report.bytes += data.len() as u64;
        // Bitswap stores what it receives too, but in the background; make
        // sure the block is there before anyone exports the DAG. The lease
        // already protects it (its parent's links were protected above).
        let store = Arc::clone(store);
        tokio::task::spawn_blocking(move || store.put_many(&[(cid, data)], Durability::None))
            .await
            .map_err(|e| StoreError::Db(format!("store task failed: {e}")))??;
    }
    debug!(%root, blocks = report.blocks, bytes = report.bytes, "DAG fetched");
    Ok((report, lease))
}

/// Asks for one block over Bitswap for at most `budget`. The want is
/// re-issued with growing patience (0.5 s, 1 s, 2 s, ...), so a provider
/// whose Bitswap stream opened after the first want went out is asked too;
/// Bitswap itself would only re-send its wantlist every 30 s.
async fn want_block(
    net: &NetHandle,
    cid: Cid,
    budget: Duration,
) -> Result<Result<Vec<u8>, NetError>, tokio::time::error::Elapsed> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut patience = Duration::from_millis(500);
    loop {
        let now = tokio::time::Instant::now();
        let attempt = patience.min(deadline.saturating_duration_since(now));
        match tokio::time::timeout(attempt, net.fetch_block(cid)).await {
            Ok(result) => return Ok(result),
            Err(elapsed) if tokio::time::Instant::now() >= deadline => return Err(elapsed),
            Err(_) => patience = (patience * 2).min(Duration::from_secs(8)),
        }
    }
}

/// Fetches one block: connects to the hinted providers (or those the DHT
/// names), asks over Bitswap and checks the bytes against `cid`. The block
/// is also kept in `store` (unpinned).
pub async fn fetch_block(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    cid: Cid,
    hints: &[Multiaddr],
    options: &FetchOptions,
) -> Result<Vec<u8>, FetchError> {
    let providers = connect_providers(net, store, cid, hints, options).await?;
    match want_block(net, cid, options.block_timeout).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(FetchError::BlockUnavailable {
            cid,
            root: cid,
            peers: providers
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            waited: options.block_timeout,
        }),
    }
}

/// Connects to the hinted providers, or to those the DHT names.
async fn connect_providers(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    root: Cid,
    hints: &[Multiaddr],
    options: &FetchOptions,
) -> Result<Vec<PeerId>, FetchError> {
    let mut tried = Vec::new();
    let mut connected = Vec::new();
    for hint in hints {
        let peer = peer_of(hint).ok_or_else(|| FetchError::BadHint {
            hint: hint.to_string(),
        })?;
        if peer == net.peer_id() {
            continue;
        }
        match tokio::time::timeout(options.block_timeout, net.connect(peer, vec![hint.clone()]))
            .await
        {
            Ok(Ok(())) => connected.push(peer),
            Ok(Err(e)) => tried.push(format!("{hint}: {e}")),
            Err(_) => tried.push(format!("{hint}: dial timed out")),
        }
    }
    if connected.is_empty() {
        let found =
            match tokio::time::timeout(options.block_timeout, net.find_providers(root)).await {
                Ok(result) => result?,
                Err(_) => Vec::new(),
            };
        for peer in found.into_iter().filter(|p| *p != net.peer_id()) {
            match tokio::time::timeout(options.block_timeout, net.connect(peer, Vec::new())).await {
                Ok(Ok(())) => connected.push(peer),
                Ok(Err(e)) => tried.push(format!("DHT provider {peer}: {e}")),
                Err(_) => tried.push(format!("DHT provider {peer}: dial timed out")),
            }
        }
        // With the whole DAG local already, Bitswap answers from the store.
        let local = {
            let store = Arc::clone(store);
            tokio::task::spawn_blocking(move || store.first_missing(&root))
                .await
                .map_err(|e| StoreError::Db(format!("store task failed: {e}")))??
                .is_none()
        };
        if connected.is_empty() && !local {
            if tried.is_empty() {
                tried.push("no hints given and the DHT names no provider".into());
            }
            return Err(FetchError::NoProviders {
                cid: root,
                tried: tried.join("; "),
            });
        }
    }
    Ok(connected)
}

/// Fetches the DAG under `root` over Bitswap and writes it to the new path
/// `dest` (file or directory; its parent must exist), then checks that
/// `dest` imports to `root`. Blocks stay in `store`, unpinned.
pub async fn fetch_to_dir(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    root: Cid,
    hints: &[Multiaddr],
    dest: &Path,
    options: &FetchOptions,
) -> Result<(FetchReport, ExportSummary), FetchError> {
    let (report, lease) = fetch_dag(net, store, root, hints, options).await?;
    let store = Arc::clone(store);
    let dest = dest.to_owned();
    let summary = tokio::task::spawn_blocking(move || {
        let result = export_from_store(&store, &root, &dest);
        drop(lease);
        result
    })
    .await
    .map_err(|e| FetchError::Store(StoreError::Db(format!("export task failed: {e}"))))??;
    Ok((report, summary))
}

/// Writes the DAG under `root` from `store` to `dest` through a CAR beside
/// it (the content module's safe exporter), then verifies `dest`.
pub fn export_from_store(
    store: &BlockStore,
    root: &Cid,
    dest: &Path,
) -> Result<ExportSummary, FetchError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.to_string());
    let car = dest.with_file_name(format!(".{name}.car.partial-{}", std::process::id()));
    let io = |source| FetchError::Io {
        path: car.clone(),
        source,
    };
    let result = (|| {
        let file = std::fs::File::create(&car).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        store.write_car(root, &mut out)?;
        std::io::Write::flush(&mut out).map_err(io)?;
        drop(out);
        let file = std::fs::File::open(&car).map_err(io)?;
        let summary = export_car(std::io::BufReader::new(file), root, dest)
            .map_err(|source| FetchError::Export { cid: *root, source })?;
        verify_path(dest, root)?;
        Ok(summary)
    })();
    let _ = std::fs::remove_file(&car);
    result
}

/// The peer id at the end of a multiaddr.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// The block store as beetswap reads and writes it. Without a store it
/// has nothing and keeps nothing.
pub struct BitswapStore {
    store: Option<Arc<BlockStore>>,
}

impl BitswapStore {
    /// Wraps `store` (or none).
    pub fn new(store: Option<Arc<BlockStore>>) -> Self {
        BitswapStore { store }
    }
}

fn to_cid<const S: usize>(cid: &CidGeneric<S>) -> blockstore::Result<Cid> {
    Cid::try_from(cid.to_bytes().as_slice()).map_err(|_| blockstore::Error::CidTooLarge)
}

fn store_error(e: StoreError) -> blockstore::Error {
    blockstore::Error::FatalDatabaseError(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> blockstore::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| blockstore::Error::ExecutorError(e.to_string()))?
        .map_err(store_error)
}

impl blockstore::Blockstore for BitswapStore {
    async fn get<const S: usize>(
        &self,
        cid: &CidGeneric<S>,
    ) -> blockstore::Result<Option<Vec<u8>>> {
        let Some(store) = self.store.clone() else {
            return Ok(None);
        };
        let cid = to_cid(cid)?;
        blocking(move || store.get(&cid)).await
    }

    async fn has<const S: usize>(&self, cid: &CidGeneric<S>) -> blockstore::Result<bool> {
        let Some(store) = self.store.clone() else {
            return Ok(false);
        };
        let cid = to_cid(cid)?;
        blocking(move || store.has(&cid)).await
    }

    async fn put_keyed<const S: usize>(
        &self,
        cid: &CidGeneric<S>,
        data: &[u8],
    ) -> blockstore::Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let block = vec![(to_cid(cid)?, data.to_vec())];
        blocking(move || store.put_many(&block, Durability::None).map(|_| ())).await
    }

    async fn put_many_keyed<const S: usize, D, I>(&self, blocks: I) -> blockstore::Result<()>
    where
        D: AsRef<[u8]> + Send + Sync,
        I: IntoIterator<Item = (CidGeneric<S>, D)> + Send,
        <I as IntoIterator>::IntoIter: Send,
    {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let blocks = blocks
            .into_iter()
            .map(|(cid, data)| Ok((to_cid(&cid)?, data.as_ref().to_vec())))
            .collect::<blockstore::Result<Vec<_>>>()?;
        blocking(move || store.put_many(&blocks, Durability::None).map(|_| ())).await
    }

    async fn remove<const S: usize>(&self, cid: &CidGeneric<S>) -> blockstore::Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let cid = to_cid(cid)?;
        blocking(move || store.remove(&cid).map(|_| ())).await
    }

    async fn close(self) -> blockstore::Result<()> {
        Ok(())
    }
}

/// The [`IpfsNode`] the publisher talks to, filled in once the network runs
/// (the publisher is built before it, to announce its kind).
#[derive(Default)]
pub struct NodeHook {
    net: OnceLock<NetHandle>,
}

impl NodeHook {
    /// Connects the hook to the running network.
    pub fn attach(&self, net: NetHandle) {
        let _ = self.net.set(net);
    }
}

impl IpfsNode for NodeHook {
    fn provide(&self, cid: Cid) {
        let Some(net) = self.net.get().cloned() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = net.provide(cid).await {
                    tracing::warn!(%cid, "cannot announce as provider: {e}");
                }
            });
        }
    }

    fn addresses(&self) -> Vec<String> {
        let Some(net) = self.net.get() else {
            return Vec::new();
        };
        let peer = net.peer_id();
        net.snapshot()
            .listen_addrs
            .iter()
            .map(|a| format!("{a}/p2p/{peer}"))
            .collect()
    }
}

/// One file found by [`list_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// `/`-separated path under the listed directory.
    pub path: String,
    /// The file's root CID.
    pub cid: Cid,
    /// File size in bytes (UnixFS `filesize`, or the block size of a raw
    /// leaf).
    pub size: u64,
}

/// Most entries [`list_dir`] returns: a bound on what a job listing fetches.
const MAX_LIST_ENTRIES: usize = 1_000_000;

/// Lists the files of the UnixFS directory `root` over Bitswap, fetching
/// directory nodes and the root block of each multi-block file (for its
/// size), never file data. Every block is verified against its CID.
pub async fn list_dir(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    root: Cid,
    hints: &[Multiaddr],
    options: &FetchOptions,
) -> Result<Vec<DirEntry>, ListError> {
    connect_providers(net, store, root, hints, options).await?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root)];
    while let Some((prefix, dir)) = stack.pop() {
        let data = fetch_one(net, store, dir, root, options).await?;
        let node = PbNode::decode(&data).map_err(|e| ListError::Bad {
            cid: dir,
            message: e.to_string(),
        })?;
        let meta = node
            .data
            .map(UnixFsData::decode)
            .transpose()
            .map_err(|e| ListError::Bad {
                cid: dir,
                message: e.to_string(),
            })?;
        match meta.as_ref().map(|m| m.kind) {
            Some(DataType::Directory) => {}
            Some(DataType::HamtShard) => return Err(ListError::Hamt { cid: dir }),
            _ if dir == root => return Err(ListError::NotADirectory { cid: root }),
            _ => {
                return Err(ListError::Bad {
                    cid: dir,
                    message: "expected a directory".into(),
                });
            }
        }
        for link in &node.links {
            let name = link.name.unwrap_or_default();
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                return Err(ListError::Bad {
                    cid: dir,
                    message: format!("entry name {name:?} cannot be an input name"),
                });
            }
            let child = Cid::try_from(link.hash).map_err(|e| ListError::Bad {
                cid: dir,
                message: format!("link is not a CID: {e}"),
            })?;
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            if child.codec() == RAW_CODEC {
                out.push(DirEntry {
                    path,
                    cid: child,
                    size: link.tsize.unwrap_or(0),
                });
            } else {
                let block = fetch_one(net, store, child, root, options).await?;
                let node = PbNode::decode(&block).map_err(|e| ListError::Bad {
                    cid: child,
                    message: e.to_string(),
                })?;
                let meta =
                    node.data
                        .map(UnixFsData::decode)
                        .transpose()
                        .map_err(|e| ListError::Bad {
                            cid: child,
                            message: e.to_string(),
                        })?;
                match meta {
                    Some(m) if m.kind == DataType::Directory || m.kind == DataType::HamtShard => {
                        stack.push((path, child))
                    }
                    Some(m) if m.kind == DataType::File || m.kind == DataType::Raw => {
                        out.push(DirEntry {
                            path,
                            cid: child,
                            size: m.filesize.unwrap_or(0),
                        })
                    }
                    _ => {
                        return Err(ListError::Bad {
                            cid: child,
                            message: "neither a file nor a directory (symlinks are not inputs)"
                                .into(),
                        });
                    }
                }
            }
            if out.len() > MAX_LIST_ENTRIES {
                return Err(ListError::TooMany {
                    cid: root,
                    limit: MAX_LIST_ENTRIES,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// CID codec of raw leaves.
const RAW_CODEC: u64 = 0x55;

async fn fetch_one(
    net: &NetHandle,
    store: &Arc<BlockStore>,
    cid: Cid,
    root: Cid,
    options: &FetchOptions,
) -> Result<Vec<u8>, ListError> {
    let local = {
        let store = Arc::clone(store);
        tokio::task::spawn_blocking(move || store.get(&cid))
            .await
            .map_err(|e| FetchError::Store(StoreError::Db(format!("store task failed: {e}"))))?
            .map_err(FetchError::Store)?
    };
    if let Some(data) = local {
        return Ok(data);
    }
    match want_block(net, cid, options.block_timeout).await {
        Ok(result) => Ok(result.map_err(FetchError::Net)?),
        Err(_) => Err(ListError::Fetch(FetchError::BlockUnavailable {
            cid,
            root,
            peers: "the connected providers".into(),
            waited: options.block_timeout,
        })),
    }
}

/// Why a directory could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{cid} is a file, not a UnixFS directory")]
    NotADirectory { cid: Cid },
    #[error(
        "{cid} is a HAMT-sharded directory, which shoal cannot list yet; split it into subdirectories"
    )]
    Hamt { cid: Cid },
    #[error("{cid}: {message}")]
    Bad { cid: Cid, message: String },
    #[error("{cid} lists more than {limit} files")]
    TooMany { cid: Cid, limit: usize },
}
