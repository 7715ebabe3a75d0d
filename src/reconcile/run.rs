//! One reconciliation: for each object, the rows changed in the window (and, in a second
//! pass, those soft-deleted in it), page by page in timestamp order; each page's changes
//! not yet seen by the worker are queued before the next page is read. A scheduled run
//! keeps a watermark per object and pass, moved after each queued page and to the window's
//! end once the pass is done, so a run that stops anywhere loses nothing.
//!
//! Nothing gets a run stuck: a row that cannot be queued is logged and skipped (the
//! watermark passes it), and an object that fails is reported while the others go on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::time::Instant;

use super::change::{ChangeError, Context, Object, change};
use super::window::{self, Window};
use crate::adapter::AdapterError;
use crate::delivery::{Pending, Transport, send_all};
use crate::retry::{Backoff, jitter_unit};
use crate::twenty_api::{ApiError, Query, TwentyApi};

/// One change to look up: its key, and the event it would be (for which handlers take it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub key: String,
    pub event_name: String,
}

/// Which record changes the worker has taken already: marked seen (`seen#` items of the
/// idempotency table), or taken by every handler that listens to them (its per-handler
/// records), when a seen mark was lost.
pub trait SeenIndex: Send + Sync {
    /// The keys of `changes` that need no queuing.
    fn seen_among(
        &self,
        changes: &[Probe],
    ) -> impl Future<Output = Result<HashSet<String>, AdapterError>> + Send;
}

/// Where scheduled runs keep their progress.
pub trait Watermarks: Send + Sync {
    fn watermark(
        &self,
        scope: &str,
    ) -> impl Future<Output = Result<Option<String>, AdapterError>> + Send;
    fn set_watermark(
        &self,
        scope: &str,
        at: &str,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;
    /// Keeps what the last scheduled run did (one write a run).
    fn record_run(&self, run: &LastRun) -> impl Future<Output = Result<(), AdapterError>> + Send;
}

/// The last scheduled run, as the table keeps it (`reconcile#run`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// RFC 3339, to the second.
    pub finished_at: String,
    pub verdict: String,
    pub failed: bool,
    pub read: u64,
    pub queued: u64,
    /// The objects it read, whose watermarks it moved.
    pub objects: Vec<String>,
}

/// No table: nothing is known to be seen, and there is no watermark.
pub struct NoTable;

impl SeenIndex for NoTable {
    async fn seen_among(&self, _: &[Probe]) -> Result<HashSet<String>, AdapterError> {
        Ok(HashSet::new())
    }
}

impl Watermarks for NoTable {
    async fn watermark(&self, _: &str) -> Result<Option<String>, AdapterError> {
        Ok(None)
    }

    async fn set_watermark(&self, _: &str, _: &str) -> Result<(), AdapterError> {
        Ok(())
    }

    async fn record_run(&self, _: &LastRun) -> Result<(), AdapterError> {
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
    /// Pages read, both passes.
    pub pages: u64,
    pub queued: u64,
    /// Changes the worker had taken already: not queued again.
    pub seen: u64,
    /// Rows that are no change (no id or timestamp) or cannot be queued (too large with
    /// no bucket, text SQS refuses): logged with their record id, passed.
    pub skipped: u64,
    /// Every page of both passes was read and queued.
    pub complete: bool,
    /// Why the object was given up, if it was (the run went on with the next).
    pub failure: Option<String>,
    /// Twenty was asked and kept failing (429, 5xx) until the deadline, and not one page
    /// was read: the last answer.
    pub stalled: Option<String>,
}

/// How a run ended, worst first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// These objects failed (`object: why`); the others were read.
    Failed(Vec<String>),
    /// No progress: these objects read no page before the deadline (`object: last answer`).
    Stalled(Vec<String>),
    /// Stopped at the deadline having made progress: the next run goes on.
    Incomplete,
    Complete,
}

impl Verdict {
    pub fn of(reports: &[ObjectReport]) -> Self {
        let named = |f: fn(&ObjectReport) -> Option<&String>| -> Vec<String> {
            reports
                .iter()
                .filter_map(|r| f(r).map(|why| format!("{}: {why}", r.plural)))
                .collect()
        };
        let failed = named(|r| r.failure.as_ref());
        let stalled = named(|r| r.stalled.as_ref());
        if !failed.is_empty() {
            Self::Failed(failed)
        } else if !stalled.is_empty() {
            Self::Stalled(stalled)
        } else if reports.iter().all(|r| r.complete) {
            Self::Complete
        } else {
            Self::Incomplete
        }
    }

