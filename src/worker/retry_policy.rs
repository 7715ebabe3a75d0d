//! What becomes of a message that did not fully succeed: retried after a back-off, moved to
//! the dead-letter queue, or both (a copy for the destinations that failed for good, the
//! message retried for the others). Plain code: time and randomness come in as arguments.
//!
//! - A transient failure (5xx, 408, 425, 429, a time-out, a connection error) is retried
//!   after `base` doubling with each attempt, up to `cap`, with jitter, or after the
//!   destination's `Retry-After` when that is longer, until the message is `horizon` old
//!   (counted from when it was first queued).
//! - A deferred one (an open breaker, a rate limit, no time left) was not tried: it comes
//!   back when asked, and is no attempt.
//! - A permanent one (a 4xx but 408, 425 and 429, or a message that cannot be read) goes to
//!   the dead-letter queue at once, and so does any failure once the horizon has passed.

use std::time::Duration;

use super::error::{FailureKind, HandlerError, joined};
use crate::retry::Backoff;

/// SQS holds a message invisible for 12 hours at most, counted from the receive that
/// handed it out (not from when the visibility is set).
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);
/// The shortest a held-back message stays away.
const MIN_HOLD: Duration = Duration::from_secs(1);
/// Lambda's poller may hold received messages this long (the longest batching window)
/// before it invokes the function; and a few seconds for clocks and the call itself.
const BEFORE_INVOCATION: Duration = Duration::from_secs(300 + 5);

/// The longest a message may be kept from coming back, `since_invocation` into the
/// invocation that received it: what is left of SQS's 12 hours. Asking more fails, and
/// the message would come back after the queue's visibility timeout instead.
pub(crate) fn longest_hold(since_invocation: Duration) -> Duration {
    MAX_VISIBILITY.saturating_sub(BEFORE_INVOCATION + since_invocation)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub horizon: Duration,
    pub base: Duration,
    pub cap: Duration,
    /// The queue's `maxReceiveCount`: SQS moves a message to the dead-letter queue itself
    /// past it, with no reason and no marks. The worker moves it first: at its last two
    /// receives (one may be lost to a killed invocation) a failure is final.
    pub receive_limit: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(86_400),
            base: Duration::from_secs(5),
            cap: Duration::from_secs(900),
            receive_limit: 1000,
        }
    }
}

/// A copy for the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPlan {
    /// The `failureReason` code alone (`horizon_passed`, `destination_refused`, …).
    pub code: &'static str,
    /// `failureReason`: the code and a short text.
    pub reason: String,
    /// The handlers it is dead-lettered for (none: the message itself failed).
    pub handlers: Vec<String>,
    pub status: Option<u16>,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Report it failed; it comes back after this long.
    Retry(Duration),
    /// Copy it to the dead-letter queue; then it is done (`then` None) or retried for the
    /// handlers that may still succeed.
    DeadLetter {
        letter: DeadLetterPlan,
        then: Option<Duration>,
    },
}

impl RetryPolicy {
    /// The back-off after the `attempts`-th failure: `base` doubling, capped, times a
    /// jitter factor from 0.8 to 1.2 (`unit` uniform in [0, 1)) so that failures that
    /// came together do not come back together.
    pub fn backoff(&self, attempts: u32, unit: f64) -> Duration {
        let doubling = Backoff {
            base: self.base,
            cap: self.cap,
        };
        doubling
            .ceiling(attempts.saturating_sub(1))
            .mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
            .min(self.cap)
    }

