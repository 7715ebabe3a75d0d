//! What the credentials modules share: a secret's text that never shows, reading the
//! fields of `auth` (naming the field in errors, never a value), and reading a secret.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::secrets::{Location, Rotating};
use crate::worker::error::HandlerError;

/// The `failureReason` code of a destination that refused the credentials: its token
/// endpoint refused the client, or it answered 401 to a fresh token or key.
pub(crate) const AUTH_REFUSED: &str = "destination_auth";

/// A secret's text. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(super) String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A non-empty string field of `auth`.
pub(super) fn required<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match map.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(format!("`auth.{field}` must be a non-empty string")),
    }
}

/// An optional string field of `auth`.
pub(super) fn optional(map: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("`auth.{field}` must be a non-empty string")),
    }
}

/// Where a secret field's value is kept: `{"parameter": …}` or `{"secretId": …}`.
pub(super) fn location(map: &Map<String, Value>, field: &str) -> Result<Location, String> {
    let named = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    match map.get(field) {
        Some(Value::Object(o)) if o.len() == 1 => {
            if let Some(name) = named(o.get("parameter")) {
                return Ok(Location::Parameter(name));
            }
            if let Some(id) = named(o.get("secretId")) {
                return Ok(Location::SecretId(id));
            }
            Err(where_kept(field))
        }
        Some(Value::String(_)) => Err(format!(
            "{}: a secret is never given in the rule text",
            where_kept(field)
        )),
        _ => Err(where_kept(field)),
    }
}

fn where_kept(field: &str) -> String {
    format!(
        "`auth.{field}` must name where the secret is kept: {{\"parameter\": \"/ssm/name\"}} or {{\"secretId\": \"name or ARN\"}}"
    )
}

/// The stored text as a secret: surrounding blanks (a trailing newline from a file) are
/// not part of it, and it may not be empty.
pub(super) fn secret_text(text: &str) -> Result<Secret, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    Ok(Secret(text.to_owned()))
}

/// A secret sent as a header value as it is: printable ASCII only.
pub(super) fn header_secret(text: &str) -> Result<Secret, String> {
    let secret = secret_text(text)?;
    if !crate::worker::web::valid_header_value(secret.expose()) {
        return Err("it holds characters a header value cannot carry".to_owned());
    }
    Ok(secret)
}

/// The secret's current value; a store that cannot give it fails the forward for a retry.
pub(super) async fn read(
    secret: &Rotating<Secret>,
    field: &str,
) -> Result<Arc<Secret>, HandlerError> {
    secret
        .current()
        .await
        .map_err(|e| HandlerError::new(format!("{field}: {}", e.0.why)))
}
