//! One reconciliation: for each object, the rows changed in the window (and, in a second
//! pass, those soft-deleted in it), page by page in timestamp order; each page's changes
//! not yet seen by the worker are queued before the next page is read. A scheduled run
//! keeps a watermark per object and pass, moved after each queued page and to the window's
//! end once the pass is done, so a run that stops anywhere loses nothing.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::time::Instant;

use super::change::{ChangeError, Context, Object, change};
use super::twenty_api::{ApiError, Query, TwentyApi};
use super::window::{self, Window};
use crate::delivery::{Pending, Transport, send_all};
use crate::retry::{Backoff, jitter_unit};

/// Which record changes the worker has taken already (`seen#` items of the idempotency
/// table).
pub trait SeenIndex: Send + Sync {
    fn seen_among(
        &self,
        changes: &[String],
    ) -> impl Future<Output = Result<HashSet<String>, String>> + Send;
}

/// Where scheduled runs keep their progress.
pub trait Watermarks: Send + Sync {
    fn watermark(&self, scope: &str)
    -> impl Future<Output = Result<Option<String>, String>> + Send;
    fn set_watermark(
        &self,
        scope: &str,
        at: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// No table: nothing is known to be seen, and there is no watermark.
pub struct NoTable;

impl SeenIndex for NoTable {
    async fn seen_among(&self, _: &[String]) -> Result<HashSet<String>, String> {
        Ok(HashSet::new())
    }
}

impl Watermarks for NoTable {
    async fn watermark(&self, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }

    async fn set_watermark(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Changed rows (created or updated: `updatedAt`), then soft-deleted ones (`deletedAt`;
/// Twenty lists them only when the filter names that field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Changed,
    Deleted,
}

impl Pass {
    fn field(self) -> &'static str {
        match self {
            Self::Changed => "updatedAt",
            Self::Deleted => "deletedAt",
        }
    }

    /// The watermark's name for this object and pass.
    pub fn scope(self, plural: &str) -> String {
        match self {
            Self::Changed => plural.to_owned(),
            Self::Deleted => format!("{plural}#deleted"),
        }
    }
}

/// A backfill's own window, or a scheduled run's window from each watermark.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Backfill(Window),
    Scheduled {
        now: SystemTime,
        overlap: Duration,
        settle: Duration,
        first_lookback: Duration,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectReport {
    pub plural: String,
    /// Rows read, both passes.
    pub read: u64,
    /// Rows to read, as far as Twenty has said (its `totalCount` of each pass so far).
    pub expected: u64,
    pub queued: u64,
    /// Changes the worker had taken already: not queued again.
    pub seen: u64,
    /// Rows with no id or timestamp: cannot be a change (logged, not queued).
    pub skipped: u64,
    /// Every page of both passes was read and queued.
    pub complete: bool,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("the queue did not take {failed} of {total} events of {object}: {reason}")]
    Queue {
        object: String,
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("the idempotency table: {0}")]
    Table(String),
}

pub struct Reconciler<'a, T, I> {
    pub api: &'a TwentyApi,
    pub transport: &'a T,
    pub table: &'a I,
    pub context: Context<'a>,
    /// Read and count only: nothing is queued, no watermark moves.
    pub dry_run: bool,
    /// Stop reading new pages past this.
    pub deadline: Instant,
    pub page_limit: u32,
}

impl<T: Transport, I: SeenIndex + Watermarks> Reconciler<'_, T, I> {
    /// Reconciles `objects` one after the other; `progress` sees each object's report as
    /// it grows. Stops at the first error: what was queued stays queued, and the watermarks
    /// say how far.
    pub async fn run(
        &self,
        objects: &[Object],
        mode: Mode,
        mut progress: impl FnMut(&ObjectReport),
    ) -> Result<Vec<ObjectReport>, RunError> {
        let mut reports = Vec::new();
        for object in objects {
            let mut report = ObjectReport {
                plural: object.plural.clone(),
                complete: true,
                ..Default::default()
            };
            for pass in [Pass::Changed, Pass::Deleted] {
                let done =
                    Box::pin(self.pass(object, pass, mode, &mut report, &mut progress)).await?;
                report.complete &= done;
            }
            progress(&report);
            reports.push(report);
        }
        Ok(reports)
    }

    /// One pass over one object; true when it read every page.
    async fn pass(
        &self,
        object: &Object,
        pass: Pass,
        mode: Mode,
        report: &mut ObjectReport,
        progress: &mut impl FnMut(&ObjectReport),
    ) -> Result<bool, RunError> {
        let scope = pass.scope(&object.plural);
        let window = match mode {
            Mode::Backfill(window) => window,
            Mode::Scheduled {
                now,
                overlap,
                settle,
                first_lookback,
            } => {
                let mark = self
                    .table
                    .watermark(&scope)
                    .await
                    .map_err(RunError::Table)?
                    .and_then(|m| window::parse(&m));
                match window::scheduled(mark, now, overlap, settle, first_lookback) {
                    Some(window) => window,
                    None => return Ok(true),
                }
            }
        };
        let scheduled = matches!(mode, Mode::Scheduled { .. });
        let field = pass.field();
        let filter = format!(
            "{field}[gte]:\"{}\",{field}[lt]:\"{}\"",
            window::timestamp(window.since),
            window::timestamp(window.until)
        );
        let order_by = format!("{field}[AscNullsFirst]");
        let mut cursor: Option<String> = None;
        let mut first = true;
        loop {
            if Instant::now() >= self.deadline {
                return Ok(false);
            }
            let query = Query {
                plural: &object.plural,
                filter: filter.clone(),
                order_by: &order_by,
                limit: self.page_limit,
                cursor: cursor.as_deref(),
            };
            let page = match self.api.page(&query, self.deadline).await {
                Ok(page) => page,
                // Throttled or failing up to the deadline: stop here; the watermark says
                // how far this pass got.
                Err(ApiError::OutOfTime { last, .. }) => {
                    tracing::warn!(object = %object.plural, last = %last, "out of time");
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
            if first {
                report.expected += page.total.unwrap_or(page.rows.len() as u64);
                first = false;
            }
            report.read += page.rows.len() as u64;
            let mut changes = Vec::with_capacity(page.rows.len());
            for row in &page.rows {
                match change(object, row, self.context) {
                    Ok(c) => changes.push(c),
                    Err(ChangeError::NoChange { .. }) => {
                        report.skipped += 1;
                        tracing::warn!(object = %object.plural, "a row without an id or a timestamp was skipped");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let last_at = changes.last().map(|c| c.at.clone());
            let keys: Vec<String> = changes.iter().map(|c| c.key.clone()).collect();
            let seen = self
                .table
                .seen_among(&keys)
                .await
                .map_err(RunError::Table)?;
            let fresh: Vec<_> = changes
                .into_iter()
                .filter(|c| !seen.contains(&c.key))
                .collect();
            report.seen += (keys.len() - fresh.len()) as u64;
            if !self.dry_run && !fresh.is_empty() {
                let total = fresh.len();
                let mut pending: Vec<Pending> =
                    fresh.into_iter().map(|c| Pending::new(c.message)).collect();
                // A minute for SQS, but never far past the run's own deadline (Lambda's).
                let deadline = (Instant::now() + Duration::from_secs(60))
                    .min(self.deadline.max(Instant::now()) + Duration::from_secs(5));
                send_all(
                    self.transport,
                    &mut pending,
                    deadline,
                    Backoff::default(),
                    jitter_unit,
                )
                .await;
                if let Some(first) = pending.first() {
                    return Err(RunError::Queue {
                        object: object.plural.clone(),
                        failed: pending.len(),
                        total,
                        reason: first.reason().to_owned(),
                    });
                }
                report.queued += total as u64;
            }
            progress(report);
            if scheduled && !self.dry_run {
                // Everything before this page's last change is queued.
                if let Some(at) = &last_at {
                    self.table
                        .set_watermark(&scope, at)
                        .await
                        .map_err(RunError::Table)?;
                }
            }
            match (page.has_next, page.end_cursor) {
                (true, Some(next)) => cursor = Some(next),
                _ => break,
            }
        }
        if scheduled && !self.dry_run {
            let end = window::timestamp(window.until);
            self.table
                .set_watermark(&scope, &end)
                .await
                .map_err(RunError::Table)?;
        }
        Ok(true)
    }
}
