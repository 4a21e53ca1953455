//! `shoal get`: fetches each shard's output from where it was published,
//! one shard at a time, and verifies every byte against the shard's CID
//! before it appears under `DIR/<shard index>/`.
//!
//! A shard is written to `DIR/.<index>.partial` and renamed into place only
//! once it verifies, so a directory that exists is a verified output. A
//! shard that already verifies in place is skipped. A failing shard never
//! stops the others; each failure names the shard and every location tried.

use std::path::{Component, Path, PathBuf};

use shoal_node::protocol::job::Location;
use shoal_publishers::content;
use shoal_publishers::content::Cid;
use shoal_publishers::s3;

use crate::model::{Manifest, ManifestEntry};

/// How locations are read.
#[derive(Debug, Clone, Default)]
pub struct Fetcher {
    /// S3 settings: endpoint and path style; credentials come from the
    /// user's AWS chain.
    pub s3: s3::Settings,
    /// Fetch `ipfs://` locations through this trustless gateway (every block
    /// still verified) instead of over Bitswap from the recorded providers.
    pub ipfs_gateway: Option<String>,
    /// Peers (multiaddrs with `/p2p/`) the Bitswap peer joins the DHT
    /// through, to find providers the location does not name (the CLI uses
    /// the requester's own addresses).
    pub bootstrap: Vec<String>,
}

/// Clients made on first use and kept for the next shards.
#[derive(Default)]
pub struct Clients {
    s3: Option<s3::Client>,
    ipfs: Option<IpfsPeer>,
}

/// A short-lived libp2p peer with a scratch block store, to fetch over
/// Bitswap. It announces no role, so no requester ever gives it work.
struct IpfsPeer {
    net: shoal_node::net::NetHandle,
    store: std::sync::Arc<shoal_publishers::ipfs::BlockStore>,
    _dir: tempfile::TempDir,
}

impl IpfsPeer {
    async fn start(bootstrap: &[String]) -> Result<IpfsPeer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("scratch directory: {e}"))?;
        let store = std::sync::Arc::new(
            shoal_publishers::ipfs::BlockStore::open(
                &dir.path().join(shoal_publishers::ipfs::STORE_FILE),
                None,
            )
            .map_err(|e| format!("scratch block store: {e}"))?,
        );
        let net = shoal_node::net::start_with_store(
            shoal_node::libp2p::identity::Keypair::generate_ed25519(),
            shoal_node::net::NetConfig {
                listen: Vec::new(),
                bootstrap: bootstrap.iter().filter_map(|a| a.parse().ok()).collect(),
                mdns: false,
                announce_interval: std::time::Duration::from_secs(3600),
                ttl: std::time::Duration::from_secs(3 * 3600),
                info: shoal_node::protocol::membership::NodeInfo::without_compute(Vec::new()),
            },
            None,
            Some(store.clone()),
        )
        .await
        .map_err(|e| format!("cannot start a libp2p peer: {e}"))?;
        Ok(IpfsPeer {
            net,
            store,
            _dir: dir,
        })
    }
}

impl Drop for IpfsPeer {
    fn drop(&mut self) {
        let net = self.net.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { net.shutdown().await });
        }
    }
}

/// What happened to one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched and verified from `from`.
    Fetched { from: String },
    /// Already present and verified.
    Present,
}

impl Fetcher {
    /// Fetches one shard of `manifest` into `dir/<index>`.
    pub async fn get_shard(
        &self,
        entry: &ManifestEntry,
        dir: &Path,
        clients: &mut Clients,
    ) -> Result<Outcome, String> {
        let shard = entry.shard;
        let cid_text = entry
            .cid
            .as_deref()
            .ok_or_else(|| format!("shard {shard}: not published (state {:?})", entry.state))?;
        let cid: Cid = cid_text.parse().map_err(|e| {
            format!("shard {shard}: the manifest's CID {cid_text:?} is invalid: {e}")
        })?;
        if entry.locations.is_empty() {
            return Err(format!("shard {shard}: no published location"));
        }
        let dest = dir.join(shard.to_string());
        if dest.exists() && verify(&dest, &cid).await.is_ok() {
            return Ok(Outcome::Present);
        }
        let partial = dir.join(format!(".{shard}.partial"));
        let mut errors = Vec::new();
        for location in &entry.locations {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            let fetched = self.fetch(location, &cid, &partial, clients).await;
            let verified = match fetched {
                Ok(Fetched::Unchecked) => verify(&partial, &cid).await,
                Ok(Fetched::Verified) => Ok(()),
                Err(e) => Err(e),
            };
            match verified {
                Ok(()) => {
                    if dest.exists() {
                        tokio::fs::remove_dir_all(&dest)
                            .await
                            .map_err(|e| format!("replacing {}: {e}", dest.display()))?;
                    }
                    tokio::fs::rename(&partial, &dest)
                        .await
                        .map_err(|e| format!("moving into {}: {e}", dest.display()))?;
                    return Ok(Outcome::Fetched {
                        from: location.url.clone(),
                    });
                }
                Err(e) => errors.push(format!("{}: {e}", location.url)),
            }
        }
        let _ = tokio::fs::remove_dir_all(&partial).await;
        Err(format!("shard {shard}: {}", errors.join("; ")))
    }

