//! `includePrevious`, with real `twenty-worker` processes fed by Lambda's SQS event source
//! (`support::event_source`), moto's SQS and DynamoDB (the records' states), and a local
//! destination: a stage moved NEW → PROPOSAL → WON is told what it was; a "became WON"
//! filter takes that change alone; the first change of a record has no `previous`; a field
//! too large to keep is named in `previousMissing`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::destination::Destination;
use support::event_source::{Source, WorkerProcess};
use support::*;
use twenty_webhook::envelope::{Destination as Target, Message};

const WORKER: &str = env!("CARGO_BIN_EXE_twenty-worker");

/// Twenty's `opportunity.<action>` for record `id` at second `second`.
fn opportunity(action: &str, id: &str, second: u32, record: Value, updated: &[&str]) -> Message {
    let mut record = record;
    record["id"] = json!(id);
    record["createdAt"] = json!("2026-12-04T10:00:00.000Z");
    record["updatedAt"] = json!(format!("2026-12-04T10:00:{second:02}.000Z"));
    let mut body = json!({
        "eventName": format!("opportunity.{action}"),
        "objectMetadata": {"id": "5f7e0c4e-1c56-4a4b-9a0e-2f6a4cb1a002", "nameSingular": "opportunity"},
        "workspaceId": "ws", "webhookId": "w1",
        "eventDate": format!("2026-12-04T10:00:{second:02}.000Z"),
        "record": record
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

/// Sends `message` and waits until `dest` has `count` requests (or 30 s pass).
async fn deliver(url: &str, message: Message, dest: &Destination, count: usize) {
    send_all(url, &[message]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while dest.requests().len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `message`, waits until the queue is empty and a moment more.
async fn settle(url: &str, message: Message) {
    send_all(url, &[message]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue_depth(url).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn bodies(dest: &Destination) -> Vec<Value> {
    dest.requests()
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_told_what_its_fields_held_and_a_filter_can_ask_for_it() {
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;
    let all = Destination::ok().await;
    let won = Destination::ok().await;
    let rules = json!([
        {"name": "all", "events": ["opportunity.*"], "url": all.url, "includePrevious": true},
        {"name": "became-won", "events": ["opportunity.updated"], "url": won.url,
         "includePrevious": true,
         "filter": {"record": {"stage": ["WON"]}, "previous": {"stage": [{"anything-but": "WON"}]}}}
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
        timeout: Duration::from_secs(10),
    };
    let worker = WorkerProcess::start(WORKER, &source, &env).await;

    let stage = |s: &str| json!({"name": "Acme", "stage": s, "amount": 5});
    // One change at a time, as Twenty sends them: each is stored before the next.
    deliver(
        &url,
        opportunity("created", "o1", 0, stage("NEW"), &[]),
        &all,
        1,
    )
    .await;
    let first_update = opportunity("updated", "o2", 1, stage("NEW"), &["name"]);
    deliver(&url, first_update, &all, 2).await;
    let proposal = opportunity("updated", "o1", 2, stage("PROPOSAL"), &["stage"]);
    deliver(&url, proposal, &all, 3).await;
    let to_won = opportunity("updated", "o1", 3, stage("WON"), &["stage"]);
    let to_won_id = to_won.id.clone();
    deliver(&url, to_won, &all, 4).await;
    // Still WON, another field: not "became WON".
    let amount = json!({"name": "Acme", "stage": "WON", "amount": 7});
    deliver(
        &url,
        opportunity("updated", "o1", 4, amount, &["amount"]),
        &all,
        5,
    )
    .await;
    let big = json!({"name": "Acme", "stage": "NEW", "notes": "x".repeat(20_000)});
    deliver(
        &url,
        opportunity("updated", "o3", 5, big, &["notes"]),
        &all,
        6,
    )
    .await;
    let smaller = json!({"name": "Acme", "stage": "NEW", "notes": "short"});
    deliver(
        &url,
        opportunity("updated", "o3", 6, smaller, &["notes"]),
        &all,
        7,
    )
    .await;
    // A redelivery of the WON change (as reconciliation would find it): told the same.
    settle(
        &url,
        opportunity("updated", "o1", 3, stage("WON"), &["stage"]),
    )
    .await;
    let output = worker.stop().await;

    let got = bodies(&all);
    assert_eq!(got.len(), 7, "every change delivered once\n{output}");
    let of = |record: &str, second: u32| {
        got.iter()
            .find(|b| {
                b["recordId"] == record
                    && b["record"]["updatedAt"] == format!("2026-12-04T10:00:{second:02}.000Z")
            })
            .cloned()
            .unwrap_or_else(|| panic!("{record} at {second} delivered: {got:?}"))
    };
    let created = of("o1", 0);
    assert!(created.get("previous").is_none() && created.get("previousMissing").is_none());
    let first = of("o2", 1);
    assert!(
        first.get("previous").is_none(),
        "the first change seen has none"
    );
    assert_eq!(first["previousMissing"], json!({"name": "first_seen"}));
    assert_eq!(of("o1", 2)["previous"], json!({"stage": "NEW"}));
    assert_eq!(of("o1", 3)["previous"], json!({"stage": "PROPOSAL"}));
    assert_eq!(of("o1", 4)["previous"], json!({"amount": 5}));
    assert_eq!(of("o3", 6)["previous"], json!({}));
    assert_eq!(
        of("o3", 6)["previousMissing"],
        json!({"notes": "too_large"})
    );

    // "Became WON": that change alone, once (the redelivery is a twin: same change).
    let won_got = bodies(&won);
    assert_eq!(won_got.len(), 1, "{won_got:?}");
    assert_eq!(won_got[0]["id"], to_won_id.as_str());
    assert_eq!(won_got[0]["previous"]["stage"], "PROPOSAL");
    assert!(
        are_envelopes(&won_got),
        "what is sent is the envelope with `previous`"
    );
    assert!(!output.contains("xxxxxxxxxx"), "no record in the logs");
    // 8 messages: "all" selects 8, "became-won" the 7 updates.
    let selected = 15.0;
    let (reads, writes) = (
        proxy.count("GetItem", "state#"),
        proxy.count("PutItem", "state#"),
    );
    // "all" keeps 7 states (the creation, 6 updates), "became-won" 6; the redelivery none.
    assert_eq!(writes, 7 + 6, "one write per newer change and rule");
    let ledger = proxy.count("UpdateItem", "");
    eprintln!(
        "includePrevious: per event and rule selecting it, {:.2} state reads, {:.2} state writes \
         (ledger updates {:.2} beside them, for the rules' sends)",
        reads as f64 / selected,
        writes as f64 / selected,
        ledger as f64 / selected,
    );
}

fn are_envelopes(bodies: &[Value]) -> bool {
    bodies
        .iter()
        .all(|b| b["version"].is_number() && b["record"].is_object())
}
