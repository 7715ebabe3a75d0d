//! Webhooks, for `twenty-admin`: list, create and update them through Twenty's REST API.
//! Current servers answer at `/rest/metadata/webhooks` (and the deprecated alias
//! `/rest/webhooks`) in bare JSON; a server that answers in the record envelope (`data`)
//! keeps webhooks as records, from before they moved to Twenty's core, and is refused
//! rather than guessed at. Twenty returns the secret in clear on every read: `Webhook`
//! never prints it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::client::{ApiError, Call, TwentyApi};

/// Which path answered: the current one, or the deprecated alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookApi {
    Metadata,
    Deprecated,
}

impl WebhookApi {
    pub fn path(self) -> &'static str {
        match self {
            Self::Metadata => "/rest/metadata/webhooks",
            Self::Deprecated => "/rest/webhooks",
        }
    }
}

/// A webhook as Twenty keeps it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub target_url: String,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    secret: Option<String>,
}

impl Webhook {
    /// The secret Twenty signs this webhook's deliveries with.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref().filter(|s| !s.is_empty())
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("target_url", &self.target_url)
            .field("operations", &self.operations)
            .field("description", &self.description)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What to set on a webhook; what is `None` is left as it is.
#[derive(Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl std::fmt::Debug for WebhookChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookChange")
            .field("target_url", &self.target_url)
            .field("operations", &self.operations)
            .field("description", &self.description)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A URL as Twenty stores a webhook's (`new URL(u).toString()`: scheme and host lower-cased,
/// the default port dropped, a bare origin given `/`), trimmed. None when it is no http(s)
/// URL.
pub(crate) fn normalise_url(text: &str) -> Option<String> {
    let url = reqwest::Url::parse(text.trim()).ok()?;
    matches!(url.scheme(), "http" | "https")
        .then(|| url.host_str().is_some())
        .filter(|has_host| *has_host)
        .map(|_| url.to_string())
}

/// `text` with the value of its `token` query parameter hidden, for printing (an
/// unparseable URL is not printed at all).
pub(crate) fn redact_token(text: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(text.trim()) else {
        return "<not a URL>".into();
    };
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "token" {
                "…".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.set_query(None);
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    url.to_string()
}

/// Whether two webhook URLs point at the same place: compared normalised, and without their
/// `token` query parameter (the Function URL's token may be added or rotated).
pub(crate) fn same_target(a: &str, b: &str) -> bool {
    let without_token = |text: &str| {
        let mut url = reqwest::Url::parse(text.trim()).ok()?;
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "token")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        normalise_url(url.as_str())
    };
    matches!((without_token(a), without_token(b)), (Some(x), Some(y)) if x == y)
}

impl TwentyApi {
    /// The workspace's webhooks, and the path that answered (the current one, else the
    /// deprecated alias). `TooOld` for a server that keeps webhooks as records;
    /// `NoWebhookApi` when neither path exists.
    pub async fn webhooks(
        &self,
        deadline: Instant,
    ) -> Result<(WebhookApi, Vec<Webhook>), ApiError> {
        for api in [WebhookApi::Metadata, WebhookApi::Deprecated] {
            let text = match self
                .get(api.path(), &[], "the webhook list", deadline)
                .await
            {
                Ok(text) => text,
                Err(ApiError::Refused { status: 404, .. }) => continue,
                Err(e) => return Err(e),
            };
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| ApiError::NotTwenty(format!("the webhook list: {e}")))?;
            if value.get("data").is_some() {
                return Err(ApiError::TooOld);
            }
            let hooks = serde_json::from_value(value)
                .map_err(|e| ApiError::NotTwenty(format!("the webhook list: {e}")))?;
            return Ok((api, hooks));
        }
        Err(ApiError::NoWebhookApi)
    }

