//! Events too large for SQS, against moto's S3 and SQS: stored in S3 with a pointer queued
//! (the claim-check pattern), resolvable by a worker, and kept through an S3 failure.

mod support;

use std::time::Duration;

use support::*;
use twenty_webhook::aws::{PayloadStore, ResolveError, SqsTransport};
use twenty_webhook::ingest::config::AckMode;

/// A person whose notes make the delivery about 1.5 MB.
fn large_person(id: &str) -> String {
    person_created(id).replace(
        r#""city":"Paris""#,
        &format!(
            r#""city":"Paris","notes":"{}""#,
            "Zoë écrit. ".repeat(120_000)
        ),
    )
}

async fn store() -> PayloadStore {
    PayloadStore::with_sdk_config(&sdk_config(moto_endpoint()).await)
}

#[tokio::test]
async fn a_large_event_is_stored_in_s3_and_the_queue_gets_a_pointer() {
    let client = sqs().await;
    let url = new_queue(&client, true).await;
    let bucket = new_bucket().await;
    let mut config = config(&url, AckMode::Immediate);
    config.payload_bucket = Some(bucket.clone());
    let h = Harness::with_config(client, config, moto_endpoint()).await;

    let body = large_person("big-1");
    assert!(body.len() > 1024 * 1024);
    let (status, json) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 200, "{json}");

    let queued = h.queued().await;
    assert_eq!(queued.len(), 1);
    let pointer = queued[0].body().unwrap();
    assert!(pointer.len() < 4096, "the queued message is only a pointer");
    let p: serde_json::Value = serde_json::from_str(pointer).unwrap();
    assert_eq!(p["claimCheck"]["bucket"], bucket.as_str());
    assert_eq!(p["recordId"], "big-1");
    assert_eq!(p["record"], serde_json::Value::Null);
    assert_eq!(attribute(&queued[0], "eventName"), Some("person.created"));

    // What a worker does: resolve the pointer to the whole envelope.
    let whole = store().await.resolve(pointer).await.unwrap();
    let e: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(e["id"], json["id"]);
    assert_eq!(e["claimCheck"], serde_json::Value::Null);
    assert!(
        e["record"]["notes"]
            .as_str()
            .unwrap()
            .starts_with("Zoë écrit.")
    );
    assert!(h.fallback.lock().unwrap().is_empty());
}

#[tokio::test]
async fn resolving_an_inline_message_returns_it_and_a_tampered_object_is_refused() {
    let store = store().await;
    let inline = r#"{"version":1,"id":"x","claimCheck":null,"record":{"id":"r"}}"#;
    assert_eq!(store.resolve(inline).await.unwrap(), inline);
    assert!(matches!(
        store.resolve("not json").await,
        Err(ResolveError::NotAnEnvelope)
    ));

    let bucket = new_bucket().await;
    s3().await
        .put_object()
        .bucket(&bucket)
        .key("k")
        .body(b"{\"changed\":true}".to_vec().into())
        .send()
        .await
        .unwrap();
    let pointer = format!(
        r#"{{"claimCheck":{{"bucket":"{bucket}","key":"k","bytes":2,"sha256":"{}"}}}}"#,
        twenty_webhook::envelope::body_sha256(b"{}")
    );
    assert!(matches!(
        store.resolve(&pointer).await,
        Err(ResolveError::Mismatch)
    ));
}

#[tokio::test]
async fn without_a_bucket_a_large_event_is_refused_before_acknowledgement() {
    let h = Harness::new(false, AckMode::Immediate).await;
    let body = large_person("big-2");
    let (status, json) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 413, "{json}");
    assert!(h.queued().await.is_empty());
}

#[tokio::test]
async fn when_s3_fails_the_event_goes_to_the_fallback_and_replays_through_s3() {
    let client = sqs().await;
    let url = new_queue(&client, false).await;
    // A bucket that does not exist yet: S3 refuses the put for good.
    let bucket = format!("later-{}", std::process::id());
    let mut config = config(&url, AckMode::Immediate);
    config.payload_bucket = Some(bucket.clone());
    config.retry_budget = Duration::from_secs(2);
    let h = Harness::with_config(client.clone(), config, moto_endpoint()).await;

    let body = large_person("big-3");
    let (status, _) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 200);
    assert!(
        h.queued().await.is_empty(),
        "no pointer without its envelope"
    );
    let log = h.fallback.lock().unwrap().clone();
    assert!(
        log.lines().count() > 1,
        "the large envelope is split over lines"
    );

    // Once the bucket exists, replay stores the envelope and queues the pointer.
    s3().await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let sdk = sdk_config(moto_endpoint()).await;
    let queue = SqsTransport::with_sdk_config(&sdk, &url).with_payload_store(store().await);
    let report = twenty_webhook::replay::replay(
        &queue,
        &log,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert_eq!(report.sent.len(), 1, "{report:?}");
    let queued = drain(&client, &url, Duration::from_secs(1)).await;
    assert_eq!(queued.len(), 1);
    let whole = store()
        .await
        .resolve(queued[0].body().unwrap())
        .await
        .unwrap();
    assert!(whole.contains(r#""recordId":"big-3""#));
}
