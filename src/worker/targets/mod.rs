//! Where rules deliver: one module per kind of target behind one small trait, `Target`.
//! `http` (a signed POST), `state_machine` (Step Functions `StartExecution`), `event_bus`
//! (EventBridge `PutEvents`, batched across the messages of a batch) and `queue` (SQS
//! `SendMessage`). The AWS calls are behind traits here, implemented in `crate::aws`.
//!
//! Every target runs behind the rule's breaker and pace, and under idempotency, partial
//! batch failures and the back-off, as HTTP does: throttling and outages are transient;
//! access denied, a missing resource and validation errors are permanent (the message goes
//! to the dead-letter queue), unless the rule says `retryAllErrors`.

pub mod event_bus;
pub mod http;
pub mod queue;
pub mod state_machine;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::event::Event;
use super::guard::{BreakerSettings, Breakers, Gate, Pacer};
use super::router::{HandlerError, RouteError, Router, Selection};
use super::rules::{Rule, Target as Kind};
use crate::adapter::AdapterError;

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// One event for one rule's target.
pub struct Delivery {
    pub event: Arc<Event>,
    /// The rule's name (execution names and logs use it).
    pub rule: Arc<str>,
    /// How long the call may take: the rule's `timeoutMs`, or less if the invocation has
    /// less left.
    pub timeout: Duration,
    pub retry_all_errors: bool,
}

/// A target: delivers one event, or says why not (and whether to retry).
pub trait Target: Send + Sync + 'static {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_>;
}

/// The AWS services that targets other than HTTP call. A rule whose kind has no client here
/// is refused when the router is built.
#[derive(Clone, Default)]
pub struct AwsTargets {
    pub executions: Option<Arc<dyn state_machine::Executions>>,
    pub events: Option<Arc<dyn event_bus::Publisher>>,
    pub queues: Option<Arc<dyn queue::QueueSender>>,
}

/// Makes each rule a handler: its target, behind its breaker and pace.
#[derive(Clone)]
pub struct Forwarder {
    http: http::HttpClient,
    breakers: Arc<Breakers>,
    pacer: Arc<Pacer>,
    aws: AwsTargets,
    /// One batcher for every bus: a `PutEvents` call carries entries for several.
    bus: Option<Arc<event_bus::Batcher>>,
}

impl Default for Forwarder {
    /// Breakers and paces kept in this process, with the default settings; HTTP only.
    fn default() -> Self {
        Self::new(
            Arc::new(Breakers::local(BreakerSettings::default())),
            Arc::new(Pacer::local()),
        )
    }
}

impl Forwarder {
    pub fn new(breakers: Arc<Breakers>, pacer: Arc<Pacer>) -> Self {
        Self {
            http: http::HttpClient::default(),
            breakers,
            pacer,
            aws: AwsTargets::default(),
            bus: None,
        }
    }

    /// With the AWS clients that Step Functions, EventBridge and SQS targets use.
    pub fn with_aws(mut self, aws: AwsTargets) -> Self {
        self.bus = aws
            .events
            .clone()
            .map(|p| Arc::new(event_bus::Batcher::new(p)));
        self.aws = aws;
        self
    }

    /// A router with one handler per rule, named after it.
    pub fn router(self, rules: Vec<Rule>) -> Result<Router, RouteError> {
        self.add_rules(Router::new(), rules)
    }

    /// `router` with one more handler per rule, named after it.
    pub fn add_rules(self, router: Router, rules: Vec<Rule>) -> Result<Router, RouteError> {
        rules.into_iter().try_fold(router, |router, rule| {
            let target = self.target(&rule)?;
            let patterns: Vec<&str> = rule.events.iter().map(String::as_str).collect();
            let mut selection = Selection::events(&patterns);
            if let Some(filter) = rule.filter.clone() {
                selection = selection.filter(filter);
            }
            let pace = rule.max_per_second.map(|n| (self.pacer.clone(), n));
            let gate = Arc::new(Gate::new(&rule.name, self.breakers.clone(), pace));
            let name: Arc<str> = Arc::from(rule.name.as_str());
            let (timeout, retry_all_errors) = (rule.timeout, rule.retry_all_errors);
            router.on_gated(&rule.name, selection, Some(gate), move |event| {
                let (target, rule) = (target.clone(), name.clone());
                async move {
                    let Some(timeout) = time_for(&event, timeout) else {
                        return Err(HandlerError::deferred(
                            "no time left in this invocation",
                            Duration::ZERO,
                        ));
                    };
                    let delivery = Delivery {
                        event,
                        rule,
                        timeout,
                        retry_all_errors,
                    };
                    target.deliver(delivery).await
                }
            })
        })
    }

    fn target(&self, rule: &Rule) -> Result<Arc<dyn Target>, RouteError> {
        let missing = |service: &str| RouteError::NoClient {
            name: rule.name.clone(),
            service: service.to_owned(),
        };
        Ok(match &rule.target {
            Kind::Http(target) => Arc::new(http::Http {
                client: self.http.clone(),
                target: target.clone(),
            }),
            Kind::StateMachine { arn } => Arc::new(state_machine::StateMachine {
                executions: self
                    .aws
                    .executions
                    .clone()
                    .ok_or_else(|| missing("Step Functions"))?,
                arn: arn.clone(),
            }),
            Kind::EventBus { bus, source } => Arc::new(event_bus::EventBus {
                batcher: self.bus.clone().ok_or_else(|| missing("EventBridge"))?,
                bus: bus.clone(),
                source: source.clone(),
            }),
            Kind::Queue { url, fifo } => Arc::new(queue::Queue {
                sender: self.aws.queues.clone().ok_or_else(|| missing("SQS"))?,
                url: url.clone(),
                fifo: *fifo,
            }),
        })
    }
}

/// An AWS target's failure as the handler's: throttling and outages retried; the rest
/// final, unless the rule retries every error.
pub(crate) fn failed(what: &str, error: &AdapterError, retry_all_errors: bool) -> HandlerError {
    let reason = format!("{what}: {error}");
    if error.is_transient() || retry_all_errors {
        HandlerError::new(reason)
    } else {
        HandlerError::permanent(reason)
    }
}

/// What a target with a size limit sends: the envelope, or, when it is larger than
/// `limit`, the claim-check pointer it was queued as. None when neither fits.
pub(crate) fn within(event: &Event, limit: usize) -> Option<&str> {
    if event.body.len() <= limit {
        return Some(&event.body);
    }
    event
        .received
        .as_ref()
        .and_then(|r| r.pointer.as_deref())
        .filter(|p| p.len() <= limit)
}

/// The time a call may take: the rule's, or less when the invocation has less left.
/// None when nothing is left.
fn time_for(event: &Event, rule_timeout: Duration) -> Option<Duration> {
    let timeout = match event.time_left() {
        Some(left) if left < rule_timeout => left,
        _ => rule_timeout,
    };
    (!timeout.is_zero()).then_some(timeout)
}
