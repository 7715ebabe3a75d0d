//! `seen#<change>`: the record changes every handler has taken (or had dead-lettered), so
//! that reconciliation does not queue them again. The worker writes them, and
//! `routes#worker`: its handlers' names and event-name patterns, so that for a change whose
//! seen mark was lost reconciliation can read each handler's own record
//! (`<change>#<handler>`, the ledger's) instead.

use aws_sdk_dynamodb::types::AttributeValue;

use super::table::{COMPLETED, KEEP, Table, error, number};
use crate::adapter::AdapterError;
use crate::clock::now;

const SEEN: &str = "seen#";
const ROUTES: &str = "routes#worker";

/// The worker's handlers as it published them (names and event-name patterns); None when
/// it has not (yet).
#[cfg(feature = "reconcile")]
pub(super) async fn published_routes(
    table: &Table,
) -> Result<Option<Vec<(String, Vec<String>)>>, AdapterError> {
    let item = table.item(ROUTES.to_owned()).await?;
    let text = item
        .as_ref()
        .and_then(|i| super::table::text_of(i, "routes"));
    Ok(text.and_then(|t| serde_json::from_str(t).ok()))
}

/// Records that every handler has taken `change`.
pub(super) async fn mark(table: &Table, change: &str) -> Result<(), AdapterError> {
    table
        .put(format!("{SEEN}{change}"))
        .await
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
        .put(ROUTES.into())
        .await
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
    use std::collections::HashSet;

    use super::super::table::{Table, text_of};
    use super::SEEN;
    use crate::adapter::AdapterError;
    use crate::reconcile::run::{Probe, SeenIndex};
    use crate::worker::Pattern;

    /// Which changes the worker has taken, as reconciliation asks.
    pub struct DynamoSeen {
        table: Table,
    }

    on_table!(DynamoSeen);

    impl DynamoSeen {
        /// The worker's handlers as it published them; none when it has not (yet).
        async fn routes(&self) -> Result<Vec<(String, Vec<Pattern>)>, AdapterError> {
            let routes = super::published_routes(&self.table).await?;
            Ok(routes
                .unwrap_or_default()
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
                .table
                .items(&ids, Some("id"))
                .await?
                .iter()
                .filter_map(|item| text_of(item, "id"))
                .map(|id| id.trim_start_matches(SEEN).to_owned())
                .collect();
            let unseen: Vec<&Probe> = changes.iter().filter(|c| !found.contains(&c.key)).collect();
            if unseen.is_empty() {
                return Ok(found);
            }
            // A seen mark may have been lost, or not be made yet: a change every handler
            // listening to it has a record of needs no queuing either. Taken, dead-lettered,
            // or in hand (in progress, failed for now): a message for it is in the queue and
            // is tried until it is done or moved, and a twin queued now could reach the
            // destination under a second id if the worker on it died after sending.
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
            let recorded: HashSet<String> = self
                .table
                .items(&ids, Some("id"))
                .await?
                .iter()
                .filter_map(|item| text_of(item, "id").cloned())
                .collect();
            for (probe, keys) in due {
                if keys.iter().all(|k| recorded.contains(k)) {
                    found.insert(probe.key.clone());
                }
            }
            Ok(found)
        }
    }
}
