//! What `twenty-admin status` reads from the worker's table: the breakers that are open
//! (of the handlers the worker published) and reconciliation's last run and watermarks.
//! Reads only, by key: no scan of a table that holds every event's record.

use serde::Serialize;

use super::destinations::BREAKER;
use super::seen::published_routes;
use super::table::{Table, number_of, text_of};
use super::watermarks::{LAST_RUN, WATERMARK};
use crate::adapter::AdapterError;
use crate::reconcile::run::{LastRun, Pass};

pub(crate) struct TableOverview {
    table: Table,
}

on_table!(TableOverview);

/// A destination whose breaker is open: no send goes to it until `open_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OpenBreaker {
    pub destination: String,
    /// RFC 3339.
    pub open_until: String,
    /// Consecutive failures counted.
    pub failures: u64,
}

/// Reconciliation's last scheduled run and the watermarks of the objects it read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Reconciliation {
    pub last_run: Option<LastRun>,
    /// `(scope, at)`: `people` for changes, `people#deleted` for deletions.
    pub watermarks: Vec<(String, String)>,
}

impl TableOverview {
    /// The open breakers of the worker's handlers; None when the worker has not published
    /// its handlers (it does on its first message).
    pub(crate) async fn open_breakers(
        &self,
        now_ms: u64,
    ) -> Result<Option<Vec<OpenBreaker>>, AdapterError> {
        let Some(routes) = published_routes(&self.table).await? else {
            return Ok(None);
        };
        let ids: Vec<String> = routes
            .iter()
            .map(|(name, _)| format!("{BREAKER}{name}"))
            .collect();
        let mut open: Vec<OpenBreaker> = self
            .table
            .items(&ids, None)
            .await?
            .iter()
            .filter(|item| number_of(item, "openUntil") > now_ms)
            .filter_map(|item| {
                let until = number_of(item, "openUntil");
                Some(OpenBreaker {
                    destination: text_of(item, "id")?.trim_start_matches(BREAKER).to_owned(),
                    open_until: humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(until),
                    )
                    .to_string(),
                    failures: number_of(item, "failures"),
                })
            })
            .collect();
        open.sort_by(|a, b| a.destination.cmp(&b.destination));
        Ok(Some(open))
    }

    pub(crate) async fn reconciliation(&self) -> Result<Reconciliation, AdapterError> {
        let item = self.table.item(LAST_RUN.to_owned()).await?;
        let Some(run) = item
            .as_ref()
            .and_then(|i| text_of(i, "run"))
            .and_then(|t| serde_json::from_str::<LastRun>(t).ok())
        else {
            return Ok(Reconciliation::default());
        };
        let scopes: Vec<String> = run
            .objects
            .iter()
            .flat_map(|o| [Pass::Changed.scope(o), Pass::Deleted.scope(o)])
            .collect();
        let ids: Vec<String> = scopes.iter().map(|s| format!("{WATERMARK}{s}")).collect();
        let items = self.table.items(&ids, None).await?;
        let at = |scope: &str| {
            items
                .iter()
                .find(|i| text_of(i, "id").is_some_and(|id| id == &format!("{WATERMARK}{scope}")))
                .and_then(|i| text_of(i, "at").cloned())
        };
        let watermarks = scopes
            .iter()
            .filter_map(|s| Some((s.clone(), at(s)?)))
            .collect();
        Ok(Reconciliation {
            last_run: Some(run),
            watermarks,
        })
    }
}
