//! HTTP targets: the envelope POSTed to the rule's URL with the Standard Webhooks headers.
//! Any 2xx is success. A 4xx other than 408, 425 and 429 is final (the message goes to the
//! dead-letter queue); anything else, a redirect (never followed), a time-out or a
//! connection error is retried.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::OnceCell;

use super::{Delivery, Target};
use crate::worker::event::Event;
use crate::worker::router::HandlerError;
use crate::worker::rules::HttpTarget;

/// One HTTP client for every rule, made on the first forward (it reads the TLS roots).
#[derive(Clone, Default)]
pub struct HttpClient(Arc<OnceCell<reqwest::Client>>);

impl HttpClient {
    async fn get(&self) -> Result<&reqwest::Client, HandlerError> {
        self.0
            .get_or_try_init(|| async {
                crate::tls::install_provider();
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
            })
            .await
            .map_err(|e| HandlerError::new(format!("no HTTP client: {e}")))
    }
}

/// One rule's URL, with its key and headers.
pub struct Http {
    pub client: HttpClient,
    pub target: HttpTarget,
}

/// The envelope's bytes, shared by every rule's request rather than copied for each.
struct SharedBody(Arc<Event>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        self.0.body.as_bytes()
    }
}

impl Target for Http {
    fn deliver(&self, delivery: Delivery) -> super::DeliverFuture<'_> {
        Box::pin(self.post(delivery))
    }
}

impl Http {
    /// POSTs the event within `delivery.timeout`.
    async fn post(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Delivery {
            event,
            timeout,
            retry_all_errors,
            ..
        } = delivery;
        let origin = origin(&self.target.url);
        let client = self.client.get().await?;
        let timestamp = crate::clock::now().as_secs();
        let headers = headers(&self.target, &event.id, timestamp, event.body.as_bytes());
        let mut request = client
            .post(&self.target.url)
            .timeout(timeout)
            .body(bytes::Bytes::from_owner(SharedBody(event)));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => {
                let status = answer.status().as_u16();
                let reason = format!("{origin} answered {status}");
                if is_permanent(status, retry_all_errors) {
                    return Err(HandlerError::permanent(reason).status(status));
                }
                let failure = HandlerError::new(reason).status(status);
                let retry_after = answer
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| crate::retry::retry_after(v, SystemTime::now()));
                Err(match retry_after {
                    Some(delay) => failure.retry_after(delay),
                    None => failure,
                })
            }
            Err(e) if e.is_timeout() => Err(HandlerError::new(format!(
                "{origin}: no answer within {} ms",
                timeout.as_millis()
            ))),
            Err(e) if e.is_connect() => {
                Err(HandlerError::new(format!("{origin}: connection failed")))
            }
            Err(_) => Err(HandlerError::new(format!("{origin}: the request failed"))),
        }
    }
}

/// The Standard Webhooks headers for one forwarded event, then the rule's own.
pub fn headers(
    target: &HttpTarget,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut out = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
    ];
    if let Some(key) = &target.secret {
        out.push((
            "webhook-signature".to_owned(),
            key.sign(id, timestamp, body),
        ));
    }
    out.extend(target.headers.iter().cloned());
    out
}

/// Whether a destination's answer `status` (not 2xx) is final: a 4xx other than 408
/// (time-out), 425 (too early) and 429 (too many requests), as EventBridge API
/// destinations judge it; unless the rule retries every error.
pub fn is_permanent(status: u16, retry_all_errors: bool) -> bool {
    !retry_all_errors && (400..500).contains(&status) && !matches!(status, 408 | 425 | 429)
}

/// For logs: a rule's destination as host and port, without credentials, path or query.
pub fn origin(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}
