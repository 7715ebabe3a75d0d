//! The HTTP side of forwarding: each rule becomes a handler that POSTs the envelope to the
//! rule's URL with the Standard Webhooks headers. Any 2xx is success; anything else, a
//! redirect (never followed), a time-out or a connection error fails the message.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;

use super::event::Event;
use super::forward::{self, Rule};
use super::router::{HandlerError, RouteError, Router};
use crate::metrics::{self, Unit};

/// One HTTP client for every rule, made on the first forward (it reads the TLS roots).
#[derive(Clone, Default)]
pub struct Forwarder {
    client: Arc<OnceCell<reqwest::Client>>,
}

impl Forwarder {
    /// A router with one handler per rule, named after it.
    pub fn router(self, rules: Vec<Rule>) -> Result<Router, RouteError> {
        self.add_rules(Router::new(), rules)
    }

    /// `router` with one more handler per rule, named after it.
    pub fn add_rules(self, router: Router, rules: Vec<Rule>) -> Result<Router, RouteError> {
        rules.into_iter().try_fold(router, |router, rule| {
            let rule = Arc::new(rule);
            let patterns: Vec<&str> = rule.events.iter().map(String::as_str).collect();
            let forwarder = self.clone();
            let handler_rule = rule.clone();
            router.on(&rule.name, &patterns, move |event| {
                let (forwarder, rule) = (forwarder.clone(), handler_rule.clone());
                async move { forwarder.forward(&rule, &event).await }
            })
        })
    }

    async fn client(&self) -> Result<&reqwest::Client, HandlerError> {
        self.client
            .get_or_try_init(|| async {
                // The AWS SDK brings rustls with aws-lc; reqwest uses the same provider.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
            })
            .await
            .map_err(|e| HandlerError::new(format!("no HTTP client: {e}")))
    }

    /// POSTs `event` to the rule's URL, and writes its metrics line (by destination: the
    /// rule's name).
    pub async fn forward(&self, rule: &Rule, event: &Event) -> Result<(), HandlerError> {
        let started = std::time::Instant::now();
        let result = self.post(rule, event).await;
        let mut doc = metrics::document();
        let outcome = if result.is_ok() {
            "Forwarded"
        } else {
            "ForwardFailed"
        };
        doc.add_by(outcome, Unit::Count, "Destination", &rule.name, 1.0)
            .add_by(
                "DestinationLatency",
                Unit::Milliseconds,
                "Destination",
                &rule.name,
                started.elapsed().as_secs_f64() * 1000.0,
            )
            .property("eventId", event.id.as_str())
            .property("eventName", event.event_name.as_str())
            .emit();
        result
    }

    async fn post(&self, rule: &Rule, event: &Event) -> Result<(), HandlerError> {
        let client = self.client().await?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = client
            .post(&rule.url)
            .timeout(rule.timeout)
            .body(event.body.clone());
        for (name, value) in forward::headers(rule, &event.id, timestamp, event.body.as_bytes()) {
            request = request.header(name, value);
        }
        let origin = forward::origin(&rule.url);
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => {
                let status = answer.status().as_u16();
                let failure = HandlerError::new(format!("{origin} answered {status}"));
                let retry_after = forward::retry_after(
                    answer
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()),
                );
                Err(match retry_after {
                    Some(delay) => failure.retry_after(delay),
                    None => failure,
                })
            }
            Err(e) if e.is_timeout() => Err(HandlerError::new(format!(
                "{origin}: no answer within {} ms",
                rule.timeout.as_millis()
            ))),
            Err(e) if e.is_connect() => {
                Err(HandlerError::new(format!("{origin}: connection failed")))
            }
            Err(_) => Err(HandlerError::new(format!("{origin}: the request failed"))),
        }
    }
}
