//! Twenty's webhook signature: lowercase hex HMAC-SHA256, keyed with the webhook's secret,
//! over `<timestamp>:<body>` where body is the exact bytes received.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The headers a signed delivery carries (lowercase; header names are case-insensitive):
/// milliseconds since the epoch, the signature, and a nonce the signature does not cover.
pub const TIMESTAMP_HEADER: &str = "x-twenty-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-twenty-webhook-signature";
pub const NONCE_HEADER: &str = "x-twenty-webhook-nonce";

type HmacSha256 = Hmac<Sha256>;

/// One webhook secret, keyed into HMAC once when it is read (at start-up), so that a
/// request only clones the keyed state. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
    mac: HmacSha256,
}

impl Secret {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        let key = key.into();
        // HMAC takes keys of any length; this runs when settings are read, never on a request.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Self { key, mac }
    }

    /// The MAC of `<timestamp>:<body>` under this secret, not yet finalised.
    fn keyed(&self, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum SignatureError {
    #[error("timestamp is not milliseconds since the epoch")]
    MalformedTimestamp,
    #[error("signature is not 64 hex characters")]
    MalformedSignature,
    #[error("signature does not match any configured secret")]
    Mismatch,
    #[error("timestamp is {0} s older than the replay window allows")]
    Stale(u64),
    #[error("timestamp is {0} s further in the future than the replay window allows")]
    Future(u64),
}

/// Checks a delivery's signature against every secret, then its age.
///
/// The signature is checked before the window, so that "stale" is only ever said of a
/// genuine delivery (a clock problem), never of a forged one.
pub fn verify(
    secrets: &[Secret],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_ms: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let sent_ms = parse_timestamp(timestamp)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(signature, &mut expected)
        .map_err(|_| SignatureError::MalformedSignature)?;

    // `verify_slice` compares in constant time; trying every secret keeps the time
    // independent of which one (if any) matched.
    let matched = secrets
        .iter()
        .map(|secret| {
            secret
                .keyed(timestamp, body)
                .verify_slice(&expected)
                .is_ok()
        })
        .fold(false, |any, ok| any | ok);
    if !matched {
        return Err(SignatureError::Mismatch);
    }

    let tolerance_ms = u64::try_from(tolerance.as_millis()).unwrap_or(u64::MAX);
    if sent_ms.saturating_add(tolerance_ms) < now_ms {
        Err(SignatureError::Stale(
            (now_ms - sent_ms - tolerance_ms).div_ceil(1000),
        ))
    } else if sent_ms > now_ms.saturating_add(tolerance_ms) {
        Err(SignatureError::Future(
            (sent_ms - now_ms - tolerance_ms).div_ceil(1000),
        ))
    } else {
        Ok(())
    }
}

/// Signs as Twenty does; for tests, the sample events and the re-signing tool.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex::encode(
        Secret::new(secret)
            .keyed(timestamp, body)
            .finalize()
            .into_bytes(),
    )
}

/// `Date.now().toString()`: ASCII digits only, no sign, no blanks.
fn parse_timestamp(raw: &str) -> Result<u64, SignatureError> {
    if raw.is_empty() || raw.len() > 16 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    raw.parse().map_err(|_| SignatureError::MalformedTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn wire_format_vector() {
        let body = r#"{"targetUrl":"https://example.com/hook","eventName":"person.created","objectMetadata":{"id":"om-1","nameSingular":"person"},"workspaceId":"ws-1","webhookId":"wh-1","eventDate":"2025-01-01T00:00:00.000Z","record":{"id":"r-1","name":{"firstName":"Zoë","lastName":"Ng"}}}"#;
        assert_eq!(body.len(), 269);
        let sig = "bbbc42cd6fe11de910242ec7667f8087ca6c983387b846267cc5ab43da54b77f";
        assert_eq!(sign(b"test-secret", "1735066639761", body.as_bytes()), sig);
        let secrets = [Secret::new("test-secret")];
        assert_eq!(
            verify(
                &secrets,
                "1735066639761",
                sig,
                body.as_bytes(),
                1_735_066_639_761,
                MIN5
            ),
            Ok(())
        );
    }

    #[test]
    fn window_edges() {
        let secrets = [Secret::new("k")];
        let ts = 1_000_000_000_000u64;
        let sig = sign(b"k", &ts.to_string(), b"{}");
        let check = |now| verify(&secrets, &ts.to_string(), &sig, b"{}", now, MIN5);
        assert_eq!(check(ts + 300_000), Ok(()));
        assert_eq!(check(ts + 300_001), Err(SignatureError::Stale(1)));
        assert_eq!(check(ts - 300_000), Ok(()));
        assert_eq!(check(ts - 300_001), Err(SignatureError::Future(1)));
    }

    #[test]
    fn malformed_headers() {
        let secrets = [Secret::new("k")];
        let sig = sign(b"k", "1", b"{}");
        for ts in ["", " 1", "-1", "1.0", "0x10", "12345678901234567"] {
            assert_eq!(
                verify(&secrets, ts, &sig, b"{}", 1, MIN5),
                Err(SignatureError::MalformedTimestamp),
                "{ts:?}"
            );
        }
        for bad in [&sig[..63], &sig[1..], "", &format!("{}zz", &sig[..62])] {
            assert_eq!(
                verify(&secrets, "1", bad, b"{}", 1, MIN5),
                Err(SignatureError::MalformedSignature)
            );
        }
    }

    #[test]
    fn any_active_secret_verifies() {
        let secrets = [Secret::new("old"), Secret::new("new")];
        let sig = sign(b"new", "5", b"x");
        assert_eq!(verify(&secrets, "5", &sig, b"x", 5, MIN5), Ok(()));
        assert_eq!(
            verify(&secrets[..1], "5", &sig, b"x", 5, MIN5),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[], "5", &sig, b"x", 5, MIN5),
            Err(SignatureError::Mismatch)
        );
    }
}
