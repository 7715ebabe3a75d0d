//! The destinations' breaker and rate-limit state in the worker's table, shared by every
//! worker instance: `breaker#<rule>` (`failures`, `openUntil`, `period`, `probeUntil`, in
//! milliseconds) and `pace#<rule>` (`next`: the first slot after every slot leased or kept;
//! `kept`, `keptFrom`: the slots kept for held-back messages; in microseconds). Each
//! step is one conditional write, so instances never undo each other.

use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::table::{Item, Table, condition_failed, error, number, number_of, took};
use crate::adapter::AdapterError;
use crate::clock::now;
use crate::worker::guard::{
    BreakerState, DestinationStore, Lease, Opening, SlotAsk, StoreFuture, Timeline,
};

pub(super) const BREAKER: &str = "breaker#";
const PACE: &str = "pace#";
/// State untouched this long is swept by the table's TTL.
const KEEP: Duration = Duration::from_secs(7 * 86_400);
/// A slot lease lost to another instance is tried again this often, after a random pause
/// of up to `LEASE_PAUSE` times the tries so far: instances asking together (a backlog
/// under several pollers) take turns rather than collide again.
const LEASE_TRIES: usize = 20;
const LEASE_PAUSE: std::time::Duration = std::time::Duration::from_millis(4);

pub struct DynamoDestinations {
    table: Table,
}

fn breaker_state(item: &Item) -> BreakerState {
    BreakerState {
        failures: number_of(item, "failures") as u32,
        open_until_ms: number_of(item, "openUntil"),
        period_ms: number_of(item, "period"),
        probe_until_ms: number_of(item, "probeUntil"),
    }
}

fn key(prefix: &str, destination: &str) -> String {
    format!("{prefix}{destination}")
}

fn expiration() -> AttributeValue {
    number((now() + KEEP).as_secs().into())
}

on_table!(DynamoDestinations);

impl DynamoDestinations {
    /// An update of `destination`'s item under `prefix`, its expiry pushed on.
    async fn update(&self, prefix: &str, destination: &str) -> UpdateItemFluentBuilder {
        self.table
            .client()
            .await
            .update_item()
            .table_name(&self.table.name)
            .key("id", AttributeValue::S(key(prefix, destination)))
            .expression_attribute_values(":expiration", expiration())
    }

    /// The item of `destination` under `prefix`, read consistently.
    async fn item(&self, prefix: &str, destination: &str) -> Result<Option<Item>, AdapterError> {
        self.table.item(key(prefix, destination)).await
    }
}

impl DestinationStore for DynamoDestinations {
    fn add_failure<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, BreakerState> {
        Box::pin(async move {
            let out = self
                .update(BREAKER, destination)
                .await
                .update_expression("ADD failures :one SET expiration = :expiration")
                .expression_attribute_values(":one", number(1))
                .return_values(ReturnValue::AllNew)
                .send()
                .await
                .map_err(error)?;
            Ok(out
                .attributes
                .as_ref()
                .map(breaker_state)
                .unwrap_or_default())
        })
    }

