//! Every way a request can fail, and the one place that maps each to an HTTP status.

use thiserror::Error;

use crate::envelope::EnvelopeError;
use crate::twenty::event::EventError;
use crate::twenty::signature::SignatureError;

/// Display texts are safe to log and to send back: they never hold the body or a secret.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IngestError {
    #[error("only POST is accepted")]
    MethodNotAllowed,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("body is {size} bytes, over the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("header {0} appears more than once")]
    RepeatedHeader(&'static str),
    #[error("URL token {0}")]
    UrlToken(&'static str),
    #[error("the webhook secret could not be read")]
    SecretUnavailable,
    #[error("missing header {0}")]
    MissingSignature(&'static str),
    #[error("delivery is signed but no secret is configured")]
    NoSecretConfigured,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("the queue did not accept the event")]
    QueueUnavailable,
}

impl IngestError {
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed => 405,
            Self::UnsupportedMediaType => 415,
            Self::BodyTooLarge { .. }
            | Self::Envelope(
                EnvelopeError::TooLarge { .. }
                | EnvelopeError::TooManyMessages { .. }
                | EnvelopeError::FanOutTooLarge { .. },
            ) => 413,
            Self::UrlToken(_)
            | Self::MissingSignature(_)
            | Self::NoSecretConfigured
            | Self::Signature(_) => 401,
            Self::RepeatedHeader(_)
            | Self::NotUtf8
            | Self::Event(_)
            | Self::Envelope(EnvelopeError::UnsendableText) => 400,
            Self::QueueUnavailable | Self::SecretUnavailable => 503,
            Self::Envelope(EnvelopeError::Unwritable) => 500,
        }
    }

    /// A stable, machine-readable name for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge { .. } | Self::Envelope(EnvelopeError::TooLarge { .. }) => {
                "payload_too_large"
            }
            Self::RepeatedHeader(_) => "repeated_header",
            Self::UrlToken(_) => "invalid_url_token",
            Self::SecretUnavailable => "secret_unavailable",
            Self::MissingSignature(_) => "missing_signature",
            Self::NoSecretConfigured => "no_secret_configured",
            Self::Signature(SignatureError::Stale(_) | SignatureError::Future(_)) => {
                "timestamp_out_of_window"
            }
            Self::Signature(_) => "invalid_signature",
            Self::NotUtf8 | Self::Event(EventError::MalformedJson(_)) => "malformed_json",
            Self::Event(EventError::NotTwenty(_)) => "not_a_twenty_event",
            Self::Envelope(
                EnvelopeError::TooManyMessages { .. } | EnvelopeError::FanOutTooLarge { .. },
            ) => "batch_too_large",
            Self::Envelope(EnvelopeError::UnsendableText) => "unsupported_characters",
            Self::QueueUnavailable => "queue_unavailable",
            Self::Envelope(EnvelopeError::Unwritable) => "internal_error",
        }
    }
}
