//! The whole chain with faults at once: Twenty-like signed traffic of which a fifth is
//! never sent (Twenty drops calls over its rate limit), SQS refusing the ingest function
//! for a while, a destination that is down at first and then answers 500 to one call in
//! eight, one of two `twenty-worker` processes killed with SIGKILL mid-batch and started
//! again, and reconciliation on a schedule. Then, from what the destination took (each
//! request checked by the Python `standardwebhooks` package): every acknowledged change
//! arrived, every record's last state arrived, no change arrived under two webhook ids,
//! and nothing is left in the dead-letter queue. Times are scaled down.
//!
//! moto's DynamoDB writes are made atomic at its start (`support/moto_server.py`); the
//! queues are standard, where moto behaves as SQS does for what is checked here.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::destination::{Answer, Destination, Received};
use support::event_source::{Source, WorkerProcess};
use support::fault_proxy::{Fault, FaultProxy};
use support::twenty::{API_KEY, FakeTwenty};
use support::*;
use twenty_webhook::aws::{DynamoSeen, DynamoWatermarks, SqsTransport};
use twenty_webhook::envelope::Destination as Target;
use twenty_webhook::ingest::config::AckMode;
use twenty_webhook::reconcile::change::Context;
use twenty_webhook::reconcile::setup::Table;
use twenty_webhook::reconcile::{ApiKey, Mode, Object, Reconciler, TwentyApi};
use twenty_webhook::secrets::Rotating;

const WORKER: &str = env!("CARGO_BIN_EXE_twenty-worker");
const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const RECORDS: usize = 30;
/// Each record is created, then updated twice.
const CHANGES_EACH: usize = 3;

/// A webhook as Twenty sends it for `row`.
fn webhook(event: &str, row: &Value) -> String {
    json!({
        "targetUrl": "https://example.com/hook", "eventName": event,
        "objectMetadata": {"id": "om-person", "nameSingular": "person"},
        "workspaceId": "ws-1", "webhookId": "wh-1", "eventDate": row["updatedAt"], "record": row
    })
    .to_string()
}

