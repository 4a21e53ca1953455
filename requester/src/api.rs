//! The requester's HTTP/JSON API; everything the CLI does goes through it.
//!
//!     POST /jobs               spec (YAML or JSON) -> job (201) | error (400)
//!     GET  /jobs               job summaries, newest first
//!     GET  /jobs/{id}          the job with every shard
//!     GET  /jobs/{id}/results  the manifest
//!     POST /jobs/{id}/cancel   cancel
//!     GET  /nodes              live members as this requester sees them

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shoal_node::net::NetHandle;

use crate::orchestrator::{Orchestrator, SubmitError};
use crate::spec;

/// Largest spec body accepted.
const MAX_SPEC_BYTES: usize = 4 * 1024 * 1024;

/// An error body: `{"error": "...", "field": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone)]
struct AppState {
    orchestrator: Orchestrator,
    net: NetHandle,
}

/// The API routes.
pub fn router(orchestrator: Orchestrator, net: NetHandle) -> Router {
    Router::new()
        .route("/jobs", post(submit).get(list))
        .route("/jobs/{id}", get(describe))
        .route("/jobs/{id}/results", get(results))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/nodes", get(nodes))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SPEC_BYTES))
        .with_state(AppState {
            orchestrator,
            net: net.clone(),
        })
        .merge(shoal_node::status::router(net))
}

fn error(status: StatusCode, message: impl Into<String>, field: Option<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
            field,
        }),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no job {id}"), None)
}

async fn submit(State(app): State<AppState>, body: String) -> Response {
    // JSON is YAML, but JSON gets exact error positions from serde_json.
    let parsed = if body.trim_start().starts_with('{') {
        spec::JobSpec::from_json(&body)
    } else {
        spec::parse(&body)
    };
    let spec = match parsed {
        Ok(s) => s,
        Err(e) => {
            let field = (!e.field.is_empty()).then(|| e.field.clone());
            return error(StatusCode::BAD_REQUEST, e.to_string(), field);
        }
    };
    match app.orchestrator.submit(spec).await {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(SubmitError::Spec(e)) => {
            let field = (!e.field.is_empty()).then(|| e.field.clone());
            error(StatusCode::BAD_REQUEST, e.to_string(), field)
        }
        Err(SubmitError::Sharding(e)) => error(StatusCode::BAD_REQUEST, e.to_string(), None),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None),
    }
}

async fn list(State(app): State<AppState>) -> Response {
    Json(app.orchestrator.list()).into_response()
}

async fn describe(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.orchestrator.describe(&id) {
        Some(view) => Json(view).into_response(),
        None => not_found(&id),
    }
}

async fn results(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.orchestrator.manifest(&id) {
        Some(m) => Json(m).into_response(),
        None => not_found(&id),
    }
}

async fn cancel(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.orchestrator.cancel(&id) {
        Some(view) => Json(view).into_response(),
        None => not_found(&id),
    }
}

async fn nodes(State(app): State<AppState>) -> Response {
    Json(app.net.snapshot().members).into_response()
}
