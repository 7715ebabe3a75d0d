//! `collapseSeconds`, with real `twenty-worker` processes fed by Lambda's SQS event source
//! (`support::event_source`), moto's SQS and DynamoDB (the bursts, the ledger, the seen
//! marks) and a local destination, at real speed with a 2 s window: a burst of a record's
//! changes is delivered once, as its latest, with every updated field; changes further
//! apart are not; a creation names its burst; a deletion comes after the burst before it;
//! two records do not mix; a worker killed mid-burst does not make it twice; a FIFO queue
//! refuses the setting.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::destination::{Destination, Received};
use support::event_source::{Source, WorkerProcess};
use support::*;
use twenty_webhook::aws::DynamoSeen;
use twenty_webhook::envelope::{Destination as Target, Message};
use twenty_webhook::reconcile::run::{Probe, SeenIndex};

const WORKER: &str = env!("CARGO_BIN_EXE_twenty-worker");

/// Twenty's `person.<action>` of record `id`, its `updatedAt` `ms` milliseconds into the
/// minute, with `values` in its record.
fn person(action: &str, id: &str, ms: u64, values: Value, updated: &[&str]) -> Message {
    let at = format!("2026-12-04T10:00:{:02}.{:03}Z", ms / 1000, ms % 1000);
    let mut record = json!({"id": id, "createdAt": "2026-12-04T10:00:00.000Z", "updatedAt": at});
    if action == "created" {
        record["createdAt"] = json!(at);
    }
    if action == "deleted" {
        record["deletedAt"] = json!(at);
    }
    for (k, v) in values.as_object().into_iter().flatten() {
        record[k] = v.clone();
    }
    let mut body = json!({
        "eventName": format!("person.{action}"),
        "objectMetadata": {"id": "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a001", "nameSingular": "person"},
        "workspaceId": "ws", "webhookId": "w1", "eventDate": at, "record": record
    });
    if action == "updated" {
        body["updatedFields"] = json!(updated);
    }
    let target = Target {
        fifo: false,
        payload_bucket: None,
    };
    ingest_messages(&body.to_string(), target).remove(0)
}

/// Sends each message at its offset from now, each alone, as Twenty's webhooks come.
async fn send_timed(url: &str, timed: Vec<(u64, Message)>) {
    let start = tokio::time::Instant::now();
    let sends = timed.into_iter().map(|(offset, message)| {
        let url = url.to_owned();
        async move {
            tokio::time::sleep_until(start + Duration::from_millis(offset)).await;
            send_all(&url, &[message]).await;
        }
    });
    join_all(sends).await;
}

/// Waits until the queue is empty and `dest` has `count` requests, then `quiet` more for
/// anything extra (a second delivery would come within it).
async fn settle(url: &str, dest: &Destination, count: usize, quiet: Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while (queue_depth(url).await > 0 || dest.requests().len() < count) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(quiet).await;
}

fn body(request: &Received) -> Value {
    serde_json::from_str(&request.body).expect("JSON")
}

/// Each record's deliveries, in the order the destination took them.
fn by_record(dest: &Destination) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for request in dest.requests() {
        let b = body(&request);
        let id = b["recordId"].as_str().unwrap_or_default().to_owned();
        out.entry(id).or_default().push(b);
    }
    out
}

async fn table_items(table: &str) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(moto_endpoint()).await);
    let out = client.scan().table_name(table).send().await.expect("scan");
    out.items.unwrap_or_default()
}

