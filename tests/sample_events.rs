//! The sample events in `events/` get the answers `events/expected.json` promises, once
//! re-signed with the current time the way `scripts/twenty-event` does.

mod support;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use support::*;
use twenty_webhook::ingest::config::AckMode;

#[derive(Deserialize)]
struct Expected {
    resign: bool,
    status: u16,
    messages: usize,
}

fn resign(event: &mut serde_json::Value) {
    let body = event["body"].as_str().unwrap().to_owned();
    let raw = if event["isBase64Encoded"] == true {
        String::from_utf8(STANDARD.decode(body).unwrap()).unwrap()
    } else {
        body
    };
    let ts = now_ms();
    let sig = twenty_webhook::twenty::signature::sign(SECRET.as_bytes(), &ts, raw.as_bytes());
    event["headers"]["x-twenty-webhook-timestamp"] = ts.into();
    event["headers"]["x-twenty-webhook-signature"] = sig.into();
}

#[tokio::test]
async fn every_sample_event_gets_its_documented_answer() {
    let dir = project_dir().join("events");
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(expected.len() >= 12);
    // Kept for tests/check_envelope_schema.py, which holds them to the published schema.
    let out = project_dir().join("target/sample-envelopes");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for (name, want) in expected {
        let h = Harness::new(false, AckMode::Immediate).await;
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
        if want.resign {
            resign(&mut event);
        }
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("a Function URL event");
        let (status, json) = h.handle(request).await;
        assert_eq!(status, want.status, "{name}: {json}");
        let queued = h.queued().await;
        assert_eq!(queued.len(), want.messages, "{name}");
        for (i, m) in queued.iter().enumerate() {
            std::fs::write(out.join(format!("{name}-{i}.json")), m.body().unwrap()).unwrap();
        }
    }
}
