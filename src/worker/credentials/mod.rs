//! A rule's `auth`: the credentials an HTTP destination wants, kept out of the rule text.
//!
//! - `{"type": "apiKey", "header": "X-Api-Key", "value": {…}}`: the value in that header.
//! - `{"type": "basic", "username": "…", "password": {…}}`: `Authorization: Basic` (RFC 7617).
//! - `{"type": "oauthClientCredentials", "tokenUrl": "https://…", "clientId": "…",
//!   "clientSecret": {…}, "scope": "…", "audience": "…", "clientAuth": "basic" | "body"}`:
//!   `Authorization: Bearer` with a token from the client credentials grant (`oauth`).
//!
//! Each secret value is named, never given: `{"parameter": "/ssm/name"}` (an SSM
//! SecureString, read with decryption) or `{"secretId": "name or ARN"}` (Secrets Manager).
//! It is read on first need and re-read as the webhook secret is (`secrets::Rotating`), and
//! appears in no log line, metric or dead-letter message. The state a rule's credentials
//! keep (the values read, the token) lives in `Credentials`, keyed by the `auth` itself, so
//! that rebuilding the routes from re-read rules does not throw it away.

mod oauth;
mod secret;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use serde_json::Value;
use tokio::time::Instant;

use super::error::HandlerError;
use crate::secrets::{Location, Refresh, Rotating, SecretStore, StoredSecret};

pub use oauth::{ClientAuth, OAuthClient};
pub(crate) use secret::{AUTH_REFUSED, Secret};
use secret::{header_secret, location, read, required, secret_text};

/// A rule's `auth`, as parsed: what to send and where each secret is kept; no secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Auth {
    ApiKey {
        header: String,
        value: Location,
    },
    Basic {
        username: String,
        password: Location,
    },
    OAuth(OAuthClient),
}

impl Auth {
    /// Reads a rule's `auth` object; the error names the field, never a value.
    pub(crate) fn parse(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("`auth` must be an object with a `type`".to_owned());
        };
        let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
        let allowed: &[&str] = match kind {
            "apiKey" => &["type", "header", "value"],
            "basic" => &["type", "username", "password"],
            "oauthClientCredentials" => &[
                "type",
                "tokenUrl",
                "clientId",
                "clientSecret",
                "scope",
                "audience",
                "clientAuth",
            ],
            _ => {
                return Err(
                    "`auth.type` must be \"apiKey\", \"basic\" or \"oauthClientCredentials\""
                        .to_owned(),
                );
            }
        };
        if let Some(field) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("`auth` of type {kind} takes no field `{field}`"));
        }
        match kind {
            "apiKey" => {
                let header = required(map, "header")?;
                if !crate::worker::web::valid_header_name(header) {
                    return Err("`auth.header` is not a header name".to_owned());
                }
                Ok(Self::ApiKey {
                    header: header.to_owned(),
                    value: location(map, "value")?,
                })
            }
            "basic" => {
                let username = required(map, "username")?;
                if username.contains(':') || username.chars().any(char::is_control) {
                    return Err("`auth.username` may hold no `:` or control character".to_owned());
                }
                Ok(Self::Basic {
                    username: username.to_owned(),
                    password: location(map, "password")?,
                })
            }
            _ => OAuthClient::parse(map).map(Self::OAuth),
        }
    }

    /// The header these credentials set, lowercased: a rule's `headers` may not set it too.
    pub(crate) fn header(&self) -> String {
        match self {
            Self::ApiKey { header, .. } => header.to_ascii_lowercase(),
            Self::Basic { .. } | Self::OAuth(_) => "authorization".to_owned(),
        }
    }
}

/// The state of every rule's credentials, kept across rebuilt routes; and the store their
/// secrets are read from. Without a store, a rule with `auth` is refused.
#[derive(Default)]
pub struct Credentials {
    store: Option<(Arc<dyn SecretStore>, Refresh)>,
    kept: Mutex<HashMap<Auth, Arc<Authenticator>>>,
}

impl Credentials {
    /// Secrets read from `store`, re-read as `refresh` says.
    pub fn new(store: Arc<dyn SecretStore>, refresh: Refresh) -> Self {
        Self {
            store: Some((store, refresh)),
            kept: Mutex::default(),
        }
    }

    /// What applies `auth` to requests: the one kept for it, or a new one. Err names what
    /// is missing.
    pub(crate) fn for_auth(&self, auth: &Auth) -> Result<Arc<Authenticator>, &'static str> {
        let (store, refresh) = self.store.as_ref().ok_or("a secret store")?;
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = kept.get(auth) {
            return Ok(Arc::clone(found));
        }
        let read = |setting: &'static str, location: &Location, parse| {
            let secret = StoredSecret {
                setting,
                location: location.clone(),
            };
            Rotating::stored(Arc::clone(store), secret, parse, *refresh)
        };
        let scheme = match auth {
            Auth::ApiKey { header, value } => Scheme::ApiKey {
                header: header.clone(),
                value: read("auth.value", value, header_secret),
            },
            Auth::Basic { username, password } => Scheme::Basic {
                username: username.clone(),
                password: read("auth.password", password, secret_text),
            },
            Auth::OAuth(client) => Scheme::OAuth(Box::new(oauth::TokenSource::new(
                client.clone(),
                read("auth.clientSecret", &client.client_secret, secret_text),
            ))),
        };
        let made = Arc::new(Authenticator { scheme });
        kept.insert(auth.clone(), Arc::clone(&made));
        Ok(made)
    }
}

