//! Signing per the Standard Webhooks specification (standardwebhooks.com), so that a
//! receiver can verify what the worker forwards with that project's libraries.
//!
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the
//! key being the base64 text after `whsec_` in the secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

const PREFIX: &str = "whsec_";

/// A signing key, ready to sign (the HMAC is keyed once, when the secret is read). Its
/// `Debug` never shows the key.
#[derive(Clone)]
pub struct WebhookKey(Hmac<Sha256>);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("secret must start with `whsec_`")]
    NoPrefix,
    #[error("secret after `whsec_` must be base64")]
    NotBase64,
    #[error("secret holds no key")]
    Empty,
}

impl WebhookKey {
    pub fn parse(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret.strip_prefix(PREFIX).ok_or(KeyError::NoPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| KeyError::NotBase64)?;
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| KeyError::Empty)?;
        Ok(Self(mac))
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(***)")
    }
}
