//! Idempotency: a ledger of what has been done per record change (or event) and handler, so that a redelivered
//! message does not repeat a destination that already took it, and two workers racing on
//! one message do not both act. `aws::dynamodb` keeps it in DynamoDB; without a table the
//! worker runs with `NoLedger`, and delivery is at least once.

use std::future::Future;
use std::time::Duration;

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

pub trait Ledger: Send + Sync + 'static {
    /// Marks `key` in progress unless it is done or in progress elsewhere. A key whose
    /// event was moved to the dead-letter queue counts as done for the SQS message that
    /// was moved (its retries), not for another (a redrive, however it was made).
    fn begin(
        &self,
        key: &str,
        message_id: Option<&str>,
    ) -> impl Future<Output = Result<Begin, String>> + Send;
    /// Marks `key` done.
    fn complete(&self, key: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Records a failure and lifts our in-progress mark, so a retry may run at once;
    /// returns how often `key` has failed, if the ledger counts.
    fn failed(&self, key: &str) -> impl Future<Output = Result<Option<u32>, String>> + Send;
    /// Marks `key` as moved to the dead-letter queue with the SQS message `message_id`:
    /// retries of that message skip it, a redrive (another message) runs it again.
    fn dead_lettered(
        &self,
        key: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Records that every handler has taken the record change `change`, so that
    /// reconciliation can skip it. Nothing by default.
    fn seen(&self, change: &str) -> impl Future<Output = Result<(), String>> + Send {
        let _ = change;
        async { Ok(()) }
    }
}

/// No ledger: every delivery of a message runs its handlers (at least once).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl Ledger for NoLedger {
    async fn begin(&self, _key: &str, _message_id: Option<&str>) -> Result<Begin, String> {
        Ok(Begin::Proceed)
    }

    async fn complete(&self, _key: &str) -> Result<(), String> {
        Ok(())
    }

    async fn failed(&self, _key: &str) -> Result<Option<u32>, String> {
        Ok(None)
    }

    async fn dead_lettered(&self, _key: &str, _message_id: &str) -> Result<(), String> {
        Ok(())
    }
}
