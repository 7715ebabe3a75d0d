//! The one client for Twenty's REST API: the key, the pacing, the back-off, the errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::retry::{Backoff, jitter_unit};
use crate::secrets::Rotating;

/// The API key, never printable.
pub struct ApiKey(String);

impl ApiKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        let key = text.trim();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must be one API key, with no blanks".into());
        }
        Ok(Self(key.to_owned()))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What went wrong, saying which setting or object is at fault, never the key.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ApiError {
    #[error(
        "Twenty refused TWENTY_API_KEY ({0}): check the key, and that its role may read this object"
    )]
    Unauthorized(u16),
    #[error("TWENTY_API_URL could not be reached: {0}")]
    Unreachable(String),
    #[error("TWENTY_API_URL did not answer as Twenty's REST API: {0}")]
    NotTwenty(String),
    #[error("object {0:?} is not one of this workspace's objects (give plural names, e.g. people)")]
    UnknownObject(String),
    #[error("TWENTY_API_KEY could not be read: {0}")]
    KeyUnavailable(String),
    #[error("Twenty answered {status} to {what}: {message}")]
    Refused {
        status: u16,
        what: String,
        message: String,
    },
    #[error(
        "TWENTY_API_URL answers webhooks as Twenty servers did before webhooks moved to its core (July 2025): upgrade Twenty, or set the webhook up by hand"
    )]
    TooOld,
    #[error("TWENTY_API_URL has no webhook endpoint (/rest/metadata/webhooks nor /rest/webhooks)")]
    NoWebhookApi,
    #[error("out of time after {attempts} attempts at {what}; last: {last}")]
    OutOfTime {
        attempts: u32,
        what: String,
        last: String,
    },
}

/// One request to Twenty: what it is, and, for errors, what it was for.
pub(crate) struct Call<'a> {
    pub method: reqwest::Method,
    pub path: &'a str,
    pub params: &'a [(&'a str, &'a str)],
    pub body: Option<&'a serde_json::Value>,
    pub what: &'a str,
}

#[derive(Clone)]
pub struct TwentyApi {
    base: String,
    key: Rotating<ApiKey>,
    client: reqwest::Client,
    /// When the next request may go: one every `interval`.
    next: Arc<Mutex<Instant>>,
    interval: Duration,
    requests: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
}

/// Transient failures wait up to 0.5 s first, doubling to 30 s (full jitter).
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(30),
};
/// Twenty gives a page this long at most, in our experience far less.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// No request is started with less time than this left before the deadline.
const MIN_REQUEST: Duration = Duration::from_millis(200);

impl TwentyApi {
    pub fn new(
        base: &str,
        key: Rotating<ApiKey>,
        requests_per_minute: u32,
    ) -> Result<Self, String> {
        // The AWS SDK brings rustls with aws-lc; reqwest uses the same provider.
        crate::tls::install_provider();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key,
            client,
            next: Arc::new(Mutex::new(Instant::now())),
            interval: Duration::from_secs(60) / requests_per_minute.max(1),
            requests: Arc::default(),
            throttled: Arc::default(),
        })
    }

    /// Requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Of those, how many Twenty answered 429.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// A paced GET, retried on 429, 5xx and broken connections until `deadline`; the body
    /// of a 2xx answer.
    pub(crate) async fn get(
        &self,
        path: &str,
        params: &[(&str, &str)],
        what: &str,
        deadline: Instant,
    ) -> Result<String, ApiError> {
        let call = Call {
            method: reqwest::Method::GET,
            path,
            params,
            body: None,
            what,
        };
        self.call(call, deadline).await.map(|(_, body)| body)
    }

    /// One call, paced and retried: a GET on 429, 5xx and broken connections; a write only
    /// on 429 (refused before anything was done), so it is never made twice. The status and
    /// body of a 2xx answer.
    pub(crate) async fn call(
        &self,
        call: Call<'_>,
        deadline: Instant,
    ) -> Result<(u16, String), ApiError> {
        let Call {
            method,
            path,
            params,
            body,
            what,
        } = call;
        let idempotent = method == reqwest::Method::GET;
        let key = self
            .key
            .current()
            .await
            .map_err(|e| ApiError::KeyUnavailable(e.to_string()))?;
        let url = format!("{}{path}", self.base);
        let mut attempts = 0u32;
        let mut last = String::from("none: the run's time was up before the first request");
        loop {
            let out_of_time = |attempts, last| ApiError::OutOfTime {
                attempts,
                what: what.to_owned(),
                last,
            };
            let Some(timeout) = self.pace(deadline).await else {
                return Err(out_of_time(attempts, last));
            };
            attempts += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = self
                .client
                .request(method.clone(), &url)
                .query(params)
                .bearer_auth(&key.0)
                .timeout(timeout);
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let retry_after = match request.send().await {
                Ok(answer) if answer.status().is_success() => {
                    let status = answer.status().as_u16();
                    // The body is bounded by the same time-out as the request.
                    return answer.text().await.map(|text| (status, text)).map_err(|e| {
                        ApiError::NotTwenty(format!("{what}: the answer was cut: {e}"))
                    });
                }
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let retry_after = answer
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| crate::retry::retry_after(v, std::time::SystemTime::now()));
                    if matches!(status, 401 | 403) {
                        return Err(ApiError::Unauthorized(status));
                    }
                    let message: String = answer
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    let retried = status == 429 || (idempotent && status >= 500);
                    if !retried {
                        return Err(ApiError::Refused {
                            status,
                            what: what.to_owned(),
                            message,
                        });
                    }
                    if status == 429 {
                        self.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    last = status.to_string();
                    retry_after
                }
                Err(e) if e.is_connect() && attempts == 1 => {
                    return Err(ApiError::Unreachable(e.without_url().to_string()));
                }
                // A write that may have reached Twenty is not made again.
                Err(e) if !idempotent && !e.is_connect() => {
                    return Err(ApiError::Unreachable(format!(
                        "{what}: no answer ({}); check whether it was done",
                        e.without_url()
                    )));
                }
                Err(e) => {
                    last = e.without_url().to_string();
                    None
                }
            };
            let backoff = BACKOFF.delay(attempts - 1, jitter_unit());
            let wait = retry_after.map_or(backoff, |r| r.max(backoff));
            if Instant::now() + wait >= deadline {
                return Err(out_of_time(attempts, last));
            }
            tracing::warn!(what, attempts, last = %last, wait_ms = wait.as_millis() as u64, "retrying Twenty's API");
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits for this request's turn (one every `interval`, whatever runs at once), and
    /// gives its time-out: `REQUEST_TIMEOUT`, or less to end by `deadline`. None when its
    /// turn would come too late to be worth sending: the slot is given back.
    async fn pace(&self, deadline: Instant) -> Option<Duration> {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            if at + MIN_REQUEST >= deadline {
                return None;
            }
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        let left = deadline.saturating_duration_since(Instant::now());
        (left >= MIN_REQUEST).then(|| left.min(REQUEST_TIMEOUT))
    }
}
