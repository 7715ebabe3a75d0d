//! The worker's one failure type: why a handler or a target did not take an event, and
//! what the retry plan needs to decide what becomes of the message (its kind, the reason,
//! the destination's status, its `Retry-After`).

use std::time::Duration;

/// Why a handler did not take an event: what happened, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub reason: String,
    /// Come back no sooner than this (a destination's `Retry-After`, an open breaker).
    pub retry_after: Option<Duration>,
    pub kind: FailureKind,
    /// The destination's HTTP status, when it answered.
    pub status: Option<u16>,
    /// How often this handler has now failed on this event, when the ledger counts it.
    pub attempts: Option<u32>,
}

/// What a failure means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth another try later, with a growing back-off, until the retry horizon.
    Transient,
    /// Trying again cannot change the answer: the message goes to the dead-letter queue.
    Permanent,
    /// Not tried at all (an open breaker, a rate limit, no time left, another worker on
    /// it): comes back after `retry_after`, and is no attempt.
    Deferred,
}

impl HandlerError {
    /// A transient failure: retried with the back-off.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
            kind: FailureKind::Transient,
            status: None,
            attempts: None,
        }
    }

    /// A failure no retry can mend: the message goes to the dead-letter queue at once.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            ..Self::new(reason)
        }
    }

    /// Nothing was tried; come back after `wait`.
    pub fn deferred(reason: impl Into<String>, wait: Duration) -> Self {
        Self {
            kind: FailureKind::Deferred,
            retry_after: Some(wait),
            ..Self::new(reason)
        }
    }

    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}
