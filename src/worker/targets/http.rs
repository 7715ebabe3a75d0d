//! HTTP targets: the envelope POSTed to the rule's URL with the Standard Webhooks headers.
//! Any 2xx is success. A 4xx other than 408, 425 and 429 is final (the message goes to the
//! dead-letter queue); anything else, a redirect (never followed), a time-out or a
//! connection error is retried.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::{Clients, Delivery, Kind, Target, TargetSpec, valid_url};
use crate::worker::error::HandlerError;
use crate::worker::event::Event;
use crate::worker::standard_webhooks::WebhookKey;

/// `url`, with a Standard Webhooks `secret` and extra `headers`.
pub static KIND: Kind = Kind {
    key: "url",
    fields: &["secret", "headers"],
    parse,
};

/// A rule's URL, with its key and headers.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub url: String,
    pub secret: Option<WebhookKey>,
    /// Extra request headers (`Authorization`, say). Values are never logged.
    pub headers: Vec<(String, String)>,
}

impl TargetSpec for HttpTarget {
    fn build(&self, clients: &Clients) -> Result<Arc<dyn Target>, &'static str> {
        Ok(Arc::new(Http {
            client: clients.get::<HttpClient>().ok_or("an HTTP client")?,
            target: self.clone(),
        }))
    }
}

/// Headers a rule may not set: the worker sets them, and receivers verify them; and the
/// hop-by-hop and framing headers, which belong to the connection, not to the rule.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
];

fn parse(map: &Map<String, Value>) -> Result<Arc<dyn TargetSpec>, String> {
    Ok(Arc::new(http_target(map)?))
}

fn http_target(map: &Map<String, Value>) -> Result<HttpTarget, String> {
    let url = match map.get("url") {
        Some(Value::String(u)) if valid_url(u) => u.clone(),
        _ => return Err("`url` must be an http:// or https:// URL".to_owned()),
    };
    let secret = match map.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(WebhookKey::parse(s).map_err(|e| format!("`secret`: {e}"))?),
        Some(_) => return Err("`secret` must be a string".to_owned()),
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let repeated = h.keys().filter(|o| o.eq_ignore_ascii_case(k)).count() > 1;
                match v {
                    _ if repeated => Err(format!(
                        "header `{k}` is given more than once (names are case-insensitive)"
                    )),
                    _ if RESERVED.contains(&lower.as_str()) => {
                        Err(format!("header `{k}` is set by the worker"))
                    }
                    _ if !valid_header_name(k) => Err(format!("`{k}` is not a header name")),
                    Value::String(v) if valid_header_value(v) => Ok((k.clone(), v.clone())),
                    _ => Err(format!("header `{k}` must have a printable string value")),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`headers` must be an object of strings".to_owned()),
    };
    Ok(HttpTarget {
        url,
        secret,
        headers,
    })
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

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
    pub client: Arc<HttpClient>,
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
            transformed,
            ..
        } = delivery;
        let origin = origin(&self.target.url);
        let client = self.client.get().await?;
        let timestamp = crate::clock::now().as_secs();
        // What is signed is what is sent: the transformed body when the rule has one.
        let (content_type, body) = match transformed {
            Some(t) => (t.content_type(), bytes::Bytes::from(t.text)),
            None => (
                "application/json",
                bytes::Bytes::from_owner(SharedBody(event.clone())),
            ),
        };
        let headers = headers(&self.target, &event.id, timestamp, content_type, &body);
        let mut request = client.post(&self.target.url).timeout(timeout).body(body);
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
    content_type: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut out = vec![
        ("content-type".to_owned(), content_type.to_owned()),
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
