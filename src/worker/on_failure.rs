//! What happens to a message some handler (or the message itself) failed on: the retry
//! plan is made (`retry_policy`), a destination that took the event after all is left out,
//! a dead-letter copy is sent (its claim check's lifetime restarted first), and the ledger
//! is told (dead-lettered marks, the seen mark once nothing is left to retry). What comes
//! back is when the message should be seen again, or nothing when it is done.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::batch::Item;
use super::error::{HandlerError, joined};
use super::event::Event;
use super::idempotency::{self, Ledger, mark_seen};
use super::retry_policy::{DeadLetterPlan, Plan, RetryPolicy};
use super::router::ledger_key;
use crate::aws::PayloadStore;
use crate::dead_letter::{DeadLetter, DeadLetters, Why, copy_deduplication_id};
use crate::metrics::Tally;
use crate::retry::jitter_unit;

/// The policy after a failure, and what it acts on.
pub(crate) struct OnFailure {
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letters: Option<Box<dyn DeadLetters>>,
    pub(crate) claims: Option<PayloadStore>,
    pub(crate) ledger: Arc<dyn Ledger>,
}

impl OnFailure {
    /// Decides and does what becomes of `item` (holding `event`, if it could be read)
    /// after `failures` (never empty): Ok when it is done with (delivered after all, or
    /// moved), else the failure to report with when it should come back.
    pub(crate) async fn settle(
        &self,
        item: &Item,
        event: Option<&Event>,
        mut failures: Vec<HandlerError>,
        tally: &Tally,
    ) -> Result<(), HandlerError> {
        let age = item
            .sent_at_ms
            .map(|sent| Duration::from_millis(crate::clock::now_ms().saturating_sub(sent)))
            .unwrap_or_default();
        let unit = jitter_unit();
        let has_dead_letters = self.dead_letters.is_some();
        let mut plan = self
            .retry
            .plan(age, item.receives, &failures, has_dead_letters, unit);
        if let (Plan::DeadLetter { letter, .. }, Some(event)) = (&plan, event) {
            // A destination that took the event (a deferral past the horizon, a twin that
            // finished it) is never named in a copy: a redrive would send it again.
            let done = self.done_among(event, &letter.handlers, tally).await;
            if !done.is_empty() {
                failures.retain(|f| f.handler.as_ref().is_none_or(|h| !done.contains(h)));
                if failures.is_empty() {
                    // Every destination has it after all.
                    if let Some(change) = &event.change {
                        mark_seen(&*self.ledger, event.deadline, &event.id, change, tally).await;
                    }
                    tally.count("Handled", None, 1.0);
                    return Ok(());
                }
                plan = self
                    .retry
                    .plan(age, item.receives, &failures, has_dead_letters, unit);
            }
        }
        for f in &failures {
            tally.count("Failed", Some(("Reason", f.code())), 1.0);
        }
        let (message_id, id, name) = (
            item.message_id.as_str(),
            event.map_or("", |e| e.id.as_str()),
            event.map_or("", |e| e.event_name.as_str()),
        );
        // Reported as the first failure says, with every reason, back after `delay`.
        let retry = |delay: Option<Duration>| {
            let reason = joined(&failures);
            let first = failures.first().cloned();
            let failure = first.unwrap_or_else(|| HandlerError::new(reason.clone()));
            HandlerError {
                reason,
                retry_after: delay,
                ..failure
            }
        };
        let (letter, then) = match plan {
            Plan::Retry(delay) => {
                warn!(message_id, id, event = name, reason = %joined(&failures), retry_in_s = delay.as_secs(), "will retry");
                return Err(retry(Some(delay)));
            }
            Plan::DeadLetter { letter, then } => (letter, then),
        };
        let Some(dead_letters) = &self.dead_letters else {
            return Err(retry(then));
        };
        let copy = dead_letter_copy(item, &letter);
        self.refresh_claim(item, tally).await;
        if let Err(e) = dead_letters.send(&copy).await {
            // Never dropped without its copy: it comes back, and is moved then.
            warn!(message_id, id, event = name, error = %e, "not moved to the dead-letter queue; will retry");
            return Err(
                HandlerError::new(format!("dead-letter queue: {e}")).retry_after(self.retry.base)
            );
        }
        tally.count("DeadLettered", Some(("Reason", letter.code)), 1.0);
        if let Some(event) = event {
            self.mark_dead_lettered(event, &letter.handlers, message_id, tally)
                .await;
            // Every handler has taken it or had it dead-lettered: reconciliation must
            // not queue it again (a redrive of the copy still runs it).
            if let (None, Some(change)) = (then, &event.change) {
                mark_seen(&*self.ledger, event.deadline, &event.id, change, tally).await;
            }
        }
        warn!(message_id, id, event = name, reason = %letter.reason, "moved to the dead-letter queue");
        match then {
            None => Ok(()),
            Some(delay) => Err(retry(Some(delay))),
        }
    }

