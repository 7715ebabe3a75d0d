//! The whole handler against moto's SQS server over HTTP: what reaches the queue, and that
//! nothing does when a request is refused.

mod support;

use std::time::Duration;

use support::*;
use twenty_webhook::ingest::config::AckMode;

#[tokio::test]
async fn a_signed_record_event_is_queued_with_its_envelope_and_attributes() {
    let h = Harness::new(false, AckMode::Immediate).await;
    let body = person_created("r-1");
    let (status, json) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "accepted");
    assert_eq!(json["messages"], 1);

    let queued = h.queued().await;
    assert_eq!(queued.len(), 1);
    let m = &queued[0];
    let e = envelope(m);
    assert_eq!(e["version"], 1);
    assert_eq!(e["id"], json["id"]);
    assert_eq!(e["id"].as_str().unwrap().len(), 64);
    assert_eq!(e["eventName"], "person.created");
    assert_eq!(e["objectName"], "person");
    assert_eq!(e["action"], "created");
    assert_eq!(e["recordId"], "r-1");
    assert_eq!(e["workspaceId"], "20202020-1c25-4d02-bf25-6aeccf7ea419");
    assert_eq!(e["webhookId"], "8c2b6a4e-77a4-4b5e-9f0e-111111111111");
    assert_eq!(e["eventDate"], "2025-02-10T15:30:45.123Z");
    assert_eq!(e["record"]["name"]["firstName"], "Zoë");
    assert_eq!(e["updatedFields"], serde_json::Value::Null);
    assert_eq!(e["signatureVerified"], true);
    assert!(e["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(attribute(m, "eventName"), Some("person.created"));
    assert_eq!(attribute(m, "objectName"), Some("person"));
    assert_eq!(attribute(m, "action"), Some("created"));
    assert_eq!(
        attribute(m, "workspaceId"),
        Some("20202020-1c25-4d02-bf25-6aeccf7ea419")
    );
}

#[tokio::test]
async fn fifo_messages_carry_group_and_deduplication_ids_and_a_repeat_is_dropped() {
    let h = Harness::new(true, AckMode::Immediate).await;
    let body = person_created("r-7");
    let (first, json) = h.post(&twenty_headers(&body), &body).await;
    // The same body again (a person re-saving, a proxy retrying) with a new signature.
    let (second, _) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!((first, second), (200, 200));

    let queued = h.queued().await;
    assert_eq!(queued.len(), 1, "FIFO deduplication drops the repeat");
    let attrs = queued[0].attributes().unwrap();
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    assert_eq!(attrs[&A::MessageGroupId], "person:r-7");
    assert_eq!(
        attrs[&A::MessageDeduplicationId],
        json["id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn a_batch_becomes_one_message_per_item_in_order() {
    for fifo in [false, true] {
        let h = Harness::new(fifo, AckMode::Immediate).await;
        let body = r#"{"targetUrl":"https://example.com/hook","eventName":"company.updated","objectMetadata":{"id":"om","nameSingular":"company"},"workspaceId":"ws-9","webhookId":"wh","eventDate":"2025-02-10T15:30:45.123Z","items":[{"record":{"id":"c-1","name":"Acme"},"updatedFields":["name"]},{"record":{"id":"c-2","name":"Globex"},"updatedFields":["name","domainName"]},{"record":{"id":"c-3","name":null},"updatedFields":["name"]}],"batchSize":3}"#;
        let (status, json) = h.post(&twenty_headers(body), body).await;
        assert_eq!(status, 200);
        assert_eq!(json["messages"], 3);
        let mut queued: Vec<_> = h.queued().await.iter().map(envelope).collect();
        assert_eq!(queued.len(), 3, "fifo={fifo}");
        queued.sort_by_key(|e| e["batch"]["index"].as_u64());
        let id = json["id"].as_str().unwrap();
        for (i, e) in queued.iter().enumerate() {
            assert_eq!(e["id"], format!("{id}:{i}"));
            assert_eq!(e["recordId"], format!("c-{}", i + 1));
            assert_eq!(e["batch"]["size"], 3);
            assert_eq!(e["shape"], "batch");
        }
        assert_eq!(queued[1]["updatedFields"][1], "domainName");
    }
}

#[tokio::test]
async fn schema_and_documented_shapes_are_queued() {
    let h = Harness::new(false, AckMode::Immediate).await;
    let schema = r#"{"targetUrl":"https://example.com/hook","eventName":"metadata.fieldMetadata.created","workspaceId":"ws","webhookId":"wh","eventDate":"2025-02-10T15:30:45.123Z","apiKeyId":"key-1","event":{"metadataName":"fieldMetadata","recordId":"f-1","properties":{"after":{"name":"rating"}},"type":"created"}}"#;
    let documented =
        r#"{"event":"person.created","data":{"id":"p-1"},"timestamp":"2025-02-10T15:30:50Z"}"#;
    for body in [schema, documented] {
        let (status, json) = h.post(&twenty_headers(body), body).await;
        assert_eq!(status, 200, "{json}");
    }
    let mut queued: Vec<_> = h.queued().await.iter().map(envelope).collect();
    queued.sort_by_key(|e| e["shape"].as_str().map(str::to_owned));
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0]["shape"], "documented");
    assert_eq!(queued[0]["recordId"], "p-1");
    assert_eq!(queued[0]["eventDate"], "2025-02-10T15:30:50Z");
    assert_eq!(queued[1]["shape"], "metadata");
    assert_eq!(queued[1]["objectName"], "metadata.fieldMetadata");
    assert_eq!(queued[1]["recordId"], "f-1");
    assert_eq!(queued[1]["apiKeyId"], "key-1");
}

struct Case {
    what: &'static str,
    status: u16,
    code: &'static str,
    method: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[tokio::test]
async fn every_refused_request_gets_its_status_and_queues_nothing() {
    let h = Harness::new(false, AckMode::Immediate).await;
    let body = person_created("r-2");
    let good = twenty_headers(&body);
    let without = |name: &str| -> Vec<(String, String)> {
        good.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut h = without(name);
        h.push((name.to_owned(), value.to_owned()));
        h
    };
    let stale_ts = (now_ms().parse::<u64>().unwrap() - 301_000).to_string();
    let stale_sig =
        twenty_webhook::twenty::signature::sign(SECRET.as_bytes(), &stale_ts, body.as_bytes());
    let stale = {
        let h = with("x-twenty-webhook-timestamp", &stale_ts);
        h.into_iter()
            .filter(|(k, _)| k != "x-twenty-webhook-signature")
            .chain([("x-twenty-webhook-signature".to_owned(), stale_sig)])
            .collect::<Vec<_>>()
    };
    let malformed = r#"{"eventName":"person.created","record":{"id":"r-2""#;
    let not_twenty = r#"{"hello":"world"}"#;
    let huge = format!(
        r#"{{"eventName":"note.created","record":{{"id":"n","body":"{}"}}}}"#,
        "x".repeat(1024 * 1024)
    );

    let cases = [
        Case {
            what: "GET",
            status: 405,
            code: "method_not_allowed",
            method: "GET",
            headers: good.clone(),
            body: body.clone().into(),
        },
        Case {
            what: "text/plain",
            status: 415,
            code: "unsupported_media_type",
            method: "POST",
            headers: with("content-type", "text/plain"),
            body: body.clone().into(),
        },
        Case {
            what: "no content type",
            status: 415,
            code: "unsupported_media_type",
            method: "POST",
            headers: without("content-type"),
            body: body.clone().into(),
        },
        Case {
            what: "over 1 MiB",
            status: 413,
            code: "payload_too_large",
            method: "POST",
            headers: twenty_headers(&huge),
            body: huge.clone().into(),
        },
        Case {
            what: "no signature",
            status: 401,
            code: "missing_signature",
            method: "POST",
            headers: without("x-twenty-webhook-signature"),
            body: body.clone().into(),
        },
        Case {
            what: "no timestamp",
            status: 401,
            code: "missing_signature",
            method: "POST",
            headers: without("x-twenty-webhook-timestamp"),
            body: body.clone().into(),
        },
        Case {
            what: "wrong signature",
            status: 401,
            code: "invalid_signature",
            method: "POST",
            headers: with("x-twenty-webhook-signature", &"ab".repeat(32)),
            body: body.clone().into(),
        },
        Case {
            what: "tampered body",
            status: 401,
            code: "invalid_signature",
            method: "POST",
            headers: good.clone(),
            body: body.replace("Paris", "Lyon").into(),
        },
        Case {
            what: "stale",
            status: 401,
            code: "timestamp_out_of_window",
            method: "POST",
            headers: stale,
            body: body.clone().into(),
        },
        Case {
            what: "malformed JSON",
            status: 400,
            code: "malformed_json",
            method: "POST",
            headers: twenty_headers(malformed),
            body: malformed.into(),
        },
        Case {
            what: "not a Twenty event",
            status: 400,
            code: "not_a_twenty_event",
            method: "POST",
            headers: twenty_headers(not_twenty),
            body: not_twenty.into(),
        },
    ];
    for Case {
        what,
        status,
        code,
        method,
        headers,
        body,
    } in cases
    {
        let (got, json) = h.send(method, &headers, body).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"], code, "{what}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    assert!(
        h.queued().await.is_empty(),
        "a refused request queued something"
    );
}

#[tokio::test]
async fn after_enqueue_answers_once_sqs_has_the_message() {
    let h = Harness::new(false, AckMode::AfterEnqueue).await;
    let body = person_created("r-3");
    let (status, json) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "queued");
    let queued = drain(&h.client, &h.url, Duration::ZERO).await;
    assert_eq!(queued.len(), 1, "already in the queue when the answer came");
}

#[tokio::test]
async fn after_enqueue_answers_503_when_sqs_is_unreachable() {
    let client = sqs().await;
    let url = new_queue(&client, false).await;
    // A port nothing listens on: bind, note, release.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let h = Harness::with_config(client, config(&url, AckMode::AfterEnqueue), &closed).await;
    let body = person_created("r-4");
    let (status, json) = h.post(&twenty_headers(&body), &body).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"], "queue_unavailable");
}
