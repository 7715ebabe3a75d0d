//! What a million events cost, from counted calls, printed, not asserted (see
//! docs/operations.md, "Cost per million events"): the release binaries as Lambda runs them
//! (stub Runtime API, Lambda's SQS event source, moto behind a proxy that counts every AWS
//! call, JSON logs at INFO), one rule to a destination that answers at once.
//!
//! Six runs: busy (the queue full: batches of ten) and trickle (one event at a time), each
//! with the idempotency table (`IDEMPOTENCY_MODE` unset, the default `auto`: `lean` for this
//! HTTP rule; then `strict`) and without. Counted: the ingest function's SQS requests and
//! log bytes per event; the worker's DynamoDB reads and writes, its own SQS requests
//! (visibility, dead-letter queue), the event source's receives and deletes (one each per
//! batch, as Lambda's poller makes them), its log bytes and invocations. Assumed (not
//! measurable here): the billed duration of each invocation (`INGEST_MS`, `WORKER_MS`) and
//! us-east-1 prices; items under 1 KB, so one request is one read or write unit.
//!
//!     scripts/cost-bench [EVENTS]   (default 200)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::counting_proxy::CountingProxy;
use support::destination::Destination;
use support::event_source::{Source, WorkerProcess};
use support::ingest_process::IngestProcess;
use support::lambda_api::LambdaApi;
use twenty_webhook::envelope::Message;

/// The binaries: `target/release` unless `BIN_DIR` says (the counts do not depend on it).
fn binary(name: &str) -> String {
    let dir = std::env::var("BIN_DIR").unwrap_or_else(|_| "target/release".to_owned());
    format!("{dir}/{name}")
}
const JSON_LOGS: [(&str, &str); 2] = [
    ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
];

/// us-east-1 prices, December 2026.
const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
const LAMBDA_GB_S: f64 = 0.000_013_333_4;
const SQS_REQUEST: f64 = 0.40 / 1e6;
const DYNAMO_WRITE: f64 = 0.625 / 1e6;
const DYNAMO_READ: f64 = 0.125 / 1e6;
const LOG_GB: f64 = 0.50;
/// Assumed billed durations at 256 MB: the ingest answer and its SQS send held by the
/// extension (about 15 ms in-region); a worker batch to a destination answering in 100 ms.
const INGEST_MS: f64 = 16.0;
const WORKER_MS: f64 = 130.0;
const MEMORY_GB: f64 = 0.25;

/// Twenty's `person.updated` as its server sends it (timestamps, `updatedFields`).
fn twenty_update(record: &str) -> String {
    format!(
        r#"{{"eventName":"person.updated","objectMetadata":{{"id":"5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001","nameSingular":"person"}},"workspaceId":"20202020-1c25-4d02-bf25-6aeccf7ea419","webhookId":"8c2b6a4e-77a4-4b5e-9f0e-111111111111","eventDate":"2026-12-04T10:00:00.000Z","record":{{"id":"{record}","createdAt":"2026-12-01T09:00:00.000Z","updatedAt":"2026-12-04T10:00:00.000Z","deletedAt":null,"name":{{"firstName":"Zoë","lastName":"Ng"}},"emails":{{"primaryEmail":"zoe@example.com","additionalEmails":null}},"city":"Paris"}},"updatedFields":["emails"]}}"#
    )
}

fn message(record: &str) -> Message {
    support::ingest_messages(&twenty_update(record), Default::default()).remove(0)
}

/// What one run counted, per event.
struct Counted {
    dynamo_writes: f64,
    dynamo_reads: f64,
    worker_sqs: f64,
    source_sqs: f64,
    invocations: f64,
    log_bytes: f64,
}

/// Ingest, per event: SQS requests and log bytes (measured once, the same in every run).
struct Ingest {
    sqs: f64,
    log_bytes: f64,
}

