//! The send loop: batches of up to ten, claim checks stored before their pointers are
//! queued, per-entry verdicts read the safe way, retries with back-off within a deadline.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::transport::{BatchReply, Entry, Transport};
use crate::adapter::{AdapterError, Attempt, classify};
use crate::envelope::{Message, SQS_MAX_MESSAGE_BYTES};
use crate::retry::Backoff;

/// SQS takes at most ten messages in one batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// One call gets at most this long; a slow answer is a failed attempt, retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2_500);
/// No call is started with less time than this left: it could not finish.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// A message SQS has not confirmed yet, and what its attempts said so far.
#[derive(Debug)]
pub struct Pending {
    pub message: Message,
    state: State,
    /// Its claim-check envelope, if it has one, is in S3 already: a retry after SQS
    /// failed re-sends only the pointer.
    stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotSent,
    /// Failed, worth another try.
    Retry(AdapterError),
    /// Failed for good (a permanent error, or the time ran out).
    Final(AdapterError),
    Queued,
}

impl Pending {
    pub fn new(message: Message) -> Self {
        Self {
            message,
            state: State::NotSent,
            stored: false,
        }
    }

    /// Why it is not queued (yet).
    pub fn reason(&self) -> &str {
        match &self.state {
            State::NotSent => "not sent",
            State::Retry(f) | State::Final(f) => f.reason(),
            State::Queued => "queued",
        }
    }

    /// It failed for good: another try could not change the answer.
    pub fn refused(&self) -> bool {
        matches!(&self.state, State::Final(f) if !f.is_transient())
    }

    /// SQS confirmed it (it is only still here if the send stopped before tidying up).
    pub fn confirmed(&self) -> bool {
        self.state == State::Queued
    }

    fn open(&self) -> bool {
        matches!(self.state, State::NotSent | State::Retry(_))
    }

    fn fail(&mut self, failure: AdapterError) {
        self.state = State::failed(failure);
    }
}

impl State {
    fn failed(failure: AdapterError) -> Self {
        if failure.is_transient() {
            Self::Retry(failure)
        } else {
            Self::Final(failure)
        }
    }
}

/// What a send loop did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub queued: usize,
    /// Rounds of calls (1 when everything went through at once).
    pub attempts: u32,
}

/// Sends every message in `pending`, in order, until each is queued or has failed for good
/// or `deadline` leaves no time for another attempt. On return `pending` holds, in order,
/// only what SQS did not confirm, each with its reason; if the future is dropped midway,
/// it holds everything not confirmed so far. `jitter` gives uniform numbers in [0, 1).
pub async fn send_all<T: Transport>(
    transport: &T,
    pending: &mut Vec<Pending>,
    deadline: Instant,
    backoff: Backoff,
    mut jitter: impl FnMut() -> f64,
) -> Stats {
    let mut stats = Stats::default();
    loop {
        stats.attempts += 1;
        round(transport, pending, deadline).await;
        let before = pending.len();
        pending.retain(|p| p.state != State::Queued);
        stats.queued += before - pending.len();

        let open = pending.iter().filter(|p| p.open()).count();
        if open == 0 {
            return stats;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left <= MIN_ATTEMPT {
            for p in pending.iter_mut().filter(|p| p.open()) {
                let reason = format!(
                    "time budget spent after {} attempts; last: {}",
                    stats.attempts,
                    p.reason()
                );
                p.state = State::Final(AdapterError::Unavailable(reason));
            }
            return stats;
        }
        // A back-off that would overrun the deadline is cut short: one more try with what
        // is left beats giving up early.
        let delay = backoff
            .delay(stats.attempts - 1, jitter())
            .min(left - MIN_ATTEMPT);
        warn!(
            messages = open,
            attempt = stats.attempts,
            delay_ms = delay.as_millis() as u64,
            "retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// One try at every open message: claim checks first, then batch calls.
async fn round<T: Transport>(transport: &T, pending: &mut [Pending], deadline: Instant) {
    for p in pending.iter_mut().filter(|p| p.open() && !p.stored) {
        match &p.message.claim {
            None => p.stored = true,
            Some(claim) => match attempt(deadline, transport.put_claim(claim)).await {
                Ok(()) => p.stored = true,
                Err(failure) => p.fail(failure),
            },
        }
    }
    let ready: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].open() && pending[i].stored)
        .collect();
    for batch in batches(pending, &ready) {
        let ids: Vec<String> = (0..batch.len()).map(|n| n.to_string()).collect();
        let entries: Vec<Entry<'_>> = batch
            .iter()
            .zip(&ids)
            .map(|(&i, id)| Entry {
                id,
                message: &pending[i].message,
            })
            .collect();
        let result = attempt(deadline, transport.send_batch(&entries)).await;
        drop(entries);
        match result {
            Ok(reply) => {
                for (&i, id) in batch.iter().zip(&ids) {
                    pending[i].state = verdict(&reply, id);
                }
            }
            Err(failure) => batch.iter().for_each(|&i| pending[i].fail(failure.clone())),
        }
    }
}

/// One call, limited to the attempt timeout and the time left.
async fn attempt<R>(
    deadline: Instant,
    call: impl Future<Output = Result<R, AdapterError>>,
) -> Result<R, AdapterError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < MIN_ATTEMPT {
        return Err(AdapterError::Unavailable(
            "no time left for another attempt".into(),
        ));
    }
    tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), call)
        .await
        .unwrap_or_else(|_| Err(classify(Attempt::NoAnswer, "no answer in time")))
}

/// An entry is queued only when SQS lists it as successful and not as failed; one it lists
/// in neither (or under an id we did not send) is unconfirmed, and tried again.
fn verdict(reply: &BatchReply, id: &str) -> State {
    if let Some(refusal) = reply.failed.iter().find(|r| r.id == id) {
        let attempt = Attempt::Entry {
            sender_fault: refusal.sender_fault,
            code: &refusal.code,
        };
        let failure = classify(
            attempt,
            format!("SQS refused the message: {}", refusal.code),
        );
        return State::failed(failure);
    }
    if reply.successful.iter().any(|s| s == id) {
        State::Queued
    } else {
        State::Retry(AdapterError::Unavailable(
            "SQS listed the message neither as successful nor as failed".into(),
        ))
    }
}

/// Splits `ready` (indices into `pending`, in order) into batches SQS accepts: at most ten
/// entries and 1 MiB together.
fn batches(pending: &[Pending], ready: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for &i in ready {
        let next = pending[i].message.sqs_size();
        match out.last_mut() {
            Some(batch)
                if batch.len() < MAX_BATCH_ENTRIES && size + next <= SQS_MAX_MESSAGE_BYTES =>
            {
                batch.push(i);
                size += next;
            }
            _ => {
                out.push(vec![i]);
                size = next;
            }
        }
    }
    out
}
