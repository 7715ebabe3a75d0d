//! The HTTP side of reconciliation: Twenty's REST API (`../shared/twenty-rest-api.md`).
//! Requests are paced under the workspace's limit, and 429s, 5xx answers and broken
//! connections are retried with a growing back-off from the same cursor until the deadline;
//! no request starts after it or runs past it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::change::Object;
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
    #[error("out of time after {attempts} attempts at {what}; last: {last}")]
    OutOfTime {
        attempts: u32,
        what: String,
        last: String,
    },
}

/// One page of rows, and where the next one starts.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<Box<RawValue>>,
    /// How many rows the filter matches in all, when Twenty says.
    pub total: Option<u64>,
    pub end_cursor: Option<String>,
    pub has_next: bool,
}

/// A list request: `filter` and `order_by` in Twenty's syntax.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub plural: &'a str,
    pub filter: String,
    pub order_by: &'a str,
    pub limit: u32,
    pub cursor: Option<&'a str>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    data: HashMap<String, Vec<Box<RawValue>>>,
    page_info: Option<PageInfo>,
    total_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    end_cursor: Option<String>,
    #[serde(default)]
    has_next_page: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MetadataData {
    Wrapped { objects: Vec<ObjectMeta> },
    List(Vec<ObjectMeta>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    id: Option<String>,
    name_singular: String,
    name_plural: String,
    #[serde(default = "yes")]
    is_active: bool,
    #[serde(default)]
    is_system: bool,
}

fn yes() -> bool {
    true
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
        crate::aws::install_tls_provider();
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

    /// The workspace's objects, each with whether it is reconciled by default (active,
    /// and not a system object).
    pub async fn objects(&self, deadline: Instant) -> Result<Vec<(Object, bool)>, ApiError> {
        #[derive(Deserialize)]
        struct Body {
            data: MetadataData,
        }
        let text = self
            .get("/rest/metadata/objects", &[], "the object list", deadline)
            .await?;
        let body: Body = serde_json::from_str(&text)
            .map_err(|e| ApiError::NotTwenty(format!("the object list: {e}")))?;
        let objects = match body.data {
            MetadataData::Wrapped { objects } | MetadataData::List(objects) => objects,
        };
        Ok(objects
            .into_iter()
            .map(|o| {
                let default = o.is_active && !o.is_system;
                let object = Object {
                    singular: o.name_singular,
                    plural: o.name_plural,
                    metadata_id: o.id,
                };
                (object, default)
            })
            .collect())
    }

    pub async fn page(&self, query: &Query<'_>, deadline: Instant) -> Result<Page, ApiError> {
        let limit = query.limit.to_string();
        let mut params = vec![
            ("filter", query.filter.as_str()),
            ("order_by", query.order_by),
            ("limit", limit.as_str()),
        ];
        if let Some(cursor) = query.cursor {
            params.push(("starting_after", cursor));
        }
        let path = format!("/rest/{}", query.plural);
        let what = format!("the list of {}", query.plural);
        let text = match self.get(&path, &params, &what, deadline).await {
            Err(ApiError::Refused {
                status: 400,
                message,
                ..
            }) if message.contains("not found") => {
                return Err(ApiError::UnknownObject(query.plural.to_owned()));
            }
            other => other?,
        };
        let mut body: ListBody =
            serde_json::from_str(&text).map_err(|e| ApiError::NotTwenty(format!("{what}: {e}")))?;
        let rows = body.data.remove(query.plural).ok_or_else(|| {
            ApiError::NotTwenty(format!("{what}: no `data.{}` in the answer", query.plural))
        })?;
        let info = body.page_info.unwrap_or(PageInfo {
            end_cursor: None,
            has_next_page: false,
        });
        Ok(Page {
            rows,
            total: body.total_count,
            has_next: info.has_next_page && info.end_cursor.is_some(),
            end_cursor: info.end_cursor,
        })
    }

    /// A paced GET, retried on 429, 5xx and broken connections until `deadline`. No
    /// request starts after it, and none may outlast it.
    async fn get(
        &self,
        path: &str,
        params: &[(&str, &str)],
        what: &str,
        deadline: Instant,
    ) -> Result<String, ApiError> {
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
            let sent = self
                .client
                .get(&url)
                .query(params)
                .bearer_auth(&key.0)
                .timeout(timeout)
                .send()
                .await;
            let retry_after = match sent {
                Ok(answer) if answer.status().is_success() => {
                    // The body is bounded by the same time-out as the request.
                    return answer.text().await.map_err(|e| {
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
                    if status != 429 && status < 500 {
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
