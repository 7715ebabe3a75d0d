//! What a service adapter (a table, a queue, a store) says when a call fails, reduced to
//! what the caller decides on: wait and try again (throttled, unavailable), or give up
//! (not found, denied, refused). Plain code: the AWS adapters make these from SDK errors
//! (`aws::sdk_error`), and tests can make them by hand.

use std::future::Future;
use std::pin::Pin;

use thiserror::Error;

use crate::retry::Failure;

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

    /// As the retry policy reads it.
    pub fn failure(&self) -> Failure {
        if self.is_transient() {
            Failure::Transient(self.to_string())
        } else {
            Failure::Permanent(self.to_string())
        }
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
        assert!(matches!(transient[0].failure(), Failure::Transient(_)));
        assert_eq!(
            permanent[1].failure(),
            Failure::Permanent("access denied: d".into())
        );
    }
}
