//! The worker as a Lambda function behind SQS's event source: the batch in, the messages
//! to retry out (`ReportBatchItemFailures`), and a back-off for each by changing its
//! visibility. The AWS clients are made when first needed (a claim check, the idempotency
//! table, a back-off), not at init.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing::{error, info, warn};

use super::batch::{self, Item, Process};
use super::config::WorkerConfig;
use super::event::{Event, Queued};
use super::forwarder::Forwarder;
use super::idempotency::{Ledger, NoLedger};
use super::router::{Outcome, Router};
use super::routes::{Routes, parse_stored_rules};
use crate::aws::{AwsSecretStore, DynamoLedger, LazySdk, PayloadStore, SqsVisibility};
use crate::metrics::{self, Unit};
use crate::secrets::Rotating;

/// A failed message comes back no sooner than this after its first failure, doubling with
/// each receive, up to `BACKOFF_CAP` (or a destination's `Retry-After`, if longer).
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// SQS allows 12 hours; a quarter of an hour keeps a recovered destination fed.
const BACKOFF_CAP: Duration = Duration::from_secs(900);

/// Runs the `twenty-worker` function: `FORWARD_RULES` (required) and the other settings,
/// then the runtime.
pub async fn run() -> Result<(), Error> {
    start(Router::new(), true).await
}

/// Runs a worker with your own handlers in `router`, plus the forwarding rules of
/// `FORWARD_RULES` if it is set. The other settings are read as `twenty-worker` reads them.
pub async fn run_with(router: Router) -> Result<(), Error> {
    start(router, false).await
}

async fn start(router: Router, rules_required: bool) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = match WorkerConfig::from_env(rules_required) {
        Ok(config) => config,
        Err(e) => {
            error!("refusing to start: {e}");
            std::process::exit(1);
        }
    };
    let router = match Forwarder::default().add_rules(router, config.rules.clone()) {
        Ok(router) => router,
        Err(e) => {
            error!("refusing to start: FORWARD_RULES: {e}");
            std::process::exit(1);
        }
    };
    let sdk = LazySdk::default();
    let routes = match &config.stored_rules {
        Some(stored) => {
            let store = Arc::new(AwsSecretStore::lazy(sdk.clone()));
            let rules = Rotating::stored(
                store,
                stored.clone(),
                parse_stored_rules,
                config.secret_refresh,
            );
            Routes::with_stored_rules(router, rules)
        }
        None => Routes::from(router),
    };
    let worker = build(&config, sdk, routes);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let worker = &worker;
        async move { worker.handle(event.payload).await }
    }))
    .await
}

/// The worker with its AWS adapters, none of which builds its client (or loads the SDK's
/// configuration) before it first needs it: init and most first answers make no client.
fn build(config: &WorkerConfig, sdk: LazySdk, routes: Routes) -> Arc<dyn Run> {
    let claims = Some(PayloadStore::lazy(sdk.clone()));
    let visibility = SqsVisibility::lazy(sdk.clone(), config.queue_url.clone());
    match &config.idempotency_table {
        Some(table) => Arc::new(
            Worker::new(
                routes,
                claims,
                Arc::new(DynamoLedger::lazy(sdk, table, config.in_progress)),
                config.concurrency,
            )
            .with_visibility(visibility),
        ),
        None => Arc::new(
            Worker::new(routes, claims, Arc::new(NoLedger), config.concurrency)
                .with_visibility(visibility),
        ),
    }
}

/// A worker whatever its ledger.
trait Run: Send + Sync {
    fn handle(
        &self,
        event: SqsEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<SqsBatchResponse, Error>> + Send + '_>>;
}

impl<L: Ledger> Run for Worker<L> {
    fn handle(
        &self,
        event: SqsEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<SqsBatchResponse, Error>> + Send + '_>> {
        Box::pin(self.handle(event))
    }
}

/// The worker: a router, where to fetch claim checks, an idempotency ledger.
pub struct Worker<L: Ledger> {
    handling: Arc<Handling<L>>,
    concurrency: usize,
    visibility: Option<SqsVisibility>,
}

struct Handling<L: Ledger> {
    routes: Routes,
    claims: Option<PayloadStore>,
    ledger: Arc<L>,
}

impl<L: Ledger> Worker<L> {
    /// `routes`: a `Router`, or `Routes` with forwarding rules kept in a store.
    pub fn new(
        routes: impl Into<Routes>,
        claims: Option<PayloadStore>,
        ledger: Arc<L>,
        concurrency: usize,
    ) -> Self {
        Self {
            handling: Arc::new(Handling {
                routes: routes.into(),
                claims,
                ledger,
            }),
            concurrency,
            visibility: None,
        }
    }

    /// Failed messages come back after a growing delay instead of the queue's fixed one.
    pub fn with_visibility(mut self, visibility: SqsVisibility) -> Self {
        self.visibility = Some(visibility);
        self
    }

