//! The Function URL's own token (`?token=`): a gate for deliveries Twenty sends unsigned
//! (its settings form creates webhooks without a secret unless one is typed), and a second
//! gate for signed ones. Compared in constant time; never printable.

use sha2::{Digest, Sha256};

use crate::settings::{ConfigError, invalid};

pub const URL_TOKEN: &str = "TWENTY_WEBHOOK_URL_TOKEN";
/// The query parameter that carries it.
pub(crate) const QUERY_PARAMETER: &str = "token";
/// Short tokens can be guessed; a URL has room for long ones.
const MIN_LEN: usize = 16;
const MAX_LEN: usize = 256;

/// Kept as its SHA-256: comparing two digests takes the same time whatever the input.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlToken([u8; 32]);

impl UrlToken {
    /// Only characters a URL carries unescaped, so the value in Twenty's URL field and in
    /// this setting are the same text.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        if !(MIN_LEN..=MAX_LEN).contains(&value.len()) {
            return Err(invalid(
                URL_TOKEN,
                format!("must be {MIN_LEN} to {MAX_LEN} characters long"),
            ));
        }
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        if !value.bytes().all(unreserved) {
            return Err(invalid(
                URL_TOKEN,
                "may hold only letters, digits and - . _ ~",
            ));
        }
        Ok(Self(Sha256::digest(value.as_bytes()).into()))
    }

    pub fn matches(&self, given: &[u8]) -> bool {
        let given: [u8; 32] = Sha256::digest(given).into();
        self.0
            .iter()
            .zip(given)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for UrlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_token() {
        let token = UrlToken::parse("k3y-0f_twenty.url~x").unwrap();
        assert!(token.matches(b"k3y-0f_twenty.url~x"));
        assert!(!token.matches(b"k3y-0f_twenty.url~y"));
        assert!(!token.matches(b"k3y-0f_twenty.url~"));
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains("k3y"));
    }

    #[test]
    fn refuses_short_or_unsafe_tokens_without_echoing_them() {
        for bad in [
            "short",
            "has space in the token",
            "percent%20escaped-token",
            &"x".repeat(257),
        ] {
            let err = UrlToken::parse(bad).unwrap_err();
            assert!(matches!(
                err,
                ConfigError::Invalid {
                    name: URL_TOKEN,
                    ..
                }
            ));
            assert!(!err.to_string().contains(bad));
        }
    }
}
