//! Reading from S3: listing input objects, downloading one object to disk
//! (streaming, bounded), and fetching a published shard back.

use std::path::{Component, Path};

use aws_sdk_s3::config::Region;
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::client::{Client, S3Error};
use super::publish::{MANIFEST, ShardManifest, read_manifest};

/// One object found by [`list_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The ETag, without quotes; a download can insist on it.
    pub etag: String,
}

/// Every object under `prefix` (ListObjectsV2, all pages), in key order.
pub async fn list_objects(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectInfo>, S3Error> {
    let what = format!("listing s3://{bucket}/{prefix}");
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| S3Error::from_sdk(&what, e))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if key.ends_with('/') {
                continue; // a "folder" marker, not data
            }
            out.push(ObjectInfo {
                key: key.to_string(),
                size: object.size().unwrap_or(0).max(0) as u64,
                etag: object
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// What a download should check.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    /// The object must still have this ETag (the one the job was cut from).
    pub etag: Option<&'a str>,
    /// Hex SHA-256 the bytes must have.
    pub sha256: Option<&'a str>,
    /// Most bytes to accept (0 = no limit).
    pub max_bytes: u64,
    /// Region for this request, when it differs from the client's.
    pub region: Option<&'a str>,
}

/// Opens `s3://bucket/key` for reading: the body stream and its length.
pub async fn open(
    client: &Client,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
    region: Option<&str>,
) -> Result<(ByteStream, Option<u64>), S3Error> {
    let what = format!("reading s3://{bucket}/{key}");
    let mut request = client.get_object().bucket(bucket).key(key);
    if let Some(etag) = etag {
        request = request.if_match(format!("\"{etag}\""));
    }
    let response = match region {
        Some(region) => {
            request
                .customize()
                .config_override(
                    aws_sdk_s3::config::Builder::default().region(Region::new(region.to_string())),
                )
                .send()
                .await
        }
        None => request.send().await,
    };
    let response = response.map_err(|e| {
        if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) {
            S3Error::new(
                format!(
                    "{what}: the object changed since the job was submitted (its ETag differs)"
                ),
                false,
            )
        } else {
            S3Error::from_sdk(&what, e)
        }
    })?;
    let length = response.content_length().map(|n| n.max(0) as u64);
    Ok((response.body, length))
}

/// Streams `s3://bucket/key` to `dest` (via a temporary file renamed into
/// place, so a file that exists is complete). Returns the byte count.
pub async fn download(
    client: &Client,
    bucket: &str,
    key: &str,
    dest: &Path,
    expect: Expect<'_>,
) -> Result<u64, S3Error> {
    let what = format!("downloading s3://{bucket}/{key}");
    let (mut body, length) = open(client, bucket, key, expect.etag, expect.region).await?;
    if expect.max_bytes > 0 && length.is_some_and(|n| n > expect.max_bytes) {
        return Err(too_large(&what, expect.max_bytes));
    }
    let tmp = dest.with_file_name(format!(
        ".{}.partial",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download")
    ));
    let io_err =
        |e: std::io::Error| S3Error::new(format!("{what}: writing {}: {e}", dest.display()), false);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io_err)?;
    }
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io_err)?;
    let mut hasher = expect.sha256.map(|_| Sha256::new());
    let mut total = 0u64;
    let streamed: Result<(), S3Error> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| S3Error::new(format!("{what}: {e}"), true))?;
            total += chunk.len() as u64;
            if expect.max_bytes > 0 && total > expect.max_bytes {
                return Err(too_large(&what, expect.max_bytes));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        if let (Some(h), Some(want)) = (hasher.take(), expect.sha256) {
            let got = hex::encode(h.finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(S3Error::new(
                    format!("{what}: SHA-256 is {got}, the manifest says {want}"),
                    false,
                ));
            }
        }
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = streamed {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, dest).await.map_err(io_err)?;
    Ok(total)
}

fn too_large(what: &str, limit: u64) -> S3Error {
    S3Error::new(
        format!("{what}: larger than the limit of {limit} bytes"),
        false,
    )
}

/// Downloads a shard published under `s3://bucket/prefix` into `dest`: reads
/// `_shoal.json`, fetches every file it lists (checking size and SHA-256),
/// and recreates empty directories. The caller checks the whole against the
/// shard's CID. Paths in the manifest are untrusted and must stay in `dest`.
pub async fn fetch_shard(
    client: &Client,
    bucket: &str,
    prefix: &str,
    dest: &Path,
) -> Result<ShardManifest, S3Error> {
    let manifest_key = format!("{prefix}{MANIFEST}");
    let manifest = read_manifest(client, bucket, &manifest_key)
        .await?
        .ok_or_else(|| {
            S3Error::new(
                format!("s3://{bucket}/{manifest_key} does not exist: the shard was not (completely) published there"),
                false,
            )
        })?;
    for dir in &manifest.empty_dirs {
        let path = dest.join(safe_path(dir)?);
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|e| S3Error::new(format!("creating {}: {e}", path.display()), false))?;
    }
    for file in &manifest.files {
        let path = dest.join(safe_path(&file.path)?);
        let key = format!("{prefix}{}", file.path);
        let size = download(
            client,
            bucket,
            &key,
            &path,
            Expect {
                sha256: Some(&file.sha256),
                max_bytes: file.size,
                ..Expect::default()
            },
        )
        .await?;
        if size != file.size {
            return Err(S3Error::new(
                format!(
                    "s3://{bucket}/{key}: {size} bytes, the manifest says {}",
                    file.size
                ),
                false,
            ));
        }
    }
    Ok(manifest)
}

/// A manifest path as a relative path that cannot leave its directory.
fn safe_path(path: &str) -> Result<&Path, S3Error> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p)
    } else {
        Err(S3Error::new(
            format!("the shard manifest names an unsafe path {path:?}"),
            false,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_cannot_escape() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
        assert!(safe_path("a/b.txt").is_ok());
    }
}