fn text<'a>(
    item: &'a HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    name: &str,
) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_burst_of_changes_is_delivered_once_as_its_latest() {
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let dest = Destination::ok().await;
    let rules = json!([
        {"name": "burst", "events": ["person.*"], "url": dest.url, "collapseSeconds": 2}
    ]);
    // Counts the worker's table calls, for docs/performance.md.
    let proxy = support::counting_proxy::CountingProxy::start(moto_endpoint()).await;
    let env = vec![
        ("AWS_ENDPOINT_URL", proxy.url.clone()),
        ("FORWARD_RULES", rules.to_string()),
        ("DEAD_LETTER_QUEUE_URL", dlq.clone()),
        ("IDEMPOTENCY_TABLE", table.clone()),
    ];
    let source = Source {
        queue_url: url.clone(),
        timeout: Duration::from_secs(5),
    };
    let worker = WorkerProcess::start(WORKER, &source, &env).await;

    // r1: five updates 300 ms apart, as Twenty's autosave sends one edit.
    let edits = [
        ("name", json!({"name": {"firstName": "Ada"}})),
        ("jobTitle", json!({"jobTitle": "Engineer"})),
        ("name", json!({"name": {"firstName": "Ada L."}})),
        (
            "emails",
            json!({"emails": {"primaryEmail": "ada@example.com"}}),
        ),
        ("jobTitle", json!({"jobTitle": "Chief Engineer"})),
    ];
    let mut timed = Vec::new();
    let mut r1_ids = Vec::new();
    for (i, (field, values)) in edits.iter().enumerate() {
        let m = person(
            "updated",
            "r1",
            1_000 * (i as u64 + 1),
            values.clone(),
            &[field],
        );
        r1_ids.push(m.id.clone());
        timed.push((300 * i as u64, m));
    }
    // r2: two updates 3 s apart: two bursts.
    timed.push((
        0,
        person("updated", "r2", 1_000, json!({"city": "Paris"}), &["city"]),
    ));
    timed.push((
        3_000,
        person("updated", "r2", 4_000, json!({"city": "Lyon"}), &["city"]),
    ));
    // r3: a creation from a form, then two updates.
    timed.push((
        0,
        person("created", "r3", 1_000, json!({"name": "Bo"}), &[]),
    ));
    timed.push((
        300,
        person("updated", "r3", 2_000, json!({"city": "Oslo"}), &["city"]),
    ));
    timed.push((
        600,
        person(
            "updated",
            "r3",
            3_000,
            json!({"jobTitle": "CTO"}),
            &["jobTitle"],
        ),
    ));
    // r4: an update, then its deletion.
    timed.push((
        0,
        person("updated", "r4", 1_000, json!({"city": "Rome"}), &["city"]),
    ));
    timed.push((500, person("deleted", "r4", 2_000, json!({}), &[])));
    // r5 and r6 interleaved.
    for (i, record) in ["r5", "r6", "r5", "r6"].iter().enumerate() {
        let m = person(
            "updated",
            record,
            1_000 * (i as u64 + 1),
            json!({"city": i}),
            &["city"],
        );
        timed.push((150 * i as u64, m));
    }
    let events = timed.len();
    send_timed(&url, timed).await;
    // r1 1, r2 2, r3 1, r4 2, r5 1, r6 1.
    settle(&url, &dest, 8, Duration::from_secs(4)).await;
    let output = worker.stop().await;
    let got = by_record(&dest);
    // Kept for tests/check_envelope_schema.py, which holds them to the published schema.
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sent-envelopes");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("target/sent-envelopes");
    for (i, request) in dest.requests().iter().enumerate() {
        std::fs::write(out.join(format!("collapsed-{i}.json")), &request.body).expect("written");
    }

    let r1 = &got["r1"];
    assert_eq!(r1.len(), 1, "one delivery for the burst: {r1:?}\n{output}");
    let r1 = &r1[0];
    assert_eq!(
        r1["record"]["jobTitle"], "Chief Engineer",
        "the latest record"
    );
    assert_eq!(r1["collapsed"]["count"], 5);
    // As they reached the rule: sent 300 ms apart, two may still be taken in one batch.
    let came: Vec<String> = r1["collapsed"]["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    let mut sorted = came.clone();
    sorted.sort();
    let mut sent = r1_ids.clone();
    sent.sort();
    assert_eq!(sorted, sent, "every envelope id, once");
    // The union of the fields, in the order the changes came.
    let mut union: Vec<&str> = Vec::new();
    for id in &came {
        let field = edits[r1_ids.iter().position(|i| i == id).unwrap_or(0)].0;
        if !union.contains(&field) {
            union.push(field);
        }
    }
    assert_eq!(r1["updatedFields"], json!(union));
    assert_eq!(union.len(), 3, "name, jobTitle, emails");
    assert_eq!(
        r1["collapsed"]["firstEventDate"],
        "2026-12-04T10:00:01.000Z"
    );
    assert_eq!(
        r1["id"],
        r1_ids[4].as_str(),
        "under the latest envelope's id"
    );
    let sent: Vec<(String, String)> = dest
        .requests()
        .iter()
        .filter(|r| body(r)["recordId"] == "r1")
        .map(|r| (r.headers["webhook-id"].clone(), lean_webhook_id(&r.body)))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].0, sent[0].1,
        "the latest change's id (auto: lean for HTTP)"
    );

    let r2 = &got["r2"];
    assert_eq!(r2.len(), 2, "3 s apart: two deliveries: {r2:?}");
    assert_eq!(r2[0]["record"]["city"], "Paris");
    assert_eq!(r2[1]["record"]["city"], "Lyon");
    assert!(r2.iter().all(|b| b["collapsed"]["count"] == 1));

    let r3 = &got["r3"];
    assert_eq!(r3.len(), 1, "{r3:?}");
    assert_eq!(r3[0]["eventName"], "person.created");
    assert_eq!(r3[0]["action"], "created");
    assert_eq!(r3[0]["record"]["jobTitle"], "CTO");
    assert_eq!(r3[0]["updatedFields"], json!(["city", "jobTitle"]));
    assert_eq!(r3[0]["collapsed"]["count"], 3);

    let r4: Vec<&str> = got["r4"]
        .iter()
        .map(|b| b["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(r4, ["updated", "deleted"], "the update, then the deletion");

    for record in ["r5", "r6"] {
        let deliveries = &got[record];
        assert_eq!(deliveries.len(), 1, "{record}: {deliveries:?}");
        assert_eq!(deliveries[0]["collapsed"]["count"], 2);
        assert!(
            deliveries[0]["collapsed"]["ids"]
                .as_array()
                .is_some_and(|ids| ids.len() == 2)
        );
    }
    assert_eq!(queue_depth(&dlq).await, 0, "nothing dead-lettered");

    // Every change is done: its ledger record says so (the obsolete ones too), and
    // reconciliation finds it taken (by its seen mark, or by the rule's record).
    let items = table_items(&table).await;
    let ledger: Vec<_> = items
        .iter()
        .filter(|i| text(i, "id").ends_with("#burst"))
        .collect();
    assert_eq!(ledger.len(), events, "a ledger record per change");
    assert!(ledger.iter().all(|i| text(i, "status") == "COMPLETED"));
    let probes: Vec<Probe> = ledger
        .iter()
        .map(|i| Probe {
            key: text(i, "id").trim_end_matches("#burst").to_owned(),
            event_name: "person.updated".into(),
        })
        .collect();
    let sdk = sdk_config(moto_endpoint()).await;
    let taken = DynamoSeen::with_sdk_config(&sdk, &table)
        .seen_among(&probes)
        .await
        .expect("the seen index");
    assert_eq!(taken.len(), events, "reconciliation skips every change");

    // The burst's cost: one write per change joining it; reads per hold and return.
    let (writes, reads) = (
        proxy.count("PutItem", "burst#"),
        proxy.count("GetItem", "burst#"),
    );
    let all_writes = proxy.count("PutItem", "") + proxy.count("UpdateItem", "");
    assert!(
        writes <= events,
        "at most one burst write per event: {writes} for {events}"
    );
    eprintln!(
        "collapseSeconds: per event, {:.2} burst writes, {:.2} burst reads; \
         {:.2} table writes in all (ledger, seen marks, bursts) for {events} events, {} deliveries",
        writes as f64 / events as f64,
        reads as f64 / events as f64,
        all_writes as f64 / events as f64,
        dest.requests().len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_split_by_a_killed_worker_is_delivered_once() {
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let dest = Destination::ok().await;
    let rules = json!([
        {"name": "burst", "events": ["person.*"], "url": dest.url, "collapseSeconds": 2}
    ]);
    let env = vec![
        ("FORWARD_RULES", rules.to_string()),
        ("DEAD_LETTER_QUEUE_URL", dlq.clone()),
        ("IDEMPOTENCY_TABLE", table.clone()),
    ];
    let source = Source {
        queue_url: url.clone(),
        timeout: Duration::from_secs(3),
    };
    let doomed = WorkerProcess::start(WORKER, &source, &env).await;
    let survivor = WorkerProcess::start(WORKER, &source, &env).await;
    let messages: Vec<Message> = (0..5)
        .map(|i| {
            let values = json!({"jobTitle": format!("v{i}")});
            person("updated", "k1", 1_000 * (i + 1), values, &["jobTitle"])
        })
        .collect();
    let last_id = messages[4].id.clone();
    let (first, rest) = messages.split_at(3);
    send_timed(
        &url,
        first
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (300 * i as u64, m))
            .collect(),
    )
    .await;
    // Mid-burst: what it holds or handles comes back to the other.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = doomed.kill().await;
    send_timed(
        &url,
        rest.iter()
            .cloned()
            .enumerate()
            .map(|(i, m)| (300 * i as u64, m))
            .collect(),
    )
    .await;
    settle(&url, &dest, 1, Duration::from_secs(4)).await;
    let output = survivor.stop().await;

    // Each change is in one delivery, under one webhook-id. A receive the killed worker's
    // poller had asked for can still hand a change out, to no one: it comes back after the
    // visibility timeout, past the burst: a burst of its own, or, older than the change
    // sent, done.
    let requests = dest.requests();
    let mut seen: HashMap<String, String> = HashMap::new();
    for request in &requests {
        let webhook_id = request.headers["webhook-id"].clone();
        let got = body(request);
        assert_eq!(lean_webhook_id(&request.body), webhook_id);
        for id in got["collapsed"]["ids"].as_array().into_iter().flatten() {
            let id = id.as_str().unwrap_or_default().to_owned();
            if let Some(before) = seen.insert(id.clone(), webhook_id.clone()) {
                assert_eq!(
                    before, webhook_id,
                    "{id} sent under two webhook-ids\n{killed}\n{output}"
                );
            }
        }
    }
    // A change not listed came back after a later one was sent (older than what was
    // sent, it is done): never the latest.
    let listed: HashSet<&String> = seen.keys().collect();
    let unlisted: Vec<&Message> = messages
        .iter()
        .filter(|m| !listed.contains(&m.id))
        .collect();
    assert!(
        unlisted.iter().all(|m| m.id != last_id),
        "every change delivered or made obsolete by a later one: {} unlisted\n{killed}\n{output}",
        unlisted.len()
    );
    let webhook_ids: HashSet<&String> = seen.values().collect();
    assert_eq!(
        webhook_ids.len(),
        requests.len(),
        "no webhook-id sent twice"
    );
    let latest = requests
        .iter()
        .map(body)
        .find(|b| b["id"] == last_id.as_str());
    assert!(latest.is_some(), "the latest change stands for its burst");
    assert_eq!(
        latest.map(|b| b["record"]["jobTitle"].clone()),
        Some(json!("v4"))
    );
    assert_eq!(queue_depth(&dlq).await, 0, "nothing dead-lettered");
}

#[test]
fn a_fifo_queue_refuses_collapsing_at_start_up() {
    let rules = json!([
        {"name": "burst", "events": ["person.*"], "url": "https://example.com/h", "collapseSeconds": 2}
    ]);
    let out = std::process::Command::new(WORKER)
        .env_clear()
        .envs([
            ("FORWARD_RULES", rules.to_string().as_str()),
            (
                "QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo",
            ),
            ("IDEMPOTENCY_TABLE", "idempotency"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        ])
        .output()
        .expect("run twenty-worker");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not start: {said}");
    assert!(
        said.contains("refusing to start")
            && said.contains("collapseSeconds cannot work on a FIFO queue"),
        "{said}"
    );
    // On a standard queue, it needs the table for its bursts.
    let without_table = std::process::Command::new(WORKER)
        .env_clear()
        .envs([
            ("FORWARD_RULES", rules.to_string().as_str()),
            (
                "QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/events",
            ),
            ("AWS_REGION", "us-east-1"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        ])
        .output()
        .expect("run twenty-worker");
    let said = String::from_utf8_lossy(&without_table.stdout).to_string()
        + &String::from_utf8_lossy(&without_table.stderr);
    assert!(
        said.contains("IDEMPOTENCY_TABLE) for collapseSeconds"),
        "{said}"
    );
}
