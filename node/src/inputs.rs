//! Staging a shard's inputs: every [`InputItem`] becomes a file under the
//! shard's inputs dir (`$SHOAL_INPUTS`), at the relative path its name gives.
//!
//! Names are checked before anything is fetched, so a bad spec fails fast and
//! no name can reach outside the inputs dir. Files are written to a temporary
//! name and renamed into place, so a file that exists is complete. The total
//! number of bytes is bounded while streaming, not after. Every error names
//! the input it is about. A failed stage may leave earlier inputs in place;
//! the caller owns the directory and removes it.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::executor::human_bytes;
use crate::protocol::job::InputItem;

/// Limits on what one shard may stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageLimits {
    /// Most bytes all inputs together may take (0 = none).
    pub max_total_bytes: u64,
}

/// Why an input could not be staged; always names the input.
#[derive(Debug, thiserror::Error)]
#[error("input {name:?}: {kind}")]
pub struct StageError {
    /// The input's name as given in the job.
    pub name: String,
    /// What went wrong.
    pub kind: StageErrorKind,
}

/// What went wrong while staging one input.
#[derive(Debug, thiserror::Error)]
pub enum StageErrorKind {
    #[error("invalid name: {0}; use a relative path such as data/part-1.csv")]
    InvalidName(&'static str),
    #[error("another input has the same name")]
    Duplicate,
    #[error("conflicts with input {0:?}: a path cannot be both a file and a directory")]
    Conflict(String),
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{url}: only http and https URLs can be downloaded")]
    UnsupportedScheme { url: String },
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("downloading {url}: the server answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("s3://{bucket}/{key}: S3 inputs need [publishers.s3] enabled on this node")]
    NoS3 { bucket: String, key: String },
    #[error("{0}")]
    S3NotAllowed(String),
    #[error("{0}")]
    S3(shoal_publishers::s3::S3Error),
    #[error("IPFS inputs need a node with a block store")]
    NoIpfs,
    #[error("fetching {cid} over IPFS: {reason}")]
    Ipfs { cid: String, reason: String },
    #[error("the shard's inputs exceed the limit of {}", human_bytes(*.limit))]
    TooLarge { limit: u64 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StageError {
    fn new(name: &str, kind: StageErrorKind) -> Self {
        StageError {
            name: name.to_string(),
            kind,
        }
    }
}

impl StageErrorKind {
    fn read(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| StageErrorKind::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    fn write(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| StageErrorKind::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How this node reads S3 inputs: its client (its own credentials) and the
/// operator's `publishers.s3.read` list.
#[derive(Clone)]
pub struct S3Access {
    pub client: shoal_publishers::s3::Client,
    pub read: shoal_publishers::s3::AllowList,
}

/// How this node fetches IPFS inputs: Bitswap on its swarm, into its block
/// store (unpinned, so gc reclaims them).
#[derive(Clone)]
pub struct IpfsAccess {
    pub net: crate::net::NetHandle,
    pub store: std::sync::Arc<shoal_publishers::ipfs::BlockStore>,
}

/// What staging reads from besides local files.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub http: &'a reqwest::Client,
    pub s3: Option<&'a S3Access>,
    pub ipfs: Option<&'a IpfsAccess>,
}

/// Whether every S3 input is one this node may read; the reason if not.
/// Checked before bidding work starts, so nothing is fetched in vain.
pub fn check_s3_inputs(items: &[InputItem], s3: Option<&S3Access>) -> Result<(), StageError> {
    for item in items {
        let InputItem::S3 {
            name, bucket, key, ..
        } = item
        else {
            continue;
        };
        let Some(access) = s3 else {
            return Err(StageError::new(
                name,
                StageErrorKind::NoS3 {
                    bucket: bucket.clone(),
                    key: key.clone(),
                },
            ));
        };
        access
            .read
            .check("publishers.s3.read", bucket, key)
            .map_err(|reason| StageError::new(name, StageErrorKind::S3NotAllowed(reason)))?;
    }
    Ok(())
}

/// Stage every input under `inputs_dir`; returns the bytes written.
#[tracing::instrument(skip_all, fields(inputs = items.len(), dir = %inputs_dir.display()))]
pub async fn stage(
    items: &[InputItem],
    inputs_dir: &Path,
    sources: Sources<'_>,
    limits: &StageLimits,
) -> Result<u64, StageError> {
    check_s3_inputs(items, sources.s3)?;
    let http = sources.http;
    let paths = plan(items)?;
    let mut budget = Budget {
        limit: limits.max_total_bytes,
        used: 0,
    };
    for (item, rel) in items.iter().zip(paths) {
        let name = item.name();
        let dest = inputs_dir.join(rel);
        let err = |kind| StageError::new(name, kind);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(StageErrorKind::write(parent))
                .map_err(err)?;
        }
        if let InputItem::Ipfs {
            cid,
            size,
            providers,
            ..
        } = item
        {
            let access = sources.ipfs.ok_or(StageErrorKind::NoIpfs).map_err(err)?;
            // The listing's size is checked first, the real one after.
            budget.check(*size).map_err(err)?;
            let got = fetch_ipfs(access, cid, providers, &dest)
                .await
                .map_err(err)?;
            budget.take(got).map_err(err)?;
            tracing::debug!(input = name, "staged");
            continue;
        }
        let mut sink = Partial::create(&dest).await.map_err(err)?;
        match item {
            InputItem::Local { path, .. } => {
                copy_local(Path::new(path), &mut sink, &mut budget).await
            }
            InputItem::Url { url, .. } => download(url, http, &mut sink, &mut budget).await,
            InputItem::Inline { content, .. } => {
                let bytes = content.as_bytes();
                match budget.take(bytes.len() as u64) {
                    Ok(()) => sink.write(bytes).await,
                    Err(e) => Err(e),
                }
            }
            InputItem::S3 {
                bucket,
                key,
                etag,
                region,
                ..
            } => match sources.s3 {
                Some(access) => {
                    let object = S3Object {
                        bucket,
                        key,
                        etag,
                        region: region.as_deref(),
                    };
                    download_s3(access, object, &mut sink, &mut budget).await
                }
                None => Err(StageErrorKind::NoS3 {
                    bucket: bucket.clone(),
                    key: key.clone(),
                }),
            },
            InputItem::Ipfs { .. } => Err(StageErrorKind::NoIpfs),
        }
        .map_err(err)?;
        sink.commit().await.map_err(err)?;
        tracing::debug!(input = name, "staged");
    }
    Ok(budget.used)
}

/// Checks a name and turns it into a path that stays under the inputs dir.
pub fn safe_relative_path(name: &str) -> Result<PathBuf, StageError> {
    let invalid = |reason| StageError::new(name, StageErrorKind::InvalidName(reason));
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(invalid("it is an absolute path"));
    }
    let mut path = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" => return Err(invalid("it has an empty path component")),
            "." | ".." => return Err(invalid("it contains '.' or '..'")),
            _ => path.push(part),
        }
    }
    // Belt and braces: what was pushed must be plain names only.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid("it is not a plain relative path"));
    }
    Ok(path)
}

/// Every input's relative path, after checking names for escapes,
/// duplicates and file/directory clashes.
fn plan(items: &[InputItem]) -> Result<Vec<PathBuf>, StageError> {
    let paths = items
        .iter()
        .map(|item| safe_relative_path(item.name()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::with_capacity(paths.len());
    for (item, path) in items.iter().zip(&paths) {
        if !seen.insert(path.as_path()) {
            return Err(StageError::new(item.name(), StageErrorKind::Duplicate));
        }
    }
    for (item, path) in items.iter().zip(&paths) {
        if let Some(dir) = path.ancestors().skip(1).find(|a| seen.contains(a)) {
            let other = dir.display().to_string();
            return Err(StageError::new(
                item.name(),
                StageErrorKind::Conflict(other),
            ));
        }
    }
    Ok(paths)
}

/// Bytes staged so far against the shard's limit.
struct Budget {
    limit: u64,
    used: u64,
}

impl Budget {
    /// Fails when `n` more bytes would go over the limit.
    fn check(&self, n: u64) -> Result<(), StageErrorKind> {
        if self.limit > 0 && self.used.saturating_add(n) > self.limit {
            return Err(StageErrorKind::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn take(&mut self, n: u64) -> Result<(), StageErrorKind> {
        self.check(n)?;
        self.used += n;
        Ok(())
    }
}

/// A file being written under a temporary name; removed unless committed.
struct Partial {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Partial {
    async fn create(dest: &Path) -> Result<Self, StageErrorKind> {
        let file_name = dest.file_name().unwrap_or_default().to_string_lossy();
        let unique = rand::random::<u64>();
        let tmp = dest.with_file_name(format!(".{file_name}.{unique:016x}.partial"));
        let file = File::create(&tmp)
            .await
            .map_err(StageErrorKind::write(&tmp))?;
        let dest = dest.to_path_buf();
        Ok(Partial {
            file,
            tmp,
            dest,
            committed: false,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), StageErrorKind> {
        let to_error = StageErrorKind::write(&self.dest);
        self.file.write_all(bytes).await.map_err(to_error)
    }

    async fn commit(mut self) -> Result<(), StageErrorKind> {
        let to_error = StageErrorKind::write(&self.dest);
        self.file.flush().await.map_err(&to_error)?;
        tokio::fs::rename(&self.tmp, &self.dest)
            .await
            .map_err(&to_error)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover .partial file is harmless clutter.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

async fn copy_local(
    path: &Path,
    sink: &mut Partial,
    budget: &mut Budget,
) -> Result<(), StageErrorKind> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(StageErrorKind::read(path))?;
    if !meta.is_file() {
        return Err(StageErrorKind::NotAFile {
            path: path.to_path_buf(),
        });
    }
    budget.check(meta.len())?;
    let mut file = File::open(path).await.map_err(StageErrorKind::read(path))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(StageErrorKind::read(path))?;
        if n == 0 {
            return Ok(());
        }
        // The file may grow while it is copied; the budget still holds.
        budget.take(n as u64)?;
        sink.write(&buf[..n]).await?;
    }
}

async fn download(
    url: &str,
    http: &reqwest::Client,
    sink: &mut Partial,
    budget: &mut Budget,
) -> Result<(), StageErrorKind> {
    let parsed = reqwest::Url::parse(url).map_err(|e| StageErrorKind::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let shown = redacted(&parsed);
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(StageErrorKind::UnsupportedScheme { url: shown });
    }
    let failed = |e: reqwest::Error| StageErrorKind::Download {
        url: shown.clone(),
        reason: error_chain(&e.without_url()),
    };
    let mut response = http.get(parsed.clone()).send().await.map_err(failed)?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(StageErrorKind::Status { url: shown, status });
    }
    // Refuse early when the server says up front that it is too big.
    budget.check(response.content_length().unwrap_or(0))?;
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        budget.take(chunk.len() as u64)?;
        sink.write(&chunk).await?;
    }
    Ok(())
}

/// Fetches one UnixFS file over Bitswap to `dest` (verified block by block
/// and as a whole); returns its size.
async fn fetch_ipfs(
    access: &IpfsAccess,
    cid: &str,
    providers: &[String],
    dest: &Path,
) -> Result<u64, StageErrorKind> {
    let fail = |reason: String| StageErrorKind::Ipfs {
        cid: cid.to_string(),
        reason,
    };
    let root: shoal_publishers::content::Cid =
        cid.parse().map_err(|e| fail(format!("not a CID: {e}")))?;
    let hints = providers
        .iter()
        .map(|p| p.parse::<libp2p::Multiaddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("bad provider address: {e}")))?;
    let (_report, _summary) = crate::ipfs::fetch_to_dir(
        &access.net,
        &access.store,
        root,
        &hints,
        dest,
        &crate::ipfs::FetchOptions::default(),
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    let meta = tokio::fs::metadata(dest)
        .await
        .map_err(|e| fail(format!("reading {}: {e}", dest.display())))?;
    if !meta.is_file() {
        return Err(fail("is a directory, not a file".into()));
    }
    Ok(meta.len())
}

struct S3Object<'a> {
    bucket: &'a str,
    key: &'a str,
    etag: &'a str,
    region: Option<&'a str>,
}

/// Streams one S3 object into `sink`, insisting on the ETag the job was cut
/// from, so every node reads the same bytes.
async fn download_s3(
    access: &S3Access,
    object: S3Object<'_>,
    sink: &mut Partial,
    budget: &mut Budget,
) -> Result<(), StageErrorKind> {
    let etag = (!object.etag.is_empty()).then_some(object.etag);
    let (mut body, length) = shoal_publishers::s3::open(
        &access.client,
        object.bucket,
        object.key,
        etag,
        object.region,
    )
    .await
    .map_err(StageErrorKind::S3)?;
    budget.check(length.unwrap_or(0))?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            StageErrorKind::S3(shoal_publishers::s3::S3Error::new(
                format!("reading s3://{}/{}: {e}", object.bucket, object.key),
                true,
            ))
        })?;
        budget.take(chunk.len() as u64)?;
        sink.write(&chunk).await?;
    }
    Ok(())
}

/// The URL with any password hidden, for messages and logs.
fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// `e` and its causes, so "connection refused" is not hidden behind
/// "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A scratch dir whose `inputs/` is staged into.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new() -> Self {
            Scratch(tempfile::TempDir::new().unwrap())
        }
        async fn stage(
            &self,
            items: &[InputItem],
            max_total_bytes: u64,
        ) -> Result<u64, StageError> {
            let limits = StageLimits { max_total_bytes };
            stage(
                items,
                &self.0.path().join("inputs"),
                Sources {
                    http: &reqwest::Client::new(),
                    s3: None,
                    ipfs: None,
                },
                &limits,
            )
            .await
        }
        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.0.path().join("inputs").join(name)).unwrap()
        }
        /// No file at all under inputs/, partial or not.
        fn no_files(&self) -> bool {
            fn walk(dir: &Path) -> bool {
                std::fs::read_dir(dir).into_iter().flatten().all(|e| {
                    let path = e.unwrap().path();
                    path.is_dir() && walk(&path)
                })
            }
            walk(&self.0.path().join("inputs"))
        }
    }

    fn inline(name: &str, content: &str) -> InputItem {
        InputItem::Inline {
            name: name.into(),
            content: content.into(),
        }
    }

    fn url(name: &str, url: String) -> InputItem {
        InputItem::Url {
            name: name.into(),
            url,
        }
    }

    fn local(name: &str, path: &Path) -> InputItem {
        InputItem::Local {
            name: name.into(),
            path: path.display().to_string(),
        }
    }

    /// What the test server saw of its endless responses.
    #[derive(Default)]
    struct Served {
        endless_bytes: AtomicU64,
        endless_done: AtomicBool,
    }

    /// A tiny HTTP/1.1 server: `/hello.txt`, `/endless` (no length, never
    /// ends), `/declared-big` (claims 10 MiB, never ends), else 404.
    async fn serve() -> (String, Arc<Served>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(Served::default());
        let state = served.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(answer(conn, state.clone()));
            }
        });
        (base, served)
    }

    async fn answer(mut conn: TcpStream, served: Arc<Served>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let (status, headers, body, endless) = match head.split(' ').nth(1).unwrap_or("") {
            "/hello.txt" => ("200 OK", "Content-Length: 11\r\n", "hello world", false),
            "/endless" => ("200 OK", "", "", true),
            "/declared-big" => ("200 OK", "Content-Length: 10485760\r\n", "", true),
            _ => ("404 Not Found", "Content-Length: 9\r\n", "not found", false),
        };
        let reply = format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n{body}");
        if conn.write_all(reply.as_bytes()).await.is_err() || !endless {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        while conn.write_all(&chunk).await.is_ok() {
            served
                .endless_bytes
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        served.endless_done.store(true, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn inline_input_is_written_under_its_nested_name() {
        let s = Scratch::new();
        assert_eq!(
            s.stage(&[inline("a/b/c.txt", "hello")], 0).await.unwrap(),
            5
        );
        assert_eq!(s.read("a/b/c.txt"), "hello");
    }

    #[tokio::test]
    async fn local_input_is_copied() {
        let s = Scratch::new();
        let source = s.0.path().join("source.csv");
        std::fs::write(&source, "id,value\n1,2\n").unwrap();
        assert_eq!(
            s.stage(&[local("data/in.csv", &source)], 0).await.unwrap(),
            13
        );
        assert_eq!(s.read("data/in.csv"), "id,value\n1,2\n");
    }

    #[tokio::test]
    async fn local_input_must_be_an_existing_regular_file() {
        let s = Scratch::new();
        let err = s.stage(&[local("d", s.0.path())], 0).await.unwrap_err();
        let expected = format!(
            "input \"d\": {} is not a regular file",
            s.0.path().display()
        );
        assert_eq!(err.to_string(), expected);

        let err = s
            .stage(&[local("m", Path::new("/no/such/file"))], 0)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input \"m\": reading /no/such/file: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn url_input_is_downloaded() {
        let (base, _) = serve().await;
        let s = Scratch::new();
        // A limit of exactly the file's size is enough.
        let staged = s
            .stage(&[url("web/hello.txt", format!("{base}/hello.txt"))], 11)
            .await;
        assert_eq!(staged.unwrap(), 11);
        assert_eq!(s.read("web/hello.txt"), "hello world");
    }

    #[tokio::test]
    async fn missing_url_is_an_error_naming_url_and_status() {
        let (base, _) = serve().await;
        let s = Scratch::new();
        let err = s
            .stage(&[url("x", format!("{base}/gone"))], 0)
            .await
            .unwrap_err();
        assert!(matches!(err.kind, StageErrorKind::Status { status, .. } if status == 404));
        let expected =
            format!("input \"x\": downloading {base}/gone: the server answered 404 Not Found");
        assert_eq!(err.to_string(), expected);
        assert!(s.no_files(), "a partial file was left behind");
    }

    #[tokio::test]
    async fn oversize_download_stops_at_the_limit() {
        let (base, served) = serve().await;
        let s = Scratch::new();
        let err = s
            .stage(&[url("big", format!("{base}/endless"))], 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err.kind, StageErrorKind::TooLarge { limit } if limit == 1 << 20));
        assert_eq!(
            err.to_string(),
            "input \"big\": the shard's inputs exceed the limit of 1 MiB"
        );
        assert!(s.no_files(), "a partial file was left behind");

        // The connection was dropped, so the server stops sending soon after.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !served.endless_done.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            served.endless_done.load(Ordering::SeqCst),
            "download was never abandoned"
        );
        assert!(served.endless_bytes.load(Ordering::SeqCst) < 64 << 20);

        // A server that announces too much is refused before the body is read.
        let err = s
            .stage(&[url("big", format!("{base}/declared-big"))], 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err.kind, StageErrorKind::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn limit_applies_to_all_inputs_together() {
        let s = Scratch::new();
        let items = [inline("a", &"x".repeat(600)), inline("b", &"y".repeat(600))];
        let err = s.stage(&items, 1000).await.unwrap_err();
        assert_eq!(err.name, "b");
        assert!(matches!(err.kind, StageErrorKind::TooLarge { limit: 1000 }));
    }

    #[tokio::test]
    async fn only_valid_http_and_https_urls_are_fetched() {
        let s = Scratch::new();
        let err = s
            .stage(&[url("p", "file:///etc/passwd".into())], 0)
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind, StageErrorKind::UnsupportedScheme { .. }),
            "{err}"
        );
        let err = s
            .stage(&[url("q", "not a url".into())], 0)
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind, StageErrorKind::InvalidUrl { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreachable_server_error_says_why_without_the_password() {
        // Bind then drop a listener so the port is very likely closed.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let s = Scratch::new();
        let err = s
            .stage(&[url("u", format!("http://user:secret@{addr}/x"))], 0)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err.kind, StageErrorKind::Download { .. }),
            "{message}"
        );
        assert!(message.contains(&addr.to_string()), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[tokio::test]
    async fn names_escaping_the_inputs_dir_are_rejected_before_any_write() {
        let s = Scratch::new();
        let items = [inline("ok.txt", "fine"), inline("../escape.txt", "bad")];
        let err = s.stage(&items, 0).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input \"../escape.txt\": invalid name"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(s.0.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn duplicate_and_clashing_names_are_rejected() {
        let s = Scratch::new();
        let err = s
            .stage(&[inline("a", "1"), inline("a", "2")], 0)
            .await
            .unwrap_err();
        assert!(matches!(err.kind, StageErrorKind::Duplicate));
        let err = s
            .stage(&[inline("a", "1"), inline("a/b", "2")], 0)
            .await
            .unwrap_err();
        assert_eq!(err.name, "a/b");
        assert!(matches!(err.kind, StageErrorKind::Conflict(ref other) if other == "a"));
    }

    #[test]
    fn safe_relative_path_accepts_plain_names_and_rejects_escapes() {
        for good in ["a/b.txt", ".hidden", "..not-parent"] {
            assert_eq!(safe_relative_path(good).unwrap(), PathBuf::from(good));
        }
        let bad = [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "a\0b",
        ];
        for name in bad {
            let err = safe_relative_path(name).unwrap_err();
            assert_eq!(err.name, name);
            assert!(
                err.to_string()
                    .starts_with(&format!("input {name:?}: invalid name")),
                "{err}"
            );
        }
    }
}
