//! AWS SDK errors, reduced to what callers decide on: the adapters' `AdapterError`. One
//! reading of an SDK error for SQS, S3 and DynamoDB alike (their SDKs share these types).

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::adapter::{AdapterError, Attempt, classify};

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

/// An AWS SDK error as an adapter's error: throttled, unavailable, not found, denied or
/// refused. `service` prefixes the detail.
pub(crate) fn adapter_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &str,
    err: &SdkError<E, Response>,
) -> AdapterError {
    classify(attempt(err), detail(service, err))
}

#[cfg(test)]
mod tests {
    use super::*;

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
