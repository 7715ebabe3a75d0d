//! The reconciler's settings, read once at start-up. A bad one stops it with a message that
//! names the variable, never its value.

use std::time::Duration;

pub(crate) use crate::settings::QUEUE_URL;
use crate::settings::{ConfigError, invalid, queue_url, whole_number};
pub(crate) use crate::twenty_api::settings::ApiSettings;
pub(crate) const OBJECTS: &str = "RECONCILE_OBJECTS";
pub(crate) const TABLE: &str = "IDEMPOTENCY_TABLE";
pub(crate) const OVERLAP: &str = "RECONCILE_OVERLAP_SECS";
pub(crate) const SETTLE: &str = "RECONCILE_SETTLE_SECS";
pub(crate) const LOOKBACK: &str = "RECONCILE_FIRST_LOOKBACK_SECS";
pub(crate) const WORKSPACE: &str = "TWENTY_WORKSPACE_ID";
pub(crate) const PAYLOAD_BUCKET: &str = "PAYLOAD_BUCKET";
pub(crate) const TIME_LIMIT: &str = "RECONCILE_TIME_LIMIT_SECS";
/// A run with no limit of its own (a backfill from the command) may take this long.
const NO_LIMIT: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// How to reach Twenty's REST API.
    pub api: ApiSettings,
    pub queue_url: String,
    pub fifo: bool,
    /// Plural object names; empty: every active object that is not a system one.
    pub objects: Vec<String>,
    /// The idempotency table: seen changes are skipped, and the watermark is kept there.
    pub table: Option<String>,
    /// Re-read before the watermark (clock skew, long transactions).
    pub overlap: Duration,
    /// How far short of now a window stops, so that changes still being written are left
    /// for the next run.
    pub settle: Duration,
    /// The first scheduled run, with no watermark yet, looks back this far.
    pub first_lookback: Duration,
    pub workspace_id: Option<String>,
    pub payload_bucket: Option<String>,
    /// How long one run may take: a backfill has no limit by default, the scheduled
    /// function stops before Lambda's deadline whatever this says.
    pub time_limit: Duration,
}

impl ReconcileConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let api = ApiSettings::from_lookup(&lookup)?;
        let (queue_url, fifo) = queue_url(QUEUE_URL, get(QUEUE_URL))?;
        let objects = match get(OBJECTS) {
            None => Vec::new(),
            Some(list) => parse_objects(&list).map_err(|why| invalid(OBJECTS, why))?,
        };
        let secs = |name: &'static str, default: u64, max: u64| {
            whole_number(name, get(name), default, 0..=max, "seconds").map(Duration::from_secs)
        };
        Ok(Self {
            api,
            fifo,
            queue_url,
            objects,
            table: get(TABLE),
            overlap: secs(OVERLAP, 300, 86_400)?,
            settle: secs(SETTLE, 60, 3_600)?,
            first_lookback: secs(LOOKBACK, 3_600, 90 * 86_400)?,
            workspace_id: get(WORKSPACE),
            payload_bucket: get(PAYLOAD_BUCKET),
            time_limit: Duration::from_secs(whole_number(
                TIME_LIMIT,
                get(TIME_LIMIT),
                NO_LIMIT.as_secs(),
                1..=NO_LIMIT.as_secs(),
                "seconds",
            )?),
        })
    }
}

/// A comma-separated list of plural object names (`people,companies`).
pub(crate) fn parse_objects(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .map(|name| {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "{name:?} is not an object's plural name (letters and digits)"
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twenty_api::settings::{API_KEY, API_URL, RATE};

    fn config(pairs: &[(&str, &str)]) -> Result<ReconcileConfig, ConfigError> {
        ReconcileConfig::from_lookup(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    const BASE: [(&str, &str); 3] = [
        (API_URL, "https://api.twenty.com/"),
        (API_KEY, "k"),
        (QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/1/q.fifo"),
    ];

    #[test]
    fn defaults_and_refusals_name_the_variable() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.api.url, "https://api.twenty.com");
        assert!(c.fifo && c.objects.is_empty() && c.table.is_none());
        assert_eq!(c.overlap, Duration::from_secs(300));
        assert_eq!(c.api.requests_per_minute, 90);
        assert!(!format!("{c:?}").contains("\"k\""));
        let bad = [
            (API_URL, "api.twenty.com"),
            (OBJECTS, "people,,companies"),
            (OBJECTS, "people;drop"),
            (RATE, "0"),
            (OVERLAP, "-1"),
            (TIME_LIMIT, "0"),
        ];
        crate::settings::assert_each_refused(&BASE, &bad, config);
        assert_eq!(
            config(&BASE[..2]).unwrap_err(),
            ConfigError::Missing(QUEUE_URL)
        );
        let c = config(&[
            BASE[0],
            BASE[2],
            ("TWENTY_API_KEY_PARAMETER", "/twenty/api-key"),
        ])
        .unwrap();
        assert!(matches!(c.api.key, crate::secrets::SecretSource::Stored(_)));
        assert_eq!(
            parse_objects(" people , companies").unwrap(),
            ["people", "companies"]
        );
    }
}
