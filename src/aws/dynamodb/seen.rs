//! `seen#<change>`: the record changes every handler has taken (or had dead-lettered), so
//! that reconciliation does not queue them again. The worker writes them; reconciliation
//! reads them a page at a time.

use aws_sdk_dynamodb::types::AttributeValue;

use super::ledger::{COMPLETED, KEEP};
use super::{Table, error, now, number};
use crate::adapter::AdapterError;

const SEEN: &str = "seen#";

/// Records that every handler has taken `change`.
pub(super) async fn mark(table: &Table, change: &str) -> Result<(), AdapterError> {
    table
        .client()
        .await
        .put_item()
        .table_name(&table.name)
        .item("id", AttributeValue::S(format!("{SEEN}{change}")))
        .item("status", AttributeValue::S(COMPLETED.into()))
        .item("expiration", number((now() + KEEP).as_secs().into()))
        .send()
        .await
        .map(drop)
        .map_err(error)
}

#[cfg(feature = "reconcile")]
pub use index::DynamoSeen;

#[cfg(feature = "reconcile")]
mod index {
    use std::collections::{BTreeSet, HashMap, HashSet};

    use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

    use super::super::{Table, error, text_of};
    use super::SEEN;
    use crate::adapter::AdapterError;
    use crate::reconcile::run::SeenIndex;
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

    /// Which changes the worker has taken, as reconciliation asks.
    pub struct DynamoSeen {
        table: Table,
    }

    on_table!(DynamoSeen);

    impl SeenIndex for DynamoSeen {
        async fn seen_among(&self, changes: &[String]) -> Result<HashSet<String>, AdapterError> {
            let mut found = HashSet::new();
            let client = self.table.client().await;
            for chunk in changes.chunks(BATCH_GET) {
                let mut keys: Vec<_> = chunk
                    .iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|c| {
                        HashMap::from([("id".to_owned(), AttributeValue::S(format!("{SEEN}{c}")))])
                    })
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
                        .projection_expression("id")
                        .consistent_read(true)
                        .build()
                        .map_err(|e| AdapterError::Refused(e.to_string()))?;
                    let out = client
                        .batch_get_item()
                        .request_items(&self.table.name, request)
                        .send()
                        .await
                        .map_err(error)?;
                    for item in out
                        .responses
                        .and_then(|mut r| r.remove(&self.table.name))
                        .unwrap_or_default()
                    {
                        if let Some(id) = text_of(&item, "id") {
                            found.insert(id.trim_start_matches(SEEN).to_owned());
                        }
                    }
                    keys = out
                        .unprocessed_keys
                        .and_then(|mut u| u.remove(&self.table.name))
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
