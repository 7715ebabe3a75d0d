//! The last hop's costs, printed, not asserted (see docs/performance.md), with the release
//! binaries as Lambda runs them (stub Runtime API, moto for SQS, S3 and DynamoDB, JSON logs
//! at INFO):
//!
//! 1. log bytes per delivered event (worker) and per accepted event (ingest);
//! 2. DynamoDB writes per forwarded event: the ledger, the breaker on the happy path, and
//!    the rate limit with `maxPerSecond` 8 (two workers sharing it);
//! 3. peak resident memory of a worker forwarding ten ~6 MiB claim-check events to three
//!    rules.
//!
//!     scripts/last-hop-bench [EVENTS]   (default 200)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::counting_proxy::CountingProxy;
use support::destination::Destination;
use support::event_source::{Source, WorkerProcess};
use support::ingest_process::IngestProcess;
use support::lambda_api::LambdaApi;
use twenty_webhook::aws::PayloadStore;
use twenty_webhook::delivery::Transport;
use twenty_webhook::envelope::{Destination as Target, Message};

const WORKER: &str = "target/release/twenty-worker";
const INGEST: &str = "target/release/twenty-webhook";
const JSON_LOGS: [(&str, &str); 2] = [
    ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
];

fn message(record: &str, bucket: Option<&str>, padding: usize) -> Message {
    let body = format!(
        r#"{{"eventName":"person.updated","workspaceId":"ws","record":{{"id":"{record}","updatedAt":"2026-11-29T10:00:00.000Z","name":{{"firstName":"Zoë","lastName":"Martin"}},"emails":{{"primaryEmail":"zoe@example.com"}},"notes":"{}"}},"updatedFields":["emails"]}}"#,
        "x".repeat(padding)
    );
    let target = Target {
        fifo: false,
        payload_bucket: bucket,
    };
    support::ingest_messages(&body, target).remove(0)
}

async fn queue_all(url: &str, messages: &[Message]) {
    let sdk = support::sdk_config(support::moto_endpoint()).await;
    let transport = twenty_webhook::aws::SqsTransport::with_sdk_config(&sdk, url)
        .with_payload_store(PayloadStore::with_sdk_config(&sdk));
    for chunk in messages.chunks(10) {
        for m in chunk.iter().filter_map(|m| m.claim.as_ref()) {
            transport.put_claim(m).await.unwrap();
        }
        let ids: Vec<String> = (0..chunk.len()).map(|i| i.to_string()).collect();
        let entries: Vec<_> = chunk
            .iter()
            .zip(&ids)
            .map(|(m, id)| twenty_webhook::delivery::Entry { id, message: m })
            .collect();
        transport.send_batch(&entries).await.unwrap();
    }
}