    /// A failure for the scheduler: the run gave up on an object, or made no progress.
    pub fn failed(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Stalled(_))
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(objects) => write!(f, "objects failed: {}", objects.join("; ")),
            Self::Stalled(objects) => write!(
                f,
                "no progress (Twenty refused until the deadline): {}",
                objects.join("; ")
            ),
            Self::Incomplete => f.write_str("stopped at the deadline; the next run goes on"),
            Self::Complete => f.write_str("complete"),
        }
    }
}

/// Why one object was given up.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the queue did not take {failed} of {total} events: {reason}")]
    Queue {
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("the idempotency table: {0}")]
    Table(AdapterError),
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
    /// Reconciles `objects` one after the other, each on its own: one that fails is
    /// reported (`failure`) and the next is read. `progress` sees each object's report as it
    /// grows. What was queued stays queued, and the watermarks say how far.
    pub async fn run(
        &self,
        objects: &[Object],
        mode: Mode,
        mut progress: impl FnMut(&ObjectReport),
    ) -> Vec<ObjectReport> {
        let mut reports = Vec::new();
        for object in objects {
            let mut report = ObjectReport {
                plural: object.plural.clone(),
                complete: true,
                ..Default::default()
            };
            for pass in [Pass::Changed, Pass::Deleted] {
                match Box::pin(self.pass(object, pass, mode, &mut report, &mut progress)).await {
                    Ok(done) => report.complete &= done,
                    Err(e) => {
                        tracing::error!(object = %object.plural, error = %e, "object given up; the others go on");
                        report.complete = false;
                        report.failure = Some(e.to_string());
                        break;
                    }
                }
            }
            progress(&report);
            reports.push(report);
        }
        reports
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
                Err(ApiError::OutOfTime { attempts, last, .. }) => {
                    tracing::warn!(object = %object.plural, last = %last, "out of time");
                    if attempts > 0 && report.pages == 0 {
                        report.stalled = Some(format!("{attempts} attempts, last: {last}"));
                    }
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
            if first {
                report.expected += page.total.unwrap_or(page.rows.len() as u64);
                first = false;
            }
            report.pages += 1;
            report.read += page.rows.len() as u64;
            let mut changes = Vec::with_capacity(page.rows.len());
            for row in &page.rows {
                match change(object, row, self.context) {
                    Ok(c) => changes.push(c),
                    Err(e) => {
                        // Queued never, retried never: skipped, so the watermark can pass it.
                        report.skipped += 1;
                        match e {
                            ChangeError::NoChange { .. } => {
                                tracing::warn!(object = %object.plural, "a row without an id or a timestamp was skipped")
                            }
                            e => {
                                tracing::error!(object = %object.plural, reason = %e, "a row that cannot be queued was skipped")
                            }
                        }
                    }
                }
            }
            let last_at = changes.last().map(|c| c.at.clone());
            let probes: Vec<Probe> = changes
                .iter()
                .map(|c| Probe {
                    key: c.key.clone(),
                    event_name: c.event_name.clone(),
                })
                .collect();
            let seen = self
                .table
                .seen_among(&probes)
                .await
                .map_err(RunError::Table)?;
            let fresh: Vec<_> = changes
                .into_iter()
                .filter(|c| !seen.contains(&c.key))
                .collect();
            report.seen += (probes.len() - fresh.len()) as u64;
            if !self.dry_run && !fresh.is_empty() {
                let total = fresh.len();
                let keys: HashMap<String, String> = fresh
                    .iter()
                    .map(|c| (c.message.id.clone(), c.key.clone()))
                    .collect();
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
                // Refused for good by SQS: skipped like a row that cannot be made an event.
                let refused = pending.iter().filter(|p| p.refused()).count();
                for p in pending.iter().filter(|p| p.refused()) {
                    let change = keys.get(&p.message.id).map_or("?", String::as_str);
                    tracing::error!(object = %object.plural, change, reason = p.reason(), "a change the queue refuses was skipped");
                }
                report.skipped += refused as u64;
                report.queued += (total - pending.len()) as u64;
                if let Some(open) = pending.iter().find(|p| !p.refused()) {
                    // Out of time: this page's watermark does not move.
                    return Err(RunError::Queue {
                        failed: pending.len() - refused,
                        total,
                        reason: open.reason().to_owned(),
                    });
                }
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
