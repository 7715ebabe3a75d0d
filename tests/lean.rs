//! `IDEMPOTENCY_MODE=lean`, with a real `twenty-worker` process fed by Lambda's SQS event
//! source, moto's SQS and DynamoDB behind a counting proxy, and a local destination: one
//! consistent read before each send and one write after it; a change and its reconciled
//! twin racing reach the destination under one `webhook-id`; a change done is not sent
//! again; a failed send leaves a record, so reconciliation sees the change in hand.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::destination::{Answer, Destination};
use support::event_source::{Source, WorkerProcess};
use support::*;
use twenty_webhook::envelope::{self, Destination as Target, Message, Receipt};

const WORKER: &str = env!("CARGO_BIN_EXE_twenty-worker");

fn twenty_update(record: &str) -> String {
    json!({
        "eventName": "person.updated",
        "objectMetadata": {"id": "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001", "nameSingular": "person"},
        "workspaceId": "ws", "webhookId": "w1", "eventDate": "2026-12-04T10:00:00.000Z",
        "record": {"id": record, "createdAt": "2026-12-01T09:00:00.000Z",
                   "updatedAt": "2026-12-04T10:00:00.000Z", "city": "Paris"},
        "updatedFields": ["city"]
    })
    .to_string()
}

/// The change as a webhook delivered it, and as reconciliation finds it (another id).
fn webhook_and_twin(record: &str) -> (Message, Message) {
    let body = twenty_update(record);
    let webhook = ingest_messages(&body, Target::default()).remove(0);
    let payload = twenty_webhook::twenty::event::parse(&body).expect("a Twenty event");
    let twin_id = envelope::body_sha256(format!("reconciled {record}").as_bytes());
    let receipt = Receipt {
        body_sha256: &twin_id,
        received_at: "2026-12-04T10:05:00.000Z",
        signature_verified: false,
    };
    let twin = envelope::reconciled(&payload, receipt, Target::default()).expect("a twin");
    (webhook, twin)
}

/// `n` changes (records `t0`, `t1`, ...), each as a webhook and its reconciled twin.
fn pairs(n: usize) -> Vec<Message> {
    (0..n)
        .flat_map(|i| {
            let (webhook, twin) = webhook_and_twin(&format!("t{i}"));
            [webhook, twin]
        })
        .collect()
}

