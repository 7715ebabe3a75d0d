//! The Lambda Function URL adapter: turns the HTTP request into an `Inbound`, runs the
//! core, starts the send, and turns the outcome into an HTTP response.

use std::time::{Duration, SystemTime};

use lambda_http::http::header::{ALLOW, CONTENT_TYPE};
use lambda_http::tracing::{Instrument, debug, error, info_span, warn};
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use serde_json::json;
use tokio::time::Instant;

use crate::aws::{AwsSecretStore, LazySdk, SqsTransport};
use crate::delivery::stdout_sink;
use crate::ingest::config::{AckMode, Config, Secret, parse_secrets};
use crate::ingest::dispatch::Dispatcher;
use crate::ingest::error::IngestError;
use crate::ingest::inflight::InFlight;
use crate::ingest::{self, Accepted, Inbound};
use crate::metrics::{self, Unit};
use crate::retry;
use crate::secrets::Rotating;
use crate::twenty::signature::SignatureError;

/// Lambda allows 500 ms between SIGTERM and the end of a function that has an internal
/// extension; sends still in flight get most of it, then go to the fallback log.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// The whole function: settings, the internal extension, the sender thread, the runtime.
/// Whatever stops it (SIGTERM, an error of the runtime or of the extension), the sends in
/// flight finish or go to the fallback log before it returns.
pub async fn run() -> Result<(), Error> {
    crate::logging::init();
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
    let secrets = match secrets_of(&config) {
        Ok(secrets) => secrets,
        Err(why) => {
            error!("refusing to start: {why}");
            std::process::exit(1);
        }
    };
    let app = App::new(config, secrets, dispatcher, inflight);

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

/// The webhook secrets as the settings give them: none (unsigned deliveries only), the
/// environment's, or a store's, read on first need.
pub fn secrets_of(config: &Config) -> Result<Rotating<Vec<Secret>>, String> {
    let Some(source) = &config.secret else {
        return Ok(Rotating::fixed(Vec::new()));
    };
    Rotating::from_source(source, parse_secrets, config.secret_refresh, || {
        std::sync::Arc::new(AwsSecretStore::lazy(LazySdk::default()))
    })
}

pub struct App {
    config: Config,
    secrets: Rotating<Vec<Secret>>,
    dispatcher: Dispatcher,
    inflight: InFlight,
}

impl App {
    pub fn new(
        config: Config,
        secrets: Rotating<Vec<Secret>>,
        dispatcher: Dispatcher,
        inflight: InFlight,
    ) -> Self {
        Self {
            config,
            secrets,
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
        let query = parts
            .query_string_parameters_ref()
            .into_iter()
            .flat_map(|q| q.iter().map(|(n, v)| (n, v.as_bytes())));
        let inbound = Inbound::new(parts.method.as_str(), headers, body.as_ref())
            .and_then(|inbound| inbound.with_query(query))
            .and_then(|inbound| ingest::precheck(&inbound, &self.config).map(|()| inbound));
        let accepted = match inbound {
            Ok(inbound) => self.verify(&inbound).await,
            Err(err) => Err(err),
        };

        // The request's metrics line is written before the answer, so before any freeze.
        let mut doc = metrics::document();
        doc.add("Received", Unit::Count, 1.0);
        if let Some(context) = parts.lambda_context_ref() {
            doc.property("requestId", context.request_id.as_str());
        }
        let Accepted { id, messages } = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                doc.add("Accepted", Unit::Count, 0.0)
                    .add_by("Refused", Unit::Count, "Reason", err.code(), 1.0)
                    .emit();
                return Ok(refusal(&err));
            }
        };
        let count = messages.len();
        // The delivery's lines, the send's on the sender thread too, name the event (and,
        // through the invocation's span around this one, the request).
        let event_name = messages
            .first()
            .and_then(|m| m.attributes.iter().find(|(k, _)| *k == "eventName"))
            .map_or("", |(_, v)| v.as_str());
        let span = info_span!("delivery", id = %id, eventName = %event_name);
        span.in_scope(|| debug!(messages = count, "delivery verified"));
        // One line for the accepted delivery: this request's metrics go with the send's,
        // written as the send ends (before the environment may freeze), and the line is
        // also the delivery's log line.
        doc.add("Accepted", Unit::Count, 1.0)
            .property("id", id.as_str())
            .property("eventName", event_name);

        match self.config.ack_mode {
            AckMode::Immediate => {
                // The guard goes with the messages: the environment stays awake until the
                // send ends, on the sender thread, after this answer.
                span.in_scope(|| self.dispatcher.submit_with(messages, deadline, guard, doc));
                Ok(accepted_response("accepted", &id, count))
            }
            AckMode::AfterEnqueue => {
                match self
                    .dispatcher
                    .submit_and_wait_with(messages, deadline, guard, doc)
                    .instrument(span)
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

    /// The core's verdict, with the secrets read on first need. A signature that matches
    /// none of them gets one fresh read of the store (within its floor) before it is
    /// refused: a rotated secret takes effect at once.
    async fn verify(&self, inbound: &Inbound<'_>) -> Result<Accepted, IngestError> {
        let secrets = if inbound.is_signed() {
            self.secrets.current().await.map_err(|e| {
                error!(error = %e, "no webhook secret to verify with: answering 503");
                IngestError::SecretUnavailable
            })?
        } else {
            std::sync::Arc::default()
        };
        let verdict = ingest::accept(inbound, &self.config, &secrets, SystemTime::now());
        if verdict.as_ref().err() != Some(&IngestError::Signature(SignatureError::Mismatch)) {
            return verdict;
        }
        match self.secrets.newer_than(&secrets).await {
            Some(newer) => ingest::accept(inbound, &self.config, &newer, SystemTime::now()),
            None => verdict,
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
