//! Where rules deliver: one file per kind of target, each owning its rule fields, their
//! checks and error messages, and its delivery: `http` (a signed POST), `state_machine`
//! (Step Functions `StartExecution`), `event_bus` (EventBridge `PutEvents`, batched across
//! the messages of a batch) and `queue` (SQS `SendMessage`). The rule parser asks `KINDS`
//! which fields there are; a kind's AWS calls are behind a trait in its file, implemented
//! in `crate::aws`, and reach it through `Clients`.
//!
//! Every target runs behind the rule's breaker and pace, and under idempotency, partial
//! batch failures and the back-off, as HTTP does: throttling and outages are transient;
//! access denied, a missing resource and validation errors are permanent (the message goes
//! to the dead-letter queue), unless the rule says `retryAllErrors`.
//!
//! Adding a kind: its file here (a `Kind`, a `TargetSpec` and a `Target`) and one line in
//! `KINDS`; its AWS adapter in `crate::aws` and one line in `aws::target_clients`; its SDK
//! crate in `Cargo.toml`; its IAM permission in `template.yaml`.

pub(crate) mod event_bus;
pub mod http;
pub(crate) mod queue;
pub mod state_machine;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::error::HandlerError;
use super::event::Event;
use super::idempotency::Mode;
use super::transform::Body;
use crate::adapter::AdapterError;

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// One event for one rule's target.
pub struct Delivery {
    pub event: Arc<Event>,
    /// How the rule's sends are guarded: under `Lean`, twins of one change may both be
    /// sent, so they carry the change's id (`Delivery::id`).
    pub mode: Mode,
    /// The rule's name (execution names and logs use it).
    pub rule: Arc<str>,
    /// How long the call may take: the rule's `timeoutMs`, or less if the invocation has
    /// less left.
    pub timeout: Duration,
    pub retry_all_errors: bool,
    /// What the rule's `transform` made of the envelope: sent instead of it.
    pub transformed: Option<Body>,
}

impl Delivery {
    /// The id the destination tells deliveries apart by (`webhook-id`, a Step Functions
    /// execution's name): the envelope's, or under `Mode::Lean` the change's, the same for
    /// every twin.
    pub fn id(&self) -> &str {
        self.event.delivery_id(self.mode)
    }
}

/// A target: delivers one event, or says why not (and whether to retry).
pub trait Target: Send + Sync + 'static {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_>;
}

/// A kind of target, as rules name it.
pub struct Kind {
    /// The field that gives this kind's destination (`url`, `queueUrl`, ...): a rule has
    /// exactly one such field.
    pub key: &'static str,
    /// The other fields only this kind takes.
    pub fields: &'static [&'static str],
    /// Reads a rule's fields into the kind's target.
    pub parse: ParseFields,
}

/// How a kind reads a rule's fields: its target, or what is wrong (never a value).
pub type ParseFields = fn(&Map<String, Value>) -> Result<Arc<dyn TargetSpec>, String>;

/// Every kind of target, in the order errors list them.
pub static KINDS: &[&Kind] = &[
    &http::KIND,
    &state_machine::KIND,
    &event_bus::KIND,
    &queue::KIND,
];

/// A rule's target as parsed: where it delivers. It becomes a `Target` once the clients
/// it needs are at hand.
pub trait TargetSpec: Any + Debug + Send + Sync {
    /// The target, with its client from `clients`; Err names the service the worker has no
    /// client for.
    fn build(&self, clients: &Clients) -> Result<Arc<dyn Target>, &'static str>;
    /// Whether the destination acts once per delivery id, so that twins of one change sent
    /// under one id are harmless: `IDEMPOTENCY_MODE=auto` guards it with `Mode::Lean` (one
    /// table write per send), the others with `Mode::Strict`. Only HTTP says so: Standard
    /// Webhooks asks its consumers to deduplicate on `webhook-id`. A Step Functions express
    /// workflow, an EventBridge bus and an SQS standard queue do not.
    fn acts_once_per_id(&self) -> bool {
        false
    }
}

/// The clients targets call through, one per service, by type: `Arc<dyn Executions>`,
/// `Arc<event_bus::Batcher>`, `Arc<http::HttpClient>`... (`crate::aws::target_clients`
/// makes the AWS ones).
#[derive(Clone, Default)]
pub struct Clients {
    services: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Clients {
    /// With `client` as the one of its type.
    pub fn with<T: ?Sized + Send + Sync + 'static>(mut self, client: Arc<T>) -> Self {
        self.services
            .insert(TypeId::of::<Arc<T>>(), Arc::new(client));
        self
    }

    /// The client of type `T`, if there is one.
    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.services
            .get(&TypeId::of::<Arc<T>>())
            .and_then(|c| c.downcast_ref::<Arc<T>>())
            .cloned()
    }

    /// These clients, and those of `other` where these have none of its type.
    pub fn or(mut self, other: &Clients) -> Self {
        for (id, client) in &other.services {
            self.services.entry(*id).or_insert_with(|| client.clone());
        }
        self
    }
}

/// The text of a field, "" when it is missing or not a string.
pub(crate) fn text<'a>(map: &'a Map<String, Value>, field: &str) -> &'a str {
    map.get(field).and_then(Value::as_str).unwrap_or("")
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`, the resource starting with
/// `resource` and naming something after it.
pub(crate) fn is_arn(text: &str, service: &str, resource: &str) -> bool {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, s, region, account, rest]
        if partition.starts_with("aws") && *s == service && !region.is_empty()
            && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && rest.strip_prefix(resource).is_some_and(|name| !name.is_empty()))
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

/// What a target with a size limit sends: the rule's transformed body if it has one and it
/// fits; else the envelope, or, when it is larger than `limit`, the claim-check pointer it
/// was queued as. None when nothing fits.
pub(crate) fn within(delivery: &Delivery, limit: usize) -> Option<&str> {
    if let Some(body) = &delivery.transformed {
        return (body.text.len() <= limit).then_some(body.text.as_str());
    }
    let event = &delivery.event;
    if event.body.len() <= limit {
        return Some(&event.body);
    }
    event
        .received
        .as_ref()
        .and_then(|r| r.pointer.as_deref())
        .filter(|p| p.len() <= limit)
}