/// Applies one `auth` to requests: reads its secret, keeps its token.
pub struct Authenticator {
    scheme: Scheme,
}

enum Scheme {
    ApiKey {
        header: String,
        value: Rotating<Secret>,
    },
    Basic {
        username: String,
        password: Rotating<Secret>,
    },
    OAuth(Box<oauth::TokenSource>),
}

/// The header one request carries, and what it was made from (to renew it after a 401).
pub(crate) struct Grant {
    pub(crate) header: String,
    pub(crate) value: Secret,
    from: Used,
}

enum Used {
    Secret(Arc<Secret>),
    Token(Arc<oauth::Token>),
}

impl Authenticator {
    /// The header for a request due by `deadline`. Err: the secret could not be read, or
    /// the token endpoint failed (its failure, as the destination's).
    pub(crate) async fn grant(
        &self,
        http: &reqwest::Client,
        deadline: Instant,
        retry_all_errors: bool,
    ) -> Result<Grant, HandlerError> {
        match &self.scheme {
            Scheme::ApiKey { header, value } => {
                let secret = read(value, "auth.value").await?;
                Ok(Grant {
                    header: header.clone(),
                    value: secret.as_ref().clone(),
                    from: Used::Secret(secret),
                })
            }
            Scheme::Basic { username, password } => {
                let secret = read(password, "auth.password").await?;
                Ok(Grant {
                    header: "authorization".to_owned(),
                    value: basic(username, &secret),
                    from: Used::Secret(secret),
                })
            }
            Scheme::OAuth(tokens) => {
                let token = tokens.token(http, deadline, retry_all_errors).await?;
                Ok(Grant {
                    header: "authorization".to_owned(),
                    value: token.bearer.clone(),
                    from: Used::Token(token),
                })
            }
        }
    }

    /// After the destination answered 401 to `grant`: drops the token it carried, or
    /// re-reads the secret (within the re-read floor). True when another try may fare
    /// better: a new token will be asked for, or the secret changed.
    pub(crate) async fn refused(&self, grant: &Grant) -> bool {
        match (&self.scheme, &grant.from) {
            (Scheme::OAuth(tokens), Used::Token(token)) => {
                tokens.drop_token(token);
                true
            }
            (Scheme::ApiKey { value: secret, .. }, Used::Secret(seen))
            | (
                Scheme::Basic {
                    password: secret, ..
                },
                Used::Secret(seen),
            ) => secret.newer_than(seen).await.is_some(),
            _ => false,
        }
    }
}

/// `Basic base64(username:password)` (RFC 7617).
fn basic(username: &str, password: &Secret) -> Secret {
    let pair = format!("{username}:{}", password.expose());
    Secret(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(v: Value) -> Result<Auth, String> {
        Auth::parse(&v)
    }

    #[test]
    fn each_type_is_read_with_where_its_secret_is_kept() {
        assert_eq!(
            parsed(
                json!({"type": "apiKey", "header": "X-N8N-Key", "value": {"parameter": "/n8n/key"}})
            ),
            Ok(Auth::ApiKey {
                header: "X-N8N-Key".into(),
                value: Location::Parameter("/n8n/key".into())
            })
        );
        assert_eq!(
            parsed(
                json!({"type": "basic", "username": "crm", "password": {"secretId": "crm-pass"}})
            ),
            Ok(Auth::Basic {
                username: "crm".into(),
                password: Location::SecretId("crm-pass".into())
            })
        );
        let Ok(Auth::OAuth(client)) = parsed(json!({
            "type": "oauthClientCredentials", "tokenUrl": "https://login.example.com/token",
            "clientId": "id", "clientSecret": {"parameter": "/sf/secret"}, "scope": "api",
            "clientAuth": "body"
        })) else {
            panic!("an OAuth client");
        };
        assert_eq!(client.client_auth, ClientAuth::Body);
        assert_eq!(client.scope.as_deref(), Some("api"));
        assert_eq!(client.audience, None);
    }

    #[test]
    fn a_secret_in_the_rule_text_or_a_wrong_field_is_refused_by_name() {
        let refused = [
            (
                json!({"type": "apiKey", "header": "X-Key", "value": "s3cr3t"}),
                "never given in the rule text",
            ),
            (
                json!({"type": "apiKey", "header": "X Key", "value": {"parameter": "/k"}}),
                "`auth.header`",
            ),
            (
                json!({"type": "basic", "username": "a:b", "password": {"parameter": "/k"}}),
                "`auth.username`",
            ),
            (
                json!({"type": "basic", "username": "a", "password": {"vault": "/k"}}),
                "`auth.password` must name",
            ),
            (
                json!({"type": "basic", "username": "a", "password": {"parameter": "/k"}, "x": 1}),
                "takes no field `x`",
            ),
            (json!({"type": "bearer"}), "`auth.type`"),
            (json!("apiKey"), "`auth` must be an object"),
        ];
        for (auth, why) in refused {
            let err = parsed(auth.clone()).expect_err("refused");
            assert!(err.contains(why), "{auth}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn secrets_are_trimmed_and_never_shown() {
        let secret = secret_text(" key\n").expect("a secret");
        assert_eq!(secret.expose(), "key");
        assert!(!format!("{secret:?}").contains("key"));
        assert!(secret_text("  \n").is_err());
        assert!(header_secret("a\u{7}b").is_err());
        assert_eq!(
            basic("Aladdin", &Secret("open sesame".into())).expose(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
