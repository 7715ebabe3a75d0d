//! OAuth 2.0 client credentials (RFC 6749 §4.4): a token asked for at the rule's
//! `tokenUrl`, kept per worker instance until `expires_in` less a margin (the smaller of
//! 60 s and a tenth of the lifetime), one request at a time however many forwards wait for
//! it. The token endpoint's failures are the destination's: a time-out, a 5xx or a 429 is
//! retried (and counts towards the rule's breaker); a 4xx (`invalid_client`, a bad scope)
//! is final, `destination_auth`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::secret::{AUTH_REFUSED, Secret, location, optional, read, required};
use crate::secrets::{Location, Rotating};
use crate::worker::error::HandlerError;
use crate::worker::web::{is_permanent, origin, valid_header_value, valid_url};

/// A token whose answer gives no `expires_in` is kept this long (or until a 401).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A longer lifetime is taken as a year (and cannot overflow the clock).
const MAX_LIFETIME_SECS: f64 = 366.0 * 86_400.0;
/// The most a token is renewed before it expires.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// A rule's OAuth client, as parsed: no secret, only where it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Location,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// `Authorization: Basic`, the id and secret form-encoded first: the default, which
    /// every server must support.
    Basic,
    /// `client_id` and `client_secret` in the form.
    Body,
}

impl OAuthClient {
    pub(super) fn parse(map: &Map<String, Value>) -> Result<Self, String> {
        let token_url = required(map, "tokenUrl")?;
        if !secure_url(token_url) {
            return Err(
                "`auth.tokenUrl` must be an https:// URL (http:// only to this machine)".to_owned(),
            );
        }
        let client_auth = match map.get("clientAuth") {
            None | Some(Value::Null) => ClientAuth::Basic,
            Some(Value::String(s)) if s == "basic" => ClientAuth::Basic,
            Some(Value::String(s)) if s == "body" => ClientAuth::Body,
            Some(_) => return Err("`auth.clientAuth` must be \"basic\" or \"body\"".to_owned()),
        };
        Ok(Self {
            token_url: token_url.to_owned(),
            client_id: required(map, "clientId")?.to_owned(),
            client_secret: location(map, "clientSecret")?,
            scope: optional(map, "scope")?,
            audience: optional(map, "audience")?,
            client_auth,
        })
    }

    /// The grant's form, and the header that authenticates the client when it is not in
    /// the form.
    fn request(&self, secret: &Secret) -> (String, Option<String>) {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        let header = match self.client_auth {
            ClientAuth::Body => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret.expose()));
                None
            }
            ClientAuth::Basic => {
                let pair = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.expose())
                );
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        };
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        (body, header)
    }
}

