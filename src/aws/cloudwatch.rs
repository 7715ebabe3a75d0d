//! CloudWatch, for `twenty-admin status`: the alarms in ALARM, and a metric's latest
//! maximum (SQS's age of the oldest message, which no queue attribute gives).

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, StateValue, Statistic};

use super::lazy::{Source, one_client};
use super::sdk_error::adapter_error;
use crate::adapter::AdapterError;

pub(crate) struct CloudWatch {
    client: Source<Client>,
}

one_client!(CloudWatch, Client);

/// An alarm in ALARM: its name, since when (RFC 3339) and CloudWatch's reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Firing {
    pub name: String,
    pub since: Option<String>,
    pub reason: String,
}

/// DescribeAlarms pages this many alarms at most; a stack has about fifteen.
const PAGES: usize = 10;

impl CloudWatch {
    /// The metric alarms whose names start with `prefix` that are in ALARM now.
    pub(crate) async fn firing(&self, prefix: &str) -> Result<Vec<Firing>, AdapterError> {
        let client = self.client.get().await;
        let mut firing = Vec::new();
        let mut token = None;
        for _ in 0..PAGES {
            let out = client
                .describe_alarms()
                .alarm_name_prefix(prefix)
                .state_value(StateValue::Alarm)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| adapter_error("CloudWatch", &e))?;
            firing.extend(out.metric_alarms().iter().map(|a| Firing {
                name: a.alarm_name().unwrap_or_default().to_owned(),
                since: a.state_updated_timestamp().and_then(|t| {
                    t.fmt(aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime)
                        .ok()
                }),
                reason: a.state_reason().unwrap_or_default().to_owned(),
            }));
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(firing)
    }

    /// The largest value of `metric` over the last `window`, in one-minute periods; None
    /// when the metric has no data there.
    pub(crate) async fn latest_maximum(
        &self,
        namespace: &str,
        metric: &str,
        dimension: (&str, &str),
        window: Duration,
    ) -> Result<Option<f64>, AdapterError> {
        // A minute ahead: the current minute's period is whole, however the service
        // rounds the end.
        let end = SystemTime::now() + Duration::from_secs(60);
        let out = self
            .client
            .get()
            .await
            .get_metric_statistics()
            .namespace(namespace)
            .metric_name(metric)
            .dimensions(
                Dimension::builder()
                    .name(dimension.0)
                    .value(dimension.1)
                    .build(),
            )
            .start_time(DateTime::from(end - window - Duration::from_secs(60)))
            .end_time(DateTime::from(end))
            .period(60)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .map_err(|e| adapter_error("CloudWatch", &e))?;
        // The newest period's value: the age now, not the worst of the window.
        Ok(out
            .datapoints()
            .iter()
            .filter_map(|d| Some((d.timestamp()?.secs(), d.maximum()?)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, value)| value))
    }
}
