//! Building an S3 client from the standard AWS chain, and telling apart the
//! errors worth retrying from the ones that are final.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use aws_sdk_s3::Client;

/// Where and how to reach S3. Credentials are not here: they come from the
/// standard AWS chain (env vars, `~/.aws` profile, web identity, instance
/// metadata) of the process, and never leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); AWS when `None`.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`host/bucket/key`), which most S3-compatible
    /// stores need.
    pub force_path_style: bool,
    /// Region; from the AWS chain when `None`, else `us-east-1`.
    pub region: Option<String>,
    /// Fixed credentials instead of the AWS chain (tools and tests).
    pub credentials: Option<StaticCredentials>,
}

/// An access key pair given directly. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .finish()
    }
}

/// Region used when neither the settings nor the AWS chain name one.
const FALLBACK_REGION: &str = "us-east-1";

/// Builds a client and looks for credentials once. Never fails: missing
/// credentials are the second value (a reason), and show up again in each
/// request's error.
pub async fn connect(settings: &Settings) -> (Client, Result<(), String>) {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        // The SDK retries throttling, 5xx, timeouts and dropped connections
        // with exponential backoff; the publisher retries again above this.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(6)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(300))
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(c) = &settings.credentials {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            None,
            None,
            "shoal-static",
        ));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(settings.force_path_style)
        // Checksums are computed by us (SHA-256, sent with every object and
        // part), so the SDK adds no second, trailing one.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenSupported);
    if shared.region().is_none() {
        config = config.region(Region::new(FALLBACK_REGION));
    }
    let credentials = check_credentials(shared.credentials_provider()).await;
    (Client::from_conf(config.build()), credentials)
}

/// Whether the AWS chain yields credentials; the reason if not. The secret
/// itself is never part of the answer.
async fn check_credentials(provider: Option<SharedCredentialsProvider>) -> Result<(), String> {
    let Some(provider) = provider else {
        return Err("no AWS credentials provider is configured".into());
    };
    match tokio::time::timeout(Duration::from_secs(15), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "no AWS credentials found on this node (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {}",
            DisplayErrorContext(&e)
        )),
        Err(_) => Err("timed out looking for AWS credentials".into()),
    }
}

/// An S3 request's failure: what happened and whether a retry may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for S3Error {}

impl S3Error {
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        S3Error {
            message: message.into(),
            retryable,
        }
    }

    /// Classifies an SDK error: dropped connections, timeouts, throttling
    /// and 5xx are retryable; refusals (403, 404, bad request) are not.
    pub fn from_sdk<E>(what: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let retryable = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().unwrap_or_default();
                status >= 500
                    || status == 429
                    || matches!(
                        code,
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "RequestTimeTooSkewed"
                            | "InternalError"
                            | "ServiceUnavailable"
                    )
            }
            _ => false,
        };
        let detail = match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                match (e.code(), e.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_string(),
                    _ => DisplayErrorContext(&err).to_string(),
                }
            }
            _ => DisplayErrorContext(&err).to_string(),
        };
        S3Error::new(format!("{what}: {detail}"), retryable)
    }
}
