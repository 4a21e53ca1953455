//! Publishing one shard's output as S3 objects.
//!
//! Every output file becomes the object `<prefix><relative path>`; small
//! files go up in one PUT, large ones as a multipart upload with parallel
//! parts. Every object and part carries its SHA-256, which the server checks.
//! `<prefix>_shoal.json` is written last, so its presence means the shard is
//! complete. Publishing a shard whose `_shoal.json` already names the same CID
//! does nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::allow::{AllowList, template_head};
use super::client::{Client, S3Error, Settings, connect};
use super::keys::expand_prefix;
use crate::publisher::{BoxFuture, Output, PublishError, Publisher};
use crate::target::{Location, Target};

const DRIVER: &str = "s3";
/// Name of the per-shard manifest object, written last.
pub const MANIFEST: &str = "_shoal.json";
/// S3's smallest part (except the last).
const MIN_PART_SIZE: usize = 5 << 20;

/// What `<prefix>_shoal.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// Format version.
    pub version: u32,
    /// UnixFS CID (CIDv1, raw leaves) of the output directory.
    pub cid: String,
    pub job: String,
    pub shard: u32,
    /// Peer id of the node that computed and published the output.
    pub node: String,
    /// Every file, by path relative to the prefix.
    pub files: Vec<FileRecord>,
    /// Directories with nothing in them, which S3 cannot hold as objects but
    /// the CID covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_dirs: Vec<String>,
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
}

/// `[publishers.s3]` of a node's config, as the driver needs it.
#[derive(Debug, Clone)]
pub struct S3PublisherConfig {
    pub settings: Settings,
    /// Bucket and key-prefix patterns outputs may be written to.
    pub allow: Vec<String>,
    /// Part size for multipart uploads; files up to this size go in one PUT.
    pub part_size: usize,
    /// Most requests in flight at once, across files and parts.
    pub concurrency: usize,
}

/// The S3 publisher driver.
pub struct S3Publisher {
    client: Client,
    allow: AllowList,
    part_size: usize,
    concurrency: usize,
    /// Whether the AWS chain found credentials when the node started.
    credentials: Result<(), String>,
}

impl S3Publisher {
    /// Builds the driver and looks up credentials once; a node without
    /// credentials keeps the driver but declines S3 work, saying why.
    pub async fn new(config: S3PublisherConfig) -> Result<Self, String> {
        let allow = AllowList::parse(&config.allow)?;
        if config.part_size < MIN_PART_SIZE {
            return Err(format!(
                "part size must be at least {} MiB (the S3 minimum)",
                MIN_PART_SIZE >> 20
            ));
        }
        let (client, credentials) = connect(&config.settings).await;
        Ok(S3Publisher {
            client,
            allow,
            part_size: config.part_size,
            concurrency: config.concurrency.max(1),
            credentials,
        })
    }

    /// The client, for reading S3 inputs with the same settings.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Why this node cannot use S3 at all, if it cannot.
    pub fn credentials_problem(&self) -> Option<&str> {
        self.credentials.as_ref().err().map(String::as_str)
    }

