//! The worker's settings, read once at start-up. A bad one stops it with a message naming
//! the variable and, for `FORWARD_RULES`, the rule; never a value.

use crate::secrets::{Refresh, SecretSetting, SecretSource, StoredSecret};
use crate::settings::{ConfigError, invalid, whole_number};

use std::time::Duration;

use super::guard::BreakerSettings;
use super::idempotency::Mode;
use super::retry_policy::RetryPolicy;
use super::rules::{Rule, parse_rules};

pub(crate) const FORWARD_RULES: &str = "FORWARD_RULES";
pub(crate) const FORWARD_RULES_PARAMETER: &str = "FORWARD_RULES_PARAMETER";
pub(crate) const FORWARD_RULES_SECRET_ID: &str = "FORWARD_RULES_SECRET_ID";
const RULES_SETTING: SecretSetting = SecretSetting::named(
    FORWARD_RULES,
    FORWARD_RULES_PARAMETER,
    FORWARD_RULES_SECRET_ID,
);
pub(crate) const CONCURRENCY: &str = "WORKER_CONCURRENCY";
pub(crate) const IDEMPOTENCY_TABLE: &str = "IDEMPOTENCY_TABLE";
pub(crate) use crate::settings::QUEUE_URL;
pub(crate) const IN_PROGRESS: &str = "IDEMPOTENCY_IN_PROGRESS_SECS";
pub(crate) const IDEMPOTENCY_MODE: &str = "IDEMPOTENCY_MODE";
pub(crate) const DEAD_LETTER_QUEUE_URL: &str = "DEAD_LETTER_QUEUE_URL";
pub(crate) const RETRY_HORIZON: &str = "RETRY_HORIZON_SECS";
pub(crate) const BACKOFF_BASE: &str = "BACKOFF_BASE_SECS";
pub(crate) const BACKOFF_CAP: &str = "BACKOFF_CAP_SECS";
pub(crate) const BREAKER_FAILURES: &str = "BREAKER_FAILURES";
pub(crate) const BREAKER_OPEN: &str = "BREAKER_OPEN_SECS";
pub(crate) const DEADLINE_MARGIN: &str = "DEADLINE_MARGIN_MS";
/// The queue's redrive policy's `maxReceiveCount` (the template sets both).
pub(crate) const MAX_RECEIVE_COUNT: &str = "MAX_RECEIVE_COUNT";

const DEFAULT_CONCURRENCY: u64 = 10;
const MAX_CONCURRENCY: u64 = 100;
/// Above the template's worker timeout (60 s), so a live worker's mark never runs out.
const DEFAULT_IN_PROGRESS_SECS: u64 = 120;
/// SQS keeps a message 14 days at most: the horizon must leave time to redrive.
const MAX_HORIZON_SECS: u64 = 7 * 86_400;
/// SQS holds a message invisible 12 hours at most.
const MAX_DELAY_SECS: u64 = 43_200;
/// What an invocation keeps back from its deadline for reporting: visibility changes,
/// dead-letter copies, the answer.
const DEFAULT_DEADLINE_MARGIN_MS: u64 = 5_000;

#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    /// The rules given in the environment (checked at start-up).
    pub rules: Vec<Rule>,
    /// Or the rules kept in a store (they hold destination secrets), read on first need.
    pub stored_rules: Option<StoredSecret>,
    pub secret_refresh: Refresh,
    /// Messages (standard queue) or message groups (FIFO) handled at once.
    pub concurrency: usize,
    /// DynamoDB table for idempotency; without one, delivery is at least once.
    pub idempotency_table: Option<String>,
    /// How long a worker's in-progress mark holds (keep it above the function's timeout).
    pub in_progress: std::time::Duration,
    /// `IDEMPOTENCY_MODE`: `strict` or `lean` for every handler; None (`auto`, the
    /// default) lets each rule's target say (`TargetSpec::acts_once_per_id`), and your own
    /// handlers choose in their `Selection` (`Strict` unless they say).
    pub mode: Option<Mode>,
    /// The queue's URL, for changing a failed message's visibility; without one it is
    /// derived from the event source ARN.
    pub queue_url: Option<String>,
    /// Where the worker moves messages that failed for good; without it, they are reported
    /// failed and the queue's redrive policy moves them.
    pub dead_letter_queue_url: Option<String>,
    pub retry: RetryPolicy,
    pub breaker: BreakerSettings,
    pub deadline_margin: Duration,
}