    /// The path that answers, and the webhook whose target is `url` (compared as
    /// `same_target` does), if there is one.
    pub async fn webhook_for(
        &self,
        url: &str,
        deadline: Instant,
    ) -> Result<(WebhookApi, Option<Webhook>), ApiError> {
        let (api, hooks) = self.webhooks(deadline).await?;
        let hook = hooks.into_iter().find(|h| same_target(&h.target_url, url));
        Ok((api, hook))
    }

    /// Creates a webhook (`change.target_url` is required).
    pub async fn create_webhook(
        &self,
        api: WebhookApi,
        change: &WebhookChange,
        deadline: Instant,
    ) -> Result<Webhook, ApiError> {
        let body = serde_json::to_value(change).unwrap_or_default();
        let call = Call {
            method: reqwest::Method::POST,
            path: api.path(),
            params: &[],
            body: Some(&body),
            what: "creating the webhook",
        };
        let (_, text) = self.call(call, deadline).await?;
        webhook_of(&text, "the created webhook")
    }

    /// Sets what `change` gives on webhook `id`.
    pub async fn update_webhook(
        &self,
        api: WebhookApi,
        id: &str,
        change: &WebhookChange,
        deadline: Instant,
    ) -> Result<Webhook, ApiError> {
        let body = serde_json::to_value(change).unwrap_or_default();
        let path = format!("{}/{id}", api.path());
        let call = Call {
            method: reqwest::Method::PATCH,
            path: &path,
            params: &[],
            body: Some(&body),
            what: "updating the webhook",
        };
        let (_, text) = self.call(call, deadline).await?;
        webhook_of(&text, "the updated webhook")
    }
}

fn webhook_of(text: &str, what: &str) -> Result<Webhook, ApiError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ApiError::NotTwenty(format!("{what}: {e}")))?;
    if value.get("data").is_some() {
        return Err(ApiError::TooOld);
    }
    serde_json::from_value(value).map_err(|e| ApiError::NotTwenty(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_as_twenty_stores_them_with_or_without_the_token() {
        assert_eq!(
            normalise_url(" HTTPS://Abc.Lambda-URL.eu-west-1.ON.aws:443 ").as_deref(),
            Some("https://abc.lambda-url.eu-west-1.on.aws/")
        );
        assert_eq!(normalise_url("ftp://x"), None);
        assert_eq!(normalise_url("not a url"), None);
        let stored = "https://abc.lambda-url.eu-west-1.on.aws/?token=old";
        assert!(same_target(
            stored,
            "https://ABC.lambda-url.eu-west-1.on.aws"
        ));
        assert!(same_target(
            stored,
            "https://abc.lambda-url.eu-west-1.on.aws/?token=new"
        ));
        assert!(!same_target(
            stored,
            "https://other.lambda-url.eu-west-1.on.aws/"
        ));
        assert!(!same_target(
            "https://abc.example/?a=1",
            "https://abc.example/?a=2"
        ));
    }

    #[test]
    fn a_token_is_hidden_for_printing_and_the_rest_kept() {
        assert_eq!(
            redact_token("https://x.on.aws/?a=1&token=s3cr3t-token-value"),
            "https://x.on.aws/?a=1&token=%E2%80%A6"
        );
        assert_eq!(redact_token("https://x.on.aws/"), "https://x.on.aws/");
        assert_eq!(redact_token("not a url ?token=s3cr3t"), "<not a URL>");
    }

    #[test]
    fn a_webhook_never_prints_its_secret() {
        let hook: Webhook = serde_json::from_str(
            r#"{"id":"w1","targetUrl":"https://x/","operations":["*.*"],"secret":"s3cr3t-value"}"#,
        )
        .unwrap();
        assert_eq!(hook.secret(), Some("s3cr3t-value"));
        assert!(!format!("{hook:?}").contains("s3cr3t"));
        let change = WebhookChange {
            secret: Some("s3cr3t-value".into()),
            ..Default::default()
        };
        assert!(!format!("{change:?}").contains("s3cr3t"));
    }
}
