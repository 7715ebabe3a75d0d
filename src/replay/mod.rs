//! Sends undelivered events from the fallback log back to the queue (`twenty-replay`).
//!
//! Replaying is idempotent: each message keeps its id, FIFO deduplication id and group, so
//! a FIFO queue drops a repeat within its five-minute deduplication window, and a consumer
//! deduplicating on `id` sees the event once however often a line is replayed.

pub mod cli;

use tokio::time::Instant;

use crate::delivery::{Pending, Transport, send_all};
use crate::fallback;
use crate::retry::{Backoff, jitter_unit};

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
/// Nothing is written to the fallback log: what fails is reported.
pub async fn replay<T: Transport>(transport: &T, input: &str, deadline: Instant) -> Report {
    let recovery = fallback::recover(input);
    let ids: Vec<String> = recovery.messages.iter().map(|m| m.id.clone()).collect();
    let mut pending: Vec<Pending> = recovery.messages.into_iter().map(Pending::new).collect();
    send_all(
        transport,
        &mut pending,
        deadline,
        Backoff::default(),
        jitter_unit,
    )
    .await;
    let failed: Vec<(String, String)> = pending
        .iter()
        .map(|p| (p.message.id.clone(), p.reason().to_owned()))
        .collect();
    Report {
        sent: ids
            .into_iter()
            .filter(|id| !failed.iter().any(|(f, _)| f == id))
            .collect(),
        failed,
        duplicates: recovery.duplicates,
        incomplete: recovery.incomplete,
    }
}