/// Waits until the queue holds nothing, in flight or not, for at most `within`.
async fn drained(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while queue_depth(url).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until(what: impl Fn() -> bool, within: Duration) {
    let deadline = Instant::now() + within;
    while !what() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A queue and its dead-letter queue, a table, a destination answering in 300 ms (slow
/// enough that a change and its twin are in flight together), and a lean worker's
/// settings for them.
struct Setup {
    url: String,
    dlq: String,
    dest: Destination,
    env: Vec<(&'static str, String)>,
    source: Source,
}

async fn setup() -> Setup {
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let dest = Destination::start(|_| Answer {
        delay: Duration::from_millis(300),
        ..Answer::status(204)
    })
    .await;
    let rules = json!([{"name": "n8n", "events": ["person.*"], "url": dest.url}]);
    let env = vec![
        ("FORWARD_RULES", rules.to_string()),
        ("DEAD_LETTER_QUEUE_URL", dlq.clone()),
        ("IDEMPOTENCY_TABLE", table),
        ("IDEMPOTENCY_MODE", "lean".to_owned()),
    ];
    let source = Source {
        queue_url: url.clone(),
        timeout: Duration::from_secs(10),
    };
    Setup {
        url,
        dlq,
        dest,
        env,
        source,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_read_and_one_write_per_send_and_twins_share_one_webhook_id() {
    let Setup {
        url,
        dlq,
        dest,
        mut env,
        source,
    } = setup().await;
    let proxy = support::counting_proxy::CountingProxy::start(moto_endpoint()).await;
    env.push(("AWS_ENDPOINT_URL", proxy.url.clone()));
    // Two workers, so that twins can race.
    let workers = [
        WorkerProcess::start(WORKER, &source, &env).await,
        WorkerProcess::start(WORKER, &source, &env).await,
    ];

    // 1. Twenty changes, one at a time: the happy path's table calls.
    let singles: Vec<Message> = (0..20)
        .map(|i| ingest_messages(&twenty_update(&format!("p{i}")), Target::default()).remove(0))
        .collect();
    send_all(&url, &singles).await;
    until(|| dest.requests().len() >= 20, Duration::from_secs(60)).await;
    drained(&url, Duration::from_secs(30)).await;
    // Ledger keys end with the change's time and the rule's name.
    let (reads, writes) = (
        proxy.count("GetItem", "Z#n8n"),
        proxy.count("UpdateItem", "Z#n8n") + proxy.count("PutItem", "Z#n8n"),
    );
    let seen = proxy.count("PutItem", "seen#");
    assert_eq!(dest.requests().len(), 20);
    assert_eq!(
        (reads, writes, seen),
        (20, 20, 0),
        "one read and one write per send, no seen mark"
    );

    // 2. Ten changes, each with its reconciled twin at once: one webhook-id per change.
    send_all(&url, &pairs(10)).await;
    drained(&url, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 3. A change already done, again: not sent.
    let again = ingest_messages(&twenty_update("p0"), Target::default()).remove(0);
    let before = dest.requests().len();
    send_all(&url, &[again]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut output = String::new();
    for w in workers {
        output += &w.stop().await;
    }
    let requests = dest.requests();
    assert_eq!(
        requests.len(),
        before,
        "a change done is not sent again\n{output}"
    );
    let twins: Vec<&support::destination::Received> = requests
        .iter()
        .filter(|r| r.body.contains("\"recordId\":\"t"))
        .collect();
    let ids: HashSet<&str> = twins
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        10,
        "one webhook-id per change, twins or not: {ids:?}\n{output}"
    );
    assert!(ids.iter().all(|id| id.starts_with("change_")));
    eprintln!(
        "lean: {} sends for 10 changes sent twice at once (twins under one webhook-id)",
        twins.len()
    );
    assert_eq!(queue_depth(&dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_leaves_a_record_that_reconciliation_reads() {
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let dest = Destination::start(|_| Answer::status(503)).await;
    let rules = json!([{"name": "n8n", "events": ["person.*"], "url": dest.url}]);
    let env = vec![
        ("FORWARD_RULES", rules.to_string()),
        ("DEAD_LETTER_QUEUE_URL", dlq.clone()),
        ("IDEMPOTENCY_TABLE", table.clone()),
        ("IDEMPOTENCY_MODE", "lean".to_owned()),
        ("BACKOFF_BASE_SECS", "30".to_owned()),
        ("BACKOFF_CAP_SECS", "30".to_owned()),
    ];
    let source = Source {
        queue_url: url.clone(),
        timeout: Duration::from_secs(10),
    };
    let worker = WorkerProcess::start(WORKER, &source, &env).await;
    let message = ingest_messages(&twenty_update("f1"), Target::default()).remove(0);
    send_all(&url, &[message]).await;
    until(|| !dest.requests().is_empty(), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let output = worker.stop().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(moto_endpoint()).await);
    let item = client
        .get_item()
        .table_name(&table)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(
                "person:f1@2026-12-04T10:00:00.000Z#n8n".into(),
            ),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
        .unwrap_or_default();
    let status = item.get("status").and_then(|v| v.as_s().ok()).cloned();
    assert_eq!(status.as_deref(), Some("FAILED"), "{item:?}\n{output}");
    assert!(
        item.contains_key("expiration"),
        "it expires as every record does"
    );
}

/// Twins reaching one worker together (in one batch, or a redelivery while the first is
/// still sending) are not raced: the second waits for the first, then finds it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_in_one_worker_are_sent_once() {
    let Setup {
        url,
        dlq,
        dest,
        env,
        source,
    } = setup().await;
    let worker = WorkerProcess::start(WORKER, &source, &env).await;
    send_all(&url, &pairs(5)).await;
    drained(&url, Duration::from_secs(60)).await;
    let output = worker.stop().await;
    let ids: Vec<String> = dest
        .requests()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), distinct.len()),
        (5, 5),
        "each change sent once: {ids:?}\n{output}"
    );
    assert_eq!(queue_depth(&dlq).await, 0);
}
