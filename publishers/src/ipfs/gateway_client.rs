//! Fetching a UnixFS DAG from a trustless gateway (a shoal node's HTTP port,
//! or any IPFS gateway speaking `?format=car`) without trusting it: the CAR
//! is downloaded next to the destination, every block is checked against
//! its CID and the DAG for completeness ([`verify_car`]), then it is
//! exported and the result re-imported to check its CID ([`verify_path`]).

use std::path::{Path, PathBuf};

use cid::Cid;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::content::{
    ExportError, ExportSummary, VerifyError, export_car, verify_car, verify_path,
};

/// Media type of a CARv1 response.
pub const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";

/// Why a gateway fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayFetchError {
    /// The base URL is not usable.
    #[error("bad gateway URL {url}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The request failed.
    #[error("GET {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The gateway answered with an error.
    #[error("GET {url}: gateway answered {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// Writing the download failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The CAR is not the complete, intact DAG of the CID.
    #[error("CAR from {url} failed verification: {source}")]
    Verify {
        /// The URL.
        url: String,
        /// What is wrong.
        source: VerifyError,
    },
    /// The CAR could not be written out.
    #[error("cannot export {cid} to {}: {source}", dest.display())]
    Export {
        /// The root.
        cid: Cid,
        /// The destination.
        dest: PathBuf,
        /// The error.
        source: ExportError,
    },
}

/// Downloads `GET {base_url}/ipfs/{cid}?format=car` and writes the DAG to
/// the new path `dest` (a file or directory; its parent must exist), after
/// checking every block. Returns what was written.
pub async fn fetch_car_from_gateway(
    http: &reqwest::Client,
    base_url: &str,
    cid: &Cid,
    dest: &Path,
) -> Result<ExportSummary, GatewayFetchError> {
    let base = url::Url::parse(base_url).map_err(|e| GatewayFetchError::Url {
        url: base_url.into(),
        reason: e.to_string(),
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(GatewayFetchError::Url {
            url: base_url.into(),
            reason: "not http(s)".into(),
        });
    }
    let url = format!(
        "{}/ipfs/{cid}?format=car&dag-scope=all",
        base.as_str().trim_end_matches('/')
    );
    let http_err = |source| GatewayFetchError::Http {
        url: url.clone(),
        source,
    };
    let response = http
        .get(&url)
        .header(reqwest::header::ACCEPT, CAR_MEDIA_TYPE)
        .send()
        .await
        .map_err(http_err)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(GatewayFetchError::Status {
            url,
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        });
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| cid.to_string());
    let car_path = dest.with_file_name(format!(".{name}.car.partial-{}", std::process::id()));
    let io_err = |source| GatewayFetchError::Io {
        path: car_path.clone(),
        source,
    };
    let mut file = tokio::fs::File::create(&car_path).await.map_err(io_err)?;
    let mut body = response.bytes_stream();
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(http_err)?;
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        drop(file);
        let (car, cid, dest, url) = (car_path.clone(), *cid, dest.to_owned(), url.clone());
        tokio::task::spawn_blocking(move || verify_and_export(&car, &cid, &dest, &url))
            .await
            .map_err(|e| GatewayFetchError::Io {
                path: car_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
    .await;
    let _ = tokio::fs::remove_file(&car_path).await;
    result
}

fn verify_and_export(
    car: &Path,
    cid: &Cid,
    dest: &Path,
    url: &str,
) -> Result<ExportSummary, GatewayFetchError> {
    let open = || {
        std::fs::File::open(car)
            .map(std::io::BufReader::new)
            .map_err(|source| GatewayFetchError::Io {
                path: car.to_owned(),
                source,
            })
    };
    let verify = |source| GatewayFetchError::Verify {
        url: url.to_owned(),
        source,
    };
    verify_car(open()?, cid).map_err(verify)?;
    let summary = export_car(open()?, cid, dest).map_err(|source| GatewayFetchError::Export {
        cid: *cid,
        dest: dest.to_owned(),
        source,
    })?;
    verify_path(dest, cid).map_err(verify)?;
    Ok(summary)
}
