//! A small typed client for the requester API.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;

use crate::api::ApiError;

/// Talks to one requester.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7070`).
    pub fn new(base: &str) -> anyhow::Result<Client> {
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    /// GET `path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    /// POST `body` to `path`, JSON answer.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: String) -> anyhow::Result<T> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(response).await
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the requester API at {}; start one with `shoal serve` or set --api / SHOAL_API",
            self.base
        )
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => bail!("{}", e.error),
            Err(_) => bail!("API answered {status}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    serde_json::from_slice(&bytes)
        .context("the API answered something that is not the expected JSON")
}
