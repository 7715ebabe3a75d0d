//! Settings read once at start-up from the environment.
//!
//! `Config::from_lookup` takes any key lookup so that it stays a plain function; `main` hands
//! it `std::env::var`. A bad setting stops the function at init with a message that names the
//! variable, never its value (it may be a secret).

use std::time::Duration;

pub use crate::ingest::url_token::{URL_TOKEN, UrlToken};
use crate::secrets::SecretSetting;
pub use crate::secrets::{Refresh, SecretSource};
pub use crate::settings::ConfigError;
use crate::settings::{invalid, queue_url, whole_number};
pub use crate::twenty::signature::Secret;

/// When the function answers Twenty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Answer 200 as soon as the delivery is verified; queue after the response.
    Immediate,
    /// Answer only once SQS has accepted every message; 503 when it has not.
    AfterEnqueue,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: String,
    /// True when `queue_url` names a FIFO queue (its name ends in `.fifo`).
    pub fifo: bool,
    /// Where the secrets that may have signed a delivery come from (a comma-separated
    /// list: rotation, several webhooks); `None` only when unsigned deliveries are allowed.
    pub secret: Option<SecretSource>,
    /// How a stored secret is kept fresh.
    pub secret_refresh: Refresh,
    /// The token the Function URL must carry, when one is set.
    pub url_token: Option<UrlToken>,
    /// How far a signed timestamp may lie from now, either way.
    pub tolerance: Duration,
    pub ack_mode: AckMode,
    /// Accept deliveries that carry no signature headers at all.
    pub allow_unsigned: bool,
    /// The longest a send keeps retrying before the event goes to the fallback log; the
    /// function's remaining time and, in after-enqueue mode, Twenty's timeout cut it shorter.
    pub retry_budget: Duration,
    /// S3 bucket for envelopes too large for SQS; without one they are refused with 413.
    pub payload_bucket: Option<String>,
}

pub use crate::settings::QUEUE_URL;
pub const SECRET: &str = "TWENTY_WEBHOOK_SECRET";
pub const SECRET_PARAMETER: &str = "TWENTY_WEBHOOK_SECRET_PARAMETER";
pub const SECRET_SECRET_ID: &str = "TWENTY_WEBHOOK_SECRET_SECRET_ID";
const SECRET_SETTING: SecretSetting =
    SecretSetting::named(SECRET, SECRET_PARAMETER, SECRET_SECRET_ID);
pub const TOLERANCE: &str = "TWENTY_WEBHOOK_TOLERANCE_SECS";
pub const ACK_MODE: &str = "ACK_MODE";
pub const ALLOW_UNSIGNED: &str = "TWENTY_WEBHOOK_ALLOW_UNSIGNED";
pub const RETRY_BUDGET: &str = "TWENTY_WEBHOOK_RETRY_BUDGET_MS";
pub const PAYLOAD_BUCKET: &str = "PAYLOAD_BUCKET";

