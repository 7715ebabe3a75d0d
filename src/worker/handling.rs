//! One batch from SQS's event source: every message read, routed and decided (delivered,
//! retried after a back-off, or moved to the dead-letter queue), within the invocation's
//! deadline; the messages to retry reported (`ReportBatchItemFailures`) with their
//! visibility set to when they should come back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::time::Instant;
use tracing::{info, warn};

use super::batch::{self, Bounds, Item, Process};
use super::error::FailureKind;
use super::event::{Event, EventError, Queued, Received};
use super::idempotency::{self, Ledger};
use super::retry_policy::{Failed, Plan, RetryPolicy, longest_hold};
use super::router::{Outcome, Router, ledger_key};
use super::rules::stored::Routes;
use crate::aws::{PayloadStore, SqsVisibility};
use crate::dead_letter::{Attribute, DeadLetter, DeadLetters, Why, copy_deduplication_id};
use crate::metrics::Tally;
use crate::retry::jitter_unit;

/// The worker: a router, where to fetch claim checks, an idempotency ledger, and how to
/// retry or dead-letter what fails.
pub struct Worker {
    handling: Arc<Handling>,
    concurrency: usize,
    visibility: Option<SqsVisibility>,
    margin: Duration,
}

struct Handling {
    routes: Routes,
    claims: Option<PayloadStore>,
    ledger: Arc<dyn Ledger>,
    retry: RetryPolicy,
    dead_letters: Option<Box<dyn DeadLetters>>,
    /// The router whose handlers were last published to the ledger (for reconciliation).
    published: std::sync::Mutex<Option<Arc<Router>>>,
}

impl Worker {
    /// `routes`: a `Router`, or `Routes` with forwarding rules kept in a store.
    pub fn new(
        routes: impl Into<Routes>,
        claims: Option<PayloadStore>,
        ledger: Arc<dyn Ledger>,
        concurrency: usize,
    ) -> Self {
        Self {
            handling: Arc::new(Handling {
                routes: routes.into(),
                claims,
                ledger,
                retry: RetryPolicy::default(),
                dead_letters: None,
                published: std::sync::Mutex::new(None),
            }),
            concurrency,
            visibility: None,
            margin: Duration::from_secs(5),
        }
    }

    /// The handling, while it is not shared yet (settings are given before any batch).
    fn configure(mut self, set: impl FnOnce(&mut Handling)) -> Self {
        if let Some(handling) = Arc::get_mut(&mut self.handling) {
            set(handling);
        }
        self
    }

    /// Failed messages come back after a growing delay instead of the queue's fixed one.
    pub fn with_visibility(mut self, visibility: SqsVisibility) -> Self {
        self.visibility = Some(visibility);
        self
    }

    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        self.configure(|h| h.retry = retry)
    }

    /// Messages that failed for good, or past the horizon, are moved here by the worker.
    pub fn with_dead_letters(self, dead_letters: impl DeadLetters) -> Self {
        self.configure(|h| h.dead_letters = Some(Box::new(dead_letters)))
    }

    /// What each invocation keeps back from its deadline for reporting.
    pub fn with_deadline_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// One batch as Lambda's SQS event source delivers it, to be done by `deadline`
    /// (None: no deadline). Errs only when it cannot work at all; one bad message is one
    /// reported failure.
    pub async fn handle_until(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let invoked = Instant::now();
        let fifo = event
            .records
            .first()
            .and_then(|r| r.event_source_arn.as_deref())
            .is_some_and(|arn| arn.ends_with(".fifo"));
        let arn = event
            .records
            .first()
            .and_then(|r| r.event_source_arn.clone());
        let mut receipts = HashMap::new();
        let mut items = Vec::with_capacity(event.records.len());
        for record in event.records {
            // SQS gives every record an id; without one it could not be reported anyway.
            let Some(message_id) = record.message_id.clone() else {
                warn!("a record without a messageId was skipped");
                continue;
            };
            receipts.insert(message_id.clone(), record.receipt_handle.clone());
            items.push(item(message_id, record));
        }
        let total = items.len();
        // The margin, but never more than half of what the invocation has: a function
        // whose timeout is shorter than the margin still gets to work.
        let margin = deadline.map_or(self.margin, |d| {
            self.margin
                .min(d.saturating_duration_since(Instant::now()) / 2)
        });
        let bounds = Bounds {
            start_by: deadline.map(|d| d.checked_sub(margin).unwrap_or(d)),
            stop_at: deadline.map(|d| d.checked_sub(margin / 2).unwrap_or(d)),
        };
        let tally = Arc::new(Tally::default());
        let failed = batch::run(
            self.handling.clone(),
            items,
            fifo,
            self.concurrency,
            bounds,
            tally.clone(),
        )
        .await;
        if let Some(why) = self.handling.routes.not_applied() {
            // Alarmed on: the destinations are those of the last good rules, not the store's.
            tally.count("RulesNotApplied", None, 1.0);
            warn!(reason = %why, "the stored forwarding rules are not applied; the last good ones are in force");
        }
        tally.emit(&[]);
        if let Some(visibility) = &self.visibility {
            let longest = longest_hold(invoked.elapsed());
            let delays: Vec<(&str, Duration)> = failed
                .iter()
                .filter_map(|f| {
                    let handle = receipts.get(&f.message_id)?.as_deref()?;
                    Some((handle, f.retry_after.unwrap_or_default().min(longest)))
                })
                .collect();
            let set = visibility.delay_many(arn.as_deref(), &delays);
            let set = match deadline {
                Some(d) => tokio::time::timeout_at(d.checked_sub(margin / 5).unwrap_or(d), set)
                    .await
                    .ok(),
                None => Some(set.await),
            };
            match set {
                Some(results) => {
                    for e in results.into_iter().filter_map(Result::err) {
                        warn!(error = %e, "back-off not set; the queue's visibility timeout applies");
                    }
                }
                None => warn!("back-off not set in time; the queue's visibility timeout applies"),
            }
        }
        let mut response = SqsBatchResponse::default();
        for failure in &failed {
            let mut item = BatchItemFailure::default();
            item.item_identifier = failure.message_id.clone();
            response.batch_item_failures.push(item);
        }
        info!(messages = total, failed = failed.len(), "batch done");
        Ok(response)
    }

    /// `handle_until` with no deadline.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        self.handle_until(event, None).await
    }
}

