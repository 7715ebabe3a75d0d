//! The worker's settings, read once at start-up. A bad one stops it with a message naming
//! the variable and, for `FORWARD_RULES`, the rule; never a value.

use crate::settings::ConfigError;

use super::forward::{Rule, parse_rules};

pub const FORWARD_RULES: &str = "FORWARD_RULES";
pub const CONCURRENCY: &str = "WORKER_CONCURRENCY";
pub const IDEMPOTENCY_TABLE: &str = "IDEMPOTENCY_TABLE";
pub const QUEUE_URL: &str = "QUEUE_URL";
pub const IN_PROGRESS: &str = "IDEMPOTENCY_IN_PROGRESS_SECS";

const DEFAULT_CONCURRENCY: usize = 10;
const MAX_CONCURRENCY: usize = 100;
/// Above the template's worker timeout (60 s), so a live worker's mark never runs out.
const DEFAULT_IN_PROGRESS_SECS: u64 = 120;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub rules: Vec<Rule>,
    /// Messages (standard queue) or message groups (FIFO) handled at once.
    pub concurrency: usize,
    /// DynamoDB table for idempotency; without one, delivery is at least once.
    pub idempotency_table: Option<String>,
    /// How long a worker's in-progress mark holds (keep it above the function's timeout).
    pub in_progress: std::time::Duration,
    /// The queue's URL, for changing a failed message's visibility; without one it is
    /// derived from the event source ARN.
    pub queue_url: Option<String>,
}

impl WorkerConfig {
    /// `rules_required`: whether `FORWARD_RULES` must be set (it must for `twenty-worker`,
    /// which has no other handlers).
    pub fn from_env(rules_required: bool) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok(), rules_required)
    }

    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        rules_required: bool,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let rules = match get(FORWARD_RULES) {
            Some(text) => parse_rules(&text).map_err(|e| ConfigError::Invalid {
                name: FORWARD_RULES,
                why: e.to_string(),
            })?,
            None if rules_required => return Err(ConfigError::Missing(FORWARD_RULES)),
            None => Vec::new(),
        };
        let concurrency = match get(CONCURRENCY) {
            None => DEFAULT_CONCURRENCY,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    name: CONCURRENCY,
                    why: format!("must be a whole number from 1 to {MAX_CONCURRENCY}"),
                })?,
        };
        let in_progress = match get(IN_PROGRESS) {
            None => DEFAULT_IN_PROGRESS_SECS,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    name: IN_PROGRESS,
                    why: "must be whole seconds from 1 to 86400".into(),
                })?,
        };
        Ok(Self {
            rules,
            concurrency,
            in_progress: std::time::Duration::from_secs(in_progress),
            idempotency_table: get(IDEMPOTENCY_TABLE),
            queue_url: get(QUEUE_URL),
        })
    }
}
