//! Properties of the request path, over generated Twenty payloads (proptest):
//! any change to the body, the timestamp or the signature is refused; any correctly signed
//! payload becomes messages that carry its record byte for byte.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::Value;
use twenty_webhook::envelope::body_sha256;
use twenty_webhook::ingest::config::{AckMode, Config, Refresh, Secret};
use twenty_webhook::ingest::error::IngestError;
use twenty_webhook::ingest::{Accepted, Inbound, accept};
use twenty_webhook::twenty::signature::sign;

const NOW_MS: u64 = 1_739_201_445_123;

fn config() -> Config {
    Config {
        queue_url: "https://sqs.eu-west-1.amazonaws.com/1/q".into(),
        fifo: false,
        secret: None,
        secret_refresh: Refresh::default(),
        url_token: None,
        tolerance: Duration::from_secs(300),
        ack_mode: AckMode::Immediate,
        allow_unsigned: false,
        retry_budget: Duration::from_secs(20),
        payload_bucket: None,
    }
}

fn run(secret: &str, ts: &str, sig: &str, body: &[u8]) -> Result<Accepted, IngestError> {
    let headers = [
        ("content-type", b"application/json".as_slice()),
        ("x-twenty-webhook-timestamp", ts.as_bytes()),
        ("x-twenty-webhook-signature", sig.as_bytes()),
    ];
    let inbound = Inbound::new("POST", headers, body)?;
    accept(
        &inbound,
        &config(),
        &[Secret::new(secret)],
        UNIX_EPOCH + Duration::from_millis(NOW_MS),
    )
}

/// Any JSON value: nulls, booleans, integers, floats, any printable text, nested.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        proptest::num::f64::NORMAL.prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A single-record delivery with a random record, serialised as Twenty does.
fn delivery() -> impl Strategy<Value = (String, String)> {
    (
        "[a-z][a-zA-Z]{0,12}\\.(created|updated|deleted|destroyed|restored)",
        "\\PC{1,20}",
        prop::collection::btree_map("[a-zA-Z_]{1,10}", json(), 0..6),
    )
        .prop_map(|(event, id, fields)| {
            let mut record = serde_json::Map::new();
            record.insert("id".into(), Value::from(id));
            record.extend(fields);
            let record = serde_json::to_string(&Value::Object(record)).unwrap();
            let body = format!(
                r#"{{"eventName":"{event}","workspaceId":"ws","webhookId":"wh","eventDate":"2025-02-10T15:30:45.123Z","record":{record}}}"#
            );
            (body, record)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_signed_payload_round_trips(
        (body, record) in delivery(),
        secret in "\\PC{1,40}",
        skew in -299_000i64..299_000,
    ) {
        prop_assume!(!secret.contains(','));
        let ts = (NOW_MS as i64 + skew).to_string();
        let sig = sign(secret.as_bytes(), &ts, body.as_bytes());
        let accepted = run(&secret, &ts, &sig, body.as_bytes()).unwrap();
        prop_assert_eq!(&accepted.id, &body_sha256(body.as_bytes()));
        prop_assert_eq!(accepted.messages.len(), 1);
        let message = &accepted.messages[0].body;
        // Byte for byte: the record text appears unchanged in the queued message ...
        let needle = format!(r#""record":{record},"#);
        prop_assert!(message.contains(&needle));
        // ... and it parses back to the same value.
        let envelope: Value = serde_json::from_str(message).unwrap();
        let original: Value = serde_json::from_str(&record).unwrap();
        prop_assert_eq!(&envelope["record"], &original);
        prop_assert_eq!(&envelope["id"], &Value::from(accepted.id.clone()));
    }

    #[test]
    fn any_change_to_the_body_is_refused(
        (body, _) in delivery(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let ts = NOW_MS.to_string();
        let sig = sign(b"k", &ts, body.as_bytes());
        let mut tampered = body.into_bytes();
        let i = at.index(tampered.len());
        tampered[i] ^= flip;
        let err = run("k", &ts, &sig, &tampered).unwrap_err();
        prop_assert_eq!(err.status(), 401);
    }

    #[test]
    fn any_change_to_the_timestamp_is_refused(
        (body, _) in delivery(),
        other in 1u64..1_000_000,
    ) {
        let ts = NOW_MS.to_string();
        let sig = sign(b"k", &ts, body.as_bytes());
        let moved = (NOW_MS - 300_000 + other).to_string();
        prop_assume!(moved != ts);
        let err = run("k", &moved, &sig, body.as_bytes()).unwrap_err();
        prop_assert_eq!(err.status(), 401);
    }

    #[test]
    fn any_change_to_the_signature_is_refused(
        (body, _) in delivery(),
        at in 0usize..64,
        digit in "[0-9a-f]",
    ) {
        let ts = NOW_MS.to_string();
        let sig = sign(b"k", &ts, body.as_bytes());
        prop_assume!(sig[at..=at] != digit);
        let mut changed = sig.clone();
        changed.replace_range(at..=at, &digit);
        let err = run("k", &ts, &changed, body.as_bytes()).unwrap_err();
        prop_assert_eq!(err.status(), 401);
    }
}