/// A record as the batch logic needs it.
fn item(message_id: String, record: SqsMessage) -> Item {
    let attribute = |name: &str| record.attributes.get(name);
    let attributes = record
        .message_attributes
        .iter()
        .map(|(name, a)| Attribute {
            name: name.clone(),
            data_type: a.data_type.clone().unwrap_or_else(|| "String".into()),
            string: a.string_value.clone(),
            binary: a.binary_value.as_ref().map(|b| b.0.clone()),
        })
        .collect();
    Item {
        message_id,
        group: attribute("MessageGroupId").cloned(),
        deduplication_id: attribute("MessageDeduplicationId").cloned(),
        receives: attribute("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        sent_at_ms: attribute("SentTimestamp").and_then(|n| n.parse().ok()),
        body: record.body.unwrap_or_default(),
        attributes,
    }
}

impl Process for Handling {
    async fn process(
        &self,
        item: &Item,
        bounds: Bounds,
        tally: &Tally,
    ) -> Result<(), (String, Option<Duration>)> {
        let message_id = item.message_id.as_str();
        let (event, mut failures) = match self.read(&item.body).await {
            Ok(event) => {
                // Shared, not copied: a claim check's body can be megabytes.
                let event = Arc::new(self.prepare(event, item, bounds));
                let failures = self.route(event.clone(), tally).await;
                (Some(event), failures)
            }
            Err(failure) => (None, vec![failure]),
        };
        let (id, name) = event
            .as_ref()
            .map_or(("", ""), |e| (e.id.as_str(), e.event_name.as_str()));
        if failures.is_empty() {
            tally.count("Handled", None, 1.0);
            return Ok(());
        }
        let age = item
            .sent_at_ms
            .map(|sent| Duration::from_millis(crate::clock::now_ms().saturating_sub(sent)))
            .unwrap_or_default();
        let unit = jitter_unit();
        let has_dead_letters = self.dead_letters.is_some();
        let mut plan = self
            .retry
            .plan(age, item.receives, &failures, has_dead_letters, unit);
        if let (Plan::DeadLetter { letter, .. }, Some(event)) = (&plan, &event) {
            // A destination that took the event (a deferral past the horizon, a twin that
            // finished it) is never named in a copy: a redrive would send it again.
            let done = self.done_among(event, &letter.handlers, tally).await;
            if !done.is_empty() {
                failures.retain(|f| f.handler.as_ref().is_none_or(|h| !done.contains(h)));
                if failures.is_empty() {
                    // Every destination has it after all.
                    if let Some(change) = &event.change {
                        self.seen(event, change, tally).await;
                    }
                    tally.count("Handled", None, 1.0);
                    return Ok(());
                }
                plan = self
                    .retry
                    .plan(age, item.receives, &failures, has_dead_letters, unit);
            }
        }
        let reasons = || {
            failures
                .iter()
                .map(|f| match &f.handler {
                    Some(h) => format!("{h}: {}", f.reason),
                    None => f.reason.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        for f in &failures {
            tally.count("Failed", Some(("Reason", f.code)), 1.0);
        }
        match plan {
            Plan::Retry(delay) => {
                warn!(message_id, id, event = name, reason = %reasons(), retry_in_s = delay.as_secs(), "will retry");
                Err((reasons(), Some(delay)))
            }
            Plan::DeadLetter { letter, then } => {
                let (Some(dead_letters), code) = (
                    &self.dead_letters,
                    letter.reason.split(':').next().unwrap_or(""),
                ) else {
                    return Err((reasons(), then));
                };
                // Each copy its own FIFO id: a second copy of one message (another
                // destination failing later) under the received id would be dropped by
                // SQS within its five-minute window.
                let deduplication_id = item.deduplication_id.as_deref().map(|original| {
                    copy_deduplication_id(&[
                        original,
                        &item.message_id,
                        &letter.handlers.join(","),
                        &letter.attempts.to_string(),
                    ])
                });
                let copy = DeadLetter::new(
                    item.body.clone(),
                    &item.attributes,
                    item.group.clone(),
                    deduplication_id,
                    &Why {
                        reason: &letter.reason,
                        destinations: &letter.handlers,
                        status: letter.status,
                        attempts: letter.attempts,
                    },
                );
                self.refresh_claim(item, tally).await;
                if let Err(e) = dead_letters.send(&copy).await {
                    // Never dropped without its copy: it comes back, and is moved then.
                    warn!(message_id, id, event = name, error = %e, "not moved to the dead-letter queue; will retry");
                    return Err((format!("dead-letter queue: {e}"), Some(self.retry.base)));
                }
                tally.count("DeadLettered", Some(("Reason", code)), 1.0);
                if let Some(event) = &event {
                    for handler in &letter.handlers {
                        let key = ledger_key(event, handler);
                        let marked = idempotency::mark(event.deadline, || {
                            self.ledger.dead_lettered(&key, &item.message_id)
                        });
                        if let Err(e) = marked.await {
                            tally.count("MarkFailed", Some(("Mark", "dead_lettered")), 1.0);
                            warn!(key = %key, error = %e, "dead-lettered, but not recorded: a retry may move it again");
                        }
                    }
                    // Every handler has taken it or had it dead-lettered: reconciliation must
                    // not queue it again (a redrive of the copy still runs it).
                    if let (None, Some(change)) = (then, &event.change) {
                        self.seen(event, change, tally).await;
                    }
                }
                warn!(message_id, id, event = name, reason = %letter.reason, "moved to the dead-letter queue");
                match then {
                    None => Ok(()),
                    Some(delay) => Err((reasons(), Some(delay))),
                }
            }
        }
    }
}

/// A failure of the message itself (not of a handler).
fn message_failure(code: &'static str, kind: FailureKind, reason: String) -> Failed {
    Failed {
        handler: None,
        kind,
        code,
        reason,
        status: None,
        retry_after: None,
        attempts: None,
    }
}

impl Handling {
    /// The event with what the invocation knows of it: its message, its deadline.
    fn prepare(&self, mut event: Event, item: &Item, bounds: Bounds) -> Event {
        event.message_id = Some(item.message_id.clone());
        event.deadline = bounds.start_by;
        event.received = Some(Arc::new(Received {
            attributes: item.attributes.clone(),
            group_id: item.group.clone(),
            deduplication_id: item.deduplication_id.clone(),
            pointer: (item.body != event.body).then(|| item.body.clone()),
        }));
        event
    }

    /// Runs the handlers; the failures, none when every handler took it.
    async fn route(&self, event: Arc<Event>, tally: &Tally) -> Vec<Failed> {
        if let Some(age) = event
            .received_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
        {
            tally.time("EventAge", None, age.as_millis() as f64);
        }
        let router = match self.routes.current().await {
            Ok(router) => router,
            Err(reason) => {
                return vec![message_failure("no_routes", FailureKind::Transient, reason)];
            }
        };
        self.publish(&router).await;
        let change = event.change.clone();
        let (outcome, runs) = router
            .dispatch_timed(event.clone(), self.ledger.clone())
            .await;
        for run in &runs {
            let by = Some(("Destination", run.handler.as_str()));
            match run.succeeded {
                Some(true) => tally.count("Forwarded", by, 1.0),
                Some(false) => tally.count("ForwardFailed", by, 1.0),
                None => tally.count("Deferred", by, 1.0),
            }
            if run.succeeded.is_some() {
                tally.time("DestinationLatency", by, run.elapsed.as_secs_f64() * 1000.0);
            }
            if run.unrecorded {
                tally.count("MarkFailed", Some(("Mark", "complete")), 1.0);
            }
        }
        if let (Outcome::Unrouted | Outcome::Done { .. }, Some(change)) = (&outcome, &change) {
            self.seen(&event, change, tally).await;
        }
        match outcome {
            Outcome::Unrouted => {
                info!(id = %event.id, event = %event.event_name, "unrouted: no handler matches");
                tally.count("Unrouted", None, 1.0);
                Vec::new()
            }
            Outcome::Done { .. } => {
                info!(id = %event.id, event = %event.event_name, "delivered");
                Vec::new()
            }
            Outcome::Failed(failures) => failures
                .into_iter()
                .map(|(handler, e)| Failed {
                    handler: Some(handler),
                    kind: e.kind,
                    code: match e.kind {
                        FailureKind::Permanent => "destination_refused",
                        FailureKind::Transient => "destination_failed",
                        FailureKind::Deferred => "deferred",
                    },
                    reason: e.reason,
                    status: e.status,
                    retry_after: e.retry_after,
                    attempts: e.attempts,
                })
                .collect(),
        }
    }

    /// Tells the ledger which handlers are in force, once per router (at the first message,
    /// and when stored rules change): reconciliation reads it to consult their records.
    async fn publish(&self, router: &Arc<Router>) {
        let fresh = {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let fresh = published.as_ref().is_none_or(|p| !Arc::ptr_eq(p, router));
            if fresh {
                *published = Some(Arc::clone(router));
            }
            fresh
        };
        if fresh && let Err(e) = self.ledger.routes(&router.selectors()).await {
            // Reconciliation relies on seen marks alone meanwhile; the next message tries again.
            warn!(error = %e, "the handlers in force were not published for reconciliation");
            *self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }

    /// A claim check about to be copied to the dead-letter queue: its stored envelope must
    /// live as long as the copy, so its lifetime starts again. Not done, the copy is moved
    /// all the same (the object has what was left of its lifetime), and it is counted.
    async fn refresh_claim(&self, item: &Item, tally: &Tally) {
        let (Some(claims), Some(check)) = (&self.claims, crate::aws::s3::claim_of(&item.body))
        else {
            return;
        };
        if let Err(e) = claims.refresh(&check.bucket, &check.key).await {
            tally.count("ClaimNotRefreshed", None, 1.0);
            warn!(message_id = %item.message_id, error = %e.reason(), "the stored envelope's lifetime was not restarted: it may expire before the dead-letter copy");
        }
    }

    /// Which of `handlers` the ledger has as done for `event`. One read each, on the
    /// dead-letter path only; a read that fails counts as not done (the copy names it,
    /// and the conditional mark still keeps its done mark).
    async fn done_among(&self, event: &Event, handlers: &[String], tally: &Tally) -> Vec<String> {
        let mut done = Vec::new();
        for handler in handlers {
            match self.ledger.done(&ledger_key(event, handler)).await {
                Ok(true) => done.push(handler.clone()),
                Ok(false) => {}
                Err(e) => {
                    tally.count("MarkFailed", Some(("Mark", "read")), 1.0);
                    warn!(handler = %handler, error = %e, "idempotency record not read before dead-lettering");
                }
            }
        }
        done
    }

    /// Records, for reconciliation, that `change` needs no queuing again.
    async fn seen(&self, event: &Event, change: &str, tally: &Tally) {
        let marked = idempotency::mark(event.deadline, || self.ledger.seen(change)).await;
        if let Err(e) = marked {
            tally.count("MarkFailed", Some(("Mark", "seen")), 1.0);
            warn!(id = %event.id, error = %e, "handled, but not recorded as seen: reconciliation may queue it again");
        }
    }

    /// The event a message holds, or why it cannot be read.
    async fn read(&self, body: &str) -> Result<Event, Failed> {
        let permanent = FailureKind::Permanent;
        let check = match Event::parse(body.to_owned()) {
            Ok(Queued::Event(event)) => return Ok(*event),
            Ok(Queued::Claim(check)) => check,
            Err(e @ EventError::UnknownVersion(_)) => {
                return Err(message_failure("unknown_version", permanent, e.to_string()));
            }
            Err(e) => return Err(message_failure("unreadable", permanent, e.to_string())),
        };
        let Some(claims) = &self.claims else {
            let why = "a claim check, and no S3 client to read it".to_owned();
            return Err(message_failure("claim_check", FailureKind::Transient, why));
        };
        let bytes = claims.get(&check.bucket, &check.key).await.map_err(|e| {
            let kind = if e.is_transient() {
                FailureKind::Transient
            } else {
                permanent
            };
            let why = format!("the stored envelope could not be read: {}", e.reason());
            message_failure("claim_check", kind, why)
        })?;
        Event::from_stored(bytes, &check)
            .map_err(|e| message_failure("claim_check", permanent, e.to_string()))
    }
}
