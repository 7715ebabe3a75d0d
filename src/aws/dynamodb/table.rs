//! The table and its client, and the helpers every role's items use.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::adapter::AdapterError;
use crate::aws::lazy::{LazySdk, Source};

/// The table and its client: what every role holds.
pub(crate) struct Table {
    client: Source<Client>,
    pub(super) name: String,
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

    pub(super) async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// A put of the item `id`; the caller adds its attributes (and any condition).
    pub(super) async fn put(
        &self,
        id: String,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        self.client()
            .await
            .put_item()
            .table_name(&self.name)
            .item("id", AttributeValue::S(id))
    }

    /// The item `id`, read consistently, unless its expiration has passed (DynamoDB's TTL
    /// sweeps expired items late: until then they are still read).
    pub(super) async fn live_item(&self, id: String) -> Result<Option<Item>, AdapterError> {
        let now = crate::clock::now().as_secs();
        Ok(self
            .item(id)
            .await?
            .filter(|i| number_of(i, "expiration") >= now))
    }

    /// The item `id`, read consistently.
    pub(super) async fn item(&self, id: String) -> Result<Option<Item>, AdapterError> {
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

#[cfg(feature = "reconcile")]
mod batch {
    use std::collections::{BTreeSet, HashMap};

    use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

    use super::{Item, Table, error};
    use crate::adapter::AdapterError;
    use crate::retry::{Backoff, jitter_unit};

    /// BatchGetItem's limit.
    const BATCH_GET: usize = 100;
    /// Keys DynamoDB leaves unprocessed (under load) are asked for again this often, with
    /// the shared back-off between.
    const TRIES: u32 = 6;
    const BACKOFF: Backoff = Backoff {
        base: std::time::Duration::from_millis(50),
        cap: std::time::Duration::from_secs(2),
    };

    impl Table {
        /// The items of `ids` that exist, read consistently; only the attributes of
        /// `projection` if given (`#status` stands for `status`, a reserved word).
        pub(in crate::aws::dynamodb) async fn items(
            &self,
            ids: &[String],
            projection: Option<&str>,
        ) -> Result<Vec<Item>, AdapterError> {
            let mut found = Vec::new();
            let client = self.client().await;
            let names = projection
                .filter(|p| p.contains("#status"))
                .map(|_| HashMap::from([("#status".to_owned(), "status".to_owned())]));
            for chunk in ids.chunks(BATCH_GET) {
                let mut keys: Vec<_> = chunk
                    .iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|id| HashMap::from([("id".to_owned(), AttributeValue::S(id.clone()))]))
                    .collect();
                for attempt in 0..TRIES {
                    if keys.is_empty() {
                        break;
                    }
                    if attempt > 0 {
                        tokio::time::sleep(BACKOFF.delay(attempt - 1, jitter_unit())).await;
                    }
                    let request = KeysAndAttributes::builder()
                        .set_keys(Some(keys))
                        .set_projection_expression(projection.map(str::to_owned))
                        .set_expression_attribute_names(names.clone())
                        .consistent_read(true)
                        .build()
                        .map_err(|e| AdapterError::Refused(e.to_string()))?;
                    let out = client
                        .batch_get_item()
                        .request_items(&self.name, request)
                        .send()
                        .await
                        .map_err(error)?;
                    found.extend(
                        out.responses
                            .and_then(|mut r| r.remove(&self.name))
                            .unwrap_or_default(),
                    );
                    keys = out
                        .unprocessed_keys
                        .and_then(|mut u| u.remove(&self.name))
                        .map(|k| k.keys)
                        .unwrap_or_default();
                }
                if !keys.is_empty() {
                    return Err(AdapterError::Throttled(format!(
                        "DynamoDB left {} keys unprocessed {TRIES} times",
                        keys.len()
                    )));
                }
            }
            Ok(found)
        }
    }
}

/// A ledger record's status once its handler took the event (seen marks carry it too).
pub(super) const COMPLETED: &str = "COMPLETED";
/// How long a done key is remembered (the TTL): past SQS's longest retention (14 days),
/// so past the retry horizon (7 days at most) plus the time to redrive.
pub(super) const KEEP: Duration = Duration::from_secs(15 * 86_400);

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn number(n: u128) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A number attribute of an item, 0 when absent or unreadable.
pub(super) fn number_of(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A string attribute of an item.
pub(super) fn text_of<'a>(item: &'a Item, name: &str) -> Option<&'a String> {
    item.get(name).and_then(|v| v.as_s().ok())
}

/// Whether a write was refused by its condition.
pub(super) fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// A conditional write's answer: whether it took. Its condition refusing it is no error.
pub(super) fn took<T, E>(
    answer: Result<
        T,
        aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    >,
) -> Result<bool, AdapterError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match answer {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(error(e)),
    }
}

/// A DynamoDB call's error, as an adapter error.
pub(super) fn error<E>(
    e: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> AdapterError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    crate::aws::sdk_error::adapter_error("DynamoDB", &e)
}
