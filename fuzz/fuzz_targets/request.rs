//! Headers and body, as an attacker controls them, to a verdict. Half the inputs are
//! signed correctly, so the fuzzer gets past the signature into parsing and envelopes.
//!
//! Checks, beyond "never panics": every refusal has a status from the documented set; every
//! acceptance is signed, yields at least one message and no more than a delivery may fan
//! out to, each within SQS's limit, each a JSON envelope whose id is the SHA-256 of the
//! body. Half the inputs run with a payload bucket, where large envelopes become claim
//! checks. `scripts/fuzz` lets inputs grow past the 1 MiB body limit.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use twenty_webhook::ingest::config::{AckMode, Config, Refresh, Secret};
use twenty_webhook::envelope::{
    MAX_ENVELOPE_BYTES_PER_DELIVERY, MAX_MESSAGES_PER_DELIVERY, SQS_MAX_MESSAGE_BYTES, body_sha256,
};
use twenty_webhook::ingest::{Inbound, accept};
use twenty_webhook::twenty::signature::sign;

const SECRET: &str = "fuzz-secret";
const NOW_MS: u64 = 1_739_201_445_123;

#[derive(Arbitrary, Debug)]
struct Request<'a> {
    method: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
    /// Add a correct signature and timestamp (offset within ±10 min) to the headers.
    signed: Option<i16>,
    allow_unsigned: bool,
    /// Configure a payload bucket (claim checks, bodies up to 6 MiB).
    bucket: bool,
}

fuzz_target!(|input: Request<'_>| {
    let config = Config {
        queue_url: "https://sqs.eu-west-1.amazonaws.com/1/q.fifo".into(),
        fifo: true,
        secret: None,
        secret_refresh: Refresh::default(),
        url_token: None,
        tolerance: Duration::from_secs(300),
        ack_mode: AckMode::Immediate,
        allow_unsigned: input.allow_unsigned,
        retry_budget: Duration::from_secs(20),
        payload_bucket: input.bucket.then(|| "payloads".to_owned()),
    };
    let mut headers = input.headers.clone();
    let (ts, sig);
    if let Some(offset) = input.signed {
        ts = (NOW_MS as i64 + i64::from(offset) * 20).to_string();
        sig = sign(SECRET.as_bytes(), &ts, input.body);
        headers.push(("x-twenty-webhook-timestamp", ts.as_bytes()));
        headers.push(("x-twenty-webhook-signature", sig.as_bytes()));
        headers.push(("content-type", b"application/json"));
    }
    let now = UNIX_EPOCH + Duration::from_millis(NOW_MS);
    let verdict = Inbound::new(input.method, headers, input.body)
        .and_then(|inbound| accept(&inbound, &config, &[Secret::new("old"), Secret::new(SECRET)], now));
    match verdict {
        Err(err) => {
            assert!([400, 401, 405, 413, 415].contains(&err.status()), "{err:?}");
            assert!(!err.to_string().is_empty());
        }
        Ok(accepted) => {
            assert_eq!(accepted.id, body_sha256(input.body));
            assert!(!accepted.messages.is_empty());
            assert!(accepted.messages.len() <= MAX_MESSAGES_PER_DELIVERY);
            let mut total = 0;
            for m in &accepted.messages {
                assert!(m.sqs_size() <= SQS_MAX_MESSAGE_BYTES);
                let envelope: serde_json::Value = serde_json::from_str(&m.body).unwrap();
                assert!(envelope["id"].as_str().unwrap().starts_with(&accepted.id));
                assert!(m.fifo.is_some());
                if let Some(claim) = &m.claim {
                    assert!(input.bucket);
                    assert_eq!(
                        envelope["claimCheck"]["sha256"],
                        body_sha256(claim.envelope.as_bytes())
                    );
                    total += claim.envelope.len();
                } else {
                    total += m.body.len();
                }
            }
            assert!(total <= MAX_ENVELOPE_BYTES_PER_DELIVERY);
        }
    }
});
