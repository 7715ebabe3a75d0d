//! The worker as SQS's event source sees it: what Lambda gives (the records, the queue's
//! ARN, the invocation's deadline) and what it expects back (the ids of the messages to
//! deliver again, `ReportBatchItemFailures`). In between: the batch's bounds from the
//! deadline, the batch run (`batch`, each message by `handling`), and each failed
//! message's visibility set to when it should come back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::time::Instant;
use tracing::{info, warn};

use super::batch::{self, Bounds, Item};
use super::handling::Handling;
use super::idempotency::Ledger;
use super::on_failure::OnFailure;
use super::retry_policy::{RetryPolicy, longest_hold};
use super::rules::stored::Routes;
use crate::aws::{PayloadStore, SqsVisibility};
use crate::dead_letter::{Attribute, DeadLetters};
use crate::metrics::Tally;

/// The worker: how each message is handled, and how a batch is run and answered.
pub struct Worker {
    handling: Arc<Handling>,
    concurrency: usize,
    visibility: Option<SqsVisibility>,
    margin: Duration,
}

/// A worker's parts and settings, all given before it is built.
pub struct WorkerBuilder {
    routes: Routes,
    on_failure: OnFailure,
    concurrency: usize,
    visibility: Option<SqsVisibility>,
    margin: Duration,
}

impl Worker {
    /// `routes`: a `Router`, or `Routes` with forwarding rules kept in a store; `claims`:
    /// where claim checks are read; `ledger`: the idempotency ledger; `concurrency`: how
    /// many messages (or FIFO groups) of a batch run at once.
    pub fn builder(
        routes: impl Into<Routes>,
        claims: Option<PayloadStore>,
        ledger: Arc<dyn Ledger>,
        concurrency: usize,
    ) -> WorkerBuilder {
        WorkerBuilder {
            routes: routes.into(),
            on_failure: OnFailure {
                retry: RetryPolicy::default(),
                dead_letters: None,
                claims,
                ledger,
            },
            concurrency,
            visibility: None,
            margin: Duration::from_secs(5),
        }
    }
}

impl WorkerBuilder {
    /// Failed messages come back after a growing delay instead of the queue's fixed one.
    pub fn with_visibility(mut self, visibility: SqsVisibility) -> Self {
        self.visibility = Some(visibility);
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.on_failure.retry = retry;
        self
    }

    /// Messages that failed for good, or past the horizon, are moved here by the worker.
    pub fn with_dead_letters(mut self, dead_letters: impl DeadLetters) -> Self {
        self.on_failure.dead_letters = Some(Box::new(dead_letters));
        self
    }

    /// What each invocation keeps back from its deadline for reporting.
    pub fn with_deadline_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    pub fn build(self) -> Worker {
        Worker {
            handling: Arc::new(Handling::new(self.routes, self.on_failure)),
            concurrency: self.concurrency,
            visibility: self.visibility,
            margin: self.margin,
        }
    }
}

impl Worker {
    /// One batch as Lambda's SQS event source delivers it, to be done by `deadline`
    /// (None: no deadline). Errs only when it cannot work at all; one bad message is one
    /// reported failure.
    pub async fn handle_until(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let invoked = Instant::now();
        let arn = event
            .records
            .first()
            .and_then(|r| r.event_source_arn.clone());
        let fifo = arn.as_deref().is_some_and(|arn| arn.ends_with(".fifo"));
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
        if let Some(why) = self.handling.rules_not_applied() {
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
                    let wanted = f.failure.retry_after.unwrap_or_default();
                    Some((handle, wanted.min(longest)))
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
