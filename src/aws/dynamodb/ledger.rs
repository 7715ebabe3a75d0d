//! The idempotency ledger in DynamoDB, in the layout AWS Lambda Powertools uses: partition
//! key `id` (string), `status` (`INPROGRESS` or `COMPLETED`; and ours, `FAILED` and
//! `DEADLETTERED`), `expiration` (epoch seconds, the table's TTL attribute) and
//! `in_progress_expiration` (epoch milliseconds), plus `attempts` (failures so far). Every
//! change is a conditional write: under `Mode::Strict`, two workers racing on one key cannot
//! both proceed; under `Mode::Lean`, a consistent read stands for the in-progress mark.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use super::table::{
    COMPLETED, KEEP, Table, condition_failed, error, number, number_of, text_of, took,
};
use crate::adapter::AdapterError;
use crate::aws::lazy::LazySdk;
use crate::clock::now;
use crate::worker::idempotency::{Begin, Ledger, LedgerFuture, Mode};

const IN_PROGRESS: &str = "INPROGRESS";
const FAILED: &str = "FAILED";
pub(super) const DEAD_LETTERED: &str = "DEADLETTERED";

pub struct DynamoLedger {
    table: Table,
    /// How long an in-progress mark holds: a worker that died mid-way blocks its key no
    /// longer than this. Keep it above the worker function's timeout.
    in_progress: Duration,
    /// `Mode::Lean`: the keys this process is sending now, and since when. Twins in one batch, or
    /// a redelivery reaching the process still sending its message, wait for the first
    /// instead of racing it; only twins on two workers at once can both be sent.
    sending: Mutex<HashMap<String, Instant>>,
}

/// How long a twin waits for the send this process has in hand before it is tried again.
const TWIN_WAIT: Duration = Duration::from_secs(1);

impl DynamoLedger {
    pub fn with_sdk_config(shared: &SdkConfig, table: &str, in_progress: Duration) -> Self {
        Self {
            table: Table::ready(shared, table),
            in_progress,
            sending: Mutex::default(),
        }
    }

    /// The client is made when the first key is read or written.
    pub fn lazy(sdk: LazySdk, table: &str, in_progress: Duration) -> Self {
        Self {
            table: Table::lazy(sdk, table),
            in_progress,
            sending: Mutex::default(),
        }
    }

    /// `key`'s status and in-progress expiry (epoch milliseconds), if it has an item.
    async fn state(&self, key: &str) -> Result<Option<(String, u64)>, AdapterError> {
        Ok(self
            .state_and_message(key)
            .await?
            .map(|(s, until, _)| (s, until)))
    }

    /// `state`, with the SQS message a dead-lettered key was moved with.
    async fn state_and_message(
        &self,
        key: &str,
    ) -> Result<Option<(String, u64, Option<String>)>, AdapterError> {
        Ok(self.table.item(key.to_owned()).await?.map(|item| {
            let status = text_of(&item, "status").cloned().unwrap_or_default();
            let message = text_of(&item, "deadMessage").cloned();
            (status, number_of(&item, "in_progress_expiration"), message)
        }))
    }

    /// Lean `begin`: one consistent read. Done, or dead-lettered from this very message
    /// (its retries skip it), is skipped; anything else goes ahead, marking nothing in the
    /// table. A key this process is sending already waits for that send to end.
    async fn begin_lean(&self, key: &str, message_id: Option<&str>) -> Result<Begin, AdapterError> {
        if let Some(left) = self.hold(key) {
            return Ok(Begin::Busy(left.min(TWIN_WAIT)));
        }
        let begun = match self.state_and_message(key).await {
            Ok(Some((status, _, _))) if status == COMPLETED => Begin::Done,
            Ok(Some((status, _, message)))
                if status == DEAD_LETTERED && message.as_deref() == message_id =>
            {
                Begin::Done
            }
            Ok(_) => return Ok(Begin::Proceed),
            Err(e) => {
                self.release(key);
                return Err(e);
            }
        };
        self.release(key);
        Ok(begun)
    }

    /// Takes `key` for this process's send; how long the send in hand may still take
    /// when another has it (a send that never ended holds it no longer than an
    /// in-progress mark would).
    fn hold(&self, key: &str) -> Option<Duration> {
        let mut sending = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(since) = sending.get(key) {
            let left = self.in_progress.saturating_sub(now.duration_since(*since));
            if !left.is_zero() {
                return Some(left);
            }
        }
        sending.insert(key.to_owned(), now);
        None
    }

    /// Lets `key` go: its send ended (or never began). Nothing to do for a `Strict` key,
    /// never held here.
    fn release(&self, key: &str) {
        let mut sending = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        sending.remove(key);
    }
}

