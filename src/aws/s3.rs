//! The S3 adapter for envelopes too large for SQS (the claim-check pattern): the function
//! stores them, a worker fetches them back with `resolve`.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream;
use serde::Deserialize;
use thiserror::Error;

use super::lazy::{LazySdk, Source};
use super::sdk_error::adapter_error;
use crate::adapter::AdapterError;
use crate::envelope::{Claim, ClaimCheck};

#[derive(Clone)]
pub struct PayloadStore {
    client: Source<Client>,
}

/// Addressed by path for local S3 servers (moto), by bucket host name otherwise; retries
/// are the delivery logic's (see `delivery`), as for SQS.
fn client(shared: &SdkConfig) -> Client {
    let mut s3 = aws_sdk_s3::config::Builder::from(shared)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .retry_config(RetryConfig::disabled());
    let custom_endpoint = shared.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    if custom_endpoint {
        s3 = s3.force_path_style(true);
    }
    Client::from_conf(s3.build())
}

impl PayloadStore {
    pub fn with_sdk_config(shared: &SdkConfig) -> Self {
        Self {
            client: Source::Ready(client(shared)),
        }
    }

    /// The client is made when the first object is read or stored.
    pub fn lazy(sdk: LazySdk) -> Self {
        Self {
            client: Source::lazy(sdk, client),
        }
    }

    /// Stores the envelope under its fixed key; storing it twice is harmless.
    pub async fn put(&self, claim: &Claim) -> Result<(), AdapterError> {
        self.client
            .get()
            .await
            .put_object()
            .bucket(&claim.bucket)
            .key(&claim.key)
            .content_type("application/json")
            .body(ByteStream::from(claim.envelope.clone().into_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| adapter_error("S3", &e))
    }

    /// For workers: the whole envelope of a queued message, fetched from S3 when the
    /// message is a claim check, and checked against the hash the pointer carries.
    pub async fn resolve(&self, message_body: &str) -> Result<String, ResolveError> {
        let pointer: Pointer =
            serde_json::from_str(message_body).map_err(|_| ResolveError::NotAnEnvelope)?;
        let Some(check) = pointer.claim_check else {
            return Ok(message_body.to_owned());
        };
        let bytes = self
            .get(&check.bucket, &check.key)
            .await
            .map_err(|e| ResolveError::Fetch(e.reason().to_owned()))?;
        if !check.matches(&bytes) {
            return Err(ResolveError::Mismatch);
        }
        String::from_utf8(bytes).map_err(|_| ResolveError::Mismatch)
    }
}

impl PayloadStore {
    /// Restarts a stored envelope's lifetime: the bucket expires objects a fixed time
    /// after their last write, and a message made later that points at it (a dead-letter
    /// copy, a redrive) lives that long again. A copy onto itself is that write. A missing
    /// object is `Permanent`.
    pub async fn refresh(&self, bucket: &str, key: &str) -> Result<(), AdapterError> {
        self.client
            .get()
            .await
            .copy_object()
            .bucket(bucket)
            .key(key)
            .copy_source(format!("{bucket}/{}", source_key(key)))
            // S3 refuses a copy onto itself that changes nothing.
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .content_type("application/json")
            .send()
            .await
            .map(drop)
            .map_err(|e| adapter_error("S3", &e))
    }

    /// The bytes of one stored object. A missing object (or bucket) or a refusal is
    /// `Permanent`; throttling, 5xx and broken connections are `Transient`.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AdapterError> {
        let object = self
            .client
            .get()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| adapter_error("S3", &e))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| AdapterError::Unavailable(format!("S3: reading the object: {e}")))?;
        // Into a Vec without a copy when the body arrived in one piece.
        Ok(Vec::from(bytes.into_bytes()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pointer {
    claim_check: Option<ClaimCheck>,
}

/// Where the envelope of a queued message is stored, if the message is a claim check.
pub(crate) fn claim_of(message_body: &str) -> Option<ClaimCheck> {
    serde_json::from_str::<Pointer>(message_body)
        .ok()?
        .claim_check
}

/// A key as `CopySource` takes it: URL-encoded, its slashes kept.
fn source_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("the message is not a twenty-webhook envelope")]
    NotAnEnvelope,
    #[error("fetching the stored envelope: {0}")]
    Fetch(String),
    #[error("the stored envelope does not match the hash in the message")]
    Mismatch,
}