async fn until_taken(dest: &Destination, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let ids: std::collections::HashSet<String> = dest
            .requests()
            .iter()
            .map(|r| r.headers["webhook-id"].clone())
            .collect();
        if ids.len() >= n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn env(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .chain(JSON_LOGS.iter().map(|(k, v)| (*k, (*v).to_owned())))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let sqs = support::sqs().await;
    let proxy = CountingProxy::start(support::moto_endpoint()).await;
    let source = |url: &str| Source {
        queue_url: url.to_owned(),
        timeout: Duration::from_secs(30),
    };

    // 1 and 2: one worker, one rule, no limit, the table behind the counting proxy.
    let url = support::new_queue(&sqs, false).await;
    let dlq = support::new_queue(&sqs, false).await;
    let table = support::new_table().await;
    let dest = Destination::ok().await;
    let messages: Vec<Message> = (0..events)
        .map(|i| message(&format!("p{i}"), None, 0))
        .collect();
    queue_all(&url, &messages).await;
    let rules = format!(r#"[{{"name":"n8n","events":["*"],"url":"{}"}}]"#, dest.url);
    let worker = WorkerProcess::start(
        WORKER,
        &source(&url),
        &env(&[
            ("FORWARD_RULES", &rules),
            ("IDEMPOTENCY_TABLE", &table),
            ("DEAD_LETTER_QUEUE_URL", &dlq),
            ("AWS_ENDPOINT_URL_DYNAMODB", &proxy.url),
        ]),
    )
    .await;
    assert!(
        until_taken(&dest, events, Duration::from_secs(120)).await,
        "not all delivered"
    );
    let output = worker.stop().await;
    let per = |n: usize| n as f64 / events as f64;
    println!("worker, {events} events delivered, one rule, idempotency table:");
    println!(
        "  log bytes per delivered event (JSON, INFO): {:.0}",
        per(output.len())
    );
    let writes = |marker: &str| {
        ["PutItem", "UpdateItem", "DeleteItem"]
            .iter()
            .map(|op| proxy.count(op, marker))
            .sum::<usize>()
    };
    println!(
        "  table writes per event: ledger {:.2}, breaker {:.2}, all {:.2}",
        per(writes("#n8n")),
        per(writes("breaker#")),
        per(writes(""))
    );
    println!(
        "  breaker reads per event: {:.2}",
        per(proxy.count("GetItem", "breaker#"))
    );

    // 2: two workers sharing maxPerSecond through the table.
    let url = support::new_queue(&sqs, false).await;
    let dest = Destination::ok().await;
    let messages: Vec<Message> = (0..events)
        .map(|i| message(&format!("q{i}"), None, 0))
        .collect();
    queue_all(&url, &messages).await;
    let rules = format!(
        r#"[{{"name":"paced","events":["*"],"url":"{}","maxPerSecond":8}}]"#,
        dest.url
    );
    let settings = env(&[
        ("FORWARD_RULES", &rules),
        ("IDEMPOTENCY_TABLE", &table),
        ("DEAD_LETTER_QUEUE_URL", &dlq),
        ("AWS_ENDPOINT_URL_DYNAMODB", &proxy.url),
    ]);
    let started = Instant::now();
    let workers = [
        WorkerProcess::start(WORKER, &source(&url), &settings).await,
        WorkerProcess::start(WORKER, &source(&url), &settings).await,
    ];
    assert!(
        until_taken(&dest, events, Duration::from_secs(120)).await,
        "not all delivered"
    );
    let took = started.elapsed();
    for w in workers {
        w.stop().await;
    }
    println!(
        "two workers, maxPerSecond 8, {events} events in {:.1} s ({:.1}/s):",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    println!(
        "  rate-limit table writes per event {:.3}, reads {:.3}",
        per(writes("pace#")),
        per(proxy.count("GetItem", "pace#"))
    );

    // 3: ten ~6 MiB claim checks to three rules.
    let bucket = support::new_bucket().await;
    let url = support::new_queue(&sqs, false).await;
    let dest = Destination::ok().await;
    let big: Vec<Message> = (0..10)
        .map(|i| message(&format!("big{i}"), Some(&bucket), 6 * 1024 * 1024 - 4096))
        .collect();
    let size = big[0].claim.as_ref().map_or(0, |c| c.envelope.len());
    queue_all(&url, &big).await;
    let rules = format!(
        r#"[{{"name":"a","events":["*"],"url":"{u}"}},{{"name":"b","events":["*"],"url":"{u}"}},{{"name":"c","events":["*"],"url":"{u}"}}]"#,
        u = dest.url
    );
    let worker = WorkerProcess::start(
        WORKER,
        &source(&url),
        &env(&[("FORWARD_RULES", &rules), ("DEAD_LETTER_QUEUE_URL", &dlq)]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while dest.requests().len() < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = worker.peak_rss_kib().unwrap_or(0);
    worker.stop().await;
    println!(
        "ten claim checks of {:.1} MiB to three rules: {} forwards, peak RSS {:.1} MiB",
        size as f64 / 1048576.0,
        dest.requests().len(),
        peak as f64 / 1024.0
    );

    // 1: the ingest function, one accepted event at a time.
    let url = support::new_queue(&sqs, false).await;
    let api = LambdaApi::start().await;
    let ingest = IngestProcess::start(INGEST, &api, &url, support::moto_endpoint(), &JSON_LOGS);
    api.ready(Duration::from_secs(30)).await;
    // The start-up lines are not per event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = ingest.written();
    let accepted = 100;
    for i in 0..accepted {
        let body = support::person_created(&format!("ingest-{i}"));
        api.invoke(support::function_url_event(&body), Duration::from_secs(30))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bytes = ingest.written() - before;
    let output = ingest.output.clone();
    ingest.kill().await;
    println!(
        "ingest, {accepted} accepted events: log bytes per accepted event (JSON, INFO): {:.0}",
        bytes as f64 / accepted as f64
    );
    if let Ok(sample) = String::from_utf8(output.lock().unwrap()[before..].to_vec()) {
        for line in sample.lines().take(6) {
            println!(
                "  | {} bytes: {}",
                line.len(),
                line.chars().take(160).collect::<String>()
            );
        }
    }
}
