//! What a service adapter (a table, a queue, a store) says when a call fails, reduced to
//! what the caller decides on: wait and try again (throttled, unavailable), or give up
//! (not found, denied, refused). One error for every adapter, sends included. Plain code:
//! the AWS adapters read SDK errors into an `Attempt` (`aws::sdk_error`), `classify` makes
//! the error, and tests can make them by hand.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

/// An adapter call's answer, boxed so that the adapter can be a trait object.
pub type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// A failed adapter call. The text is a short reason for the log: never a secret, a body
/// or a record.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AdapterError {
    /// The service refused for load (429, a throttling code): try again later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// No answer, a time-out, a 5xx: try again later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The table, queue or key does not exist: a setting is wrong.
    #[error("not found: {0}")]
    NotFound(String),
    /// The role may not do this: a permission is missing.
    #[error("access denied: {0}")]
    Denied(String),
    /// Anything else the service will refuse again (a bad request, a limit).
    #[error("refused: {0}")]
    Refused(String),
}

impl AdapterError {
    /// Worth another try: the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_))
    }

    /// The short reason alone, without the kind.
    pub fn reason(&self) -> &str {
        match self {
            Self::Throttled(r)
            | Self::Unavailable(r)
            | Self::NotFound(r)
            | Self::Denied(r)
            | Self::Refused(r) => r,
        }
    }
}

/// What went wrong on the wire, reduced to what classification needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// No answer: connection refused or reset, time-out, unreadable response.
    NoAnswer,
    /// The request could not even be built: a bug or a bad input, never transient.
    NotSent,
    /// An error answer from the service.
    Answer { status: u16, code: Option<&'a str> },
    /// SQS refused one entry of a batch; `sender_fault` is SQS's own verdict.
    Entry { sender_fault: bool, code: &'a str },
}

/// Error codes that mean "not now" whatever the status says.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "KmsThrottled",
    "KMS.ThrottlingException",
    "ServiceUnavailable",
    "InternalError",
    // S3's answer when the request body was not read in time (a slow or broken upload).
    "RequestTimeout",
    "RequestTimeoutException",
];

fn transient_code(code: &str) -> bool {
    TRANSIENT_CODES.iter().any(|t| code.ends_with(t))
}

/// The error a failed call comes to; `detail` is its short reason.
pub fn classify(attempt: Attempt<'_>, detail: impl Into<String>) -> AdapterError {
    let detail = detail.into();
    match attempt {
        Attempt::NoAnswer => AdapterError::Unavailable(detail),
        Attempt::NotSent => AdapterError::Refused(detail),
        Attempt::Answer { status, code } => answer(status, code.unwrap_or(""), detail),
        Attempt::Entry { sender_fault, code } => {
            if !sender_fault || transient_code(code) {
                AdapterError::Unavailable(detail)
            } else {
                AdapterError::Refused(detail)
            }
        }
    }
}

/// The kind of an error answer, from its HTTP status and error code.
fn answer(status: u16, code: &str, detail: String) -> AdapterError {
    let has = |words: &[&str]| words.iter().any(|w| code.contains(w));
    if status == 429
        || has(&[
            "Throttl",
            "TooManyRequests",
            "LimitExceeded",
            "ThroughputExceeded",
            "SlowDown",
        ])
    {
        AdapterError::Throttled(detail)
    } else if has(&["AccessDenied", "Unauthorized", "Forbidden", "NotAuthorized"]) || status == 403
    {
        AdapterError::Denied(detail)
    } else if has(&["NotFound", "NoSuch", "NonExistent", "DoesNotExist"]) || status == 404 {
        AdapterError::NotFound(detail)
    } else if status >= 500 || transient_code(code) {
        AdapterError::Unavailable(detail)
    } else {
        AdapterError::Refused(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_and_unavailable_are_worth_another_try_the_rest_are_not() {
        let transient = [
            AdapterError::Throttled("t".into()),
            AdapterError::Unavailable("u".into()),
        ];
        let permanent = [
            AdapterError::NotFound("n".into()),
            AdapterError::Denied("d".into()),
            AdapterError::Refused("r".into()),
        ];
        assert!(transient.iter().all(AdapterError::is_transient));
        assert!(!permanent.iter().any(AdapterError::is_transient));
        assert_eq!(permanent[1].reason(), "d");
        assert_eq!(permanent[1].to_string(), "access denied: d");
    }

    #[test]
    fn answers_are_told_apart_by_code_then_status() {
        let kind = |status, code: &str| match classify(
            Attempt::Answer {
                status,
                code: Some(code),
            },
            "",
        ) {
            AdapterError::Throttled(_) => "throttled",
            AdapterError::Unavailable(_) => "unavailable",
            AdapterError::NotFound(_) => "not found",
            AdapterError::Denied(_) => "denied",
            AdapterError::Refused(_) => "refused",
        };
        for (status, code, want) in [
            (400, "ProvisionedThroughputExceededException", "throttled"),
            (400, "ThrottlingException", "throttled"),
            (400, "RequestLimitExceeded", "throttled"),
            (400, "AWS.SimpleQueueService.RequestThrottled", "throttled"),
            (503, "SlowDown", "throttled"),
            (429, "", "throttled"),
            (400, "AccessDeniedException", "denied"),
            (403, "", "denied"),
            (403, "AccessDenied", "denied"),
            (400, "ResourceNotFoundException", "not found"),
            (400, "AWS.SimpleQueueService.NonExistentQueue", "not found"),
            (400, "QueueDoesNotExist", "not found"),
            (404, "NoSuchKey", "not found"),
            (500, "InternalServerError", "unavailable"),
            (500, "", "unavailable"),
            (503, "ServiceUnavailable", "unavailable"),
            (400, "RequestTimeout", "unavailable"),
            (400, "ValidationException", "refused"),
            (400, "ConditionalCheckFailedException", "refused"),
            (400, "InvalidParameterValue", "refused"),
            (400, "BatchRequestTooLong", "refused"),
        ] {
            assert_eq!(kind(status, code), want, "{status} {code}");
        }
    }

    #[test]
    fn no_answer_is_worth_another_try_a_request_never_sent_is_not() {
        let t = |a| classify(a, "x").is_transient();
        assert!(t(Attempt::NoAnswer));
        assert!(!t(Attempt::NotSent));
        assert!(t(Attempt::Entry {
            sender_fault: false,
            code: "InternalError"
        }));
        assert!(t(Attempt::Entry {
            sender_fault: true,
            code: "RequestThrottled"
        }));
        assert!(!t(Attempt::Entry {
            sender_fault: true,
            code: "InvalidMessageContents"
        }));
    }
}
