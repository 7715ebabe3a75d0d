//! The pure core of one request: from what arrived to the messages to queue, or a refusal.
//!
//! `Inbound` is the request reduced to the parts that matter, taken from the HTTP adapter;
//! `accept` turns it into an `Accepted` delivery whose messages are ready for SQS. Nothing
//! here touches the network, the clock or the environment. Around it: `config` and
//! `error` (plain), and the Lambda side (`function_url`, `dispatch`, `inflight`).

pub mod config;
#[cfg(feature = "ingest")]
pub mod dispatch;
pub mod error;
#[cfg(feature = "ingest")]
pub mod function_url;
#[cfg(feature = "ingest")]
pub mod inflight;
pub(crate) mod url_token;

use std::time::SystemTime;

use crate::envelope::{self, Destination, Message, Receipt};
use crate::ingest::config::{Config, Secret};
use crate::ingest::error::IngestError;
use crate::twenty::event;
use crate::twenty::signature::{self, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER};

/// Without a payload bucket, larger bodies cannot fit in one SQS message once wrapped, so
/// they are refused up front.
pub const MAX_BODY_BYTES: usize = envelope::SQS_MAX_MESSAGE_BYTES;
/// With one, the limit is Lambda's own for a request payload.
pub const MAX_BODY_BYTES_WITH_BUCKET: usize = 6 * 1024 * 1024;

const CONTENT_TYPE_HEADER: &str = "content-type";

#[derive(Debug, Clone, Copy, Default)]
pub struct Inbound<'a> {
    pub method: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
    /// The Function URL's `token` query parameter.
    pub token: Option<&'a [u8]>,
    pub body: &'a [u8],
}

impl<'a> Inbound<'a> {
    /// Picks the headers we read out of all of them (names in any case). A header we read
    /// that comes twice is refused: which copy was meant cannot be known.
    pub fn new(
        method: &'a str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: &'a [u8],
    ) -> Result<Self, IngestError> {
        let mut inbound = Inbound {
            method,
            body,
            ..Default::default()
        };
        for (name, value) in headers {
            let (slot, canonical) = if name.eq_ignore_ascii_case(CONTENT_TYPE_HEADER) {
                (&mut inbound.content_type, "Content-Type")
            } else if name.eq_ignore_ascii_case(TIMESTAMP_HEADER) {
                (&mut inbound.timestamp, "X-Twenty-Webhook-Timestamp")
            } else if name.eq_ignore_ascii_case(SIGNATURE_HEADER) {
                (&mut inbound.signature, "X-Twenty-Webhook-Signature")
            } else {
                continue;
            };
            if slot.replace(value).is_some() {
                return Err(IngestError::RepeatedHeader(canonical));
            }
        }
        Ok(inbound)
    }

