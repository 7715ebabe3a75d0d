//! `seen#<change>`: the record changes every handler has taken (or had dead-lettered), so
//! that reconciliation does not queue them again. The worker writes them, and
//! `routes#worker`: its handlers' names and event-name patterns, so that for a change whose
//! seen mark was lost reconciliation can read each handler's own record
//! (`<change>#<handler>`, the ledger's) instead.

use aws_sdk_dynamodb::types::AttributeValue;

use super::ledger::{COMPLETED, KEEP};
use super::{Table, error, now, number};
use crate::adapter::AdapterError;

const SEEN: &str = "seen#";
const ROUTES: &str = "routes#worker";

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

/// Publishes the worker's handlers: `[[name, [pattern, ...]], ...]` as JSON.
pub(super) async fn publish_routes(
    table: &Table,
    routes: &[(String, Vec<String>)],
) -> Result<(), AdapterError> {
    let text = serde_json::to_string(routes).map_err(|e| AdapterError::Refused(e.to_string()))?;
    table
        .client()
        .await
        .put_item()
        .table_name(&table.name)
        .item("id", AttributeValue::S(ROUTES.into()))
        .item("routes", AttributeValue::S(text))
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

    use super::super::ledger::{COMPLETED, DEAD_LETTERED};
    use super::super::{Item, Table, error, text_of};
    use super::{ROUTES, SEEN};
    use crate::adapter::AdapterError;
    use crate::reconcile::run::{Probe, SeenIndex};
    use crate::retry::{Backoff, jitter_unit};
    use crate::worker::Pattern;

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

    impl DynamoSeen {
        /// The items of `ids` that exist, read consistently: their `id`, and their `status`
        /// when `with_status`.
        async fn items(
            &self,
            ids: &[String],
            with_status: bool,
        ) -> Result<Vec<Item>, AdapterError> {
            let mut found = Vec::new();
            let client = self.table.client().await;
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
                    // `status` is a reserved word: named through a placeholder.
                    let request =
                        KeysAndAttributes::builder()
                            .set_keys(Some(keys))
                            .projection_expression(if with_status { "id, #status" } else { "id" })
                            .set_expression_attribute_names(with_status.then(|| {
                                HashMap::from([("#status".to_owned(), "status".to_owned())])
                            }))
                            .consistent_read(true)
                            .build()
                            .map_err(|e| AdapterError::Refused(e.to_string()))?;
                    let out = client
                        .batch_get_item()
                        .request_items(&self.table.name, request)
                        .send()
                        .await
                        .map_err(error)?;
                    found.extend(
                        out.responses
                            .and_then(|mut r| r.remove(&self.table.name))
                            .unwrap_or_default(),
                    );
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

        /// The worker's handlers as it published them; none when it has not (yet).
        async fn routes(&self) -> Result<Vec<(String, Vec<Pattern>)>, AdapterError> {
            let item = self.table.item(ROUTES.to_owned()).await?;
            let text = item.as_ref().and_then(|i| text_of(i, "routes"));
            let routes: Vec<(String, Vec<String>)> = text
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            Ok(routes
                .into_iter()
                .map(|(name, patterns)| {
                    let parsed = patterns
                        .iter()
                        .filter_map(|p| Pattern::parse(p).ok())
                        .collect();
                    (name, parsed)
                })
                .collect())
        }
    }

    impl SeenIndex for DynamoSeen {
        async fn seen_among(&self, changes: &[Probe]) -> Result<HashSet<String>, AdapterError> {
            let ids: Vec<String> = changes.iter().map(|c| format!("{SEEN}{}", c.key)).collect();
            let mut found: HashSet<String> = self
                .items(&ids, false)
                .await?
                .iter()
                .filter_map(|item| text_of(item, "id"))
                .map(|id| id.trim_start_matches(SEEN).to_owned())
                .collect();
            let unseen: Vec<&Probe> = changes.iter().filter(|c| !found.contains(&c.key)).collect();
            if unseen.is_empty() {
                return Ok(found);
            }
            // A seen mark may have been lost: a change every handler listening to it has
            // taken (or had dead-lettered) needs no queuing either.
            let routes = self.routes().await?;
            let due: Vec<(&Probe, Vec<String>)> = unseen
                .into_iter()
                .map(|probe| {
                    let keys = routes
                        .iter()
                        .filter(|(_, patterns)| {
                            patterns.iter().any(|p| p.matches(&probe.event_name))
                        })
                        .map(|(name, _)| format!("{}#{name}", probe.key))
                        .collect();
                    (probe, keys)
                })
                .filter(|(_, keys): &(&Probe, Vec<String>)| !keys.is_empty())
                .collect();
            let ids: Vec<String> = due
                .iter()
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect();
            if ids.is_empty() {
                return Ok(found);
            }
            let done: HashSet<String> = self
                .items(&ids, true)
                .await?
                .iter()
                .filter(|item| {
                    text_of(item, "status").is_some_and(|s| s == COMPLETED || s == DEAD_LETTERED)
                })
                .filter_map(|item| text_of(item, "id").cloned())
                .collect();
            for (probe, keys) in due {
                if keys.iter().all(|k| done.contains(k)) {
                    found.insert(probe.key.clone());
                }
            }
            Ok(found)
        }
    }
}