/// A change as the destination sees it: the record and its `updatedAt`.
fn change_of(envelope: &Value) -> (String, String) {
    (
        envelope["recordId"].as_str().unwrap_or_default().to_owned(),
        envelope["record"]["updatedAt"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// One scheduled reconciliation run, as `twenty-reconcile` makes it.
async fn reconcile(twenty_url: &str, queue: &str, table: &str) {
    let api = TwentyApi::new(
        twenty_url,
        Rotating::fixed(ApiKey::parse(API_KEY).unwrap()),
        6_000,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let Ok(objects) = api.objects(deadline).await else {
        return;
    };
    let objects: Vec<Object> = objects
        .into_iter()
        .filter(|(o, by_default)| *by_default && o.plural == "people")
        .map(|(o, _)| o)
        .collect();
    let shared = sdk_config(moto_endpoint()).await;
    let table = Table::Dynamo {
        seen: DynamoSeen::with_sdk_config(&shared, table),
        watermarks: DynamoWatermarks::with_sdk_config(&shared, table),
    };
    let transport = SqsTransport::with_sdk_config(&shared, queue);
    let reconciler = Reconciler {
        api: &api,
        transport: &transport,
        table: &table,
        context: Context {
            received_at: "2026-12-03T00:00:00.000Z",
            workspace_id: Some("ws-1"),
            destination: Target::default(),
        },
        dry_run: false,
        deadline,
        page_limit: 1000,
    };
    let mode = Mode::Scheduled {
        now: SystemTime::now(),
        overlap: Duration::from_secs(2),
        settle: Duration::from_secs(2),
        first_lookback: Duration::from_secs(3600),
    };
    let _ = reconciler.run(&objects, mode, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_chain_under_faults_at_once() {
    whole_chain("strict").await;
}

/// The same with the default `IDEMPOTENCY_MODE=auto`, `lean` for this HTTP rule: twins
/// may both be sent, never under two ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_chain_under_faults_at_once_with_auto_idempotency() {
    whole_chain("auto").await;
}

async fn whole_chain(mode: &str) {
    let started = Instant::now();
    let twenty = FakeTwenty::start();
    let (url, dlq) = queues(false, 1000).await;
    let table = new_table().await;

    // The destination: down for its first 4 s of traffic, then a 500 to one call in eight.
    let up_at = Arc::new(Mutex::new(None::<Instant>));
    let accepted: Arc<Mutex<Vec<Received>>> = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU64::new(0));
    let destination = {
        let (up_at, accepted, calls) = (up_at.clone(), accepted.clone(), calls.clone());
        Destination::start(move |request| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let up = *up_at
                .lock()
                .unwrap()
                .get_or_insert_with(|| Instant::now() + Duration::from_secs(4));
            let status = if Instant::now() < up || n % 8 == 7 {
                if Instant::now() < up { 503 } else { 500 }
            } else {
                200
            };
            if status == 200 {
                accepted.lock().unwrap().push(request.clone());
            }
            Answer::status(status)
        })
        .await
    };

    // Two workers, as two Lambda instances; times scaled down.
    let rules = format!(
        r#"[{{"name":"crm","events":["person.*"],"url":"{}","secret":"{KEY}","timeoutMs":2000}}]"#,
        destination.url
    );
    let env: Vec<(&str, String)> = vec![
        ("FORWARD_RULES", rules),
        ("DEAD_LETTER_QUEUE_URL", dlq.clone()),
        ("IDEMPOTENCY_TABLE", table.clone()),
        ("IDEMPOTENCY_IN_PROGRESS_SECS", "8".into()),
        ("IDEMPOTENCY_MODE", mode.into()),
        ("RETRY_HORIZON_SECS", "3600".into()),
        ("BACKOFF_BASE_SECS", "1".into()),
        ("BACKOFF_CAP_SECS", "2".into()),
        ("BREAKER_OPEN_SECS", "1".into()),
        ("DEADLINE_MARGIN_MS", "1000".into()),
    ];
    let source = Source {
        queue_url: url.clone(),
        timeout: Duration::from_secs(4),
    };
    let mut workers = vec![
        WorkerProcess::start(WORKER, &source, &env).await,
        WorkerProcess::start(WORKER, &source, &env).await,
    ];

    // Reconciliation every 2 s until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let reconciling = {
        let (stop, twenty_url, url, table) =
            (stop.clone(), twenty.url.clone(), url.clone(), table.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                reconcile(&twenty_url, &url, &table).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    // The ingest function, SQS behind a proxy that refuses it for 1.5 s mid-traffic.
    let proxy = FaultProxy::start(moto_endpoint()).await;
    // Its retry budget shorter than the outage: some deliveries go to the fallback log.
    let mut ingest_config = config(&url, AckMode::Immediate);
    ingest_config.retry_budget = Duration::from_millis(700);
    let ingest =
        Arc::new(Harness::with_config(sqs().await, ingest_config, &proxy.endpoint()).await);

    // Twenty's traffic: each change made in Twenty, then its webhook, twenty at a time; a
    // fifth never sent.
    let mut last_state: BTreeMap<String, String> = BTreeMap::new();
    let mut acknowledged: BTreeSet<(String, String)> = BTreeSet::new();
    let mut dropped = 0;
    let mut n = 0;
    for round in 0..CHANGES_EACH {
        let mut sent = Vec::new();
        for r in 0..RECORDS {
            let id = format!("p{r}");
            let row = twenty
                .upsert(
                    "people",
                    json!({"id": id, "name": {"firstName": format!("P{r}"), "lastName": format!("v{round}")}}),
                )
                .await;
            let stamp = row["updatedAt"].as_str().unwrap().to_owned();
            last_state.insert(id.clone(), stamp.clone());
            n += 1;
            if n % 5 == 0 {
                dropped += 1;
            } else {
                let event = if round == 0 {
                    "person.created"
                } else {
                    "person.updated"
                };
                sent.push(((id, stamp), webhook(event, &row)));
            }
            // Twenty's rows need distinct updatedAt stamps.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        if round == 1 {
            // SQS refuses the ingest function for 1.5 s while this round arrives.
            proxy.set(Fault::Refuse);
            let proxy = proxy.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                proxy.set(Fault::None);
            });
        }
        // Twenty sends in chunks of twenty concurrent calls.
        for chunk in sent.chunks(20) {
            let answers = join_all(chunk.iter().cloned().map(|(change, body)| {
                let ingest = ingest.clone();
                async move {
                    let (status, _) = ingest.post(&twenty_headers(&body), &body).await;
                    (change, status)
                }
            }))
            .await;
            for (change, status) in answers {
                assert_eq!(status, 200, "acknowledged at once");
                acknowledged.insert(change);
            }
        }
        // One worker killed with SIGKILL while the round is worked off, and started again.
        if round == 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let killed = workers.remove(0).kill().await;
            assert!(!killed.is_empty(), "the killed worker had started");
            workers.push(WorkerProcess::start(WORKER, &source, &env).await);
        }
    }
    ingest.settle().await;
    proxy.set(Fault::None);
    // What the function could not queue is in its fallback log: replayed, as the
    // operator's `twenty-replay` would.
    let log = ingest.fallback.lock().unwrap().clone();
    let direct = SqsTransport::with_sdk_config(&sdk_config(moto_endpoint()).await, &url);
    let replayed = twenty_webhook::replay::replay(
        &direct,
        &log,
        tokio::time::Instant::now() + Duration::from_secs(20),
    )
    .await;
    assert!(replayed.failed.is_empty(), "{:?}", replayed.failed);

    // Until every change due has arrived and the queue is empty, or 150 s.
    let taken = || {
        accepted
            .lock()
            .unwrap()
            .iter()
            .map(|r| change_of(&serde_json::from_str(&r.body).unwrap_or_default()))
            .collect::<BTreeSet<_>>()
    };
    let due: BTreeSet<(String, String)> = acknowledged
        .iter()
        .cloned()
        .chain(last_state.iter().map(|(id, s)| (id.clone(), s.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(150);
    while Instant::now() < deadline {
        if due.is_subset(&taken()) && queue_depth(&url).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A last reconciliation finds nothing more to queue.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let _ = reconciling.await;
    let mut output = String::new();
    for w in workers {
        output.push_str(&w.stop().await);
    }

    let got = accepted.lock().unwrap().clone();
    let mut ids_by_change: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for r in &got {
        let envelope: Value = serde_json::from_str(&r.body).unwrap();
        ids_by_change
            .entry(change_of(&envelope))
            .or_default()
            .insert(r.headers["webhook-id"].clone());
    }
    let twice: Vec<_> = ids_by_change
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    let taken = taken();
    let missing_acknowledged: Vec<_> = acknowledged.difference(&taken).collect();
    let missing_last: Vec<_> = last_state
        .iter()
        .filter(|(id, s)| !taken.contains(&((*id).clone(), (*s).clone())))
        .collect();
    let recovered = taken.difference(&acknowledged).count();
    let dead = drain(&sqs().await, &dlq, Duration::from_secs(1))
        .await
        .len();
    println!(
        "whole chain ({mode}): {} changes, {dropped} never sent, {} acknowledged ({} by the fallback \
         log), {recovered} recovered by reconciliation, {} delivered ({} calls accepted, {} in \
         all), {} under two webhook ids, {dead} dead-lettered, in {:.1} s",
        RECORDS * CHANGES_EACH,
        acknowledged.len(),
        replayed.sent.len(),
        taken.len(),
        got.len(),
        calls.load(Ordering::SeqCst),
        twice.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        missing_acknowledged.is_empty(),
        "acknowledged, not delivered: {missing_acknowledged:?}\n{output}"
    );
    assert!(
        missing_last.is_empty(),
        "last states not delivered: {missing_last:?}\n{output}"
    );
    assert!(twice.is_empty(), "changes under two webhook ids: {twice:?}");
    assert_eq!(dead, 0, "nothing in the dead-letter queue\n{output}");
    standard_webhooks_verify_all(KEY, got.iter().map(|r| (r.body.as_str(), &r.headers)))
        .expect("every request verifies with the standardwebhooks package");
}
