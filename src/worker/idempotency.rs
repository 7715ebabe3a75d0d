//! Idempotency: a ledger of what has been done per record change (or event) and handler, so that a redelivered
//! message does not repeat a destination that already took it, and two workers racing on
//! one message do not both act. `aws::dynamodb` keeps it in DynamoDB; without a table the
//! worker runs with `NoLedger`, and delivery is at least once.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::adapter::AdapterError;
use crate::metrics::Tally;
use crate::retry::{Backoff, jitter_unit};

/// The ledger key of `handler` for a record change (or, without one, an event id).
pub(crate) fn key(change: &str, handler: &str) -> String {
    format!("{change}#{handler}")
}

/// How a handler's sends are guarded in the ledger: what a send costs in the table, and
/// what twins of one change (a webhook and its reconciled twin, a redelivery) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A conditional write marks the send in progress, one marks it done: twins on two
    /// workers at once never both send.
    #[default]
    Strict,
    /// A consistent read before the send, one write after it: twins on two workers at
    /// once may both send, so they are sent under one delivery id, the change's. For a
    /// destination that acts once per id (Standard Webhooks asks its consumers to).
    Lean,
}

/// What the ledger says about a key when a handler is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Not done, and now marked in progress by us: go ahead.
    Proceed,
    /// Done before: skip it.
    Done,
    /// Another worker is on it, for at most this long still.
    Busy(Duration),
}

/// A ledger call's answer.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// The worker holds its ledger as `Arc<dyn Ledger>`: one worker type, whatever keeps it.
pub trait Ledger: Send + Sync + 'static {
    /// Marks `key` in progress unless it is done or in progress elsewhere. A key whose
    /// event was moved to the dead-letter queue counts as done for the SQS message that
    /// was moved (its retries), not for another (a redrive, however it was made).
    /// `mode` is the handler's: `Lean` marks nothing in the table.
    fn begin<'a>(
        &'a self,
        key: &'a str,
        message_id: Option<&'a str>,
        mode: Mode,
    ) -> LedgerFuture<'a, Begin>;
    /// Marks `key` done.
    fn complete<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, ()>;
    /// Records a failure and lifts our in-progress mark (`Strict`), so a retry may run at
    /// once; returns how often `key` has failed, if the ledger counts.
    fn failed<'a>(&'a self, key: &'a str, mode: Mode) -> LedgerFuture<'a, Option<u32>>;
    /// Whether `key` is done (its destination took the event), read consistently: a
    /// destination that took an event is never named in a dead-letter copy. False without
    /// a record.
    fn done<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, bool>;
    /// Marks `key` as moved to the dead-letter queue with the SQS message `message_id`:
    /// retries of that message skip it, a redrive (another message) runs it again. Never
    /// over a done mark: a redrive must not repeat what a destination took.
    fn dead_lettered<'a>(&'a self, key: &'a str, message_id: &'a str) -> LedgerFuture<'a, ()>;
    /// Publishes the handlers in force (name and event-name patterns), so that
    /// reconciliation can read each one's record of a change whose seen mark was lost.
    /// Nothing by default.
    fn routes<'a>(&'a self, routes: &'a [(String, Vec<String>)]) -> LedgerFuture<'a, ()> {
        let _ = routes;
        Box::pin(async { Ok(()) })
    }
    /// Forgets a send begun in this process, however it ended (a run cancelled at the
    /// batch's deadline, or one that panicked): for a ledger that keeps the sends in hand
    /// in memory. Nothing by default.
    fn let_go(&self, key: &str) {
        let _ = key;
    }
    /// Records that every handler has taken the record change `change`, so that
    /// reconciliation can skip it. Nothing by default.
    fn seen<'a>(&'a self, change: &'a str) -> LedgerFuture<'a, ()> {
        let _ = change;
        Box::pin(async { Ok(()) })
    }
}

/// No ledger: every delivery of a message runs its handlers (at least once).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl Ledger for NoLedger {
    fn begin<'a>(
        &'a self,
        _key: &'a str,
        _message_id: Option<&'a str>,
        _mode: Mode,
    ) -> LedgerFuture<'a, Begin> {
        Box::pin(async move { Ok(Begin::Proceed) })
    }

    fn complete<'a>(&'a self, _key: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }

    fn failed<'a>(&'a self, _key: &'a str, _mode: Mode) -> LedgerFuture<'a, Option<u32>> {
        Box::pin(async move { Ok(None) })
    }

    fn done<'a>(&'a self, _key: &'a str) -> LedgerFuture<'a, bool> {
        Box::pin(async move { Ok(false) })
    }

    fn dead_lettered<'a>(&'a self, _key: &'a str, _message_id: &'a str) -> LedgerFuture<'a, ()> {
        Box::pin(async move { Ok(()) })
    }
}

/// A mark that must not be lost (done, seen, dead-lettered): lost, the next delivery or
/// reconciliation repeats the change at the destination. Tried this often, with the shared
/// back-off between, on throttling and outages (the SDK's own retries come first).
const MARK_TRIES: u32 = 3;
const MARK_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(1),
};

/// Makes a mark with `op`, trying again while the error is transient, there are tries
/// left and the wait ends before `deadline`. The last error if it never took.
pub(crate) async fn mark<F, Fut>(deadline: Option<Instant>, mut op: F) -> Result<(), AdapterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AdapterError>>,
{
    let mut attempt = 0;
    loop {
        let error = match op().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        attempt += 1;
        let wait = MARK_BACKOFF.delay(attempt - 1, jitter_unit());
        let late = deadline.is_some_and(|d| Instant::now() + wait >= d);
        if !error.is_transient() || attempt >= MARK_TRIES || late {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Records, for reconciliation, that the record change `change` (of the event `id`) needs
/// no queuing again. Not recorded, it is counted and logged: reconciliation may queue it
/// again, and the ledger's done marks keep that from reaching a destination twice.
pub(crate) async fn mark_seen(
    ledger: &dyn Ledger,
    deadline: Option<Instant>,
    id: &str,
    change: &str,
    tally: &Tally,
) {
    if let Err(e) = mark(deadline, || ledger.seen(change)).await {
        tally.count("MarkFailed", Some(("Mark", "seen")), 1.0);
        tracing::warn!(id, error = %e, "handled, but not recorded as seen: reconciliation may queue it again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_mark_is_tried_again_on_transient_errors_only() {
        let calls = AtomicU32::new(0);
        let flaky = || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(AdapterError::Throttled("t".into())),
                _ => Ok(()),
            }
        };
        assert_eq!(mark(None, flaky).await, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let calls = AtomicU32::new(0);
        let denied = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(AdapterError::Denied("d".into()))
        };
        assert!(matches!(
            mark(None, denied).await,
            Err(AdapterError::Denied(_))
        ));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "no retry when it cannot help"
        );

        let calls = AtomicU32::new(0);
        let down = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(AdapterError::Unavailable("u".into()))
        };
        assert!(mark(None, down).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), MARK_TRIES);
        // No time left: one try.
        let calls = AtomicU32::new(0);
        let down = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(AdapterError::Unavailable("u".into()))
        };
        assert!(mark(Some(Instant::now()), down).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