    async fn publish_s3(
        &self,
        bucket: &str,
        prefix_template: &str,
        output: Output<'_>,
    ) -> Result<Location, PublishError> {
        if let Err(reason) = &self.credentials {
            return Err(PublishError::NotAllowed(reason.clone()));
        }
        let prefix = expand_prefix(prefix_template, output.job, output.shard, output.node)
            .map_err(PublishError::NotAllowed)?;
        self.allow
            .check("publishers.s3.allow", bucket, &prefix)
            .map_err(PublishError::NotAllowed)?;
        let location = Location {
            driver: DRIVER.into(),
            url: format!("s3://{bucket}/{prefix}"),
            providers: Vec::new(),
        };
        let manifest_key = format!("{prefix}{MANIFEST}");
        let cid = output.cid.to_string();
        if let Some(existing) = read_manifest(&self.client, bucket, &manifest_key)
            .await
            .map_err(failed)?
            && existing.cid == cid
        {
            return Ok(location);
        }

        let dir = output.dir.to_owned();
        let (files, empty_dirs) = tokio::task::spawn_blocking(move || list_output(&dir))
            .await
            .map_err(|e| failed(S3Error::new(format!("listing the output: {e}"), false)))?
            .map_err(|e| failed(S3Error::new(e, false)))?;
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let records: Vec<FileRecord> = futures::stream::iter(files)
            .map(|(path, rel)| {
                let key = format!("{prefix}{rel}");
                let slots = slots.clone();
                async move {
                    let (size, sha256) = self.upload_file(bucket, &key, &path, slots).await?;
                    Ok::<_, S3Error>(FileRecord {
                        path: rel,
                        size,
                        sha256,
                    })
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await
            .map_err(failed)?;
        let mut records = records;
        records.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = ShardManifest {
            version: 1,
            cid,
            job: output.job.to_string(),
            shard: output.shard,
            node: output.node.to_string(),
            files: records,
            empty_dirs,
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| failed(S3Error::new(format!("encoding {MANIFEST}: {e}"), false)))?;
        put_object(&self.client, bucket, &manifest_key, Bytes::from(body))
            .await
            .map_err(failed)?;
        Ok(location)
    }

    /// Uploads one file; returns its size and hex SHA-256.
    async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        slots: Arc<Semaphore>,
    ) -> Result<(u64, String), S3Error> {
        let read_err =
            |e: std::io::Error| S3Error::new(format!("reading {}: {e}", path.display()), false);
        let size = tokio::fs::metadata(path).await.map_err(read_err)?.len();
        if size <= self.part_size as u64 {
            let _slot = slots.acquire().await.map_err(|_| closed())?;
            let data = tokio::fs::read(path).await.map_err(read_err)?;
            let sha = hex::encode(Sha256::digest(&data));
            put_object(&self.client, bucket, key, Bytes::from(data)).await?;
            return Ok((size, sha));
        }
        self.upload_multipart(bucket, key, path, slots).await
    }

    async fn upload_multipart(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        slots: Arc<Semaphore>,
    ) -> Result<(u64, String), S3Error> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| {
                S3Error::from_sdk(&format!("starting upload of s3://{bucket}/{key}"), e)
            })?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| S3Error::new("the server returned no upload id", true))?
            .to_string();
        let result = self
            .upload_parts(bucket, key, &upload_id, path, slots)
            .await;
        match result {
            Ok((parts, size, sha)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        S3Error::from_sdk(&format!("completing upload of s3://{bucket}/{key}"), e)
                    })?;
                Ok((size, sha))
            }
            Err(e) => {
                // Best effort: leftover parts cost storage until aborted.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    /// Reads the file part by part (hashing the whole of it on the way) and
    /// uploads each part in its own task, as slots allow.
    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        path: &Path,
        slots: Arc<Semaphore>,
    ) -> Result<(Vec<CompletedPart>, u64, String), S3Error> {
        let read_err =
            |e: std::io::Error| S3Error::new(format!("reading {}: {e}", path.display()), false);
        let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
        let mut whole = Sha256::new();
        let mut size = 0u64;
        let mut tasks = Vec::new();
        for part_number in 1.. {
            let slot = slots.clone().acquire_owned().await.map_err(|_| closed())?;
            let mut buf = vec![0u8; self.part_size];
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).await.map_err(read_err)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            whole.update(&buf);
            size += filled as u64;
            let checksum = BASE64.encode(Sha256::digest(&buf));
            let request = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_length(filled as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(checksum.clone())
                .body(ByteStream::from(Bytes::from(buf)));
            let what = format!("uploading part {part_number} of s3://{bucket}/{key}");
            tasks.push(tokio::spawn(async move {
                let out = request
                    .send()
                    .await
                    .map_err(|e| S3Error::from_sdk(&what, e));
                drop(slot);
                let out = out?;
                Ok::<_, S3Error>(
                    CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .checksum_sha256(checksum)
                        .build(),
                )
            }));
            if filled < self.part_size {
                break;
            }
        }
        let mut parts = Vec::with_capacity(tasks.len());
        let mut first_error = None;
        for task in tasks {
            match task.await {
                Ok(Ok(part)) => parts.push(part),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error
                        .get_or_insert(S3Error::new(format!("upload task failed: {e}"), true));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((parts, size, hex::encode(whole.finalize()))),
        }
    }
}

fn closed() -> S3Error {
    S3Error::new("upload slots closed", false)
}

fn failed(e: S3Error) -> PublishError {
    PublishError::failed(DRIVER, e.message, e.retryable)
}

