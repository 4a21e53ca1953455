//! A trustless IPFS gateway on the node's HTTP port, serving the block
//! store (https://specs.ipfs.tech/http-gateways/trustless-gateway/):
//!
//! - `GET /ipfs/{cid}?format=raw` (or `Accept: application/vnd.ipld.raw`):
//!   the block itself;
//! - `GET /ipfs/{cid}?format=car` (or `Accept: application/vnd.ipld.car`):
//!   a CARv1 of the DAG, depth-first, no duplicates, streamed as it is read
//!   (`dag-scope=all` by default; `block` and `entity` are honoured).
//!
//! No deserialized responses: without a format the answer is 400, as the
//! spec asks of strict trustless gateways. Unknown root: 404. A child block
//! missing mid-stream ends the CAR early, which clients detect by verifying.

// Store errors carry the CIDs they are about (see publishers::ipfs); HTTP
// error responses are built once per request. Size is not a concern here.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use shoal_publishers::content::pb::{DataType, PbNode, UnixFsData};
use shoal_publishers::content::{Cid, DAG_PB};
use shoal_publishers::ipfs::{BlockStore, car_stream};

/// Media type of one raw block.
pub const RAW_MEDIA_TYPE: &str = "application/vnd.ipld.raw";
/// Media type of a CAR.
pub const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";
/// The CAR flavour we send (IPIP-412 parameters).
const CAR_CONTENT_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";

/// The gateway routes over `store`, for merging into the node's router.
pub fn router(store: Arc<BlockStore>) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(by_cid))
        .route("/ipfs/{cid}/{*path}", get(with_path))
        .with_state(store)
}

#[derive(Debug, Deserialize)]
struct Params {
    format: Option<String>,
    #[serde(rename = "dag-scope")]
    dag_scope: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Block,
    Entity,
    All,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into() + "\n",
    )
        .into_response()
}

/// `format=` wins over `Accept`, as the spec says.
fn format(params: &Params, headers: &HeaderMap) -> Result<Format, Response> {
    if let Some(f) = params.format.as_deref() {
        return match f {
            "raw" => Ok(Format::Raw),
            "car" => Ok(Format::Car),
            other => Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "unsupported format={other:?}; this trustless gateway serves format=raw and format=car"
                ),
            )),
        };
    }
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect::<Vec<_>>();
    for media in &accept {
        match media.as_str() {
            RAW_MEDIA_TYPE => return Ok(Format::Raw),
            CAR_MEDIA_TYPE => return Ok(Format::Car),
            _ => {}
        }
    }
    Err(error(
        StatusCode::BAD_REQUEST,
        format!(
            "this is a trustless gateway: ask for ?format=raw or ?format=car \
             (or Accept: {RAW_MEDIA_TYPE} / {CAR_MEDIA_TYPE})"
        ),
    ))
}

fn scope(params: &Params) -> Result<Scope, Response> {
    match params.dag_scope.as_deref() {
        None | Some("all") => Ok(Scope::All),
        Some("entity") => Ok(Scope::Entity),
        Some("block") => Ok(Scope::Block),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("unsupported dag-scope={other:?}; use all, entity or block"),
        )),
    }
}

async fn with_path(Path((cid, path)): Path<(String, String)>) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "/ipfs/{cid}/{path}: paths under a CID are not supported here; ask for the CID itself"
        ),
    )
}

async fn by_cid(
    State(store): State<Arc<BlockStore>>,
    Path(cid): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let cid: Cid = match cid.parse() {
        Ok(cid) => cid,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{cid:?} is not a CID: {e}"),
            );
        }
    };
    let format = match format(&params, &headers) {
        Ok(f) => f,
        Err(response) => return response,
    };
    let root = {
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.get(&cid)).await {
            Ok(Ok(Some(block))) => block,
            Ok(Ok(None)) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("{cid} is not in this node's block store"),
                );
            }
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    };
    match format {
        Format::Raw => {
            let mut response = Response::new(Body::from(root));
            set_headers(
                &mut response,
                RAW_MEDIA_TYPE,
                &format!("\"{cid}.raw\""),
                &format!("{cid}.bin"),
            );
            response
        }
        Format::Car => {
            let scope = match scope(&params) {
                Ok(s) => s,
                Err(response) => return response,
            };
            let body =
                if scope == Scope::Block || (scope == Scope::Entity && is_directory(&cid, &root)) {
                    let mut car = Vec::new();
                    let header = shoal_publishers::content::CarWriter::new(&mut car, &[cid])
                        .and_then(|mut w| {
                            w.put(&cid, &root)?;
                            w.finish()?;
                            Ok(())
                        });
                    if let Err(e) = header {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
                    }
                    Body::from(car)
                } else {
                    Body::from_stream(car_stream(store, cid))
                };
            let scope_tag = match scope {
                Scope::Block => "block",
                Scope::Entity => "entity",
                Scope::All => "all",
            };
            let mut response = Response::new(body);
            set_headers(
                &mut response,
                CAR_CONTENT_TYPE,
                &format!("\"{cid}.car.{scope_tag}.dfs.n\""),
                &format!("{cid}.car"),
            );
            response
        }
    }
}

/// Whether a block is a UnixFS directory (for `dag-scope=entity`).
fn is_directory(cid: &Cid, block: &[u8]) -> bool {
    cid.codec() == DAG_PB
        && PbNode::decode(block)
            .ok()
            .and_then(|n| n.data)
            .and_then(|d| UnixFsData::decode(d).ok())
            .is_some_and(|u| matches!(u.kind, DataType::Directory | DataType::HamtShard))
}

fn set_headers(response: &mut Response, content_type: &str, etag: &str, filename: &str) {
    let headers = response.headers_mut();
    let mut put = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put(header::CONTENT_TYPE, content_type.to_owned());
    put(header::ETAG, etag.to_owned());
    put(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{filename}\""),
    );
    put(
        header::CACHE_CONTROL,
        "public, max-age=29030400, immutable".to_owned(),
    );
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned());
    put(header::VARY, "Accept".to_owned());
}

#[cfg(test)]
mod tests;