/// An https:// URL, or an http:// one to this machine (a local token endpoint in tests).
fn secure_url(url: &str) -> bool {
    if !valid_url(url) {
        return false;
    }
    if url.starts_with("https://") {
        return true;
    }
    let host = origin(url);
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, space as `+`, the
/// rest percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A token, as the `Authorization` header that carries it.
pub(crate) struct Token {
    pub(crate) bearer: Secret,
    /// Asked for again from then on.
    renew_at: Instant,
    /// Used until then when a renewal fails; never after.
    expires_at: Instant,
}

/// One rule's tokens: the one in use, and the request under way.
pub(crate) struct TokenSource {
    client: OAuthClient,
    secret: Rotating<Secret>,
    state: Mutex<State>,
    flight: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    token: Option<Arc<Token>>,
    /// Token requests answered so far: a caller that waited for one takes its result.
    requests: u64,
    /// The last request's failure, for the callers that waited on it.
    failed: Option<HandlerError>,
}

impl TokenSource {
    pub(super) fn new(client: OAuthClient, secret: Rotating<Secret>) -> Self {
        Self {
            client,
            secret,
            state: Mutex::default(),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token to use now: the one kept, unless it is due for renewal; else a new one,
    /// asked for by one caller while the others wait for its answer.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        deadline: Instant,
        retry_all_errors: bool,
    ) -> Result<Arc<Token>, HandlerError> {
        let seen = {
            let state = self.lock();
            if let Some(token) = state.fresh(Instant::now()) {
                return Ok(token);
            }
            state.requests
        };
        let Ok(_flight) = tokio::time::timeout_at(deadline, self.flight.lock()).await else {
            return Err(HandlerError::new(
                "the token request under way took all the time left",
            ));
        };
        {
            let state = self.lock();
            if state.requests != seen {
                // The request this caller waited for: its token, or its failure (with
                // the old token while it lasts, as the caller that asked was given).
                let now = Instant::now();
                if let Some(token) = state.fresh(now).or_else(|| state.unexpired(now)) {
                    return Ok(token);
                }
                if let Some(failed) = &state.failed {
                    return Err(failed.clone());
                }
            }
        }
        let asked = self.ask(http, deadline, retry_all_errors).await;
        let mut state = self.lock();
        state.requests += 1;
        match asked {
            Ok(token) => {
                let token = Arc::new(token);
                state.token = Some(Arc::clone(&token));
                state.failed = None;
                Ok(token)
            }
            Err(failure) => {
                state.failed = Some(failure.clone());
                // A renewal that failed leaves the token in use until it expires.
                match state.unexpired(Instant::now()) {
                    Some(token) => Ok(token),
                    None => {
                        state.token = None;
                        Err(failure)
                    }
                }
            }
        }
    }

    /// After a 401 to `token`: it is not used again.
    pub(crate) fn drop_token(&self, token: &Arc<Token>) {
        let mut state = self.lock();
        if state.token.as_ref().is_some_and(|t| Arc::ptr_eq(t, token)) {
            state.token = None;
        }
    }

    /// Asks the token endpoint; when it refuses the client, once more if the client
    /// secret has changed in its store since it was read.
    async fn ask(
        &self,
        http: &reqwest::Client,
        deadline: Instant,
        retry_all_errors: bool,
    ) -> Result<Token, HandlerError> {
        let secret = read(&self.secret, "auth.clientSecret").await?;
        match self.post(http, &secret, deadline, retry_all_errors).await {
            Err(refused) if refused.own_code == Some(AUTH_REFUSED) => {
                match self.secret.newer_than(&secret).await {
                    Some(newer) => self.post(http, &newer, deadline, retry_all_errors).await,
                    None => Err(refused),
                }
            }
            asked => asked,
        }
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        secret: &Secret,
        deadline: Instant,
        retry_all_errors: bool,
    ) -> Result<Token, HandlerError> {
        let endpoint = origin(&self.client.token_url);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandlerError::new(format!(
                "token endpoint {endpoint}: no time left"
            )));
        }
        let (form, client_header) = self.client.request(secret);
        let mut request = http
            .post(&self.client.token_url)
            .timeout(left)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form);
        if let Some(header) = client_header {
            request = request.header("authorization", header);
        }
        let asked_at = Instant::now();
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(e) if e.is_timeout() => {
                return Err(HandlerError::new(format!(
                    "token endpoint {endpoint}: no answer within {} ms",
                    left.as_millis()
                )));
            }
            Err(e) if e.is_connect() => {
                return Err(HandlerError::new(format!(
                    "token endpoint {endpoint}: connection failed"
                )));
            }
            Err(_) => {
                return Err(HandlerError::new(format!(
                    "token endpoint {endpoint}: the request failed"
                )));
            }
        };
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retry::retry_after(v, SystemTime::now()));
        let body = match tokio::time::timeout_at(deadline, answer.bytes()).await {
            Ok(Ok(body)) => body,
            _ => {
                return Err(HandlerError::new(format!(
                    "token endpoint {endpoint}: its answer was cut short"
                )));
            }
        };
        if (200..300).contains(&status) {
            return issued(&body, asked_at).map_err(|why| {
                HandlerError::new(format!("token endpoint {endpoint}: {why}")).status(status)
            });
        }
        let reason = match error_code(&body) {
            Some(code) => format!("token endpoint {endpoint} answered {status} ({code})"),
            None => format!("token endpoint {endpoint} answered {status}"),
        };
        if is_permanent(status, retry_all_errors) {
            return Err(HandlerError::permanent(reason)
                .status(status)
                .with_code(AUTH_REFUSED));
        }
        let failure = HandlerError::new(reason).status(status);
        Err(match retry_after {
            Some(delay) => failure.retry_after(delay),
            None => failure,
        })
    }
}

impl State {
    /// The token, if it is not yet due for renewal.
    fn fresh(&self, now: Instant) -> Option<Arc<Token>> {
        self.token
            .as_ref()
            .filter(|t| now < t.renew_at)
            .map(Arc::clone)
    }

    /// The token, if it has not expired: what is used while a renewal fails.
    fn unexpired(&self, now: Instant) -> Option<Arc<Token>> {
        self.token
            .as_ref()
            .filter(|t| now < t.expires_at)
            .map(Arc::clone)
    }
}

