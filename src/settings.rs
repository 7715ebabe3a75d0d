//! What a bad setting is: the functions stop at start-up with a message that names the
//! variable, never its value (it may be a secret). The helpers read settings the same way
//! for both functions.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// `value` as a whole number within `range`, or `default` when unset.
pub(crate) fn whole_number(
    name: &'static str,
    value: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            let (lo, hi) = (range.start(), range.end());
            invalid(name, format!("must be whole {unit} from {lo} to {hi}"))
        })
}

/// The event queue's URL, read by every function and command from this one variable.
pub const QUEUE_URL: &str = "QUEUE_URL";

/// `QUEUE_URL` (or `name`), required: an http(s) SQS queue URL, and whether it names a FIFO queue (its
/// name ends in `.fifo`).
pub(crate) fn queue_url(
    name: &'static str,
    value: Option<String>,
) -> Result<(String, bool), ConfigError> {
    let url = value.ok_or(ConfigError::Missing(name))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid(name, "must be an http(s) SQS queue URL"));
    }
    let fifo = url.trim_end_matches('/').ends_with(".fifo");
    Ok((url, fifo))
}

pub(crate) fn invalid(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        why: why.into(),
    }
}

/// For the settings' tests: each `(name, value)` of `bad`, put in place of `base`'s value
/// of that name, is refused by `config` as `Invalid`, naming that variable.
#[cfg(test)]
pub(crate) fn assert_each_refused<'a, T: std::fmt::Debug>(
    base: &[(&'a str, &'a str)],
    bad: &[(&'a str, &'a str)],
    config: impl Fn(&[(&'a str, &'a str)]) -> Result<T, ConfigError>,
) {
    for &(name, value) in bad {
        let mut pairs = base.to_vec();
        pairs.retain(|(k, _)| *k != name);
        pairs.push((name, value));
        match config(&pairs) {
            Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{value}"),
            other => panic!("{name}={value} gave {other:?}"),
        }
    }
}
