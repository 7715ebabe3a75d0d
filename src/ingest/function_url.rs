//! The Lambda Function URL adapter: turns the HTTP request into an `Inbound`, runs the
//! core, starts the send, and turns the outcome into an HTTP response.

use std::time::{Duration, SystemTime};

use lambda_http::http::header::{ALLOW, CONTENT_TYPE};
use lambda_http::tracing::{error, info, warn};
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use serde_json::json;
use tokio::time::Instant;

use crate::aws::SqsTransport;
use crate::delivery::stdout_sink;
use crate::ingest::config::{AckMode, Config};
use crate::ingest::dispatch::Dispatcher;
use crate::ingest::error::IngestError;
use crate::ingest::inflight::InFlight;
use crate::ingest::{self, Accepted, Inbound};
use crate::retry;

/// Lambda allows 500 ms between SIGTERM and the end of a function that has an internal
/// extension; sends still in flight get most of it, then go to the fallback log.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// The whole function: settings, the internal extension, the sender thread, the runtime.
/// Whatever stops it (SIGTERM, an error of the runtime or of the extension), the sends in
/// flight finish or go to the fallback log before it returns.
pub async fn run() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            error!("refusing to start: {e}");
            std::process::exit(1);
        }
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let inflight = InFlight::default();
    // Registered before the runtime starts, as Lambda requires of extensions.
    let extension = inflight.register_extension().await?;
    let queue_url = config.queue_url.clone();
    let (dispatcher, sender) = Dispatcher::start(
        move || {
            let url = queue_url.clone();
            async move { SqsTransport::connect(&url).await }
        },
        stdout_sink(),
    );
    let drain_budget = config.retry_budget + Duration::from_secs(1);
    let app = App::new(config, dispatcher, inflight);

    let serving = async {
        tokio::try_join!(
            lambda_http::run(service_fn(|request| app.handle(request))),
            extension
        )
    };
    let (result, grace) = tokio::select! {
        ended = serving => (ended.map(|_| ()), drain_budget),
        _ = sigterm.recv() => (Ok(()), SHUTDOWN_GRACE),
    };
    if let Err(e) = &result {
        error!(error = %e, "the runtime or the extension stopped: finishing the sends in flight");
    }
    sender.shutdown(grace).await;
    result
}

pub struct App {
    config: Config,
    dispatcher: Dispatcher,
    inflight: InFlight,
}

impl App {
    pub fn new(config: Config, dispatcher: Dispatcher, inflight: InFlight) -> Self {
        Self {
            config,
            dispatcher,
            inflight,
        }
    }

    pub async fn handle(&self, request: Request) -> Result<Response<Body>, Error> {
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
                // The guard goes with the messages: the environment stays awake until the
                // send ends, on the sender thread, after this answer.
                self.dispatcher.submit(messages, deadline, guard);
                Ok(accepted_response("accepted", &id, count))
            }
            AckMode::AfterEnqueue => {
                match self
                    .dispatcher
                    .submit_and_wait(messages, deadline, guard)
                    .await
                {
                    Ok(()) => Ok(accepted_response("queued", &id, count)),
                    Err(err) => {
                        warn!(%id, error = %err, "answering 503");
                        Ok(refusal(&IngestError::QueueUnavailable))
                    }
                }
            }
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
