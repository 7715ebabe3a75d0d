//! The HTTP side of forwarding: each rule becomes a handler that POSTs the envelope to the
//! rule's URL with the Standard Webhooks headers, behind the destination's breaker and
//! pace. Any 2xx is success. A 4xx other than 408, 425 and 429 is final (the message goes
//! to the dead-letter queue); anything else, a redirect (never followed), a time-out or a
//! connection error is retried.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;

use super::event::Event;
use super::forward::{self, Rule};
use super::guard::{BreakerSettings, Breakers, Gate, Pacer};
use super::router::{HandlerError, RouteError, Router};

/// One HTTP client for every rule, made on the first forward (it reads the TLS roots), and
/// the breakers and paces of their destinations.
#[derive(Clone)]
pub struct Forwarder {
    client: Arc<OnceCell<reqwest::Client>>,
    breakers: Arc<Breakers>,
    pacer: Arc<Pacer>,
}

impl Default for Forwarder {
    /// Breakers and paces kept in this process, with the default settings.
    fn default() -> Self {
        Self::new(
            Arc::new(Breakers::local(BreakerSettings::default())),
            Arc::new(Pacer::local()),
        )
    }
}

/// The envelope's bytes, shared by every rule's request rather than copied for each.
struct SharedBody(Arc<Event>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        self.0.body.as_bytes()
    }
}

impl Forwarder {
    pub fn new(breakers: Arc<Breakers>, pacer: Arc<Pacer>) -> Self {
        Self {
            client: Arc::new(OnceCell::new()),
            breakers,
            pacer,
        }
    }

    /// A router with one handler per rule, named after it.
    pub fn router(self, rules: Vec<Rule>) -> Result<Router, RouteError> {
        self.add_rules(Router::new(), rules)
    }

    /// `router` with one more handler per rule, named after it.
    pub fn add_rules(self, router: Router, rules: Vec<Rule>) -> Result<Router, RouteError> {
        rules.into_iter().try_fold(router, |router, rule| {
            let rule = Arc::new(rule);
            let patterns: Vec<&str> = rule.events.iter().map(String::as_str).collect();
            let pace = rule.max_per_second.map(|n| (self.pacer.clone(), n));
            let gate = Arc::new(Gate::new(&rule.name, self.breakers.clone(), pace));
            let forwarder = self.clone();
            let handler_rule = rule.clone();
            router.on_gated(&rule.name, &patterns, Some(gate), move |event| {
                let (forwarder, rule) = (forwarder.clone(), handler_rule.clone());
                async move { forwarder.forward(&rule, event).await }
            })
        })
    }

    async fn client(&self) -> Result<&reqwest::Client, HandlerError> {
        self.client
            .get_or_try_init(|| async {
                crate::aws::install_tls_provider();
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
            })
            .await
            .map_err(|e| HandlerError::new(format!("no HTTP client: {e}")))
    }

    /// POSTs `event` to the rule's URL, within the rule's time-out and the time the
    /// invocation has left.
    pub async fn forward(&self, rule: &Rule, event: Arc<Event>) -> Result<(), HandlerError> {
        let origin = forward::origin(&rule.url);
        let timeout = match event.time_left() {
            Some(left) if left < rule.timeout => left,
            _ => rule.timeout,
        };
        if timeout.is_zero() {
            return Err(HandlerError::deferred(
                format!("{origin}: no time left in this invocation"),
                Duration::ZERO,
            ));
        }
        let client = self.client().await?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let headers = forward::headers(rule, &event.id, timestamp, event.body.as_bytes());
        let mut request = client
            .post(&rule.url)
            .timeout(timeout)
            .body(bytes::Bytes::from_owner(SharedBody(event)));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => {
                let status = answer.status().as_u16();
                let reason = format!("{origin} answered {status}");
                if forward::is_permanent(status, rule.retry_all_errors) {
                    return Err(HandlerError::permanent(reason).status(status));
                }
                let failure = HandlerError::new(reason).status(status);
                let retry_after = answer
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| crate::retry::retry_after(v, SystemTime::now()));
                Err(match retry_after {
                    Some(delay) => failure.retry_after(delay),
                    None => failure,
                })
            }
            Err(e) if e.is_timeout() => Err(HandlerError::new(format!(
                "{origin}: no answer within {} ms",
                timeout.as_millis()
            ))),
            Err(e) if e.is_connect() => {
                Err(HandlerError::new(format!("{origin}: connection failed")))
            }
            Err(_) => Err(HandlerError::new(format!("{origin}: the request failed"))),
        }
    }
}
