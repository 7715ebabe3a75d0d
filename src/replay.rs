//! Sends undelivered events from the fallback log back to the queue (`twenty-replay`).
//!
//! Replaying is idempotent: each message keeps its id, FIFO deduplication id and group, so
//! a FIFO queue drops a repeat and a standard-queue consumer deduplicating on `id` sees the
//! event once, however often a line is replayed.

use std::collections::HashSet;

use tokio::time::Instant;

use crate::fallback;
use crate::queue::SqsQueue;

#[derive(Debug, Default)]
pub struct Report {
    pub sent: Vec<String>,
    /// Id and reason, for messages SQS still would not take.
    pub failed: Vec<(String, String)>,
    /// Lines that repeated an event already read (sent once).
    pub duplicates: usize,
    /// Events with parts missing from the input: not sent.
    pub incomplete: Vec<String>,
}

/// Reads every undelivered event in `input` and sends it, retrying until `deadline`.
pub async fn replay(queue: &SqsQueue, input: &str, deadline: Instant) -> Report {
    let recovery = fallback::recover(input);
    let ids: Vec<String> = recovery.messages.iter().map(|m| m.id.clone()).collect();
    let outcome = queue.send_all(recovery.messages, deadline).await;
    let failed: Vec<(String, String)> = outcome
        .undelivered
        .into_iter()
        .map(|(m, f)| (m.id, f.reason().to_owned()))
        .collect();
    let failed_ids: HashSet<&str> = failed.iter().map(|(id, _)| id.as_str()).collect();
    Report {
        sent: ids
            .iter()
            .filter(|id| !failed_ids.contains(id.as_str()))
            .cloned()
            .collect(),
        failed,
        duplicates: recovery.duplicates,
        incomplete: recovery.incomplete,
    }
}