/// One PUT with its SHA-256, which the server checks.
pub(super) async fn put_object(
    client: &Client,
    bucket: &str,
    key: &str,
    data: Bytes,
) -> Result<(), S3Error> {
    let checksum = BASE64.encode(Sha256::digest(&data));
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_length(data.len() as i64)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum)
        .body(ByteStream::from(data))
        .send()
        .await
        .map_err(|e| S3Error::from_sdk(&format!("writing s3://{bucket}/{key}"), e))?;
    Ok(())
}

/// `<prefix>_shoal.json` if present; `None` when the shard is not there.
pub async fn read_manifest(
    client: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<ShardManifest>, S3Error> {
    let what = format!("reading s3://{bucket}/{key}");
    let response = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(r) => r,
        Err(e) => {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                return Ok(None);
            }
            return Err(S3Error::from_sdk(&what, e));
        }
    };
    if response
        .content_length()
        .is_some_and(|n| n > super::MAX_MANIFEST_BYTES as i64)
    {
        return Err(S3Error::new(
            format!("{what}: larger than {} bytes", super::MAX_MANIFEST_BYTES),
            false,
        ));
    }
    let body = response
        .body
        .collect()
        .await
        .map_err(|e| S3Error::new(format!("{what}: {e}"), true))?
        .into_bytes();
    if body.len() > super::MAX_MANIFEST_BYTES {
        return Err(S3Error::new(
            format!("{what}: larger than {} bytes", super::MAX_MANIFEST_BYTES),
            false,
        ));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| S3Error::new(format!("{what}: not a shoal manifest: {e}"), false))
}

/// Regular files as (path on disk, `/`-separated relative path).
type Files = Vec<(PathBuf, String)>;

/// Every regular file under `dir`, and the directories with nothing in them.
fn list_output(dir: &Path) -> Result<(Files, Vec<String>), String> {
    fn walk(
        dir: &Path,
        rel: &str,
        files: &mut Files,
        empty: &mut Vec<String>,
    ) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let mut any = false;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
            any = true;
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| format!("{}: file name is not UTF-8", entry.path().display()))?;
            let child_rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(|e| format!("reading {}: {e}", entry.path().display()))?;
            if kind.is_dir() {
                walk(&entry.path(), &child_rel, files, empty)?;
            } else if kind.is_file() {
                if child_rel == MANIFEST {
                    return Err(format!(
                        "the output has a file named {MANIFEST}, which the S3 publisher writes itself"
                    ));
                }
                files.push((entry.path(), child_rel));
            } else {
                return Err(format!(
                    "{child_rel}: only regular files and directories can be published"
                ));
            }
        }
        if !any && !rel.is_empty() {
            empty.push(rel.to_string());
        }
        Ok(())
    }
    let mut files = Vec::new();
    let mut empty = Vec::new();
    walk(dir, "", &mut files, &mut empty)?;
    Ok((files, empty))
}

impl Publisher for S3Publisher {
    fn kind(&self) -> &'static str {
        DRIVER
    }

    fn check(&self, target: &Target) -> Result<(), String> {
        let Target::S3(t) = target else {
            return Err("not an S3 target".into());
        };
        self.credentials.clone()?;
        expand_prefix(&t.prefix, "j", 0, "n")?;
        self.allow
            .check("publishers.s3.allow", &t.bucket, &template_head(&t.prefix))
    }

    fn publish<'a>(
        &'a self,
        target: &'a Target,
        output: Output<'a>,
    ) -> BoxFuture<'a, Result<Location, PublishError>> {
        Box::pin(async move {
            let Target::S3(t) = target else {
                return Err(PublishError::NotConfigured(DRIVER));
            };
            self.publish_s3(&t.bucket, &t.prefix, output).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_and_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty/inner")).unwrap();
        std::fs::write(dir.path().join("a/b/x.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("top"), b"t").unwrap();
        let (mut files, empty) = list_output(dir.path()).unwrap();
        files.sort();
        let rels: Vec<_> = files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(rels, ["a/b/x.txt", "top"]);
        assert_eq!(empty, ["empty/inner"]);
    }

    #[test]
    fn an_output_file_named_like_the_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), b"{}").unwrap();
        assert!(list_output(dir.path()).unwrap_err().contains(MANIFEST));
    }
}
