//! The worker's one failure type, from a handler's answer to the batch response: why an
//! event was not taken (by a handler, or as a message), and all the retry plan needs to
//! decide what becomes of the message (its kind, the `failureReason` code, the reason, the
//! destination's status, its `Retry-After`, the attempts so far).

use std::fmt;
use std::time::Duration;

/// Why an event was not taken: what happened, and what to do about it.
///
/// A handler returns one (`new`, `permanent`, `deferred`); the router names the handler
/// it came from; the worker makes its own for a message it cannot read.
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
    /// Its own `failureReason` code: the message's (`unreadable`, `claim_check`, …) or a
    /// handler's that says more than its kind (`destination_auth`); None: the code follows
    /// the kind (see `code`).
    pub own_code: Option<&'static str>,
    /// The handler that failed (a rule's name); None: the message itself failed.
    pub handler: Option<String>,
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

impl FailureKind {
    /// The `failureReason` code of a handler's failure of this kind.
    pub fn code(self) -> &'static str {
        match self {
            Self::Transient => "destination_failed",
            Self::Permanent => "destination_refused",
            Self::Deferred => "deferred",
        }
    }
}

impl HandlerError {
    /// A transient failure: retried with the back-off.
    pub fn new(reason: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::Transient, reason)
    }

    /// A failure no retry can mend: the message goes to the dead-letter queue at once.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::Permanent, reason)
    }

    /// Nothing was tried; come back after `wait`.
    pub fn deferred(reason: impl Into<String>, wait: Duration) -> Self {
        Self::of_kind(FailureKind::Deferred, reason).retry_after(wait)
    }

    fn of_kind(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
            kind,
            status: None,
            attempts: None,
            own_code: None,
            handler: None,
        }
    }

    /// A failure of the message itself (unreadable, its claim check, no routes), under
    /// its own `failureReason` code.
    pub(crate) fn of_message(code: &'static str, kind: FailureKind, reason: String) -> Self {
        Self::of_kind(kind, reason).with_code(code)
    }

    /// The same failure under its own `failureReason` code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.own_code = Some(code);
        self
    }

    /// The `failureReason` code a dead-letter copy gets: its own, or
    /// `destination_failed`, `destination_refused` or `deferred` by its kind.
    pub fn code(&self) -> &'static str {
        self.own_code.unwrap_or(self.kind.code())
    }

    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The same failure, as `handler`'s.
    pub(crate) fn of_handler(mut self, handler: &str) -> Self {
        self.handler = Some(handler.to_owned());
        self
    }
}

/// `handler: reason`, or the reason alone for the message's own failure.
impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.handler {
            Some(h) => write!(f, "{h}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Several failures of one message, as one line: `a: why; b: why`.
pub(crate) fn joined<'a>(failures: impl IntoIterator<Item = &'a HandlerError>) -> String {
    failures
        .into_iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