fn dollars(ingest: &Ingest, worker: &Counted) -> (f64, Vec<(&'static str, f64)>) {
    let m = 1e6;
    let parts = vec![
        (
            "Lambda ingest",
            m * (LAMBDA_REQUEST + INGEST_MS / 1000.0 * MEMORY_GB * LAMBDA_GB_S),
        ),
        (
            "Lambda worker",
            m * worker.invocations
                * (LAMBDA_REQUEST + WORKER_MS / 1000.0 * MEMORY_GB * LAMBDA_GB_S),
        ),
        (
            "SQS",
            m * (ingest.sqs + worker.worker_sqs + worker.source_sqs) * SQS_REQUEST,
        ),
        (
            "DynamoDB",
            m * (worker.dynamo_writes * DYNAMO_WRITE + worker.dynamo_reads * DYNAMO_READ),
        ),
        (
            "CloudWatch Logs",
            m * (ingest.log_bytes + worker.log_bytes) / 1e9 * LOG_GB,
        ),
    ];
    (parts.iter().map(|(_, d)| d).sum(), parts)
}

async fn until_taken(dest: &Destination, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(180);
    while dest.requests().len() < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// `table`: without it, none; with it, its `IDEMPOTENCY_MODE` (unset when None).
async fn worker_run(events: usize, busy: bool, table: Option<Option<&str>>) -> Counted {
    let sqs = support::sqs().await;
    let proxy = CountingProxy::start(support::moto_endpoint()).await;
    let url = support::new_queue(&sqs, false).await;
    let dlq = support::new_queue(&sqs, false).await;
    let dest = Destination::ok().await;
    let rules = format!(r#"[{{"name":"n8n","events":["*"],"url":"{}"}}]"#, dest.url);
    let table_name = support::new_table().await;
    let mut env: Vec<(&str, String)> = vec![
        ("FORWARD_RULES", rules),
        ("DEAD_LETTER_QUEUE_URL", dlq),
        ("AWS_ENDPOINT_URL", proxy.url.clone()),
    ];
    if let Some(mode) = table {
        env.push(("IDEMPOTENCY_TABLE", table_name));
        if let Some(mode) = mode {
            env.push(("IDEMPOTENCY_MODE", mode.to_owned()));
        }
    }
    env.extend(JSON_LOGS.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let messages: Vec<Message> = (0..events).map(|i| message(&format!("c{i}"))).collect();
    if busy {
        for chunk in messages.chunks(10) {
            support::send_all(&url, chunk).await;
        }
    }
    let source = Source {
        queue_url: url.clone(),
        timeout: Duration::from_secs(30),
    };
    let worker = WorkerProcess::start(&binary("twenty-worker"), &source, &env).await;
    // The start-up lines are not per event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = worker.output.lock().map(|o| o.len()).unwrap_or(0);
    if !busy {
        for (i, m) in messages.iter().enumerate() {
            support::send_all(&url, std::slice::from_ref(m)).await;
            assert!(until_taken(&dest, i + 1).await, "not delivered");
        }
    }
    assert!(until_taken(&dest, events).await, "not all delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let invocations: Vec<usize> = worker
        .invocations
        .lock()
        .map(|i| i.iter().map(|inv| inv.messages).collect())
        .unwrap_or_default();
    let output = worker.stop().await;
    let log_bytes = output.len().saturating_sub(before);
    let n = events as f64;
    let count = |ops: &[&str]| ops.iter().map(|op| proxy.count(op, "")).sum::<usize>() as f64 / n;
    let batches = invocations.iter().filter(|m| **m > 0).count() as f64;
    Counted {
        dynamo_writes: count(&[
            "DynamoDB_20120810.PutItem",
            "DynamoDB_20120810.UpdateItem",
            "DynamoDB_20120810.DeleteItem",
        ]),
        dynamo_reads: count(&["DynamoDB_20120810.GetItem"]),
        worker_sqs: count(&[
            "AmazonSQS.ChangeMessageVisibility",
            "AmazonSQS.ChangeMessageVisibilityBatch",
            "AmazonSQS.SendMessage",
            "AmazonSQS.SendMessageBatch",
        ]),
        // Lambda's poller: a receive that got the batch and a delete of it.
        source_sqs: 2.0 * batches / n,
        invocations: batches / n,
        log_bytes: log_bytes as f64 / n,
    }
}

async fn ingest_run(events: usize) -> Ingest {
    let sqs = support::sqs().await;
    let proxy = CountingProxy::start(support::moto_endpoint()).await;
    let url = support::new_queue(&sqs, false).await;
    let api = LambdaApi::start().await;
    let ingest = IngestProcess::start(
        &binary("twenty-webhook"),
        &api,
        &url,
        &proxy.url,
        &JSON_LOGS,
    );
    api.ready(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = ingest.written();
    for i in 0..events {
        let body = twenty_update(&format!("ingest-{i}"));
        api.invoke(support::function_url_event(&body), Duration::from_secs(30))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = ingest.written() - before;
    ingest.kill().await;
    let n = events as f64;
    let sends = ["AmazonSQS.SendMessage", "AmazonSQS.SendMessageBatch"]
        .iter()
        .map(|op| proxy.count(op, ""))
        .sum::<usize>();
    Ingest {
        sqs: sends as f64 / n,
        log_bytes: bytes as f64 / n,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let ingest = ingest_run(events.min(100)).await;
    println!(
        "ingest, per event: {:.2} SQS requests, {:.0} log bytes",
        ingest.sqs, ingest.log_bytes
    );
    for (busy, label) in [(true, "busy"), (false, "trickle")] {
        // The table with `IDEMPOTENCY_MODE` unset (the default), then `strict`; no table.
        for table in [Some(None), Some(Some("strict")), None] {
            let n = if busy { events } else { events.min(100) };
            let c = worker_run(n, busy, table).await;
            let (total, parts) = dollars(&ingest, &c);
            println!(
                "{label}, {}, {n} events: per event {:.2} table writes, {:.2} table reads, \
                 {:.2} worker SQS requests, {:.2} event-source SQS requests, {:.2} invocations, \
                 {:.0} worker log bytes",
                table.map_or("without the table".to_owned(), |m| format!(
                    "table {}",
                    m.unwrap_or("auto (the default: lean for HTTP)")
                )),
                c.dynamo_writes,
                c.dynamo_reads,
                c.worker_sqs,
                c.source_sqs,
                c.invocations,
                c.log_bytes,
            );
            let parts: Vec<String> = parts
                .iter()
                .map(|(name, d)| format!("{name} ${d:.2}"))
                .collect();
            println!("  per million events: ${total:.2} ({})", parts.join(", "));
        }
    }
}
