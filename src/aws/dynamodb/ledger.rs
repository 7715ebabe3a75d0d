//! The idempotency ledger in DynamoDB, in the layout AWS Lambda Powertools uses: partition
//! key `id` (string), `status` (`INPROGRESS` or `COMPLETED`; and ours, `FAILED` and
//! `DEADLETTERED`), `expiration` (epoch seconds, the table's TTL attribute) and
//! `in_progress_expiration` (epoch milliseconds), plus `attempts` (failures so far). Every
//! change is a conditional write, so two workers racing on one key cannot both proceed.
//!
//! The same table keeps, for reconciliation, `seen#<change>` (every handler took that
//! record change) and `reconcile#watermark#<scope>` (the end of the last complete window).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{condition_failed, now, number, number_of};
use crate::aws::lazy::{LazySdk, Source};

use crate::worker::idempotency::{Begin, Ledger};

const IN_PROGRESS: &str = "INPROGRESS";
const SEEN: &str = "seen#";
const WATERMARK: &str = "reconcile#watermark#";
/// BatchGetItem's limit.
const BATCH_GET: usize = 100;
const COMPLETED: &str = "COMPLETED";
const FAILED: &str = "FAILED";
const DEAD_LETTERED: &str = "DEADLETTERED";
/// How long a done key is remembered (the TTL): past SQS's longest retention (14 days),
/// so past the retry horizon (7 days at most) plus the time to redrive.
const KEEP: Duration = Duration::from_secs(15 * 86_400);

pub struct DynamoLedger {
    client: Source<Client>,
    table: String,
    /// How long an in-progress mark holds: a worker that died mid-way blocks its key no
    /// longer than this. Keep it above the worker function's timeout.
    in_progress: Duration,
}

impl DynamoLedger {
    pub fn with_sdk_config(shared: &SdkConfig, table: &str, in_progress: Duration) -> Self {
        Self {
            client: Source::Ready(Client::new(shared)),
            table: table.to_owned(),
            in_progress,
        }
    }

    /// The client is made when the first key is read or written.
    pub fn lazy(sdk: LazySdk, table: &str, in_progress: Duration) -> Self {
        Self {
            client: Source::lazy(sdk, Client::new),
            table: table.to_owned(),
            in_progress,
        }
    }

    /// Which of `changes` every handler has taken already (marked by `Ledger::seen`).
    pub async fn seen_among(
        &self,
        changes: &[String],
    ) -> Result<std::collections::HashSet<String>, String> {
        let mut found = std::collections::HashSet::new();
        let client = self.client.get().await;
        for chunk in changes.chunks(BATCH_GET) {
            let mut keys: Vec<_> = chunk
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|c| {
                    std::collections::HashMap::from([(
                        "id".to_owned(),
                        AttributeValue::S(format!("{SEEN}{c}")),
                    )])
                })
                .collect();
            // DynamoDB may leave keys unprocessed under load: ask again for those.
            for _ in 0..5 {
                if keys.is_empty() {
                    break;
                }
                let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression("id")
                    .consistent_read(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let out = client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| DisplayErrorContext(e).to_string())?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    if let Some(id) = item.get("id").and_then(|v| v.as_s().ok()) {
                        found.insert(id.trim_start_matches(SEEN).to_owned());
                    }
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !keys.is_empty() {
                return Err("DynamoDB left keys unprocessed five times".into());
            }
        }
        Ok(found)
    }

    /// The watermark of `scope`: the end of the last window reconciled whole.
    pub async fn watermark(&self, scope: &str) -> Result<Option<String>, String> {
        let item = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(format!("{WATERMARK}{scope}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?
            .item;
        Ok(item.and_then(|i| i.get("at").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Moves the watermark of `scope` to `at`, never back (a slower run that ends after a
    /// faster one cannot undo it).
    pub async fn set_watermark(&self, scope: &str, at: &str) -> Result<(), String> {
        let put = self
            .client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(format!("{WATERMARK}{scope}")))
            .item("at", AttributeValue::S(at.to_owned()))
            .condition_expression("attribute_not_exists(id) OR #at < :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(DisplayErrorContext(e).to_string()),
        }
    }

    async fn state(&self, key: &str) -> Result<Option<(String, u64)>, String> {
        let item = self
            .client
            .get()
            .await
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(e).to_string())?
            .item;
        Ok(item.map(|item| {
            let status = item
                .get("status")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            let until = item
                .get("in_progress_expiration")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (status, until)
        }))
    }
}

impl Ledger for DynamoLedger {
    async fn begin(&self, key: &str, message_id: Option<&str>) -> Result<Begin, String> {
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
            Err(e) => Err(DisplayErrorContext(e).to_string()),
        }
    }

    async fn complete(&self, key: &str) -> Result<(), String> {
        self.mark(key, COMPLETED, None).await
    }

    async fn dead_lettered(&self, key: &str, message_id: &str) -> Result<(), String> {
        self.mark(key, DEAD_LETTERED, Some(message_id)).await
    }

    async fn seen(&self, change: &str) -> Result<(), String> {
        self.client
            .get()
            .await
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(format!("{SEEN}{change}")))
            .item("status", AttributeValue::S(COMPLETED.into()))
            .item("expiration", number((now() + KEEP).as_secs().into()))
            .send()
            .await
            .map(drop)
            .map_err(|e| DisplayErrorContext(e).to_string())
    }

    async fn failed(&self, key: &str) -> Result<Option<u32>, String> {
        let updated = self
            .update_status(key)
            .await
            .update_expression(
                "SET #status = :failed, attempts = if_not_exists(attempts, :zero) + :one \
                 REMOVE in_progress_expiration",
            )
            .condition_expression("#status = :in_progress")
            .expression_attribute_values(":failed", AttributeValue::S(FAILED.into()))
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match updated {
            Ok(out) => Ok(out
                .attributes
                .map(|a| number_of(&a, "attempts") as u32)
                .filter(|n| *n > 0)),
            // Not ours any more (completed by another worker, say).
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(DisplayErrorContext(e).to_string()),
        }
    }
}

impl DynamoLedger {
    /// An update of `key`'s item, `#status` naming its status.
    async fn update_status(&self, key: &str) -> UpdateItemFluentBuilder {
        self.client
            .get()
            .await
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(key.to_owned()))
            .expression_attribute_names("#status", "status")
    }

    /// Sets `key`'s status; `message`: the SQS message it was dead-lettered with.
    async fn mark(&self, key: &str, status: &str, message: Option<&str>) -> Result<(), String> {
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
                .expression_attribute_values(":m", AttributeValue::S(m.into())),
            None => update.update_expression("SET #status = :status, expiration = :expiration"),
        };
        update
            .send()
            .await
            .map(drop)
            .map_err(|e| DisplayErrorContext(e).to_string())
    }
}
