//! The worker's DynamoDB table, one module per role it plays: the idempotency ledger (and,
//! for reconciliation, seen changes and watermarks) in `ledger`, the destinations' breaker
//! and rate-limit state in `destinations`. One table, partition key `id` (string), TTL on
//! `expiration`: each role keeps its items under a prefix of its own.

mod destinations;
mod ledger;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;

pub use destinations::DynamoDestinations;
pub use ledger::DynamoLedger;

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn number(n: u128) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A number attribute of an item, 0 when absent or unreadable.
fn number_of(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether a write was refused by its condition.
fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}