    /// Which of `handlers` the ledger has as done for `event`. One read each, on the
    /// dead-letter path only; a read that fails counts as not done (the copy names it,
    /// and the conditional mark still keeps its done mark).
    async fn done_among(&self, event: &Event, handlers: &[String], tally: &Tally) -> Vec<String> {
        let mut done = Vec::new();
        for handler in handlers {
            match self.ledger.done(&ledger_key(event, handler)).await {
                Ok(true) => done.push(handler.clone()),
                Ok(false) => {}
                Err(e) => {
                    tally.count("MarkFailed", Some(("Mark", "read")), 1.0);
                    warn!(handler = %handler, error = %e, "idempotency record not read before dead-lettering");
                }
            }
        }
        done
    }

    /// Retries of this message skip the handlers it was dead-lettered for.
    async fn mark_dead_lettered(
        &self,
        event: &Event,
        handlers: &[String],
        message_id: &str,
        tally: &Tally,
    ) {
        for handler in handlers {
            let key = ledger_key(event, handler);
            let marked = idempotency::mark(event.deadline, || {
                self.ledger.dead_lettered(&key, message_id)
            });
            if let Err(e) = marked.await {
                tally.count("MarkFailed", Some(("Mark", "dead_lettered")), 1.0);
                warn!(key = %key, error = %e, "dead-lettered, but not recorded: a retry may move it again");
            }
        }
    }

    /// A claim check about to be copied to the dead-letter queue: its stored envelope must
    /// live as long as the copy, so its lifetime starts again. Not done, the copy is moved
    /// all the same (the object has what was left of its lifetime), and it is counted.
    async fn refresh_claim(&self, item: &Item, tally: &Tally) {
        let (Some(claims), Some(check)) = (&self.claims, crate::aws::s3::claim_of(&item.body))
        else {
            return;
        };
        if let Err(e) = claims.refresh(&check.bucket, &check.key).await {
            tally.count("ClaimNotRefreshed", None, 1.0);
            warn!(message_id = %item.message_id, error = %e.reason(), "the stored envelope's lifetime was not restarted: it may expire before the dead-letter copy");
        }
    }
}

/// The copy `letter` plans, of the message as it was received.
fn dead_letter_copy(item: &Item, letter: &DeadLetterPlan) -> DeadLetter {
    // Each copy its own FIFO id: a second copy of one message (another destination
    // failing later) under the received id would be dropped by SQS within its
    // five-minute window.
    let deduplication_id = item.deduplication_id.as_deref().map(|original| {
        copy_deduplication_id(&[
            original,
            &item.message_id,
            &letter.handlers.join(","),
            &letter.attempts.to_string(),
        ])
    });
    DeadLetter::new(
        item.body.clone(),
        &item.attributes,
        item.group.clone(),
        deduplication_id,
        &Why {
            reason: &letter.reason,
            destinations: &letter.handlers,
            status: letter.status,
            attempts: letter.attempts,
        },
    )
}