    /// What to do with a message `age` old (since first queued), received `receives`
    /// times, whose handlers (or itself) failed with `failures`. `dead_letters`: whether
    /// the worker can move messages to the dead-letter queue itself.
    pub fn plan(
        &self,
        age: Duration,
        receives: u32,
        failures: &[HandlerError],
        dead_letters: bool,
        unit: f64,
    ) -> Plan {
        let last_receives = receives >= self.receive_limit.saturating_sub(1);
        let past = age >= self.horizon || last_receives;
        let (dead, live): (Vec<&HandlerError>, Vec<&HandlerError>) = failures
            .iter()
            .partition(|f| dead_letters && (past || f.kind == FailureKind::Permanent));
        let then = (!live.is_empty()).then(|| {
            let delay = live
                .iter()
                .map(|f| match f.kind {
                    // Never at once: a hold of nothing would spin receives.
                    FailureKind::Deferred => f.retry_after.unwrap_or_default().max(MIN_HOLD),
                    _ => {
                        let backoff = self.backoff(f.attempts.unwrap_or(receives).max(1), unit);
                        f.retry_after.map_or(backoff, |r| r.max(backoff))
                    }
                })
                .max()
                .unwrap_or_default();
            // Back at the horizon at the latest, for the last try.
            let left = self.horizon.saturating_sub(age);
            let delay = if left.is_zero() {
                delay
            } else {
                delay.min(left)
            };
            delay.min(MAX_VISIBILITY)
        });
        if dead.is_empty() {
            return Plan::Retry(then.unwrap_or_default());
        }
        let first = dead[0];
        let code = if past && first.kind != FailureKind::Permanent {
            if age >= self.horizon {
                "horizon_passed"
            } else {
                "receive_limit"
            }
        } else {
            first.code()
        };
        let reason = joined(dead.iter().copied());
        let letter = DeadLetterPlan {
            code,
            reason: format!("{code}: {reason}"),
            handlers: dead.iter().filter_map(|f| f.handler.clone()).collect(),
            status: dead.iter().find_map(|f| f.status),
            attempts: dead
                .iter()
                .map(|f| f.attempts.unwrap_or(receives))
                .max()
                .unwrap_or(receives)
                .max(1),
        };
        Plan::DeadLetter { letter, then }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn failed(handler: &str, kind: FailureKind, status: Option<u16>) -> HandlerError {
        let failure = match kind {
            FailureKind::Permanent => HandlerError::permanent("it answered"),
            FailureKind::Transient => HandlerError::new("it answered"),
            FailureKind::Deferred => HandlerError::deferred("it answered", Duration::ZERO),
        };
        HandlerError {
            status,
            retry_after: None,
            ..failure.of_handler(handler)
        }
    }

    #[test]
    fn back_off_doubles_to_the_cap_with_jitter() {
        let p = RetryPolicy::default();
        let mid: Vec<u64> = (1..=10).map(|a| p.backoff(a, 0.5).as_secs()).collect();
        assert_eq!(mid, [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(4));
        assert_eq!(p.backoff(1, 0.999_999).as_secs(), 5);
        assert_eq!(p.backoff(20, 1.0), p.cap, "never above the cap");
        assert_eq!(p.backoff(u32::MAX, 0.5), p.cap);
    }

    #[test]
    fn transient_failures_are_retried_until_the_horizon_then_dead_lettered() {
        let p = RetryPolicy::default();
        let f = [failed("n8n", FailureKind::Transient, Some(503))];
        assert_eq!(p.plan(S(0), 1, &f, true, 0.5), Plan::Retry(S(5)));
        assert_eq!(p.plan(S(100), 3, &f, true, 0.5), Plan::Retry(S(20)));
        // The last retry is at the horizon, not past it.
        assert_eq!(p.plan(S(86_000), 90, &f, true, 0.5), Plan::Retry(S(400)));
        let Plan::DeadLetter { letter, then } = p.plan(S(86_400), 91, &f, true, 0.5) else {
            panic!()
        };
        assert_eq!(then, None);
        assert_eq!(letter.handlers, ["n8n"]);
        assert_eq!(letter.code, "horizon_passed");
        assert!(
            letter.reason.starts_with("horizon_passed: n8n: "),
            "{}",
            letter.reason
        );
        assert_eq!((letter.status, letter.attempts), (Some(503), 91));
        // Without a dead-letter queue of its own, the worker only retries.
        assert_eq!(p.plan(S(90_000), 91, &f, false, 0.5), Plan::Retry(S(900)));
    }

    /// Held back often (a rate limit, an open breaker), a message reaches the queue's
    /// `maxReceiveCount` before the horizon: the worker moves it itself at its last
    /// receives, with why, before SQS would without a word.
    #[test]
    fn the_last_receives_before_sqs_moves_it_are_final() {
        let p = RetryPolicy::default();
        let mut d = failed("n8n", FailureKind::Deferred, None);
        d.retry_after = Some(S(3));
        assert_eq!(
            p.plan(S(60), 998, &[d.clone()], true, 0.5),
            Plan::Retry(S(3))
        );
        let Plan::DeadLetter { letter, then } = p.plan(S(60), 999, &[d.clone()], true, 0.5) else {
            panic!()
        };
        assert_eq!(then, None);
        assert!(
            letter.reason.starts_with("receive_limit: n8n: "),
            "{}",
            letter.reason
        );
    }

    #[test]
    fn retry_after_when_longer_and_deferrals_as_asked() {
        let p = RetryPolicy::default();
        let mut f = failed("n8n", FailureKind::Transient, Some(429));
        f.retry_after = Some(S(120));
        assert_eq!(
            p.plan(S(0), 1, &[f.clone()], true, 0.5),
            Plan::Retry(S(120))
        );
        f.retry_after = Some(S(1));
        assert_eq!(p.plan(S(0), 1, &[f], true, 0.5), Plan::Retry(S(5)));
        let mut d = failed("n8n", FailureKind::Deferred, None);
        d.retry_after = Some(S(17));
        assert_eq!(
            p.plan(S(0), 40, &[d], true, 0.5),
            Plan::Retry(S(17)),
            "no back-off"
        );
    }

    #[test]
    fn a_permanent_failure_is_dead_lettered_at_once_and_the_rest_retried() {
        let p = RetryPolicy::default();
        let f = [
            failed("crm", FailureKind::Permanent, Some(400)),
            failed("n8n", FailureKind::Transient, Some(502)),
        ];
        let Plan::DeadLetter { letter, then } = p.plan(S(1), 1, &f, true, 0.5) else {
            panic!()
        };
        assert_eq!(letter.handlers, ["crm"]);
        assert!(letter.reason.starts_with("destination_refused: crm: "));
        assert_eq!((letter.status, letter.attempts), (Some(400), 1));
        assert_eq!(then, Some(S(5)));
        let message = HandlerError::of_message(
            "unreadable",
            FailureKind::Permanent,
            "not an envelope".into(),
        );
        let Plan::DeadLetter { letter, then } = p.plan(S(0), 1, &[message], true, 0.5) else {
            panic!()
        };
        assert_eq!(
            (letter.reason.as_str(), then),
            ("unreadable: not an envelope", None)
        );
        assert!(letter.handlers.is_empty());
    }
}
