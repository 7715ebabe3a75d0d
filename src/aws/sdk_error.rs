//! AWS SDK errors, reduced to what the retry policy needs.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

use crate::retry::{Attempt, Failure, classify};

/// Classifies an AWS SDK error for the retry policy; `service` prefixes the detail. Serves
/// SQS and S3 alike (their SDKs share these types).
pub(crate) fn classify_sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    service: &str,
    err: &SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> Failure {
    let detail = format!(
        "{service}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(err)
    );
    let attempt = match err {
        SdkError::ConstructionFailure(_) => Attempt::NotSent,
        SdkError::ServiceError(service) => Attempt::Answer {
            status: service.raw().status().as_u16(),
            code: service.err().code(),
        },
        // Time-outs, refused or broken connections, unreadable answers.
        _ => Attempt::NoAnswer,
    };
    classify(attempt, detail)
}