    /// Takes the URL token out of the query parameters; given twice, it is refused.
    pub fn with_query(
        mut self,
        parameters: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, IngestError> {
        for (name, value) in parameters {
            if name == url_token::QUERY_PARAMETER && self.token.replace(value).is_some() {
                return Err(IngestError::UrlToken("given more than once"));
            }
        }
        Ok(self)
    }

    /// True when the delivery carries either signature header: it needs the secrets.
    pub fn is_signed(&self) -> bool {
        self.timestamp.is_some() || self.signature.is_some()
    }
}

/// A verified, parsed delivery.
#[derive(Debug)]
pub struct Accepted {
    /// SHA-256 of the body: the same delivery sent twice has the same id.
    pub id: String,
    pub messages: Vec<Message>,
}

/// `secrets` are the ones a signature may match (from the environment or a store).
pub fn accept(
    inbound: &Inbound<'_>,
    config: &Config,
    secrets: &[Secret],
    now: SystemTime,
) -> Result<Accepted, IngestError> {
    precheck(inbound, config)?;
    let signature_verified = check_signature(inbound, config, secrets, now)?;

    let body = std::str::from_utf8(inbound.body).map_err(|_| IngestError::NotUtf8)?;
    let payload = event::parse(body)?;
    let id = envelope::body_sha256(inbound.body);
    let received_at = humantime::format_rfc3339_millis(now).to_string();
    let receipt = Receipt {
        body_sha256: &id,
        received_at: &received_at,
        signature_verified,
    };
    let destination = Destination {
        fifo: config.fifo,
        payload_bucket: config.payload_bucket.as_deref(),
    };
    let messages = envelope::messages(&payload, receipt, destination)?;
    Ok(Accepted { id, messages })
}

/// The checks that need no secret, cheapest first: the adapter runs them before a secret
/// is read from a store, so that junk never costs a store call. `accept` runs them too.
pub fn precheck(inbound: &Inbound<'_>, config: &Config) -> Result<(), IngestError> {
    if inbound.method != "POST" {
        return Err(IngestError::MethodNotAllowed);
    }
    if let Some(token) = &config.url_token {
        match inbound.token {
            None => return Err(IngestError::UrlToken("missing")),
            Some(given) if !token.matches(given) => {
                return Err(IngestError::UrlToken("does not match"));
            }
            Some(_) => {}
        }
    }
    if !inbound.content_type.is_some_and(is_json) {
        return Err(IngestError::UnsupportedMediaType);
    }
    let limit = match config.payload_bucket {
        Some(_) => MAX_BODY_BYTES_WITH_BUCKET,
        None => MAX_BODY_BYTES,
    };
    if inbound.body.len() > limit {
        return Err(IngestError::BodyTooLarge {
            size: inbound.body.len(),
            limit,
        });
    }
    Ok(())
}

/// True when the signature verified; false for an unsigned delivery that the configuration
/// lets in. A delivery with only one of the two headers is never taken as unsigned.
fn check_signature(
    inbound: &Inbound<'_>,
    config: &Config,
    secrets: &[Secret],
    now: SystemTime,
) -> Result<bool, IngestError> {
    let (timestamp, signature) = match (inbound.timestamp, inbound.signature) {
        (None, None) if config.allow_unsigned => return Ok(false),
        (_, None) => return Err(IngestError::MissingSignature("X-Twenty-Webhook-Signature")),
        (None, Some(_)) => return Err(IngestError::MissingSignature("X-Twenty-Webhook-Timestamp")),
        (Some(t), Some(s)) => (t, s),
    };
    if secrets.is_empty() {
        return Err(IngestError::NoSecretConfigured);
    }
    let timestamp =
        std::str::from_utf8(timestamp).map_err(|_| SignatureError::MalformedTimestamp)?;
    let signature =
        std::str::from_utf8(signature).map_err(|_| SignatureError::MalformedSignature)?;
    let now_ms = crate::clock::millis(now);
    signature::verify(
        secrets,
        timestamp,
        signature,
        inbound.body,
        now_ms,
        config.tolerance,
    )?;
    Ok(true)
}

/// `application/json` or any `+json` type, with or without parameters.
fn is_json(content_type: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::config::{AckMode, Refresh, SecretSource, UrlToken, parse_secrets};
    use std::time::Duration;

    const BODY: &str = r#"{"eventName":"person.created","workspaceId":"ws","record":{"id":"r"}}"#;
    const NOW_MS: u64 = 1_735_066_639_761;

    fn config() -> Config {
        Config {
            queue_url: "http://127.0.0.1/1/q".into(),
            fifo: false,
            secret: Some(SecretSource::Value("k".into())),
            secret_refresh: Refresh::default(),
            url_token: None,
            tolerance: Duration::from_secs(300),
            ack_mode: AckMode::Immediate,
            allow_unsigned: false,
            retry_budget: Duration::from_secs(5),
            payload_bucket: None,
        }
    }

    fn now() -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_millis(NOW_MS)
    }

    fn run(
        headers: &[(&str, &str)],
        method: &str,
        body: &str,
        config: &Config,
    ) -> Result<Accepted, IngestError> {
        run_at(headers, &[], method, body, config)
    }

    fn run_at(
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
        method: &str,
        body: &str,
        config: &Config,
    ) -> Result<Accepted, IngestError> {
        let inbound = Inbound::new(
            method,
            headers.iter().map(|(k, v)| (*k, v.as_bytes())),
            body.as_bytes(),
        )?
        .with_query(query.iter().map(|(k, v)| (*k, v.as_bytes())))?;
        let secrets = match &config.secret {
            Some(SecretSource::Value(list)) => parse_secrets(list).unwrap(),
            _ => vec![],
        };
        accept(&inbound, config, &secrets, now())
    }

    fn signed(body: &str) -> Vec<(&'static str, String)> {
        let ts = NOW_MS.to_string();
        vec![
            ("content-type", "application/json".to_owned()),
            (
                "x-twenty-webhook-signature",
                signature::sign(b"k", &ts, body.as_bytes()),
            ),
            ("x-twenty-webhook-timestamp", ts),
        ]
    }

    fn run_signed(extra: &[(&'static str, &str)], body: &str) -> Result<Accepted, IngestError> {
        let mut headers = signed(body);
        for (k, v) in extra {
            headers.retain(|(n, _)| n != k);
            headers.push((k, v.to_string()));
        }
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&refs, "POST", body, &config())
    }

    #[test]
    fn a_signed_delivery_becomes_messages() {
        let accepted = run_signed(&[], BODY).unwrap();
        assert_eq!(accepted.id, envelope::body_sha256(BODY.as_bytes()));
        assert_eq!(accepted.messages.len(), 1);
        assert!(
            accepted.messages[0]
                .body
                .contains(r#""receivedAt":"2024-12-24T18:57:19.761Z""#)
        );
    }

    #[test]
    fn header_names_in_any_case() {
        let headers = signed(BODY);
        let upper: Vec<(String, &str)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.as_str()))
            .collect();
        let refs: Vec<(&str, &str)> = upper.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert!(run(&refs, "POST", BODY, &config()).is_ok());
    }

