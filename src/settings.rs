//! What a bad setting is: the functions stop at start-up with a message that names the
//! variable, never its value (it may be a secret).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}
