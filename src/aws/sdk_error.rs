//! AWS SDK errors, reduced to what callers decide on: the retry policy's `Failure` (sends)
//! and the adapters' `AdapterError` (tables, queues). One reading of an SDK error for SQS,
//! S3 and DynamoDB alike (their SDKs share these types).

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::adapter::AdapterError;
use crate::retry::{Attempt, Failure, classify};

type Response = aws_sdk_sqs::config::http::HttpResponse;

fn attempt<E: ProvideErrorMetadata>(err: &SdkError<E, Response>) -> Attempt<'_> {
    match err {
        SdkError::ConstructionFailure(_) => Attempt::NotSent,
        SdkError::ServiceError(service) => Attempt::Answer {
            status: service.raw().status().as_u16(),
            code: service.err().code(),
        },
        // Time-outs, refused or broken connections, unreadable answers.
        _ => Attempt::NoAnswer,
    }
}

/// A short reason: the service's code and message when it answered (never its raw
/// answer, which the SDK's full display includes), else what went wrong on the way.
fn detail<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &str,
    err: &SdkError<E, Response>,
) -> String {
    match err {
        SdkError::ServiceError(answer) if answer.err().code().is_some() => format!(
            "{service}: {}: {} (HTTP {})",
            answer.err().code().unwrap_or_default(),
            answer.err().message().unwrap_or_default(),
            answer.raw().status().as_u16()
        ),
        _ => format!("{service}: {}", DisplayErrorContext(err)),
    }
}

/// Classifies an AWS SDK error for the retry policy; `service` prefixes the detail.
pub(crate) fn classify_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &str,
    err: &SdkError<E, Response>,
) -> Failure {
    classify(attempt(err), detail(service, err))
}

/// An AWS SDK error as an adapter's error: throttled, unavailable, not found, denied or
/// refused. `service` prefixes the detail.
pub(crate) fn adapter_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &str,
    err: &SdkError<E, Response>,
) -> AdapterError {
    let detail = detail(service, err);
    let (status, code) = match attempt(err) {
        Attempt::NotSent => return AdapterError::Refused(detail),
        Attempt::NoAnswer | Attempt::Entry { .. } => return AdapterError::Unavailable(detail),
        Attempt::Answer { status, code } => (status, code.unwrap_or("")),
    };
    kind_of(status, code, detail)
}

/// The kind of an error answer, from its HTTP status and error code.
pub(crate) fn kind_of(status: u16, code: &str, detail: String) -> AdapterError {
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
    } else if matches!(
        classify(
            Attempt::Answer {
                status,
                code: Some(code)
            },
            ""
        ),
        Failure::Transient(_)
    ) {
        AdapterError::Unavailable(detail)
    } else {
        AdapterError::Refused(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_told_apart_by_code_then_status() {
        let kind = |status, code: &str| match kind_of(status, code, String::new()) {
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
            (400, "ResourceNotFoundException", "not found"),
            (400, "AWS.SimpleQueueService.NonExistentQueue", "not found"),
            (404, "NoSuchKey", "not found"),
            (500, "InternalServerError", "unavailable"),
            (503, "ServiceUnavailable", "unavailable"),
            (400, "ValidationException", "refused"),
            (400, "ConditionalCheckFailedException", "refused"),
        ] {
            assert_eq!(kind(status, code), want, "{status} {code}");
        }
    }

    #[test]
    fn an_answer_is_reported_by_code_and_message_never_its_body() {
        use aws_sdk_s3::primitives::SdkBody;
        use aws_sdk_sqs::error::ErrorMetadata;
        use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;

        let err = GetQueueAttributesError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not allowed")
                .build(),
        );
        let raw = Response::new(
            403u16.try_into().unwrap(),
            SdkBody::from("<secret-body-text/>"),
        );
        let e = adapter_error("SQS", &SdkError::service_error(err, raw));
        assert_eq!(
            e,
            AdapterError::Denied("SQS: AccessDenied: not allowed (HTTP 403)".into())
        );
    }
}