    #[test]
    fn each_refusal_and_its_status() {
        let headers = signed(BODY);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let status = |r: Result<Accepted, IngestError>| r.unwrap_err().status();

        assert_eq!(status(run(&refs, "GET", BODY, &config())), 405);
        assert_eq!(
            status(run_signed(&[("content-type", "text/plain")], BODY)),
            415
        );
        assert_eq!(status(run(&refs[1..], "POST", BODY, &config())), 415);
        let mut twice = refs.clone();
        twice.push(refs[1]);
        assert_eq!(status(run(&twice, "POST", BODY, &config())), 400);
        assert_eq!(status(run(&refs[..2], "POST", BODY, &config())), 401);
        let tampered = BODY.replace("ws", "wz");
        assert_eq!(status(run(&refs, "POST", &tampered, &config())), 401);
        assert_eq!(status(run_signed(&[], "{nope")), 400);
        assert_eq!(status(run_signed(&[], r#"{"hello":"world"}"#)), 400);
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
        assert_eq!(status(run_signed(&[], &big)), 413);
    }

    #[test]
    fn unsigned_only_when_allowed() {
        let plain = [("content-type", "application/json")];
        assert_eq!(
            run(&plain, "POST", BODY, &config()).unwrap_err(),
            IngestError::MissingSignature("X-Twenty-Webhook-Signature")
        );
        let open = Config {
            allow_unsigned: true,
            ..config()
        };
        let accepted = run(&plain, "POST", BODY, &open).unwrap();
        assert!(
            accepted.messages[0]
                .body
                .contains(r#""signatureVerified":false"#)
        );
        // A forged signature is still checked when unsigned deliveries are allowed.
        let forged = run_signed(&[("x-twenty-webhook-signature", &"0".repeat(64))], BODY);
        assert_eq!(forged.unwrap_err().status(), 401);
        let no_secret = Config {
            secret: None,
            ..open
        };
        let headers = signed(BODY);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            run(&refs, "POST", BODY, &no_secret).unwrap_err(),
            IngestError::NoSecretConfigured
        );
    }

    #[test]
    fn the_url_token_gates_signed_and_unsigned_deliveries() {
        const TOKEN: &str = "the-url-token-0123";
        let gated = |allow_unsigned| Config {
            url_token: Some(UrlToken::parse(TOKEN).unwrap()),
            allow_unsigned,
            ..config()
        };
        let signed_headers = signed(BODY);
        let signed: Vec<(&str, &str)> = signed_headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let unsigned = [("content-type", "application/json")];
        let right = [("token", TOKEN)];
        let wrong = [("token", "the-url-token-0124")];
        let twice = [("token", TOKEN), ("token", TOKEN)];

        for headers in [&signed[..], &unsigned[..]] {
            for (query, why) in [
                (&[][..], "missing"),
                (&wrong[..], "does not match"),
                (&twice[..], "given more than once"),
            ] {
                let err = run_at(headers, query, "POST", BODY, &gated(true)).unwrap_err();
                assert_eq!(err, IngestError::UrlToken(why));
                assert_eq!((err.status(), err.code()), (401, "invalid_url_token"));
                assert!(!err.to_string().contains(TOKEN));
            }
            assert!(run_at(headers, &right, "POST", BODY, &gated(true)).is_ok());
        }
        // The token is a second gate, not a replacement for the signature.
        assert_eq!(
            run_at(&unsigned, &right, "POST", BODY, &gated(false)).unwrap_err(),
            IngestError::MissingSignature("X-Twenty-Webhook-Signature")
        );
        let forged = [
            ("content-type", "application/json"),
            ("x-twenty-webhook-timestamp", "1735066639761"),
            ("x-twenty-webhook-signature", &"0".repeat(64)[..]),
        ];
        assert_eq!(
            run_at(&forged, &right, "POST", BODY, &gated(false))
                .unwrap_err()
                .code(),
            "invalid_signature"
        );
        // Without a token configured, a token in the URL changes nothing.
        assert!(run_at(&signed, &wrong, "POST", BODY, &config()).is_ok());
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/cloudevents+json",
        ] {
            assert!(is_json(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "text/json",
            "application/jsonx",
            "",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json(bad.as_bytes()), "{bad}");
        }
        assert!(!is_json(&[0xff, 0xfe]));
    }
}