    /// One batch as Lambda's SQS event source delivers it. Errs only when it cannot work
    /// at all; one bad message is one reported failure.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
        let fifo = event
            .records
            .first()
            .and_then(|r| r.event_source_arn.as_deref())
            .is_some_and(|arn| arn.ends_with(".fifo"));
        let mut receipts = HashMap::new();
        let mut items = Vec::with_capacity(event.records.len());
        for record in event.records {
            // SQS gives every record an id; without one it could not be reported anyway.
            let Some(message_id) = record.message_id else {
                warn!("a record without a messageId was skipped");
                continue;
            };
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1);
            receipts.insert(
                message_id.clone(),
                (record.receipt_handle, record.event_source_arn, receives),
            );
            items.push(Item {
                message_id,
                group: record.attributes.get("MessageGroupId").cloned(),
                body: record.body.unwrap_or_default(),
            });
        }
        let total = items.len();
        let failed = batch::run(self.handling.clone(), items, fifo, self.concurrency).await;
        let mut response = SqsBatchResponse::default();
        for failure in &failed {
            if let (Some(visibility), Some((Some(handle), arn, receives))) =
                (&self.visibility, receipts.get(&failure.message_id))
            {
                let delay = backoff(*receives, failure.retry_after);
                if let Err(e) = visibility.delay(arn.as_deref(), handle, delay).await {
                    warn!(message_id = %failure.message_id, error = %e, "back-off not set; the queue's visibility timeout applies");
                }
            }
            let mut item = BatchItemFailure::default();
            item.item_identifier = failure.message_id.clone();
            response.batch_item_failures.push(item);
        }
        info!(messages = total, failed = failed.len(), "batch done");
        Ok(response)
    }
}

/// The delay before a failed message is seen again: doubling with its receive count from
/// `BACKOFF_BASE`, capped, and never shorter than a destination asked for.
pub fn backoff(receives: u32, retry_after: Option<Duration>) -> Duration {
    let grown = BACKOFF_BASE
        .saturating_mul(
            1u32.checked_shl(receives.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        )
        .min(BACKOFF_CAP);
    retry_after
        .map_or(grown, |r| r.max(grown))
        .min(Duration::from_secs(43_200))
}

impl<L: Ledger> Process for Handling<L> {
    /// One message; its metrics line is written before the batch is answered.
    async fn process(&self, item: &Item) -> Result<(), (String, Option<Duration>)> {
        let mut doc = metrics::document();
        let result = self.handle_one(item, &mut doc).await;
        match &result {
            Ok(()) => doc.add("Handled", Unit::Count, 1.0),
            Err((code, _)) => doc.add_by("Failed", Unit::Count, "Reason", code, 1.0),
        };
        doc.property("messageId", item.message_id.as_str()).emit();
        result.map_err(|(_, failure)| failure)
    }
}

/// Why a message failed: the `Reason` of the `Failed` metric, then what `Process` reports.
type Failure = (&'static str, (String, Option<Duration>));

impl<L: Ledger> Handling<L> {
    async fn handle_one(&self, item: &Item, doc: &mut metrics::Document) -> Result<(), Failure> {
        let message_id = item.message_id.as_str();
        let event = match self.read(&item.body).await {
            Ok(event) => event,
            Err((code, reason)) => {
                warn!(message_id, reason = %reason, "message failed");
                return Err((code, (reason, None)));
            }
        };
        let (id, name) = (event.id.clone(), event.event_name.clone());
        let change = event.change.clone();
        doc.property("eventId", id.as_str())
            .property("eventName", name.as_str());
        if let Some(age) = event
            .received_at
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        {
            doc.add("EventAge", Unit::Milliseconds, age.as_millis() as f64);
        }
        let router = match self.routes.current().await {
            Ok(router) => router,
            Err(reason) => {
                error!(message_id, id = %id, event = %name, reason = %reason, "no routes: message failed");
                return Err(("no_routes", (reason, None)));
            }
        };
        let outcome = router.dispatch(Arc::new(event), self.ledger.clone()).await;
        if let (Outcome::Unrouted | Outcome::Done { .. }, Some(change)) = (&outcome, &change) {
            // For reconciliation: this change needs no queuing again.
            if let Err(e) = self.ledger.seen(change).await {
                warn!(message_id, id = %id, error = %e, "handled, but not recorded as seen");
            }
        }
        match outcome {
            Outcome::Unrouted => {
                info!(message_id, id = %id, event = %name, "unrouted: no handler matches");
                doc.add("Unrouted", Unit::Count, 1.0);
                Ok(())
            }
            Outcome::Done { handled, skipped } => {
                info!(message_id, id = %id, event = %name, handled, skipped, "handled");
                Ok(())
            }
            Outcome::Failed(failures) => {
                let reason = failures
                    .iter()
                    .map(|(handler, e)| format!("{handler}: {}", e.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                let retry_after = failures.iter().filter_map(|(_, e)| e.retry_after).max();
                warn!(message_id, id = %id, event = %name, reason = %reason, "message failed");
                Err(("handler", (reason, retry_after)))
            }
        }
    }

    /// The event a message holds; errs with the `Reason` code and why.
    async fn read(&self, body: &str) -> Result<Event, (&'static str, String)> {
        let claim = |why: String| ("claim_check", why);
        match Event::parse(body.to_owned()).map_err(|e| ("unreadable", e.to_string()))? {
            Queued::Event(event) => Ok(event),
            Queued::Claim(check) => {
                let claims = self
                    .claims
                    .as_ref()
                    .ok_or_else(|| claim("a claim check, and no S3 client to read it".into()))?;
                let bytes = claims
                    .get(&check.bucket, &check.key)
                    .await
                    .map_err(|e| claim(format!("the stored envelope could not be read: {e}")))?;
                Event::from_stored(bytes, &check).map_err(|e| claim(e.to_string()))
            }
        }
    }
}
