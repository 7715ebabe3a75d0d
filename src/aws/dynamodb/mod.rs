//! The worker's DynamoDB table, one module per role it plays: the idempotency ledger
//! (`ledger`), the changes every handler has taken (`seen`) and reconciliation's progress
//! (`watermarks`), and the destinations' breaker and rate-limit state (`destinations`).
//! One table, partition key `id` (string), TTL on `expiration`: each role keeps its items
//! under a prefix of its own.

/// `with_sdk_config` and `lazy` for a role that holds the table alone (`table: Table`).
macro_rules! on_table {
    ($role:ident) => {
        impl $role {
            pub fn with_sdk_config(shared: &aws_config::SdkConfig, table: &str) -> Self {
                Self {
                    table: super::Table::ready(shared, table),
                }
            }

            /// The client is made when the table is first read or written.
            pub fn lazy(sdk: crate::aws::LazySdk, table: &str) -> Self {
                Self {
                    table: super::Table::lazy(sdk, table),
                }
            }
        }
    };
}

mod destinations;
mod ledger;
mod seen;
#[cfg(feature = "reconcile")]
mod watermarks;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

pub use destinations::DynamoDestinations;
pub use ledger::DynamoLedger;
#[cfg(feature = "reconcile")]
pub use seen::DynamoSeen;
#[cfg(feature = "reconcile")]
pub use watermarks::DynamoWatermarks;

use super::lazy::{LazySdk, Source};
use crate::adapter::AdapterError;

/// The table and its client: what every role holds.
pub(crate) struct Table {
    client: Source<Client>,
    name: String,
}

impl Table {
    pub(crate) fn ready(shared: &SdkConfig, name: &str) -> Self {
        Self {
            client: Source::Ready(Client::new(shared)),
            name: name.to_owned(),
        }
    }

    /// The client is made when the table is first read or written.
    pub(crate) fn lazy(sdk: LazySdk, name: &str) -> Self {
        Self {
            client: Source::lazy(sdk, Client::new),
            name: name.to_owned(),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// The item `id`, read consistently.
    async fn item(&self, id: String) -> Result<Option<Item>, AdapterError> {
        Ok(self
            .client()
            .await
            .get_item()
            .table_name(&self.name)
            .key("id", AttributeValue::S(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(error)?
            .item)
    }
}

type Item = HashMap<String, AttributeValue>;

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn number(n: u128) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A number attribute of an item, 0 when absent or unreadable.
fn number_of(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A string attribute of an item.
fn text_of<'a>(item: &'a Item, name: &str) -> Option<&'a String> {
    item.get(name).and_then(|v| v.as_s().ok())
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

/// A DynamoDB call's error, as an adapter error.
fn error<E>(
    e: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> AdapterError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    super::sdk_error::adapter_error("DynamoDB", &e)
}
