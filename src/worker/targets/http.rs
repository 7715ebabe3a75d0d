//! HTTP targets: the envelope POSTed to the rule's URL with the Standard Webhooks headers.
//! Any 2xx is success. A 4xx other than 408, 425 and 429 is final (the message goes to the
//! dead-letter queue); anything else, a redirect (never followed), a time-out or a
//! connection error is retried. A rule's `auth` (`crate::worker::credentials`) adds its
//! header; a 401 to it renews it (a new token, a re-read secret) and tries once more.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::{Clients, Delivery, Kind, Target, TargetSpec};
use crate::worker::credentials::{AUTH_REFUSED, Auth, Authenticator, Credentials, Grant};
use crate::worker::error::HandlerError;
use crate::worker::event::Event;
use crate::worker::standard_webhooks::WebhookKey;
use crate::worker::web::{is_permanent, origin, valid_header_name, valid_header_value, valid_url};

/// `url`, with a Standard Webhooks `secret`, extra `headers` and the credentials of `auth`.
pub static KIND: Kind = Kind {
    key: "url",
    fields: &["secret", "headers", "auth"],
    parse,
};

/// A rule's URL, with its key, headers and credentials.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub url: String,
    pub secret: Option<WebhookKey>,
    /// Extra request headers (`Authorization`, say). Values are never logged.
    pub headers: Vec<(String, String)>,
    /// Where the destination's credentials are kept.
    pub auth: Option<Auth>,
}

impl TargetSpec for HttpTarget {
    fn acts_once_per_id(&self) -> bool {
        true
    }

    fn build(&self, clients: &Clients) -> Result<Arc<dyn Target>, &'static str> {
        let auth = match &self.auth {
            None => None,
            Some(auth) => Some(
                clients
                    .get::<Credentials>()
                    .ok_or("a secret store")?
                    .for_auth(auth)?,
            ),
        };
        Ok(Arc::new(Http {
            client: clients.get::<HttpClient>().ok_or("an HTTP client")?,
            // Parsed once, not at every send (the rule's URL was checked when it was read).
            url: reqwest::Url::parse(&self.url).ok(),
            target: self.clone(),
            auth,
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
    let auth = match map.get("auth") {
        None | Some(Value::Null) => None,
        Some(auth) => Some(Auth::parse(auth)?),
    };
    if let Some(auth) = &auth {
        let header = auth.header();
        if RESERVED.contains(&header.as_str()) {
            return Err(format!("`auth.header` `{header}` is set by the worker"));
        }
        if let Some((name, _)) = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&header))
        {
            return Err(format!("header `{name}` is set by `auth`"));
        }
    }
    Ok(HttpTarget {
        url,
        secret,
        headers,
        auth,
    })
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

/// One rule's URL, with its key, headers and credentials.
pub struct Http {
    pub client: Arc<HttpClient>,
    url: Option<reqwest::Url>,
    pub target: HttpTarget,
    auth: Option<Arc<Authenticator>>,
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
    /// POSTs the event within `delivery.timeout`, token request included.
    async fn post(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Delivery {
            event,
            mode,
            timeout,
            retry_all_errors,
            transformed,
            ..
        } = delivery;
        let deadline = Instant::now() + timeout;
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
        let headers = headers(
            &self.target,
            event.delivery_id(mode),
            timestamp,
            content_type,
            &body,
        );
        let Some(auth) = &self.auth else {
            let answer = self.send(client, &headers, None, body, deadline).await?;
            return judge(answer, &self.target.url, retry_all_errors);
        };
        let grant = auth.grant(client, deadline, retry_all_errors).await?;
        let answer = self
            .send(client, &headers, Some(&grant), body.clone(), deadline)
            .await?;
        if answer.status() != reqwest::StatusCode::UNAUTHORIZED || !auth.refused(&grant).await {
            return judge(answer, &self.target.url, retry_all_errors);
        }
        // Refused: once more, with a new token or the secret as it is now.
        let grant = auth.grant(client, deadline, retry_all_errors).await?;
        let answer = self
            .send(client, &headers, Some(&grant), body, deadline)
            .await?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            auth.refused(&grant).await;
        }
        judge(answer, &self.target.url, retry_all_errors)
    }

    /// One request, due by `deadline`.
    async fn send(
        &self,
        client: &reqwest::Client,
        headers: &[(String, String)],
        grant: Option<&Grant>,
        body: bytes::Bytes,
        deadline: Instant,
    ) -> Result<reqwest::Response, HandlerError> {
        let origin = origin(&self.target.url);
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(HandlerError::new(format!("{origin}: no time left")));
        }
        let request = match &self.url {
            Some(url) => client.post(url.clone()),
            None => client.post(&self.target.url),
        };
        let mut request = request.timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(grant) = grant {
            request = request.header(&grant.header, grant.value.expose());
        }
        request.send().await.map_err(|e| {
            HandlerError::new(if e.is_timeout() {
                format!("{origin}: no answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                format!("{origin}: connection failed")
            } else {
                format!("{origin}: the request failed")
            })
        })
    }
}

/// A destination's answer as the forward's result. A 401 is `destination_auth`: its
/// credentials (or a fresh token) were refused.
fn judge(answer: reqwest::Response, url: &str, retry_all_errors: bool) -> Result<(), HandlerError> {
    let status = answer.status().as_u16();
    if answer.status().is_success() {
        return Ok(());
    }
    let reason = format!("{} answered {status}", origin(url));
    if is_permanent(status, retry_all_errors) {
        let refused = HandlerError::permanent(reason).status(status);
        return Err(if status == 401 {
            refused.with_code(AUTH_REFUSED)
        } else {
            refused
        });
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