    async fn fetch(
        &self,
        location: &Location,
        cid: &Cid,
        dest: &Path,
        clients: &mut Clients,
    ) -> Result<Fetched, String> {
        match location.driver.as_str() {
            "local" => {
                let path = location
                    .url
                    .strip_prefix("file://")
                    .ok_or("not a file:// URL")?;
                let src = PathBuf::from(path);
                let dest = dest.to_owned();
                tokio::task::spawn_blocking(move || copy_tree(&src, &dest))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("copying: {e}"))?;
                Ok(Fetched::Unchecked)
            }
            "s3" => {
                let (bucket, prefix) =
                    s3::parse_url(&location.url).ok_or("not an s3://bucket/prefix URL")?;
                if clients.s3.is_none() {
                    let (client, credentials) = s3::connect(&self.s3).await;
                    credentials?;
                    clients.s3 = Some(client);
                }
                let client = clients.s3.as_ref().ok_or("no S3 client")?;
                // Sizes and SHA-256 per file are checked; the CID is not yet.
                s3::fetch_shard(client, bucket, prefix, dest)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Fetched::Unchecked)
            }
            "ipfs" => {
                let root: Cid = location
                    .url
                    .strip_prefix("ipfs://")
                    .ok_or("not an ipfs://CID URL")?
                    .parse()
                    .map_err(|e| format!("not an ipfs://CID URL: {e}"))?;
                if root != *cid {
                    return Err(format!("names {root}, but the shard's CID is {cid}"));
                }
                if let Some(gateway) = &self.ipfs_gateway {
                    let http = reqwest::Client::new();
                    return shoal_publishers::ipfs::fetch_car_from_gateway(
                        &http, gateway, &root, dest,
                    )
                    .await
                    .map(|_| Fetched::Verified)
                    .map_err(|e| format!("via gateway {gateway}: {e}"));
                }
                if clients.ipfs.is_none() {
                    clients.ipfs = Some(IpfsPeer::start(&self.bootstrap).await?);
                }
                let peer = clients.ipfs.as_ref().ok_or("no libp2p peer")?;
                let hints = location
                    .providers
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<shoal_node::libp2p::Multiaddr>>();
                let options = shoal_node::ipfs::FetchOptions {
                    block_timeout: std::time::Duration::from_secs(30),
                    ..Default::default()
                };
                shoal_node::ipfs::fetch_to_dir(&peer.net, &peer.store, root, &hints, dest, &options)
                    .await
                    .map(|_| Fetched::Verified)
                    .map_err(|e| format!("over Bitswap: {e}"))
            }
            other => Err(format!("cannot fetch from a {other} location")),
        }
    }
}

/// Whether a fetch already checked the result against the shard's CID
/// (the IPFS paths export, then re-import and compare).
enum Fetched {
    Unchecked,
    Verified,
}

async fn verify(path: &Path, cid: &Cid) -> Result<(), String> {
    let path = path.to_owned();
    let cid = *cid;
    tokio::task::spawn_blocking(move || {
        content::verify_path(&path, &cid).map_err(|e| format!("does not match its CID: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Copies a directory tree of regular files and directories.
fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name();
        if !Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            continue;
        }
        let to = dest.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Fetches the chosen shards of `manifest` (all when `only` is `None`) one at
/// a time; returns each shard's outcome.
pub async fn get_job(
    fetcher: &Fetcher,
    manifest: &Manifest,
    dir: &Path,
    only: Option<u32>,
    mut progress: impl FnMut(u32, &Result<Outcome, String>),
) -> Result<Vec<(u32, Result<Outcome, String>)>, String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let entries: Vec<&ManifestEntry> = manifest
        .shards
        .iter()
        .filter(|e| only.is_none_or(|n| e.shard == n))
        .collect();
    if let Some(n) = only
        && entries.is_empty()
    {
        return Err(format!(
            "job {} has no shard {n} (it has {})",
            manifest.job,
            manifest.shards.len()
        ));
    }
    let mut clients = Clients::default();
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let outcome = fetcher.get_shard(entry, dir, &mut clients).await;
        progress(entry.shard, &outcome);
        results.push((entry.shard, outcome));
    }
    Ok(results)
}