const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// A day: anything wider is no replay protection at all.
const MAX_TOLERANCE_SECS: u64 = 86_400;
const DEFAULT_RETRY_BUDGET_MS: u64 = 20_000;
/// Lambda's longest timeout.
const MAX_RETRY_BUDGET_MS: u64 = 900_000;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup`; an empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        let (queue_url, fifo) = queue_url(QUEUE_URL, get(QUEUE_URL))?;

        let allow_unsigned = match get(ALLOW_UNSIGNED).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid(ALLOW_UNSIGNED, "must be `true` or `false`")),
        };

        let secret = match SECRET_SETTING.source(&lookup)? {
            Some(SecretSource::Value(list)) => {
                parse_secrets(&list).map_err(|why| invalid(SECRET, why))?;
                Some(SecretSource::Value(list))
            }
            Some(stored) => Some(stored),
            None if allow_unsigned => None,
            None => return Err(ConfigError::Missing(SECRET)),
        };
        let secret_refresh = Refresh::from_lookup(&lookup)?;
        let url_token = get(URL_TOKEN).as_deref().map(UrlToken::parse).transpose()?;

        let tolerance_secs = whole_number(
            TOLERANCE,
            get(TOLERANCE),
            DEFAULT_TOLERANCE_SECS,
            1..=MAX_TOLERANCE_SECS,
            "seconds",
        )?;
        let retry_budget_ms = whole_number(
            RETRY_BUDGET,
            get(RETRY_BUDGET),
            DEFAULT_RETRY_BUDGET_MS,
            100..=MAX_RETRY_BUDGET_MS,
            "milliseconds",
        )?;

        let payload_bucket = get(PAYLOAD_BUCKET);
        if payload_bucket
            .as_deref()
            .is_some_and(|b| !is_bucket_name(b))
        {
            return Err(invalid(PAYLOAD_BUCKET, "must be an S3 bucket name"));
        }

        let ack_mode = match get(ACK_MODE).as_deref() {
            None | Some("immediate") => AckMode::Immediate,
            Some("after-enqueue") => AckMode::AfterEnqueue,
            Some(_) => return Err(invalid(ACK_MODE, "must be `immediate` or `after-enqueue`")),
        };

        Ok(Self {
            queue_url,
            fifo,
            secret,
            secret_refresh,
            url_token,
            tolerance: Duration::from_secs(tolerance_secs),
            ack_mode,
            allow_unsigned,
            retry_budget: Duration::from_millis(retry_budget_ms),
            payload_bucket,
        })
    }
}

/// S3's naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit.
fn is_bucket_name(name: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
}

/// Splits the comma-separated list, from the environment or a store. Entries are taken
/// byte for byte (a secret typed in Twenty may hold any character), so stray blanks are
/// refused rather than silently kept. The reason never holds an entry.
pub fn parse_secrets(list: &str) -> Result<Vec<Secret>, String> {
    list.split(',')
        .enumerate()
        .map(|(i, s)| {
            if s.is_empty() {
                Err(format!("entry {} is empty", i + 1))
            } else if s.trim() != s {
                Err(format!("entry {} starts or ends with white space", i + 1))
            } else {
                Ok(Secret::new(s))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const URL: &str = "http://127.0.0.1:5000/123456789012/events";

    #[test]
    fn defaults() {
        let c = config(&[(QUEUE_URL, URL), (SECRET, "s3cret")]).unwrap();
        assert!(!c.fifo);
        assert_eq!(c.secret, Some(SecretSource::Value("s3cret".into())));
        assert_eq!(c.secret_refresh, Refresh::default());
        assert_eq!(c.url_token, None);
        assert_eq!(c.tolerance, Duration::from_secs(300));
        assert_eq!(c.ack_mode, AckMode::Immediate);
        assert!(!c.allow_unsigned);
        assert_eq!(c.retry_budget, Duration::from_secs(20));
        assert_eq!(c.payload_bucket, None);
    }

    #[test]
    fn every_setting() {
        let c = config(&[
            (
                QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/1/events.fifo",
            ),
            (SECRET, "a,b,c"),
            (TOLERANCE, "60"),
            (ACK_MODE, "after-enqueue"),
            (ALLOW_UNSIGNED, "true"),
            (RETRY_BUDGET, "1500"),
            (PAYLOAD_BUCKET, "my-payloads.eu"),
            (URL_TOKEN, "a-long-enough-token"),
            (crate::secrets::REFRESH_SECS, "60"),
            (crate::secrets::REREAD_FLOOR_SECS, "2"),
        ])
        .unwrap();
        assert!(c.url_token.is_some());
        assert_eq!(c.secret_refresh.every, Duration::from_secs(60));
        assert_eq!(c.secret_refresh.floor, Duration::from_secs(2));
        assert_eq!(c.payload_bucket.as_deref(), Some("my-payloads.eu"));
        assert_eq!(c.retry_budget, Duration::from_millis(1500));
        assert!(c.fifo);
        assert_eq!(parse_secrets("a,b,c").map(|s| s.len()), Ok(3));
        assert_eq!(c.tolerance, Duration::from_secs(60));
        assert_eq!(c.ack_mode, AckMode::AfterEnqueue);
        assert!(c.allow_unsigned);
    }

    #[test]
    fn secret_may_be_absent_only_when_unsigned_is_allowed() {
        assert_eq!(
            config(&[(QUEUE_URL, URL)]).unwrap_err(),
            ConfigError::Missing(SECRET)
        );
        let c = config(&[(QUEUE_URL, URL), (ALLOW_UNSIGNED, "true")]).unwrap();
        assert_eq!(c.secret, None);
        let c = config(&[(QUEUE_URL, URL), (SECRET_PARAMETER, "/twenty/secret")]).unwrap();
        assert!(matches!(c.secret, Some(SecretSource::Stored(_))));
        let two = config(&[(QUEUE_URL, URL), (SECRET, "s"), (SECRET_SECRET_ID, "id")]);
        assert!(matches!(
            two,
            Err(ConfigError::Invalid { name: SECRET, .. })
        ));
    }

    #[test]
    fn refuses_bad_values_and_names_the_variable() {
        let bad = [
            (QUEUE_URL, "sqs-queue"),
            (TOLERANCE, "0"),
            (TOLERANCE, "5m"),
            (TOLERANCE, "86401"),
            (ACK_MODE, "later"),
            (ALLOW_UNSIGNED, "yes"),
            (RETRY_BUDGET, "99"),
            (RETRY_BUDGET, "1s"),
            (PAYLOAD_BUCKET, "My_Bucket"),
            (PAYLOAD_BUCKET, "ab"),
            (PAYLOAD_BUCKET, "-abc"),
            (SECRET, "a,,b"),
            (SECRET, "a, b"),
            (URL_TOKEN, "short"),
            (crate::secrets::REFRESH_SECS, "0"),
        ];
        crate::settings::assert_each_refused(&[(QUEUE_URL, URL), (SECRET, "s")], &bad, config);
        assert_eq!(
            config(&[(SECRET, "s")]).unwrap_err(),
            ConfigError::Missing(QUEUE_URL)
        );
    }

    #[test]
    fn error_text_never_holds_the_secret() {
        let err = config(&[(QUEUE_URL, URL), (SECRET, "hunter2, ")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let c = config(&[(QUEUE_URL, URL), (SECRET, "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
