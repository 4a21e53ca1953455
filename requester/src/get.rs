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
        s3_client: &mut Option<s3::Client>,
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
            let fetched = self.fetch(location, &partial, s3_client).await;
            let verified = match fetched {
                Ok(()) => verify(&partial, &cid).await,
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
        dest: &Path,
        s3_client: &mut Option<s3::Client>,
    ) -> Result<(), String> {
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
                    .map_err(|e| format!("copying: {e}"))
            }
            "s3" => {
                let (bucket, prefix) =
                    s3::parse_url(&location.url).ok_or("not an s3://bucket/prefix URL")?;
                if s3_client.is_none() {
                    let (client, credentials) = s3::connect(&self.s3).await;
                    credentials?;
                    *s3_client = Some(client);
                }
                let client = s3_client.as_ref().ok_or("no S3 client")?;
                s3::fetch_shard(client, bucket, prefix, dest)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("cannot fetch from a {other} location")),
        }
    }
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
    let mut client = None;
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let outcome = fetcher.get_shard(entry, dir, &mut client).await;
        progress(entry.shard, &outcome);
        results.push((entry.shard, outcome));
    }
    Ok(results)
}