/// The token in a successful answer (RFC 6749 §5.1): `access_token`, a `token_type` of
/// `Bearer` (or none, as some servers send), `expires_in` in seconds (a number, or a
/// string of one, as some servers send). The error never quotes the answer.
fn issued(body: &[u8], asked_at: Instant) -> Result<Token, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|_| "its answer is not JSON".to_owned())?;
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && valid_header_value(t))
        .ok_or("its answer holds no usable access_token")?;
    match answer.get("token_type").and_then(Value::as_str) {
        None => {}
        Some(kind) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err("its token is not a Bearer token".to_owned()),
    }
    let lifetime = match answer.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .map_or(DEFAULT_LIFETIME, |s| {
        Duration::from_secs_f64(s.min(MAX_LIFETIME_SECS))
    });
    Ok(Token {
        bearer: Secret(format!("Bearer {token}")),
        renew_at: asked_at + lifetime - margin(lifetime),
        expires_at: asked_at + lifetime,
    })
}

/// How long before it expires a token is renewed: the smaller of 60 s and a tenth of its
/// lifetime, so that a short-lived token is still used for most of its life.
fn margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_MARGIN)
}

/// The `error` code of a refusal (RFC 6749 §5.2), when it is one: a short word, quoted in
/// the reason. Never the description, which a server may fill with anything.
fn error_code(body: &[u8]) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let code = answer.get("error")?.as_str()?;
    let word = !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    word.then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_small_part_of_short_lifetimes() {
        assert_eq!(margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(margin(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(margin(Duration::from_secs(4)), Duration::from_millis(400));
    }

    #[test]
    fn a_token_answer_is_read_as_servers_really_send_it() {
        let now = Instant::now();
        let token = issued(
            br#"{"access_token":"abc","token_type":"bearer","expires_in":"120"}"#,
            now,
        )
        .expect("a token");
        assert_eq!(token.bearer.expose(), "Bearer abc");
        assert_eq!(token.renew_at, now + Duration::from_secs(108));
        assert_eq!(token.expires_at, now + Duration::from_secs(120));
        let kept = issued(br#"{"access_token":"abc"}"#, now).expect("a token");
        assert_eq!(kept.expires_at, now + DEFAULT_LIFETIME);
        for bad in [
            &br#"{"token_type":"Bearer"}"#[..],
            br#"{"access_token":"a","token_type":"mac"}"#,
            br#"{"access_token":"a\nb"}"#,
            b"<html>",
        ] {
            let err = issued(bad, now).err().expect("refused");
            assert!(!err.contains("a\nb"), "{err}");
        }
    }

    #[test]
    fn the_grant_is_form_encoded_with_the_client_in_basic_or_the_body() {
        let mut client = OAuthClient {
            token_url: "https://login.example.com/oauth2/token".into(),
            client_id: "id:1".into(),
            client_secret: Location::Parameter("/p".into()),
            scope: Some("crm.objects write".into()),
            audience: None,
            client_auth: ClientAuth::Basic,
        };
        let secret = Secret("s&=+é".into());
        let (form, header) = client.request(&secret);
        assert_eq!(
            form,
            "grant_type=client_credentials&scope=crm.objects+write"
        );
        let pair = base64::engine::general_purpose::STANDARD
            .decode(header.expect("basic").trim_start_matches("Basic "))
            .expect("base64");
        assert_eq!(pair, b"id%3A1:s%26%3D%2B%C3%A9");
        client.client_auth = ClientAuth::Body;
        client.audience = Some("https://api.example.com".into());
        let (form, header) = client.request(&secret);
        assert_eq!(header, None);
        assert_eq!(
            form,
            "grant_type=client_credentials&scope=crm.objects+write&audience=https%3A%2F%2Fapi.example.com&client_id=id%3A1&client_secret=s%26%3D%2B%C3%A9"
        );
    }

    #[test]
    fn only_a_short_error_word_is_quoted() {
        assert_eq!(
            error_code(br#"{"error":"invalid_client","error_description":"secret s3 wrong"}"#),
            Some("invalid_client".into())
        );
        assert_eq!(error_code(br#"{"error":"Bad secret s3"}"#), None);
        assert_eq!(error_code(b"nope"), None);
    }

    #[test]
    fn the_token_url_is_https_or_this_machine() {
        assert!(secure_url(
            "https://login.salesforce.com/services/oauth2/token"
        ));
        assert!(secure_url("http://127.0.0.1:8080/token"));
        assert!(secure_url("http://localhost/token"));
        assert!(!secure_url("http://login.example.com/token"));
        assert!(!secure_url("http://localhost.example.com/token"));
    }
}
