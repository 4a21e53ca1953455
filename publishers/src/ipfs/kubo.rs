//! Pushing an output to a Kubo node: `POST /api/v0/dag/import?pin-roots=true`
//! with the CAR as the `file` part of a multipart/form-data body (as
//! `curl -F file=@out.car` sends it). Kubo answers with one JSON line per
//! root, `{"Root":{"Cid":{"/":"<cid>"},"PinErrorMsg":""}}`; the push
//! succeeds only when a line names our root with an empty `PinErrorMsg`.
//! Errors come back as HTTP 500 with `{"Message": "...", "Type": "error"}`.
//!
//! The CAR is streamed from the block store; the multipart framing around
//! it is built by [`multipart_frame`].

use std::sync::Arc;

use cid::Cid;
use futures::StreamExt;
use serde::Deserialize;

use super::{BlockStore, car_stream};

/// The multipart boundary; it cannot occur in a CAR's framing by chance
/// with any real likelihood, and Kubo reads the part by the boundary alone.
const BOUNDARY: &str = "shoal-car-9f1c2e7a4b6d8e0f";

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL is not usable.
    #[error("bad rpc_url: {0}")]
    Url(String),
    /// The request did not complete.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// Kubo answered with an error status.
    #[error("Kubo answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Kubo's `Message`, or the body.
        message: String,
    },
    /// Kubo imported but did not pin our root.
    #[error("Kubo did not pin {root}: {message}")]
    NotPinned {
        /// Our root.
        root: Cid,
        /// What Kubo said instead.
        message: String,
    },
}

impl PushError {
    /// Worth retrying (connection trouble, server errors other than refusal).
    pub fn retryable(&self) -> bool {
        match self {
            PushError::Http(_) => true,
            PushError::Status { status, .. } => *status >= 500 || *status == 429,
            PushError::Url(_) | PushError::NotPinned { .. } => false,
        }
    }
}

/// The request a push sends, without the CAR bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// Full URL, query included.
    pub url: String,
    /// `Content-Type` header value.
    pub content_type: String,
    /// Body bytes before the CAR.
    pub head: Vec<u8>,
    /// Body bytes after the CAR.
    pub tail: Vec<u8>,
}

/// Builds the dag/import request for `root` against the RPC base `rpc_url`.
pub fn multipart_frame(rpc_url: &str, root: &Cid) -> Result<PushRequest, PushError> {
    let base = url::Url::parse(rpc_url).map_err(|e| PushError::Url(format!("{rpc_url}: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(PushError::Url(format!("{rpc_url}: not http(s)")));
    }
    let url = format!(
        "{}/api/v0/dag/import?pin-roots=true",
        base.as_str().trim_end_matches('/')
    );
    let head = format!(
        "--{BOUNDARY}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"{root}.car\"\r\n\
         Content-Type: application/vnd.ipld.car\r\n\r\n"
    )
    .into_bytes();
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    Ok(PushRequest {
        url,
        content_type: format!("multipart/form-data; boundary={BOUNDARY}"),
        head,
        tail,
    })
}

#[derive(Deserialize)]
struct ImportLine {
    #[serde(rename = "Root")]
    root: Option<RootLine>,
}

#[derive(Deserialize)]
struct RootLine {
    #[serde(rename = "Cid")]
    cid: CidLink,
    #[serde(rename = "PinErrorMsg", default)]
    pin_error: String,
}

#[derive(Deserialize)]
struct CidLink {
    #[serde(rename = "/")]
    cid: String,
}

#[derive(Deserialize)]
struct KuboError {
    #[serde(rename = "Message")]
    message: String,
}

/// Checks Kubo's NDJSON answer names `root`, pinned without error.
pub fn check_response(body: &str, root: &Cid) -> Result<(), PushError> {
    let mut seen = Vec::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(ImportLine { root: Some(line) }) = serde_json::from_str::<ImportLine>(line) else {
            continue;
        };
        match line.cid.cid.parse::<Cid>() {
            Ok(cid) if cid == *root => {
                if line.pin_error.is_empty() {
                    return Ok(());
                }
                return Err(PushError::NotPinned {
                    root: *root,
                    message: line.pin_error,
                });
            }
            _ => seen.push(line.cid.cid),
        }
    }
    Err(PushError::NotPinned {
        root: *root,
        message: if seen.is_empty() {
            format!("the answer names no root: {:?}", truncate(body))
        } else {
            format!("the answer names other roots: {seen:?}")
        },
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Streams the CAR of `root` from `store` to Kubo and checks it was pinned.
pub async fn push(
    http: &reqwest::Client,
    rpc_url: &str,
    store: &Arc<BlockStore>,
    root: &Cid,
) -> Result<(), PushError> {
    let request = multipart_frame(rpc_url, root)?;
    let head = futures::stream::once(async move { Ok(bytes::Bytes::from(request.head)) });
    let tail = futures::stream::once(async move { Ok(bytes::Bytes::from(request.tail)) });
    let body = head.chain(car_stream(Arc::clone(store), *root)).chain(tail);
    let response = http
        .post(&request.url)
        .header(reqwest::header::CONTENT_TYPE, request.content_type)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<KuboError>(&text)
            .map(|e| e.message)
            .unwrap_or_else(|_| truncate(&text).to_owned());
        return Err(PushError::Status {
            status: status.as_u16(),
            message,
        });
    }
    check_response(&text, root)
}