impl WorkerConfig {
    /// `rules_required`: whether `FORWARD_RULES` must be set (it must for `twenty-worker`,
    /// which has no other handlers).
    pub(crate) fn from_env(rules_required: bool) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok(), rules_required)
    }

    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        rules_required: bool,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let (rules, stored_rules) = match RULES_SETTING.source(&lookup)? {
            Some(SecretSource::Value(text)) => (
                parse_rules(&text).map_err(|e| invalid(FORWARD_RULES, e.to_string()))?,
                None,
            ),
            Some(SecretSource::Stored(stored)) => (Vec::new(), Some(stored)),
            None if rules_required => return Err(ConfigError::Missing(FORWARD_RULES)),
            None => (Vec::new(), None),
        };
        let concurrency = whole_number(
            CONCURRENCY,
            get(CONCURRENCY),
            DEFAULT_CONCURRENCY,
            1..=MAX_CONCURRENCY,
            "messages (or groups) at a time",
        )?;
        let in_progress = whole_number(
            IN_PROGRESS,
            get(IN_PROGRESS),
            DEFAULT_IN_PROGRESS_SECS,
            1..=86_400,
            "seconds",
        )?;
        let mode = match get(IDEMPOTENCY_MODE).as_deref().map(str::trim) {
            None | Some("" | "auto") => None,
            Some("strict") => Some(Mode::Strict),
            Some("lean") => Some(Mode::Lean),
            Some(_) => {
                return Err(invalid(
                    IDEMPOTENCY_MODE,
                    "must be `auto`, `strict` or `lean`",
                ));
            }
        };
        let seconds = |name: &'static str, default: u64, max: u64| {
            whole_number(name, get(name), default, 1..=max, "seconds").map(Duration::from_secs)
        };
        let retry = RetryPolicy {
            horizon: seconds(RETRY_HORIZON, 86_400, MAX_HORIZON_SECS)?,
            base: seconds(BACKOFF_BASE, 5, MAX_DELAY_SECS)?,
            cap: seconds(BACKOFF_CAP, 900, MAX_DELAY_SECS)?,
            receive_limit: whole_number(
                MAX_RECEIVE_COUNT,
                get(MAX_RECEIVE_COUNT),
                1000,
                3..=1000,
                "receives (the queue's maxReceiveCount)",
            )? as u32,
        };
        if retry.cap < retry.base {
            return Err(invalid(
                BACKOFF_CAP,
                format!("must be at least {BACKOFF_BASE}"),
            ));
        }
        let breaker = BreakerSettings {
            failures: whole_number(
                BREAKER_FAILURES,
                get(BREAKER_FAILURES),
                5,
                1..=1_000,
                "failures",
            )? as u32,
            open: seconds(BREAKER_OPEN, 30, MAX_DELAY_SECS)?,
            cap: retry.cap,
            probe_wait: retry.base,
        };
        let deadline_margin = Duration::from_millis(whole_number(
            DEADLINE_MARGIN,
            get(DEADLINE_MARGIN),
            DEFAULT_DEADLINE_MARGIN_MS,
            0..=60_000,
            "milliseconds",
        )?);
        let optional_queue = |name| {
            get(name)
                .map(|url| crate::settings::queue_url(name, Some(url)).map(|(u, _)| u))
                .transpose()
        };
        Ok(Self {
            dead_letter_queue_url: optional_queue(DEAD_LETTER_QUEUE_URL)?,
            retry,
            breaker,
            deadline_margin,
            rules,
            stored_rules,
            secret_refresh: Refresh::from_lookup(&lookup)?,
            concurrency: concurrency as usize,
            in_progress: std::time::Duration::from_secs(in_progress),
            mode,
            idempotency_table: get(IDEMPOTENCY_TABLE),
            queue_url: optional_queue(QUEUE_URL)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)], required: bool) -> Result<WorkerConfig, ConfigError> {
        WorkerConfig::from_lookup(
            |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            },
            required,
        )
    }

    #[test]
    fn defaults_and_bad_values_named() {
        let c = config(&[], false).unwrap();
        assert_eq!(c.concurrency, 10);
        assert_eq!(c.in_progress, std::time::Duration::from_secs(120));
        assert!(c.rules.is_empty() && c.idempotency_table.is_none());
        assert_eq!(c.mode, None, "auto: each target's own");
        for (value, mode) in [
            ("auto", None),
            ("strict", Some(Mode::Strict)),
            (" lean", Some(Mode::Lean)),
        ] {
            assert_eq!(
                config(&[(IDEMPOTENCY_MODE, value)], false).unwrap().mode,
                mode
            );
        }
        assert_eq!(
            config(&[], true).unwrap_err(),
            ConfigError::Missing(FORWARD_RULES)
        );
        for (name, value) in [
            (CONCURRENCY, "0"),
            (CONCURRENCY, "101"),
            (CONCURRENCY, "ten"),
            (IN_PROGRESS, "0"),
            (IN_PROGRESS, "86401"),
            (FORWARD_RULES, "{}"),
            (RETRY_HORIZON, "0"),
            (RETRY_HORIZON, "604801"),
            (BACKOFF_BASE, "0"),
            (BACKOFF_CAP, "43201"),
            (BREAKER_FAILURES, "0"),
            (BREAKER_OPEN, "x"),
            (DEADLINE_MARGIN, "60001"),
            (DEAD_LETTER_QUEUE_URL, "dlq"),
            (IDEMPOTENCY_MODE, "fast"),
        ] {
            match config(&[(name, value)], false) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{value}"),
                other => panic!("{name}={value} gave {other:?}"),
            }
        }
        let c = config(&[(FORWARD_RULES_PARAMETER, "/twenty/rules")], true).unwrap();
        assert!(c.rules.is_empty() && c.stored_rules.is_some());
        assert!(matches!(
            config(
                &[(FORWARD_RULES, "[]"), (FORWARD_RULES_SECRET_ID, "r")],
                true
            ),
            Err(ConfigError::Invalid {
                name: FORWARD_RULES,
                ..
            })
        ));
        assert_eq!(c.retry, RetryPolicy::default());
        assert_eq!(c.breaker, BreakerSettings::default());
        assert_eq!(c.deadline_margin, Duration::from_secs(5));
        assert!(matches!(
            config(&[(BACKOFF_BASE, "60"), (BACKOFF_CAP, "30")], false),
            Err(ConfigError::Invalid {
                name: BACKOFF_CAP,
                ..
            })
        ));
        let c = config(&[(CONCURRENCY, "100"), (IN_PROGRESS, "86400")], false).unwrap();
        assert_eq!((c.concurrency, c.in_progress.as_secs()), (100, 86_400));
    }
}