impl Ledger for DynamoLedger {
    fn begin<'a>(
        &'a self,
        key: &'a str,
        message_id: Option<&'a str>,
        mode: Mode,
    ) -> LedgerFuture<'a, Begin> {
        Box::pin(async move {
            if mode == Mode::Lean {
                return self.begin_lean(key, message_id).await;
            }
            let now = now();
            // New, expired, failed before, in progress by a worker whose mark has run out, or
            // dead-lettered from another SQS message (this one is a redrive).
            let condition = "attribute_not_exists(id) OR expiration < :now OR #status = :failed \
                 OR (#status = :in_progress AND in_progress_expiration < :now_ms) \
                 OR (#status = :dead AND deadMessage <> :message)";
            let update = self
                .update_status(key)
                .await
                .update_expression(
                    "SET #status = :in_progress, expiration = :expiration, \
                     in_progress_expiration = :until",
                )
                .condition_expression(condition)
                .expression_attribute_values(":expiration", number((now + KEEP).as_secs().into()))
                .expression_attribute_values(":until", number((now + self.in_progress).as_millis()))
                .expression_attribute_values(":now", number(now.as_secs().into()))
                .expression_attribute_values(":now_ms", number(now.as_millis()))
                .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
                .expression_attribute_values(":failed", AttributeValue::S(FAILED.into()))
                .expression_attribute_values(":dead", AttributeValue::S(DEAD_LETTERED.into()))
                .expression_attribute_values(
                    ":message",
                    AttributeValue::S(message_id.unwrap_or_default().to_owned()),
                );
            match update.send().await {
                Ok(_) => Ok(Begin::Proceed),
                Err(e) if condition_failed(&e) => match self.state(key).await? {
                    Some((status, _)) if status == COMPLETED || status == DEAD_LETTERED => {
                        Ok(Begin::Done)
                    }
                    Some((_, until_ms)) => Ok(Begin::Busy(Duration::from_millis(
                        (until_ms as u128).saturating_sub(now.as_millis()) as u64,
                    ))),
                    // Gone in between (expired and swept): try once more later.
                    None => Ok(Begin::Busy(Duration::ZERO)),
                },
                Err(e) => Err(error(e)),
            }
        })
    }

    fn complete<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move {
            // Let go once the table says done: a twin let in before would read it undone.
            let marked = self.mark(key, COMPLETED, None).await;
            self.release(key);
            marked
        })
    }

    fn dead_lettered<'a>(&'a self, key: &'a str, message_id: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move { self.mark(key, DEAD_LETTERED, Some(message_id)).await })
    }

    fn done<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, bool> {
        Box::pin(async move {
            Ok(self
                .state(key)
                .await?
                .is_some_and(|(status, _)| status == COMPLETED))
        })
    }

    fn seen<'a>(&'a self, change: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move { super::seen::mark(&self.table, change).await })
    }

    fn let_go(&self, key: &str) {
        self.release(key);
    }

    fn routes<'a>(&'a self, routes: &'a [(String, Vec<String>)]) -> LedgerFuture<'a, ()> {
        Box::pin(async move { super::seen::publish_routes(&self.table, routes).await })
    }

    fn failed<'a>(&'a self, key: &'a str, mode: Mode) -> LedgerFuture<'a, Option<u32>> {
        Box::pin(async move {
            let update = self
                .update_status(key)
                .await
                .update_expression(
                    "SET #status = :failed, attempts = if_not_exists(attempts, :zero) + :one, \
                     expiration = if_not_exists(expiration, :expiration) \
                     REMOVE in_progress_expiration",
                )
                .expression_attribute_values(":failed", AttributeValue::S(FAILED.into()))
                .expression_attribute_values(":zero", number(0))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":expiration", number((now() + KEEP).as_secs().into()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew);
            // Lean marks nothing in progress: any record but a done one is ours to count.
            let update = if mode == Mode::Lean {
                update
                    .condition_expression("attribute_not_exists(id) OR #status <> :completed")
                    .expression_attribute_values(":completed", AttributeValue::S(COMPLETED.into()))
            } else {
                update
                    .condition_expression("#status = :in_progress")
                    .expression_attribute_values(
                        ":in_progress",
                        AttributeValue::S(IN_PROGRESS.into()),
                    )
            };
            let updated = update.send().await;
            self.release(key);
            match updated {
                Ok(out) => Ok(out
                    .attributes
                    .map(|a| number_of(&a, "attempts") as u32)
                    .filter(|n| *n > 0)),
                // Not ours any more (completed by another worker, say).
                Err(e) if condition_failed(&e) => Ok(None),
                Err(e) => Err(error(e)),
            }
        })
    }
}

impl DynamoLedger {
    /// An update of `key`'s item, `#status` naming its status.
    async fn update_status(&self, key: &str) -> UpdateItemFluentBuilder {
        self.table
            .client()
            .await
            .update_item()
            .table_name(&self.table.name)
            .key("id", AttributeValue::S(key.to_owned()))
            .expression_attribute_names("#status", "status")
    }

    /// Sets `key`'s status; `message`: the SQS message it was dead-lettered with. A
    /// dead-letter mark never replaces a done one (the destination took the event: a
    /// redrive must skip it), and finding one done is no failure.
    async fn mark(
        &self,
        key: &str,
        status: &str,
        message: Option<&str>,
    ) -> Result<(), AdapterError> {
        let update = self
            .update_status(key)
            .await
            .expression_attribute_values(":status", AttributeValue::S(status.into()))
            .expression_attribute_values(":expiration", number((now() + KEEP).as_secs().into()));
        let update = match message {
            Some(m) => update
                .update_expression(
                    "SET #status = :status, expiration = :expiration, deadMessage = :m",
                )
                .condition_expression("attribute_not_exists(id) OR #status <> :completed")
                .expression_attribute_values(":completed", AttributeValue::S(COMPLETED.into()))
                .expression_attribute_values(":m", AttributeValue::S(m.into())),
            None => update.update_expression("SET #status = :status, expiration = :expiration"),
        };
        took(update.send().await).map(drop)
    }
}
