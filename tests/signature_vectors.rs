//! Python's hmac computed these vectors (tests/fixtures/signature_vectors.py); ours must agree.

use std::time::Duration;

use serde::Deserialize;
use twenty_webhook::ingest::config::Secret;
use twenty_webhook::twenty::signature::{SignatureError, sign, verify};

#[derive(Deserialize)]
struct Vector {
    name: String,
    secret: String,
    timestamp: String,
    body: String,
    signature: String,
    now_ms: u64,
    expect: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("fixtures/signature_vectors.json");
    serde_json::from_str(text).expect("fixture parses")
}

#[test]
fn every_vector_gets_the_expected_verdict() {
    let vectors = vectors();
    assert!(vectors.len() >= 20, "fixture lost its vectors");
    for v in vectors {
        let got = verify(
            &[Secret::new(v.secret.as_bytes())],
            &v.timestamp,
            &v.signature,
            v.body.as_bytes(),
            v.now_ms,
            Duration::from_secs(300),
        );
        let got = match got {
            Ok(()) => "ok",
            Err(SignatureError::Mismatch) => "mismatch",
            Err(SignatureError::MalformedSignature) => "malformed_signature",
            Err(SignatureError::MalformedTimestamp) => "malformed_timestamp",
            Err(SignatureError::Stale(_)) => "stale",
            Err(SignatureError::Future(_)) => "future",
        };
        assert_eq!(got, v.expect, "vector {:?}", v.name);
    }
}

#[test]
fn we_compute_the_same_signatures_as_python() {
    let mut checked = 0;
    for v in vectors().into_iter().filter(|v| v.expect == "ok") {
        let ours = sign(v.secret.as_bytes(), &v.timestamp, v.body.as_bytes());
        assert_eq!(
            ours,
            v.signature.to_ascii_lowercase(),
            "vector {:?}",
            v.name
        );
        checked += 1;
    }
    assert!(checked >= 5);
}