    fn open<'a>(&'a self, destination: &'a str, opening: Opening) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let condition = if opening.expected_until_ms == 0 {
                "attribute_not_exists(openUntil) OR openUntil = :expected"
            } else {
                "openUntil = :expected"
            };
            let out = self
                .update(BREAKER, destination)
                .await
                .update_expression(
                    "SET openUntil = :until, period = :period, probeUntil = :zero, \
                     expiration = :expiration",
                )
                .condition_expression(condition)
                .expression_attribute_values(":expected", number(opening.expected_until_ms.into()))
                .expression_attribute_values(":until", number(opening.until_ms.into()))
                .expression_attribute_values(":period", number(opening.period_ms.into()))
                .expression_attribute_values(":zero", number(0))
                .send()
                .await;
            took(out)
        })
    }

    fn reset<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.update(BREAKER, destination)
                .await
                .update_expression(
                    "SET failures = :zero, openUntil = :zero, period = :zero, probeUntil = :zero, \
                     expiration = :expiration",
                )
                .expression_attribute_values(":zero", number(0))
                .send()
                .await
                .map(drop)
                .map_err(error)
        })
    }

    fn lease_probe<'a>(
        &'a self,
        destination: &'a str,
        now_ms: u64,
        until_ms: u64,
    ) -> StoreFuture<'a, Result<BreakerState, BreakerState>> {
        Box::pin(async move {
            let out = self
                .update(BREAKER, destination)
                .await
                .update_expression("SET probeUntil = :until, expiration = :expiration")
                .condition_expression(
                    "(attribute_not_exists(openUntil) OR openUntil <= :now) \
                     AND (attribute_not_exists(probeUntil) OR probeUntil <= :now)",
                )
                .expression_attribute_values(":now", number(now_ms.into()))
                .expression_attribute_values(":until", number(until_ms.into()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match out {
                Ok(out) => Ok(Ok(out
                    .attributes
                    .as_ref()
                    .map(breaker_state)
                    .unwrap_or_default())),
                Err(e) if condition_failed(&e) => {
                    let item = self.item(BREAKER, destination).await?;
                    Ok(Err(item.as_ref().map(breaker_state).unwrap_or_default()))
                }
                Err(e) => Err(error(e)),
            }
        })
    }

    fn release_probe<'a>(&'a self, destination: &'a str, until_ms: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let out = self
                .update(BREAKER, destination)
                .await
                .update_expression("SET probeUntil = :zero, expiration = :expiration")
                .condition_expression("probeUntil = :until")
                .expression_attribute_values(":until", number(until_ms.into()))
                .expression_attribute_values(":zero", number(0))
                .send()
                .await;
            // Not ours any more (reopened, taken again): nothing to give back.
            took(out).map(drop)
        })
    }

    fn state<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, BreakerState> {
        Box::pin(async move {
            Ok(self
                .item(BREAKER, destination)
                .await?
                .as_ref()
                .map(breaker_state)
                .unwrap_or_default())
        })
    }

    fn lease_slots<'a>(&'a self, destination: &'a str, ask: SlotAsk) -> StoreFuture<'a, Lease> {
        Box::pin(async move {
            for attempt in 0..LEASE_TRIES {
                if attempt > 0 {
                    let pause = LEASE_PAUSE * attempt as u32;
                    tokio::time::sleep(pause.mul_f64(crate::retry::jitter_unit())).await;
                }
                // Read, then move the timeline on only if nobody moved it in between.
                let item = self.item(PACE, destination).await?;
                let seen = item.as_ref().map(|i| Timeline {
                    next_us: number_of(i, "next"),
                    kept: number_of(i, "kept") as u32,
                    kept_from_us: number_of(i, "keptFrom"),
                });
                let (lease, next) = ask.lease_on(seen.unwrap_or_default());
                let mut update = self
                    .update(PACE, destination)
                    .await
                    .update_expression(
                        "SET #next = :next, kept = :kept, keptFrom = :keptFrom, \
                         expiration = :expiration",
                    )
                    .expression_attribute_names("#next", "next")
                    .expression_attribute_values(":next", number(next.next_us.into()))
                    .expression_attribute_values(":kept", number(next.kept.into()))
                    .expression_attribute_values(":keptFrom", number(next.kept_from_us.into()));
                update = match (seen, item.as_ref().is_some_and(|i| i.contains_key("kept"))) {
                    (Some(seen), true) => update
                        .condition_expression(
                            "#next = :seen AND kept = :seenKept AND keptFrom = :seenFrom",
                        )
                        .expression_attribute_values(":seen", number(seen.next_us.into()))
                        .expression_attribute_values(":seenKept", number(seen.kept.into()))
                        .expression_attribute_values(":seenFrom", number(seen.kept_from_us.into())),
                    // Written before slots were kept: `next` alone.
                    (Some(seen), false) => update
                        .condition_expression("#next = :seen AND attribute_not_exists(kept)")
                        .expression_attribute_values(":seen", number(seen.next_us.into())),
                    (None, _) => update.condition_expression("attribute_not_exists(id)"),
                };
                match update.send().await {
                    Ok(_) => return Ok(lease),
                    Err(e) if condition_failed(&e) => continue,
                    Err(e) => return Err(error(e)),
                }
            }
            Err(AdapterError::Throttled(
                "the rate limit's slots were contended twenty times in a row".into(),
            ))
        })
    }
}
