//! `--stack NAME`: what `twenty-admin` needs, read from the deployed stack's outputs
//! (`WebhookUrl`, `WebhookSecretParameterName` or `WebhookSecretId`,
//! `SecretRefreshSeconds`, `WebhookUrlTokenRequired`, the queues and the table). The token
//! itself is never an output: it comes from `TWENTY_WEBHOOK_URL_TOKEN`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::secrets::Location;

/// The stack as `twenty-admin` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deployment {
    /// The stack's name.
    pub name: String,
    /// The Function URL, with `?token=` when the stack requires one.
    pub webhook_url: String,
    /// Where ingest reads its secret; None for a stack given the value itself (or none).
    pub secret: Option<Location>,
    /// How often ingest re-reads the secret.
    pub refresh: Option<Duration>,
    pub queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub table: Option<String>,
    /// The stack's alarms are named `<stack>-<logical id>-<suffix>`.
    pub alarm_prefix: String,
}

impl Deployment {
    /// From the outputs of stack `name`; `token` is `TWENTY_WEBHOOK_URL_TOKEN`.
    pub(crate) fn from_outputs(
        name: &str,
        outputs: &BTreeMap<String, String>,
        token: Option<&str>,
    ) -> Result<Self, String> {
        let output = |key: &str| outputs.get(key).filter(|v| !v.is_empty()).cloned();
        let url = output("WebhookUrl").ok_or(format!(
            "stack {name:?} has no WebhookUrl output: is it a twenty-webhook stack, deployed with this version's template?"
        ))?;
        let webhook_url = match (output("WebhookUrlTokenRequired").as_deref(), token) {
            (Some("true"), Some(token)) => {
                let mut url = reqwest::Url::parse(&url)
                    .map_err(|e| format!("stack {name:?}: WebhookUrl {url:?}: {e}"))?;
                url.query_pairs_mut().append_pair("token", token);
                url.to_string()
            }
            (Some("true"), None) => {
                return Err(format!(
                    "stack {name:?} requires a URL token: set TWENTY_WEBHOOK_URL_TOKEN to its WebhookUrlToken"
                ));
            }
            _ => url,
        };
        let secret = match (
            output("WebhookSecretParameterName"),
            output("WebhookSecretId"),
        ) {
            (Some(p), _) => Some(Location::Parameter(p)),
            (None, Some(id)) => Some(Location::SecretId(id)),
            (None, None) => None,
        };
        Ok(Self {
            name: name.to_owned(),
            webhook_url,
            secret,
            refresh: output("SecretRefreshSeconds")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs),
            queue_url: output("QueueUrl"),
            dead_letter_queue_url: output("DeadLetterQueueUrl"),
            table: output("IdempotencyTableName"),
            alarm_prefix: format!("{name}-"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_stack_gives_the_url_the_secret_and_the_refresh() {
        let out = outputs(&[
            ("WebhookUrl", "https://abc.lambda-url.eu-west-1.on.aws/"),
            ("WebhookSecretParameterName", "/twenty/secret"),
            ("SecretRefreshSeconds", "60"),
            ("WebhookUrlTokenRequired", "false"),
            ("QueueUrl", "https://sqs/q"),
        ]);
        let d = Deployment::from_outputs("prod", &out, Some("ignored-token-0000")).unwrap();
        assert_eq!(d.webhook_url, "https://abc.lambda-url.eu-west-1.on.aws/");
        assert_eq!(d.secret, Some(Location::Parameter("/twenty/secret".into())));
        assert_eq!(d.refresh, Some(Duration::from_secs(60)));
        assert_eq!(d.queue_url.as_deref(), Some("https://sqs/q"));
        assert_eq!(d.table, None);
        assert_eq!(d.alarm_prefix, "prod-");
    }

    #[test]
    fn a_token_is_added_when_the_stack_requires_one_and_asked_for_when_missing() {
        let out = outputs(&[
            ("WebhookUrl", "https://abc.lambda-url.eu-west-1.on.aws/"),
            (
                "WebhookSecretId",
                "arn:aws:secretsmanager:eu-west-1:1:secret:s",
            ),
            ("WebhookUrlTokenRequired", "true"),
        ]);
        let d = Deployment::from_outputs("prod", &out, Some("tok_0123456789abcdef")).unwrap();
        assert_eq!(
            d.webhook_url,
            "https://abc.lambda-url.eu-west-1.on.aws/?token=tok_0123456789abcdef"
        );
        assert!(matches!(d.secret, Some(Location::SecretId(_))));
        let e = Deployment::from_outputs("prod", &out, None).unwrap_err();
        assert!(e.contains("TWENTY_WEBHOOK_URL_TOKEN"), "{e}");
        let e = Deployment::from_outputs("other", &outputs(&[]), None).unwrap_err();
        assert!(e.contains("no WebhookUrl output"), "{e}");
    }
}
