//! The request path without I/O (verify, parse, build the queued messages) on realistic
//! Twenty payloads of about 1 KiB, 16 KiB and 512 KiB, beside its floor on the same input:
//! HMAC-SHA256 alone plus a plain `serde_json` parse.
//!
//! Also writes the corpus to target/bench-corpus/, where the Node.js peer
//! (benches/peer/receiver.js) reads the very same bytes. `scripts/bench` runs both and
//! prints the comparison.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use twenty_webhook::ingest::config::{AckMode, Config, Refresh, Secret};
use twenty_webhook::ingest::{Inbound, accept};
use twenty_webhook::twenty::signature;

const SECRET: &str = "bench-secret-3f9a1c0e7b2d4e6f8a0b1c2d3e4f5a6b";
const SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("16KiB", 16 * 1024), ("512KiB", 512 * 1024)];

/// A person.updated delivery as Twenty sends it, grown with realistic custom fields (an
/// activity log of nested objects, non-ASCII text, numbers, nulls) to about `target` bytes.
fn payload(target: usize) -> String {
    let head = r#"{"targetUrl":"https://abcdefghij.lambda-url.eu-west-1.on.aws/","eventName":"person.updated","objectMetadata":{"id":"5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001","nameSingular":"person"},"workspaceId":"20202020-1c25-4d02-bf25-6aeccf7ea419","webhookId":"8c2b6a4e-77a4-4b5e-9f0e-5a1d2c3b4e01","eventDate":"2025-02-10T15:30:45.123Z","userId":"2f4e8b1a-0c3d-4e5f-9a8b-7c6d5e4f3a21","workspaceMemberId":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d","record":{"id":"d0a4c7e2-3b5f-4a61-8c9d-0e1f2a3b4c5d","name":{"firstName":"Zoë","lastName":"Nguyễn"},"emails":{"primaryEmail":"zoe@example.com","additionalEmails":null},"phones":{"primaryPhoneNumber":"612345678","primaryPhoneCountryCode":"FR","primaryPhoneCallingCode":"+33","additionalPhones":[]},"jobTitle":"CTO","city":"Lyon","position":3,"score":87.5,"companyId":"4b1f2e3d-5c6a-4b7c-8d9e-0f1a2b3c4d5e","createdAt":"2025-02-10T15:30:45.000Z","updatedAt":"2025-02-10T15:30:45.000Z","deletedAt":null,"activity":["#;
    let tail = r#"]},"updatedFields":["jobTitle","city","activity"]}"#;
    let mut body = String::from(head);
    let mut i = 0;
    while body.len() + tail.len() < target {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"a{i:05}","type":"note","happenedAt":"2025-02-{:02}T10:{:02}:00.000Z","title":"Réunion n°{i}","amount":{{"amountMicros":{},"currencyCode":"EUR"}},"done":{},"tags":["crm","suivi"],"by":null}}"#,
            1 + i % 28,
            i % 60,
            i * 1_000_000,
            i % 2 == 0
        ));
        i += 1;
    }
    body.push_str(tail);
    body
}

fn config() -> Config {
    Config {
        queue_url: "https://sqs.eu-west-1.amazonaws.com/123456789012/events".into(),
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

fn bench(c: &mut Criterion) {
    let config = config();
    let secrets = [Secret::new(SECRET)];
    let now = SystemTime::now();
    let ts = now
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let corpus_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-corpus");
    std::fs::create_dir_all(&corpus_dir).unwrap();

    let mut group = c.benchmark_group("request_path");
    for (name, size) in SIZES {
        let body = payload(size);
        let sig = signature::sign(SECRET.as_bytes(), &ts, body.as_bytes());
        std::fs::write(corpus_dir.join(format!("{name}.json")), &body).unwrap();
        std::fs::write(
            corpus_dir.join(format!("{name}.headers.json")),
            serde_json::json!({ "secret": SECRET, "timestamp": ts, "signature": sig }).to_string(),
        )
        .unwrap();
        let headers = [
            ("content-type", b"application/json".as_slice()),
            ("x-twenty-webhook-timestamp", ts.as_bytes()),
            ("x-twenty-webhook-signature", sig.as_bytes()),
        ];
        // Checked once outside the loop: the measured path must be the accepting one.
        let inbound = Inbound::new("POST", headers, body.as_bytes()).unwrap();
        assert_eq!(
            accept(&inbound, &config, &secrets, now)
                .unwrap()
                .messages
                .len(),
            1
        );

        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("ours", name), &body, |b, body| {
            b.iter(|| {
                let inbound = Inbound::new("POST", headers, body.as_bytes()).unwrap();
                black_box(accept(black_box(&inbound), &config, &secrets, now).unwrap())
            })
        });
        group.bench_with_input(BenchmarkId::new("floor", name), &body, |b, body| {
            b.iter(|| {
                signature::verify(
                    &secrets,
                    &ts,
                    &sig,
                    black_box(body.as_bytes()),
                    now.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
                    config.tolerance,
                )
                .unwrap();
                black_box(serde_json::from_slice::<serde_json::Value>(body.as_bytes()).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
