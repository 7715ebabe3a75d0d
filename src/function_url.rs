//! The Lambda Function URL adapter: turns the HTTP request into an `Inbound`, runs the
//! core, starts the send, and turns the outcome into an HTTP response.

use std::sync::Arc;
use std::time::SystemTime;

use lambda_http::http::header::{ALLOW, CONTENT_TYPE};
use lambda_http::tracing::{info, warn};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::{AckMode, Config};
use crate::error::IngestError;
use crate::inflight::InFlight;
use crate::ingest::{self, Accepted, Inbound};
use crate::queue::SqsQueue;
use crate::retry;

pub struct App {
    config: Config,
    /// Made on first use: building the AWS clients reads the TLS root certificates, which
    /// would add milliseconds to every cold start (see docs/performance.md).
    queue: Arc<OnceCell<SqsQueue>>,
    inflight: InFlight,
}

impl App {
    pub fn new(config: Config, queue: SqsQueue, inflight: InFlight) -> Self {
        Self {
            config,
            queue: Arc::new(OnceCell::new_with(Some(queue))),
            inflight,
        }
    }

    /// The queue is connected (from the standard AWS settings) when the first send needs it.
    pub fn connecting_on_first_send(config: Config, inflight: InFlight) -> Self {
        Self {
            config,
            queue: Arc::new(OnceCell::new()),
            inflight,
        }
    }

    pub async fn handle(&self, request: Request) -> Result<Response<Body>, lambda_http::Error> {
        // Entered first, so the extension holds the environment for this request's send.
        let guard = self.inflight.enter();
        let (parts, body) = request.into_parts();
        let deadline = self.send_deadline(&parts);
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()));
        let accepted = Inbound::new(parts.method.as_str(), headers, body.as_ref())
            .and_then(|inbound| ingest::accept(&inbound, &self.config, SystemTime::now()));

        let Accepted { id, messages } = match accepted {
            Ok(accepted) => accepted,
            Err(err) => return Ok(refusal(&err)),
        };
        let count = messages.len();
        info!(%id, messages = count, "delivery verified");

        match self.config.ack_mode {
            AckMode::Immediate => {
                let (queue, url) = (self.queue.clone(), self.config.queue_url.clone());
                // The guard moves into the task: the environment stays awake until the send ends.
                tokio::spawn(async move {
                    let _guard = guard;
                    let queue = queue.get_or_init(|| SqsQueue::connect(&url)).await;
                    let _ = queue.deliver(messages, deadline).await;
                });
                Ok(accepted_response("accepted", &id, count))
            }
            AckMode::AfterEnqueue => match self
                .queue
                .get_or_init(|| SqsQueue::connect(&self.config.queue_url))
                .await
                .deliver(messages, deadline)
                .await
            {
                Ok(()) => Ok(accepted_response("queued", &id, count)),
                Err(err) => {
                    warn!(%id, error = %err, "answering 503");
                    Ok(refusal(&IngestError::QueueUnavailable))
                }
            },
        }
    }

    /// When sends for this request must be done (see `retry::send_budget`).
    fn send_deadline(&self, parts: &lambda_http::http::request::Parts) -> Instant {
        // A deadline already past means none was given (cargo lambda watch sends a fixed,
        // long-gone one): the configured budget alone applies then.
        let lambda_remaining = parts
            .lambda_context_ref()
            .and_then(|ctx| ctx.deadline().duration_since(SystemTime::now()).ok());
        let budget = retry::send_budget(
            self.config.retry_budget,
            lambda_remaining,
            self.config.ack_mode == AckMode::AfterEnqueue,
        );
        Instant::now() + budget
    }
}

fn accepted_response(status: &str, id: &str, messages: usize) -> Response<Body> {
    json_response(
        200,
        json!({ "status": status, "id": id, "messages": messages }),
    )
}

/// Logs why (never the body or a secret) and answers with a short JSON error.
fn refusal(err: &IngestError) -> Response<Body> {
    warn!(status = err.status(), code = err.code(), reason = %err, "delivery refused");
    let mut response = json_response(
        err.status(),
        json!({ "error": err.code(), "message": err.to_string() }),
    );
    if *err == IngestError::MethodNotAllowed {
        response
            .headers_mut()
            .insert(ALLOW, lambda_http::http::HeaderValue::from_static("POST"));
    }
    response
}

fn json_response(status: u16, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        lambda_http::http::HeaderValue::from_static("application/json"),
    );
    response
}
